//! The key record published at `selector._domainkey.domain` (RFC 6376 §3.6.1) and the
//! public key it yields for a signature's algorithm: the type must match (`k=`, RFC
//! 8463 §4 for `ed25519`), the hash must be allowed (`h=`), an empty `p=` is a revoked
//! key, and RSA keys under 1024 bits are refused (RFC 8301 §3.2). `tinymta dkim check`
//! judges a published record by the same rules as the verifier.

use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;

use super::base64_value;
use super::signature::Algorithm;
use crate::mailauth::tags::{get, parse_tags};

/// Smallest RSA key a signature may be verified with (RFC 8301 §3.2).
pub const MIN_RSA_BITS: u32 = 1024;

/// The key types of `k=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    /// The `k=` value.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// The key type an algorithm signs with.
    pub fn of(algorithm: Algorithm) -> KeyType {
        match algorithm {
            Algorithm::Ed25519Sha256 => KeyType::Ed25519,
            Algorithm::RsaSha256 | Algorithm::RsaSha1 => KeyType::Rsa,
        }
    }
}

/// A key record that follows §3.6.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_type: KeyType,
    /// `p=` decoded: a SubjectPublicKeyInfo (or bare RSAPublicKey) for RSA, the 32 raw
    /// octets for Ed25519; empty when the key has been revoked.
    pub public_key: Vec<u8>,
    /// `h=`: the hash algorithms the key may be used with (None: any).
    pub hashes: Option<Vec<String>>,
    /// `t=y`: the domain is testing DKIM; a result must not be treated differently,
    /// but it is worth reporting.
    pub testing: bool,
    /// `t=s`: the `i=` domain must be `d=` itself, not a subdomain.
    pub strict: bool,
}

/// The colon-separated list of a tag, each item trimmed.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(':')
        .map(|s| s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n')))
}

/// Parses one TXT record as a key record.
pub fn parse_record(text: &str) -> Result<KeyRecord, &'static str> {
    let tags = parse_tags(text.as_bytes())?;
    if let Some(v) = get(&tags, "v") {
        // v= is optional, but when present it must be first and DKIM1.
        if tags[0].name != "v" || v != "DKIM1" {
            return Err("not a DKIM1 key record (v=)");
        }
    }
    let key_type = match get(&tags, "k").unwrap_or("rsa") {
        "rsa" => KeyType::Rsa,
        "ed25519" => KeyType::Ed25519,
        _ => return Err("unknown key type (k=)"),
    };
    let public_key =
        base64_value(get(&tags, "p").ok_or("missing p=")?).ok_or("p= is not base64")?;
    if let Some(s) = get(&tags, "s") {
        if !list(s).any(|s| s == "email" || s == "*") {
            return Err("the key is not for email (s=)");
        }
    }
    let flags: Vec<&str> = get(&tags, "t")
        .map(|t| list(t).collect())
        .unwrap_or_default();
    Ok(KeyRecord {
        key_type,
        public_key,
        hashes: get(&tags, "h").map(|h| list(h).map(String::from).collect()),
        testing: flags.contains(&"y"),
        strict: flags.contains(&"s"),
    })
}

