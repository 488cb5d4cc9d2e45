//! What each request of the toxiproxy API does, with toxiproxy's JSON shapes and statuses:
//! a proxy is a TCP listener whose chain has `forward` (made here, or declared in the config),
//! a toxic is one of its faults.

use std::rc::Rc;

use serde_json::{Value, json};
use tracing::info;

use super::ProxyDef;
use super::toxics::{ApiError, new_toxic, toxic_json, updated_toxic};
use crate::daemon::core::ListenerId;
use crate::daemon::httpd::{Request, Step};
use crate::daemon::{Daemon, Inherited, bind};
use crate::faults::Fault;

type Reply = Result<(u16, Option<Value>), ApiError>;

fn not_found() -> ApiError {
    ApiError::new(404, "proxy not found")
}

/// The fields of a proxy in a request body.
#[derive(Debug, Default)]
struct ProxyInput {
    name: String,
    listen: Option<String>,
    upstream: Option<String>,
    enabled: Option<bool>,
}

fn proxy_input(v: &Value) -> Result<ProxyInput, ApiError> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad_body("expected a JSON object"))?;
    let text = |k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_body(format!("{k} must be a string"))),
    };
    Ok(ProxyInput {
        name: text("name")?.unwrap_or_default(),
        listen: text("listen")?,
        upstream: text("upstream")?,
        enabled: match o.get("enabled") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::bad_body("enabled must be true or false")),
        },
    })
}

impl Daemon {
    /// A client of the API is ready: its request is routed and answered.
    pub(crate) fn api_ready(&mut self, key: usize) {
        let registry = self.poll.registry();
        let Some(api) = self.api.as_mut() else {
            return;
        };
        let (status, body) = match api.server.ready(key, registry, &mut self.tokens) {
            Step::Request(req) => {
                let (status, body) = match self.api_route(&req) {
                    Ok((status, body)) => (status, body.map(|b| b.to_string())),
                    Err(e) => (e.status, Some(e.body())),
                };
                info!(event = "api_request", method = %req.method, path = %req.path, status,
                    "toxiproxy API request");
                (status, body)
            }
            Step::Refused(status) => {
                let why = match status {
                    411 => "send a Content-Length",
                    413 => "request body too large",
                    431 => "request header fields too large",
                    _ => "bad request",
                };
                (status, Some(ApiError::new(status, why).body()))
            }
            Step::Wait | Step::Done | Step::Upgraded(_) => return,
        };
        if let Some(api) = self.api.as_mut() {
            api.server.respond(
                key,
                super::json_response(status, body.as_deref()),
                self.poll.registry(),
                &mut self.tokens,
            );
        }
        self.settle();
    }

