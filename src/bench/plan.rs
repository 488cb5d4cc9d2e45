//! Command-line arguments of `switchboard bench`, and their validation into a [`Plan`].
//!
//! Parse, then validate: clap turns the words into [`BenchArgs`]; [`BenchArgs::validate`]
//! fills in the per-mode defaults and checks every cross-field rule in one place, without
//! touching the network, so the rules are unit-tested with plain values.

use std::time::Duration;

use switchboard_handlers::Proto;

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send one message, wait for its whole echo, repeat (latency per round trip).
    Pingpong,
    /// Keep writing blocks while reading their echoes, a bounded number in flight (MB/s).
    Bulk,
    /// Connect, send one message, read its echo, close, repeat (connections per second).
    Connect,
}

impl Mode {
    /// The name used on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pingpong => "pingpong",
            Mode::Bulk => "bulk",
            Mode::Connect => "connect",
        }
    }
}

/// Connections when `--connections` is not given: one for the stream modes (the lowest
/// latency a server offers), eight concurrent cycles for `connect` (as loadgen's `conn8`).
pub const DEFAULT_CONNECTIONS: usize = 1;
/// Concurrent connect cycles when `--connections` is not given with `--mode connect`.
pub const DEFAULT_CONNECT_WORKERS: usize = 8;
/// Message size for pingpong and connect cycles when `--size` is not given.
pub const DEFAULT_MESSAGE_SIZE: usize = 64;
/// Message size for connect cycles (loadgen sends 16 bytes per connection).
pub const DEFAULT_CONNECT_SIZE: usize = 16;
/// Block size for bulk when `--size` is not given.
pub const DEFAULT_BLOCK_SIZE: usize = 16 * 1024;
/// Largest TCP message or block: bigger ones measure the memory system, not the server.
pub const MAX_TCP_SIZE: usize = 16 * 1024 * 1024;
/// Largest UDP payload over IPv4.
pub const MAX_UDP_SIZE: usize = 65_507;
/// Largest amount a bulk connection keeps in flight (`--size` times `--in-flight`).
pub const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// Arguments of `switchboard bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  switchboard bench 127.0.0.1:9000 --connections 50 --size 64 --duration 10s
  switchboard bench 127.0.0.1:9000 --mode bulk --connections 10 --in-flight 4
  switchboard bench 127.0.0.1:9000 --mode connect --json
  switchboard bench --udp 127.0.0.1:9000 --connections 50
  switchboard bench --tls --ca cert.pem localhost:8443 --mode connect")]
pub struct BenchArgs {
    /// Echo server to load.
    #[arg(value_name = "HOST:PORT")]
    pub target: String,
    /// Use UDP datagrams (one socket per peer) instead of TCP connections; pingpong only.
    #[arg(long)]
    pub udp: bool,
    /// What each connection does.
    #[arg(long, value_enum, default_value_t = Mode::Pingpong)]
    pub mode: Mode,
    /// Concurrent connections, UDP sockets, or connect cycles [default: 1; 8 for connect].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Bytes per message or block [default: 64; 16384 for bulk; 16 for connect].
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// How long to measure, e.g. 10s, 500ms, 1m.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load the server this long before measuring (nothing of it is counted).
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Bulk only: blocks each connection keeps in flight [default: 1, as loadgen].
    #[arg(long, value_name = "BLOCKS")]
    pub in_flight: Option<usize>,
    /// Event-loop threads sharing the connections (when one core cannot keep up).
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// TLS to the server (TCP only); every connection makes a full handshake, no resumption.
    #[command(flatten)]
    pub tls: crate::tls::ClientTls,
}

/// A validated benchmark: every default filled in, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `HOST:PORT` as given.
    pub target: String,
    /// TCP or UDP.
    pub proto: Proto,
    /// What each connection does.
    pub mode: Mode,
    /// Connections, UDP sockets or concurrent connect cycles.
    pub connections: usize,
    /// Bytes per message or block.
    pub size: usize,
    /// Blocks in flight per connection (1 outside bulk).
    pub in_flight: usize,
    /// Event-loop threads.
    pub threads: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// JSON output.
    pub json: bool,
    /// TLS options (`tls.tls`: TLS on).
    pub tls: crate::tls::ClientTls,
}

