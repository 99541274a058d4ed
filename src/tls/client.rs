//! Outbound TLS: a client context for one destination's policy, and the check of the
//! server's certificate that the policy level demands (fingerprint, CA chain + name,
//! or DANE). The outbound session gets a `TlsInfo` or the reason for failure; it never
//! touches OpenSSL itself.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_openssl::SslStream;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslFiletype, SslOptions, SslVerifyMode};
use openssl::x509::{X509VerifyResult, X509};
use smol::io::{AsyncRead, AsyncWrite};

use super::dane::{self, DaneOutcome, Tlsa};
use super::fingerprint::{self, Digest};
use super::level::Level;
use super::names::{name_matches, NamePattern};
use super::profile::{self, Grade, Protocol, Protocols};
use super::{MaybeTls, TlsInfo, Trust};

/// What must be true of the server's certificate for the delivery to go ahead.
#[derive(Debug, Clone)]
pub enum PeerCheck {
    /// may / encrypt (and dane without usable TLSA): nothing; the log says how far the
    /// chain verified anyway (Trusted/Untrusted).
    Nothing,
    /// fingerprint: the certificate or its public key hashes to one of these.
    Fingerprint {
        digest: Digest,
        wanted: Vec<Vec<u8>>,
    },
    /// verify / secure: the chain verifies against the trust anchors and a name matches.
    Pkix { names: Vec<NamePattern> },
    /// dane / dane-only with usable, DNSSEC-validated TLSA records.
    Dane {
        records: Vec<Tlsa>,
        reference_names: Vec<String>,
    },
}

/// Trust anchors and the client certificate, from the command line.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub ca_file: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// What one destination's policy asks of its client context: the level, the profile
/// narrowed by `protocols=`, `ciphers=` and `exclude=`, trust anchors used instead of
/// the CA store (`tafile=`) and a client certificate of its own (`cert=`/`key=`). The
/// outbound policy table fills it in; `source` names the table entry in errors.
#[derive(Debug, Clone, Copy)]
pub struct ContextPolicy<'a> {
    pub level: Level,
    pub protocols: &'a Protocols,
    pub ciphers: Option<Grade>,
    pub exclude: &'a [String],
    pub tafile: Option<&'a Path>,
    /// Certificate chain and key (PEM), used instead of [`ClientSettings::cert`].
    pub cert: Option<(&'a Path, &'a Path)>,
    pub source: &'a str,
}

/// A ready client context for one connection.
pub struct ClientTls {
    ctx: SslContext,
    sni: Option<String>,
    check: PeerCheck,
}

/// Builds the context for `policy`: the compiled profile narrowed by the policy's
/// `protocols`, `ciphers` and `exclude`, trust anchors for `verify`/`secure` (or the
/// policy's `tafile`), and the client certificate (the policy's own first).
pub fn client_tls(
    settings: &ClientSettings,
    policy: ContextPolicy<'_>,
    sni: Option<&str>,
    check: PeerCheck,
) -> Result<ClientTls, String> {
    let mut b = profile::client_builder().map_err(|e| format!("TLS client context: {e}"))?;
    apply_policy(&mut b, &policy)?;
    load_trust(&mut b, settings, &policy)?;
    let cert = policy.cert.or_else(|| {
        let (c, k) = settings.cert.as_ref()?;
        Some((c.as_path(), k.as_path()))
    });
    if let Some((c, k)) = cert {
        b.set_certificate_chain_file(c)
            .map_err(|e| format!("{}: cannot load client certificate: {e}", c.display()))?;
        b.set_private_key_file(k, SslFiletype::PEM)
            .map_err(|e| format!("{}: cannot load client key: {e}", k.display()))?;
        b.check_private_key()
            .map_err(|_| format!("{}: key does not match {}", k.display(), c.display()))?;
    }
    // Verification never aborts the handshake: the result is read afterwards, so the
    // log can say Trusted/Untrusted at opportunistic levels and the failure reason at
    // the others.
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    Ok(ClientTls::new(b.build(), sni, check))
}

impl ClientTls {
    /// SNI only for names: RFC 6066 §3 forbids sending an IP address.
    fn new(ctx: SslContext, sni: Option<&str>, check: PeerCheck) -> ClientTls {
        ClientTls {
            ctx,
            sni: sni
                .filter(|s| s.parse::<std::net::IpAddr>().is_err())
                .map(str::to_string),
            check,
        }
    }
}

/// A context that accepts any certificate and any protocol and cipher the library
/// offers (security level 0), for looking at a server's certificate rather than
/// trusting it (`tinymta cert fingerprint --remote`): old servers with SHA-1
/// signatures or 1024-bit keys can be inspected too.
pub fn inspection_tls(sni: Option<&str>) -> Result<ClientTls, String> {
    let mut b = SslContext::builder(openssl::ssl::SslMethod::tls_client())
        .map_err(|e| format!("TLS client context: {e}"))?;
    b.set_security_level(0);
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    Ok(ClientTls::new(b.build(), sni, PeerCheck::Nothing))
}

