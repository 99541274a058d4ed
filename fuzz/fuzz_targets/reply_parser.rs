//! The client side: `ReplyParser` on arbitrary server lines, and `dot_stuff` checked
//! against the `DataReader` (what tinymta sends must be read back as what it meant).
//!
//! Input layout: byte 0 chooses the mode, the rest is the payload.
//!
//! Invariants:
//! - reply parser: a finished reply has a code in 200..=599 and 1..=100 lines; its
//!   wire form (`to_wire`) parsed again gives the same reply; `enhanced_status`
//!   gives `C.x.y` with C the code's class; EHLO keyword parsing does not panic;
//! - dot_stuff on any content: a DataReader finds the end of data exactly at the end
//!   of the stuffed text (no content can end DATA early on the next server);
//! - dot_stuff on CRLF-canonical content x: the DataReader gives back exactly x
//!   (plus a final CRLF if x lacked one), minus NULs, which it flags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::smtp::data::DataReader;
use tinymta::smtp::reply::Reply;
use tinymta::smtp::data::dot_stuff;
use tinymta::smtp::reply_parser::{enhanced_status, Extensions, ReplyParser};

/// Splits a stream into lines the way the outbound client does: at LF, one CR
/// before it removed.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn check_reply(r: &Reply) {
    assert!((200..600).contains(&r.code));
    assert!(
        !r.lines.is_empty() && r.lines.len() <= 100,
        "{} lines",
        r.lines.len()
    );
    let e = enhanced_status(r);
    let parts: Vec<&str> = e.split('.').collect();
    assert_eq!(parts.len(), 3, "{e:?}");
    assert_eq!(parts[0], (r.code / 100).to_string(), "{e:?}");
    assert!(parts
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())));
    let _ = Extensions::from_ehlo(r);
    let _ = r.summary();

    // Round trip through the wire form.
    let wire = r.to_wire();
    assert!(wire.ends_with("\r\n"));
    let mut p = ReplyParser::default();
    let mut got = None;
    let wire_lines = lines(wire.as_bytes());
    // The piece after the last LF is empty.
    for (i, &l) in wire_lines[..wire_lines.len() - 1].iter().enumerate() {
        assert!(got.is_none(), "reply ended early at wire line {i}");
        got = p
            .feed(l)
            .unwrap_or_else(|e| panic!("own wire form refused: {e}"));
    }
    assert_eq!(got.as_ref(), Some(r), "wire round trip");
}

fn replies(data: &[u8]) {
    let mut p = ReplyParser::default();
    for l in lines(data) {
        match p.feed(l) {
            Ok(Some(r)) => check_reply(&r),
            Ok(None) => {}
            // The client drops the connection; carry on with a fresh parser.
            Err(_) => p = ReplyParser::default(),
        }
    }
}

/// Rewrites bare CR and bare LF as CRLF: the form the queue holds.
fn canonical(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn read_back(stuffed: &[u8]) -> (Vec<u8>, DataReader) {
    let mut r = DataReader::new(u64::MAX);
    let mut out = Vec::new();
    let used = r.feed(stuffed, &mut out);
    assert!(r.is_done(), "stuffed content did not end DATA");
    assert_eq!(
        used,
        stuffed.len(),
        "stuffed content ended DATA early at {used}"
    );
    (out, r)
}

fn stuffing(data: &[u8]) {
    // Any content, canonical or not: the end of data is where we put it.
    let s = dot_stuff(data);
    assert!(s.ends_with(b"\r\n.\r\n") || s == b".\r\n");
    read_back(&s);

    // Canonical content comes back unchanged.
    let x = canonical(data);
    let s = dot_stuff(&x);
    let (out, r) = read_back(&s);
    let mut want: Vec<u8> = x.iter().copied().filter(|&b| b != 0).collect();
    if !x.is_empty() && !x.ends_with(b"\r\n") {
        want.extend_from_slice(b"\r\n");
    }
    assert_eq!(
        out, want,
        "dot_stuff + DataReader changed canonical content"
    );
    if x.contains(&0) {
        assert_eq!(r.verdict().map(|v| v.code), Some(500));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => replies(payload),
        1 => stuffing(payload),
        _ => {
            replies(payload);
            stuffing(payload);
        }
    }
});