/// An invalid combination of arguments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    /// `--connections 0`.
    #[error("--connections must be at least 1")]
    NoConnections,
    /// `--size 0`.
    #[error("--size must be at least 1 byte")]
    EmptyMessage,
    /// A message larger than the transport or the tool allows.
    #[error("--size {size} is too large for {proto}: at most {max} bytes")]
    MessageTooLarge {
        /// Requested size.
        size: usize,
        /// `"TCP"` or `"UDP"`.
        proto: &'static str,
        /// Limit.
        max: usize,
    },
    /// `--udp` with bulk or connect.
    #[error(
        "--udp supports --mode pingpong only (UDP has no streams to fill or connections to open)"
    )]
    UdpMode,
    /// `--in-flight` outside bulk.
    #[error("--in-flight applies to --mode bulk only")]
    InFlightOutsideBulk,
    /// `--in-flight 0`, or too many bytes in flight.
    #[error("--in-flight must be between 1 and {max} blocks of {size} bytes")]
    BadInFlight {
        /// Block size.
        size: usize,
        /// Largest allowed count for that size.
        max: usize,
    },
    /// `--threads 0` or more threads than connections.
    #[error("--threads must be between 1 and --connections ({connections})")]
    BadThreads {
        /// Connections to share.
        connections: usize,
    },
    /// `--duration 0s`.
    #[error("--duration must be longer than zero")]
    NoDuration,
    /// `--udp --tls`.
    #[error("--tls is for TCP: UDP has no TLS (DTLS is not supported)")]
    UdpTls,
}

impl BenchArgs {
    /// Fill in the per-mode defaults and check the arguments against each other.
    pub fn validate(self) -> Result<Plan, ArgError> {
        let proto = if self.udp { Proto::Udp } else { Proto::Tcp };
        if proto == Proto::Udp && self.mode != Mode::Pingpong {
            return Err(ArgError::UdpMode);
        }
        if proto == Proto::Udp && self.tls.tls {
            return Err(ArgError::UdpTls);
        }
        let connections = self.connections.unwrap_or(match self.mode {
            Mode::Connect => DEFAULT_CONNECT_WORKERS,
            Mode::Pingpong | Mode::Bulk => DEFAULT_CONNECTIONS,
        });
        if connections == 0 {
            return Err(ArgError::NoConnections);
        }
        let size = self.size.unwrap_or(match self.mode {
            Mode::Pingpong => DEFAULT_MESSAGE_SIZE,
            Mode::Bulk => DEFAULT_BLOCK_SIZE,
            Mode::Connect => DEFAULT_CONNECT_SIZE,
        });
        if size == 0 {
            return Err(ArgError::EmptyMessage);
        }
        let (max, proto_name) = match proto {
            Proto::Tcp => (MAX_TCP_SIZE, "TCP"),
            Proto::Udp => (MAX_UDP_SIZE, "UDP"),
        };
        if size > max {
            return Err(ArgError::MessageTooLarge {
                size,
                proto: proto_name,
                max,
            });
        }
        let in_flight = match (self.mode, self.in_flight) {
            (Mode::Bulk, n) => {
                let n = n.unwrap_or(1);
                let max = (MAX_IN_FLIGHT_BYTES / size).max(1);
                if n == 0 || n > max {
                    return Err(ArgError::BadInFlight { size, max });
                }
                n
            }
            (_, Some(_)) => return Err(ArgError::InFlightOutsideBulk),
            (_, None) => 1,
        };
        if self.threads == 0 || self.threads > connections {
            return Err(ArgError::BadThreads { connections });
        }
        if self.duration.is_zero() {
            return Err(ArgError::NoDuration);
        }
        Ok(Plan {
            target: self.target,
            proto,
            mode: self.mode,
            connections,
            size,
            in_flight,
            threads: self.threads,
            duration: self.duration,
            warmup: self.warmup,
            json: self.json,
            tls: self.tls,
        })
    }
}

/// A time span as humantime writes it (`10s`, `1m30s`, `250ms`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is not a duration in seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); try 10s or 500ms"))
}

