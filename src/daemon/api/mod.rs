//! The toxiproxy HTTP API (`[daemon] toxiproxy_api`), served by the loop like the metrics
//! endpoint and the web console (`httpd/`): one request per connection (answered with
//! `Connection: close`, which every HTTP client follows), bounded by [`LIMITS`] (more
//! clients wait in the listen backlog). What each request does is in `routes.rs`; toxics and
//! faults map in `toxics.rs`.

mod routes;
pub(crate) mod toxics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Registry;
use tracing::info;

use super::httpd::{Limits, Response, Server, Site};
use super::tokens::Tokens;
use crate::faults::Fault;

/// Clients at once, a request head, a body (a `populate` of many proxies fits), and the time
/// to send a request and read the answer.
pub(crate) const LIMITS: Limits = Limits {
    conns: 16,
    head: 16 * 1024,
    body: 1 << 20,
    timeout: Duration::from_secs(10),
};

/// A proxy the API made, or one disabled (out of the loop, kept to be enabled again).
#[derive(Debug, Clone)]
pub(crate) struct ProxyDef {
    /// `listen` as asked (`127.0.0.1:0`); the bound address is the listener's.
    pub(crate) listen: String,
    /// `upstream` as given.
    pub(crate) upstream: String,
    /// Disabled: its faults, kept while it has no listener.
    pub(crate) disabled: Option<Vec<Fault>>,
}

/// The API's server, and the proxies it made.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) server: Server,
    /// Proxies made through the API (and disabled ones, of any origin), by name.
    pub(crate) proxies: BTreeMap<String, ProxyDef>,
}

impl Api {
    pub(crate) fn bind(
        addr: SocketAddr,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> anyhow::Result<Api> {
        let server = Server::bind(addr, Site::Api, LIMITS, registry, tokens)
            .map_err(|e| anyhow::anyhow!("toxiproxy_api: cannot listen on {addr}: {e}"))?;
        info!(event = "toxiproxy_api_listening", addr = %server.local_addr()?,
            "toxiproxy API listening");
        Ok(Api {
            server,
            proxies: BTreeMap::new(),
        })
    }
}

/// An answer: a status and, unless it is 204, a JSON body.
pub(crate) fn json_response(status: u16, body: Option<&str>) -> Response {
    match status {
        204 => Response::new(204),
        _ => Response::new(status).body(
            "application/json",
            body.unwrap_or_default().as_bytes().to_vec(),
        ),
    }
}
