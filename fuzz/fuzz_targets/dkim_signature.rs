//! DKIM (`mailauth::dkim`): the tag-list parser, the DKIM-Signature and key-record
//! rules, both canonicalisations, and our own signatures verified on arbitrary
//! messages.
//!
//! Input layout: byte 0 picks the body canonicalisation and whether an `l=` limit
//! applies, bytes 1-2 the chunk split point and the limit; the whole input is also the
//! tag list, the key record and the message.
//!
//! Invariants (beyond "no panic"):
//! - `parse_tags` is total; its tags have valid, distinct names, spans in order that
//!   do not overlap, and each value is its span without the surrounding whitespace;
//! - a Signature has a lower-case d=, an h= with From, and x= not before t=; a key
//!   record yields a key or a reason for every algorithm;
//! - the body hash equals that of an independent line-based model of §3.4.3/§3.4.4
//!   (with the `l=` prefix), whatever the chunking, and counts the model's length;
//! - a relaxed header field is `lowercase-name:value` + CRLF with no CR or LF inside,
//!   no whitespace runs, none at the ends of the value;
//! - a message with a From field, signed by us with Ed25519, verifies as `pass`
//!   (signing and verification agree on every header and body);
//! - verifying the raw input against a DNS that answers every name is total and gives
//!   at most MAX_SIGNATURES verdicts.
#![no_main]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{Id, PKey};
use tinymta::dns::{DnsError, Lookup, Mx};
use tinymta::headers::Header;
use tinymta::mailauth::dkim::{
    header_field, parse_record, parse_tags, sign, verify, Algorithm, BodyHasher, Canon,
    DkimResult, Signature, SigningKey, MAX_SIGNATURES,
};
use tinymta::mailauth::Dns;

/// RFC 8032's first test key (RFC 8463's example key).
const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
    0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
    0x7f, 0x60,
];

fn key() -> &'static (SigningKey, String) {
    static KEY: OnceLock<(SigningKey, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkey = PKey::private_key_from_raw_bytes(&SEED, Id::ED25519).unwrap();
        let key = SigningKey::new("example.com", "fuzz", pkey).unwrap();
        let record = key.record().unwrap();
        (key, record)
    })
}

/// Answers every TXT query with our key record.
struct AnyName;

impl Dns for AnyName {
    async fn txt(&self, _: &str) -> Result<Lookup<String>, DnsError> {
        Ok(Lookup {
            records: vec![key().1.clone()],
            authenticated: false,
            nxdomain: false,
        })
    }
    async fn mx(&self, _: &str) -> Result<Lookup<Mx>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn a(&self, _: &str) -> Result<Lookup<Ipv4Addr>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn aaaa(&self, _: &str) -> Result<Lookup<Ipv6Addr>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn ptr(&self, _: IpAddr) -> Result<Lookup<String>, DnsError> {
        Err(DnsError::Refused)
    }
}

