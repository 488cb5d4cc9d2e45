//! The client commands: `send` and `chat`, the tutorial's client programs.
//!
//! They are plain blocking clients (std sockets, one reader thread for `chat`), not part of the
//! daemon's event loop. What they share lives here: the arguments, the `HOST:PORT` target, and
//! connecting with errors a user can act on.

mod attach;
mod chat;
mod send;
mod tls;
mod watch;

pub use attach::{AttachArgs, attach, request};
pub use watch::{WatchArgs, watch};

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;
use switchboard_handlers::Proto;

use anyhow::anyhow;

/// Arguments of `switchboard send`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = SEND_HELP)]
pub struct SendArgs {
    /// Use UDP: MESSAGE goes out as one datagram and the first datagram back is the reply.
    #[arg(short, long)]
    udp: bool,
    /// Append a newline to MESSAGE (by default it is sent exactly as given, as the tutorial's
    /// clients do).
    #[arg(short, long)]
    newline: bool,
    /// Send and close without waiting for a reply (the tutorial's one-shot TCP client).
    #[arg(long)]
    no_reply: bool,
    /// How long to wait for the connection and then for the reply to start.
    #[arg(short = 'w', long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// TCP: once the reply has started, it is complete when nothing more arrives for this long
    /// (or when the server closes).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    idle: Duration,
    #[command(flatten)]
    tls: crate::tls::ClientTls,
    /// Where to send: HOST:PORT, HOST being a name, an IPv4 address or an [IPv6] address.
    #[arg(value_name = "HOST:PORT")]
    target: Target,
    /// The message, sent UTF-8 encoded; `-` reads it from stdin (all of it, sent as read).
    message: String,
}

const SEND_HELP: &str = "\
Output: the reply goes to stdout. On a terminal it is shown escaped (newlines and control \
characters as \\n, \\u{1b}, invalid UTF-8 as \\xff) and followed by a newline; piped or \
redirected, its bytes are written exactly as received.

Exit status: 0 when the message was sent and, unless --no-reply, a reply came; 1 when the name \
does not resolve, nothing listens (connection refused), the connection fails, no reply comes \
within --timeout, or the server closes without replying; 2 on a usage error.

Examples:
  switchboard send 127.0.0.1:8888 'welcome to Python world' --no-reply
  switchboard send --udp localhost:8888 hello
  switchboard send --tls --ca cert.pem localhost:8443 hello
  printf 'two\\nlines' | switchboard send [::1]:8888 -";

/// Arguments of `switchboard chat`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = CHAT_HELP)]
pub struct ChatArgs {
    /// Use UDP: each line is one datagram, each datagram back is one reply.
    #[arg(short, long)]
    udp: bool,
    /// Append a newline to each message (by default a line is sent without its newline, as
    /// the tutorial's chat clients do).
    #[arg(short, long)]
    newline: bool,
    /// The word that ends the chat, whichever side sends it.
    #[arg(long, value_name = "WORD", default_value = "bye")]
    bye: String,
    /// How long to wait for the connection, and for the reply to a message before the next
    /// line is sent anyway.
    #[arg(short = 'w', long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    tls: crate::tls::ClientTls,
    /// Whom to talk to: HOST:PORT, HOST being a name, an IPv4 address or an [IPv6] address.
    #[arg(value_name = "HOST:PORT")]
    target: Target,
}

const CHAT_HELP: &str = "\
Input: each line of stdin is sent as one message, without its newline (--newline appends one). \
As in the tutorial's chat clients, a line is sent once the previous one has had its reply (or \
--timeout passed), so lines piped in at once are not merged into one read by the server. An \
empty line sends nothing over TCP.

Output: each reply is printed to stdout as it arrives, as one line `< TEXT`. TEXT is escaped so \
that a server can neither move the cursor nor fake a line: newlines, tabs and control \
characters appear as \\n, \\t, \\u{1b}, invalid UTF-8 as \\xff, a backslash as \\\\. Status lines \
go to stderr. The prompt `> ` is shown only when stdin and stdout are terminals.

Ending: sending the --bye word ends the chat, and so does the end of stdin (Ctrl-D); a TCP \
connection is then half-closed and the last reply is still waited for. The server ends it by \
sending the bye word (`server said bye`) or by closing (`connection closed by server`).

Exit status: 0 when the chat ended in one of those ways; 1 when the name does not resolve, \
nothing listens (connection refused) or the connection fails (e.g. reset by the server); 2 on \
a usage error.";

/// `switchboard send`.
pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    send::run(args)
}

/// `switchboard chat`.
pub fn chat(args: ChatArgs) -> anyhow::Result<ExitCode> {
    chat::run(args)
}

/// Once a reply has started, more of it is waited for this long (chat's closing wait).
const IDLE: Duration = Duration::from_millis(200);

