//! SMTP command lines: `smtp::command::parse` with both `rcpt_utf8` flags, and the
//! `LineBuffer` framing the session puts in front of it.
//!
//! Invariants (beyond "no panic"):
//! - a NUL anywhere gives the 500 NUL reply;
//! - `rcpt_utf8 = true` only ever accepts more: what parses without it parses the
//!   same with it;
//! - every reply is a 5xx reply whose text lines hold no CR or LF (nothing of the
//!   client's line can inject reply lines);
//! - the HELO/EHLO name and the addresses hold no ASCII control characters: they
//!   end up in the `Received:` header of the queue file, which must stay
//!   CRLF-canonical, and in the log; the AUTH words hold no CR or LF;
//! - DSN parameters (RFC 3461) accepted are valid xtext without spaces or control
//!   characters (they are written as fields of a queue-file envelope line and sent
//!   on as they are), ENVID at most 100 characters, ORCPT `type;xtext` at most 500,
//!   and NOTIFY prints as a value that parses back to itself;
//! - framing: complete lines hold no LF and respect the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::smtp::command::{self, Command};
use tinymta::smtp::dsn::{self, Notify};
use tinymta::smtp::line::{Line, LineBuffer};
use tinymta::smtp::reply::Reply;
use tinymta::smtp::MAX_COMMAND_LINE;

/// Findings not fixed yet can be skipped while the rest is fuzzed:
/// `TINYMTA_FUZZ_SKIP=helo-ctl fuzz/run` (comma-separated names). Default: none.
fn skip(name: &str) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SKIP.get_or_init(|| {
        std::env::var("TINYMTA_FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    })
    .iter()
    .any(|s| s == name)
}

fn no_ctl(what: &str, s: &str, line: &[u8]) {
    assert!(
        !s.bytes().any(|b| b.is_ascii_control()),
        "{what} {s:?} holds a control character (line {:?})",
        String::from_utf8_lossy(line)
    );
}

fn no_crlf(what: &str, s: &str, line: &[u8]) {
    assert!(
        !s.contains(['\r', '\n']),
        "{what} {s:?} holds CR or LF (line {:?})",
        String::from_utf8_lossy(line)
    );
}

fn check_xtext_value(what: &str, v: &str, max: usize, line: &[u8]) {
    assert!(!v.is_empty() && v.len() <= max, "{what} {v:?} length");
    assert!(
        v.bytes().all(|b| b.is_ascii_graphic()),
        "{what} {v:?} holds a space or control character (line {:?})",
        String::from_utf8_lossy(line)
    );
}

fn check_reply(r: &Reply, line: &[u8]) {
    assert!((500..600).contains(&r.code), "code {} for {line:?}", r.code);
    assert!(!r.lines.is_empty());
    for l in &r.lines {
        no_crlf("reply text", l, line);
    }
    let wire = r.to_wire();
    assert_eq!(wire.matches("\r\n").count(), r.lines.len());
}

fn check_command(c: &Command, line: &[u8]) {
    match c {
        Command::Ehlo(name) | Command::Helo(name) => {
            assert!(!name.is_empty() && name.trim() == name);
            if !skip("helo-ctl") {
                no_ctl("HELO/EHLO name", name, line);
            }
        }
        Command::Mail { from, params } => {
            if let Some(m) = from {
                no_ctl("sender", &m.to_string(), line);
                assert!(!m.is_bare_postmaster());
            }
            if let Some(a) = &params.auth {
                no_crlf("AUTH=", a, line);
            }
            if let Some(e) = &params.dsn.envid {
                check_xtext_value("ENVID", e, dsn::MAX_ENVID, line);
            }
        }
        Command::Rcpt { to, dsn } => {
            no_ctl("recipient", &to.to_string(), line);
            if let Some(o) = &dsn.orcpt {
                check_xtext_value("ORCPT", o, dsn::MAX_ORCPT, line);
                let (_, addr) = o.split_once(';').expect("ORCPT has its type");
                assert!(dsn::check_xtext(addr).is_ok());
                let text = dsn::decode_xtext(addr);
                assert_eq!(dsn::decode_xtext(&dsn::encode_xtext(&text)), text);
            }
            if let Some(n) = dsn.notify {
                assert_eq!(Notify::parse(&n.to_string()), Ok(n), "{line:?}");
            }
        }
        Command::Auth {
            mechanism,
            initial_response,
        } => {
            assert!(!mechanism.is_empty());
            assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
            no_crlf("AUTH mechanism", mechanism, line);
            if let Some(ir) = initial_response {
                no_crlf("AUTH initial response", ir, line);
            }
        }
        _ => {}
    }
}

fn parse_both(line: &[u8]) {
    let strict = command::parse(line, false);
    let utf8 = command::parse(line, true);
    if line.contains(&0) {
        assert_eq!(strict.as_ref().unwrap_err().code, 500);
        assert_eq!(utf8.as_ref().unwrap_err().code, 500);
    }
    if let Ok(c) = &strict {
        assert_eq!(
            Ok(c),
            utf8.as_ref(),
            "rcpt_utf8 refused what plain accepted"
        );
    }
    for r in [&strict, &utf8] {
        match r {
            // The value checks hold for lines as the session frames them (no LF);
            // the whole-input call only has to be panic-free and refuse sanely.
            Ok(c) if !line.contains(&b'\n') => check_command(c, line),
            Ok(_) => {}
            Err(e) => check_reply(e, line),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one line, as `parse` may be called by any caller.
    parse_both(data);

    // The input as a stream: framed by LineBuffer in chunks derived from the first
    // byte, each complete line parsed, as the session does.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed % 32) + 1;
    let limit = MAX_COMMAND_LINE;
    let mut buf = LineBuffer::default();
    let mut lines = 0usize;
    for part in stream.chunks(chunk) {
        buf.extend(part);
        while let Some(l) = buf.next_line(limit) {
            lines += 1;
            if let Line::Complete(l) = l {
                assert!(!l.contains(&b'\n'));
                assert!(l.len() + 2 <= limit);
                parse_both(&l);
            }
        }
    }
    // Never more lines than LFs.
    assert!(lines <= stream.iter().filter(|&&b| b == b'\n').count());
    let rest = buf.take_pending();
    assert!(!rest.contains(&b'\n'));
    assert!(rest.len() <= limit);
});
