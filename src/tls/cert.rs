//! Certificates and keys: generation (the demonstration certificate made on first start
//! when no `--tls-cert` is given, as Cisco ESA's "demonstration certificate", and the
//! self-signed certificates and requests of `tinymta cert`), the checks `tinymta cert
//! install` runs before it replaces the daemon's files (key match, chain order, dates),
//! and atomic writes with file modes.
//!
//! Only OpenSSL objects and files here; flags, messages for the operator and exit codes
//! belong to `certtool`.

use std::cmp::Ordering;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{
    X509Builder, X509Extension, X509Name, X509NameBuilder, X509NameRef, X509Ref, X509Req,
    X509ReqBuilder, X509VerifyResult, X509,
};

use crate::text::Joined;

/// The demonstration certificates: RSA 2048 for every client, ECDSA P-256 beside it
/// for the cheap handshake modern clients pick (both served, see
/// `tls::server_context`), with their certificate and key file names in
/// `<state-dir>/tls/`.
const DEMO: [(KeyKind, &str, &str); 2] = [
    (KeyKind::Rsa(2048), "demo-cert.pem", "demo-key.pem"),
    (KeyKind::EcP256, "demo-ec-cert.pem", "demo-ec-key.pem"),
];

/// Paths of the demonstration certificates and keys in the state directory (RSA,
/// then ECDSA).
pub fn demo_paths(state_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let dir = state_dir.join("tls");
    DEMO.iter()
        .map(|(_, cert, key)| (dir.join(cert), dir.join(key)))
        .collect()
}

/// Where `tinymta cert install` puts the certificate chain and key by default, for
/// `serve --tls-cert/--tls-key`.
pub fn installed_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The subject of a certificate or request: the fields of Libraesva's "New TLS
/// Self-Signed Certificate" form. Values are assumed validated by the caller (lengths
/// within the X.509 upper bounds, a two-letter country).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub country: Option<String>,
    pub locality: Option<String>,
    pub org: Option<String>,
    pub unit: Option<String>,
    pub common_name: String,
    pub email: Option<String>,
}

impl Subject {
    /// Only a common name (and optionally an organisation), as the demo certificate has.
    pub fn common_name(cn: &str) -> Subject {
        Subject {
            common_name: cn.to_string(),
            ..Subject::default()
        }
    }

    /// The X.509 name, in the usual C, L, O, OU, CN, emailAddress order (what `openssl
    /// req` writes, so certificates look familiar in `openssl x509 -text`).
    pub fn to_name(&self) -> Result<X509Name, ErrorStack> {
        let mut name = X509NameBuilder::new()?;
        let fields = [
            (Nid::COUNTRYNAME, self.country.as_deref()),
            (Nid::LOCALITYNAME, self.locality.as_deref()),
            (Nid::ORGANIZATIONNAME, self.org.as_deref()),
            (Nid::ORGANIZATIONALUNITNAME, self.unit.as_deref()),
            (Nid::COMMONNAME, Some(self.common_name.as_str())),
            (Nid::PKCS9_EMAILADDRESS, self.email.as_deref()),
        ];
        for (nid, value) in fields {
            if let Some(v) = value {
                name.append_entry_by_nid(nid, v)?;
            }
        }
        Ok(name.build())
    }
}

/// The kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many bits (2048, 3072 or 4096 from the command line).
    Rsa(u32),
    /// ECDSA on P-256 (prime256v1), what an ECDSA certificate next to the RSA one uses.
    EcP256,
}

impl KeyKind {
    /// `RSA 2048`, `EC P-256`, for messages.
    pub fn describe(self) -> String {
        match self {
            KeyKind::Rsa(bits) => format!("RSA {bits}"),
            KeyKind::EcP256 => "EC P-256".to_string(),
        }
    }
}

/// A new private key.
pub fn generate_key(kind: KeyKind) -> Result<PKey<Private>, ErrorStack> {
    match kind {
        KeyKind::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?),
        KeyKind::EcP256 => {
            // from_curve_name gives a named-curve group, so the key and certificate carry
            // the curve's OID rather than explicit parameters, which TLS peers require.
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)
        }
    }
}

