//! Certificate and public-key fingerprints: the digests the `fingerprint` policy level
//! compares against `match=`, the colon-hex text that `tinymta cert fingerprint` prints
//! and Postfix tables hold, and the DANE `3 1 1` record to publish.
//!
//! This module owns digest choice and formatting only; which policy applies, and what a
//! mismatch does to a delivery, belong to the outbound policy code. Every digest is the
//! linked OpenSSL's; MD5 is kept only for tables copied from products that still use it.

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::sha;
use openssl::x509::X509Ref;

/// The digest a fingerprint is computed with (`--tls-fingerprint-digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    #[default]
    Sha256,
    Sha1,
    Md5,
}

impl Digest {
    /// The digest named as in Postfix's `smtp_tls_fingerprint_digest`. Case does not
    /// matter, so `SHA256` copied from another product's table works too.
    pub fn parse(s: &str) -> Option<Digest> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sha256" => Some(Digest::Sha256),
            "sha1" => Some(Digest::Sha1),
            "md5" => Some(Digest::Md5),
            _ => None,
        }
    }

    /// The name as written in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Sha1 => "sha1",
            Digest::Md5 => "md5",
        }
    }

    /// The length of the digest in bytes: a `match=` value of another length can never
    /// match, which lets the policy loader warn about it.
    pub fn output_len(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha1 => 20,
            Digest::Md5 => 16,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The digest of `data`.
pub fn digest(d: Digest, data: &[u8]) -> Vec<u8> {
    match d {
        Digest::Sha256 => sha::sha256(data).to_vec(),
        // Fingerprints are identifiers here, not signatures: SHA-1 is what older tables hold.
        Digest::Sha1 => sha::sha1(data).to_vec(),
        // Through the EVP interface, which can fail (an OpenSSL configured without MD5):
        // the empty value then never matches.
        Digest::Md5 => openssl::hash::hash(MessageDigest::md5(), data)
            .map(|d| d.to_vec())
            .unwrap_or_default(),
    }
}

/// SHA-512, which only DANE matching type 2 needs; kept beside the other digests so all
/// hashing of certificates goes through this module.
pub(crate) fn sha512(data: &[u8]) -> Vec<u8> {
    sha::sha512(data).to_vec()
}

/// `3D:7A:...`: upper-case hex bytes joined by colons, as Postfix logs fingerprints and
/// as `openssl x509 -fingerprint` prints them, so values can be pasted into `match=`.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        push_hex(&mut s, *b, b"0123456789ABCDEF");
    }
    s
}

/// Plain lower-case hex, the presentation form of TLSA record data.
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex(&mut s, *b, b"0123456789abcdef");
    }
    s
}

fn push_hex(s: &mut String, b: u8, digits: &[u8; 16]) {
    s.push(char::from(digits[usize::from(b >> 4)]));
    s.push(char::from(digits[usize::from(b & 0x0f)]));
}

/// The certificate's DER encoding. Empty only if OpenSSL cannot re-encode a certificate
/// it parsed (memory exhaustion); an empty value never matches anything.
fn cert_der(cert: &X509Ref) -> Vec<u8> {
    cert.to_der().unwrap_or_default()
}

/// The SubjectPublicKeyInfo DER exactly as it appears in the certificate.
///
/// DANE selector 1 and public-key fingerprints are defined over these bytes, and
/// OpenSSL's own DANE code hashes them as found; re-encoding a decoded key can differ
/// for unusual encodings (compressed EC points) and fails for key types OpenSSL cannot
/// load, so the field is cut out of the DER directly, and the decoded key is only a
/// fallback.
pub fn spki_der(cert: &X509Ref) -> Option<Vec<u8>> {
    let der = cert.to_der().ok()?;
    if let Some(spki) = spki_from_cert_der(&der) {
        return Some(spki.to_vec());
    }
    cert.public_key().ok()?.public_key_to_der().ok()
}

