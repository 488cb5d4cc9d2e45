//! A listener's handler chain: the names in `handlers`, each built by its factory from the
//! table named after it.

use std::cell::RefCell;
use std::sync::Arc;

use serde::Deserialize;
use switchboard_handlers::registry::SourceFile;
use switchboard_handlers::{BuildEnv, HandlerFactory, Registry, Settings};

use super::read::{Fields, Value};
use super::validate::{FileListener, Validator};

/// A handler chain: the names, and the factories with what each was built from (see
/// `ListenerConfig::handler_sources`), when every one could be built.
pub(super) type Chain = (
    Vec<String>,
    Option<(Vec<Arc<dyn HandlerFactory>>, Vec<String>)>,
);

/// A [`BuildEnv`] that remembers what it read.
struct Recording<'a> {
    inner: &'a dyn BuildEnv,
    read: RefCell<Vec<Arc<SourceFile>>>,
}

impl BuildEnv for Recording<'_> {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        let file = self.inner.read_file(name)?;
        self.read.borrow_mut().push(file.clone());
        Ok(file)
    }

    fn dir(&self) -> Option<std::path::PathBuf> {
        self.inner.dir()
    }

    fn program(&self, name: &str) -> Result<std::path::PathBuf, String> {
        self.inner.program(name)
    }

    fn resolve(&self, host_port: &str) -> Result<std::net::SocketAddr, String> {
        self.inner.resolve(host_port)
    }
}

/// A handler's settings table as canonical TOML (key order, quoting and comments do not
/// matter), followed by the files its factory read.
fn handler_source(table: Option<&Value<'_>>, files: &[Arc<SourceFile>]) -> String {
    let mut text = match table {
        Some(t) => toml::Value::deserialize(toml::de::ValueDeserializer::from(t.clone()))
            .map_or_else(|e| e.to_string(), |v| v.to_string()),
        None => String::new(),
    };
    for f in files {
        text.push_str("\n# file ");
        text.push_str(&f.path.to_string_lossy());
        text.push('\n');
        text.push_str(&f.text);
    }
    text
}

impl Validator<'_> {
    /// The handler chain and each handler's settings table.
    pub(super) fn chain(
        &mut self,
        l: &FileListener,
        mut tables: Vec<(String, Value<'_>)>,
        f: &Fields<'_>,
        registry: &Registry,
        env: &dyn BuildEnv,
    ) -> Chain {
        let known = || registry.names().collect::<Vec<_>>().join(", ");
        let mut handlers = Vec::new();
        let mut sources = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut ok = l.handlers.is_some();
        if let Some(list) = &l.handlers {
            if list.get_ref().is_empty() {
                self.error(
                    Some(list.span()),
                    Some(f.key("handlers")),
                    format!("the chain is empty; name at least one of: {}", known()),
                );
                ok = false;
            }
            for h in list.get_ref() {
                let name = h.get_ref();
                if !registry.contains(name) {
                    let all: Vec<&str> = registry.names().collect();
                    let near = switchboard_handlers::settings::hint(name, all.into_iter());
                    let message = if near.is_empty() {
                        format!("unknown handler {name:?}; known handlers: {}", known())
                    } else {
                        format!(
                            "unknown handler {name:?}{near} (known handlers: {})",
                            known()
                        )
                    };
                    self.error(Some(h.span()), Some(f.key("handlers")), message);
                    ok = false;
                    continue;
                }
                if names.contains(name) {
                    self.error(
                        Some(h.span()),
                        Some(f.key("handlers")),
                        format!("{name:?} appears twice in the chain"),
                    );
                    ok = false;
                    continue;
                }
                let table = tables
                    .iter()
                    .position(|(n, _)| n == name)
                    .map(|i| tables.swap_remove(i).1);
                let recording = Recording {
                    inner: env,
                    read: RefCell::default(),
                };
                let source_table = table.clone();
                match registry.build(name, Settings::new(table), &recording) {
                    Some(Ok(factory)) => {
                        handlers.push(factory);
                        let read = recording.read.borrow();
                        sources.push(handler_source(source_table.as_ref(), &read));
                    }
                    Some(Err(e)) => {
                        self.build_error(e, f.key(name));
                        ok = false;
                    }
                    None => unreachable!("checked above"),
                }
                names.push(name.clone());
            }
        }
        if ok && let Some(list) = &l.handlers {
            for (i, h) in handlers.iter().enumerate() {
                if h.hands_off() && !handlers[i + 1..].iter().any(|n| n.takes_operator()) {
                    self.error(
                        Some(list.span()),
                        Some(f.key("handlers")),
                        format!(
                            "{:?} hands sessions to a person (`handoff`), but no handler after \
                             it takes operator lines: add \"console-reply\" after it",
                            h.name()
                        ),
                    );
                }
            }
        }
        for (name, table) in tables {
            self.error(
                Some(table.span()),
                Some(f.key(&name)),
                format!("settings for {name:?}, which is not in this listener's handlers"),
            );
        }
        (names, ok.then_some((handlers, sources)))
    }
}
