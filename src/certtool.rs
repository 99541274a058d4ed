//! `tinymta cert`: the certificate tooling of Libraesva's "Default Certificate" tab on
//! the command line. `selfsigned` and `csr` make a key with a self-signed certificate or
//! a request for a CA (subject fields of Libraesva's form: country, locality,
//! organisation, unit, common name, email; RSA 2048/3072/4096 or EC P-256; SANs);
//! `install` checks what the CA sent back (key match, chain order, dates) and puts it
//! atomically where `serve --tls-cert/--tls-key` reads it; `fingerprint` prints the
//! values policy tables (`match=`) and DANE (`3 1 1`) need, for a file or a live server.
//!
//! Flags, validation and operator messages live here; the OpenSSL work is in
//! `tls::cert` (generation, checks, atomic writes) and `tls::fingerprint` (digests).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Ref, X509};

use crate::cli::{
    CertAction, CertArgs, CsrArgs, FingerprintArgs, InstallArgs, KeyRequestFlags, SelfSignedArgs,
};
use crate::domain::{self, check_name, NameRules};
use crate::exit;
use crate::host;
use crate::outbound::client::{Candidate, ClientSession, Timeouts};
use crate::text::Joined;
use crate::tls::cert::{self, KeyKind, NotIssued, Staged, Subject, Validity};
use crate::tls::client::{inspection_tls, ClientTls};
use crate::tls::fingerprint::{self, Digest};
use crate::tls::TlsInfo;

/// `install` warns when the certificate expires within this many days.
const EXPIRY_WARNING_DAYS: i32 = 30;
/// Connect, read and write limit for `fingerprint --remote`.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure: the message for stderr and the exit code.
#[derive(Debug)]
struct Fail {
    code: i32,
    msg: String,
}

impl Fail {
    fn new(code: i32, msg: impl Into<String>) -> Fail {
        Fail {
            code,
            msg: msg.into(),
        }
    }
    fn usage(msg: impl Into<String>) -> Fail {
        Fail::new(exit::USAGE, msg)
    }
    fn data(msg: impl Into<String>) -> Fail {
        Fail::new(exit::DATAERR, msg)
    }
}

/// Runs `tinymta cert ...`; returns the exit code.
pub fn run(args: CertArgs) -> i32 {
    let res = match args.action {
        CertAction::SelfSigned(a) => selfsigned(&a),
        CertAction::Csr(a) => csr(&a),
        CertAction::Install(a) => install(&a),
        CertAction::Fingerprint(a) => fingerprint_cmd(&a),
    };
    match res {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("tinymta cert: {}", f.msg);
            f.code
        }
    }
}

// ---------------------------------------------------------------------------------
// selfsigned and csr

/// Validated subject, subjectAltNames and key kind.
#[derive(Debug)]
struct Request {
    subject: Subject,
    alt_names: Vec<String>,
    key: KeyKind,
}

impl Request {
    fn from_flags(f: KeyRequestFlags<'_>) -> Result<Request, Fail> {
        let cn = f.cn.trim().trim_end_matches('.').to_string();
        // Upper bounds from RFC 5280 (ub-common-name etc.) and OpenSSL's string table:
        // OpenSSL refuses longer values with an obscure error, so say which flag.
        text_field("--cn", &cn, 64)?;
        host_or_ip("--cn", &cn)?;
        let country = match f.country {
            Some(c) => {
                let c = c.trim();
                if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(Fail::usage(format!(
                        "--country must be a two-letter country code such as IT or DE, not {c:?}"
                    )));
                }
                Some(c.to_ascii_uppercase())
            }
            None => None,
        };
        let opt = |flag: &str, v: Option<&str>, max: usize| -> Result<Option<String>, Fail> {
            v.map(|v| text_field(flag, v.trim(), max).map(|()| v.trim().to_string()))
                .transpose()
        };
        let locality = opt("--locality", f.locality, 128)?;
        let org = opt("--org", f.org, 64)?;
        let unit = opt("--ou", f.ou, 64)?;
        let email = opt("--email", f.email, 128)?;
        if let Some(e) = &email {
            email_syntax(e)?;
        }
        let mut alt_names = vec![cn.to_ascii_lowercase()];
        for s in f.san {
            let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
            host_or_ip("--san", &s)?;
            if !alt_names.contains(&s) {
                alt_names.push(s);
            }
        }
        let key = match (f.ec, f.key_size) {
            (true, Some(_)) => {
                return Err(Fail::usage(
                    "--ec and --key-size exclude each other (a P-256 key has a fixed size)",
                ))
            }
            (true, None) => KeyKind::EcP256,
            (false, None) => KeyKind::Rsa(2048),
            (false, Some(bits @ (2048 | 3072 | 4096))) => KeyKind::Rsa(bits),
            (false, Some(bits)) => {
                return Err(Fail::usage(format!(
                    "--key-size must be 2048, 3072 or 4096, not {bits}"
                )))
            }
        };
        Ok(Request {
            subject: Subject {
                country,
                locality,
                org,
                unit,
                common_name: cn,
                email,
            },
            alt_names,
            key,
        })
    }
}

