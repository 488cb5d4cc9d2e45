//! A listener's handler chain: the names in `handlers`, each built by its factory from the
//! table named after it.

use std::sync::Arc;

use switchboard_handlers::{BuildEnv, HandlerFactory, Registry, Settings};

use super::read::{Fields, Value};
use super::validate::{FileListener, Validator};

impl Validator<'_> {
    /// The handler chain and each handler's settings table.
    #[allow(clippy::type_complexity)]
    pub(super) fn chain(
        &mut self,
        l: &FileListener,
        mut tables: Vec<(String, Value<'_>)>,
        f: &Fields<'_>,
        registry: &Registry,
        env: &dyn BuildEnv,
    ) -> (Vec<String>, Option<Vec<Arc<dyn HandlerFactory>>>) {
        let known = || registry.names().collect::<Vec<_>>().join(", ");
        let mut handlers = Vec::new();
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
                match registry.build(name, Settings::new(table), env) {
                    Some(Ok(factory)) => handlers.push(factory),
                    Some(Err(e)) => {
                        self.build_error(e, f.key(name));
                        ok = false;
                    }
                    None => unreachable!("checked above"),
                }
                names.push(name.clone());
            }
        }
        for (name, table) in tables {
            self.error(
                Some(table.span()),
                Some(f.key(&name)),
                format!("settings for {name:?}, which is not in this listener's handlers"),
            );
        }
        (names, ok.then_some(handlers))
    }
}
