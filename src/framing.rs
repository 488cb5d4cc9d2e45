//! Cutting a TCP byte stream into messages. Pure functions over buffers, so they are tested
//! (and fuzzed) without sockets.

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
    if rest.len() > max + 1 || (rest.len() > max && rest.last() != Some(&b'\r')) {
        return Err(TooLong);
    }
    if !rest.is_empty() {
        *partial = rest.to_vec();
    } else if partial.capacity() > 0 {
        *partial = Vec::new();
    }
    Ok(())
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
    fn long_lines_are_refused_whole_or_in_pieces() {
        assert_eq!(feed(&[b"12345\n"], 4).2, Err(TooLong));
        assert_eq!(feed(&[b"123", b"45"], 4).2, Err(TooLong));
        assert_eq!(feed(&[b"12345"], 4).2, Err(TooLong));
        let (lines, _, r) = feed(&[b"1234\r", b"\n"], 4);
        assert_eq!((lines, r), (vec![b"1234".to_vec()], Ok(())));
    }
}
