//! A handler's settings table from the config, kept with its position in the file so that
//! errors name the line.

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
    /// Settings types use `deny_unknown_fields`, so a misspelt key is an error with its line.
    pub fn parse<T: DeserializeOwned + Default>(self) -> Result<T, BuildError> {
        match self.value {
            None => Ok(T::default()),
            Some(v) => T::deserialize(ValueDeserializer::from(v)).map_err(BuildError::from_toml),
        }
    }
}