fn apply_policy(b: &mut SslContextBuilder, policy: &ContextPolicy) -> Result<(), String> {
    let (min, max) = policy.protocols.range();
    b.set_min_proto_version(Some(min.ssl_version()))
        .and_then(|_| b.set_max_proto_version(Some(max.ssl_version())))
        .map_err(|e| format!("{}: protocols: {e}", policy.source))?;
    for p in policy.protocols.excluded() {
        let opt = match p {
            Protocol::Tls10 => SslOptions::NO_TLSV1,
            Protocol::Tls11 => SslOptions::NO_TLSV1_1,
            Protocol::Tls12 => SslOptions::NO_TLSV1_2,
            Protocol::Tls13 => SslOptions::NO_TLSV1_3,
        };
        b.set_options(opt);
    }
    let ciphers = profile::client_cipher_string(policy.level, policy.ciphers, policy.exclude);
    b.set_cipher_list(&ciphers).map_err(|e| {
        format!(
            "{}: ciphers/exclude leave no usable cipher: {e}",
            policy.source
        )
    })?;
    b.set_ciphersuites(&profile::client_ciphersuites(policy.exclude))
        .map_err(|e| format!("{}: exclude leaves no TLS 1.3 suite: {e}", policy.source))?;
    Ok(())
}

fn load_trust(
    b: &mut SslContextBuilder,
    settings: &ClientSettings,
    policy: &ContextPolicy,
) -> Result<(), String> {
    if let Some(ta) = policy.tafile {
        return b
            .set_ca_file(ta)
            .map_err(|e| format!("{}: tafile {}: {e}", policy.source, ta.display()));
    }
    if !policy.level.must_verify_chain() {
        // Only for the Trusted/Untrusted note in logs: the system store if it loads.
        let _ = b.set_default_verify_paths();
        return Ok(());
    }
    match (&settings.ca_file, &settings.ca_dir) {
        (None, None) => b
            .set_default_verify_paths()
            .map_err(|e| format!("system trust store: {e}")),
        (file, dir) => {
            if let Some(f) = file {
                b.set_ca_file(f)
                    .map_err(|e| format!("--tls-ca-file {}: {e}", f.display()))?;
            }
            if let Some(d) = dir {
                b.cert_store_mut()
                    .add_lookup(openssl::x509::store::X509Lookup::hash_dir())
                    .and_then(|l| l.add_dir(&d.to_string_lossy(), SslFiletype::PEM))
                    .map_err(|e| format!("--tls-ca-dir {}: {e}", d.display()))?;
            }
            Ok(())
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    /// Client handshake, then the policy's certificate check. On failure the
    /// connection is gone and the error says why (for the log and the deferral).
    pub async fn connect(&mut self, tls: &ClientTls) -> Result<TlsInfo, String> {
        let transport = self.take_plain()?;
        let mut ssl = Ssl::new(&tls.ctx).map_err(|e| e.to_string())?;
        if let Some(name) = &tls.sni {
            ssl.set_hostname(name).map_err(|e| e.to_string())?;
        }
        let mut stream = SslStream::new(ssl, transport).map_err(|e| e.to_string())?;
        Pin::new(&mut stream)
            .connect()
            .await
            .map_err(super::stream::handshake_error)?;
        let mut info = TlsInfo::from_ssl(stream.ssl());
        let chain: Vec<X509> = stream
            .ssl()
            .peer_cert_chain()
            .map(|c| c.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        let verified_chain = stream.ssl().verify_result() == X509VerifyResult::OK;
        info.trust = match (chain.first(), verified_chain) {
            (None, _) => Trust::Anonymous,
            (Some(_), true) => Trust::Trusted,
            (Some(_), false) => Trust::Untrusted,
        };
        info.note = None;
        match &tls.check {
            PeerCheck::Nothing => {}
            PeerCheck::Fingerprint { digest, wanted } => {
                let leaf = chain.first().ok_or("server sent no certificate")?;
                match fingerprint::fingerprint_matches(leaf, *digest, wanted) {
                    Some(_) => info.trust = Trust::Verified,
                    None => {
                        return Err(format!(
                        "certificate fingerprint mismatch: server certificate {} {}, public key {}",
                        digest.name(),
                        fingerprint::colon_hex(&fingerprint::cert_fingerprint(leaf, *digest)),
                        fingerprint::colon_hex(&fingerprint::spki_fingerprint(leaf, *digest))
                    ))
                    }
                }
            }
            PeerCheck::Pkix { names } => {
                let leaf = chain.first().ok_or("server sent no certificate")?;
                if !verified_chain {
                    return Err(format!(
                        "server certificate not trusted: {}",
                        stream.ssl().verify_result().error_string()
                    ));
                }
                let cert_names = dane::presented_names(leaf);
                if !name_matches(names, &cert_names) {
                    return Err(format!(
                        "server certificate names {} do not match {}",
                        cert_names.join(", "),
                        names
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                info.trust = Trust::Verified;
            }
            PeerCheck::Dane {
                records,
                reference_names,
            } => match dane::verify_chain(records, &chain, reference_names, true) {
                outcome @ DaneOutcome::Matched { .. } => {
                    info.trust = Trust::Verified;
                    info.note = Some(dane::log_line(&outcome));
                }
                DaneOutcome::NoMatch(why) => {
                    return Err(format!("DANE TLSA authentication failed: {why}"))
                }
            },
        }
        *self = MaybeTls::Tls(Box::new(stream));
        Ok(info)
    }
}
