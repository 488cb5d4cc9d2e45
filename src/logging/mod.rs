//! Log output: text or JSON, to stderr or a rotated file through a non-blocking writer.
//! The whole output layer sits behind a reload handle, so a config reload can change the
//! level, the format and the file, and SIGUSR2 can reopen the file after an external
//! logrotate. The file is opened so that another local user cannot redirect it (see
//! [`file`]).

mod file;
mod text;

use std::io;
use std::sync::Mutex;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation as AppenderRotation};
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{DaemonConfig, LogFormat, Rotation};
pub use file::LogFile;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The file the installed logger writes to (`log_rotation = "never"`), by descriptor. A
/// global, as the logger is: the privilege drop takes it from here.
static CURRENT_FILE: Mutex<Option<LogFile>> = Mutex::new(None);

/// The log file in use, when the logger writes to one it opened itself, for the privilege
/// drop to give to the daemon's user.
pub fn open_log_file() -> Option<LogFile> {
    let current = CURRENT_FILE.lock().unwrap_or_else(|e| e.into_inner());
    current.as_ref().and_then(LogFile::try_clone)
}

fn set_current_file(file: Option<LogFile>) {
    *CURRENT_FILE.lock().unwrap_or_else(|e| e.into_inner()) = file;
}

/// The installed logger. Dropping it flushes every queued line: hold it until `main` returns
/// (`std::process::exit` would skip the flush).
pub struct Logging {
    handle: reload::Handle<BoxedLayer, Registry>,
    _worker: Option<WorkerGuard>,
    current: DaemonConfig,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// The filter for the config's `log_level`. Field values in it (`[span{field=value}]`) are
/// matched as plain text, not compiled as regular expressions: tracing-subscriber compiles
/// them to a full DFA, which for a short pattern like `a` followed by 25 dots takes minutes
/// and gigabytes, so checking a config could hang. (`RUST_LOG` keeps the usual regex syntax.)
pub fn config_filter(log_level: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(trim_directives(log_level))
}

/// `directives` with the blanks around each comma-separated directive removed.
/// tracing-subscriber 0.3 walks a trimmed directive but slices the untrimmed one
/// (tokio-rs/tracing#3297): `"info, switchboard=debug"` is refused (its level is read as
/// `"=debug"`), and a multi-byte character after a blank makes it panic.
fn trim_directives(directives: &str) -> String {
    let kept: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    kept.join(",")
}

/// Install the global subscriber described by the `[daemon]` table. `RUST_LOG`, when set,
/// overrides `log_level`.
pub fn init(cfg: &DaemonConfig) -> io::Result<Logging> {
    let (layer, worker, file) = build(cfg)?;
    let (layer, handle) = reload::Layer::new(layer);
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| io::Error::other(format!("cannot install the logger: {e}")))?;
    set_current_file(file);
    Ok(Logging {
        handle,
        _worker: worker,
        current: cfg.clone(),
    })
}

impl Logging {
    /// Apply new settings (level, format, file, rotation). On error the old ones stay.
    pub fn reload(&mut self, cfg: &DaemonConfig) -> io::Result<()> {
        let (layer, worker, file) = build(cfg)?;
        self.handle
            .reload(layer)
            .map_err(|e| io::Error::other(format!("cannot swap the logger: {e}")))?;
        set_current_file(file);
        // The old writer's guard drops here, flushing what it still held.
        self._worker = worker;
        self.current = cfg.clone();
        Ok(())
    }

    /// Open the log file again (after an external logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        let cfg = self.current.clone();
        self.reload(&cfg)
    }

    /// Whether the settings differ from those in use.
    pub fn differs(&self, cfg: &DaemonConfig) -> bool {
        (
            &self.current.log_level,
            self.current.log_format,
            &self.current.log_file,
            self.current.log_rotation,
        ) != (
            &cfg.log_level,
            cfg.log_format,
            &cfg.log_file,
            cfg.log_rotation,
        )
    }
}

fn build(cfg: &DaemonConfig) -> io::Result<(BoxedLayer, Option<WorkerGuard>, Option<LogFile>)> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(trim_directives(&v))
            .map_err(|e| io::Error::other(format!("RUST_LOG={v:?} is not a valid filter: {e}")))?,
        _ => config_filter(&cfg.log_level).map_err(io::Error::other)?,
    };
    let (writer, guard, file) = match &cfg.log_file {
        None => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(io::stderr),
            None,
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
            // Before the drop: whom the file may belong to. A wrong user is reported by the
            // daemon's own lookup.
            let run_as = crate::privileges::run_as(cfg.user.as_deref(), cfg.group.as_deref())
                .ok()
                .flatten();
            let serving_uid = crate::privileges::serving_uid(run_as.as_ref());
            let rotation = match cfg.log_rotation {
                Rotation::Never => None,
                Rotation::Hourly => Some(AppenderRotation::HOURLY),
                Rotation::Daily => Some(AppenderRotation::DAILY),
            };
            // Not lossy: a log line is never dropped silently. If the disk stalls long enough
            // to fill the queue, the loop waits rather than lose the record of what happened.
            let builder = NonBlockingBuilder::default()
                .lossy(false)
                .buffered_lines_limit(64 * 1024);
            let (nb, guard, file) = match rotation {
                None => {
                    let (writer, file) = file::open_append(path, serving_uid)?;
                    let (nb, guard) = builder.finish(writer);
                    (nb, guard, Some(file))
                }
                Some(rotation) => {
                    file::check_rotation_folder(dir, serving_uid)?;
                    let appender = RollingFileAppender::builder()
                        .rotation(rotation)
                        .filename_prefix(file_name.to_string_lossy())
                        .build(dir)
                        .map_err(|e| {
                            io::Error::other(format!(
                                "cannot open log file {}: {e}",
                                path.display()
                            ))
                        })?;
                    let (nb, guard) = builder.finish(appender);
                    (nb, guard, None)
                }
            };
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(nb),
                Some(guard),
                file,
            )
        }
    };
    let ansi = cfg.log_file.is_none() && std::io::IsTerminal::is_terminal(&io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .with_timer(text::Clock);
    // `filter.and_then(layer)`, not `layer.with_filter(filter)`: a per-layer filter inside a
    // reload layer is never registered with the registry and panics after a reload
    // (tokio-rs/tracing#1629).
    let layer: BoxedLayer = match cfg.log_format {
        // Colours need the default field writer; without them, the cheap one.
        LogFormat::Text if ansi => filter.and_then(layer).boxed(),
        LogFormat::Text => filter.and_then(layer.fmt_fields(text::Fields)).boxed(),
        LogFormat::Json => filter
            .and_then(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .boxed(),
    };
    Ok((layer, guard, file))
}
