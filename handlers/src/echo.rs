//! `echo`: sends every message back unchanged.

use std::sync::Arc;

use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::{Flow, Handler, HandlerFactory, Outbox, Session};

/// The `echo` handler. It has no settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoSettings {}

pub(crate) fn build(
    settings: Settings<'_>,
    _env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let EchoSettings {} = settings.parse()?;
    Ok(Arc::new(Echo))
}

impl HandlerFactory for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(Echo)
    }
}

impl Handler for Echo {
    fn on_message(&mut self, msg: &[u8], _s: &Session, out: &mut Outbox) -> Flow {
        out.send(msg);
        Flow::Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Harness, build_one};

    #[test]
    fn echoes_exact_bytes() {
        let mut h = Harness::new(vec![Echo.session()]);
        let out = h.message(b"hello\xff\r\n");
        assert_eq!(out.data(), b"hello\xff\r\n");
        assert_eq!(h.flow(), Some(Flow::Handled));
    }

    #[test]
    fn refuses_settings() {
        let err = build_one("echo", "loud = true").unwrap_err();
        assert!(
            err.message
                .contains("`loud`: unknown key (this handler has no settings)"),
            "{err}"
        );
        assert!(err.span.is_some());
    }
}
