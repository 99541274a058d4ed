//! Outbound TLS: a client context for one destination's policy, and the check of the
//! server's certificate that the policy level demands (fingerprint, CA chain + name,
//! or DANE), on a full or a resumed handshake (`session` holds the cache). The
//! outbound session gets a `TlsInfo` or the reason for failure; it never touches
//! OpenSSL itself.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use async_openssl::SslStream;
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslOptions, SslRef, SslSession,
    SslSessionCacheMode, SslVerifyMode,
};
use openssl::x509::{X509VerifyResult, X509};
use smol::io::{AsyncRead, AsyncWrite};

use super::dane::{self, DaneOutcome, Tlsa};
use super::fingerprint::{self, Digest};
use super::level::Level;
use super::names::{name_matches, NamePattern};
use super::profile::{self, Grade, Protocol, Protocols};
use super::session::SessionCache;
use super::{MaybeTls, TlsInfo, Trust};

use crate::text::Joined;

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
    /// Everything of the policy and settings that shaped `ctx` and `check`, hashed, for
    /// the session cache key (none for the inspection context, which never resumes).
    policy_id: Option<KeyHash>,
    resume: Option<Resume>,
}

/// Where this connection's session is looked up and kept.
struct Resume {
    cache: Arc<SessionCache>,
    key: [u8; 32],
}

/// One connection's link to the cache, in the `Ssl`'s ex_data for the new-session
/// callback. Sessions wait in `early` until the policy's check has passed: TLS 1.2
/// hands over its session during the handshake, before the check.
struct Pending {
    cache: Arc<SessionCache>,
    key: [u8; 32],
    state: Mutex<(bool, Option<SslSession>)>,
}

impl Pending {
    fn new_session(&self, session: SslSession) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 {
            self.cache.store(self.key, session);
        } else {
            state.1 = Some(session);
        }
    }

    /// The check passed: the session waiting (if any) and all later ones are kept.
    fn checked(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = true;
        if let Some(session) = state.1.take() {
            self.cache.store(self.key, session);
        }
    }
}

fn pending_index() -> Result<Index<Ssl, Arc<Pending>>, String> {
    static INDEX: OnceLock<Index<Ssl, Arc<Pending>>> = OnceLock::new();
    if let Some(i) = INDEX.get() {
        return Ok(*i);
    }
    let i = Ssl::new_ex_index().map_err(|e| format!("TLS client context: {e}"))?;
    Ok(*INDEX.get_or_init(|| i))
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
    // New sessions go to the connection's `Pending`, never into the context's own
    // cache: contexts are made per connection, and a session kept by none of them may
    // be offered on the next one (see `connect`).
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL);
    let index = pending_index()?;
    b.set_new_session_callback(move |ssl, session| {
        if let Some(pending) = ssl.ex_data(index) {
            pending.new_session(session);
        }
    });
    let mut tls = ClientTls::new(b.build(), sni, check);
    tls.policy_id = Some(policy_id(settings, &policy, &tls.check));
    Ok(tls)
}

/// A SHA-256 over length-prefixed fields, so no two field lists hash alike.
#[derive(Clone)]
struct KeyHash(openssl::sha::Sha256);

impl KeyHash {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn path(&mut self, p: Option<&Path>) {
        use std::os::unix::ffi::OsStrExt;
        match p {
            Some(p) => self.field(p.as_os_str().as_bytes()),
            None => self.field(b"\0none"),
        }
    }
}

