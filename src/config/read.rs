//! Reading one TOML table key by key. Unknown keys, wrong types and values out of range are
//! each an error of their own, naming the key, saying what is allowed and suggesting what was
//! probably meant, so that one mistake never hides another.

use std::ops::Range;

use switchboard_handlers::settings::{hint, nearest, one_of};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Validator;

/// A value with its place in the file.
pub(super) type Value<'a> = Spanned<DeValue<'a>>;

/// The keys of one table, taken one by one by the typed readers below.
#[derive(Debug)]
pub(super) struct Fields<'a> {
    /// How the table is named in errors: `daemon`, `listener "chat"`.
    label: String,
    /// Where the table is, for keys that are missing.
    pub(super) span: Range<usize>,
    values: Vec<(String, Value<'a>)>,
}

impl<'a> Fields<'a> {
    /// A table that was not written (all defaults).
    pub(super) fn empty(label: &str) -> Fields<'a> {
        Fields {
            label: label.to_string(),
            span: 0..0,
            values: Vec::new(),
        }
    }

    /// Take a key's value as written, for tables read by hand.
    pub(super) fn take_value(&mut self, key: &str) -> Option<Value<'a>> {
        self.take(key)
    }

    /// Whether the key was given.
    pub(super) fn has(&self, key: &str) -> bool {
        self.values.iter().any(|(k, _)| k == key)
    }

    fn take(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.values.iter().position(|(k, _)| k == key)?;
        Some(self.values.swap_remove(i).1)
    }

    /// `listener "chat"`, `daemon`.
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// `listener "chat" port`.
    pub(super) fn key(&self, key: &str) -> String {
        if self.label.is_empty() {
            key.to_string()
        } else {
            format!("{} {key}", self.label)
        }
    }
}

/// An integer's allowed range, for the readers and their messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct IntRange {
    pub(super) min: i128,
    pub(super) max: i128,
}

impl IntRange {
    pub(super) const PORT: IntRange = IntRange { min: 0, max: 65535 };
    /// A transcript file's size: at least 4 KiB.
    pub(super) const TRANSCRIPT: IntRange = IntRange {
        min: 4096,
        max: u64::MAX as i128,
    };
    pub(super) const U32_POSITIVE: IntRange = IntRange {
        min: 1,
        max: u32::MAX as i128,
    };
    pub(super) const COUNT: IntRange = IntRange {
        min: 0,
        max: u32::MAX as i128,
    };
    pub(super) const BYTES: IntRange = IntRange {
        min: 1,
        max: u32::MAX as i128,
    };
    pub(super) const U64_POSITIVE: IntRange = IntRange {
        min: 1,
        max: u64::MAX as i128,
    };
    pub(super) const U64: IntRange = IntRange {
        min: 0,
        max: u64::MAX as i128,
    };

    fn describe(self) -> String {
        if self.max >= u32::MAX as i128 {
            format!("a whole number of at least {}", self.min)
        } else {
            format!("a whole number from {} to {}", self.min, self.max)
        }
    }
}

