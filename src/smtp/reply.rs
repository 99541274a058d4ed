//! SMTP replies (RFC 5321 §4.2) with RFC 3463 enhanced status codes: the `Reply` type
//! both sides share and the replies the server sends. Parsing a server's reply is
//! `reply_parser`'s job.

use std::fmt::Write;

use crate::text::Joined;

/// A reply: a three-digit code and one or more text lines. The enhanced status code,
/// when there is one, is part of each line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code, e.g. `(250, "2.1.0", "Ok")`.
    pub fn new(code: u16, enhanced: &str, text: impl AsRef<str>) -> Reply {
        Reply::line(code, enhanced, text.as_ref())
    }

    /// `new`'s one copy for every text type.
    fn line(code: u16, enhanced: &str, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![format!("{enhanced} {text}")],
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO, 354).
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, lines }
    }

    /// Wire form: `250-first` ... `250 last`, CRLF after each line.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // Writing to a String cannot fail.
            let _ = write!(out, "{}{}{}\r\n", self.code, sep, line);
        }
        if self.lines.is_empty() {
            let _ = write!(out, "{}\r\n", self.code);
        }
        out
    }

    /// One-line form for logs: `550 5.1.1 text` (lines joined with spaces).
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.joined(" "))
    }
}

/// Replies used in more than one place, so their wording stays the same everywhere.
pub mod canned {
    use super::Reply;

    pub fn ok(enhanced: &str) -> Reply {
        Reply::new(250, enhanced, "Ok")
    }
    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, "5.5.1", text)
    }
    pub fn syntax(text: &str) -> Reply {
        Reply::new(501, "5.5.4", text)
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Error: line too long")
    }
    pub fn nul_in_input() -> Reply {
        Reply::new(500, "5.5.2", "Error: NUL character in input")
    }
    pub fn must_starttls() -> Reply {
        Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
    }
    pub fn relay_denied(rcpt: &str) -> Reply {
        Reply::new(554, "5.7.1", format!("<{rcpt}>: Relay access denied"))
    }
    pub fn shutting_down() -> Reply {
        Reply::new(
            421,
            "4.3.2",
            "Service shutting down, closing transmission channel",
        )
    }
    pub fn timeout() -> Reply {
        Reply::new(421, "4.4.2", "Error: timeout exceeded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_wire_form() {
        let r = Reply::plain(
            250,
            vec!["mx".into(), "PIPELINING".into(), "8BITMIME".into()],
        );
        assert_eq!(r.to_wire(), "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        assert_eq!(
            Reply::new(554, "5.7.1", "Relay access denied").to_wire(),
            "554 5.7.1 Relay access denied\r\n"
        );
    }
}