/// A subject field: not empty, no control characters, at most `max` characters.
fn text_field(flag: &str, v: &str, max: usize) -> Result<(), Fail> {
    if v.is_empty() {
        return Err(Fail::usage(format!("{flag} must not be empty")));
    }
    if v.chars().any(char::is_control) {
        return Err(Fail::usage(format!(
            "{flag} must not contain control characters"
        )));
    }
    let n = v.chars().count();
    if n > max {
        return Err(Fail::usage(format!(
            "{flag} is {n} characters long; at most {max} fit in a certificate"
        )));
    }
    Ok(())
}

/// A DNS name (letters, digits, hyphens; `*.` allowed as the whole first label) or an
/// IP address: what a subjectAltName can hold and a TLS client can match.
fn host_or_ip(flag: &str, v: &str) -> Result<(), Fail> {
    if v.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    check_name(v, NameRules::CERTIFICATE).map_err(|why| {
        Fail::usage(format!(
            "{flag} {v:?} is not a host name or IP address: {why}"
        ))
    })
}

/// `local@domain`, ASCII (emailAddress is an IA5String), without spaces.
fn email_syntax(e: &str) -> Result<(), Fail> {
    let ok = e.is_ascii()
        && !e.contains(char::is_whitespace)
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(Fail::usage(format!(
            "--email {e:?} is not an address of the form user@example.com"
        )))
    }
}

/// A default output file name from the common name: `*.example.com` → `wildcard.example.com`.
fn default_out(cn: &str, ext: &str) -> PathBuf {
    let stem = match cn.strip_prefix("*.") {
        Some(rest) => format!("wildcard.{rest}"),
        None => cn.to_string(),
    };
    PathBuf::from(format!("{stem}.{ext}"))
}

