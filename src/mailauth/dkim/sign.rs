//! Signing (RFC 6376 §5, RFC 8463 §3): one DKIM-Signature field per key, relaxed/
//! relaxed, over the fields of RFC 6376 §5.4.1's list that the message has, with From
//! listed once more than it occurs so that no From can be added (§8.15), and `bh=`
//! over the whole body (no `l=`: a signature that covers part of a body lets anyone
//! append to it).
//!
//! [`sign`] takes a whole message; [`signature_fields`] is the same with the body hash
//! made elsewhere, for a caller that streams the body through a [`BodyHasher`].

use std::fmt;
use std::path::Path;

use openssl::base64::encode_block;
use openssl::error::ErrorStack;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::sha::sha256;
use openssl::sign::Signer;

use super::canon::{header_data, BodyHasher, Canon};
use super::key::{KeyType, MIN_RSA_BITS};
use super::signature::Algorithm;
use super::{rsa_pkcs1_sha256, FIELD};
use crate::domain::{check_name, NameRules};
use crate::headers::Header;
use crate::tls::cert::read_key;

/// The fields signed when present: RFC 6376 §5.4.1's list.
pub const SIGNED_FIELDS: [&str; 19] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Lines of the field we write are folded before this column.
const WIDTH: usize = 78;

/// A private key with the domain (`d=`) and selector (`s=`) it signs for.
pub struct SigningKey {
    domain: String,
    selector: String,
    algorithm: Algorithm,
    key: PKey<Private>,
}

impl fmt::Debug for SigningKey {
    // Never the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({} {}._domainkey.{})",
            self.algorithm.name(),
            self.selector,
            self.domain
        )
    }
}

/// A domain or selector: a DNS name, since the key is looked up under it.
pub fn check_dns_name(what: &str, name: &str) -> Result<String, String> {
    check_name(name, NameRules::DNS)
        .map(|()| name.to_ascii_lowercase())
        .map_err(|e| format!("invalid {what} {name:?}: {e}"))
}

impl SigningKey {
    /// A key for `domain` and `selector`: RSA of at least 1024 bits (RFC 8301 §3.2)
    /// or Ed25519.
    pub fn new(domain: &str, selector: &str, key: PKey<Private>) -> Result<SigningKey, String> {
        let domain = check_dns_name("domain", domain)?;
        let selector = check_dns_name("selector", selector)?;
        let algorithm = match key.id() {
            Id::RSA if key.bits() < MIN_RSA_BITS => {
                return Err(format!(
                    "an RSA key of {} bits: DKIM needs at least {MIN_RSA_BITS} (2048 recommended)",
                    key.bits()
                ))
            }
            Id::RSA => Algorithm::RsaSha256,
            Id::ED25519 => Algorithm::Ed25519Sha256,
            _ => return Err("DKIM signs with RSA or Ed25519 keys only".into()),
        };
        Ok(SigningKey {
            domain,
            selector,
            algorithm,
            key,
        })
    }

    /// Reads the key from a PEM file (PKCS#8, or PKCS#1 for RSA) or a DER file.
    pub fn load(domain: &str, selector: &str, path: &Path) -> Result<SigningKey, String> {
        let key =
            read_key(path)?.ok_or_else(|| format!("{}: holds no private key", path.display()))?;
        SigningKey::new(domain, selector, key).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// RSA key size in bits (256 for Ed25519).
    pub fn bits(&self) -> u32 {
        self.key.bits()
    }

    /// The TXT record to publish at `selector._domainkey.domain` (§3.6.1): the
    /// SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519 (RFC 8463 §4.2).
    pub fn record(&self) -> Result<String, String> {
        let p = match self.algorithm {
            Algorithm::Ed25519Sha256 => self.key.raw_public_key(),
            _ => self.key.public_key_to_der(),
        }
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
        Ok(format!(
            "v=DKIM1; k={}; p={}",
            KeyType::of(self.algorithm).name(),
            encode_block(&p)
        ))
    }

    /// Whether `public` is this key's public half.
    pub fn matches<T: HasPublic>(&self, public: &PKeyRef<T>) -> bool {
        self.key.public_eq(public)
    }

    /// The signature over the SHA-256 of the header data: RSASSA-PKCS1-v1_5 with its
    /// DigestInfo (RFC 6376 §3.3.1), or Ed25519 over the 32 octets (RFC 8463 §3).
    pub(super) fn sign_hash(&self, hash: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        if self.algorithm == Algorithm::Ed25519Sha256 {
            return Signer::new_without_digest(&self.key)?.sign_oneshot_to_vec(hash);
        }
        let mut ctx = PkeyCtx::new(&self.key)?;
        ctx.sign_init()?;
        rsa_pkcs1_sha256(&mut ctx)?;
        let mut sig = Vec::new();
        ctx.sign_to_vec(hash, &mut sig)?;
        Ok(sig)
    }
}

/// Why a message was not signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// No From field: DKIM must sign it (§5.4), so there is nothing to sign.
    NoFrom,
    /// OpenSSL refused (the text is its error).
    Crypto(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::NoFrom => f.write_str("the message has no From field"),
            SignError::Crypto(e) => write!(f, "signing failed: {e}"),
        }
    }
}

