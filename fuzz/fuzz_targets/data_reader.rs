//! The DATA reader: arbitrary bytes fed in arbitrary chunkings, checked against an
//! independent line-based model of RFC 5321 §4.1.1.4 / §4.5.2 as data.rs documents
//! it (end only at `<CRLF>.<CRLF>`, bare CR and bare LF stored as CRLF, a leading
//! dot removed only on lines that follow a CRLF, NULs dropped and flagged, lines
//! over 998 octets flagged, content kept only within the size limit).
//!
//! Input layout: byte 0 picks the size limit, byte 1 seeds the chunk sizes; the rest
//! is the DATA stream.
//!
//! Invariants:
//! - `feed` consumes at most its input, all of it unless it finished;
//! - once done it stays done: later feeds consume nothing, emit nothing, count nothing;
//! - it finishes exactly after the first `<CRLF>.<CRLF>` of CRLF + input (the start
//!   of DATA is a line start) and nowhere else: no smuggling variant ends it;
//! - the output holds only CRLF line ends (no bare CR, no bare LF), no NUL, never
//!   more than the limit, and, when there is no verdict, no line over 998 octets;
//! - output, size, done and verdict equal the model's and do not depend on chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::smtp::data::DataReader;

const END: &[u8] = b"\r\n.\r\n";

/// What the model says about a stream.
#[derive(Debug, PartialEq, Eq)]
struct Model {
    /// Bytes of input that belong to the message (all of it if not done).
    consumed: usize,
    done: bool,
    /// Every emitted piece, in order (before the size limit is applied).
    pieces: Vec<Vec<u8>>,
    nul: bool,
    too_long: bool,
}

/// Line terminator kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Term {
    Crlf,
    Bare,
    /// Input ended inside the line.
    None,
}

fn model(input: &[u8]) -> Model {
    // End of data: the first CRLF.CRLF in CRLF + input.
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let end = framed.windows(5).position(|w| w == END);
    let (consumed, done, body) = match end {
        // body: content up to and including the CRLF that precedes the dot.
        Some(p) => (p + 5 - 2, true, &input[..p]),
        None => (input.len(), false, input),
    };
    let mut m = Model {
        consumed,
        done,
        pieces: Vec::new(),
        nul: false,
        too_long: false,
    };
    // Split body into lines. A line after a CRLF (or at the start) is "at line
    // start": only there does a leading dot mean anything.
    let mut i = 0;
    let mut after_crlf = true;
    while i < body.len() {
        let start = i;
        while i < body.len() && body[i] != b'\r' && body[i] != b'\n' {
            i += 1;
        }
        let line = &body[start..i];
        let term = if i == body.len() {
            Term::None
        } else if body[i] == b'\n' {
            i += 1;
            Term::Bare
        } else if body.get(i + 1) == Some(&b'\n') {
            i += 2;
            Term::Crlf
        } else if i + 1 == body.len() {
            // A CR at the very end of a not-done stream: the reader waits to see
            // whether an LF follows, so the line is not ended yet.
            i += 1;
            Term::None
        } else {
            i += 1;
            Term::Bare
        };
        emit_line(&mut m, line, after_crlf, term);
        if term == Term::None {
            break;
        }
        after_crlf = term == Term::Crlf;
    }
    m
}

fn emit_line(m: &mut Model, line: &[u8], after_crlf: bool, term: Term) {
    let mut content = line;
    if after_crlf && content.first() == Some(&b'.') {
        if content.len() == 1 {
            match term {
                // `.` then a bare line end: content, the dot stays.
                Term::Bare => {
                    m.pieces.push(b".".to_vec());
                    m.pieces.push(b"\r\n".to_vec());
                    return;
                }
                // Pending: `.` at the end of a not-done stream (or `.\r`).
                Term::None => return,
                Term::Crlf => unreachable!("CRLF.CRLF is the end"),
            }
        }
        // A stuffed dot.
        content = &content[1..];
    }
    let mut len = 0usize;
    for &b in content {
        if b == 0 {
            m.nul = true;
        } else {
            len += 1;
            if len + 2 > 1000 {
                m.too_long = true;
            }
            m.pieces.push(vec![b]);
        }
    }
    if term != Term::None {
        m.pieces.push(b"\r\n".to_vec());
    }
}

