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

use openssl::nid::Nid;
use openssl::ssl::{SslContext, SslFiletype, SslRef, SslVerifyMode};
use openssl::x509::{X509NameRef, X509Ref, X509};

use fingerprint::Digest;

pub use stream::MaybeTls;

/// Whether the server asks clients for a certificate, and the CAs it verifies them
/// against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertRequest {
    pub ask: bool,
    /// `--tls-ccert-ca-file`: without it no client certificate is `Trusted`.
    pub ca_file: Option<PathBuf>,
}

/// Builds the server context from certificate chains and keys (PEM files) under the
/// compiled profile. Two pairs of different key types (RSA and ECDSA) are served side
/// by side, as Postfix's dual certificates: OpenSSL picks per handshake what the
/// client supports. With `ccert.ask`, clients are asked for a certificate (Postfix's
/// `smtpd_tls_ask_ccert`): any certificate, or none, is accepted, and whether it
/// verified against `ccert.ca_file` is kept for the session to judge. Errors name the
/// file.
pub fn server_context(
    pairs: &[(PathBuf, PathBuf)],
    ccert: &ClientCertRequest,
) -> Result<SslContext, String> {
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
    if ccert.ask {
        // The handshake never fails over the client's certificate: a client without
        // one, or with one from another CA, may still deliver mail as an anonymous
        // client would; OpenSSL keeps the verification result for `TlsInfo`.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        if let Some(ca) = &ccert.ca_file {
            b.set_ca_file(ca)
                .map_err(|e| format!("{}: cannot load CA certificates: {e}", ca.display()))?;
            // The CAs named in the certificate request, so a client with several
            // certificates picks one of ours.
            let names = openssl::x509::X509Name::load_client_ca_file(ca)
                .map_err(|e| format!("{}: cannot read CA names: {e}", ca.display()))?;
            b.set_client_ca_list(names);
        }
    }
    // OpenSSL resumes only sessions of the same id context. A constant one keeps
    // tickets valid across a SIGHUP that rebuilds this context; it changes with the
    // client-certificate request, so a session resumed never skips a check that a new
    // handshake would make (the client certificate is kept in the session).
    let id_context: &[u8] = if ccert.ask {
        b"tinymta-ccert"
    } else {
        b"tinymta"
    };
    b.set_session_id_context(id_context)
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
    /// Inbound: the certificate the client presented, when it was asked for one.
    pub client_cert: Option<Box<ClientCert>>,
}

/// A client's certificate as the session and the log see it: names cleaned for a
/// header comment and a log line, and its fingerprints under the configured digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub subject_cn: String,
    pub issuer_cn: String,
    pub digest: Digest,
    /// Of the whole certificate.
    pub fingerprint: Vec<u8>,
    /// Of its public key (survives renewal with the same key).
    pub pkey_fingerprint: Vec<u8>,
}

impl ClientCert {
    pub fn of(cert: &X509Ref, digest: Digest) -> ClientCert {
        ClientCert {
            subject_cn: common_name(cert.subject_name()),
            issuer_cn: common_name(cert.issuer_name()),
            digest,
            fingerprint: fingerprint::cert_fingerprint(cert, digest),
            pkey_fingerprint: fingerprint::spki_fingerprint(cert, digest),
        }
    }

    /// Whether the certificate or its public key has one of the `listed` fingerprints.
    pub fn is_listed(&self, listed: &[Vec<u8>]) -> bool {
        let hit = |fp: &Vec<u8>| !fp.is_empty() && listed.contains(fp);
        hit(&self.fingerprint) || hit(&self.pkey_fingerprint)
    }
}

/// The first common name, with anything that could break a header comment or a log
/// line (controls, non-ASCII, quotes, parentheses, backslashes) shown as `?`, at most
/// 64 characters (the X.520 upper bound).
fn common_name(name: &X509NameRef) -> String {
    let cn = name
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .unwrap_or_default();
    cn.chars()
        .take(64)
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '(' | ')') => c,
            _ => '?',
        })
        .collect()
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
            client_cert: None,
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
