//! Any script text for the `scripted-reply` handler, then any messages and timer firings in a
//! session: building refuses or succeeds without a panic, and the session keeps the handler's
//! promises.
//!
//! Input: one flags byte (bit 0: UDP session), the script up to the first NUL byte, then
//! NUL-separated events; an event that starts with byte 1 fires the pending timers, any
//! other is a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_handlers::testutil::{Harness, build_one};
use switchboard_handlers::{Action, CloseReason, Flow, HandlerFactory, Outbox, Proto};

use std::sync::Arc;

/// What one call produced, to compare two runs.
#[derive(Debug, PartialEq)]
struct Step {
    data: Vec<u8>,
    actions: Vec<Action>,
    flow: Option<Flow>,
}

fn step(out: &Outbox, flow: Option<Flow>) -> Step {
    Step {
        data: out.data().to_vec(),
        actions: out.actions().to_vec(),
        flow,
    }
}

/// Run a session through `events`, checking as it goes; returns every call's output.
fn session(factory: &Arc<dyn HandlerFactory>, udp: bool, events: &[&[u8]]) -> Vec<Step> {
    let mut h = Harness::from_factories(std::slice::from_ref(factory));
    if udp {
        h.session.proto = Proto::Udp;
    }
    let mut steps = vec![step(h.open(), None)];
    let mut closed = steps[0]
        .actions
        .iter()
        .any(|a| matches!(a, Action::Close { .. }));
    for e in events {
        let s = if e.first() == Some(&1) {
            step(h.fire_timers(), None)
        } else {
            let (data, actions) = {
                let out = h.message(e);
                (out.data().to_vec(), out.actions().to_vec())
            };
            let s = Step {
                data,
                actions,
                flow: h.flow(),
            };
            if s.flow == Some(Flow::Pass) {
                assert!(
                    s.data.is_empty(),
                    "sent {:?} for a message it passed on",
                    s.data
                );
                assert!(
                    s.actions.is_empty(),
                    "acted {:?} on a message it passed on",
                    s.actions
                );
            }
            s
        };
        if closed {
            assert!(s.data.is_empty(), "sent {:?} after closing", s.data);
        }
        closed |= s.actions.iter().any(|a| matches!(a, Action::Close { .. }));
        steps.push(s);
    }
    h.close(CloseReason::PeerClosed);
    steps
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let Some(Ok(script)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let events: Vec<&[u8]> = parts.take(200).collect();
    let factory = match build_one("scripted-reply", script) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let udp = flags & 1 == 1;
    let first = session(&factory, udp, &events);
    // Answers, random picks included, depend only on the session: a second run is the same.
    let second = session(&factory, udp, &events);
    assert_eq!(first, second, "the same session answered differently");
});
