//! [`Escaped`]: text from outside (job arguments echoed in errors, names, headers) made
//! safe to log.
//!
//! A newline in a logged field forges a log line; an ANSI escape rewrites the operator's
//! terminal. Every field the crate logs that a client or a handler controls goes through
//! [`Escaped`], which writes the text as it is except for control characters (C0, DEL,
//! C1), Unicode line and paragraph separators and bidirectional overrides, written as
//! Rust escapes (`\n`, `\r`, `\t`, `\u{1b}`, `\u{2028}`): one field stays on one line and
//! still reads as what was sent.

use std::fmt::{self, Write as _};

/// Displays its content with control characters escaped (see the [module](self)).
///
/// ```
/// use jobs_core::escape::Escaped;
///
/// let user_id = "u1\nERROR forged line\x1b[2J";
/// assert_eq!(Escaped(user_id).to_string(), r"u1\nERROR forged line\u{1b}[2J");
/// // In a `tracing` field: `tracing::error!(error = %Escaped(&e), "job failed")`.
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

/// Whether `c` must not reach a log as it is: it breaks lines, moves the cursor or
/// reorders what is shown.
fn unsafe_in_logs(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A writer that escapes what it is given on its way to the formatter.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut clean = 0;
        for (i, c) in s.char_indices() {
            if unsafe_in_logs(c) {
                self.0.write_str(&s[clean..i])?;
                match c {
                    '\n' => self.0.write_str("\\n")?,
                    '\r' => self.0.write_str("\\r")?,
                    '\t' => self.0.write_str("\\t")?,
                    _ => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                }
                clean = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[clean..])
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_separators_are_escaped() {
        let e = |s: &str| Escaped(s).to_string();
        assert_eq!(e("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
        assert_eq!(e("a\nb\r\nc\td"), r"a\nb\r\nc\td");
        assert_eq!(e("\x1b[2J\x1b[31mred"), r"\u{1b}[2J\u{1b}[31mred");
        assert_eq!(e("nul\0bel\x07del\x7f"), r"nul\u{0}bel\u{7}del\u{7f}");
        assert_eq!(e("c1\u{85}\u{9b}"), r"c1\u{85}\u{9b}");
        assert_eq!(e("ls\u{2028}ps\u{2029}"), r"ls\u{2028}ps\u{2029}");
        assert_eq!(e("rlo\u{202e}x"), r"rlo\u{202e}x");
        // Backslashes and quotes stay as they are: the text still reads as sent.
        assert_eq!(e(r#"C:\path "q""#), r#"C:\path "q""#);
        // Any Display, e.g. an error.
        let err = std::io::Error::other("bad\nline");
        assert_eq!(Escaped(&err).to_string(), r"bad\nline");
    }
}
