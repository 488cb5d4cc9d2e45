//! A handler's settings table from the config, kept with its position in the file so that
//! errors name the line and the key, and suggest the key or value that was probably meant.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::registry::BuildError;

/// The `[listener.NAME]` table of one handler, or nothing when the config has none.
#[derive(Debug)]
pub struct Settings<'a> {
    value: Option<Spanned<DeValue<'a>>>,
}

impl<'a> Settings<'a> {
    /// Settings from a parsed table.
    pub fn new(value: Option<Spanned<DeValue<'a>>>) -> Settings<'a> {
        Settings { value }
    }

    /// No settings table.
    pub fn none() -> Settings<'static> {
        Settings { value: None }
    }

    /// Settings parsed from TOML text (tests and scripts kept in their own file).
    pub fn parse_str(text: &'a str) -> Result<Settings<'a>, BuildError> {
        let table = toml::de::DeTable::parse(text).map_err(BuildError::from_toml)?;
        let span = table.span();
        Ok(Settings {
            value: Some(Spanned::new(span, DeValue::Table(table.into_inner()))),
        })
    }

    /// Where the table is in the config, when it exists.
    pub fn span(&self) -> Option<Range<usize>> {
        self.value.as_ref().map(|v| v.span())
    }

    /// Whether the config had a table for this handler.
    pub fn is_present(&self) -> bool {
        self.value.is_some()
    }

    /// Deserialize into the handler's settings type, or its default when there is no table.
    /// Settings types use `deny_unknown_fields` and `default`: a misspelt key is an error
    /// with its line. Every key of the table is checked: after a bad key the table is read
    /// again without it, so all of them are reported at once (the first error carries the
    /// others in [`BuildError::also`]).
    pub fn parse<T: DeserializeOwned + Default>(self) -> Result<T, BuildError> {
        let Some(mut value) = self.value else {
            return Ok(T::default());
        };
        let mut errors: Vec<BuildError> = Vec::new();
        loop {
            let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(t) if errors.is_empty() => return Ok(t),
                Ok(_) => break,
                Err(e) => e,
            };
            let path = key_at(&value, e.span());
            if !errors.is_empty() && e.message().starts_with("missing field") {
                break; // a consequence of a key taken out, not a mistake of its own
            }
            let key = path.as_deref().and_then(innermost).map(|(k, _)| k);
            errors.push(BuildError::new(
                explain(e.message().trim_end(), key),
                e.span(),
            ));
            match path {
                Some(p) if remove(&mut value, &p) => continue,
                _ => break,
            }
        }
        let mut first = errors.remove(0);
        first.also = errors;
        Err(first)
    }
}

