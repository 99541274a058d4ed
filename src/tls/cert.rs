//! Certificates: the self-signed demonstration certificate generated on first start
//! when no `--tls-cert` is given (Cisco ESA's "demonstration certificate").

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// Paths of the demonstration certificate and key in the state directory.
pub fn demo_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("demo-cert.pem"), dir.join("demo-key.pem"))
}

/// A self-signed RSA certificate for `hostname`, valid for `days`.
pub fn self_signed(
    hostname: &str,
    org: &str,
    days: u32,
) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("O", org)?;
    name.append_entry_by_text("CN", hostname)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(days)?)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    let san = SubjectAlternativeName::new()
        .dns(hostname)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// Returns the demonstration certificate, generating it on first use. The key file is
/// created with mode 0600.
pub fn ensure_demo(state_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), String> {
    let (cert_path, key_path) = demo_paths(state_dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let dir = state_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = self_signed(hostname, "tinymta demonstration certificate", 3650)
        .map_err(|e| format!("cannot generate demonstration certificate: {e}"))?;
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| format!("cannot encode key: {e}"))?;
    let cert_pem = cert
        .to_pem()
        .map_err(|e| format!("cannot encode certificate: {e}"))?;
    write_private(&key_path, &key_pem, 0o600)?;
    write_private(&cert_path, &cert_pem, 0o644)?;
    Ok((cert_path, key_path))
}

/// Writes a file atomically (temporary name, fsync, rename) with the given mode.
fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|e| format!("{}: {e}", path.display()))
}
