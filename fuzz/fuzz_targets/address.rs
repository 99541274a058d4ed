//! RFC 5321 paths and mailboxes: `split_path` and `parse_mailbox` on arbitrary UTF-8
//! under all eight flag combinations (utf8, allow_null, allow_postmaster).
//!
//! Invariants (beyond "no panic"):
//! - `split_path` returns sub-slices of its argument; for the `<...>` form the path
//!   and the rest plus the brackets fit in the argument;
//! - `None` (the null path) only for an empty path with `allow_null`;
//!   a bare postmaster only with `allow_postmaster`; `NeedsUtf8` only without utf8
//!   and for non-ASCII input;
//! - each flag only ever accepts more: a result with a flag off is the same result
//!   with it on;
//! - a mailbox respects the size limits, holds no ASCII control character (it is
//!   written into headers and the queue file), is ASCII without utf8, and its
//!   printed form parses back to the same mailbox (what we store and relay is what
//!   we accepted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::smtp::address::{self, AddressError, Mailbox};

type Parsed = Result<Option<Mailbox>, AddressError>;

fn sub_slice(outer: &str, inner: &str) -> bool {
    if inner.is_empty() {
        return true; // may be a literal ""
    }
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn check(path: &str, utf8: bool, null: bool, pm: bool, r: &Parsed) {
    match r {
        Ok(None) => assert!(path.is_empty() && null, "null path for {path:?}"),
        Ok(Some(m)) => {
            let printed = m.to_string();
            assert!(
                !printed.bytes().any(|b| b.is_ascii_control()),
                "control character in mailbox {printed:?} from {path:?}"
            );
            assert!(
                utf8 || printed.is_ascii(),
                "non-ASCII without utf8: {path:?}"
            );
            if m.is_bare_postmaster() {
                assert!(pm && m.local.eq_ignore_ascii_case("postmaster"));
            } else {
                assert!(!m.local.is_empty() && m.local.len() <= 64, "{m:?}");
                assert!(!m.domain.is_empty() && m.domain.len() <= 255, "{m:?}");
            }
            assert!(
                printed.len() <= path.len(),
                "{printed:?} longer than {path:?}"
            );
            // Idempotence: the stored form parses back to itself.
            let again = address::parse_mailbox(&printed, utf8, null, pm);
            assert_eq!(
                again.as_ref(),
                Ok(&Some(m.clone())),
                "{path:?} -> {printed:?} does not parse back"
            );
        }
        Err(AddressError::NeedsUtf8) => assert!(!utf8 && !path.is_ascii()),
        Err(_) => {}
    }
}

fn all_flags(path: &str) {
    let mut results: [Option<Parsed>; 8] = Default::default();
    for bits in 0..8u8 {
        let (utf8, null, pm) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        let r = address::parse_mailbox(path, utf8, null, pm);
        check(path, utf8, null, pm, &r);
        results[bits as usize] = Some(r);
    }
    // Monotonicity: turning a flag on keeps every success.
    for bits in 0..8usize {
        let Some(Ok(m)) = &results[bits] else {
            continue;
        };
        for flag in [1, 2, 4] {
            if let Some(r) = &results[bits | flag] {
                assert_eq!(r.as_ref(), Ok(m), "flag {flag} lost {path:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let arg: &str = &text;

    match address::split_path(arg) {
        Ok((path, rest)) => {
            assert!(sub_slice(arg, path) && sub_slice(arg, rest));
            if arg.trim_start().starts_with('<') {
                assert!(path.len() + rest.len() + 2 <= arg.len());
                assert!(!path.contains('>') || path.contains('"'), "{arg:?}");
            }
            all_flags(path);
        }
        Err(e) => assert!(arg.trim_start().starts_with('<'), "{e:?} for bare {arg:?}"),
    }
    // The argument itself as a path, as other callers (maps, --sender-login-map)
    // may pass whole strings.
    all_flags(arg);
});