/// subjectAltName entries: IP addresses as iPAddress, everything else as dNSName.
fn alt_names_extension(
    names: &[String],
    ctx: &openssl::x509::X509v3Context<'_>,
) -> Result<X509Extension, ErrorStack> {
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    san.build(ctx)
}

/// keyUsage for a TLS server key: RSA key exchange (TLS 1.2 RSA suites in the compat
/// profile) needs keyEncipherment, ECDSA keys only sign.
fn key_usage<T>(key: &PKeyRef<T>) -> Result<X509Extension, ErrorStack> {
    let mut ku = KeyUsage::new();
    ku.critical().digital_signature();
    if key.id() == Id::RSA {
        ku.key_encipherment();
    }
    ku.build()
}

/// A self-signed end-entity certificate for `subject`, with `alt_names` (the caller
/// puts the common name first) as subjectAltName, valid from now for `days`.
pub fn self_signed(
    subject: &Subject,
    alt_names: &[String],
    key: &PKey<Private>,
    days: u32,
) -> Result<X509, ErrorStack> {
    let name = subject.to_name()?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(days)?)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(key_usage(key)?)?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    let san = alt_names_extension(alt_names, &b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A certificate signing request (PKCS#10) for `subject`, asking for `alt_names` as
/// subjectAltName (CAs copy the requested SANs; most ignore the subject's CN).
pub fn signing_request(
    subject: &Subject,
    alt_names: &[String],
    key: &PKey<Private>,
) -> Result<X509Req, ErrorStack> {
    let mut b = X509ReqBuilder::new()?;
    // Version 1 is encoded as 0; PKCS#10 knows no other.
    b.set_version(0)?;
    let name = subject.to_name()?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    let mut exts = Stack::new()?;
    exts.push(alt_names_extension(alt_names, &b.x509v3_context(None))?)?;
    exts.push(key_usage(key)?)?;
    exts.push(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    b.add_extensions(&exts)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Returns the demonstration certificates (RSA, then ECDSA), generating each one that
/// is missing: a state directory from before the ECDSA one gets it on its next start.
/// Key files are created with mode 0600.
pub fn ensure_demo(state_dir: &Path, hostname: &str) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let paths = demo_paths(state_dir);
    for ((kind, ..), (cert_path, key_path)) in DEMO.iter().zip(&paths) {
        if cert_path.exists() && key_path.exists() {
            continue;
        }
        let dir = state_dir.join("tls");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let subject = Subject {
            org: Some("tinymta demonstration certificate".to_string()),
            ..Subject::common_name(hostname)
        };
        let (cert, key) = generate_key(*kind)
            .and_then(|key| {
                Ok((
                    self_signed(&subject, &[hostname.to_string()], &key, 3650)?,
                    key,
                ))
            })
            .map_err(|e| {
                format!(
                    "cannot generate {} demonstration certificate: {e}",
                    kind.describe()
                )
            })?;
        let key_pem = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| format!("cannot encode key: {e}"))?;
        let cert_pem = cert
            .to_pem()
            .map_err(|e| format!("cannot encode certificate: {e}"))?;
        write_private(key_path, &key_pem, 0o600)?;
        write_private(cert_path, &cert_pem, 0o644)?;
    }
    Ok(paths)
}

/// Writes a file atomically (temporary name, fsync, rename, fsync of the directory)
/// with the given mode.
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    Staged::write(path, data, mode)?.commit()
}

/// A file written and fsynced under a temporary name in its destination directory,
/// not yet renamed into place. Staging every file first keeps the window in which a
/// reader sees a new certificate with an old key down to two renames. Dropped without
/// `commit`, the temporary file is removed.
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl Staged {
    /// Writes `data` to a temporary file next to `path` with `mode`, and fsyncs it.
    pub fn write(path: &Path, data: &[u8], mode: u32) -> Result<Staged, String> {
        let file_name = path
            .file_name()
            .ok_or_else(|| format!("{}: not a file name", path.display()))?;
        // Unique per process, so a key and a certificate with the same stem, or two
        // concurrent runs, never share a temporary file.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let staged = Staged {
            tmp: path.with_file_name(tmp_name),
            path: path.to_path_buf(),
            done: false,
        };
        let res = (|| {
            // A leftover from a crashed run could have another mode; O_CREAT only
            // applies the mode to a new file, so start from scratch.
            match fs::remove_file(&staged.tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&staged.tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        res.map_err(|e| format!("{}: {e}", staged.tmp.display()))?;
        Ok(staged)
    }

    /// Renames the file into place and fsyncs the directory, so the rename survives a
    /// power cut (routers lose power more often than servers).
    pub fn commit(mut self) -> Result<(), String> {
        fs::rename(&self.tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.done = true;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Reads every certificate in a file: PEM (any number, in order) or one DER
/// certificate. Private keys and other PEM blocks in the same file are skipped.
pub fn read_certs(path: &Path) -> Result<Vec<X509>, String> {
    let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        let certs = X509::stack_from_pem(&data)
            .map_err(|e| format!("{}: not a valid PEM certificate: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: contains no certificate", path.display()));
        }
        return Ok(certs);
    }
    X509::from_der(&data)
        .map(|c| vec![c])
        .map_err(|_| format!("{}: neither a PEM nor a DER certificate", path.display()))
}

/// Reads a private key from a PEM file (PKCS#8 or traditional RSA/EC, possibly among
/// certificates) or a DER file. `Ok(None)` when the file holds no private key at all.
pub fn read_key(path: &Path) -> Result<Option<PKey<Private>>, String> {
    let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&data);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(format!(
            "{}: the key is encrypted, and the daemon cannot ask for a passphrase; decrypt it with `openssl pkey -in {0} -out plain.key`",
            path.display()
        ));
    }
    if text.contains("-----BEGIN ") {
        if !text.contains(" PRIVATE KEY-----") {
            return Ok(None);
        }
        // An empty passphrase instead of the default callback: OpenSSL's default would
        // prompt on the terminal for a key we could not use anyway.
        return PKey::private_key_from_pem_passphrase(&data, b"")
            .map(Some)
            .map_err(|e| format!("{}: not a valid private key: {e}", path.display()));
    }
    // DER carries no label: a file that does not parse as a key (a DER certificate,
    // say) holds no key.
    Ok(PKey::private_key_from_der(&data).ok())
}

/// Whether `key` is the private half of the certificate's public key.
pub fn key_matches(cert: &X509Ref, key: &PKeyRef<Private>) -> bool {
    cert.public_key().is_ok_and(|p| p.public_eq(key))
}

/// Why a certificate was not issued by the one meant to be its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotIssued {
    /// The subject's issuer name (first) is not the issuer's subject name (second).
    Names(String, String),
    /// The names chain but the signature does not verify with the issuer's key.
    Signature,
    /// OpenSSL's X509_check_issued objection (key identifiers, keyUsage).
    Other(String),
}

impl std::fmt::Display for NotIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotIssued::Names(wanted, found) => {
                write!(
                    f,
                    "the issuer named is {wanted}, but the next certificate is {found}"
                )
            }
            NotIssued::Signature => {
                f.write_str("the signature does not verify with the next certificate's key")
            }
            NotIssued::Other(why) => f.write_str(why),
        }
    }
}

