//! The `switchboard` command: the daemon and its clients.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use switchboard::{bench, client, dialogue, port, tls, transcript};

/// `0.1.0 (commit 1a2b3c4d5e6f)`, or just the version when built outside a git checkout.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), env!("SWITCHBOARD_COMMIT_SUFFIX"));

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version = VERSION,
    about = "A configurable TCP/UDP socket daemon",
    long_about = "A configurable TCP/UDP socket daemon: a TOML file declares listeners, each \
                  with a chain of message handlers (echo, bye-close, scripted-reply, \
                  console-reply). Without a command it runs the daemon."
)]
struct Cli {
    /// Config file for the daemon (same as `switchboard run -c FILE`).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `-c FILE` of the commands that read a config.
#[derive(Debug, Args)]
struct ConfigArg {
    /// The config file; without it, the embedded default config.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default). Without -c it serves the embedded default config.
    Run(ConfigArg),
    /// Validate a config without binding anything; exit 1 with every error found.
    Check(ConfigArg),
    /// Send one message and print the reply (the tutorial's one-shot clients).
    Send(client::SendArgs),
    /// Talk to a server interactively (the tutorial's chat clients).
    Chat(client::ChatArgs),
    /// Show a running daemon's listeners and counters.
    Status(Control),
    /// Make a running daemon re-read its config (like SIGHUP), and say what changed.
    Reload(Control),
    /// Be an operator of a running daemon: see messages for console-reply, type the replies.
    Attach(Control),
    /// Follow a running daemon's sessions as they happen: opens, reads, writes, closes.
    Watch(WatchCmd),
    /// Change a running daemon's faults: add, remove, list, reset.
    Fault(FaultCmd),
    /// Show which processes hold a port.
    Port(port::PortArgs),
    /// Print the conversations of a transcript file readably.
    Transcript(transcript::PrintArgs),
    /// Test a bot script with dialogues written in TOML (no daemon, no sockets).
    TestScript(dialogue::TestScriptArgs),
    /// Load an echo server and report throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Write a self-signed certificate and its key, for trying TLS out.
    Cert(tls::CertArgs),
    /// Read a password on stdin and print its hash for `[daemon] web_password_hash`.
    WebPassword,
    /// Write shell completions or the man page (used to build packages).
    #[command(hide = true)]
    Generate(Generate),
}

/// The arguments of the commands that talk to a running daemon's control socket.
#[derive(Debug, Args)]
struct Control {
    /// The running daemon's config file, to find its control socket.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    args: client::AttachArgs,
}

/// `switchboard watch`.
#[derive(Debug, Args)]
struct WatchCmd {
    /// The running daemon's config file, to find its control socket.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    args: client::WatchArgs,
}

/// `switchboard fault`.
#[derive(Debug, Args)]
struct FaultCmd {
    /// The running daemon's config file, to find its control socket.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    args: client::AttachArgs,
    #[command(subcommand)]
    what: FaultWhat,
}

#[derive(Debug, Subcommand)]
enum FaultWhat {
    /// Add a fault to a listener, e.g. `fault add web kind=latency latency=200ms`; the keys
    /// are those of a `[[listener.fault]]` table.
    Add {
        /// The listener's name.
        listener: String,
        /// `key=value` settings: kind=..., name=..., direction=..., and the kind's own.
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Remove a listener's fault by its name.
    Remove {
        /// The listener's name.
        listener: String,
        /// The fault's name (`fault list` shows them).
        name: String,
    },
    /// List the faults in force (of one listener, or all).
    List {
        /// The listener's name.
        listener: Option<String>,
    },
    /// Remove every fault (of one listener, or all); a reload brings the file's back.
    Reset {
        /// The listener's name.
        listener: Option<String>,
    },
}

impl FaultWhat {
    /// The request line for the control socket.
    fn request(&self) -> String {
        match self {
            FaultWhat::Add { listener, settings } => {
                format!("fault add {listener} {}", settings.join(" "))
            }
            FaultWhat::Remove { listener, name } => format!("fault remove {listener} {name}"),
            FaultWhat::List { listener } => {
                format!("fault list {}", listener.as_deref().unwrap_or(""))
            }
            FaultWhat::Reset { listener } => {
                format!("fault reset {}", listener.as_deref().unwrap_or(""))
            }
        }
    }
}

#[derive(Debug, Args)]
struct Generate {
    #[command(subcommand)]
    what: GenerateWhat,
}

#[derive(Debug, Subcommand)]
enum GenerateWhat {
    /// Shell completions on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The man pages (switchboard.1 and one per command) into a folder.
    Man {
        /// Where to write them.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `-c` before a command that reads no config (`switchboard -c x.toml send ...`) would be
/// silently ignored: refuse it.
fn refuse_config(config: Option<&Path>, command: &str) -> Option<ExitCode> {
    config?;
    eprintln!(
        "switchboard: error: `-c` means nothing to `{command}`, which reads no config; `-c FILE` \
         is for run, check, attach, status, reload, watch and fault"
    );
    Some(ExitCode::from(2))
}

fn generate(what: GenerateWhat) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    match what {
        GenerateWhat::Completions { shell } => {
            clap_complete::generate(shell, &mut cmd, "switchboard", &mut std::io::stdout());
        }
        GenerateWhat::Man { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let top = cli.config;
    // `switchboard -c FILE CMD` and `switchboard CMD -c FILE` mean the same.
    let either = |own: Option<PathBuf>| own.or_else(|| top.clone());
    let command = cli
        .command
        .unwrap_or(Command::Run(ConfigArg { config: None }));
    let name = match &command {
        Command::Send(_) => Some("send"),
        Command::Chat(_) => Some("chat"),
        Command::Port(_) => Some("port"),
        Command::Transcript(_) => Some("transcript"),
        Command::TestScript(_) => Some("test-script"),
        Command::Bench(_) => Some("bench"),
        Command::Cert(_) => Some("cert"),
        Command::WebPassword => Some("web-password"),
        Command::Generate(_) => Some("generate"),
        _ => None,
    };
    if let Some(code) = name.and_then(|n| refuse_config(top.as_deref(), n)) {
        return code;
    }
    let result = match command {
        Command::Run(c) => {
            // SAFETY: nothing has started a thread or opened a file yet; see `from_env`.
            let inherited = unsafe { switchboard::daemon::Inherited::from_env() };
            switchboard::run_daemon(either(c.config).as_deref(), inherited)
        }
        Command::Check(c) => switchboard::check(either(c.config).as_deref()),
        Command::Send(args) => client::send(args),
        Command::Chat(args) => client::chat(args),
        Command::Port(args) => port::run(args),
        Command::Transcript(args) => transcript::print(args),
        Command::TestScript(args) => dialogue::test_script(args),
        Command::Attach(c) => client::attach(c.args, either(c.config).as_deref()),
        Command::Status(c) => client::request(c.args, either(c.config).as_deref(), "status"),
        Command::Reload(c) => client::request(c.args, either(c.config).as_deref(), "reload"),
        Command::Watch(c) => client::watch(c.args, either(c.config).as_deref()),
        Command::Fault(c) => {
            client::request(c.args, either(c.config).as_deref(), &c.what.request())
        }
        Command::Bench(args) => bench::run(args),
        Command::Cert(args) => tls::cert(args),
        Command::WebPassword => web_password(),
        Command::Generate(g) => generate(g.what),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchboard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `switchboard web-password`: one line of stdin (the password) to an Argon2id PHC string.
fn web_password() -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprintln!("password (it shows as you type; or pipe it in): ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        anyhow::bail!("a password of at least 8 characters, please");
    }
    println!("{}", switchboard::config::hash_password(password)?);
    Ok(ExitCode::SUCCESS)
}
