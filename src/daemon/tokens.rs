//! One token space for everything registered with the poller: each token is a slot in one
//! slab that names its owner. No reserved ranges, no magic bases.

use mio::Token;
use slab::Slab;

use super::core::{ListenerId, SessionKey};

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The signal pipe.
    Signals,
    /// The waker another thread uses to hand its result to the loop (a config read).
    Waker,
    /// The timer that wakes the loop for its next deadline (`alarm.rs`).
    Alarm,
    /// A listener's socket.
    Listener(ListenerId),
    /// A part of a session: its connection, or something else it owns.
    Session(SessionKey, Part),
    /// The control socket's listening socket.
    Control,
    /// A control client (an operator, or a `status`/`reload` request).
    ControlClient(usize),
    /// The daemon's stdin, read as an operator console.
    Stdin,
    /// An HTTP site's listening socket (the metrics endpoint, the toxiproxy API, the web
    /// console).
    Http(super::httpd::Site),
    /// A connection of an HTTP site, until it is answered (or upgraded).
    HttpConn(super::httpd::Site, usize),
    /// A browser's WebSocket (`web/clients.rs`).
    WebClient(usize),
    /// A pipe of a listener's shared child (`ChanRef::Shared`).
    Shared(usize, Pipe),
}

/// The parts of a session the poller watches. Everything a session owns is registered under
/// its key and dropped with it (`Daemon::release_session`), on its end, at reload and at stop:
/// a child's pipes or an upstream connection become parts here, with no special case
/// elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The peer's connection, through its transport.
    Peer,
    /// A pipe of a channel the session's handlers opened (`ChanRef::Session`'s slot).
    Channel(u16, Pipe),
}

/// Which descriptor of a channel a token stands for: a child's pipe, or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipe {
    Stdin,
    Stdout,
    Stderr,
    /// An upstream connection's socket (a connect channel).
    Socket,
}

/// The owners of the tokens in use.
#[derive(Debug, Default)]
pub(crate) struct Tokens(Slab<Owner>);

impl Tokens {
    /// A token for `owner`.
    pub(crate) fn add(&mut self, owner: Owner) -> Token {
        Token(self.0.insert(owner))
    }

    /// The owner of `token`, if it is in use.
    pub(crate) fn owner(&self, token: Token) -> Option<Owner> {
        self.0.get(token.0).copied()
    }

    /// The token is no longer registered.
    pub(crate) fn remove(&mut self, token: Token) {
        self.0.try_remove(token.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_owner_and_are_reused_after_removal() {
        let mut t = Tokens::default();
        let a = t.add(Owner::Signals);
        let b = t.add(Owner::Session(7, Part::Peer));
        assert_eq!(t.owner(b), Some(Owner::Session(7, Part::Peer)));
        t.remove(b);
        assert_eq!(t.owner(b), None);
        let c = t.add(Owner::Waker);
        assert_eq!(c, b, "a freed slot is reused");
        assert_eq!(t.owner(a), Some(Owner::Signals));
        assert_eq!(t.owner(c), Some(Owner::Waker));
        assert_eq!(t.owner(Token(usize::MAX)), None);
    }
}