/// The fake DNS never waits, so one poll finishes verification.
fn now_or_never<T>(f: impl Future<Output = T>) -> T {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("verification waited on a DNS that never waits"),
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// The canonical body by lines: split at CRLF (the piece after the last one is an
/// unterminated line), relaxed squeezes whitespace runs and drops it at line ends,
/// empty lines at the end go, and an empty simple body is one CRLF.
fn model_body(canon: Canon, body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rest = body;
    loop {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                lines.push(rest[..i].to_vec());
                rest = &rest[i + 2..];
            }
            None => {
                lines.push(rest.to_vec());
                break;
            }
        }
    }
    if canon == Canon::Relaxed {
        for line in &mut lines {
            let mut out = Vec::new();
            for &b in line.iter() {
                let b = if b == b'\t' { b' ' } else { b };
                if !(b == b' ' && out.last() == Some(&b' ')) {
                    out.push(b);
                }
            }
            while out.last() == Some(&b' ') {
                out.pop();
            }
            *line = out;
        }
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut out: Vec<u8> = lines.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
    if canon == Canon::Simple && out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn check_tags(data: &[u8]) {
    let Ok(tags) = parse_tags(data) else { return };
    let mut end = 0;
    for (i, t) in tags.iter().enumerate() {
        assert!(t.name.as_bytes()[0].is_ascii_alphabetic(), "{t:?}");
        assert!(t.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert!(tags[..i].iter().all(|o| o.name != t.name), "duplicate {t:?}");
        assert!(t.span.start >= end && t.span.end <= data.len(), "{t:?}");
        end = t.span.end;
        let area = std::str::from_utf8(&data[t.span.clone()]).unwrap();
        assert_eq!(area.trim_matches([' ', '\t', '\r', '\n']), t.value);
        assert!(!t.value.contains(';'));
    }
    if let Ok(sig) = Signature::from_tags(&tags) {
        assert_eq!(sig.domain, sig.domain.to_ascii_lowercase());
        assert!(sig.headers.iter().any(|h| h == "from"));
        if let (Some(t), Some(x)) = (sig.timestamp, sig.expires) {
            assert!(x >= t);
        }
    }
}

fn check_body(ctrl: &[u8], body: &[u8]) {
    let canon = if ctrl[0] & 1 == 0 {
        Canon::Simple
    } else {
        Canon::Relaxed
    };
    let limit = (ctrl[0] & 2 != 0).then_some(u64::from(ctrl[2]));
    let model = model_body(canon, body);
    let signed = limit.map_or(&model[..], |l| &model[..model.len().min(l as usize)]);
    let expect = (sha256(signed), model.len() as u64);
    let cut = usize::from(ctrl[1]).min(body.len());
    let mut whole = BodyHasher::new(canon, limit);
    whole.update(body);
    assert_eq!(whole.finish(), expect, "{canon:?} limit {limit:?}");
    let mut split = BodyHasher::new(canon, limit);
    split.update(&body[..cut]);
    split.update(&body[cut..]);
    assert_eq!(split.finish(), expect, "{canon:?} cut at {cut}");
}

fn check_header(msg: &[u8]) {
    for f in Header::parse(msg).fields {
        let mut out = Vec::new();
        header_field(Canon::Relaxed, f.raw, f.name.len(), &mut out);
        let body = out.strip_suffix(b"\r\n").expect("relaxed field ends in CRLF");
        let (name, value) = body.split_at(f.name.len());
        assert_eq!(name, f.name.to_ascii_lowercase());
        let value = &value[1..];
        assert!(!value.windows(2).any(|w| w == b"\r\n"), "{out:?}");
        assert!(!value.windows(2).any(|w| w == b"  "), "{out:?}");
        assert!(!value.contains(&b'\t'));
        assert!(!value.starts_with(b" ") && !value.ends_with(b" "), "{out:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    check_tags(data);
    let text = String::from_utf8_lossy(data);
    if let Ok(record) = parse_record(&text) {
        for a in [Algorithm::RsaSha256, Algorithm::Ed25519Sha256, Algorithm::RsaSha1] {
            let _ = record.public_key(a);
        }
    }
    if data.len() >= 3 {
        check_body(&data[..3], &data[3..]);
    }
    check_header(data);

    let verdicts = now_or_never(verify(data, &AnyName, 0));
    assert!(verdicts.len() <= MAX_SIGNATURES);
    for v in &verdicts {
        assert!(v.header_b().len() <= 8);
        let _ = v.resinfo();
    }

    if let Ok(fields) = sign(data, std::slice::from_ref(&key().0), 0) {
        let signed = [&fields[..], data].concat();
        let verdicts = now_or_never(verify(&signed, &AnyName, 0));
        assert_eq!(
            verdicts.first().map(|v| (v.result, v.reason.clone())),
            Some((DkimResult::Pass, None)),
            "{:?}",
            String::from_utf8_lossy(&signed)
        );
    }
});