/// A duration in humantime form ("2s", "500ms"); zero is refused as it would mean "no wait".
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 2s, 500ms)"))?;
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

/// A duration as the user would write it: "2s", "500ms".
fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// `HOST:PORT` as given on the command line; resolved only when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// A name or an address, without the brackets of an IPv6 address.
    host: String,
    port: u16,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("expected HOST:PORT, like 127.0.0.1:8888, not {s:?}"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .filter(|h| h.parse::<Ipv6Addr>().is_ok())
                .ok_or_else(|| format!("{host:?} is not an IPv6 address in brackets"))?,
            None if host.contains(':') => {
                return Err(format!(
                    "write an IPv6 address in brackets, like [::1]:8888, not {s:?}"
                ));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}; expected HOST:PORT"));
        }
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Target {
    /// The addresses HOST names, in the resolver's order.
    fn resolve(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| anyhow!("cannot resolve {}: {}", self.host, words(&e)))?
            .collect();
        if addrs.is_empty() {
            anyhow::bail!("cannot resolve {}: it has no addresses", self.host);
        }
        Ok(addrs)
    }

    /// How to name the peer in a message: the address, and the name it came from if any.
    fn describe(&self, addrs: &[SocketAddr], proto: Proto) -> String {
        let list = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        if self.host.parse::<IpAddr>().is_ok() {
            format!("{}/{proto}", list.join(", "))
        } else {
            format!("{self}/{proto} ({})", list.join(", "))
        }
    }
}

/// Connect to the first of the target's addresses that accepts, each within `timeout`.
fn connect_tcp(target: &Target, timeout: Duration) -> anyhow::Result<TcpStream> {
    let addrs = target.resolve()?;
    let mut errors = Vec::new();
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => errors.push(e),
        }
    }
    let peer = target.describe(&addrs, Proto::Tcp);
    if errors
        .iter()
        .all(|e| e.kind() == io::ErrorKind::ConnectionRefused)
    {
        anyhow::bail!("connection refused: nothing listens on {peer}");
    }
    let e = errors
        .iter()
        .find(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        .expect("at least one error is not a refusal");
    if e.kind() == io::ErrorKind::TimedOut {
        anyhow::bail!(
            "cannot connect to {peer}: no answer within {}",
            human(timeout)
        );
    }
    anyhow::bail!("cannot connect to {peer}: {}", words(e))
}

/// A UDP socket bound to an ephemeral port and connected to the target's first address, so
/// that only its datagrams are received and a refusal (ICMP port unreachable) is reported.
fn connect_udp(target: &Target) -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let addrs = target.resolve()?;
    let addr = addrs[0];
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0))
        .map_err(|e| anyhow!("cannot open a UDP socket: {}", words(&e)))?;
    socket
        .connect(addr)
        .map_err(|e| anyhow!("cannot reach {addr}/udp: {}", words(&e)))?;
    Ok((socket, addr))
}

/// The error for a failed exchange with `peer` (`ADDR/PROTO`), once connected; `doing` reads
/// as "cannot send to" or "no reply from".
fn peer_error(e: &io::Error, doing: &str, peer: &str) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            anyhow!("connection refused: nothing listens on {peer}")
        }
        io::ErrorKind::ConnectionReset => anyhow!("connection reset by {peer}"),
        _ => anyhow!("{doing} {peer}: {}", words(e)),
    }
}

/// An I/O error in words: without the "(os error N)" suffix, starting in lower case.
pub(crate) fn words(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.find(" (os error").map_or(s.as_str(), |i| &s[..i]);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<Target, String> {
        s.parse()
    }

    #[test]
    fn target_accepts_names_ipv4_and_bracketed_ipv6() {
        let t = target("localhost:8888").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 8888));
        let t = target("127.0.0.1:0").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 0));
        let t = target("[::1]:8888").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8888));
        assert_eq!(t.to_string(), "[::1]:8888");
    }

    #[test]
    fn target_refuses_what_is_not_host_port() {
        assert!(target("8888").unwrap_err().contains("HOST:PORT"));
        assert!(target(":8888").unwrap_err().contains("no host"));
        assert!(target("localhost:").unwrap_err().contains("not a port"));
        assert!(
            target("localhost:65536")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(target("::1:8888").unwrap_err().contains("brackets"));
        assert!(target("[::1:8888").unwrap_err().contains("brackets"));
        assert!(target("[localhost]:80").unwrap_err().contains("IPv6"));
    }

    #[test]
    fn resolving_a_bracketed_ipv6_address_needs_no_resolver() {
        let addrs = target("[::1]:8888").unwrap().resolve().unwrap();
        assert_eq!(addrs, vec!["[::1]:8888".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn io_errors_read_as_words() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(words(&e), "connection refused");
    }

    #[test]
    fn durations_are_humantime_and_not_zero() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(human(Duration::from_secs(2)).to_string(), "2s");
    }
}
