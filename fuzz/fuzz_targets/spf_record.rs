//! SPF records and macro strings (RFC 7208): `record::Record::parse` and
//! `macros::MacroString` on arbitrary text, as anyone's DNS may publish it, then the
//! expansion of every domain-spec found with values taken from the input.
//!
//! Invariants (beyond "no panic"):
//! - only a TXT string that `is_spf` selects parses; a parsed record's directives
//!   are terms of the input, as written;
//! - parsing is term by term: the terms joined by single spaces parse to the same
//!   record, and each directive alone parses to itself;
//! - prefix lengths are in range (IPv4 ≤ 32, IPv6 ≤ 128);
//! - the places only ever accept more: a domain-spec is a valid unknown-modifier
//!   value and a valid explanation, with the same expansion;
//! - a domain-spec expanded as a name is at most 253 characters unless it is one
//!   label, and has no trailing dot;
//! - URL-escaped macros (`%{S}`) expand to unreserved characters and `%XX` only.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tinymta::mailauth::spf::macros::{MacroString, Place, Values};
use tinymta::mailauth::spf::record::{is_spf, Mechanism, Record};

fn client(data: &[u8]) -> IpAddr {
    match data.get(..16) {
        Some(b) if b[0] & 1 == 1 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap())),
        _ => {
            let mut v4 = [192, 0, 2, 1];
            for (o, b) in v4.iter_mut().zip(data) {
                *o = *b;
            }
            IpAddr::V4(Ipv4Addr::from(v4))
        }
    }
}

fn check_spec(spec: &MacroString, v: &Values<'_>) {
    let name = spec.expand_domain(v);
    assert!(!name.ends_with('.'), "{name:?}");
    assert!(
        name.len() <= 253 || !name.contains('.'),
        "{} octets",
        name.len()
    );
}

fn check_macro_string(text: &str, v: &Values<'_>) {
    let domain = MacroString::parse(text, Place::Domain);
    let modifier = MacroString::parse(text, Place::Modifier);
    let explanation = MacroString::parse(text, Place::Explanation);
    if let Ok(d) = &domain {
        assert_eq!(modifier.as_ref(), Ok(d), "{text:?}");
        check_spec(d, v);
    }
    if let Ok(m) = &modifier {
        assert_eq!(explanation.as_ref(), Ok(m), "{text:?}");
    }
    if let Ok(e) = &explanation {
        let _ = e.expand(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let v = Values {
        sender: text,
        local: text,
        sender_domain: "example.com",
        domain: text,
        ip: client(data),
        ptr: text,
        helo: text,
        receiver: "mx.example.org",
        time: 1_700_000_000,
    };

    // URL escaping of the peer's words.
    let escaped = MacroString::parse("%{S}", Place::Domain)
        .unwrap()
        .expand(&v);
    let b = escaped.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                hex.len() == 2
                    && hex
                        .iter()
                        .all(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(x)),
                "{escaped:?}"
            );
            i += 3;
        } else {
            assert!(
                b[i].is_ascii_alphanumeric() || b"-._~".contains(&b[i]),
                "{escaped:?}"
            );
            i += 1;
        }
    }

    check_macro_string(text, &v);

    let parsed = Record::parse(text);
    if !is_spf(text) {
        assert!(parsed.is_err(), "{text:?}");
        // The same text as a record's body.
        let as_record = format!("v=spf1 {text}");
        if let Ok(r) = Record::parse(&as_record) {
            check_record(&as_record, &r, &v);
        }
        return;
    }
    if let Ok(r) = parsed {
        check_record(text, &r, &v);
    }
});

fn check_record(text: &str, r: &Record, v: &Values<'_>) {
    let terms: Vec<&str> = text[6..].split(' ').filter(|t| !t.is_empty()).collect();
    let normalized = format!("v=spf1 {}", terms.join(" "));
    assert_eq!(Record::parse(&normalized).as_ref(), Ok(r), "{text:?}");
    for d in &r.directives {
        assert!(terms.contains(&d.text.as_str()), "{:?} not a term", d.text);
        let alone = Record::parse(&format!("v=spf1 {}", d.text)).expect("a directive alone");
        assert_eq!(alone.directives.as_slice(), std::slice::from_ref(d));
        match &d.mechanism {
            Mechanism::Ip4(_, len) => assert!(*len <= 32),
            Mechanism::Ip6(_, len) => assert!(*len <= 128),
            Mechanism::A(spec, cidr) | Mechanism::Mx(spec, cidr) => {
                assert!(cidr.v4 <= 32 && cidr.v6 <= 128);
                if let Some(s) = spec {
                    check_spec(s, v);
                }
            }
            Mechanism::Include(s) | Mechanism::Exists(s) | Mechanism::Ptr(Some(s)) => {
                check_spec(s, v)
            }
            Mechanism::All | Mechanism::Ptr(None) => {}
        }
    }
    for s in r.redirect.iter().chain(&r.explanation) {
        check_spec(s, v);
    }
}
