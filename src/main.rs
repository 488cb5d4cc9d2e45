//! The `switchboard` command: the daemon and its clients.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use switchboard::{bench, client, port};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A configurable TCP/UDP socket daemon"
)]
struct Cli {
    /// Config file for the daemon (same as `switchboard run -c FILE`).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default). Without -c it serves the embedded default config.
    Run,
    /// Validate a config without binding anything; exit 1 with every error found.
    Check,
    /// Send one message and print the reply (the tutorial's one-shot clients).
    Send(client::SendArgs),
    /// Talk to a server interactively (the tutorial's chat clients).
    Chat(client::ChatArgs),
    /// Show a running daemon's listeners and counters.
    Status(client::AttachArgs),
    /// Make a running daemon re-read its config (like SIGHUP), and say what changed.
    Reload(client::AttachArgs),
    /// Be an operator of a running daemon: see messages for console-reply, type the replies.
    Attach(client::AttachArgs),
    /// Show which processes hold a port.
    Port(port::PortArgs),
    /// Load an echo server and report throughput and latency percentiles.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            // SAFETY: nothing has started a thread or opened a file yet; see `from_env`.
            let inherited = unsafe { switchboard::daemon::Inherited::from_env() };
            switchboard::run_daemon(cli.config.as_deref(), inherited)
        }
        Command::Check => switchboard::check(cli.config.as_deref()),
        Command::Send(args) => client::send(args),
        Command::Chat(args) => client::chat(args),
        Command::Port(args) => port::run(args),
        Command::Attach(args) => client::attach(args, cli.config.as_deref()),
        Command::Status(args) => client::request(args, cli.config.as_deref(), "status"),
        Command::Reload(args) => client::request(args, cli.config.as_deref(), "reload"),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchboard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