    fn api_route(&mut self, req: &Request) -> Reply {
        if req
            .header("user-agent")
            .is_some_and(|ua| ua.trim().starts_with("Mozilla/"))
        {
            return Err(ApiError::new(403, "User agent not allowed"));
        }
        let path = req.path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = || -> Result<Value, ApiError> {
            if req.body.is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_slice(&req.body).map_err(ApiError::bad_body)
        };
        let m = req.method.as_str();
        let update = m == "POST" || m == "PATCH";
        match parts.as_slice() {
            ["version"] if m == "GET" => {
                Ok((200, Some(json!({"version": env!("CARGO_PKG_VERSION")}))))
            }
            ["reset"] if m == "POST" => self.api_reset(),
            ["proxies"] if m == "GET" => {
                let mut all = serde_json::Map::new();
                for name in self.proxy_names() {
                    all.insert(name.clone(), self.proxy_json(&name)?);
                }
                Ok((200, Some(Value::Object(all))))
            }
            ["proxies"] if m == "POST" => {
                let input = proxy_input(&body()?)?;
                self.create_proxy(input).map(|v| (201, Some(v)))
            }
            ["populate"] if m == "POST" => self.populate(&body()?),
            ["proxies", name] if m == "GET" => Ok((200, Some(self.proxy_json(name)?))),
            ["proxies", name] if update => {
                let input = proxy_input(&body()?)?;
                self.update_proxy(name, input)?;
                Ok((200, Some(self.proxy_json(name)?)))
            }
            ["proxies", name] if m == "DELETE" => {
                self.delete_proxy(name)?;
                Ok((204, None))
            }
            ["proxies", name, "toxics"] if m == "GET" => {
                let list: Vec<Value> = self.proxy_faults(name)?.iter().map(toxic_json).collect();
                Ok((200, Some(Value::Array(list))))
            }
            ["proxies", name, "toxics"] if m == "POST" => {
                let fault = new_toxic(&body()?)?;
                let mut list = self.proxy_faults(name)?;
                if list.iter().any(|f| f.name == fault.name) {
                    return Err(ApiError::new(409, "toxic already exists"));
                }
                let shown = toxic_json(&fault);
                list.push(fault);
                self.set_proxy_faults(name, list);
                Ok((200, Some(shown)))
            }
            ["proxies", name, "toxics", toxic] => {
                let mut list = self.proxy_faults(name)?;
                let i = list
                    .iter()
                    .position(|f| f.name == *toxic)
                    .ok_or_else(|| ApiError::new(404, "toxic not found"));
                match m {
                    "GET" => Ok((200, Some(toxic_json(&list[i?])))),
                    "POST" | "PATCH" => {
                        let i = i?;
                        list[i] = updated_toxic(&list[i], &body()?)?;
                        let shown = toxic_json(&list[i]);
                        self.set_proxy_faults(name, list);
                        Ok((200, Some(shown)))
                    }
                    "DELETE" => {
                        list.remove(i?);
                        self.set_proxy_faults(name, list);
                        Ok((204, None))
                    }
                    _ => Err(ApiError::new(405, "method not allowed")),
                }
            }
            ["version" | "reset" | "proxies" | "populate"]
            | ["proxies", _]
            | ["proxies", _, "toxics"] => Err(ApiError::new(405, "method not allowed")),
            _ => Err(ApiError::new(404, "not found")),
        }
    }

    /// The serving listener of a proxy.
    fn proxy_listener(&self, name: &str) -> Option<ListenerId> {
        self.core.listener_named(name).filter(|id| {
            self.core.listener(*id).is_some_and(|l| {
                l.cfg.proto == switchboard_handlers::Proto::Tcp
                    && l.cfg.handler_names.iter().any(|h| h == "forward")
            })
        })
    }

