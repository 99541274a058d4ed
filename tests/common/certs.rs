//! Test certificates made with the openssl command line (independent of tinymta's own
//! certificate code): self-signed leaves, a CA, and CA-signed leaves with SANs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run_with_timeout;

fn openssl(args: &[&str], dir: &Path) {
    let out = run_with_timeout(
        Command::new("openssl").args(args).current_dir(dir),
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

/// `openssl req -x509`: a self-signed RSA certificate with `subject` and extensions.
fn req_x509(dir: &Path, tag: &str, subject: &str, extensions: &[&str]) -> CertPair {
    let (cert, key) = (
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    );
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
    ];
    let (k, c) = (key.display().to_string(), cert.display().to_string());
    args.extend(["-keyout", &k, "-out", &c, "-subj", subject]);
    for ext in extensions {
        args.extend(["-addext", ext]);
    }
    openssl(&args, dir);
    CertPair { cert, key }
}

/// A self-signed RSA certificate for `name` (CN and DNS SAN).
pub fn self_signed(dir: &Path, tag: &str, name: &str) -> CertPair {
    req_x509(
        dir,
        tag,
        &format!("/CN={name}"),
        &[&format!("subjectAltName=DNS:{name}")],
    )
}

/// A CA certificate and key.
pub fn ca(dir: &Path, tag: &str) -> CertPair {
    req_x509(
        dir,
        tag,
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
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.cert.to_str().unwrap(),
            "-CAkey",
            ca.key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            leaf.to_str().unwrap(),
            "-extfile",
            ext.to_str().unwrap(),
        ],
        dir,
    );
    let chain = dir.join(format!("{tag}.pem"));
    let mut pem = std::fs::read(&leaf).unwrap();
    pem.extend(std::fs::read(&ca.cert).unwrap());
    std::fs::write(&chain, pem).unwrap();
    CertPair { cert: chain, key }
}