/// Refuses to go ahead when an output exists (unless --force) or two outputs are the
/// same file; checked before the (slow) key generation.
fn check_outputs(outputs: &[(&str, &Path)], force: bool) -> Result<(), Fail> {
    for (i, (flag, path)) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|(_, p)| p == path) {
            return Err(Fail::usage(format!(
                "{flag} {} names the same file as another output",
                path.display()
            )));
        }
        if !force && fs::symlink_metadata(path).is_ok() {
            return Err(Fail::new(
                exit::CANTCREAT,
                format!(
                    "{flag}: {} exists; refusing to overwrite it (--force replaces it)",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn generate(req: &Request) -> Result<PKey<Private>, Fail> {
    cert::generate_key(req.key).map_err(|e| {
        Fail::new(
            exit::SOFTWARE,
            format!("cannot generate {} key: {e}", req.key.describe()),
        )
    })
}

fn key_pem(key: &PKey<Private>) -> Result<Vec<u8>, Fail> {
    key.private_key_to_pem_pkcs8()
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot encode key: {e}")))
}

fn write_out(path: &Path, data: &[u8], mode: u32) -> Result<(), Fail> {
    cert::write_private(path, data, mode).map_err(|e| Fail::new(exit::CANTCREAT, e))
}

fn selfsigned(a: &SelfSignedArgs) -> Result<(), Fail> {
    let req = Request::from_flags(a.key_request())?;
    if !(1..=36500).contains(&a.days) {
        return Err(Fail::usage(format!(
            "--days must be between 1 and 36500, not {}",
            a.days
        )));
    }
    let cn = &req.subject.common_name;
    let cert_path = a
        .out_cert
        .as_ref()
        .map_or_else(|| default_out(cn, "pem"), PathBuf::from);
    let key_path = a
        .out_key
        .as_ref()
        .map_or_else(|| default_out(cn, "key"), PathBuf::from);
    check_outputs(
        &[("--out-cert", &cert_path), ("--out-key", &key_path)],
        a.force,
    )?;
    let key = generate(&req)?;
    let cert = cert::self_signed(&req.subject, &req.alt_names, &key, a.days)
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot make the certificate: {e}")))?;
    let cert_pem = cert
        .to_pem()
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot encode certificate: {e}")))?;
    // Key first: a certificate without its key is useless, the reverse can be re-issued.
    write_out(&key_path, &key_pem(&key)?, 0o600)?;
    write_out(&cert_path, &cert_pem, 0o644)?;
    println!(
        "wrote {} key {} (mode 0600)",
        req.key.describe(),
        key_path.display()
    );
    println!(
        "wrote self-signed certificate {} for {}, valid until {}",
        cert_path.display(),
        req.alt_names.joined(", "),
        cert.not_after()
    );
    println!(
        "install it with: tinymta cert install {} --key {}",
        cert_path.display(),
        key_path.display()
    );
    println!();
    print!("{}", describe(&cert, &names_for_dane(&cert), 25));
    Ok(())
}

fn csr(a: &CsrArgs) -> Result<(), Fail> {
    let req = Request::from_flags(a.key_request())?;
    let cn = &req.subject.common_name;
    let csr_path = a
        .out_csr
        .as_ref()
        .map_or_else(|| default_out(cn, "csr"), PathBuf::from);
    let key_path = a
        .out_key
        .as_ref()
        .map_or_else(|| default_out(cn, "key"), PathBuf::from);
    check_outputs(
        &[("--out-csr", &csr_path), ("--out-key", &key_path)],
        a.force,
    )?;
    let key = generate(&req)?;
    let csr = cert::signing_request(&req.subject, &req.alt_names, &key)
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot make the request: {e}")))?;
    let csr_pem = csr
        .to_pem()
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot encode request: {e}")))?;
    write_out(&key_path, &key_pem(&key)?, 0o600)?;
    write_out(&csr_path, &csr_pem, 0o644)?;
    println!(
        "wrote {} key {} (mode 0600; keep it: the certificate will only work with it)",
        req.key.describe(),
        key_path.display()
    );
    println!(
        "wrote certificate signing request {} for {}",
        csr_path.display(),
        req.alt_names.joined(", ")
    );
    println!(
        "send the request to your CA, then: tinymta cert install CERT --key {} [--chain CA-CHAIN]",
        key_path.display()
    );
    println!();
    // Printed too, because CAs' web forms want it pasted.
    print!("{}", String::from_utf8_lossy(&csr_pem));
    Ok(())
}

// ---------------------------------------------------------------------------------
// install

/// A readable input file, or exit::NOINPUT naming the flag.
fn input(flag: &str, path: &str) -> Result<PathBuf, Fail> {
    let p = PathBuf::from(path);
    match fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err(Fail::new(
            exit::NOINPUT,
            format!("{flag} {path}: not a file"),
        )),
        Err(e) => Err(Fail::new(exit::NOINPUT, format!("{flag} {path}: {e}"))),
    }
}

fn install(a: &InstallArgs) -> Result<(), Fail> {
    let (dest_cert, dest_key) = match (&a.dest_cert, &a.dest_key, &a.state_dir) {
        (Some(_), Some(_), Some(_)) => {
            return Err(Fail::usage(
                "--state-dir and --dest-cert/--dest-key exclude each other",
            ))
        }
        (Some(c), Some(k), None) => (PathBuf::from(c), PathBuf::from(k)),
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(Fail::usage("--dest-cert and --dest-key go together"))
        }
        (None, None, dir) => cert::installed_paths(&host::default_state_dir(dir)),
    };
    if dest_cert == dest_key {
        return Err(Fail::usage("--dest-cert and --dest-key must differ"));
    }
    let cert_path = input("CERT", &a.cert)?;
    let mut chain = cert::read_certs(&cert_path).map_err(Fail::data)?;
    if let Some(c) = &a.chain {
        let extra = cert::read_certs(&input("--chain", c)?).map_err(Fail::data)?;
        chain.extend(extra);
    }
    // fullchain.pem given as CERT together with chain.pem as --chain repeats the
    // intermediates; an exact repeat is harmless, so drop it rather than fail.
    let before = chain.len();
    chain.dedup_by(|a, b| a.to_der().ok() == b.to_der().ok());
    if chain.len() != before {
        eprintln!(
            "tinymta cert: note: ignoring {} repeated certificate(s)",
            before - chain.len()
        );
    }
    // read_certs never returns an empty list.
    let leaf = chain[0].clone();

    let key = find_key(a, &cert_path, &leaf, &dest_key)?;
    if !cert::key_matches(&leaf, &key) {
        // A bundle in the wrong order (CA first) is the likely cause when the key
        // belongs to another certificate of the list.
        if let Some(n) = chain.iter().position(|c| cert::key_matches(c, &key)) {
            return Err(Fail::data(format!(
                "key does not match certificate 1 ({}) but certificate {} ({}): put the server's certificate first",
                cert::name_text(leaf.subject_name()),
                n + 1,
                cert::name_text(chain[n].subject_name())
            )));
        }
        return Err(Fail::data(format!(
            "key does not match certificate: {} is not the key of {}",
            a.key.as_deref().unwrap_or(&a.cert),
            cert::name_text(leaf.subject_name())
        )));
    }
    for i in 1..chain.len() {
        if let Err(why) = cert::issued_by(&chain[i - 1], &chain[i]) {
            let detail = match why {
                NotIssued::Names(wanted, found) => format!(
                    "certificate {i} names {wanted} as its issuer, but certificate {} is {found}",
                    i + 1
                ),
                other => other.to_string(),
            };
            return Err(Fail::data(format!(
                "chain certificate {} did not issue certificate {i}: {detail} (certificate 1 is CERT's first; each one must be followed by its issuer)",
                i + 1
            )));
        }
    }
    for (i, c) in chain.iter().enumerate() {
        let which = if i == 0 {
            "certificate".to_string()
        } else {
            format!("chain certificate {}", i + 1)
        };
        let v = cert::validity(c)
            .map_err(|e| Fail::data(format!("{which}: cannot read its dates: {e}")))?;
        match v {
            Validity::Expired(when) => {
                return Err(Fail::data(format!("{which} expired on {when}")))
            }
            Validity::NotYetValid(when) => {
                return Err(Fail::data(format!(
                    "{which} is not valid before {when} (is the clock right?)"
                )))
            }
            Validity::Valid { days_left } if days_left < EXPIRY_WARNING_DAYS => {
                eprintln!(
                    "tinymta cert: warning: {which} expires in {days_left} days, on {}",
                    c.not_after()
                );
            }
            Validity::Valid { .. } => {}
        }
    }

    let previous = cert::read_certs(&dest_cert)
        .ok()
        .and_then(|v| v.into_iter().next());
    let mut cert_pem = Vec::new();
    for c in &chain {
        let pem = c
            .to_pem()
            .map_err(|e| Fail::new(exit::SOFTWARE, format!("cannot encode certificate: {e}")))?;
        cert_pem.extend(pem);
    }
    let key_pem = key_pem(&key)?;
    for p in [&dest_cert, &dest_key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| Fail::new(exit::CANTCREAT, format!("{}: {e}", dir.display())))?;
        }
    }
    // Both files are written and fsynced before either is renamed into place, so a
    // reader (a restart, a SIGHUP) can meet a new certificate with the old key only in
    // the instant between the two renames.
    let staged_key = Staged::write(&dest_key, &key_pem, 0o600).map_err(cantcreat)?;
    let staged_cert = Staged::write(&dest_cert, &cert_pem, 0o644).map_err(cantcreat)?;
    staged_key.commit().map_err(cantcreat)?;
    staged_cert.commit().map_err(cantcreat)?;

    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (c, k) = (abs(&dest_cert), abs(&dest_key));
    println!(
        "installed certificate for {} (valid until {})",
        cert::name_text(leaf.subject_name()),
        leaf.not_after()
    );
    println!(
        "  certificate: {} (leaf + {} chain certificate{})",
        c.display(),
        chain.len() - 1,
        if chain.len() == 2 { "" } else { "s" }
    );
    println!("  key:         {} (mode 0600)", k.display());
    println!(
        "run the daemon with: tinymta serve --tls-cert {} --tls-key {}",
        c.display(),
        k.display()
    );
    println!("a daemon already running with these files loads them on SIGHUP (kill -HUP PID)");
    if let Some(prev) = previous {
        let spki = |x: &X509Ref| fingerprint::spki_fingerprint(x, Digest::Sha256);
        if spki(&prev) != spki(&leaf) {
            println!(
                "the public key changed: if you publish DANE TLSA 3 1 1 records, add the new one below next to the old one and wait for the TTL before SIGHUP"
            );
        }
    }
    println!();
    print!("{}", describe(&leaf, &names_for_dane(&leaf), 25));
    Ok(())
}

