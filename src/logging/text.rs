//! The text log format's field writer and clock, made cheap: a session's closing line is
//! written once per connection, and tracing-subscriber's defaults spend most of a connection's
//! user-space time on it (ANSI styling calls around every field name even with colours off,
//! integers through `core::fmt`, the date computed again for every line).
//!
//! [`Fields`] writes `name=value` pairs as the default does (strings and debug values quoted
//! and escaped by `{:?}`, so peer text cannot forge a line), integers with `itoa`, and no
//! styling. [`Clock`] writes RFC 3339 UTC times like the default, computing the date part
//! once per second.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// Writes an event's or a span's fields: the message as it is, the rest as `name=value`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_, '_> {
    /// Start a field: the separator, then `name=` unless it is the message.
    fn start(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        if !self.first {
            self.result = self.writer.write_char(' ');
        }
        self.first = false;
        if field.name() != "message" {
            self.result = self
                .writer
                .write_str(field.name())
                .and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }

    fn integer(&mut self, field: &Field, mut buf: itoa::Buffer, n: impl itoa::Integer) {
        if self.start(field) {
            self.result = self.writer.write_str(buf.format(n));
        }
    }
}

impl Visit for Visitor<'_, '_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, itoa::Buffer::new(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, itoa::Buffer::new(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if self.start(field) {
                self.result = self.writer.write_str(value);
            }
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// RFC 3339 UTC timestamps with microseconds, the date part computed once per second.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Clock;

thread_local! {
    /// The second last formatted, and its text up to and including the `.`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        SECOND.with_borrow_mut(|(cached, text)| {
            if *cached != secs {
                *cached = secs;
                text.clear();
                write_second(text, secs);
            }
            w.write_str(text)
        })?;
        let mut digits = itoa::Buffer::new();
        let d = digits.format(micros);
        w.write_str(&"000000"[d.len()..])?;
        w.write_str(d)?;
        w.write_char('Z')
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` after the Unix epoch.
fn write_second(out: &mut String, secs: u64) {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_722), (2023, 12, 31));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        let mut s = String::new();
        write_second(&mut s, 1_700_000_000);
        assert_eq!(s, "2023-11-14T22:13:20.");
    }

    #[test]
    fn lines_look_like_the_default_format() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || buf.clone())
            .with_ansi(false)
            .with_target(false)
            .fmt_fields(Fields)
            .with_timer(Clock)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("listener", listener = "chat", proto = "tcp");
            span.in_scope(|| {
                tracing::info!(event = "session_closed", session = 7u64, peer = %"127.0.0.1:5",
                    text = "a\nb\"", ok = true, delta = -3i64, "session closed")
            });
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(time.len(), "2026-11-30T16:12:35.533047Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert_eq!(
            rest.trim_start(),
            "INFO listener{listener=\"chat\" proto=\"tcp\"}: session closed event=\"session_closed\" \
             session=7 peer=127.0.0.1:5 text=\"a\\nb\\\"\" ok=true delta=-3\n"
        );
    }
}