/// Hashes everything that shaped a client context and its check. The bindings name
/// every field (no `..`): a field added to these types does not compile until it is
/// part of the key, so a session is never offered under a policy that differs in it.
fn policy_id(settings: &ClientSettings, policy: &ContextPolicy, check: &PeerCheck) -> KeyHash {
    let mut h = KeyHash(openssl::sha::Sha256::new());
    let ClientSettings {
        ca_file,
        ca_dir,
        cert: default_cert,
    } = settings;
    let ContextPolicy {
        level,
        protocols,
        ciphers,
        exclude,
        tafile,
        cert,
        source,
    } = policy;
    h.path(ca_file.as_deref());
    h.path(ca_dir.as_deref());
    let default_cert = default_cert
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    for pair in [default_cert, *cert] {
        h.path(pair.map(|(c, _)| c));
        h.path(pair.map(|(_, k)| k));
    }
    h.field(level.name().as_bytes());
    // What `apply_policy` takes from `protocols=`.
    let (min, max) = protocols.range();
    h.field(min.to_string().as_bytes());
    h.field(max.to_string().as_bytes());
    for p in protocols.excluded() {
        h.field(p.to_string().as_bytes());
    }
    h.field(ciphers.map_or("", |g| g.name()).as_bytes());
    for e in *exclude {
        h.field(e.as_bytes());
    }
    h.path(*tafile);
    h.field(source.as_bytes());
    match check {
        PeerCheck::Nothing => h.field(b"nothing"),
        PeerCheck::Fingerprint { digest, wanted } => {
            h.field(b"fingerprint");
            h.field(digest.name().as_bytes());
            for w in wanted {
                h.field(w);
            }
        }
        PeerCheck::Pkix { names } => {
            h.field(b"pkix");
            for n in names {
                // `.example.com` for subdomains, so the two kinds differ.
                h.field(n.to_string().as_bytes());
            }
        }
        PeerCheck::Dane {
            records,
            reference_names,
        } => {
            h.field(b"dane");
            for Tlsa {
                usage,
                selector,
                matching,
                data,
            } in records
            {
                h.field(&[*usage, *selector, *matching]);
                h.field(data);
            }
            h.field(b"names");
            for n in reference_names {
                h.field(n.as_bytes());
            }
        }
    }
    h
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
            policy_id: None,
            resume: None,
        }
    }

    /// Offers a session cached in `cache` for `server` (host, address and port) under
    /// this very policy, and keeps the new one there once the check has passed.
    pub fn resuming(mut self, cache: &Arc<SessionCache>, server: &str) -> ClientTls {
        let Some(mut h) = self.policy_id.clone() else {
            return self;
        };
        h.field(server.as_bytes());
        h.field(self.sni.as_deref().unwrap_or("\0none").as_bytes());
        self.resume = Some(Resume {
            cache: cache.clone(),
            key: h.0.finish(),
        });
        self
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
        let pending = match &tls.resume {
            Some(r) => {
                if let Some(session) = r.cache.offer(&r.key) {
                    // SAFETY: OpenSSL's rule is that a session in one context's
                    // internal cache must not be used with another context. This one
                    // is a fresh copy in no cache (and no context here has an
                    // internal cache: NO_INTERNAL), and the key says it came from a
                    // context built from the same policy and settings.
                    unsafe { ssl.set_session(&session) }.map_err(|e| e.to_string())?;
                }
                let pending = Arc::new(Pending {
                    cache: r.cache.clone(),
                    key: r.key,
                    state: Mutex::new((false, None)),
                });
                ssl.set_ex_data(pending_index()?, pending.clone());
                Some(pending)
            }
            None => None,
        };
        let mut stream = SslStream::new(ssl, transport).map_err(|e| e.to_string())?;
        Pin::new(&mut stream)
            .connect()
            .await
            .map_err(super::stream::handshake_error)?;
        let info = peer_check(stream.ssl(), tls);
        match (&info, &tls.resume) {
            (Ok(_), _) => {
                if let Some(p) = pending {
                    p.checked();
                }
            }
            // A resumed session that no longer passes is not offered again.
            (Err(_), Some(r)) if stream.ssl().session_reused() => r.cache.forget(&r.key),
            (Err(_), _) => {}
        }
        let info = info?;
        *self = MaybeTls::Tls(Box::new(stream));
        Ok(info)
    }
}

