//! The message content readers: DATA's dot-unstuffing and smuggling-safe end-of-data
//! detector, and BDAT's chunk framing (RFC 3030), where the octet count in the command
//! is authoritative and a dot is only a dot.
//!
//! End of data is only `<CRLF>.<CRLF>` (RFC 5321 §4.1.1.4). A bare LF or bare CR never
//! takes part in it, so `\n.\n`, `\r\n.\n`, `\n.\r\n` and friends stay message content
//! (SMTP smuggling, CVE-2023-51764). Such bare line ends are stored as CRLF, so the
//! queue holds canonical lines and anything relayed onward is unambiguous.
//!
//! The reader is a byte-level state machine: it never needs a whole line in memory,
//! and it keeps counting (size, line length, NULs) after a limit is hit so the session
//! stays in step and can reject the message with the right reply after the final dot.

use super::reply::{canned, Reply};
use super::MAX_TEXT_LINE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line that followed a CRLF (or the start of DATA).
    LineStart,
    /// `.` at a CRLF line start.
    Dot,
    /// `.\r` at a CRLF line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line; a LF next makes it a CRLF.
    Cr,
}

/// Decodes one message's DATA stream, or its BDAT chunks.
pub struct DataReader {
    state: State,
    /// DATA: dots at line starts are stuffing and `<CRLF>.<CRLF>` ends the content.
    /// BDAT: no dot is special; the chunk sizes say where the content ends.
    dots: bool,
    line_len: usize,
    size: u64,
    max_size: u64,
    too_long_line: bool,
    nul: bool,
    done: bool,
}

impl DataReader {
    /// `max_size` is the SIZE limit on the decoded content.
    pub fn new(max_size: u64) -> DataReader {
        DataReader {
            state: State::LineStart,
            dots: true,
            line_len: 0,
            size: 0,
            max_size,
            too_long_line: false,
            nul: false,
            done: false,
        }
    }

    /// For BDAT chunks: the same line-end canonicalisation and verdicts as DATA (a
    /// bare CR or LF is stored as CRLF, so nothing relayed on can end a DATA early),
    /// but no dot handling. Every byte fed is content; [`end_chunks`](Self::end_chunks)
    /// ends it.
    pub fn chunked(max_size: u64) -> DataReader {
        DataReader {
            dots: false,
            ..DataReader::new(max_size)
        }
    }

    /// BDAT LAST: the content ends here; a CR left at its very end is a line end.
    pub fn end_chunks(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Cr {
            self.newline(out);
        }
        self.state = State::LineStart;
        self.done = true;
    }

    /// True once `<CRLF>.<CRLF>` has been seen (BDAT: once the last chunk ended).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decoded content size so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Decodes as much of `input` as belongs to the message, appending content to `out`
    /// (only while within the size limit). Returns the number of bytes consumed: when
    /// the end of data is found the rest of `input` is the next pipelined command.
    /// (BDAT: the caller feeds exactly the chunk's bytes, all of which are consumed.)
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        for (i, &b) in input.iter().enumerate() {
            if self.done {
                return i;
            }
            self.step(b, out);
        }
        input.len()
    }

    /// The reply owed after the end of data if the content broke a rule, else `None`.
    pub fn verdict(&self) -> Option<Reply> {
        if self.nul {
            Some(canned::nul_in_input())
        } else if self.too_long_line {
            Some(Reply::new(
                500,
                "5.5.2",
                "Error: message contains a line longer than 1000 octets",
            ))
        } else if self.size > self.max_size {
            Some(Reply::new(552, "5.3.4", "Error: message file too big"))
        } else {
            None
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if self.size <= self.max_size {
            out.extend_from_slice(bytes);
        }
    }

    fn newline(&mut self, out: &mut Vec<u8>) {
        self.emit(b"\r\n", out);
        self.line_len = 0;
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart if b == b'.' && self.dots => self.state = State::Dot,
            State::LineStart | State::Mid => self.mid(b, out),
            State::Dot => match b {
                b'\r' => self.state = State::DotCr,
                // `.` then a bare LF: not the end; keep the dot as content.
                b'\n' => {
                    self.emit(b".", out);
                    self.newline(out);
                    self.state = State::Mid;
                }
                // A stuffed dot: drop it (RFC 5321 §4.5.2).
                _ => self.mid(b, out),
            },
            State::DotCr => {
                if b == b'\n' {
                    self.done = true;
                } else {
                    // `.` then a bare CR: content, and the CR ends that line.
                    self.emit(b".", out);
                    self.newline(out);
                    self.state = State::Mid;
                    self.mid(b, out);
                }
            }
            State::Cr => match b {
                b'\n' => {
                    self.newline(out);
                    self.state = State::LineStart;
                }
                b'\r' => self.newline(out), // bare CR, another CR follows
                _ => {
                    self.newline(out); // bare CR
                    self.state = State::Mid;
                    self.mid(b, out);
                }
            },
        }
    }

    fn mid(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = State::Mid;
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => self.newline(out), // bare LF: a line end, never a CRLF line start
            0 => self.nul = true,
            _ => {
                self.line_len += 1;
                if self.line_len + 2 > MAX_TEXT_LINE {
                    self.too_long_line = true;
                }
                self.emit(&[b], out);
            }
        }
    }
}