fn cantcreat(e: String) -> Fail {
    Fail::new(exit::CANTCREAT, e)
}

/// The key to install: --key, else one in the CERT file, else the installed key when
/// it belongs to this certificate (a renewal with the same key).
fn find_key(
    a: &InstallArgs,
    cert_path: &Path,
    leaf: &X509Ref,
    dest_key: &Path,
) -> Result<PKey<Private>, Fail> {
    if let Some(k) = &a.key {
        return cert::read_key(&input("--key", k)?)
            .map_err(Fail::data)?
            .ok_or_else(|| Fail::data(format!("--key {k}: contains no private key")));
    }
    if let Some(key) = cert::read_key(cert_path).map_err(Fail::data)? {
        return Ok(key);
    }
    if let Ok(Some(key)) = cert::read_key(dest_key) {
        if cert::key_matches(leaf, &key) {
            return Ok(key);
        }
    }
    Err(Fail::usage(format!(
        "no private key for {}: give --key KEY (the key made with `tinymta cert csr`)",
        cert_path.display()
    )))
}

// ---------------------------------------------------------------------------------
// fingerprint

fn fingerprint_cmd(a: &FingerprintArgs) -> Result<(), Fail> {
    match (&a.file, &a.remote) {
        (Some(_), Some(_)) => Err(Fail::usage("give either FILE or --remote, not both")),
        (None, None) => Err(Fail::usage("give a certificate FILE or --remote host:port")),
        (Some(f), None) => {
            if a.starttls || a.smtps {
                return Err(Fail::usage("--starttls and --smtps go with --remote"));
            }
            let certs = cert::read_certs(&input("FILE", f)?).map_err(Fail::data)?;
            // read_certs never returns an empty list.
            let leaf = &certs[0];
            if certs.len() > 1 {
                println!("first of {} certificates in {f}", certs.len());
            }
            print!("{}", describe(leaf, &names_for_dane(leaf), 25));
            Ok(())
        }
        (None, Some(r)) => {
            let (host, port) = split_host_port(r)?;
            let implicit = match (a.starttls, a.smtps) {
                (true, true) => {
                    return Err(Fail::usage("--starttls and --smtps exclude each other"))
                }
                (true, false) => false,
                (false, true) => true,
                (false, false) => port == 465,
            };
            let remote = fetch_remote(&host, port, implicit)
                .map_err(|e| Fail::new(exit::UNAVAILABLE, format!("{r}: {e}")))?;
            let leaf = remote
                .chain
                .first()
                .ok_or_else(|| Fail::new(exit::UNAVAILABLE, format!("{r}: sent no certificate")))?;
            println!(
                "{host} port {port} ({}): {}, {} certificate{} sent",
                if implicit { "implicit TLS" } else { "STARTTLS" },
                remote.negotiated,
                remote.chain.len(),
                if remote.chain.len() == 1 { "" } else { "s" }
            );
            // The TLSA owner is the name clients look up: the host asked for, unless
            // it was an address.
            let names = if host.parse::<IpAddr>().is_ok() {
                names_for_dane(leaf)
            } else {
                vec![host.to_ascii_lowercase()]
            };
            print!("{}", describe(leaf, &names, port));
            Ok(())
        }
    }
}

