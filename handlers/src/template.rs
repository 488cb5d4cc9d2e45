//! Reply templates: text with `{name}` placeholders, parsed once when the handler is built and
//! rendered straight into a reusable byte buffer, so a reply costs no allocation. Used by
//! `scripted-reply` (greeting, fallback, replies) and `console-reply` (its automatic texts and
//! canned replies).

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use regex::{CaptureLocations, Regex};

use crate::Session;

/// The names every template knows, for error messages.
const KNOWN: &str = "{message} {peer} {session} {listener} {time} {date}";
/// The names of templates written without a message at hand.
const KNOWN_NO_MESSAGE: &str = "{peer} {session} {listener} {time} {date}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    Message,
    Peer,
    Session,
    Listener,
    Time,
    Date,
    /// A regex group by number (0 is the whole match); named groups are resolved to numbers.
    Group(usize),
    /// The session's place in the queue for a person (1 is next).
    Position,
    /// How many sessions wait before it (`position - 1`).
    Ahead,
}

/// What a template may refer to, which depends on where it is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Names<'a> {
    /// The greeting: no message exists yet when a session opens.
    Greeting,
    /// A text sent without a message to refer to (an operator's canned reply, an automatic
    /// answer of `console-reply`).
    NoMessage,
    /// A text telling a waiting session its place in the queue: `{position}` and `{ahead}` too.
    Queue,
    /// The fallback or a rule that is not a regex: the message, but no groups.
    Plain,
    /// A regex rule: its groups too.
    Regex(&'a Regex),
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The message as matched (decoded, line end trimmed); empty for the greeting.
    pub(crate) message: &'a str,
    pub(crate) session: &'a Session,
    /// The groups of the rule's regex in `message`, when the template uses any.
    pub(crate) groups: Option<&'a CaptureLocations>,
    /// The session's place in the queue for a person (queue texts only; 0 elsewhere).
    pub(crate) position: usize,
}

impl<'a> Ctx<'a> {
    /// A context with no message, no groups and no place in a queue.
    pub(crate) fn plain(session: &'a Session) -> Ctx<'a> {
        Ctx {
            message: "",
            session,
            groups: None,
            position: 0,
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse `src`: `{name}` is a placeholder, `{{` and `}}` are literal braces.
    pub(crate) fn parse(src: &str, names: Names<'_>) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = src;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let brace = rest.as_bytes()[i];
            let after = &rest[i + 1..];
            if after.as_bytes().first() == Some(&brace) {
                text.push(char::from(brace));
                rest = &after[1..];
                continue;
            }
            if brace == b'}' {
                return Err("a lone `}`: write `}}` for a literal brace".into());
            }
            let Some(end) = after.find('}') else {
                return Err("a `{` without its `}`: write `{{` for a literal brace".into());
            };
            let piece = resolve(&after[..end], names)?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text).into()));
            }
            pieces.push(piece);
            rest = &after[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text.into()));
        }
        Ok(Template { pieces })
    }

    /// Whether the template renders nothing at all (`reply = ""`).
    pub(crate) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The text, when the template has no placeholders: it is sent as it is.
    pub(crate) fn literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [Piece::Text(t)] => Some(t.as_bytes()),
            _ => None,
        }
    }

    /// Whether rendering needs the regex groups.
    pub(crate) fn uses_groups(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Group(_)))
    }

    /// Append the rendered template to `buf`.
    pub(crate) fn render(&self, cx: &Ctx<'_>, buf: &mut Vec<u8>) {
        for piece in &self.pieces {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                Piece::Text(t) => buf.write_all(t.as_bytes()),
                Piece::Message => buf.write_all(cx.message.as_bytes()),
                Piece::Peer => write!(buf, "{}", cx.session.peer),
                Piece::Session => write!(buf, "{}", cx.session.id),
                Piece::Listener => buf.write_all(cx.session.listener.as_bytes()),
                Piece::Time => {
                    let secs = unix_secs(cx.session.now).rem_euclid(86_400);
                    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
                    write!(buf, "{h:02}:{m:02}:{s:02}")
                }
                Piece::Date => {
                    let (y, m, d) = civil_date(unix_secs(cx.session.now).div_euclid(86_400));
                    write!(buf, "{y:04}-{m:02}-{d:02}")
                }
                Piece::Position => write!(buf, "{}", cx.position),
                Piece::Ahead => write!(buf, "{}", cx.position.saturating_sub(1)),
                Piece::Group(i) => {
                    // A group that did not take part in the match renders as nothing.
                    match cx.groups.and_then(|g| g.get(*i)) {
                        Some((start, end)) => buf.write_all(&cx.message.as_bytes()[start..end]),
                        None => Ok(()),
                    }
                }
            };
        }
    }
}

