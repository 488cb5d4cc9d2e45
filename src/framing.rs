//! Messages on the wire: [`Framer`] cuts a session's input into messages and shapes its
//! output the same way (line framing's `\n` is added where it is taken off). Pure functions
//! over buffers, so they are tested (and fuzzed) without sockets.

use std::ops::Range;

use switchboard_handlers::Outbox;

use crate::config::Framing;

/// A line grew past the listener's `max_message` without a newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// The line without its `\n` and a `\r` before it.
fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Feed `data` to a line framer whose unfinished line is kept in `partial`. Calls `each` for
/// every complete line, without its terminator. A line longer than `max` bytes (terminator
/// excluded) is an error; lines before it have been delivered. `partial` only holds bytes
/// while a line is unfinished, so an idle connection keeps no buffer.
pub fn split_lines(
    partial: &mut Vec<u8>,
    mut data: &[u8],
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<(), TooLong> {
    if !partial.is_empty() {
        match memchr::memchr(b'\n', data) {
            None => {
                partial.extend_from_slice(data);
                return if strip_terminator(partial).len() > max {
                    Err(TooLong)
                } else {
                    Ok(())
                };
            }
            Some(i) => {
                partial.extend_from_slice(&data[..=i]);
                data = &data[i + 1..];
                let line = strip_terminator(partial);
                if line.len() > max {
                    return Err(TooLong);
                }
                each(line);
                partial.clear();
            }
        }
    }
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', data) {
        let line = strip_terminator(&data[start..=i]);
        if line.len() > max {
            return Err(TooLong);
        }
        each(line);
        start = i + 1;
    }
    let rest = &data[start..];
    // The same test as for a growing `partial`: a final `\r` may still turn out to be part of
    // the terminator. (Written without `max + 1`, which overflows for `usize::MAX`.)
    if strip_terminator(rest).len() > max {
        return Err(TooLong);
    }
    if !rest.is_empty() {
        *partial = rest.to_vec();
    } else if partial.capacity() > 0 {
        *partial = Vec::new();
    }
    Ok(())
}

/// One session's framing, both ways: [`decode`](Framer::decode) cuts input into messages,
/// [`encode`](Framer::encode) turns the messages handlers sent into the bytes that go out.
#[derive(Debug)]
pub enum Framer {
    /// Each read is one message (cut at `max` bytes), like the tutorial's `recv(1024)`;
    /// replies go out as they are.
    Raw {
        /// Largest message.
        max: usize,
    },
    /// Newline-delimited; a message excludes `\n` and a `\r` before it; a reply gets a `\n`
    /// when it lacks one.
    Line {
        /// Largest line, terminator excluded.
        max: usize,
        /// The unfinished line, held only while one is unfinished.
        partial: Vec<u8>,
    },
    /// Each datagram is one message; each reply one datagram.
    Datagram {
        /// Largest datagram.
        max: usize,
    },
}

impl Framer {
    /// The framer of a stream listener.
    pub fn stream(framing: Framing, max: usize) -> Framer {
        match framing {
            Framing::Raw => Framer::Raw { max },
            Framing::Line => Framer::Line {
                max,
                partial: Vec::new(),
            },
        }
    }

    /// Cut fresh input into messages, calling `each` for every complete one. A line longer
    /// than the maximum is an error; the lines before it have been delivered.
    pub fn decode(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), TooLong> {
        match self {
            Framer::Raw { max } => {
                for msg in data.chunks((*max).max(1)) {
                    each(msg);
                }
                Ok(())
            }
            Framer::Line { max, partial } => split_lines(partial, data, *max, each),
            Framer::Datagram { max } if data.len() > *max => Err(TooLong),
            Framer::Datagram { .. } => {
                each(data);
                Ok(())
            }
        }
    }

    /// Whether part of a message is held, waiting for the rest.
    pub fn has_partial(&self) -> bool {
        matches!(self, Framer::Line { partial, .. } if !partial.is_empty())
    }