/// Checks that `issuer` issued `subject`: the names must chain and the signature must
/// verify with the issuer's public key.
pub fn issued_by(subject: &X509Ref, issuer: &X509Ref) -> Result<(), NotIssued> {
    let names_equal = subject
        .issuer_name()
        .try_cmp(issuer.subject_name())
        .is_ok_and(|o| o == Ordering::Equal);
    if !names_equal {
        return Err(NotIssued::Names(
            name_text(subject.issuer_name()),
            name_text(issuer.subject_name()),
        ));
    }
    let signed = issuer
        .public_key()
        .and_then(|k| subject.verify(&k))
        .unwrap_or(false);
    if !signed {
        return Err(NotIssued::Signature);
    }
    // Key identifiers and the issuer's keyUsage/basicConstraints (X509_check_issued)
    // catch a certificate that has the right name and key but may not sign, e.g. a leaf.
    let r = issuer.issued(subject);
    if r != X509VerifyResult::OK {
        return Err(NotIssued::Other(r.error_string().to_string()));
    }
    Ok(())
}

/// `C=IT, O=Example, CN=mx.example.com`: a one-line name for messages.
pub fn name_text(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let field = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".to_string());
            format!("{field}={value}")
        })
        .collect();
    if parts.is_empty() {
        "(empty)".to_string()
    } else {
        parts.joined(", ")
    }
}