/// Dot-stuffs content for DATA as it streams past (RFC 5321 §4.5.2), in pieces of any
/// size: a dot at the start of a line gets another one in front, whichever piece the
/// line started in, and [`finish`](Self::finish) adds the end-of-data line (after a
/// CRLF when the content did not end with one). A bare LF counts as a line end, as
/// everywhere on the way out: stuffing one dot too many is harmless, one too few is not.
/// It holds three words of state, so delivery needs no copy of the message.
#[derive(Debug, Clone, Copy)]
pub struct DotStuffer {
    at_line_start: bool,
    /// The last two bytes of the content so far (to know whether it ended with CRLF).
    last: [u8; 2],
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            last: [0, 0],
            empty: true,
        }
    }
}

impl DotStuffer {
    /// Appends `input`, stuffed, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        for line in input.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start && line[0] == b'.' {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            self.at_line_start = line.ends_with(b"\n");
        }
        self.last = match input {
            [.., a, b] => [*a, *b],
            [b] => [self.last[1], *b],
            [] => self.last,
        };
        self.empty = false;
    }

    /// Ends the content: a CRLF if it did not end with one, then `.CRLF`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.empty && self.last != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Dot-stuffs a whole message held in memory (a test, a short message): the same as
/// [`DotStuffer`] fed in one piece.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut stuffer = DotStuffer::default();
    stuffer.push(content, &mut out);
    stuffer.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; returns (content, consumed, done).
    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, usize, bool) {
        let mut r = DataReader::new(1 << 20);
        let mut out = Vec::new();
        let mut consumed = 0;
        for part in input.chunks(chunk) {
            let n = r.feed(part, &mut out);
            consumed += n;
            if n < part.len() {
                break;
            }
        }
        (out, consumed, r.is_done())
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        for chunk in [1, 2, 3, 7, 1000] {
            let (out, n, done) = run(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", chunk);
            assert!(done);
            assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
            assert_eq!(n, b"Subject: x\r\n\r\nbody\r\n.\r\n".len());
        }
    }

    #[test]
    fn empty_message() {
        let (out, _, done) = run(b".\r\n", 1);
        assert!(done);
        assert!(out.is_empty());
    }

    #[test]
    fn smuggling_variants_never_end_data() {
        for v in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            b"a\r\n.\nMAIL FROM:<x@y>\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r.\rMAIL FROM:<x@y>\r\n",
            b"a\r\n.\rMAIL FROM:<x@y>\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n",
        ] {
            for chunk in [1, 3, 100] {
                let (out, n, done) = run(v, chunk);
                assert!(!done, "{v:?} ended DATA");
                assert_eq!(n, v.len());
                // Bare line ends are stored as CRLF and the dot stays content.
                assert!(out.windows(3).any(|w| w == b"\r\n."), "{out:?}");
                assert!(!out.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n'));
            }
        }
    }

    #[test]
    fn dot_unstuffing() {
        let (out, _, done) = run(b"..leading\r\n...\r\n.\r\n", 2);
        assert!(done);
        assert_eq!(out, b".leading\r\n..\r\n");
    }

    /// Stuffs `input` fed in pieces of `chunk` bytes.
    fn stuff_in_pieces(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for piece in input.chunks(chunk) {
            stuffer.push(piece, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c"), b"..a\r\nb\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"x\r\n"), b"x\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\r"), b"x\r\r\n.\r\n");
        // A bare LF starts a line for stuffing too.
        assert_eq!(dot_stuff(b"a\n.b\r\n"), b"a\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
    }

    #[test]
    fn stuffing_in_pieces_is_stuffing_of_the_whole() {
        // Dots at every kind of place, a line longer than any piece, CR and LF split
        // between pieces, and content that ends without CRLF.
        let mut msg = b"Subject: x\r\n\r\n.one\r\n..two\r\nmid.dle\r\n.\r\n".to_vec();
        msg.extend(std::iter::repeat_n(b'y', 5000));
        msg.extend_from_slice(b"\r\n.after the long line\r\n.\r\n.end");
        let whole = dot_stuff(&msg);
        for chunk in [1, 2, 3, 7, 64, 999, 4096, msg.len()] {
            assert_eq!(stuff_in_pieces(&msg, chunk), whole, "pieces of {chunk}");
            // A piece that ends right after the CR of a final CRLF.
            let mut crlf = msg.clone();
            crlf.extend_from_slice(b"\r\n");
            assert_eq!(stuff_in_pieces(&crlf, chunk), dot_stuff(&crlf), "{chunk}");
        }
        assert!(whole.ends_with(b"\r\n..\r\n..end\r\n.\r\n"));
        // The round trip through the DATA reader gives the content back.
        for chunk in [1, 5, 100] {
            let (out, _, done) = run(&stuff_in_pieces(&msg, 3), chunk);
            assert!(done);
            let mut want = msg.clone();
            want.extend_from_slice(b"\r\n");
            assert_eq!(out, want);
        }
        assert_eq!(stuff_in_pieces(b"", 1), b".\r\n");
    }

    /// Feeds `chunks` as BDAT chunks, each split in pieces of `piece` bytes.
    fn chunks(chunks: &[&[u8]], piece: usize, max: u64) -> (Vec<u8>, DataReader) {
        let mut r = DataReader::chunked(max);
        let mut out = Vec::new();
        for c in chunks {
            for p in c.chunks(piece) {
                assert_eq!(r.feed(p, &mut out), p.len());
            }
        }
        r.end_chunks(&mut out);
        (out, r)
    }

    #[test]
    fn bdat_chunks_are_content_dots_and_all() {
        let msg: &[u8] = b"Subject: x\r\n\r\n.leading\r\n..two\r\n.\r\nQUIT\r\nlast";
        for piece in [1, 2, 5, 1000] {
            let (out, r) = chunks(&[&msg[..7], &msg[7..30], &msg[30..]], piece, 1 << 20);
            assert_eq!(out, msg, "pieces of {piece}");
            assert!(r.is_done() && r.verdict().is_none());
            assert_eq!(r.size(), msg.len() as u64);
        }
        let (out, r) = chunks(&[], 1, 10);
        assert!(out.is_empty() && r.is_done());
    }

    #[test]
    fn bdat_bare_line_ends_become_crlf_even_across_chunks() {
        // A CR at the end of one chunk and its LF at the start of the next is a CRLF.
        let (out, _) = chunks(&[b"a\r", b"\nb\n.\nc\r"], 3, 1 << 20);
        assert_eq!(out, b"a\r\nb\r\n.\r\nc\r\n");
        let (out, _) = chunks(&[b"a\r\r\n.\r"], 1, 1 << 20);
        assert_eq!(out, b"a\r\n\r\n.\r\n");
    }

    #[test]
    fn bdat_verdicts_count_the_running_total() {
        let (out, r) = chunks(&[b"0123456789", b"a"], 4, 10);
        assert_eq!(r.verdict().unwrap().code, 552);
        assert_eq!(out, b"0123456789");
        let (_, r) = chunks(&[b"0123456789"], 4, 10);
        assert!(r.verdict().is_none());
        let (_, r) = chunks(&[b"a\0"], 4, 10);
        assert_eq!(r.verdict().unwrap().code, 500);
        let (_, r) = chunks(&[&[b'x'; 999][..], b"\r\n"], 100, 1 << 20);
        assert_eq!(r.verdict().unwrap().code, 500);
    }

    #[test]
    fn long_lines_nul_and_size_give_verdicts() {
        let mut msg = vec![b'x'; 998];
        msg.extend_from_slice(b"\r\n.\r\n");
        let mut r = DataReader::new(1 << 20);
        r.feed(&msg, &mut Vec::new());
        assert!(r.is_done() && r.verdict().is_none());

        let mut msg = vec![b'x'; 999];
        msg.extend_from_slice(b"\r\n.\r\n");
        let mut r = DataReader::new(1 << 20);
        r.feed(&msg, &mut Vec::new());
        assert_eq!(r.verdict().unwrap().code, 500);

        let mut r = DataReader::new(1 << 20);
        r.feed(b"a\0b\r\n.\r\n", &mut Vec::new());
        assert_eq!(r.verdict().unwrap().code, 500);

        let mut r = DataReader::new(10);
        let mut out = Vec::new();
        r.feed(b"0123456789abc\r\n.\r\n", &mut out);
        assert!(r.is_done());
        assert_eq!(r.verdict().unwrap().code, 552);
        assert!(out.len() <= 10);
    }
}
