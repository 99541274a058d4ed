//! The BDAT chunk reader (`DataReader::chunked`): arbitrary bytes cut into arbitrary
//! chunks, each fed in arbitrary pieces, checked against a model of what data.rs
//! documents for CHUNKING: every octet is content (no dot is special, no sequence ends
//! it: the count does), bare CR and bare LF become CRLF (also a CR ending one chunk
//! whose LF starts the next is one CRLF), NULs are dropped and flagged, lines over 998
//! octets flagged, content kept only within the size limit.
//!
//! Input layout: byte 0 picks the size limit, byte 1 seeds the chunk and piece sizes;
//! the rest is the content.
//!
//! Invariants:
//! - `feed` consumes all it is given and the reader is done only after `end_chunks`;
//! - the output holds only CRLF line ends and no NUL, never more than the limit;
//! - output, size and verdict equal the model's and do not depend on the cutting.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::smtp::data::DataReader;

/// The content as stored: line ends canonical, NULs out. (content, nul, too_long)
fn model(input: &[u8]) -> (Vec<u8>, bool, bool) {
    let (mut out, mut nul, mut too_long, mut line) = (Vec::new(), false, false, 0usize);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                line = 0;
                i += 1;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                line = 0;
            }
            0 => nul = true,
            b => {
                out.push(b);
                line += 1;
                too_long |= line + 2 > 1000;
            }
        }
        i += 1;
    }
    (out, nul, too_long)
}

fn run(content: &[u8], max: u64, seed: u8) -> (Vec<u8>, u64, Option<u16>) {
    let mut r = DataReader::chunked(max);
    let mut out = Vec::new();
    let mut rest = content;
    let mut step = usize::from(seed) + 1;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        for piece in chunk.chunks(step % 7 + 1) {
            assert_eq!(r.feed(piece, &mut out), piece.len());
        }
        assert!(!r.is_done());
        rest = tail;
        step = (step * 31 + 17) % 97 + 1;
    }
    r.end_chunks(&mut out);
    assert!(r.is_done());
    (out, r.size(), r.verdict().map(|v| v.code))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = u64::from(data[0]) * 8;
    let content = &data[2..];
    let (out, size, verdict) = run(content, max, data[1]);
    let (want, nul, too_long) = model(content);
    assert_eq!(size, want.len() as u64);
    let kept = if size > max { &want[..out.len()] } else { &want[..] };
    assert_eq!(out, kept);
    assert!(out.len() as u64 <= max);
    assert!(!out.contains(&0));
    assert!(!out.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
    assert!(!out.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n'));
    let want_verdict = if nul || too_long {
        Some(500)
    } else if size > max {
        Some(552)
    } else {
        None
    };
    assert_eq!(verdict, want_verdict);
    // The cutting does not matter.
    assert_eq!(run(content, max, data[1].wrapping_add(1)), (out, size, verdict));
});
