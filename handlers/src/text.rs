//! Text helpers shared by handlers, logs and the console.

use std::borrow::Cow;
use std::fmt::Write;

/// The message without its trailing `\r`/`\n` characters.
pub fn trim_line_end(msg: &[u8]) -> &[u8] {
    let end = msg
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &msg[..end]
}

/// The message as text: UTF-8 with invalid bytes replaced by U+FFFD.
pub fn lossy(msg: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(msg)
}

/// Peer bytes made safe for a log line or a terminal: printable UTF-8 stays as it is;
/// control characters (escape sequences, newlines, carriage returns) and invalid bytes become
/// visible escapes, so a peer can neither move the cursor nor fake a line.
pub fn escape(msg: &[u8]) -> String {
    let mut s = String::with_capacity(msg.len());
    for chunk in msg.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() || is_invisible_format(c) => {
                    let _ = write!(s, "\\u{{{:x}}}", c as u32);
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Characters that change how text is shown without being visible (bidi overrides).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_line_ends() {
        assert_eq!(trim_line_end(b"bye\r\n"), b"bye");
        assert_eq!(trim_line_end(b"bye"), b"bye");
        assert_eq!(trim_line_end(b" bye \n\n"), b" bye ");
        assert_eq!(trim_line_end(b"\r\n"), b"");
    }

    #[test]
    fn escape_neutralises_terminal_sequences_and_fake_lines() {
        assert_eq!(escape(b"\x1b[2Jhi"), "\\u{1b}[2Jhi");
        assert_eq!(escape(b"a\nb\rc"), "a\\nb\\rc");
        assert_eq!(escape("你好".as_bytes()), "你好");
        assert_eq!(escape(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape("\u{202e}evil".as_bytes()), "\\u{202e}evil");
    }
}
