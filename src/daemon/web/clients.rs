//! A browser connected to the console: its WebSocket (tungstenite over the loop's own
//! non-blocking socket: no runtime, no thread), what it asks, and what goes to it.
//!
//! Everything to a browser goes out at once; what the socket does not take waits in the
//! WebSocket's write buffer, capped at [`MAX_BUFFERED`]: a browser that stops reading is
//! dropped when it is full, never waited for.

use std::io;

use mio::Token;
use mio::net::TcpStream;
use serde::Deserialize;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Why a browser that does not read is dropped.
pub(crate) const SLOW: &str = "it does not read";
/// Bytes waiting for a browser before it is dropped.
pub(crate) const MAX_BUFFERED: usize = 1024 * 1024;
/// The largest message a browser may send (an answer, a command).
const MAX_MESSAGE: usize = 16 * 1024;
/// Messages read from one browser per readiness event before others get a turn.
const MAX_READS: usize = 32;

/// What a browser asks, one JSON object per WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Ask {
    /// Be an operator: see the desk and act on it.
    Desk,
    /// Follow the live events, or stop.
    Live { on: bool },
    /// Answer a session.
    Say { session: u64, text: String },
    /// Take a session from its bot (or from another operator).
    Take { session: u64 },
    /// Give it back to its bot.
    Release { session: u64 },
    /// End it.
    Close { session: u64 },
    /// Send one of its listener's canned replies.
    Canned { session: u64, name: String },
}

/// One browser.
#[derive(Debug)]
pub(crate) struct Client {
    ws: WebSocket<TcpStream>,
    pub(crate) token: Token,
    /// The login it came with: it ends with it.
    pub(crate) login: String,
    /// The name it logged in with.
    pub(crate) name: String,
    /// An operator (attached to the core).
    pub(crate) desk: bool,
    /// Following the live events.
    pub(crate) live: bool,
}

impl Client {
    /// A client on a socket whose upgrade was answered.
    pub(crate) fn new(stream: TcpStream, token: Token, login: String, name: String) -> Client {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_BUFFERED);
        Client {
            ws: WebSocket::from_raw_socket(stream, Role::Server, Some(config)),
            token,
            login,
            name,
            desk: false,
            live: false,
        }
    }

    /// The socket, to register or deregister it.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        self.ws.get_mut()
    }

    /// Read what it sent into `asks` (what is not understood is answered with an error
    /// message); `Err` with why it is gone.
    pub(crate) fn read(&mut self, asks: &mut Vec<Ask>) -> Result<(), &'static str> {
        for _ in 0..MAX_READS {
            match self.ws.read() {
                Ok(Message::Text(t)) => match serde_json::from_str::<Ask>(t.as_str()) {
                    Ok(a) => asks.push(a),
                    Err(e) => {
                        let m = serde_json::json!({"t": "error", "text": format!("not understood: {e}")});
                        self.send(&m.to_string())?;
                    }
                },
                Ok(Message::Close(_)) => return Err("it closed"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(());
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err("it closed");
                }
                Err(e) => {
                    tracing::debug!(event = "web_client_error", error = %e, "web console: a browser's WebSocket failed");
                    return Err("it broke the protocol");
                }
            }
        }
        Ok(())
    }

    /// Send one message; `Err` with why it is gone (its buffer is full, or the socket
    /// failed).
    pub(crate) fn send(&mut self, text: &str) -> Result<(), &'static str> {
        match self.ws.send(Message::text(text)) {
            Ok(()) => Ok(()),
            Err(e) => settled(e),
        }
    }

    /// Write what is buffered (the socket is writable again).
    pub(crate) fn flush(&mut self) -> Result<(), &'static str> {
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(e) => settled(e),
        }
    }
}

/// A write's error: `Ok` when the rest simply waits for the socket.
fn settled(e: tungstenite::Error) -> Result<(), &'static str> {
    match e {
        tungstenite::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(())
        }
        tungstenite::Error::WriteBufferFull(_) => Err(SLOW),
        _ => Err("it closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_tagged_objects_and_nothing_else() {
        let a: Ask =
            serde_json::from_str(r#"{"op":"say","session":3,"text":"<b>hi</b>"}"#).unwrap();
        assert_eq!(
            a,
            Ask::Say {
                session: 3,
                text: "<b>hi</b>".into()
            }
        );
        let a: Ask =
            serde_json::from_str(r#"{"op":"canned","session":1,"name":"thanks"}"#).unwrap();
        assert_eq!(
            a,
            Ask::Canned {
                session: 1,
                name: "thanks".into()
            }
        );
        for bad in [
            r#"{"op":"say","session":"1","text":"x"}"#,
            r#"{"op":"take","session":1,"extra":1}"#,
            r#"{"op":"shutdown"}"#,
        ] {
            assert!(serde_json::from_str::<Ask>(bad).is_err(), "{bad}");
        }
    }
}