fn resolve(name: &str, names: Names<'_>) -> Result<Piece, String> {
    Ok(match name {
        "message" => match names {
            Names::Greeting => {
                return Err(
                    "`{message}` in the greeting: a session opens before any message".into(),
                );
            }
            Names::NoMessage | Names::Queue => {
                return Err(format!(
                    "`{{message}}` is not known here: this text answers no particular message \
                     (known: {KNOWN_NO_MESSAGE})"
                ));
            }
            _ => Piece::Message,
        },
        "position" | "ahead" if matches!(names, Names::Queue) => {
            if name == "position" {
                Piece::Position
            } else {
                Piece::Ahead
            }
        }
        "peer" => Piece::Peer,
        "session" => Piece::Session,
        "listener" => Piece::Listener,
        "time" => Piece::Time,
        "date" => Piece::Date,
        _ => {
            let re = match names {
                Names::Regex(re) => re,
                Names::NoMessage => {
                    return Err(format!(
                        "unknown template name `{{{name}}}` (known: {KNOWN_NO_MESSAGE})"
                    ));
                }
                Names::Queue => {
                    return Err(format!(
                        "unknown template name `{{{name}}}` (known: {{position}} {{ahead}} \
                         {KNOWN_NO_MESSAGE})"
                    ));
                }
                Names::Greeting | Names::Plain => {
                    return Err(format!(
                        "unknown template name `{{{name}}}` (known: {KNOWN}; regex groups such \
                         as {{1}} or {{id}} need `match = \"regex\"`)"
                    ));
                }
            };
            let groups = re.captures_len() - 1;
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                match name.parse::<usize>() {
                    Ok(i) if i <= groups => Piece::Group(i),
                    _ => {
                        return Err(format!(
                            "template `{{{name}}}`: the regex has {groups} group(s)"
                        ));
                    }
                }
            } else if let Some(i) = re.capture_names().position(|n| n == Some(name)) {
                Piece::Group(i)
            } else {
                let named: Vec<String> = re
                    .capture_names()
                    .flatten()
                    .map(|n| format!("{{{n}}}"))
                    .collect();
                let named = if named.is_empty() {
                    "none".to_string()
                } else {
                    named.join(" ")
                };
                return Err(format!(
                    "unknown template name `{{{name}}}` (known: {KNOWN}, {{0}}..{{{groups}}}; \
                     named groups of this regex: {named})"
                ));
            }
        }
    })
}

/// Seconds since the Unix epoch, negative before it.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The proleptic Gregorian date (year, month, day) of a day number counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_across_leap_years_and_centuries() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(19_675), (2023, 11, 14)); // 1_700_000_000 s
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(11_017), (2000, 3, 1));
        assert_eq!(civil_date(47_541), (2100, 3, 1)); // 2100 is not a leap year
        assert_eq!(civil_date(47_540), (2100, 2, 28));
    }

    #[test]
    fn braces_and_unknown_names() {
        let t = Template::parse("{{x}} }} {{", Names::Plain).unwrap();
        assert_eq!(t.literal(), Some(&b"{x} } {"[..]));
        assert!(
            Template::parse("a } b", Names::Plain)
                .unwrap_err()
                .contains("lone `}`")
        );
        assert!(
            Template::parse("a { b", Names::Plain)
                .unwrap_err()
                .contains("without its `}`")
        );
        let e = Template::parse("{nmae}", Names::Plain).unwrap_err();
        assert!(e.contains("unknown template name `{nmae}`"), "{e}");
        assert!(Template::parse("", Names::Plain).unwrap().is_empty());
    }
}
