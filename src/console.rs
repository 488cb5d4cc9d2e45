//! The operator console's language: commands typed by operators, and the lines they see.
//! Pure functions, so they are tested without a terminal; the loop does the I/O
//! (src/daemon/operators.rs).

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_handlers::Proto;
use switchboard_handlers::text::escape;

/// What an operator typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A reply for the focused session.
    Reply(String),
    /// `@ID text`: a one-off reply.
    At(u64, String),
    /// `/to ID`: focus on a session.
    To(u64),
    /// `/list`.
    List,
    /// `/close ID`.
    Close(u64),
    /// `/take ID`: have the session (its handlers fall silent).
    Take(u64),
    /// `/release ID`: give the session back to its handlers.
    Release(u64),
    /// `/c NAME`: send a canned reply to the focused session; `/c` alone lists them.
    Canned(Option<String>),
    /// `/help`.
    Help,
    /// A blank line.
    Nothing,
    /// Something that looked like a command but was not one; the text says why.
    Invalid(String),
}

/// Parse one operator line (without its newline).
pub fn parse(line: &str) -> Command {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
        return match id.trim_start_matches('#').parse() {
            Ok(id) if !text.is_empty() => Command::At(id, text.to_string()),
            Ok(_) => Command::Invalid(format!(
                "nothing to send: write @{id} followed by the reply"
            )),
            Err(_) => Command::Invalid(format!("{id:?} is not a session number: write @ID text")),
        };
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Command::Reply(format!("/{rest}"));
    }
    if let Some(rest) = line.strip_prefix('/') {
        let mut words = rest.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        let id = |what: &str| match arg.map(|a| a.trim_start_matches('#').parse::<u64>()) {
            Some(Ok(id)) => Ok(id),
            _ => Err(Command::Invalid(format!("usage: /{what} ID (see /list)"))),
        };
        return match cmd {
            "list" | "ls" => Command::List,
            "help" | "?" => Command::Help,
            "to" => id("to").map_or_else(|e| e, Command::To),
            "close" => id("close").map_or_else(|e| e, Command::Close),
            "take" => id("take").map_or_else(|e| e, Command::Take),
            "release" => id("release").map_or_else(|e| e, Command::Release),
            "c" | "canned" => match (arg, words.next()) {
                (name, None) => Command::Canned(name.map(str::to_string)),
                (Some(_), Some(_)) => {
                    Command::Invalid("usage: /c NAME (one name; /c alone lists them)".to_string())
                }
                (None, Some(_)) => unreachable!("a second word needs a first"),
            },
            _ => Command::Invalid(format!(
                "unknown command /{cmd}; /help lists them (start a reply with // to send a leading slash)"
            )),
        };
    }
    // "//text" sends "/text".
    let line = line
        .strip_prefix("//")
        .map_or(line.to_string(), |r| format!("/{r}"));
    Command::Reply(line)
}

/// The help text.
pub const HELP: &str = "\
commands:
  TEXT          reply to the focused session (the one that spoke last, or the one set by /to)
  @ID TEXT      reply once to session ID
  /to ID        focus on session ID
  /list         sessions with peer, listener, idle time, unanswered messages and who has them
  /take ID      have session ID: its bot falls silent (answering a session takes it too)
  /release ID   give session ID back to its bot
  /c NAME       send the canned reply NAME to the focused session; /c lists them
  /close ID     end session ID
  /help         this text
  //TEXT        reply with a text that starts with /
typing the bye word ends the session (sent, then closed)";

/// How a session is named on the console: `#3 chat/tcp 127.0.0.1:5000`.
pub fn tag(id: u64, listener: &str, proto: Proto, peer: SocketAddr) -> String {
    format!("#{id} {listener}/{proto} {peer}")
}

/// The line an operator sees for a peer's message. The text is escaped, so a peer can
/// neither send terminal escape sequences nor fake a line of its own.
pub fn message_line(tag: &str, text: &str) -> String {
    format!("[{tag}] {}", escape(text.as_bytes()))
}

/// One row of `/list`; `with` says who answers the session (`bot`, `waiting 2`, `with op1`).
pub fn list_row(tag: &str, idle: Duration, unanswered: u32, focused: bool, with: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{} {tag}  idle {}s  unanswered {unanswered}  {with}",
        if focused { "*" } else { " " },
        idle.as_secs()
    );
    s
}

/// Where the control socket is when the config does not say: in the service's runtime
/// folder under systemd (`RuntimeDirectory=` sets `$RUNTIME_DIRECTORY`), else under
/// `$XDG_RUNTIME_DIR`, else in a private folder under /tmp. Named after the config file, so
/// daemons of different configs do not collide.
pub fn default_socket(config: Option<&Path>) -> PathBuf {
    default_sockets(config)
        .into_iter()
        .next()
        .expect("at least one place")
}

/// Every place a daemon of this config may have put its default socket, most likely first.
/// `attach` tries them in turn, so an operator's shell finds a socket made under systemd.
pub fn default_sockets(config: Option<&Path>) -> Vec<PathBuf> {
    let name = format!(
        "{}.sock",
        config.and_then(|p| p.file_stem()).map_or_else(
            || "switchboard".to_string(),
            |s| s.to_string_lossy().into_owned()
        )
    );
    let var = |v: &str| {
        std::env::var_os(v)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    let mut places = Vec::new();
    if let Some(d) = var("RUNTIME_DIRECTORY") {
        places.push(d.join(&name));
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        places.push(d.join("switchboard").join(&name));
    }
    let uid = rustix::process::getuid().as_raw();
    places.push(PathBuf::from(format!("/tmp/switchboard-{uid}")).join(&name));
    places.push(Path::new("/run/switchboard").join(&name));
    places
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("hello"), Command::Reply("hello".into()));
        assert_eq!(parse("@3 hi there"), Command::At(3, "hi there".into()));
        assert_eq!(parse("@#3 hi"), Command::At(3, "hi".into()));
        assert_eq!(parse("/to 7"), Command::To(7));
        assert_eq!(parse("/list"), Command::List);
        assert_eq!(parse("/close #2"), Command::Close(2));
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(parse("/take 3"), Command::Take(3));
        assert_eq!(parse("/release #3"), Command::Release(3));
        assert_eq!(parse("/c"), Command::Canned(None));
        assert_eq!(parse("/c refund"), Command::Canned(Some("refund".into())));
        assert!(matches!(parse("/c refund now"), Command::Invalid(_)));
        assert!(matches!(parse("/take"), Command::Invalid(_)));
        assert_eq!(parse("  "), Command::Nothing);
        assert_eq!(parse("//etc"), Command::Reply("/etc".into()));
        assert!(matches!(parse("/to x"), Command::Invalid(_)));
        assert!(matches!(parse("@x hi"), Command::Invalid(_)));
        assert!(matches!(parse("@3"), Command::Invalid(_)));
        assert!(matches!(parse("/nope"), Command::Invalid(_)));
    }

    #[test]
    fn peer_text_cannot_escape_its_line() {
        let t = tag(1, "chat", Proto::Tcp, "127.0.0.1:5000".parse().unwrap());
        let line = message_line(&t, "\x1b[2Jhi\n[#2 fake] x");
        assert_eq!(
            line,
            "[#1 chat/tcp 127.0.0.1:5000] \\u{1b}[2Jhi\\n[#2 fake] x"
        );
        assert!(!line.contains('\x1b') && !line.contains('\n'));
    }
}
