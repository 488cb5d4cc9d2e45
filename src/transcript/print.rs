//! `switchboard transcript FILE [--session ID]`: conversations, readably.
//!
//! ```text
//! == session 3 on bot-tcp, from 127.0.0.1:50312, 2026-03-01 ==
//! 09:00:02  customer   价格
//! 09:00:02  bot        基础版 99 元/月，专业版 199 元/月，年付八五折。
//!                      Basic ¥99/month, Pro ¥199/month, 15% off when paid yearly.
//! 09:00:09  --         handed to a person (scripted-reply)
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use switchboard_handlers::text::escape;

use super::{Entry, read, sessions};

/// Arguments of `switchboard transcript`.
#[derive(Debug, clap::Args)]
pub struct PrintArgs {
    /// A transcript file (a listener's `transcripts` folder holds one per day).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Only this session.
    #[arg(long, value_name = "ID")]
    session: Option<u64>,
}

/// `switchboard transcript`.
pub fn print(args: PrintArgs) -> anyhow::Result<ExitCode> {
    let entries = read(&args.file)?;
    let all = sessions(&entries);
    let chosen: Vec<_> = all
        .iter()
        .filter(|(id, _)| args.session.is_none_or(|s| s == *id))
        .collect();
    if chosen.is_empty() {
        match args.session {
            Some(id) => anyhow::bail!(
                "{}: no session {id} (sessions in it: {})",
                args.file.display(),
                all.iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => anyhow::bail!("{}: no conversation in it", args.file.display()),
        }
    }
    match show(&chosen) {
        // Whoever read it stopped reading (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => Ok(other.map(|()| ExitCode::SUCCESS)?),
    }
}

fn show(chosen: &[&(u64, Vec<&Entry>)]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, (id, list)) in chosen.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let first = list[0];
        writeln!(
            out,
            "== session {id} on {}, from {}, {} ==",
            first.listener,
            first.peer,
            first.time.get(..10).unwrap_or("")
        )?;
        for e in list {
            writeln!(out, "{}", line(e))?;
        }
    }
    Ok(())
}

/// One entry as lines: the time, who, and the text (its further lines indented).
fn line(e: &Entry) -> String {
    let time = e.time.get(11..19).unwrap_or(&e.time);
    let who = match (e.who.as_str(), &e.name) {
        ("operator", Some(name)) => name.clone(),
        (who, _) => who.to_string(),
    };
    if e.direction == "event" {
        let by = e.name.as_deref().unwrap_or(&e.who);
        let what = match e.event.as_deref() {
            Some("handoff") => format!("handed to a person ({by})"),
            Some("taken") => format!("taken by {by}"),
            Some("released") => format!("given back to the bot by {by}"),
            Some(other) => format!("{other} ({by})"),
            None => format!("event ({by})"),
        };
        return format!("{time}  {:<10} {what}", "--");
    }
    // Further lines of a message start under its first.
    let indent = " ".repeat(time.chars().count() + 2 + who.chars().count().max(10) + 1);
    let mut shown = String::new();
    for (i, text) in e.text.split('\n').enumerate() {
        if i == 0 {
            shown.push_str(&format!("{time}  {who:<10} {}", escape(text.as_bytes())));
        } else {
            shown.push('\n');
            shown.push_str(&indent);
            shown.push_str(&escape(text.as_bytes()));
        }
    }
    shown
}