/// A TOML value's type, as a person says it.
fn type_of(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "true or false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

fn integer_of(v: &DeValue<'_>) -> Option<i128> {
    let i = v.as_integer()?;
    i128::from_str_radix(i.as_str(), i.radix()).ok()
}

impl<'t> Validator<'t> {
    /// The keys of `table`; those not in `known` are errors, with the nearest of `known` and
    /// `also_known` (handler names) suggested.
    pub(super) fn fields<'a>(
        &mut self,
        label: &str,
        span: Range<usize>,
        table: DeTable<'a>,
        known: &[&str],
        also_known: &[&str],
    ) -> Fields<'a> {
        let mut fields = Fields {
            label: label.to_string(),
            span,
            values: Vec::new(),
        };
        for (k, v) in table {
            let name = k.get_ref().to_string();
            if known.contains(&name.as_str()) {
                fields.values.push((name, v));
                continue;
            }
            let all = known.iter().chain(also_known).copied();
            let message = match nearest(&name, all) {
                Some(near) => format!("unknown key; did you mean `{near}`?"),
                None if v.get_ref().is_table() && !also_known.is_empty() => format!(
                    "unknown key; a table here holds a handler's settings and is named after \
                     it: {}",
                    also_known.join(", ")
                ),
                None => format!("unknown key (known keys: {})", known.join(", ")),
            };
            self.error(Some(k.span()), Some(fields.key(&name)), message);
        }
        fields
    }

    /// Report each of `required` (key, what it takes) that `f` lacks.
    pub(super) fn require(&mut self, f: &Fields<'_>, required: &[(&str, &str)]) {
        for (key, what) in required {
            if !f.has(key) {
                self.error(
                    Some(f.span.clone()),
                    Some(f.key(key)),
                    format!("missing; this key is required ({what})"),
                );
            }
        }
    }

    fn wrong_type(&mut self, f: &Fields<'_>, key: &str, v: &Value<'_>, expected: &str) {
        let found = match v.get_ref() {
            DeValue::String(s) => format!("{} ({s:?})", type_of(v.get_ref())),
            other => type_of(other).to_string(),
        };
        let mut message = format!("expected {expected}, found {found}");
        if let DeValue::String(s) = v.get_ref()
            && expected.starts_with("a whole number")
            && s.trim().parse::<i128>().is_ok()
        {
            message.push_str(&format!("; write it without quotes: {}", s.trim()));
        }
        self.error(Some(v.span()), Some(f.key(key)), message);
    }

    /// A string.
    pub(super) fn string(&mut self, f: &mut Fields<'_>, key: &str) -> Option<Spanned<String>> {
        let v = f.take(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                self.wrong_type(f, key, &v, "a string");
                None
            }
        }
    }

    /// A duration, written as a string like `"5s"`.
    pub(super) fn duration_text(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
    ) -> Option<Spanned<String>> {
        let v = f.take(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            other => {
                let mut message = format!(
                    "expected a duration in quotes, like \"5s\", \"800ms\" or \"10m\", found {}",
                    type_of(other)
                );
                if let Some(n) = integer_of(other) {
                    message.push_str(&format!("; for seconds write \"{n}s\""));
                }
                self.error(Some(v.span()), Some(f.key(key)), message);
                None
            }
        }
    }

    /// A whole number within `range`.
    pub(super) fn integer<T: TryFrom<i128>>(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
        range: IntRange,
    ) -> Option<Spanned<T>> {
        let v = f.take(key)?;
        self.integer_value(f, key, &v, range)
    }

    fn integer_value<T: TryFrom<i128>>(
        &mut self,
        f: &Fields<'_>,
        key: &str,
        v: &Value<'_>,
        range: IntRange,
    ) -> Option<Spanned<T>> {
        let Some(n) = integer_of(v.get_ref()) else {
            self.wrong_type(f, key, v, &range.describe());
            return None;
        };
        if n < range.min || n > range.max {
            self.error(
                Some(v.span()),
                Some(f.key(key)),
                format!("{n} is out of range: expected {}", range.describe()),
            );
            return None;
        }
        T::try_from(n).ok().map(|t| Spanned::new(v.span(), t))
    }

    /// A number (an integer is taken as a float) from `min` to `max`.
    pub(super) fn number(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<Spanned<f64>> {
        let v = f.take(key)?;
        let allowed = if max.is_finite() {
            format!("a number from {min:?} to {max:?}")
        } else {
            format!("a number of at least {min:?}")
        };
        let n = match v.get_ref() {
            DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
            other => integer_of(other).map(|i| i as f64),
        };
        let Some(n) = n else {
            self.wrong_type(f, key, &v, &allowed);
            return None;
        };
        if !(n >= min && n <= max) {
            self.error(
                Some(v.span()),
                Some(f.key(key)),
                format!("{n} is out of range: expected {allowed}"),
            );
            return None;
        }
        Some(Spanned::new(v.span(), n))
    }

    /// `true` or `false`.
    pub(super) fn boolean(&mut self, f: &mut Fields<'_>, key: &str) -> Option<Spanned<bool>> {
        let v = f.take(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(v.span(), *b)),
            _ => {
                self.wrong_type(f, key, &v, "true or false");
                None
            }
        }
    }

    /// One of `options`, written as a string.
    pub(super) fn choice<E: Copy>(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
        options: &[(&str, E)],
    ) -> Option<Spanned<E>> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let v = f.take(key)?;
        let DeValue::String(s) = v.get_ref() else {
            self.wrong_type(f, key, &v, &one_of(&names));
            return None;
        };
        if let Some((_, e)) = options.iter().find(|(n, _)| *n == s.as_ref()) {
            return Some(Spanned::new(v.span(), *e));
        }
        self.error(
            Some(v.span()),
            Some(f.key(key)),
            format!(
                "{s:?} is not allowed; expected {}{}",
                one_of(&names),
                hint(s, names.iter().copied())
            ),
        );
        None
    }

    /// A list of strings.
    pub(super) fn strings(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let v = f.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(f, key, &v, "a list of strings, like [\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                _ => self.wrong_type(f, key, item, "a string in this list"),
            }
        }
        Some(Spanned::new(v.span(), out))
    }

    /// A list of whole numbers within `range`.
    pub(super) fn integers<T: TryFrom<i128>>(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
        range: IntRange,
    ) -> Option<Spanned<Vec<T>>> {
        let v = f.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(f, key, &v, &format!("a list of {}", range.describe()));
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            if let Some(n) = self.integer_value(f, key, item, range) {
                out.push(n.into_inner());
            }
        }
        Some(Spanned::new(v.span(), out))
    }
}
