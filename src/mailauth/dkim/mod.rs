//! DKIM (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463): signing the mail we
//! originate and verifying the signatures on the mail we receive, as pure code over
//! canonical CRLF messages and the [`Dns`](super::Dns) trait.
//!
//! What each file owns:
//! - `../tags.rs`: the tag-list syntax both records share (§3.2), DMARC's too;
//! - `signature.rs`: the DKIM-Signature field's tags and their rules (§3.5);
//! - `key.rs`: the key record at `selector._domainkey.domain` (§3.6.1) and the public
//!   key it gives for an algorithm (RFC 8301 §3.2 for the smallest RSA key);
//! - `canon.rs`: simple and relaxed canonicalisation (§3.4), header selection (§5.4.2)
//!   and the body hash as an incremental hasher fed with chunks (§3.7), so a body never
//!   has to be in memory at once;
//! - `sign.rs`: [`SigningKey`] (PEM files) and [`sign`]: relaxed/relaxed, the RFC's
//!   recommended header list (§5.4.1) with From over-signed, one signature per key;
//! - `verify.rs`: [`verify`] and [`Verifier`]: every signature up to a limit, one
//!   [`Verdict`] each, in the terms of Authentication-Results (RFC 8601 §2.7.1).
//!
//! The cryptography and the hashing are OpenSSL's (RSA PKCS#1 v1.5 and Ed25519 over the
//! SHA-256 of the header data): they come with the libcrypto that TLS needs (a shared
//! library on OpenWrt), so DKIM adds no crypto code of its own to the binary. OpenSSL
//! also reads every PEM form (PKCS#1, PKCS#8).
//!
//! This module decides nothing about which mail is signed or what a result leads to:
//! the caller passes the keys of the `From:` domain, and turns verdicts into a header
//! or a refusal.

mod canon;
mod key;
mod sign;
mod signature;
mod verify;

pub use crate::mailauth::tags::{parse_tags, Tag};
pub use canon::{header_field, BodyHasher, Canon};
pub use key::{parse_record, KeyRecord, KeyType};
pub use sign::{check_dns_name, sign, signature_fields, SignError, SigningKey, SIGNED_FIELDS};
pub use signature::{Algorithm, Signature};
pub use verify::{verify, DkimResult, Verdict, Verifier, MAX_SIGNATURES};

/// The name of the signature field.
pub const FIELD: &str = "DKIM-Signature";

/// RSASSA-PKCS1-v1_5 over a SHA-256 digest (RFC 6376 §3.3.1) on a context already
/// set up to sign or to verify: OpenSSL then wraps the digest in its DigestInfo.
fn rsa_pkcs1_sha256<T>(
    ctx: &mut openssl::pkey_ctx::PkeyCtxRef<T>,
) -> Result<(), openssl::error::ErrorStack> {
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
    ctx.set_signature_md(openssl::md::Md::sha256())
}

/// A base64 tag value (b=, bh=, p=): folding whitespace inside it is ignored (§3.5).
fn base64_value(value: &str) -> Option<Vec<u8>> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    if compact.is_empty() {
        return Some(Vec::new());
    }
    openssl::base64::decode_block(&compact).ok()
}

#[cfg(test)]
mod tests;
