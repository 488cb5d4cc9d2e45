//! What control clients ask (`attach`, `status`, `reload`, `watch`) and what goes back to
//! them; the socket side is `control.rs`.

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
            "reload" => {
                // Answered when the config has been read and applied.
                self.reload(Some(op));
                return false;
            }
            other => vec![format!(
                "(!) unknown request {other:?}: expected attach, status, reload or watch"
            )],
        };
        for l in reply {
            self.control.tell(op, &l, self.poll.registry());
        }
        self.drop_client(op, "request answered");
        false
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
