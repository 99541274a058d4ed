//! Canonicalisation (RFC 6376 §3.4): the two forms of a header field and of the body a
//! signature is computed over, the choice of header fields by `h=` (§5.4.2), and the
//! data that is hashed (§3.7).
//!
//! The body goes through [`BodyHasher`], which takes the body in chunks of any size
//! and keeps only a few flags and a count of held-back empty lines, so a queue file
//! can be hashed as it is read (the daemon's memory bound) instead of loaded whole.

use openssl::sha::Sha256;

use crate::headers::Field;
use crate::keyed::Keyed;

/// A canonicalisation algorithm (`c=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    /// Nothing changes but empty lines at the end of the body (§3.4.1, §3.4.3).
    Simple,
    /// Whitespace runs become one space, trailing whitespace goes, header names are
    /// lower-cased and fields unfolded (§3.4.2, §3.4.4).
    Relaxed,
}

impl Canon {
    pub fn name(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }

    pub(super) fn from_name(s: &str) -> Option<Canon> {
        [Canon::Simple, Canon::Relaxed]
            .into_iter()
            .find(|c| c.name() == s)
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Appends the canonical form of one header field; `raw` is the whole field (name,
/// colon, value, folded lines with their CRLFs) and `name_len` the length of its name.
pub fn header_field(canon: Canon, raw: &[u8], name_len: usize, out: &mut Vec<u8>) {
    if canon == Canon::Simple {
        out.extend_from_slice(raw);
        return;
    }
    out.extend(raw[..name_len].iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    // Unfold (drop each CRLF), turn whitespace runs into one space, and drop the
    // whitespace at both ends of the value (§3.4.2).
    let mut space = false;
    let mut started = false;
    let mut rest = &raw[name_len + 1..];
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b == b'\r' && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        } else if is_wsp(b) {
            space = started;
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(b);
            started = true;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The header data a signature covers (§3.7): the fields `names` selects, each
/// canonicalised, then the DKIM-Signature field itself with its `b=` value removed
/// (`unsigned`, whose name is `name_len` long) and without its final CRLF.
pub fn header_data(
    canon: Canon,
    fields: &[Field<'_>],
    names: &[String],
    unsigned: &[u8],
    name_len: usize,
) -> Vec<u8> {
    let mut data = Vec::new();
    for field in select(fields, names) {
        header_field(canon, field.raw, field.name.len(), &mut data);
    }
    header_field(canon, unsigned, name_len, &mut data);
    if data.ends_with(b"\r\n") {
        data.truncate(data.len() - 2);
    }
    data
}

/// The fields `names` (lower case) selects: for a name listed n times, its last n
/// instances from the bottom up; a name listed more often than it occurs selects
/// nothing more (that is how over-signing forbids adding one, §5.4.2).
fn select<'a, 'f>(fields: &'f [Field<'a>], names: &[String]) -> Vec<&'f Field<'a>> {
    // One pass over the header instead of one per name: h= is the signer's to make
    // long, and a header can hold thousands of fields. `Keyed`, the map type of the
    // tables: a map of lists of its own was one more copy of the hash map code.
    let mut instances: Keyed<Vec<&Field<'a>>> = Keyed::default();
    for n in names {
        if !instances.contains_key(n) {
            instances.insert(n.clone(), Vec::new());
        }
    }
    for field in fields {
        let lower = field.name.to_ascii_lowercase();
        if let Some(list) = std::str::from_utf8(&lower)
            .ok()
            .and_then(|n| instances.get_mut(n))
        {
            list.push(field);
        }
    }
    names
        .iter()
        .filter_map(|n| instances.get_mut(n).and_then(Vec::pop))
        .collect()
}

/// The body hash, computed incrementally: feed the body in chunks of any size with
/// [`update`](Self::update), then [`finish`](Self::finish).
#[derive(Clone)]
pub struct BodyHasher {
    canon: Canon,
    /// `l=`: octets of canonical body to hash; the rest is only counted.
    limit: Option<u64>,
    hash: Sha256,
    /// Canonical octets produced so far (beyond `limit` too).
    produced: u64,
    /// Empty lines not yet written: they count only if something follows (both forms
    /// drop empty lines at the end of the body).
    held_lines: u64,
    /// The current line has had content written (so its CRLF is not an empty line).
    in_line: bool,
    /// Relaxed: whitespace seen and not yet written, one space if content follows.
    space: bool,
    /// A CR ended the last chunk: a line ends if the next chunk starts with LF.
    cr: bool,
}

impl BodyHasher {
    pub fn new(canon: Canon, limit: Option<u64>) -> BodyHasher {
        BodyHasher {
            canon,
            limit,
            hash: Sha256::new(),
            produced: 0,
            held_lines: 0,
            in_line: false,
            space: false,
            cr: false,
        }
    }

    /// Writes octets that are content as they are (no CR, and for relaxed no WSP).
    fn content(&mut self, run: &[u8]) {
        for _ in 0..std::mem::take(&mut self.held_lines) {
            self.emit(b"\r\n");
        }
        if std::mem::take(&mut self.space) {
            self.emit(b" ");
        }
        self.emit(run);
        self.in_line = true;
    }

    fn end_line(&mut self) {
        // Relaxed: whitespace at the end of a line goes (§3.4.4).
        self.space = false;
        if std::mem::take(&mut self.in_line) {
            self.emit(b"\r\n");
        } else {
            self.held_lines += 1;
        }
    }

    /// Hashes canonical output, as far as the `l=` limit reaches.
    fn emit(&mut self, out: &[u8]) {
        let n = out.len() as u64;
        let room = self
            .limit
            .map_or(n, |l| l.saturating_sub(self.produced).min(n));
        self.hash.update(&out[..room as usize]);
        self.produced += n;
    }

    /// Feeds the next chunk of the body (everything after the header's empty line).
    pub fn update(&mut self, chunk: &[u8]) {
        let relaxed = self.canon == Canon::Relaxed;
        let special = |b: u8| b == b'\r' || (relaxed && (b == b' ' || b == b'\t'));
        let mut rest = chunk;
        while let Some(&first) = rest.first() {
            if std::mem::take(&mut self.cr) {
                if first == b'\n' {
                    self.end_line();
                    rest = &rest[1..];
                    continue;
                }
                // A lone CR is content like any other octet.
                self.content(b"\r");
            }
            // Octets up to the next CR or whitespace go through in one piece.
            let run = rest.iter().position(|&b| special(b)).unwrap_or(rest.len());
            if run > 0 {
                self.content(&rest[..run]);
            } else if first == b'\r' {
                self.cr = true;
            } else {
                self.space = true;
            }
            rest = &rest[run.max(1)..];
        }
    }

    /// The SHA-256 of the canonical body (its first `l=` octets), and the canonical
    /// body's whole length.
    pub fn finish(mut self) -> ([u8; 32], u64) {
        if std::mem::take(&mut self.cr) {
            self.content(b"\r");
        }
        // A last line without its CRLF gets one (§3.4.3, §3.4.4).
        if self.in_line {
            self.end_line();
        }
        // Simple: an empty body is one CRLF; relaxed: it stays empty.
        if self.canon == Canon::Simple && self.produced == 0 {
            self.emit(b"\r\n");
        }
        (self.hash.finish(), self.produced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Header;

    fn sha(data: &[u8]) -> [u8; 32] {
        openssl::sha::sha256(data)
    }

    fn body(canon: Canon, input: &[u8]) -> ([u8; 32], u64) {
        let mut h = BodyHasher::new(canon, None);
        h.update(input);
        h.finish()
    }

    /// The canonical body, found through the hash: `expect` must hash alike.
    fn assert_body(canon: Canon, input: &[u8], expect: &[u8]) {
        assert_eq!(
            body(canon, input),
            (sha(expect), expect.len() as u64),
            "{canon:?} of {:?}",
            String::from_utf8_lossy(input)
        );
    }

    // RFC 6376 §3.4.5's example body.
    const EXAMPLE_BODY: &[u8] = b" C \r\nD \t E\r\n\r\n\r\n";

    #[test]
    fn body_examples_of_the_rfc() {
        assert_body(Canon::Relaxed, EXAMPLE_BODY, b" C\r\nD E\r\n");
        assert_body(Canon::Simple, EXAMPLE_BODY, b" C \r\nD \t E\r\n");
    }

    #[test]
    fn body_edges() {
        // Empty bodies (§3.4.3, §3.4.4).
        assert_body(Canon::Simple, b"", b"\r\n");
        assert_body(Canon::Simple, b"\r\n\r\n", b"\r\n");
        assert_body(Canon::Relaxed, b"", b"");
        assert_body(Canon::Relaxed, b" \r\n\t\r\n", b"");
        // A last line without CRLF gets one; its trailing whitespace goes (relaxed).
        assert_body(Canon::Simple, b"abc", b"abc\r\n");
        assert_body(Canon::Relaxed, b"a  b \t", b"a b\r\n");
        assert_body(Canon::Relaxed, b"x\r\n  ", b"x\r\n");
        // Empty lines count when something follows them.
        assert_body(
            Canon::Relaxed,
            b"a\r\n\r\n \r\nb\r\n\r\n",
            b"a\r\n\r\n\r\nb\r\n",
        );
        assert_body(Canon::Simple, b"a\r\n\r\n \r\n", b"a\r\n\r\n \r\n");
        // A lone CR is content, in a line and at the very end.
        assert_body(Canon::Relaxed, b"a\r\r\nb \r", b"a\r\r\nb \r\r\n");
    }

    #[test]
    fn chunking_does_not_matter() {
        let input = b"a \t b\r\n\r\n \r\n\tc\r\r\nd  \r\n\r\n";
        for canon in [Canon::Simple, Canon::Relaxed] {
            let whole = body(canon, input);
            for cut in 0..=input.len() {
                let mut h = BodyHasher::new(canon, None);
                h.update(&input[..cut]);
                h.update(&[]);
                h.update(&input[cut..]);
                assert_eq!(h.finish(), whole, "{canon:?} cut at {cut}");
            }
            let mut h = BodyHasher::new(canon, None);
            for b in input.chunks(1) {
                h.update(b);
            }
            assert_eq!(h.finish(), whole);
        }
    }

    #[test]
    fn the_length_limit_hashes_a_prefix() {
        let mut h = BodyHasher::new(Canon::Relaxed, Some(4));
        h.update(b"ab  c\r\n");
        h.update(b"more\r\n");
        assert_eq!(h.finish(), (sha(b"ab c"), 12));
        let mut h = BodyHasher::new(Canon::Simple, Some(0));
        h.update(b"");
        assert_eq!(h.finish(), (sha(b""), 2));
        let mut h = BodyHasher::new(Canon::Simple, Some(100));
        h.update(b"x");
        assert_eq!(h.finish(), (sha(b"x\r\n"), 3));
    }

    #[test]
    fn header_fields_relaxed_and_simple() {
        // RFC 6376 §3.4.5's example header, but for the space before the first colon,
        // which the one header scanner (like dkimpy's) does not take as a field.
        let msg = b"A: X\r\nB: Y\t\r\n\tZ  \r\n\r\n";
        let h = Header::parse(msg);
        let mut out = Vec::new();
        for f in &h.fields {
            header_field(Canon::Relaxed, f.raw, f.name.len(), &mut out);
        }
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
        out.clear();
        for f in &h.fields {
            header_field(Canon::Simple, f.raw, f.name.len(), &mut out);
        }
        assert_eq!(out, &msg[..msg.len() - 2]);
        out.clear();
        header_field(Canon::Relaxed, b"Subject:", 7, &mut out);
        header_field(Canon::Relaxed, b"X-Y:  \t ", 3, &mut out);
        assert_eq!(out, b"subject:\r\nx-y:\r\n");
    }

    #[test]
    fn selection_is_bottom_up_and_over_signing_selects_nothing() {
        let msg = b"From: 1\r\nTo: a\r\nfrom: 2\r\nSubject: s\r\n\r\n";
        let h = Header::parse(msg);
        let names: Vec<String> = ["from", "subject", "from", "from", "cc"]
            .map(String::from)
            .to_vec();
        let picked: Vec<&[u8]> = select(&h.fields, &names).iter().map(|f| f.raw).collect();
        assert_eq!(
            picked,
            [&b"from: 2\r\n"[..], b"Subject: s\r\n", b"From: 1\r\n"]
        );
        let data = header_data(
            Canon::Relaxed,
            &h.fields,
            &names,
            b"DKIM-Signature: a=1;\r\n b=",
            14,
        );
        assert_eq!(
            data,
            b"from:2\r\nsubject:s\r\nfrom:1\r\ndkim-signature:a=1; b=".to_vec()
        );
    }
}
