//! Faults: what a listener does to the bytes that flow through it, to make a server look
//! slow, lossy, cut off or rude, the same way on every run.
//!
//! A [`Fault`] is declared per listener (`[[listener.fault]]`), added at run time (`switchboard
//! fault add`, the toxiproxy API) or changed by a reload. It applies in one [`Direction`]:
//! `to_client`, a session's output (its handlers' replies; what a `forward` upstream sends);
//! or `to_server`, the input of a session's channels (what a `forward` handler relays to the
//! upstream; a program's stdin). Selectors narrow it to some peers (`sources`), some sessions
//! (`sessions`, the n-th of the listener), some messages (`messages`, the n-th of the session
//! in that direction) and a time window (`after`, `for`, from when the fault came into force),
//! and `toxicity` is the share of sessions (TCP) or datagrams (UDP) it touches. Every random
//! draw comes from a generator seeded by the listener's `seed` and the session's number, so a
//! run is reproducible. The pure engine that applies them is [`shape`].

pub mod shape;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::acl::Cidr;

/// Which way a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// What the session sends its peer (toxiproxy's `downstream`).
    ToClient,
    /// What the session's channels are given: the upstream's input (toxiproxy's `upstream`).
    ToServer,
}

impl Direction {
    /// `to_client` or `to_server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToClient => "to_client",
            Direction::ToServer => "to_server",
        }
    }
}

/// What a fault does, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Hold each chunk (TCP) or datagram (UDP) back `latency`, give or take up to `jitter`.
    Latency {
        /// The delay.
        latency: Duration,
        /// The most it varies either way.
        jitter: Duration,
    },
    /// Pass at most `rate` bytes per second.
    Bandwidth {
        /// Bytes per second.
        rate: u64,
    },
    /// Cut the stream into pieces of about `average_size` bytes (± `size_variation`), with
    /// `delay` between them: one send is not one recv.
    Slicer {
        /// Bytes per piece, on average.
        average_size: usize,
        /// The most a piece's size varies either way.
        size_variation: usize,
        /// Pause between pieces.
        delay: Duration,
    },
    /// Hold the FIN back this long after the data.
    SlowClose {
        /// The delay.
        delay: Duration,
    },
    /// Reset the connections (RST) `timeout` after data first flows this way, or once
    /// `bytes` have passed.
    ResetPeer {
        /// The delay after the first data.
        timeout: Duration,
        /// Reset after this many bytes instead.
        bytes: Option<u64>,
    },
    /// Pass nothing; close the session after `timeout` (zero: never).
    Timeout {
        /// How long until the close.
        timeout: Duration,
    },
    /// Close the session once `bytes` have passed this way.
    LimitData {
        /// The limit.
        bytes: u64,
    },
    /// Change each byte with this probability (XOR with a random non-zero value).
    Corrupt {
        /// Per byte, 0 to 1.
        probability: f64,
    },
    /// UDP: drop a datagram with this probability.
    Loss {
        /// Per datagram, 0 to 1.
        probability: f64,
    },
    /// UDP: send a datagram twice with this probability.
    Duplicate {
        /// Per datagram, 0 to 1.
        probability: f64,
    },
    /// UDP: hold a datagram back `delay` with this probability, so that those behind it
    /// overtake it.
    Reorder {
        /// Per datagram, 0 to 1.
        probability: f64,
        /// How long a chosen datagram is held back.
        delay: Duration,
    },
}

/// The names of the kinds, as written in the config.
pub const KINDS: &[&str] = &[
    "latency",
    "bandwidth",
    "slicer",
    "slow_close",
    "reset_peer",
    "timeout",
    "limit_data",
    "corrupt",
    "loss",
    "duplicate",
    "reorder",
    "delay",
];

impl Kind {
    /// The kind's name (`delay` is written as `latency`).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Latency { .. } => "latency",
            Kind::Bandwidth { .. } => "bandwidth",
            Kind::Slicer { .. } => "slicer",
            Kind::SlowClose { .. } => "slow_close",
            Kind::ResetPeer { .. } => "reset_peer",
            Kind::Timeout { .. } => "timeout",
            Kind::LimitData { .. } => "limit_data",
            Kind::Corrupt { .. } => "corrupt",
            Kind::Loss { .. } => "loss",
            Kind::Duplicate { .. } => "duplicate",
            Kind::Reorder { .. } => "reorder",
        }
    }

    /// Whether it applies to a byte stream (TCP), to datagrams (UDP), or both.
    pub fn fits(&self, datagrams: bool) -> bool {
        match self {
            Kind::Latency { .. }
            | Kind::Bandwidth { .. }
            | Kind::Timeout { .. }
            | Kind::Corrupt { .. } => true,
            Kind::Slicer { .. }
            | Kind::SlowClose { .. }
            | Kind::ResetPeer { .. }
            | Kind::LimitData { .. } => !datagrams,
            Kind::Loss { .. } | Kind::Duplicate { .. } | Kind::Reorder { .. } => datagrams,
        }
    }
}

/// An inclusive range of counts, 1-based (`"1..=2"`, `"3.."`, `"5"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The first counted.
    pub first: u64,
    /// The last counted (`u64::MAX`: no end).
    pub last: u64,
}

impl Counts {
    /// Whether `n` is in it.
    pub fn contains(&self, n: u64) -> bool {
        (self.first..=self.last).contains(&n)
    }