    fn proxy_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .core
            .listeners()
            .filter(|(_, l)| l.is_serving())
            .map(|(_, l)| l.name().to_string())
            .filter(|n| self.proxy_listener(n).is_some())
            .collect();
        if let Some(api) = &self.api {
            names.extend(api.proxies.keys().cloned());
        }
        names.sort();
        names.dedup();
        names
    }

    fn proxy_def(&self, name: &str) -> Option<&ProxyDef> {
        self.api.as_ref()?.proxies.get(name)
    }

    fn proxy_json(&self, name: &str) -> Result<Value, ApiError> {
        let def = self.proxy_def(name);
        let (listen, upstream, enabled) = match self.proxy_listener(name) {
            Some(id) => {
                let l = self.core.listener(id).expect("serving");
                let upstream = match def {
                    Some(d) => d.upstream.clone(),
                    None => configured_upstream(&l.cfg),
                };
                (l.local.to_string(), upstream, true)
            }
            None => {
                let d = def.filter(|d| d.disabled.is_some()).ok_or_else(not_found)?;
                (d.listen.clone(), d.upstream.clone(), false)
            }
        };
        let toxics: Vec<Value> = self.proxy_faults(name)?.iter().map(toxic_json).collect();
        Ok(json!({"name": name, "listen": listen, "upstream": upstream,
            "enabled": enabled, "toxics": toxics}))
    }

    fn proxy_faults(&self, name: &str) -> Result<Vec<Fault>, ApiError> {
        if let Some(id) = self.proxy_listener(name) {
            return Ok(self.core.faults_of(id));
        }
        self.proxy_def(name)
            .and_then(|d| d.disabled.clone())
            .ok_or_else(not_found)
    }

    fn set_proxy_faults(&mut self, name: &str, list: Vec<Fault>) {
        if let Some(id) = self.proxy_listener(name) {
            let seed = self.core.listener(id).map_or(0, |l| l.faults.seed);
            self.core.set_faults(id, seed, list);
        } else if let Some(d) = self.api.as_mut().and_then(|a| a.proxies.get_mut(name)) {
            d.disabled = Some(list);
        }
    }

    /// Bind a proxy's listener: a TCP listener with `forward`, outside the config.
    fn start_proxy(&mut self, name: &str, listen: &str, upstream: &str) -> Result<(), ApiError> {
        let listen_addr = crate::config::resolve(listen).map_err(ApiError::bad_body)?;
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let text = format!(
            "[[listener]]\nname = {}\nprotocol = \"tcp\"\nip = {}\nport = {}\nhandlers = [\"forward\"]\n[listener.forward]\nupstream = {}\n",
            q(name),
            q(&listen_addr.ip().to_string()),
            listen_addr.port(),
            q(upstream)
        );
        let config = crate::config::parse(
            &text,
            std::path::Path::new("<toxiproxy api>"),
            std::path::Path::new("."),
        )
        .map_err(|e| {
            ApiError::bad_body(
                e.0.iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let cfg = config.listeners.into_iter().next().expect("one listener");
        let (socket, local) = bind::bind(&cfg, &mut Inherited::default())
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        let id = self.core.add_listener(Rc::new(cfg), local);
        self.core.mark_api(id);
        if let Err(e) = self.install_socket(id, socket) {
            self.core.remove_listener(id);
            return Err(ApiError::new(500, e.to_string()));
        }
        Ok(())
    }

    fn create_proxy(&mut self, input: ProxyInput) -> Result<Value, ApiError> {
        if input.name.is_empty() {
            return Err(ApiError::new(400, "missing required field: name"));
        }
        let Some(upstream) = input.upstream.filter(|u| !u.is_empty()) else {
            return Err(ApiError::new(400, "missing required field: upstream"));
        };
        if self.proxy_names().contains(&input.name)
            || self.core.listener_named(&input.name).is_some()
        {
            return Err(ApiError::new(409, "proxy already exists"));
        }
        let listen = input.listen.unwrap_or_else(|| "127.0.0.1:0".into());
        let enabled = input.enabled.unwrap_or(true);
        if enabled {
            self.start_proxy(&input.name, &listen, &upstream)?;
        }
        if let Some(api) = self.api.as_mut() {
            api.proxies.insert(
                input.name.clone(),
                ProxyDef {
                    listen,
                    upstream,
                    disabled: (!enabled).then(Vec::new),
                },
            );
        }
        self.proxy_json(&input.name)
    }

    fn update_proxy(&mut self, name: &str, input: ProxyInput) -> Result<(), ApiError> {
        let current = self.proxy_json(name)?;
        let listen = input
            .listen
            .unwrap_or_else(|| current["listen"].as_str().unwrap_or_default().to_string());
        let upstream = input
            .upstream
            .unwrap_or_else(|| current["upstream"].as_str().unwrap_or_default().to_string());
        let was = current["enabled"].as_bool().unwrap_or(false);
        let enabled = input.enabled.unwrap_or(was);
        let moved = listen != current["listen"].as_str().unwrap_or_default()
            || upstream != current["upstream"].as_str().unwrap_or_default();
        let faults = self.proxy_faults(name)?;
        if was && (moved || !enabled) {
            self.stop_proxy(name);
        }
        if enabled && (moved || !was) {
            self.start_proxy(name, &listen, &upstream)?;
            if let Some(id) = self.proxy_listener(name) {
                self.core.set_faults(id, 0, faults.clone());
            }
        }
        if let Some(api) = self.api.as_mut() {
            api.proxies.insert(
                name.to_string(),
                ProxyDef {
                    listen,
                    upstream,
                    disabled: (!enabled).then_some(faults),
                },
            );
        }
        Ok(())
    }

    /// Close a proxy's listener and end its sessions.
    fn stop_proxy(&mut self, name: &str) {
        if let Some(id) = self.proxy_listener(name) {
            self.core.remove_listener(id);
            self.settle();
        }
    }

    fn delete_proxy(&mut self, name: &str) -> Result<(), ApiError> {
        self.proxy_json(name)?;
        self.stop_proxy(name);
        if let Some(api) = self.api.as_mut() {
            api.proxies.remove(name);
        }
        Ok(())
    }

    /// `POST /reset`: every proxy enabled, every toxic removed.
    fn api_reset(&mut self) -> Reply {
        for name in self.proxy_names() {
            let disabled = self.proxy_def(&name).is_some_and(|d| d.disabled.is_some());
            if disabled {
                self.update_proxy(
                    &name,
                    ProxyInput {
                        enabled: Some(true),
                        ..ProxyInput::default()
                    },
                )?;
            }
            self.set_proxy_faults(&name, Vec::new());
        }
        Ok((204, None))
    }

    /// `POST /populate`: create the proxies given, replacing those whose listen or upstream
    /// differ.
    fn populate(&mut self, body: &Value) -> Reply {
        let items = body
            .as_array()
            .ok_or_else(|| ApiError::bad_body("expected a JSON array of proxies"))?;
        let mut inputs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = proxy_input(item)?;
            if p.name.is_empty() {
                return Err(ApiError::new(
                    400,
                    format!("missing required field: name at proxy {}", i + 1),
                ));
            }
            if p.upstream.as_deref().unwrap_or_default().is_empty() {
                return Err(ApiError::new(
                    400,
                    format!("missing required field: upstream at proxy {}", i + 1),
                ));
            }
            inputs.push(p);
        }
        let mut done = Vec::new();
        for p in inputs {
            let name = p.name.clone();
            let result = match self.proxy_json(&name) {
                Ok(cur) => {
                    let same = p.upstream.as_deref() == cur["upstream"].as_str()
                        && p.listen
                            .as_deref()
                            .is_none_or(|l| Some(l) == cur["listen"].as_str());
                    if same {
                        Ok(())
                    } else {
                        self.delete_proxy(&name)
                            .and_then(|()| self.create_proxy(p).map(|_| ()))
                    }
                }
                Err(_) => self.create_proxy(p).map(|_| ()),
            };
            if let Err(e) = result {
                let proxies: Vec<Value> = done
                    .iter()
                    .filter_map(|n: &String| self.proxy_json(n).ok())
                    .collect();
                return Ok((
                    e.status,
                    Some(json!({"error": e.message, "status": e.status, "proxies": proxies})),
                ));
            }
            done.push(name);
        }
        let proxies: Vec<Value> = done
            .iter()
            .filter_map(|n| self.proxy_json(n).ok())
            .collect();
        Ok((201, Some(json!({"proxies": proxies}))))
    }
}

/// The `upstream` of a listener's `forward` table, as written in the config.
fn configured_upstream(cfg: &crate::config::ListenerConfig) -> String {
    cfg.handler_names
        .iter()
        .position(|h| h == "forward")
        .and_then(|i| cfg.handler_sources.get(i))
        .and_then(|src| {
            // The settings as canonical TOML: a table, or an inline one.
            let table = src.parse::<toml::Table>().ok().or_else(|| {
                let wrapped = format!("t = {}", src.lines().next()?);
                wrapped
                    .parse::<toml::Table>()
                    .ok()?
                    .remove("t")?
                    .as_table()
                    .cloned()
            })?;
            table.get("upstream")?.as_str().map(str::to_string)
        })
        .unwrap_or_default()
}
