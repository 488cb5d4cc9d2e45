//! `switchboard test-script SCRIPT DIALOGUES`: a bot script tested like code. Each dialogue of
//! the TOML file (see `file.rs`) opens a session with the script's `scripted-reply` handler on
//! a virtual clock, says the customer's messages, fires the bot's timers as the clock moves,
//! and compares the replies with those written. No socket, no daemon: milliseconds.
//!
//! `switchboard test-script --from-transcript FILE` writes a dialogue file from a transcript
//! (`convert.rs`).

mod convert;
mod file;
mod run;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use switchboard_handlers::registry::SourceFile;
use switchboard_handlers::{BuildEnv, BuildError, HandlerFactory, Registry, Settings};

use crate::config::line_col;

/// Exit status for input that cannot be used (a script or dialogue file with errors).
const EXIT_INVALID: u8 = 2;

/// Arguments of `switchboard test-script`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub struct TestScriptArgs {
    /// The bot's script (a scripted-reply script file, like config/scripts/support-bot.toml).
    #[arg(value_name = "SCRIPT", required_unless_present = "from_transcript")]
    script: Option<PathBuf>,
    /// The dialogues to run (TOML).
    #[arg(value_name = "DIALOGUES", required_unless_present = "from_transcript")]
    dialogues: Option<PathBuf>,
    /// Instead of testing: write the conversations of a transcript file as dialogues, on
    /// stdout.
    #[arg(long, value_name = "TRANSCRIPT", conflicts_with_all = ["script", "dialogues"])]
    from_transcript: Option<PathBuf>,
    /// With --from-transcript: only this session.
    #[arg(long, value_name = "ID", requires = "from_transcript")]
    session: Option<u64>,
}

const HELP: &str = "\
Dialogues (TOML): [[dialogue]] tables with a `name`, an optional `greeting` expected when the \
session opens, and [[dialogue.turn]] tables: `say` (the customer's message), `pause` (let time \
pass, for delayed rules), and what the bot must answer: `reply` (exactly), `replies` (a list), \
`matches` (a regex) or `silent = true`; `handoff = true` when it must hand over to a person. \
The file's top level may set `clock` (the virtual clock's start, UTC) and `peer`.

Output: one line per dialogue (ok or FAIL), and for each failing turn its file:line with the \
expected and the actual reply.

Exit status: 0 when every dialogue passed; 1 when a turn failed; 2 when the script or the \
dialogue file has errors (each shown with its file:line:column).

Example:
  switchboard test-script config/scripts/support-bot.toml config/scripts/support-bot.dialogues.toml";

/// `switchboard test-script`.
pub fn test_script(args: TestScriptArgs) -> anyhow::Result<ExitCode> {
    if let Some(transcript) = &args.from_transcript {
        let entries = crate::transcript::read(transcript)?;
        let text = convert::dialogues(&entries, &transcript.display().to_string(), args.session);
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
    let (Some(script), Some(dialogues)) = (&args.script, &args.dialogues) else {
        anyhow::bail!("give SCRIPT and DIALOGUES, or --from-transcript FILE");
    };
    let factory = match load_script(script) {
        Ok(f) => f,
        Err(errors) => return Ok(invalid(&errors)),
    };
    let file = match file::load(dialogues) {
        Ok(d) => d,
        Err(errors) => return Ok(invalid(&errors)),
    };
    match report(&factory, &file, dialogues) {
        // Whoever read the report stopped reading (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::FAILURE),
        other => Ok(other?),
    }
}

/// Run every dialogue and print how each went.
fn report(
    factory: &Arc<dyn HandlerFactory>,
    file: &file::Dialogues,
    dialogues: &Path,
) -> std::io::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let (mut failed, mut turns, mut failed_turns) = (0, 0, 0);
    for d in &file.dialogues {
        turns += d.turns.len();
        let failures = run::run(factory, &file.listener, d);
        if failures.is_empty() {
            writeln!(out, "ok    {} ({} turn(s))", d.name, d.turns.len())?;
            continue;
        }
        failed += 1;
        failed_turns += failures.len();
        writeln!(out, "FAIL  {}", d.name)?;
        for f in failures {
            writeln!(out, "  {}:{}: {}", dialogues.display(), f.line, f.what)?;
            writeln!(out, "    expected: {}", f.expected)?;
            writeln!(out, "    actual:   {}", f.actual)?;
        }
    }
    let n = file.dialogues.len();
    if failed == 0 {
        writeln!(out, "{n} dialogue(s), {turns} turn(s): all passed")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(
            out,
            "{n} dialogue(s), {turns} turn(s): {failed} dialogue(s) failed, {failed_turns} check(s)"
        )?;
        Ok(ExitCode::FAILURE)
    }
}

fn invalid(errors: &[String]) -> ExitCode {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("switchboard: {} error(s); nothing was tested", errors.len());
    ExitCode::from(EXIT_INVALID)
}

/// Reads the script file by the path given on the command line.
struct ScriptFile<'a>(&'a Path);

impl BuildEnv for ScriptFile<'_> {
    fn read_file(&self, _name: &str) -> Result<Arc<SourceFile>, String> {
        std::fs::read_to_string(self.0)
            .map(|text| {
                Arc::new(SourceFile {
                    path: self.0.to_path_buf(),
                    text,
                })
            })
            .map_err(|e| {
                format!(
                    "cannot read {}: {}",
                    self.0.display(),
                    crate::client::words(&e)
                )
            })
    }
}

/// Build the scripted-reply handler from a script file; its errors with file:line:column.
fn load_script(path: &Path) -> Result<Arc<dyn HandlerFactory>, Vec<String>> {
    let settings_text = "script = \"SCRIPT\"";
    let settings = Settings::parse_str(settings_text).map_err(|e| vec![e.message])?;
    let built = Registry::builtin()
        .build("scripted-reply", settings, &ScriptFile(path))
        .expect("scripted-reply is a built-in handler");
    built.map_err(|e| {
        let mut list = Vec::new();
        flatten(e, path, &mut list);
        list
    })
}

fn flatten(e: BuildError, path: &Path, list: &mut Vec<String>) {
    let place = match (&e.file, &e.span) {
        (Some(f), Some(span)) => {
            let (line, col) = line_col(&f.text, span.start);
            format!("{}:{line}:{col}", f.path.display())
        }
        _ => path.display().to_string(),
    };
    let message = e
        .message
        .strip_prefix("key `script`: ")
        .unwrap_or(&e.message)
        .to_string();
    list.push(format!("{place}: {message}"));
    for more in e.also {
        flatten(more, path, list);
    }
}
