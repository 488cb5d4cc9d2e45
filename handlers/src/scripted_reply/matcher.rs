//! How a rule's `pattern` is tested against a message.
//!
//! Literal patterns (`exact`, `prefix`, `contains`) are compared as strings; with `ignore_case`
//! the pattern is lowercased once when the script is built and the message at most once per
//! message, into a buffer the session reuses. Regexes are compiled once, case-insensitive
//! through the regex engine itself, so their groups refer to the message as the peer sent it.
//!
//! Regex rules are tested together: one `RegexSet` of all of them reads the message once, the
//! first time the search reaches a regex rule, and each regex rule then only looks up its
//! answer. With 20 regex rules this cut the search from 250–450 ns a message to about 100 ns,
//! for one small allocation (`RegexSet::matches` has no form that reuses its result). The
//! groups are found afterwards, only for the rule that fired and only when its replies use
//! them. Patterns with a word boundary (`\b`, `\B`, `\<`, `\>`) stay out of the set and are
//! tested on their own: a set cannot use the engines that handle a Unicode word boundary on
//! non-ASCII text quickly, and falls back to one that took 3.5 µs for a Chinese message.

use regex::{CaptureLocations, Regex, RegexBuilder, RegexSet, SetMatches};

/// The `match` key of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum MatchKind {
    /// The whole message equals the pattern.
    Exact,
    /// The message starts with the pattern.
    Prefix,
    /// The message contains the pattern.
    Contains,
    /// The regex matches somewhere in the message (anchor it with `^...$` for a whole match).
    Regex,
}

#[derive(Debug)]
enum Test {
    Exact(Box<str>),
    Prefix(Box<str>),
    Contains(Box<str>),
    /// With its index in the [`RegexSet`] when it is in it.
    Regex(Regex, Option<usize>),
}

/// A compiled `pattern`.
#[derive(Debug)]
pub(super) struct Pattern {
    test: Test,
    /// Compare literals with the lowercased message (the pattern is lowercased already).
    fold: bool,
}

/// The regexes of a script's rules, tested in one pass.
#[derive(Debug, Default)]
pub(super) struct RegexRules {
    set: Option<RegexSet>,
}

impl RegexRules {
    /// Put the regexes of `patterns` that suit a set into one, when there are two or more.
    pub(super) fn new<'p>(patterns: impl Iterator<Item = &'p mut Pattern>) -> RegexRules {
        let mut members: Vec<(String, &mut Option<usize>)> = patterns
            .filter_map(|p| match &mut p.test {
                Test::Regex(re, member) if !has_word_boundary(re.as_str()) => {
                    // The same pattern as the rule's own regex, case folding included.
                    let flags = if p.fold { "(?i)" } else { "" };
                    Some((format!("{flags}{}", re.as_str()), member))
                }
                _ => None,
            })
            .collect();
        if members.len() < 2 {
            return RegexRules::default();
        }
        // Valid one by one, so valid together, unless together they outgrow the size limit:
        // then every regex is simply tested on its own.
        let Ok(set) = RegexSet::new(members.iter().map(|(p, _)| p)) else {
            return RegexRules::default();
        };
        for (i, (_, member)) in members.iter_mut().enumerate() {
            **member = Some(i);
        }
        RegexRules { set: Some(set) }
    }
}

/// Whether a regex may use a word-boundary assertion (a false yes only costs speed).
fn has_word_boundary(pattern: &str) -> bool {
    ["\\b", "\\B", "\\<", "\\>"]
        .iter()
        .any(|a| pattern.contains(a))
}

/// Per-session scratch space for matching: reused from message to message.
#[derive(Debug, Default)]
pub(super) struct Probe {
    lower: String,
    /// Whether `lower` holds the current message.
    lowered: bool,
    /// Which regexes of the set match the current message, once some rule asked.
    hits: Option<SetMatches>,
}

impl Probe {
    /// Forget the previous message.
    pub(super) fn reset(&mut self) {
        self.lowered = false;
        self.hits = None;
    }

    fn lower(&mut self, text: &str) -> &str {
        if !self.lowered {
            lowercase_into(text, &mut self.lower);
            self.lowered = true;
        }
        &self.lower
    }
}

impl Pattern {
    /// Compile a rule's pattern.
    pub(super) fn new(kind: MatchKind, pattern: &str, fold: bool) -> Result<Pattern, regex::Error> {
        let lit = || -> Box<str> {
            if fold {
                let mut s = String::new();
                lowercase_into(pattern, &mut s);
                s.into()
            } else {
                pattern.into()
            }
        };
        let test = match kind {
            MatchKind::Exact => Test::Exact(lit()),
            MatchKind::Prefix => Test::Prefix(lit()),
            MatchKind::Contains => Test::Contains(lit()),
            MatchKind::Regex => Test::Regex(
                RegexBuilder::new(pattern).case_insensitive(fold).build()?,
                None,
            ),
        };
        Ok(Pattern { test, fold })
    }