impl std::error::Error for SignError {}

/// The DKIM-Signature fields for `message` (canonical CRLF text), one per key in the
/// order given, to prepend to it. The caller chooses the keys (those of the From:
/// domain); `now` is the signing time (`t=`).
pub fn sign(message: &[u8], keys: &[SigningKey], now: u64) -> Result<Vec<u8>, SignError> {
    let header = Header::parse(message);
    let mut body = BodyHasher::new(Canon::Relaxed, None);
    body.update(&message[header.body..]);
    let (body_hash, _) = body.finish();
    signature_fields(&header, &body_hash, keys, now)
}

/// [`sign`] with the body hash already made: `body_hash` must come from a relaxed
/// [`BodyHasher`] without limit, fed the body after `header`.
pub fn signature_fields(
    header: &Header<'_>,
    body_hash: &[u8; 32],
    keys: &[SigningKey],
    now: u64,
) -> Result<Vec<u8>, SignError> {
    if !header.has("From") {
        return Err(SignError::NoFrom);
    }
    let mut names = Vec::new();
    for name in SIGNED_FIELDS {
        let present = header.fields.iter().filter(|f| f.is(name)).count();
        let listed = if name == "From" { present + 1 } else { present };
        names.extend(std::iter::repeat_n(name, listed));
    }
    let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let bh = encode_block(body_hash);
    let mut out = Vec::new();
    for key in keys {
        let mut f = Folder::new(FIELD);
        for tag in [
            "v=1;".to_string(),
            format!("a={};", key.algorithm.name()),
            "c=relaxed/relaxed;".to_string(),
            format!("d={};", key.domain),
            format!("s={};", key.selector),
            format!("t={now};"),
        ] {
            f.word(" ", &tag);
        }
        for (i, name) in names.iter().enumerate() {
            let (sep, pre) = if i == 0 { (" ", "h=") } else { ("", "") };
            let post = if i + 1 == names.len() { ";" } else { ":" };
            f.word(sep, &format!("{pre}{name}{post}"));
        }
        f.word(" ", &format!("bh={bh};"));
        f.word(" ", "b=");
        // The field as the verifier will see it once it strips the b= value.
        let data = header_data(
            Canon::Relaxed,
            &header.fields,
            &lower,
            f.text.as_bytes(),
            FIELD.len(),
        );
        let sig = key
            .sign_hash(&sha256(&data))
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        f.fill(&encode_block(&sig));
        out.extend_from_slice(f.text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// A header field built word by word, folded before [`WIDTH`].
struct Folder {
    text: String,
    col: usize,
}

impl Folder {
    fn new(name: &str) -> Folder {
        Folder {
            text: format!("{name}:"),
            col: name.len() + 1,
        }
    }

    fn fold(&mut self) {
        self.text.push_str("\r\n ");
        self.col = 1;
    }

    /// `sep` then `word`, or `word` on a new line when it would pass the width.
    fn word(&mut self, sep: &str, word: &str) {
        if self.col + sep.len() + word.len() > WIDTH && self.col > 1 {
            self.fold();
        } else {
            self.text.push_str(sep);
            self.col += sep.len();
        }
        self.text.push_str(word);
        self.col += word.len();
    }

    /// Base64 text, broken wherever a line is full (FWS may go anywhere in it).
    fn fill(&mut self, mut s: &str) {
        while !s.is_empty() {
            if self.col >= WIDTH {
                self.fold();
            }
            let (line, rest) = s.split_at((WIDTH - self.col).min(s.len()));
            self.text.push_str(line);
            self.col += line.len();
            s = rest;
        }
    }
}