/// How `total` connections are dealt to `threads` threads: as evenly as possible, the
/// first threads taking one more when it does not divide.
pub fn split(total: usize, threads: usize) -> Vec<usize> {
    let threads = threads.max(1);
    (0..threads)
        .map(|i| total / threads + usize::from(i < total % threads))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: Mode) -> BenchArgs {
        BenchArgs {
            target: "127.0.0.1:9000".into(),
            udp: false,
            mode,
            connections: None,
            size: None,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            in_flight: None,
            threads: 1,
            json: false,
            tls: Default::default(),
        }
    }

    #[test]
    fn defaults_follow_the_mode() {
        let p = args(Mode::Pingpong).validate().unwrap();
        assert_eq!((p.connections, p.size, p.in_flight), (1, 64, 1));
        assert_eq!(p.proto, Proto::Tcp);
        let b = args(Mode::Bulk).validate().unwrap();
        assert_eq!((b.connections, b.size, b.in_flight), (1, 16384, 1));
        let c = args(Mode::Connect).validate().unwrap();
        assert_eq!((c.connections, c.size, c.in_flight), (8, 16, 1));
    }

    #[test]
    fn udp_is_pingpong_only() {
        let mut a = args(Mode::Pingpong);
        a.udp = true;
        assert_eq!(a.clone().validate().unwrap().proto, Proto::Udp);
        a.mode = Mode::Bulk;
        assert_eq!(a.clone().validate(), Err(ArgError::UdpMode));
        a.mode = Mode::Connect;
        assert_eq!(a.validate(), Err(ArgError::UdpMode));
    }

    #[test]
    fn zero_counts_are_refused() {
        let mut a = args(Mode::Pingpong);
        a.connections = Some(0);
        assert_eq!(a.validate(), Err(ArgError::NoConnections));
        let mut a = args(Mode::Pingpong);
        a.size = Some(0);
        assert_eq!(a.validate(), Err(ArgError::EmptyMessage));
        let mut a = args(Mode::Pingpong);
        a.duration = Duration::ZERO;
        assert_eq!(a.validate(), Err(ArgError::NoDuration));
    }

    #[test]
    fn sizes_are_bounded_by_the_transport() {
        let mut a = args(Mode::Pingpong);
        a.udp = true;
        a.size = Some(MAX_UDP_SIZE);
        assert!(a.clone().validate().is_ok());
        a.size = Some(MAX_UDP_SIZE + 1);
        let err = a.validate().unwrap_err();
        assert!(matches!(
            err,
            ArgError::MessageTooLarge { proto: "UDP", .. }
        ));
        assert!(err.to_string().contains("65507"), "{err}");
        let mut a = args(Mode::Bulk);
        a.size = Some(MAX_TCP_SIZE + 1);
        assert!(matches!(
            a.validate(),
            Err(ArgError::MessageTooLarge { proto: "TCP", .. })
        ));
    }

    #[test]
    fn in_flight_is_for_bulk_and_bounded() {
        let mut a = args(Mode::Pingpong);
        a.in_flight = Some(2);
        assert_eq!(a.validate(), Err(ArgError::InFlightOutsideBulk));
        let mut a = args(Mode::Bulk);
        a.in_flight = Some(8);
        assert_eq!(a.clone().validate().unwrap().in_flight, 8);
        a.in_flight = Some(0);
        assert!(matches!(
            a.clone().validate(),
            Err(ArgError::BadInFlight { .. })
        ));
        a.in_flight = Some(MAX_IN_FLIGHT_BYTES / DEFAULT_BLOCK_SIZE + 1);
        assert!(matches!(a.validate(), Err(ArgError::BadInFlight { .. })));
    }

    #[test]
    fn threads_need_a_connection_each() {
        let mut a = args(Mode::Pingpong);
        a.connections = Some(2);
        a.threads = 3;
        assert_eq!(
            a.clone().validate(),
            Err(ArgError::BadThreads { connections: 2 })
        );
        a.threads = 0;
        assert_eq!(
            a.clone().validate(),
            Err(ArgError::BadThreads { connections: 2 })
        );
        a.threads = 2;
        assert_eq!(a.validate().unwrap().threads, 2);
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn connections_are_dealt_evenly() {
        assert_eq!(split(10, 1), vec![10]);
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 2), vec![1, 1]);
        assert_eq!(split(500, 4).iter().sum::<usize>(), 500);
    }
}