    /// The regex, for a `regex` rule.
    pub(super) fn regex(&self) -> Option<&Regex> {
        match &self.test {
            Test::Regex(re, _) => Some(re),
            _ => None,
        }
    }

    /// Whether `text` (the current message of `probe`) matches.
    pub(super) fn is_match(&self, text: &str, regexes: &RegexRules, probe: &mut Probe) -> bool {
        let (lit, hay) = match &self.test {
            Test::Regex(re, member) => {
                return match (member, &regexes.set) {
                    (Some(i), Some(set)) => probe
                        .hits
                        .get_or_insert_with(|| set.matches(text))
                        .matched(*i),
                    _ => re.is_match(text),
                };
            }
            Test::Exact(p) | Test::Prefix(p) | Test::Contains(p) if self.fold => {
                (p, probe.lower(text))
            }
            Test::Exact(p) | Test::Prefix(p) | Test::Contains(p) => (p, text),
        };
        match self.test {
            Test::Exact(_) => hay == &**lit,
            Test::Prefix(_) => hay.starts_with(&**lit),
            _ => hay.contains(&**lit),
        }
    }

    /// Find the groups of a `regex` rule in `text` into `locs` (made on first use and kept by
    /// the session). Returns `None` for other rules or when the regex does not match.
    pub(super) fn groups<'l>(
        &self,
        text: &str,
        locs: &'l mut Option<CaptureLocations>,
    ) -> Option<&'l CaptureLocations> {
        let re = self.regex()?;
        let locs = locs.get_or_insert_with(|| re.capture_locations());
        re.captures_read(locs, text)?;
        Some(locs)
    }
}

/// `text` lowercased into `out`, character by character (the same way for patterns and
/// messages, so they compare equal exactly when their lowercase forms do).
fn lowercase_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        out.push_str(text);
        out.make_ascii_lowercase();
    } else {
        out.extend(text.chars().flat_map(char::to_lowercase));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(kind: MatchKind, pattern: &str, fold: bool, text: &str) -> bool {
        let regexes = RegexRules::default();
        Pattern::new(kind, pattern, fold)
            .unwrap()
            .is_match(text, &regexes, &mut Probe::default())
    }

    #[test]
    fn literal_kinds_with_and_without_case() {
        assert!(hit(MatchKind::Exact, "Help", false, "Help"));
        assert!(!hit(MatchKind::Exact, "Help", false, "help"));
        assert!(hit(MatchKind::Exact, "Help", true, "hELP"));
        assert!(hit(MatchKind::Prefix, "ORDER", true, "order 5"));
        assert!(hit(MatchKind::Contains, "ÄPFEL", true, "ich mag äpfel"));
        assert!(!hit(MatchKind::Contains, "äpfel", false, "ich mag ÄPFEL"));
        assert!(hit(MatchKind::Regex, "^ab+$", true, "ABB"));
    }

    #[test]
    fn the_message_is_lowercased_once_per_reset() {
        let mut probe = Probe::default();
        let no_set = RegexRules::default();
        let p = Pattern::new(MatchKind::Exact, "hi", true).unwrap();
        assert!(p.is_match("HI", &no_set, &mut probe));
        assert!(
            p.is_match("other text", &no_set, &mut probe),
            "still the first message until reset"
        );
        probe.reset();
        assert!(!p.is_match("other text", &no_set, &mut probe));
    }

    #[test]
    fn word_boundaries_keep_a_regex_out_of_the_set() {
        let mut patterns: Vec<Pattern> = [r"\bhi\b", "a+", "b+", "exact"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let kind = if i == 3 {
                    MatchKind::Exact
                } else {
                    MatchKind::Regex
                };
                Pattern::new(kind, p, i == 2).unwrap()
            })
            .collect();
        let regexes = RegexRules::new(patterns.iter_mut());
        assert_eq!(regexes.set.as_ref().map(RegexSet::len), Some(2));
        let members: Vec<_> = patterns
            .iter()
            .map(|p| match p.test {
                Test::Regex(_, member) => member,
                _ => None,
            })
            .collect();
        assert_eq!(members, [None, Some(0), Some(1), None]);
        let mut probe = Probe::default();
        assert!(
            patterns[2].is_match("xBBx", &regexes, &mut probe),
            "folding kept in the set"
        );
        assert!(!patterns[1].is_match("xBBx", &regexes, &mut probe));
        assert!(patterns[0].is_match("oh hi there", &regexes, &mut Probe::default()));
    }
}