/// The level's check of the server's certificate, on the chain of this handshake or,
/// when it resumed a session, on the chain OpenSSL kept in the session (with its
/// verification result): a resumed session passes only what the original did.
fn peer_check(ssl: &SslRef, tls: &ClientTls) -> Result<TlsInfo, String> {
    let mut info = TlsInfo::from_ssl(ssl);
    let chain: Vec<X509> = ssl
        .peer_cert_chain()
        .map(|c| c.iter().map(|x| x.to_owned()).collect())
        .unwrap_or_default();
    let verified_chain = ssl.verify_result() == X509VerifyResult::OK;
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
                    ssl.verify_result().error_string()
                ));
            }
            let cert_names = dane::presented_names(leaf);
            if !name_matches(names, &cert_names) {
                return Err(format!(
                    "server certificate names {} do not match {}",
                    cert_names.joined(", "),
                    names
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .joined(", ")
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
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert::{generate_key, self_signed, KeyKind, Subject};
    use crate::tls::fingerprint::cert_fingerprint;
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use smol::Async;
    use std::os::unix::net::UnixStream;

    /// A server certificate for mx.example.test (RSA or ECDSA) in a fresh directory.
    struct Identity {
        dir: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        x509: X509,
    }

    impl Identity {
        fn new(tag: &str, kind: KeyKind) -> Identity {
            let dir = std::env::temp_dir()
                .join(format!("tinymta-resume-unit-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let key = generate_key(kind).unwrap();
            let names = ["mx.example.test".to_string()];
            let x509 =
                self_signed(&Subject::common_name("mx.example.test"), &names, &key, 1).unwrap();
            let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert_path, x509.to_pem().unwrap()).unwrap();
            std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
            Identity {
                dir,
                cert: cert_path,
                key: key_path,
                x509,
            }
        }

        fn server(&self) -> SslContext {
            crate::tls::server_context(
                &[(self.cert.clone(), self.key.clone())],
                &Default::default(),
            )
            .unwrap()
        }
    }

    impl Drop for Identity {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn policy<'a>(level: Level, protocols: &'a Protocols) -> ContextPolicy<'a> {
        ContextPolicy {
            level,
            protocols,
            ciphers: None,
            exclude: &[],
            tafile: None,
            cert: None,
            source: "unit",
        }
    }

    fn only(p: &str) -> Protocols {
        Protocols::parse(p).unwrap()
    }

    /// One connection: the server greets, the client reads the greeting (which is
    /// when TLS 1.3 tickets arrive). The client's outcome.
    fn exchange(server: &SslContext, client: &ClientTls) -> Result<TlsInfo, String> {
        smol::block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let (a, b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
            let mut s = MaybeTls::Plain(a);
            let mut c = MaybeTls::Plain(b);
            let serve = async {
                if s.accept(server, Default::default()).await.is_ok() {
                    let _ = s.write_all(b"220 hi\r\n").await;
                    let _ = s.flush().await;
                    let mut buf = [0u8; 16];
                    let _ = s.read(&mut buf).await;
                }
            };
            let talk = async {
                let info = c.connect(client).await;
                if info.is_ok() {
                    let mut buf = [0u8; 8];
                    c.read_exact(&mut buf).await.unwrap();
                    c.close().await.unwrap();
                }
                info
            };
            smol::future::zip(serve, talk).await.1
        })
    }

    fn fingerprint_check(cert: &X509) -> PeerCheck {
        PeerCheck::Fingerprint {
            digest: Digest::Sha256,
            wanted: vec![cert_fingerprint(cert, Digest::Sha256)],
        }
    }

    #[test]
    fn sessions_resume_under_the_same_policy_and_keep_the_check() {
        for (proto, kind) in [
            ("TLSv1.2", KeyKind::Rsa(2048)),
            ("TLSv1.3", KeyKind::EcP256),
        ] {
            let id = Identity::new(&proto.replace('.', ""), kind);
            let server = id.server();
            let cache = SessionCache::new();
            let protocols = only(proto);
            let settings = ClientSettings::default();
            let mk = |check: PeerCheck| {
                client_tls(
                    &settings,
                    policy(Level::Fingerprint, &protocols),
                    Some("mx.example.test"),
                    check,
                )
                .unwrap()
                .resuming(&cache, "mx.example.test[127.0.0.1]:25")
            };
            let first = exchange(&server, &mk(fingerprint_check(&id.x509))).unwrap();
            assert!(!first.resumed, "{proto}");
            assert_eq!(first.protocol, proto);
            assert_eq!(
                cache.len(),
                1,
                "{proto}: the session is kept after the check"
            );
            // Resumed: the check ran on the chain kept in the session, and passed.
            let second = exchange(&server, &mk(fingerprint_check(&id.x509))).unwrap();
            assert!(second.resumed, "{proto}");
            assert_eq!(second.trust, Trust::Verified, "{proto}");
            assert_eq!(
                cache.len(),
                1,
                "{proto}: the resumed handshake's session is kept"
            );

            // Another host, or another policy for the same host: a full handshake.
            let other_host = client_tls(
                &settings,
                policy(Level::Fingerprint, &protocols),
                Some("mx.example.test"),
                fingerprint_check(&id.x509),
            )
            .unwrap()
            .resuming(&cache, "mx.example.test[127.0.0.2]:25");
            assert!(!exchange(&server, &other_host).unwrap().resumed, "{proto}");
            let other_level = client_tls(
                &settings,
                policy(Level::Encrypt, &protocols),
                Some("mx.example.test"),
                PeerCheck::Nothing,
            )
            .unwrap()
            .resuming(&cache, "mx.example.test[127.0.0.1]:25");
            assert!(!exchange(&server, &other_level).unwrap().resumed, "{proto}");
        }
    }

    #[test]
    fn a_resumed_session_that_fails_the_check_is_refused_and_forgotten() {
        let id = Identity::new("forged", KeyKind::Rsa(2048));
        let server = id.server();
        let cache = SessionCache::new();
        let protocols = only("TLSv1.2");
        let settings = ClientSettings::default();
        let good = client_tls(
            &settings,
            policy(Level::Fingerprint, &protocols),
            Some("mx.example.test"),
            fingerprint_check(&id.x509),
        )
        .unwrap()
        .resuming(&cache, "mx");
        assert!(!exchange(&server, &good).unwrap().resumed);
        // The same cache key with another fingerprint (which the key derivation never
        // produces): the session is resumed, and the check still refuses it.
        let mut forged = client_tls(
            &settings,
            policy(Level::Fingerprint, &protocols),
            Some("mx.example.test"),
            PeerCheck::Fingerprint {
                digest: Digest::Sha256,
                wanted: vec![vec![0; 32]],
            },
        )
        .unwrap();
        forged.resume = good.resume.as_ref().map(|r| Resume {
            cache: r.cache.clone(),
            key: r.key,
        });
        let err = exchange(&server, &forged).unwrap_err();
        assert!(err.contains("fingerprint mismatch"), "{err}");
        assert!(
            cache.is_empty(),
            "the refused session must not be offered again"
        );
        assert!(!exchange(&server, &good).unwrap().resumed);
    }

    #[test]
    fn verification_result_survives_resumption() {
        // RSA: the profile's TLS 1.2 suites are all RSA-authenticated.
        let id = Identity::new("pkix", KeyKind::Rsa(2048));
        let server = id.server();
        let cache = SessionCache::new();
        for proto in ["TLSv1.2", "TLSv1.3"] {
            let protocols = only(proto);
            let settings = ClientSettings {
                ca_file: Some(id.cert.clone()),
                ..ClientSettings::default()
            };
            let mk = |names: &[&str]| {
                client_tls(
                    &settings,
                    policy(Level::Verify, &protocols),
                    Some("mx.example.test"),
                    PeerCheck::Pkix {
                        names: names.iter().map(|n| NamePattern::parse(n)).collect(),
                    },
                )
                .unwrap()
                .resuming(&cache, "mx")
            };
            let first = exchange(&server, &mk(&["mx.example.test"])).unwrap();
            assert_eq!((first.resumed, first.trust), (false, Trust::Verified));
            let again = exchange(&server, &mk(&["mx.example.test"])).unwrap();
            assert_eq!(
                (again.resumed, again.trust),
                (true, Trust::Verified),
                "{proto}"
            );
            // An untrusted chain stays untrusted when resumed under a level that does
            // not require trust (the key differs by the CA file, so fake it).
            let plain = ClientSettings::default();
            let mut may = client_tls(
                &plain,
                policy(Level::May, &protocols),
                Some("mx.example.test"),
                PeerCheck::Nothing,
            )
            .unwrap()
            .resuming(&cache, "mx-untrusted");
            let untrusted = exchange(&server, &may).unwrap();
            assert_eq!(
                (untrusted.resumed, untrusted.trust),
                (false, Trust::Untrusted)
            );
            // That session, forced under the verify check: refused, not Verified.
            let mut verify = mk(&["mx.example.test"]);
            verify.resume = may.resume.take();
            let err = exchange(&server, &verify).unwrap_err();
            assert!(err.contains("not trusted"), "{proto}: {err}");
        }
    }

    #[test]
    fn every_part_of_the_policy_is_in_the_key() {
        let cache = SessionCache::new();
        let (p12, any) = (only("TLSv1.2"), Protocols::default());
        let (excl, ta, cert) = (
            ["CAMELLIA".to_string()],
            PathBuf::from("/ta.pem"),
            (PathBuf::from("/c.pem"), PathBuf::from("/k.pem")),
        );
        let key_of = |settings: &ClientSettings, policy: ContextPolicy, check: PeerCheck| {
            let h = policy_id(settings, &policy, &check);
            ClientTls {
                policy_id: Some(h),
                ..ClientTls::new(
                    SslContext::builder(openssl::ssl::SslMethod::tls())
                        .unwrap()
                        .build(),
                    Some("mx"),
                    check,
                )
            }
            .resuming(&cache, "mx[192.0.2.1]:25")
            .resume
            .unwrap()
            .key
        };
        let base = || policy(Level::Encrypt, &any);
        let plain = ClientSettings::default();
        let with_ca = ClientSettings {
            ca_file: Some(PathBuf::from("/ca.pem")),
            ..ClientSettings::default()
        };
        let tlsa = |data: u8| PeerCheck::Dane {
            records: vec![Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![data; 32],
            }],
            reference_names: vec!["mx".into()],
        };
        let keys = [
            key_of(&plain, base(), PeerCheck::Nothing),
            key_of(&with_ca, base(), PeerCheck::Nothing),
            key_of(&plain, policy(Level::May, &any), PeerCheck::Nothing),
            key_of(&plain, policy(Level::Encrypt, &p12), PeerCheck::Nothing),
            key_of(
                &plain,
                ContextPolicy {
                    ciphers: Some(Grade::parse("high").unwrap()),
                    ..base()
                },
                PeerCheck::Nothing,
            ),
            key_of(
                &plain,
                ContextPolicy {
                    exclude: &excl,
                    ..base()
                },
                PeerCheck::Nothing,
            ),
            key_of(
                &plain,
                ContextPolicy {
                    tafile: Some(&ta),
                    ..base()
                },
                PeerCheck::Nothing,
            ),
            key_of(
                &plain,
                ContextPolicy {
                    cert: Some((&cert.0, &cert.1)),
                    ..base()
                },
                PeerCheck::Nothing,
            ),
            key_of(
                &plain,
                ContextPolicy {
                    source: "other:1",
                    ..base()
                },
                PeerCheck::Nothing,
            ),
            key_of(
                &plain,
                base(),
                PeerCheck::Fingerprint {
                    digest: Digest::Sha256,
                    wanted: vec![vec![1; 32]],
                },
            ),
            key_of(
                &plain,
                base(),
                PeerCheck::Fingerprint {
                    digest: Digest::Sha256,
                    wanted: vec![vec![2; 32]],
                },
            ),
            key_of(
                &plain,
                base(),
                PeerCheck::Pkix {
                    names: vec![NamePattern::parse("mx.example.test")],
                },
            ),
            key_of(
                &plain,
                base(),
                PeerCheck::Pkix {
                    names: vec![NamePattern::parse(".mx.example.test")],
                },
            ),
            key_of(&plain, base(), tlsa(1)),
            key_of(&plain, base(), tlsa(2)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "key {i} collides");
            }
        }
        // Same inputs, same key: the cache can find the session again.
        assert_eq!(keys[0], key_of(&plain, base(), PeerCheck::Nothing));
    }

    #[test]
    fn the_cache_is_bounded_and_drops_expired_sessions() {
        use crate::tls::session::{MAX_AGE, MAX_SESSIONS};
        use foreign_types::ForeignType;
        extern "C" {
            fn SSL_SESSION_set_time(
                s: *mut openssl_sys::SSL_SESSION,
                t: libc::c_long,
            ) -> libc::c_long;
        }
        let id = Identity::new("bounds", KeyKind::EcP256);
        let (server, protocols) = (id.server(), only("TLSv1.3"));
        let settings = ClientSettings::default();
        let made = SessionCache::new();
        let tls = client_tls(
            &settings,
            policy(Level::Encrypt, &protocols),
            None,
            PeerCheck::Nothing,
        )
        .unwrap()
        .resuming(&made, "mx");
        exchange(&server, &tls).unwrap();
        let key = tls.resume.as_ref().unwrap().key;
        let session = || made.offer(&key).expect("a cached session");

        let cache = SessionCache::new();
        for i in 0..=MAX_SESSIONS {
            cache.store([i as u8; 32], session());
            assert!(cache.len() <= MAX_SESSIONS);
        }
        assert_eq!(cache.len(), MAX_SESSIONS);
        assert!(cache.offer(&[0; 32]).is_none(), "the oldest went first");
        assert!(cache.offer(&[MAX_SESSIONS as u8; 32]).is_some());
        // Storing under a known key replaces, never grows.
        cache.store([1; 32], session());
        assert_eq!(cache.len(), MAX_SESSIONS);

        // A session from a handshake longer ago than MAX_AGE is not offered.
        let old = session();
        let then = crate::clock::unix_now() as i64 - MAX_AGE.as_secs() as i64 - 1;
        // SAFETY: a valid session, owned here.
        unsafe { SSL_SESSION_set_time(old.as_ptr(), then as libc::c_long) };
        cache.store([200; 32], old);
        assert!(cache.offer(&[200; 32]).is_none());
        assert!(cache.offer(&[1; 32]).is_some());
    }

    #[test]
    fn inspection_contexts_never_resume() {
        let cache = SessionCache::new();
        let t = inspection_tls(Some("mx")).unwrap().resuming(&cache, "mx");
        assert!(t.resume.is_none());
    }
}
