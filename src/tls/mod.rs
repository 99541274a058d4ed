//! TLS for both sides: the compiled cipher profile and how a destination may narrow it
//! (`profile`), the ordered security levels and the DANE decision (`level`), server
//! and client contexts (`client` checks the server's certificate as the level demands),
//! certificate name matching (`names`), fingerprints, DANE-TLSA matching, the
//! demonstration certificate, session resumption (`ticket` for inbound tickets,
//! `session` for the outbound cache and the counts), and the stream type that turns a
//! plaintext connection into TLS.
//!
//! Sessions get a `TlsInfo` summary and never touch OpenSSL types; this module knows
//! nothing of queues, SMTP state or routing. Which policy applies to a destination is
//! decided above it, by the outbound policy table (`outbound::policy`).

pub mod cert;
pub mod client;
pub mod dane;
pub mod fingerprint;
pub mod level;
pub mod names;
pub mod profile;
pub mod session;
pub mod stream;
pub mod ticket;

use std::fmt;
use std::path::PathBuf;

use openssl::ssl::{SslContext, SslFiletype, SslRef};
use openssl::x509::X509;

pub use stream::MaybeTls;

/// Builds the server context from certificate chains and keys (PEM files) under the
/// compiled profile. Two pairs of different key types (RSA and ECDSA) are served side
/// by side, as Postfix's dual certificates: OpenSSL picks per handshake what the
/// client supports. Errors name the file.
pub fn server_context(pairs: &[(PathBuf, PathBuf)]) -> Result<SslContext, String> {
    // The profile's builder loads the legacy provider (SEED) before the context exists.
    let mut b =
        profile::server_builder().map_err(|e| format!("cannot apply cipher profile: {e}"))?;
    let mut key_types = Vec::new();
    for (cert, key) in pairs {
        let leaf = std::fs::read(cert)
            .ok()
            .and_then(|pem| X509::from_pem(&pem).ok())
            .ok_or_else(|| format!("{}: not a PEM certificate", cert.display()))?;
        let key_type = leaf
            .public_key()
            .map(|k| k.id())
            .map_err(|e| format!("{}: unreadable public key: {e}", cert.display()))?;
        if key_types.contains(&key_type) {
            return Err(format!(
                "{}: a second certificate must have another key type (one RSA, one ECDSA)",
                cert.display()
            ));
        }
        key_types.push(key_type);
        // Loading the chain selects the slot of the certificate's key type; the key
        // and the check below apply to that slot.
        b.set_certificate_chain_file(cert)
            .map_err(|e| format!("{}: cannot load certificate chain: {e}", cert.display()))?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| format!("{}: cannot load private key: {e}", key.display()))?;
        b.check_private_key().map_err(|_| {
            format!(
                "{}: private key does not match certificate {}",
                key.display(),
                cert.display()
            )
        })?;
    }
    // OpenSSL resumes only sessions of the same id context. A constant one keeps
    // tickets valid across a SIGHUP that rebuilds this context; it would have to
    // change with the client-certificate settings if inbound ever asked for client
    // certificates (it does not: authentication is SMTP AUTH).
    b.set_session_id_context(b"tinymta")
        .map_err(|e| format!("cannot set session id context: {e}"))?;
    ticket::install(&mut b).map_err(|e| format!("cannot set up session tickets: {e}"))?;
    Ok(b.build())
}

/// How far the peer's certificate was checked, in Postfix's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// No certificate presented.
    Anonymous,
    /// A certificate that does not chain to a trusted CA.
    Untrusted,
    /// Chains to a trusted CA (name not checked).
    Trusted,
    /// Chains to a trusted CA and the name matches, or a fingerprint or DANE record
    /// matched. Only outbound verification reaches it.
    Verified,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::Anonymous => "Anonymous",
            Trust::Untrusted => "Untrusted",
            Trust::Trusted => "Trusted",
            Trust::Verified => "Verified",
        })
    }
}

/// What a finished handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub protocol: String,
    pub cipher: String,
    pub secret_bits: i32,
    pub algorithm_bits: i32,
    pub trust: Trust,
    /// Extra detail for the log, e.g. which DANE record matched.
    pub note: Option<String>,
    /// The handshake resumed an earlier session (ticket or session id).
    pub resumed: bool,
}

impl TlsInfo {
    pub fn from_ssl(ssl: &SslRef) -> TlsInfo {
        let (cipher, secret_bits, algorithm_bits) = match ssl.current_cipher() {
            // OpenSSL's cipher names, as Postfix logs them.
            Some(c) => (c.name().to_string(), c.bits().secret, c.bits().algorithm),
            None => ("unknown".to_string(), 0, 0),
        };
        let trust = if ssl.peer_certificate().is_none() {
            Trust::Anonymous
        } else if ssl.verify_result() == openssl::x509::X509VerifyResult::OK {
            Trust::Trusted
        } else {
            Trust::Untrusted
        };
        TlsInfo {
            protocol: ssl.version_str().to_string(),
            cipher,
            secret_bits,
            algorithm_bits,
            trust,
            note: None,
            resumed: ssl.session_reused(),
        }
    }
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`, as Postfix writes it in
/// logs and in the `Received:` header.
impl fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} with cipher {} ({}/{} bits)",
            self.protocol, self.cipher, self.secret_bits, self.algorithm_bits
        )
    }
}