    /// The input ended: a last unterminated line is still a message.
    pub fn finish(&mut self, mut each: impl FnMut(&[u8])) {
        if let Framer::Line { partial, .. } = self
            && !partial.is_empty()
        {
            let last = std::mem::take(partial);
            each(last.strip_suffix(b"\r").unwrap_or(&last));
        }
    }

    /// The bytes for what the handlers sent, as one stream: the outbox's own bytes when
    /// nothing is added, else built in `scratch`. (Datagrams are sent one message each, see
    /// [`Framer::messages`].)
    pub fn encode<'a>(&self, out: &'a Outbox, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            Framer::Line { .. } => {
                scratch.clear();
                for m in out.messages() {
                    scratch.extend_from_slice(m);
                    if m.last() != Some(&b'\n') {
                        scratch.push(b'\n');
                    }
                }
                scratch
            }
            Framer::Raw { .. } | Framer::Datagram { .. } => out.data(),
        }
    }

    /// Where each message of `out` lies in [`Outbox::data`]: one datagram each.
    pub fn messages(out: &Outbox) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut start = 0;
        out.messages().map(move |m| {
            let r = start..start + m.len();
            start = r.end;
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Vec<u8>, Result<(), TooLong>) {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        let mut result = Ok(());
        for c in chunks {
            result = split_lines(&mut partial, c, max, |l| lines.push(l.to_vec()));
            if result.is_err() {
                break;
            }
        }
        (lines, partial, result)
    }

    #[test]
    fn two_lines_in_one_read_and_one_line_in_two_reads() {
        let (lines, partial, r) = feed(&[b"a\nb\r\n", b"he", b"llo\nrest"], 100);
        assert_eq!(lines, vec![b"a".to_vec(), b"b".to_vec(), b"hello".to_vec()]);
        assert_eq!(partial, b"rest");
        assert!(r.is_ok());
    }

    #[test]
    fn empty_lines_are_messages() {
        let (lines, _, _) = feed(&[b"\n\n"], 10);
        assert_eq!(lines, vec![Vec::<u8>::new(), Vec::new()]);
    }

    #[test]
    fn buffer_is_released_when_no_line_is_pending() {
        let mut partial = Vec::new();
        split_lines(&mut partial, b"abc", 10, |_| {}).unwrap();
        split_lines(&mut partial, b"\n", 10, |_| {}).unwrap();
        assert_eq!(partial.capacity(), 0);
    }

    #[test]
    fn max_of_usize_max_does_not_overflow() {
        // Found by the line_framer fuzz target: the tail check computed `max + 1`.
        let (lines, partial, r) = feed(&[b"a\nunfinished\r"], usize::MAX);
        assert_eq!((lines, r), (vec![b"a".to_vec()], Ok(())));
        assert_eq!(partial, b"unfinished\r");
    }

    mod properties {
        use super::super::*;
        use super::feed;
        use proptest::prelude::*;

        /// What the framer must do, written the obvious way over the whole stream: the
        /// complete lines, the unfinished tail, and whether some line is too long.
        fn model(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Vec<u8>, Result<(), TooLong>) {
            let strip_cr = |l: &[u8]| l.strip_suffix(b"\r").unwrap_or(l).to_vec();
            let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
            let tail = pieces.pop().unwrap_or_default();
            let mut lines = Vec::new();
            for p in pieces {
                let line = strip_cr(p);
                if line.len() > max {
                    return (lines, Vec::new(), Err(TooLong));
                }
                lines.push(line);
            }
            if strip_cr(tail).len() > max {
                return (lines, Vec::new(), Err(TooLong));
            }
            (lines, tail.to_vec(), Ok(()))
        }

        /// Bytes of a line (no `\n`), with `\r` and a few letters frequent so that
        /// `\r\n` pairs, lone `\r` and lengths around `max` all come up.
        fn line_byte() -> impl Strategy<Value = u8> {
            prop_oneof![
                3 => Just(b'\r'),
                3 => prop::sample::select(b"ab".to_vec()),
                1 => any::<u8>().prop_filter("not a newline", |&b| b != b'\n'),
            ]
        }

        /// Lines joined with `\n`, with or without a final `\n`.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            (
                prop::collection::vec(prop::collection::vec(line_byte(), 0..10), 0..8),
                any::<bool>(),
            )
                .prop_map(|(lines, terminated)| {
                    let mut s = lines.join(&b'\n');
                    if terminated {
                        s.push(b'\n');
                    }
                    s
                })
        }

        /// `stream` cut at the given points (taken modulo its length, in any order).
        fn chunks(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut out = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                out.push(stream[start..c].to_vec());
                start = c;
            }
            out
        }

        /// Feed `chunks`, checking after every accepted read what the buffer may hold.
        fn feed_checked(
            chunks: &[Vec<u8>],
            max: usize,
        ) -> (Vec<Vec<u8>>, Vec<u8>, Result<(), TooLong>) {
            let mut partial = Vec::new();
            let mut lines = Vec::new();
            for c in chunks {
                let result = split_lines(&mut partial, c, max, |l| lines.push(l.to_vec()));
                if result.is_err() {
                    return (lines, partial, result);
                }
                assert!(
                    partial.len() <= max + 1,
                    "partial {partial:?} exceeds max {max} + 1"
                );
                assert!(
                    !partial.contains(&b'\n'),
                    "partial {partial:?} holds a whole line"
                );
                if partial.is_empty() {
                    assert_eq!(partial.capacity(), 0, "an idle connection keeps a buffer");
                }
            }
            (lines, partial, Ok(()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_split_into_reads_yields_the_same_messages(
                stream in stream(),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
                max in 0usize..12,
            ) {
                let (whole_lines, whole_partial, whole_result) = feed(&[&stream], max);
                let (lines, partial, result) = feed_checked(&chunks(&stream, &cuts), max);
                let (model_lines, model_partial, model_result) = model(&stream, max);

                prop_assert_eq!(&lines, &whole_lines);
                prop_assert_eq!(result, whole_result);
                prop_assert_eq!(&lines, &model_lines);
                prop_assert_eq!(result, model_result);
                if result.is_ok() {
                    prop_assert_eq!(&partial, &whole_partial);
                    prop_assert_eq!(&partial, &model_partial);
                }
                prop_assert!(lines.iter().all(|l| l.len() <= max));
            }

            #[test]
            fn a_line_longer_than_max_is_always_refused(
                before in prop::collection::vec(prop::collection::vec(line_byte(), 0..4), 0..4),
                extra in 1usize..6,
                mut long in prop::collection::vec(line_byte(), 0..14),
                terminated in any::<bool>(),
                after in stream(),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
                max in 0usize..8,
            ) {
                // Lines that fit, then one whose length without "\r" is past max.
                let before: Vec<Vec<u8>> = before.into_iter().map(|mut l| {
                    l.truncate(max);
                    l
                }).collect();
                long.resize(max + extra, b'a');
                long.push(b'x');
                let mut stream: Vec<u8> = before.iter().flat_map(|l| [&l[..], b"\n"].concat()).collect();
                stream.extend_from_slice(&long);
                if terminated {
                    stream.push(b'\n');
                    stream.extend_from_slice(&after);
                }

                let (lines, _, result) = feed_checked(&chunks(&stream, &cuts), max);
                prop_assert_eq!(result, Err(TooLong));
                let before: Vec<Vec<u8>> = before.iter().map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec()).collect();
                prop_assert_eq!(lines, before);
            }
        }
    }

    #[test]
    fn long_lines_are_refused_whole_or_in_pieces() {
        assert_eq!(feed(&[b"12345\n"], 4).2, Err(TooLong));
        assert_eq!(feed(&[b"123", b"45"], 4).2, Err(TooLong));
        assert_eq!(feed(&[b"12345"], 4).2, Err(TooLong));
        let (lines, _, r) = feed(&[b"1234\r", b"\n"], 4);
        assert_eq!((lines, r), (vec![b"1234".to_vec()], Ok(())));
    }
}