/// The DNS names a TLSA record could be published under: the CN first (the brief of
/// Libraesva's form: the name the MX record points to), then the other DNS SANs;
/// wildcards cannot own a TLSA record and are left out.
fn names_for_dane(cert: &X509Ref) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let cns = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| {
            std::str::from_utf8(e.data().as_slice())
                .ok()
                .map(str::to_string)
        });
    let sans = cert
        .subject_alt_names()
        .map(|v| {
            v.iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for n in cns.chain(sans) {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        if n.is_empty() || n.contains('*') || n.parse::<IpAddr>().is_ok() || names.contains(&n) {
            continue;
        }
        names.push(n);
    }
    names
}

/// The report for one certificate: subject, dates, the six fingerprints and the TLSA
/// records for `port`.
fn describe(cert: &X509Ref, dane_names: &[String], port: u16) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("subject: {}", cert::name_text(cert.subject_name())));
    line(format!("issuer: {}", cert::name_text(cert.issuer_name())));
    line(format!("not before: {}", cert.not_before()));
    line(format!("not after: {}", cert.not_after()));
    if let Ok(k) = cert.public_key() {
        line(format!("public key: {}", key_text(&k)));
    }
    for d in [Digest::Sha256, Digest::Sha1, Digest::Md5] {
        line(format!(
            "{d} certificate: {}",
            fingerprint::colon_hex(&fingerprint::cert_fingerprint(cert, d))
        ));
        line(format!(
            "{d} public key: {}",
            fingerprint::colon_hex(&fingerprint::spki_fingerprint(cert, d))
        ));
    }
    let record = fingerprint::tlsa_311(cert);
    line("DANE TLSA record to publish (DNSSEC-signed zone):".to_string());
    if dane_names.is_empty() {
        line(format!("_{port}._tcp.MX-HOST-NAME. IN TLSA {record}"));
    }
    for n in dane_names {
        line(format!("_{port}._tcp.{n}. IN TLSA {record}"));
    }
    out
}

