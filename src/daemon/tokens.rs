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
    /// A listener's socket.
    Listener(ListenerId),
    /// A session's connection (its transport).
    Session(SessionKey),
    /// The control socket's listening socket.
    Control,
    /// A control client (an operator, or a `status`/`reload` request).
    ControlClient(usize),
    /// The daemon's stdin, read as an operator console.
    Stdin,
    /// The metrics endpoint's listening socket.
    Metrics,
    /// A metrics scraper's connection.
    Scraper(usize),
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
        let b = t.add(Owner::Session(7));
        assert_eq!(t.owner(b), Some(Owner::Session(7)));
        t.remove(b);
        assert_eq!(t.owner(b), None);
        let c = t.add(Owner::Metrics);
        assert_eq!(c, b, "a freed slot is reused");
        assert_eq!(t.owner(a), Some(Owner::Signals));
        assert_eq!(t.owner(Token(usize::MAX)), None);
    }
}
