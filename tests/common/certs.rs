//! The openssl command line, defined once for every test (independent of tinymta's own
//! certificate code): bounded runs, fingerprints as openssl prints them, self-signed
//! leaves, a CA, and CA-signed leaves with SANs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{output_text, run_with_timeout};

/// Runs `openssl ARGS` with optional stdin (bounded), whatever its exit status: for
/// `s_client` and other runs whose failures a test looks at.
pub fn openssl_output(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_timeout(
        Command::new("openssl").args(args),
        stdin,
        Duration::from_secs(60),
    )
}

/// Runs `openssl ARGS` (bounded), insisting on success; its stdout.
pub fn openssl(args: &[&str]) -> String {
    let out = openssl_output(args, None);
    assert!(
        out.status.success(),
        "openssl {args:?} ({}): {}",
        out.status,
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `openssl x509 -fingerprint -DIGEST` of a PEM certificate: just the colon-hex value.
pub fn fingerprint(cert: &Path, digest: &str) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        p(cert),
        "-noout",
        "-fingerprint",
        &format!("-{digest}"),
    ]);
    out.trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("odd fingerprint output {out:?}"))
        .1
        .to_string()
}

/// SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate, lower-case hex (the
/// DANE `3 1 1` record data), by the openssl pipeline.
pub fn spki_sha256(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum",
        p(cert)
    );
    let out = run_with_timeout(
        Command::new("sh").args(["-c", &script]),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{script}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{script}: no output"))
        .to_string()
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPair {
    /// `--tls-cert C --tls-key K` arguments.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// The key type of a certificate made here.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    /// RSA 2048.
    Rsa,
    /// ECDSA P-256.
    Ec,
}

impl Key {
    fn newkey_args(self) -> &'static [&'static str] {
        match self {
            Key::Rsa => &["-newkey", "rsa:2048"],
            Key::Ec => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        }
    }
}

/// `openssl req -x509`: a self-signed certificate `DIR/TAG.pem` with key `DIR/TAG.key`,
/// with `subject` and extensions.
pub fn req_x509(dir: &Path, tag: &str, key: Key, subject: &str, extensions: &[&str]) -> CertPair {
    let (cert, key_file) = (
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    );
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(key.newkey_args());
    args.extend(["-nodes", "-days", "30"]);
    args.extend(["-keyout", p(&key_file), "-out", p(&cert), "-subj", subject]);
    for ext in extensions {
        args.extend(["-addext", ext]);
    }
    openssl(&args);
    CertPair {
        cert,
        key: key_file,
    }
}

/// A self-signed certificate for `name` (CN and DNS SAN) with a `key` key.
pub fn self_signed_with(dir: &Path, tag: &str, name: &str, key: Key) -> CertPair {
    req_x509(
        dir,
        tag,
        key,
        &format!("/CN={name}"),
        &[&format!("subjectAltName=DNS:{name}")],
    )
}

/// A self-signed RSA certificate for `name` (CN and DNS SAN).
pub fn self_signed(dir: &Path, tag: &str, name: &str) -> CertPair {
    self_signed_with(dir, tag, name, Key::Rsa)
}

/// A CA certificate and key.
pub fn ca(dir: &Path, tag: &str) -> CertPair {
    req_x509(
        dir,
        tag,
        Key::Rsa,
        &format!("/CN=tinymta test CA {tag}"),
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

/// A leaf for `name` signed by `ca`; the returned cert file holds leaf + CA (a chain).
pub fn signed_by(dir: &Path, ca: &CertPair, tag: &str, name: &str) -> CertPair {
    let key = dir.join(format!("{tag}.key"));
    let csr = dir.join(format!("{tag}.csr"));
    let leaf = dir.join(format!("{tag}.leaf.pem"));
    let ext = dir.join(format!("{tag}.ext"));
    std::fs::write(
        &ext,
        format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    key_and_request(&key, &csr, &format!("/CN={name}"));
    sign_request(&csr, &ca.cert, &ca.key, 30, Some(&ext), &leaf);
    let chain = dir.join(format!("{tag}.pem"));
    let mut pem = std::fs::read(&leaf).unwrap();
    pem.extend(std::fs::read(&ca.cert).unwrap());
    std::fs::write(&chain, pem).unwrap();
    CertPair { cert: chain, key }
}

/// A new RSA 2048 key and a certificate request for `subject` (`/CN=...`).
pub fn key_and_request(key: &Path, csr: &Path, subject: &str) {
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        p(key),
        "-out",
        p(csr),
        "-subj",
        subject,
    ]);
}

/// Signs `csr` with the CA `ca_cert`/`ca_key` for `days` days into `out`: with the
/// extensions of the file `extensions`, or else those the request asked for.
pub fn sign_request(
    csr: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    days: u32,
    extensions: Option<&Path>,
    out: &Path,
) {
    let days = days.to_string();
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        p(csr),
        "-CA",
        p(ca_cert),
        "-CAkey",
        p(ca_key),
        "-CAcreateserial",
        "-days",
        &days,
        "-out",
        p(out),
    ];
    match extensions {
        Some(file) => args.extend(["-extfile", p(file)]),
        None => args.extend(["-copy_extensions", "copy"]),
    }
    openssl(&args);
}
