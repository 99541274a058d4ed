//! Command-line framing: splits the input stream into lines with a hard length limit.
//!
//! Lines end in LF (a preceding CR is removed); bare-LF command lines are accepted as
//! Postfix does. An over-long line is consumed up to its end and reported once, so the
//! session can answer `500 5.5.2` and carry on in step with the client.

/// One framed input line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its terminator.
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// Buffers bytes from the peer and hands out lines.
#[derive(Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Set while skipping the rest of an over-long line.
    discarding: bool,
}

impl LineBuffer {
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Removes and returns everything buffered.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.discarding = false;
        std::mem::take(&mut self.buf)
    }

    /// Drops everything buffered: used after STARTTLS, where bytes the client pipelined
    /// behind the command must not be executed inside TLS (CVE-2011-0411).
    pub fn clear(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.discarding = false;
        n
    }

    /// Next line, if one is complete. `limit` counts the line including its CRLF.
    pub fn next_line(&mut self, limit: usize) -> Option<Line> {
        let Some(pos) = self.buf.iter().position(|&b| b == b'\n') else {
            // Keep at most a limit's worth; past it the line is too long anyway.
            if self.buf.len() > limit {
                self.buf.clear();
                self.discarding = true;
            }
            return None;
        };
        let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if std::mem::take(&mut self.discarding) || line.len() + 2 > limit {
            return Some(Line::TooLong);
        }
        Some(Line::Complete(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_and_bare_lf_lines() {
        let mut b = LineBuffer::default();
        b.extend(b"EHLO a\r\nNOOP\nQU");
        assert_eq!(b.next_line(512), Some(Line::Complete(b"EHLO a".to_vec())));
        assert_eq!(b.next_line(512), Some(Line::Complete(b"NOOP".to_vec())));
        assert_eq!(b.next_line(512), None);
        b.extend(b"IT\r\n");
        assert_eq!(b.next_line(512), Some(Line::Complete(b"QUIT".to_vec())));
    }

    #[test]
    fn overlong_line_reported_once_then_in_step() {
        let mut b = LineBuffer::default();
        b.extend(&[b'x'; 600]);
        assert_eq!(b.next_line(512), None);
        b.extend(&[b'y'; 600]);
        assert_eq!(b.next_line(512), None);
        b.extend(b"zz\r\nNOOP\r\n");
        assert_eq!(b.next_line(512), Some(Line::TooLong));
        assert_eq!(b.next_line(512), Some(Line::Complete(b"NOOP".to_vec())));
    }

    #[test]
    fn limit_counts_crlf() {
        let mut b = LineBuffer::default();
        let mut l = vec![b'a'; 510];
        l.extend_from_slice(b"\r\n");
        b.extend(&l);
        assert!(matches!(b.next_line(512), Some(Line::Complete(_))));
        let mut l = vec![b'a'; 511];
        l.extend_from_slice(b"\r\n");
        b.extend(&l);
        assert_eq!(b.next_line(512), Some(Line::TooLong));
    }
}