fn key_text(k: &PKey<openssl::pkey::Public>) -> String {
    use openssl::pkey::Id;
    match k.id() {
        Id::RSA => format!("RSA {} bits", k.bits()),
        Id::EC => format!("EC {} bits", k.bits()),
        Id::ED25519 => "Ed25519".to_string(),
        _ => format!("{} bits", k.bits()),
    }
}

/// `host:port`, `[v6]:port`, `host` or a bare IPv6 address (port 25 when none).
fn split_host_port(s: &str) -> Result<(String, u16), Fail> {
    let bad = || {
        Fail::usage(format!(
            "--remote {s:?}: expected host:port or [address]:port"
        ))
    };
    let hp = domain::split_host_port(s).ok_or_else(bad)?;
    if hp.host.is_empty() {
        return Err(bad());
    }
    let port = hp.port_or(25).ok_or_else(bad)?;
    Ok((hp.host.to_string(), port))
}

/// What the remote server sent.
struct Remote {
    chain: Vec<X509>,
    /// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384`.
    negotiated: String,
}

/// Connects with the outbound SMTP client, as `check-tls` does: EHLO and STARTTLS
/// unless `implicit`, then takes the server's certificates from the handshake. Each
/// address of the host is tried in turn.
fn fetch_remote(host: &str, port: u16, implicit: bool) -> Result<Remote, String> {
    let tls = inspection_tls(Some(host))?;
    let timeouts = Timeouts {
        connect: REMOTE_TIMEOUT,
        command: REMOTE_TIMEOUT,
        data_done: REMOTE_TIMEOUT,
    };
    let helo = host::system_hostname();
    crate::runtime::block_on(async {
        // std's resolver called directly: this command waits for nothing else meanwhile,
        // and `smol::net::resolve` (the same std lookup on a pool thread) is a task type
        // of its own, 3 KB on mipsel.
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let mut last_err = format!("{host} has no address");
        for addr in addrs {
            let server = Candidate {
                host: host.to_string(),
                ip: addr.ip(),
                port,
            };
            let session = if implicit {
                ClientSession::connect_tls(&server, timeouts, &tls)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                starttls_session(&server, timeouts, &tls, &helo).await
            };
            match session {
                Ok((session, info)) => {
                    let chain = session.peer_chain();
                    // Politeness only; the certificate is already in hand.
                    session.quit().await;
                    return Ok(Remote {
                        chain,
                        negotiated: format!("{} with cipher {}", info.protocol, info.cipher),
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    })
}

async fn starttls_session(
    server: &Candidate,
    timeouts: Timeouts,
    tls: &ClientTls,
    helo: &str,
) -> Result<(ClientSession, TlsInfo), String> {
    let mut session = ClientSession::connect(server, timeouts).await?;
    session.hello(helo).await?;
    if !session.ext.starttls {
        return Err(format!("{} does not offer STARTTLS", server.name()));
    }
    let info = session.starttls(tls, helo).await?;
    Ok((session, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(cn: &'a str, san: &'a [String]) -> KeyRequestFlags<'a> {
        KeyRequestFlags {
            cn,
            country: None,
            locality: None,
            org: None,
            ou: None,
            email: None,
            san,
            key_size: None,
            ec: false,
        }
    }

    #[test]
    fn request_validation_names_the_flag() {
        let sans = vec!["Mail.Example.test.".to_string(), "192.0.2.1".to_string()];
        let r = Request::from_flags(flags("MX.example.test", &sans)).unwrap();
        assert_eq!(
            r.alt_names,
            ["mx.example.test", "mail.example.test", "192.0.2.1"]
        );
        assert_eq!(r.key, KeyKind::Rsa(2048));
        let err = |f: KeyRequestFlags<'_>| Request::from_flags(f).unwrap_err();
        let e = err(KeyRequestFlags {
            country: Some("ITA"),
            ..flags("mx.example.test", &[])
        });
        assert_eq!(e.code, exit::USAGE);
        assert!(e.msg.contains("--country"), "{}", e.msg);
        let e = err(KeyRequestFlags {
            key_size: Some(1024),
            ..flags("mx.example.test", &[])
        });
        assert!(e.msg.contains("--key-size"), "{}", e.msg);
        let e = err(KeyRequestFlags {
            email: Some("admin"),
            ..flags("mx.example.test", &[])
        });
        assert!(e.msg.contains("--email"), "{}", e.msg);
        assert!(err(flags("bad name", &[])).msg.contains("--cn"));
        assert!(err(flags(&"a".repeat(65), &[])).msg.contains("--cn"));
        let bad_san = ["-x.example".to_string()];
        assert!(err(flags("mx.example.test", &bad_san))
            .msg
            .contains("--san"));
        assert!(Request::from_flags(flags("*.example.test", &[])).is_ok());
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("mx.example.test:2525").unwrap(),
            ("mx.example.test".to_string(), 2525)
        );
        assert_eq!(
            split_host_port("[::1]:465").unwrap(),
            ("::1".to_string(), 465)
        );
        assert_eq!(split_host_port("::1").unwrap(), ("::1".to_string(), 25));
        assert_eq!(
            split_host_port("mx.example.test").unwrap(),
            ("mx.example.test".to_string(), 25)
        );
        assert!(split_host_port("host:0").is_err());
        assert!(split_host_port("[::1]x").is_err());
        assert!(split_host_port(":25").is_err());
    }
}
