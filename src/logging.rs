//! Log output: text or JSON, to stderr or a rotated file through a non-blocking writer.

use std::io;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation as AppenderRotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{DaemonConfig, LogFormat, Rotation};

/// Keeps the log writer's worker alive; dropping it flushes every queued line. Hold it until
/// `main` returns (`std::process::exit` would skip the flush).
#[derive(Debug)]
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
}

/// The filter for the config's `log_level`. Field values in it (`[span{field=value}]`) are
/// matched as plain text, not compiled as regular expressions: tracing-subscriber compiles
/// them to a full DFA, which for a short pattern like `a` followed by 25 dots takes minutes
/// and gigabytes, so checking a config could hang. (`RUST_LOG` keeps the usual regex syntax.)
pub fn config_filter(log_level: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::builder().with_regex(false).parse(log_level)
}

/// Install the global subscriber described by the `[daemon]` table. `RUST_LOG`, when set,
/// overrides `log_level`.
pub fn init(cfg: &DaemonConfig) -> io::Result<LogGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| io::Error::other(format!("RUST_LOG={v:?} is not a valid filter: {e}")))?,
        _ => config_filter(&cfg.log_level).map_err(io::Error::other)?,
    };
    let (writer, guard) = match &cfg.log_file {
        None => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(io::stderr),
            None,
        ),
        Some(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            std::fs::create_dir_all(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create log folder {}: {e}", dir.display()),
                )
            })?;
            let file_name = path.file_name().ok_or_else(|| {
                io::Error::other(format!("log_file {} names no file", path.display()))
            })?;
            let rotation = match cfg.log_rotation {
                Rotation::Never => AppenderRotation::NEVER,
                Rotation::Hourly => AppenderRotation::HOURLY,
                Rotation::Daily => AppenderRotation::DAILY,
            };
            let appender = RollingFileAppender::builder()
                .rotation(rotation)
                .filename_prefix(file_name.to_string_lossy())
                .build(dir)
                .map_err(|e| {
                    io::Error::other(format!("cannot open log file {}: {e}", path.display()))
                })?;
            // Not lossy: a log line is never dropped silently. If the disk stalls long enough
            // to fill the queue, the loop waits rather than lose the record of what happened.
            let (nb, guard) = NonBlockingBuilder::default()
                .lossy(false)
                .buffered_lines_limit(64 * 1024)
                .finish(appender);
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(nb),
                Some(guard),
            )
        }
    };
    let ansi = cfg.log_file.is_none() && std::io::IsTerminal::is_terminal(&io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let layer = match cfg.log_format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| io::Error::other(format!("cannot install the logger: {e}")))?;
    Ok(LogGuard { _worker: guard })
}