/// xorshift32, so chunk sizes vary along the stream.
fn next(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

fn max_size(sel: u8) -> u64 {
    match sel % 4 {
        0 => u64::from(sel),      // tiny limits: size verdicts and truncation
        1 => u64::from(sel) * 16, // up to ~4 KiB
        2 => 10 << 20,            // tinymta's default order of magnitude
        _ => u64::MAX,
    }
}

struct Run {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    size: u64,
    verdict: Option<u16>,
}

fn run(stream: &[u8], max: u64, mut rng: Option<u32>) -> Run {
    let mut r = DataReader::new(max);
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut pos = 0usize;
    while pos < stream.len() {
        let n = match &mut rng {
            None => stream.len() - pos,
            Some(s) => {
                let v = next(s);
                // Mostly small chunks, sometimes a large one.
                let cap = if v & 0x100 != 0 { 4096 } else { 8 };
                (v as usize % cap + 1).min(stream.len() - pos)
            }
        };
        let part = &stream[pos..pos + n];
        pos += n;
        let was_done = r.is_done();
        let (len_before, size_before) = (out.len(), r.size());
        let used = r.feed(part, &mut out);
        assert!(used <= part.len());
        if was_done {
            assert_eq!(used, 0, "consumed after the end of data");
            assert_eq!(out.len(), len_before, "emitted after the end of data");
            assert_eq!(r.size(), size_before);
        }
        if used < part.len() {
            assert!(r.is_done(), "stopped early without the end of data");
        }
        consumed += used;
        // Once done, keep feeding: it must stay done and take nothing.
    }
    assert!(consumed <= stream.len());
    // An empty feed changes nothing.
    let (len_before, size_before, done_before) = (out.len(), r.size(), r.is_done());
    assert_eq!(r.feed(&[], &mut out), 0);
    assert_eq!(
        (out.len(), r.size(), r.is_done()),
        (len_before, size_before, done_before)
    );
    if r.is_done() {
        assert_eq!(r.feed(b".\r\n\r\n.\r\nQUIT\r\n", &mut out), 0);
        assert_eq!(out.len(), len_before);
    }
    Run {
        done: r.is_done(),
        size: r.size(),
        verdict: r.verdict().map(|v| v.code),
        out,
        consumed,
    }
}

fuzz_target!(|data: &[u8]| {
    let (sel, seed, stream) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        _ => return,
    };
    let max = max_size(sel);
    let whole = run(stream, max, None);
    let chunked = run(
        stream,
        max,
        Some(u32::from(seed).wrapping_mul(0x9E37_79B9) | 1),
    );
    let bytewise = run(stream, max, Some(0)).out; // seed 0 stays 0: chunks of 1
    assert_eq!(whole.out, chunked.out, "chunking changed the content");
    assert_eq!(whole.out, bytewise, "byte-at-a-time changed the content");
    assert_eq!(
        (whole.consumed, whole.done, whole.size, whole.verdict),
        (
            chunked.consumed,
            chunked.done,
            chunked.size,
            chunked.verdict
        )
    );

    let m = model(stream);
    assert_eq!(
        (whole.consumed, whole.done),
        (m.consumed, m.done),
        "end of data"
    );
    if whole.done {
        let used = &stream[..whole.consumed];
        assert!(used.ends_with(b".\r\n"));
        assert!(used.len() == 3 || used[..used.len() - 3].ends_with(b"\r\n"));
    }

    // Content: the model's pieces, cut where the size limit is first exceeded.
    let full: Vec<u8> = m.pieces.concat();
    assert_eq!(whole.size, full.len() as u64, "size");
    let mut expect = Vec::new();
    let mut size = 0u64;
    for p in &m.pieces {
        size += p.len() as u64;
        if size > max {
            break;
        }
        expect.extend_from_slice(p);
    }
    assert_eq!(whole.out, expect, "content differs from the model");
    assert!(whole.out.len() as u64 <= max);

    let want_verdict = if m.nul || m.too_long {
        Some(500)
    } else if whole.size > max {
        Some(552)
    } else {
        None
    };
    assert_eq!(whole.verdict, want_verdict, "verdict");

    // Canonical output: every CR starts a CRLF, every LF ends one; no NUL.
    let out = &whole.out;
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in output"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF in output"),
            0 => panic!("NUL in output"),
            _ => {}
        }
    }
    if whole.verdict.is_none() {
        for line in out.split(|&b| b == b'\n') {
            assert!(
                line.len() <= 999,
                "line of {} octets without a verdict",
                line.len()
            );
        }
    }
});
