//! The outbound TLS policy table (`--tls-policy FILE`): `PolicyTable::parse` on
//! arbitrary text, then lookups and the decisions derived from the policies found.
//!
//! Invariants (beyond "no panic"):
//! - parse is total: a table, or an error `ORIGIN:LINE: message` whose line exists;
//! - every entry is reachable: looking up a plain key (`example.com`,
//!   `host:port`, `[host]:port`, `*`) returns that entry's own line, and a parent
//!   key (`.example.com`) or `[host]` key a table entry;
//! - policies obey what the parser promises: level `none` carries no attributes,
//!   `fingerprint` has match=, cert= goes with key=, tafile= only for verify/secure,
//!   match= only for fingerprint/verify/secure, and the protocol range is not empty
//!   under the compiled profile;
//! - the derived decisions (protocol range, cipher strings, name patterns and
//!   matching, DANE folding, fingerprint length check) do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::outbound::policy::{self, Policy, PolicyTable};
use tinymta::outbound::route::NextHop;
use tinymta::tls::level::{DaneState, Level};
use tinymta::tls::names::name_matches;
use tinymta::tls::profile;

const ORIGIN: &str = "fuzz.tbl";

/// The keys as the table syntax defines them: (line number, key).
fn keys(text: &str) -> Vec<(usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') || body.len() != l.len() {
            continue;
        }
        let key = body
            .split_once(char::is_whitespace)
            .map_or(body, |(k, _)| k);
        out.push((i + 1, key));
    }
    out
}

fn port(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(25),
        "lmtp" => Some(24),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        _ => p.parse::<u16>().ok().filter(|n| *n != 0),
    }
}

/// The next hop that must find this key first, if the key form has one, and
/// whether the hit must be this very entry (else: some entry).
fn probe(key: &str) -> Option<(NextHop, bool)> {
    if key == "*" {
        return Some((NextHop::Domain(String::new()), true));
    }
    if let Some(rest) = key.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some(match after.strip_prefix(':') {
            Some(p) => (
                NextHop::Host {
                    host: host.to_string(),
                    port: port(p)?,
                    bracketed: true,
                    implicit_tls: false,
                },
                true,
            ),
            // `[host]` with port 25 may be shadowed by a `[host]:25` entry.
            None => (
                NextHop::Host {
                    host: host.to_string(),
                    port: 25,
                    bracketed: true,
                    implicit_tls: false,
                },
                false,
            ),
        });
    }
    if let Some(parent) = key.strip_prefix('.') {
        // A subdomain may be listed exactly too; some entry must match.
        return Some((NextHop::Domain(format!("zz9probe.{parent}")), false));
    }
    Some(match key.split_once(':') {
        Some((h, p)) => (
            NextHop::Host {
                host: h.to_string(),
                port: port(p)?,
                bracketed: false,
                implicit_tls: false,
            },
            true,
        ),
        None => (NextHop::Domain(key.to_string()), true),
    })
}

fn check_policy(p: &Policy, nexthop: &str) {
    assert!(
        p.source == "default" || p.source.starts_with("fuzz.tbl:"),
        "{}",
        p.source
    );
    if p.level == Level::None {
        assert_eq!(
            p,
            &Policy {
                source: p.source.clone(),
                ..Policy::default_for(Level::None)
            }
        );
    }
    if p.level == Level::Fingerprint {
        assert!(!p.matches.is_empty() || p.source == "default");
    }
    assert_eq!(p.cert.is_some(), p.key.is_some());
    assert!(p.tafile.is_none() || p.level.must_verify_chain());
    assert!(
        p.matches.is_empty()
            || matches!(p.level, Level::Fingerprint | Level::Verify | Level::Secure)
    );
    let prof = profile::active();
    assert!(p.protocols.effective(prof.protocols).is_some(), "{p:?}");
    let _ = p.protocol_range();
    let ciphers = profile::client_cipher_string(p.level, p.ciphers, &p.exclude);
    assert!(ciphers.contains("@SECLEVEL="));
    let _ = profile::client_ciphersuites(&p.exclude);
    let pats = policy::name_patterns(p, nexthop, "mx.example.net");
    let certs = [
        "mx.example.net".to_string(),
        "*.example.net".to_string(),
        format!("*.{nexthop}"),
        nexthop.to_string(),
        "*".to_string(),
        String::new(),
    ];
    let _ = name_matches(&pats, &certs);
    for s in [
        DaneState::Secure,
        DaneState::SecureUnusable,
        DaneState::Insecure,
        DaneState::Failed,
    ] {
        let _ = p.level.effective_for_dane(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let table = match PolicyTable::parse(&text, ORIGIN) {
        Ok(t) => t,
        Err(e) => {
            // `ORIGIN:LINE: message`, LINE within the text.
            let rest = e
                .strip_prefix("fuzz.tbl:")
                .unwrap_or_else(|| panic!("error without origin: {e}"));
            let (n, msg) = rest
                .split_once(": ")
                .unwrap_or_else(|| panic!("error without line: {e}"));
            let n: usize = n.parse().unwrap_or_else(|_| panic!("bad line number: {e}"));
            assert!(n >= 1 && n <= text.lines().count().max(1), "line {n}: {e}");
            assert!(!msg.is_empty());
            return;
        }
    };
    let _ = table.check_fingerprint_length("sha256", 32);
    let _ = table.check_fingerprint_length("md5", 16);

    for (line, key) in keys(&text) {
        let Some((hop, exact)) = probe(key) else {
            continue;
        };
        let p = table.lookup(&hop, Level::May);
        if exact {
            assert_eq!(
                p.source,
                format!("{ORIGIN}:{line}"),
                "key {key:?} (line {line}) not found by {hop:?}"
            );
        } else {
            assert_ne!(p.source, "default", "key {key:?} not found by {hop:?}");
        }
        let nexthop = match &hop {
            NextHop::Domain(d) => d.clone(),
            NextHop::Host { host, .. } => host.clone(),
        };
        check_policy(&p, &nexthop);
    }

    for hop in [
        NextHop::Domain("example.com".into()),
        NextHop::Domain("a.b.example.com.".into()),
        NextHop::Host {
            host: "mx.example.com".into(),
            port: 25,
            bracketed: false,
            implicit_tls: false,
        },
        NextHop::Host {
            host: "192.0.2.1".into(),
            port: 587,
            bracketed: true,
            implicit_tls: false,
        },
        NextHop::Host {
            host: "IPv6:2001:DB8::1".into(),
            port: 25,
            bracketed: true,
            implicit_tls: false,
        },
    ] {
        for default in [Level::None, Level::May, Level::Verify, Level::Secure] {
            let p = table.lookup(&hop, default);
            if p.source == "default" {
                assert_eq!(p.level, default);
            }
            check_policy(&p, "example.com");
        }
    }
});
