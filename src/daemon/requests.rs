//! What control clients ask (`attach`, `status`, `reload`, `watch`, `fault`) and what goes
//! back to them; the socket side is `control.rs`.

use super::{Daemon, ShellDue, control, core, tcp};

impl Daemon {
    /// A control client is ready.
    pub(super) fn control_ready(&mut self, op: core::OpId, readable: bool, writable: bool) {
        let mut lines = Vec::new();
        let gone = self.control.ready(
            op,
            readable,
            writable,
            &mut self.buf,
            self.poll.registry(),
            &mut lines,
        );
        for line in lines {
            match line {
                control::Line::Operator(op, text) => {
                    if self.control.is_attached(op) {
                        self.core.operator_line(op, &text);
                        self.settle();
                    }
                }
                control::Line::Request(op, text) => {
                    if !self.control_request(op, &text) {
                        return;
                    }
                }
            }
        }
        if let Some(why) = gone {
            self.drop_client(op, why);
        }
    }

    /// The first line of a control client. Returns whether to go on with the client: false
    /// once it is answered and dropped, or while it waits for a reload (which answers it, even
    /// if the client has already closed its side).
    fn control_request(&mut self, op: core::OpId, line: &str) -> bool {
        let reply: Vec<String> = match line.trim() {
            "attach" => {
                if let Some(name) = self.control.attach(op) {
                    self.core.attach_operator(op, name, true);
                    self.settle();
                }
                return true;
            }
            "status" => self.core.status_lines(),
            w if w == "watch" || w.starts_with("watch ") => {
                match control::Watch::parse(&w["watch".len()..]) {
                    Ok(watch) => {
                        let hello = serde_json::json!({"event": "watching",
                            "listener": watch.listener, "session": watch.session});
                        self.control.watch(op, watch);
                        self.watchers_changed();
                        self.tell(op, &hello.to_string());
                        return true;
                    }
                    Err(e) => vec![format!("(!) {e}")],
                }
            }
            f if f == "fault" || f.starts_with("fault ") => {
                let reply = self.fault_request(&f["fault".len()..]);
                self.settle();
                reply
            }
            "reload" => {
                // Answered when the config has been read and applied.
                self.reload(Some(op));
                return false;
            }
            other => vec![format!(
                "(!) unknown request {other:?}: expected attach, status, reload, watch or fault"
            )],
        };
        for l in reply {
            self.control.tell(op, &l, self.poll.registry());
        }
        self.drop_client(op, "request answered");
        false
    }

    /// `fault add LISTENER key=value...`, `fault remove LISTENER NAME`, `fault list
    /// [LISTENER]`, `fault reset [LISTENER]`: each applied at once, all or nothing.
    fn fault_request(&mut self, args: &str) -> Vec<String> {
        let words: Vec<&str> = args.split_whitespace().collect();
        let find = |core: &core::Core, name: &str| {
            core.listener_named(name)
                .ok_or_else(|| format!("(!) no listener named {name:?} is serving"))
        };
        let chosen = |core: &core::Core, name: Option<&&str>| match name {
            Some(n) => find(core, n).map(|id| vec![id]),
            None => Ok(core
                .listeners()
                .filter(|(_, l)| l.is_serving())
                .map(|(id, _)| id)
                .collect()),
        };
        let result = match words.as_slice() {
            ["add", listener, spec @ ..] if !spec.is_empty() => {
                find(&self.core, listener).and_then(|id| {
                    let proto = self.core.listener(id).expect("found").cfg.proto;
                    let fault = crate::config::parse_fault_words(spec, proto)
                        .map_err(|e| format!("(!) {e}"))?;
                    let name = fault.name.clone();
                    self.core
                        .add_fault(id, fault)
                        .map_err(|e| format!("(!) {e}"))?;
                    Ok(vec![format!("added fault {name:?} to {listener:?}")])
                })
            }
            ["remove", listener, name] => find(&self.core, listener).and_then(|id| {
                self.core
                    .remove_fault(id, name)
                    .map_err(|e| format!("(!) {e}"))?;
                Ok(vec![format!("removed fault {name:?} from {listener:?}")])
            }),
            ["list"] | ["list", _] => chosen(&self.core, words.get(1)).map(|ids| {
                let mut lines = Vec::new();
                for id in ids {
                    let name = self.core.listener(id).map_or("", |l| l.name()).to_string();
                    for f in self.core.faults_of(id) {
                        lines.push(format!("{name} {f}"));
                    }
                }
                if lines.is_empty() {
                    lines.push("no faults".into());
                }
                lines
            }),
            ["reset"] | ["reset", _] => chosen(&self.core, words.get(1)).map(|ids| {
                let mut n = 0;
                for id in ids {
                    n += self.core.faults_of(id).len();
                    let seed = self.core.listener(id).map_or(0, |l| l.faults.seed);
                    self.core.set_faults(id, seed, Vec::new());
                }
                vec![format!("removed {n} fault(s)")]
            }),
            _ => Err("(!) usage: fault add LISTENER kind=KIND [key=value...] | fault remove                  LISTENER NAME | fault list [LISTENER] | fault reset [LISTENER]"
                .into()),
        };
        result.unwrap_or_else(|e| vec![e])
    }

    /// A line for an operator.
    pub(super) fn tell(&mut self, op: core::OpId, line: &str) {
        if let Some(key) = super::web::client_of(op) {
            return self.web_tell(key, line);
        }
        if let Some(why) = self.control.tell(op, line, self.poll.registry()) {
            self.drop_client(op, why);
        }
    }

    pub(super) fn drop_client(&mut self, op: core::OpId, why: &str) {
        if self
            .control
            .remove(op, why, self.poll.registry(), &mut self.tokens)
        {
            self.core.detach_operator(op, why);
            if self.stdin_op == Some(op) {
                self.stdin_op = None;
            }
        }
        self.watchers_changed();
    }

    pub(super) fn control_accept(&mut self) {
        if !self.control.accept(self.poll.registry(), &mut self.tokens) {
            self.timers
                .push(self.now + tcp::ACCEPT_RETRY, ShellDue::RetryControl);
        }
    }
}