/// Where the current time falls in a certificate's validity period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Valid for this many more whole days.
    Valid { days_left: i32 },
    /// notBefore is in the future (the text is the date).
    NotYetValid(String),
    /// notAfter has passed (the text is the date).
    Expired(String),
}

/// Checks the certificate's dates against the current time.
pub fn validity(cert: &X509Ref) -> Result<Validity, ErrorStack> {
    let now = Asn1Time::days_from_now(0)?;
    let now: &Asn1TimeRef = &now;
    if cert.not_before().compare(now)? == Ordering::Greater {
        return Ok(Validity::NotYetValid(cert.not_before().to_string()));
    }
    if cert.not_after().compare(now)? != Ordering::Greater {
        return Ok(Validity::Expired(cert.not_after().to_string()));
    }
    let left = now.diff(cert.not_after())?;
    Ok(Validity::Valid {
        days_left: left.days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    fn subject() -> Subject {
        Subject {
            country: Some("IT".into()),
            locality: Some("Lecco".into()),
            org: Some("Example Srl".into()),
            unit: Some("IT".into()),
            common_name: "mx.example.test".into(),
            email: Some("admin@example.test".into()),
        }
    }

    #[test]
    fn self_signed_has_subject_sans_and_its_own_signature() {
        for kind in [KeyKind::Rsa(2048), KeyKind::EcP256] {
            let key = generate_key(kind).unwrap();
            let names = ["mx.example.test".to_string(), "192.0.2.1".to_string()];
            let cert = self_signed(&subject(), &names, &key, 30).unwrap();
            assert!(key_matches(&cert, &key));
            assert!(cert.verify(&key).unwrap(), "{kind:?}");
            // An end-entity certificate (no keyCertSign) never counts as an issuer.
            assert!(issued_by(&cert, &cert).is_err());
            assert_eq!(
                name_text(cert.subject_name()),
                "C=IT, L=Lecco, O=Example Srl, OU=IT, CN=mx.example.test, emailAddress=admin@example.test"
            );
            let sans = cert.subject_alt_names().unwrap();
            assert_eq!(sans.iter().filter_map(|n| n.dnsname()).count(), 1);
            assert_eq!(sans.iter().filter_map(|n| n.ipaddress()).count(), 1);
            match validity(&cert).unwrap() {
                Validity::Valid { days_left } => assert!((29..=30).contains(&days_left)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn request_verifies_and_other_key_does_not_match() {
        let key = generate_key(KeyKind::EcP256).unwrap();
        let req = signing_request(&subject(), &["mx.example.test".into()], &key).unwrap();
        assert!(req.verify(&key).unwrap());
        let other = generate_key(KeyKind::EcP256).unwrap();
        let cert = self_signed(&subject(), &["mx.example.test".into()], &key, 1).unwrap();
        assert!(!key_matches(&cert, &other));
    }

    #[test]
    fn staged_write_sets_mode_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("tinymta-cert-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key.pem");
        write_private(&p, b"secret", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(Staged::write(&dir.join("other.pem"), b"x", 0o644).unwrap());
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