/// The way from the settings table down to the entry whose key or value `span` points
/// into: the keys of nested tables and the indexes of arrays, innermost last.
fn locate(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Vec<Step> {
    let inside = |s: Range<usize>| s.start <= span.start && span.start < s.end.max(s.start + 1);
    match value.get_ref() {
        DeValue::Table(table) => {
            for (k, v) in table.iter() {
                if inside(k.span()) {
                    return vec![Step::Key(k.get_ref().to_string())];
                }
                // The span of an array of tables covers its first header only: look inside
                // every container rather than trusting its span.
                let below = locate(v, span);
                if !below.is_empty() || inside(v.span()) {
                    let mut path = vec![Step::Key(k.get_ref().to_string())];
                    path.extend(below);
                    return path;
                }
            }
            Vec::new()
        }
        DeValue::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let below = locate(v, span);
                if !below.is_empty() || inside(v.span()) {
                    let mut path = vec![Step::Index(i)];
                    path.extend(below);
                    return path;
                }
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The innermost key of `path`, and the path ending at it.
fn innermost(path: &[Step]) -> Option<(&str, &[Step])> {
    let at = path.iter().rposition(|s| matches!(s, Step::Key(_)))?;
    match &path[at] {
        Step::Key(k) => Some((k, &path[..=at])),
        Step::Index(_) => None,
    }
}

/// The key of the entry that `span` points into (its key or its value), innermost.
fn key_at(value: &Spanned<DeValue<'_>>, span: Option<Range<usize>>) -> Option<Vec<Step>> {
    let path = locate(value, &span?);
    innermost(&path).map(|(_, p)| p.to_vec())
}

/// Take out the entry at `path` (which ends with a key).
fn remove(value: &mut Spanned<DeValue<'_>>, path: &[Step]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (value.get_mut(), first) {
        (DeValue::Table(table), Step::Key(key)) if rest.is_empty() => {
            let before = table.len();
            for (k, v) in std::mem::take(table) {
                if k.get_ref() != key {
                    table.insert(k, v);
                }
            }
            table.len() < before
        }
        (DeValue::Table(table), Step::Key(key)) => table
            .iter_mut()
            .find(|(k, _)| k.get_ref() == key)
            .is_some_and(|(_, v)| remove(v, rest)),
        (DeValue::Array(items), Step::Index(i)) => {
            items.get_mut(*i).is_some_and(|v| remove(v, rest))
        }
        _ => false,
    }
}

/// The words in backticks of a serde message: the field or variant it names, then the ones
/// it expected.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// A serde message rewritten for a person: it names the key, says what is allowed and
/// suggests what was probably meant.
pub fn explain(message: &str, key: Option<&str>) -> String {
    let words = backticked(message);
    if message.starts_with("unknown field") && !words.is_empty() {
        let known = &words[1..];
        let m = format!("`{}`: unknown key", words[0]);
        return match nearest(words[0], known.iter().copied()) {
            Some(near) => format!("{m}; did you mean `{near}`?"),
            None if known.is_empty() => format!("{m} (this handler has no settings)"),
            None => format!("{m} (known keys: {})", known.join(", ")),
        };
    }
    let named = |m: String| match key {
        Some(k) => format!("`{k}`: {m}"),
        None => m,
    };
    if message.starts_with("unknown variant") && !words.is_empty() {
        let found = words[0];
        let allowed = &words[1..];
        return named(format!(
            "{:?} is not allowed; expected {}{}",
            found,
            one_of(allowed),
            hint(found, allowed.iter().copied())
        ));
    }
    named(message.to_string())
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub fn one_of(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    match quoted.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// What a wrong value probably meant: ` (write `tcp`: values are lowercase)` when only the
/// case differs, `; did you mean "tcp"?` for a typo, nothing otherwise.
pub fn hint<'a>(found: &str, allowed: impl Iterator<Item = &'a str> + Clone) -> String {
    if let Some(same) = allowed.clone().find(|a| a.eq_ignore_ascii_case(found)) {
        return format!(" (write `{same}`: values are lowercase)");
    }
    match nearest(found, allowed) {
        Some(near) => format!("; did you mean {near:?}?"),
        None => String::new(),
    }
}

/// The candidate closest to `word`, when it is close enough to be a typo of it: at most a
/// third of its letters differ (Damerau-Levenshtein: a swap of two letters counts once), or
/// one is the start of the other (`unattended` for `unattended_reply`).
pub fn nearest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    let close = candidates
        .clone()
        .map(|c| (strsim::damerau_levenshtein(&word, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (word.chars().count().max(c.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    close.or_else(|| {
        candidates.into_iter().find(|c| {
            let c = c.to_lowercase();
            word.len().min(c.len()) >= 4 && (c.starts_with(&word) || word.starts_with(&c))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Two {
        word: String,
        ignore_case: bool,
        scope: Option<crate::Scope>,
    }

    #[test]
    fn nearest_finds_typos_only() {
        let keys = ["protocol", "port", "ip", "handlers"];
        assert_eq!(nearest("protocl", keys.into_iter()), Some("protocol"));
        assert_eq!(nearest("prot", keys.into_iter()), Some("port"));
        assert_eq!(nearest("handler", keys.into_iter()), Some("handlers"));
        assert_eq!(nearest("colour", keys.into_iter()), None);
    }

    #[test]
    fn every_bad_key_is_reported_with_a_suggestion() {
        let text = "wrod = \"x\"\nignore_case = \"yes\"\nscope = \"Listener\"\nscpoe = 1\n";
        let e = Settings::parse_str(text)
            .unwrap()
            .parse::<Two>()
            .unwrap_err();
        let all: Vec<String> = std::iter::once(&e)
            .chain(&e.also)
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(
            all.iter()
                .any(|m| m.starts_with("`wrod`: unknown key; did you mean `word`?")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|m| m.starts_with("`ignore_case`: invalid type"))
        );
        assert!(all.iter().any(|m| m
            == "`scope`: \"Listener\" is not allowed; expected \"session\", \"listener\" or \"daemon\" (write `listener`: values are lowercase)"));
        assert!(
            all.iter()
                .any(|m| m.starts_with("`scpoe`: unknown key; did you mean `scope`?"))
        );
    }
}
