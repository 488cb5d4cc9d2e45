//! `switchboard watch`: a running daemon's sessions as they happen, over its control socket.
//!
//! The daemon sends one JSON object per event (`open`, `read`, `write`, `close`, and
//! `dropped` when this client fell behind and missed some); `--json` prints them as they
//! come, otherwise each becomes one readable line with the peer's text escaped.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use switchboard_handlers::text::escape;

/// Arguments of `switchboard watch`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = WATCH_HELP)]
pub struct WatchArgs {
    /// The control socket; by default the one the config names (`-c`), or the default place.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Only the sessions of this listener.
    #[arg(long, value_name = "NAME")]
    listener: Option<String>,
    /// Only this session.
    #[arg(long, value_name = "ID")]
    session: Option<u64>,
    /// Print the events as JSON lines, as the daemon sends them.
    #[arg(long)]
    json: bool,
}

const WATCH_HELP: &str = "\
Output: one line per event: the time, the listener and session, the peer, and what happened: \
open, read N bytes, write N bytes (with the text, escaped, cut after 256 bytes), close with \
the reason (peer_closed is the peer's FIN, peer_reset its RST, idle_timeout an expired UDP \
peer). With --json each event is a JSON object: time, event, listener, proto, session, peer, \
and local (open), size with text or hex and cut (read, write), reason (close).

A watcher that falls behind never slows the daemon: events are dropped for it, and it is \
told how many (`dropped`).

Examples:
  switchboard watch -c lab.toml
  switchboard watch --socket /run/switchboard/control.sock --listener chat --json";

/// One event, readably.
fn readable(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let time = s("time");
    let clock = time.get(11..23).unwrap_or(&time);
    let what = match v["event"].as_str().unwrap_or("") {
        "dropped" => {
            return format!(
                "(!) {} events dropped: this watcher is not keeping up",
                v["count"]
            );
        }
        "watching" => {
            return "(watching; Ctrl-C to stop)".to_string();
        }
        "open" => format!("open ({} on {})", s("proto"), s("local")),
        "close" => {
            let reason = s("reason");
            let how = match reason.as_str() {
                "peer_closed" => " (FIN)",
                "peer_reset" => " (RST)",
                "idle_timeout" => " (expired)",
                _ => "",
            };
            format!("close {reason}{how}")
        }
        ev @ ("read" | "write") => {
            let body = match (v["text"].as_str(), v["hex"].as_str()) {
                (Some(t), _) => format!("\"{}\"", escape(t.as_bytes())),
                (None, Some(h)) => format!("hex {h}"),
                _ => String::new(),
            };
            let cut = if v["cut"].as_bool() == Some(true) {
                "..."
            } else {
                ""
            };
            format!("{ev} {} bytes: {body}{cut}", v["size"])
        }
        other => other.to_string(),
    };
    format!(
        "{clock} {} #{} {} {what}",
        s("listener"),
        v["session"],
        s("peer")
    )
}

/// `switchboard watch`.
pub fn watch(args: WatchArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (mut stream, path) = super::attach::connect_to(args.socket.clone(), config)?;
    let mut request = "watch".to_string();
    if let Some(l) = &args.listener {
        request.push_str(&format!(" listener={l}"));
    }
    if let Some(s) = args.session {
        request.push_str(&format!(" session={s}"));
    }
    request.push('\n');
    stream.write_all(request.as_bytes())?;
    let mut out = io::stdout().lock();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.starts_with("(!)") || line.starts_with("refused") {
            eprintln!("switchboard: {line}");
            return Ok(ExitCode::FAILURE);
        }
        let shown = if args.json {
            line
        } else {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => readable(&v),
                Err(_) => escape(line.as_bytes()),
            }
        };
        if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS); // the reader went away
        }
    }
    eprintln!(
        "switchboard: the daemon at {} closed the watch",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_each_with_peer_text_escaped() {
        let v: Value = serde_json::from_str(
            r#"{"time":"2026-01-02T03:04:05.678901Z","event":"read","listener":"chat","proto":"tcp","session":3,"peer":"127.0.0.1:5000","size":300,"text":"hi\u001b[2J\n","cut":true}"#,
        )
        .unwrap();
        assert_eq!(
            readable(&v),
            r#"03:04:05.678 chat #3 127.0.0.1:5000 read 300 bytes: "hi\u{1b}[2J\n"..."#
        );
        let v: Value = serde_json::from_str(
            r#"{"time":"2026-01-02T03:04:05.678901Z","event":"close","listener":"chat","session":3,"peer":"p","reason":"peer_reset"}"#,
        )
        .unwrap();
        assert!(readable(&v).ends_with("close peer_reset (RST)"));
        let v: Value = serde_json::from_str(r#"{"event":"dropped","count":12}"#).unwrap();
        assert!(readable(&v).starts_with("(!) 12 events dropped"));
    }
}