/// Finds SubjectPublicKeyInfo in a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... } ... }`.
fn spki_from_cert_der(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let (tag, cert, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(der_content(cert)?)?;
    if tag != SEQUENCE {
        return None;
    }
    tbs = der_content(tbs)?;
    let (tag, _, rest) = der_element(tbs)?;
    if tag == VERSION {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, subject, then the key.
    let expected = [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE];
    for want in expected {
        let (tag, _, rest) = der_element(tbs)?;
        if tag != want {
            return None;
        }
        tbs = rest;
    }
    let (tag, spki, _) = der_element(tbs)?;
    (tag == SEQUENCE).then_some(spki)
}

/// Splits the first DER element off `input`: (tag, the whole element including its
/// header, what follows). Only the single-byte tags X.509 uses at this level are
/// accepted, and definite lengths up to four length bytes; anything else is `None`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = len.checked_mul(256)?.checked_add(usize::from(*b))?;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let element = input.get(..end)?;
    Some((tag, element, input.get(end..)?))
}

/// The content of a whole element returned by `der_element`.
fn der_content(element: &[u8]) -> Option<&[u8]> {
    let first = *element.get(1)?;
    let header = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    element.get(header..)
}

/// The fingerprint of the whole certificate (its DER), as `openssl x509 -fingerprint`.
pub fn cert_fingerprint(cert: &X509Ref, d: Digest) -> Vec<u8> {
    let der = cert_der(cert);
    if der.is_empty() {
        return Vec::new();
    }
    digest(d, &der)
}

/// The fingerprint of the certificate's public key (SubjectPublicKeyInfo DER), which
/// survives certificate renewal with the same key. Empty if the key cannot be found.
pub fn spki_fingerprint(cert: &X509Ref, d: Digest) -> Vec<u8> {
    match spki_der(cert) {
        Some(spki) => digest(d, &spki),
        None => Vec::new(),
    }
}

/// Parses a fingerprint from a policy table: colon-separated hex (`3D:7A:...`, any
/// case, exactly two digits per group) or the same hex without colons. `None` for
/// anything else, including empty input.
pub fn parse_fingerprint(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.contains(':') {
        // Every group must be exactly one byte: a missing or extra digit is a typo, and
        // guessing would make a fingerprint that can never match look valid.
        s.split(':')
            .map(|group| match group.as_bytes() {
                [hi, lo] => Some(hex_value(*hi)? << 4 | hex_value(*lo)?),
                _ => None,
            })
            .collect()
    } else {
        let b = s.as_bytes();
        if !b.len().is_multiple_of(2) {
            return None;
        }
        b.chunks_exact(2)
            .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
            .collect()
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Which of the certificate's fingerprints equalled a `match=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintMatch {
    /// The whole certificate's digest.
    Certificate,
    /// The public key's (SPKI) digest.
    PublicKey,
}

impl FingerprintMatch {
    /// `certificate` / `public key`, for log lines.
    pub fn name(self) -> &'static str {
        match self {
            FingerprintMatch::Certificate => "certificate",
            FingerprintMatch::PublicKey => "public key",
        }
    }
}

impl fmt::Display for FingerprintMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the certificate or its public key has one of the `wanted` fingerprints, as
/// Postfix's `fingerprint` level accepts either. The certificate is tried first so the
/// log names the more specific match.
pub fn fingerprint_matches(
    cert: &X509Ref,
    d: Digest,
    wanted: &[Vec<u8>],
) -> Option<FingerprintMatch> {
    // An empty wanted value is a caller's mistake, and an empty computed value an
    // internal failure: neither may count as equal.
    let hit = |fp: &[u8]| !fp.is_empty() && wanted.iter().any(|w| w.as_slice() == fp);
    if hit(&cert_fingerprint(cert, d)) {
        return Some(FingerprintMatch::Certificate);
    }
    if hit(&spki_fingerprint(cert, d)) {
        return Some(FingerprintMatch::PublicKey);
    }
    None
}

/// The TLSA record data to publish for this certificate's key: `3 1 1 <sha256 of the
/// SPKI, lower-case hex>` (DANE-EE, SPKI, SHA-256: the record RFC 7672 recommends, as
/// it survives renewal with the same key). Empty if the key cannot be found.
pub fn tlsa_311(cert: &X509Ref) -> String {
    let fp = spki_fingerprint(cert, Digest::Sha256);
    if fp.is_empty() {
        return String::new();
    }
    format!("3 1 1 {}", lower_hex(&fp))
}

#[cfg(test)]
pub(crate) mod tests {

    /// `YYYYMMDDHHMMSSZ` for a Unix time, as an ASN.1 time.
    fn asn1_time(unix: i64) -> Asn1Time {
        let (y, m, d, secs) = crate::clock::civil(unix.max(0) as u64);
        let text = format!(
            "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        Asn1Time::from_str(&text).expect("time")
    }
    use super::*;

    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509Builder, X509NameBuilder, X509};

    /// A fresh P-256 key: EC keys generate in microseconds, keeping the tests fast.
    pub(crate) fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        PKey::from_ec_key(EcKey::generate(&group).expect("ec key")).expect("pkey")
    }

    /// What a test certificate is.
    pub(crate) struct Spec<'a> {
        pub cn: &'a str,
        pub sans: &'a [&'a str],
        pub ca: bool,
        /// Validity as (not before, not after) in seconds since the epoch; `None` for
        /// "from now, for a year".
        pub validity: Option<(i64, i64)>,
        pub serial: u32,
    }

    /// A certificate for `key`, signed by `issuer` (its certificate and key), or
    /// self-signed when `issuer` is `None`.
    pub(crate) fn make_cert(
        spec: &Spec<'_>,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
    ) -> X509 {
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", spec.cn).expect("cn");
        let name = name.build();
        let mut b = X509Builder::new().expect("builder");
        b.set_version(2).expect("version");
        let serial = BigNum::from_u32(spec.serial)
            .and_then(|n| n.to_asn1_integer())
            .expect("serial");
        b.set_serial_number(&serial).expect("serial");
        b.set_subject_name(&name).expect("subject");
        match issuer {
            Some((cert, _)) => b.set_issuer_name(cert.subject_name()).expect("issuer"),
            None => b.set_issuer_name(&name).expect("issuer"),
        }
        b.set_pubkey(key).expect("pubkey");
        let (nb, na) = match spec.validity {
            // Via a GeneralizedTime string: Asn1Time::from_unix passes a time_t, which
            // is garbled on 32-bit musl targets (Rust's libc and musl 1.2 disagree).
            Some((nb, na)) => (asn1_time(nb), asn1_time(na)),
            None => (
                Asn1Time::days_from_now(0).expect("time"),
                Asn1Time::days_from_now(365).expect("time"),
            ),
        };
        b.set_not_before(&nb).expect("not before");
        b.set_not_after(&na).expect("not after");
        if spec.ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                .expect("bc");
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .expect("ku"),
            )
            .expect("ku");
        } else {
            b.append_extension(BasicConstraints::new().critical().build().expect("bc"))
                .expect("bc");
        }
        if !spec.sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in spec.sans {
                san.dns(s);
            }
            let ext = {
                let ctx = b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None);
                san.build(&ctx).expect("san")
            };
            b.append_extension(ext).expect("san");
        }
        let signer = issuer.map(|(_, k)| k).unwrap_or(key);
        b.sign(signer, MessageDigest::sha256()).expect("sign");
        b.build()
    }

    fn sample() -> X509 {
        make_cert(
            &Spec {
                cn: "mx.example.test",
                sans: &["mx.example.test"],
                ca: false,
                validity: None,
                serial: 7,
            },
            &key(),
            None,
        )
    }

    #[test]
    fn digest_names_parse() {
        for d in [Digest::Sha256, Digest::Sha1, Digest::Md5] {
            assert_eq!(Digest::parse(d.name()), Some(d));
            assert_eq!(digest(d, b"abc").len(), d.output_len());
        }
        assert_eq!(Digest::parse("SHA256"), Some(Digest::Sha256));
        assert_eq!(Digest::parse("sha512"), None);
        assert_eq!(Digest::parse(""), None);
        assert_eq!(Digest::default(), Digest::Sha256);
    }

    #[test]
    fn known_digests() {
        // RFC 1321 / FIPS 180 test vectors for "abc".
        assert_eq!(
            lower_hex(&digest(Digest::Md5, b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            lower_hex(&digest(Digest::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            lower_hex(&digest(Digest::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn spki_cut_from_der_equals_reencoded_key() {
        let cert = sample();
        let reencoded = cert
            .public_key()
            .and_then(|k| k.public_key_to_der())
            .expect("key");
        let der = cert.to_der().expect("der");
        assert_eq!(spki_from_cert_der(&der), Some(reencoded.as_slice()));
        // Truncated or garbage input is refused, never a panic.
        for cut in [0, 1, 2, 5, der.len() / 2, der.len() - 1] {
            assert_eq!(spki_from_cert_der(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            spki_from_cert_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(spki_from_cert_der(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(spki_from_cert_der(&[0x1f, 0x01, 0x00]), None);
    }

    #[test]
    fn colon_hex_and_parse_round_trip() {
        let bytes = vec![0x3d, 0x7a, 0x00, 0xff, 0x0a];
        let text = colon_hex(&bytes);
        assert_eq!(text, "3D:7A:00:FF:0A");
        assert_eq!(parse_fingerprint(&text), Some(bytes.clone()));
        assert_eq!(parse_fingerprint("3d:7a:00:ff:0a"), Some(bytes.clone()));
        assert_eq!(parse_fingerprint("3d7A00fF0a"), Some(bytes.clone()));
        assert_eq!(parse_fingerprint("  3D:7A:00:FF:0A\n"), Some(bytes));
        assert_eq!(colon_hex(&[]), "");
        for bad in [
            "", ":", "3D:", ":3D", "3D::7A", "3D:7", "3D:7AB", "3G", "3D7", "3D 7A", "é9",
        ] {
            assert_eq!(parse_fingerprint(bad), None, "{bad:?}");
        }
        let cert = sample();
        for d in [Digest::Sha256, Digest::Sha1, Digest::Md5] {
            let fp = cert_fingerprint(&cert, d);
            assert_eq!(parse_fingerprint(&colon_hex(&fp)), Some(fp));
        }
    }

    #[test]
    fn fingerprint_match_cert_or_key() {
        let cert = sample();
        let other = sample();
        for d in [Digest::Sha256, Digest::Sha1, Digest::Md5] {
            let c = cert_fingerprint(&cert, d);
            let k = spki_fingerprint(&cert, d);
            assert_eq!(
                fingerprint_matches(&cert, d, &[vec![1, 2], c.clone()]),
                Some(FingerprintMatch::Certificate)
            );
            assert_eq!(
                fingerprint_matches(&cert, d, std::slice::from_ref(&k)),
                Some(FingerprintMatch::PublicKey)
            );
            assert_eq!(fingerprint_matches(&other, d, &[c, k]), None);
            assert_eq!(fingerprint_matches(&cert, d, &[]), None);
            assert_eq!(fingerprint_matches(&cert, d, &[Vec::new()]), None);
        }
        // A SHA-256 value does not match when the table says SHA-1.
        let c256 = cert_fingerprint(&cert, Digest::Sha256);
        assert_eq!(fingerprint_matches(&cert, Digest::Sha1, &[c256]), None);
    }
}