    /// Read `"1..=2"`, `"1..3"`, `"3.."`, `"..=4"` or `"5"`.
    pub fn parse(text: &str) -> Result<Counts, String> {
        let t = text.trim();
        let num = |s: &str| -> Result<u64, String> {
            s.trim().parse::<u64>().map_err(|_| {
                format!("{text:?} is not a range of counts; write e.g. \"1..=2\", \"3..\" or \"5\"")
            })
        };
        let (first, last) = if let Some((a, b)) = t.split_once("..=") {
            (if a.is_empty() { 1 } else { num(a)? }, num(b)?)
        } else if let Some((a, b)) = t.split_once("..") {
            let first = if a.is_empty() { 1 } else { num(a)? };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                num(b)?.checked_sub(1).ok_or("an empty range")?
            };
            (first, last)
        } else {
            let n = num(t)?;
            (n, n)
        };
        if first == 0 {
            return Err(format!(
                "{text:?}: counts start at 1 (the first session or message)"
            ));
        }
        if last < first {
            return Err(format!("{text:?} is an empty range"));
        }
        Ok(Counts { first, last })
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (a, b) if a == b => write!(f, "{a}"),
            (a, u64::MAX) => write!(f, "{a}.."),
            (a, b) => write!(f, "{a}..={b}"),
        }
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Unique within its listener.
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// Which way.
    pub direction: Direction,
    /// The share of sessions (TCP) or datagrams (UDP) it touches, 0 to 1.
    pub toxicity: f64,
    /// Only peers in these networks (empty: every peer).
    pub sources: Vec<Cidr>,
    /// Only the n-th sessions of the listener.
    pub sessions: Option<Counts>,
    /// Only the n-th messages of a session, this way.
    pub messages: Option<Counts>,
    /// Not before this long after it came into force.
    pub after: Duration,
    /// For this long from then (`None`: for good).
    pub lasts: Option<Duration>,
}

impl Fault {
    /// A fault of `kind` with no selectors, named `<kind>_<direction>`.
    pub fn new(kind: Kind, direction: Direction) -> Fault {
        Fault {
            name: format!("{}_{}", kind.name(), direction.as_str()),
            kind,
            direction,
            toxicity: 1.0,
            sources: Vec::new(),
            sessions: None,
            messages: None,
            after: Duration::ZERO,
            lasts: None,
        }
    }

    /// Whether it may touch a session of `peer`, the `ordinal`-th of its listener.
    pub fn selects(&self, peer: IpAddr, ordinal: u64) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|c| c.contains(peer)))
            && self.sessions.is_none_or(|c| c.contains(ordinal))
    }
}

impl fmt::Display for Fault {
    /// One line: name, kind, direction, settings and selectors, as `fault list` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        write!(
            f,
            "{} kind={} direction={}",
            self.name,
            self.kind.name(),
            self.direction.as_str()
        )?;
        match &self.kind {
            Kind::Latency { latency, jitter } => {
                write!(f, " latency={} jitter={}", d(latency), d(jitter))?
            }
            Kind::Bandwidth { rate } => write!(f, " rate={rate}")?,
            Kind::Slicer {
                average_size,
                size_variation,
                delay,
            } => write!(
                f,
                " average_size={average_size} size_variation={size_variation} delay={}",
                d(delay)
            )?,
            Kind::SlowClose { delay } => write!(f, " delay={}", d(delay))?,
            Kind::ResetPeer { timeout, bytes } => {
                write!(f, " timeout={}", d(timeout))?;
                if let Some(b) = bytes {
                    write!(f, " bytes={b}")?;
                }
            }
            Kind::Timeout { timeout } => write!(f, " timeout={}", d(timeout))?,
            Kind::LimitData { bytes } => write!(f, " bytes={bytes}")?,
            Kind::Corrupt { probability }
            | Kind::Loss { probability }
            | Kind::Duplicate { probability } => write!(f, " probability={probability}")?,
            Kind::Reorder { probability, delay } => {
                write!(f, " probability={probability} delay={}", d(delay))?
            }
        }
        if self.toxicity < 1.0 {
            write!(f, " toxicity={}", self.toxicity)?;
        }
        if !self.sources.is_empty() {
            let s: Vec<String> = self.sources.iter().map(|c| c.to_string()).collect();
            write!(f, " sources={}", s.join(","))?;
        }
        if let Some(c) = self.sessions {
            write!(f, " sessions={c}")?;
        }
        if let Some(c) = self.messages {
            write!(f, " messages={c}")?;
        }
        if !self.after.is_zero() {
            write!(f, " after={}", d(&self.after))?;
        }
        if let Some(l) = &self.lasts {
            write!(f, " for={}", d(l))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_every_spelling() {
        let c = |t| Counts::parse(t).unwrap();
        assert_eq!(c("1..=2"), Counts { first: 1, last: 2 });
        assert_eq!(c("1..3"), Counts { first: 1, last: 2 });
        assert_eq!(
            c("3.."),
            Counts {
                first: 3,
                last: u64::MAX
            }
        );
        assert_eq!(c("..=4"), Counts { first: 1, last: 4 });
        assert_eq!(c("5"), Counts { first: 5, last: 5 });
        assert!(Counts::parse("0..2").is_err());
        assert!(Counts::parse("3..=2").is_err());
        assert!(Counts::parse("a").is_err());
        assert_eq!(c("2..").to_string(), "2..");
        assert_eq!(c("1..=2").to_string(), "1..=2");
    }
}