impl KeyRecord {
    /// The public key for a signature made with `algorithm`, or why there is none.
    pub fn public_key(&self, algorithm: Algorithm) -> Result<PKey<Public>, String> {
        if self.public_key.is_empty() {
            return Err("key revoked (empty p=)".into());
        }
        if KeyType::of(algorithm) != self.key_type {
            return Err(format!(
                "k={} key for an {} signature",
                self.key_type.name(),
                algorithm.name()
            ));
        }
        if let Some(hashes) = &self.hashes {
            if !hashes.iter().any(|h| h == algorithm.hash()) {
                return Err(format!("the key does not allow {} (h=)", algorithm.hash()));
            }
        }
        let p = &self.public_key;
        match self.key_type {
            KeyType::Rsa => {
                // SubjectPublicKeyInfo as RFC 6376 says; a bare PKCS#1 RSAPublicKey is
                // still published by some (dkimpy and OpenDKIM accept both). Read as an
                // RSA key (d2i_RSA_PUBKEY), not through OpenSSL 3's generic decoder
                // (PKey::public_key_from_der), which costs about 200 µs a key — most of
                // a checked message's CPU time — against 3 µs.
                let key = Rsa::public_key_from_der(p)
                    .or_else(|_| Rsa::public_key_from_der_pkcs1(p))
                    .and_then(PKey::from_rsa)
                    .ok()
                    .filter(|k| k.id() == Id::RSA)
                    .ok_or("p= is not an RSA public key")?;
                if key.bits() < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of {} bits (at least {MIN_RSA_BITS} required)",
                        key.bits()
                    ));
                }
                Ok(key)
            }
            KeyType::Ed25519 => PKey::public_key_from_raw_bytes(p, Id::ED25519)
                .map_err(|_| "p= is not an Ed25519 public key".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8463 §A.2's Ed25519 key.
    const ED: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn records_and_their_flags() {
        let r = parse_record(ED).unwrap();
        assert_eq!(r.key_type, KeyType::Ed25519);
        assert_eq!(r.public_key.len(), 32);
        assert!(!r.testing && !r.strict && r.hashes.is_none());
        assert!(r.public_key(Algorithm::Ed25519Sha256).is_ok());
        let r = parse_record("p=; t = y : s : x; h=sha1:sha256; s=email:x; n=a note").unwrap();
        assert_eq!(r.key_type, KeyType::Rsa);
        assert!(r.testing && r.strict);
        assert_eq!(
            r.hashes.as_deref(),
            Some(&["sha1".to_string(), "sha256".to_string()][..])
        );
    }

    #[test]
    fn record_errors() {
        assert_eq!(
            parse_record("k=rsa; v=DKIM1; p="),
            Err("not a DKIM1 key record (v=)")
        );
        assert_eq!(
            parse_record("v=DKIM2; p="),
            Err("not a DKIM1 key record (v=)")
        );
        assert_eq!(
            parse_record("v=DKIM1; k=dsa; p="),
            Err("unknown key type (k=)")
        );
        assert_eq!(parse_record("v=DKIM1; k=rsa"), Err("missing p="));
        assert_eq!(parse_record("p=!!!!"), Err("p= is not base64"));
        assert_eq!(
            parse_record("p=; s=tlsrpt"),
            Err("the key is not for email (s=)")
        );
        assert_eq!(
            parse_record("v=spf1 -all"),
            Err("not a DKIM1 key record (v=)")
        );
        assert_eq!(parse_record("some text"), Err("tag-spec without '='"));
    }

    #[test]
    fn what_a_key_can_verify() {
        let revoked = parse_record("v=DKIM1; p=").unwrap();
        assert_eq!(
            revoked.public_key(Algorithm::RsaSha256).unwrap_err(),
            "key revoked (empty p=)"
        );
        let ed = parse_record(ED).unwrap();
        assert_eq!(
            ed.public_key(Algorithm::RsaSha256).unwrap_err(),
            "k=ed25519 key for an rsa-sha256 signature"
        );
        let sha1_only = parse_record(&format!("{ED}; h=sha1")).unwrap();
        assert_eq!(
            sha1_only.public_key(Algorithm::Ed25519Sha256).unwrap_err(),
            "the key does not allow sha256 (h=)"
        );
        let short = parse_record("k=ed25519; p=AAAA").unwrap();
        assert!(short.public_key(Algorithm::Ed25519Sha256).is_err());
        // An EC key is not an RSA key, whatever k= says.
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let spki = PKey::from_ec_key(ec).unwrap().public_key_to_der().unwrap();
        let rec = parse_record(&format!("p={}", openssl::base64::encode_block(&spki))).unwrap();
        assert_eq!(
            rec.public_key(Algorithm::RsaSha256).unwrap_err(),
            "p= is not an RSA public key"
        );
        // 512 bits: too small, in SPKI and in bare PKCS#1 form alike.
        let rsa = Rsa::generate(512).unwrap();
        for der in [
            PKey::from_rsa(rsa.clone())
                .unwrap()
                .public_key_to_der()
                .unwrap(),
            rsa.public_key_to_der_pkcs1().unwrap(),
        ] {
            let rec = parse_record(&format!("p={}", openssl::base64::encode_block(&der))).unwrap();
            assert_eq!(
                rec.public_key(Algorithm::RsaSha256).unwrap_err(),
                "RSA key of 512 bits (at least 1024 required)"
            );
        }
    }
}
