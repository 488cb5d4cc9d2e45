//! The loop's HTTP sites (`httpd/` serves them): accepting, timing each connection out,
//! handing each request to its site; and the Prometheus endpoint, the simplest site: `GET
//! /metrics`, bounded to [`METRICS_LIMITS`] (more scrapers wait in the listen backlog until
//! one leaves; a scraper that has not finished in time is dropped).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Registry;
use tracing::info;

use super::httpd::{Limits, Response, Server, Site, Step};
use super::tokens::Tokens;
use super::{Daemon, ShellDue, tcp};

/// What the metrics endpoint takes: scrapers at once, a request head (no body), and the time
/// to send it and read the answer.
pub(crate) const METRICS_LIMITS: Limits = Limits {
    conns: 16,
    head: 8 * 1024,
    body: 0,
    timeout: Duration::from_secs(5),
};

/// Listen for scrapers on `addr`.
pub(crate) fn bind_metrics(
    addr: SocketAddr,
    registry: &Registry,
    tokens: &mut Tokens,
) -> anyhow::Result<Server> {
    let server = Server::bind(addr, Site::Metrics, METRICS_LIMITS, registry, tokens)
        .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {addr}: {e}"))?;
    info!(event = "metrics_listening", addr = %server.local_addr()?, "metrics listening");
    Ok(server)
}

/// An answer in the Prometheus text format's content type.
fn plain(status: u16, body: String) -> Response {
    Response::new(status).body(
        "text/plain; version=0.0.4; charset=utf-8",
        body.into_bytes(),
    )
}

/// The server of `site`, if it is served (from the daemon's fields, so that its tokens and
/// timers can be borrowed beside it).
fn server<'a>(
    web: &'a mut Option<super::web::Web>,
    metrics: &'a mut Option<Server>,
    api: &'a mut Option<super::api::Api>,
    site: Site,
) -> Option<&'a mut Server> {
    match site {
        Site::Web => web.as_mut().map(|w| &mut w.server),
        Site::Metrics => metrics.as_mut(),
        Site::Api => api.as_mut().map(|a| &mut a.server),
    }
}

impl Daemon {
    /// Accept connections of `site`, serve each at once and time it.
    pub(super) fn http_accept(&mut self, site: Site) {
        let (now, registry) = (self.now, self.poll.registry());
        let Some(server) = server(&mut self.web, &mut self.metrics, &mut self.api, site) else {
            return;
        };
        let (new, ok) = server.accept(registry, &mut self.tokens, now);
        let timeout = server.limits().timeout;
        if !ok {
            self.timers
                .push(now + tcp::ACCEPT_RETRY, ShellDue::RetryHttp(site));
        }
        for key in new {
            self.timers
                .push(now + timeout, ShellDue::HttpConn(site, key, now));
            self.http_ready(site, key);
        }
    }

    /// A connection of `site` is ready.
    pub(super) fn http_ready(&mut self, site: Site, key: usize) {
        match site {
            Site::Web => self.web_conn_ready(key),
            Site::Metrics => self.scraper_ready(key),
            Site::Api => self.api_ready(key),
        }
        if server(&mut self.web, &mut self.metrics, &mut self.api, site)
            .is_some_and(|s| s.has_room_again())
        {
            self.http_accept(site);
        }
    }

    /// A connection's time is up (if it is still the one accepted at `since`).
    pub(super) fn http_expired(&mut self, site: Site, key: usize, since: Instant) {
        let registry = self.poll.registry();
        let Some(server) = server(&mut self.web, &mut self.metrics, &mut self.api, site) else {
            return;
        };
        server.expire(key, since, registry, &mut self.tokens);
        if server.has_room_again() {
            self.http_accept(site);
        }
    }

    /// A scraper's request: the metrics, or why not.
    fn scraper_ready(&mut self, key: usize) {
        let registry = self.poll.registry();
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let r = match m.ready(key, registry, &mut self.tokens) {
            Step::Request(req) => match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/metrics") => plain(200, self.core.prometheus()),
                ("GET", _) => plain(404, "only /metrics is served here\n".into()),
                _ => plain(405, "GET only\n".into()),
            },
            Step::Refused(status) => plain(status, String::new()),
            Step::Wait | Step::Done | Step::Upgraded(_) => return,
        };
        m.respond(key, r, registry, &mut self.tokens);
    }
}
