//! The names a config may use in `handlers = [...]`, and how each factory is built.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::HandlerFactory;
use crate::settings::Settings;

/// A text file a handler's settings refer to (a script), read by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path as shown in errors.
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

/// What a factory may ask of the world while it is built. The daemon reads files relative to
/// the config file's folder; tests serve them from memory.
pub trait BuildEnv {
    /// Read a file named in a setting.
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String>;

    /// The folder relative paths in settings are taken from (the config's); `None` in tests.
    fn dir(&self) -> Option<PathBuf> {
        None
    }

    /// Find a program named in a setting: a path (relative ones from [`dir`](Self::dir)) or a
    /// name looked up in `PATH`. By default the name is taken as it is.
    fn program(&self, name: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(name))
    }

    /// Find the address of a `host:port` named in a setting (an upstream). By default only
    /// `ip:port` is taken; the daemon also looks host names up, once, when the config is read.
    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String> {
        host_port.parse().map_err(|_| {
            format!("{host_port:?} is not an ip:port address (write e.g. \"127.0.0.1:7000\")")
        })
    }
}

/// A `BuildEnv` without files.
#[derive(Debug, Default)]
pub struct NoFiles;

impl BuildEnv for NoFiles {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        Err(format!("cannot read {name:?}: no files here"))
    }
}

/// A handler's settings were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// What is wrong, naming the key.
    pub message: String,
    /// Where, as a byte range of the config (or of `file` when set).
    pub span: Option<Range<usize>>,
    /// The file the span refers to when it is not the config itself (a script).
    pub file: Option<Arc<SourceFile>>,
    /// Further independent problems found in the same settings (every misspelt key of a
    /// table, not just the first).
    pub also: Vec<BuildError>,
}

impl BuildError {
    /// An error at a place in the config.
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> BuildError {
        BuildError {
            message: message.into(),
            span,
            file: None,
            also: Vec::new(),
        }
    }

    /// From a TOML parse or deserialize error.
    pub fn from_toml(e: toml::de::Error) -> BuildError {
        BuildError::new(e.message().trim_end().to_string(), e.span())
    }

    /// Attach the file the span refers to, unless one is already set.
    pub fn in_file(mut self, file: &Arc<SourceFile>) -> BuildError {
        if self.file.is_none() {
            self.file = Some(file.clone());
        }
        self.also = std::mem::take(&mut self.also)
            .into_iter()
            .map(|e| e.in_file(file))
            .collect();
        self
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

/// Builds a factory from its settings.
pub type BuildFn = fn(Settings<'_>, &dyn BuildEnv) -> Result<Arc<dyn HandlerFactory>, BuildError>;

/// The known handlers, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: Vec<(&'static str, BuildFn)>,
}

impl Registry {
    /// Every built-in handler. A new handler is one file and one line here.
    pub fn builtin() -> Registry {
        Registry {
            entries: vec![
                ("echo", crate::echo::build),
                ("bye-close", crate::bye_close::build),
                ("console-reply", crate::console_reply::build),
                ("scripted-reply", crate::scripted_reply::build),
                ("exec", crate::exec::build),
                ("forward", crate::forward::build),
            ],
        }
    }

    /// The names, in registry order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|(n, _)| *n)
    }

    /// Whether `name` is a handler.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| *n == name)
    }

    /// Build the factory of `name` from its settings. `None` when the name is unknown.
    pub fn build(
        &self,
        name: &str,
        settings: Settings<'_>,
        env: &dyn BuildEnv,
    ) -> Option<Result<Arc<dyn HandlerFactory>, BuildError>> {
        let (_, build) = self.entries.iter().find(|(n, _)| *n == name)?;
        Some(build(settings, env))
    }
}
