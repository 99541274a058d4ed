//! `tinymta cert`: certificates and requests it makes are read back by the openssl
//! command line, fingerprints equal what openssl prints, `install` refuses a wrong key,
//! a misordered chain and bad dates, and a certificate it installed is what `tinymta
//! serve` presents (also after SIGHUP).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::{self, openssl};
use common::{output_text, run_with_timeout, tinymta, Server, TempDir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tinymta cert ARGS` and insists on success.
fn cert_ok(args: &[&str]) -> String {
    let mut all = vec!["cert"];
    all.extend_from_slice(args);
    let out = tinymta(&all);
    assert!(
        out.status.success(),
        "tinymta {all:?} failed ({:?}):\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `tinymta cert ARGS` and insists on failure; returns (exit code, stderr).
fn cert_err(args: &[&str]) -> (i32, String) {
    let mut all = vec!["cert"];
    all.extend_from_slice(args);
    let out = tinymta(&all);
    assert!(
        !out.status.success(),
        "tinymta {all:?} should have failed:\n{}",
        text(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The value after `name: ` in tinymta's report.
fn field(report: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    report
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{report}"))
        .to_string()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pem_blocks(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

#[test]
fn help_documents_every_flag() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["cert", "--help"],
            &["selfsigned", "csr", "install", "fingerprint"],
        ),
        (
            &["cert", "selfsigned", "--help"],
            &[
                "--cn",
                "--country",
                "--locality",
                "--org",
                "--ou",
                "--email",
                "--san",
                "--key-size",
                "--ec",
                "--days",
                "--out-cert",
                "--out-key",
                "--force",
            ],
        ),
        (
            &["cert", "csr", "--help"],
            &[
                "--cn",
                "--country",
                "--email",
                "--key-size",
                "--ec",
                "--out-csr",
                "--out-key",
            ],
        ),
        (
            &["cert", "install", "--help"],
            &[
                "--key",
                "--chain",
                "--state-dir",
                "--dest-cert",
                "--dest-key",
                "SIGHUP",
            ],
        ),
        (
            &["cert", "fingerprint", "--help"],
            &["--remote", "--starttls", "--smtps", "TLSA"],
        ),
    ];
    for (args, words) in cases {
        let out = tinymta(args);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        for w in words {
            assert!(help.contains(w), "{args:?} help lacks {w}:\n{help}");
        }
    }
}

#[test]
fn selfsigned_rsa_has_subject_sans_and_a_private_key() {
    let dir = TempDir::new("cert-rsa");
    let (cert, key) = (dir.path().join("mx.pem"), dir.path().join("mx.key"));
    let report = cert_ok(&[
        "selfsigned",
        "--cn",
        "mx.example.test",
        "--country",
        "it",
        "--locality",
        "Lecco",
        "--org",
        "Example Srl",
        "--ou",
        "IT",
        "--email",
        "admin@example.test",
        "--san",
        "mail.example.test",
        "--san",
        "192.0.2.1",
        "--days",
        "90",
        "--out-cert",
        p(&cert),
        "--out-key",
        p(&key),
    ]);
    let x509 = openssl(&["x509", "-in", p(&cert), "-noout", "-text"]);
    assert!(
        x509.contains(
            "Subject: C = IT, L = Lecco, O = Example Srl, OU = IT, CN = mx.example.test, emailAddress = admin@example.test"
        ),
        "{x509}"
    );
    assert!(
        x509.contains("DNS:mx.example.test, DNS:mail.example.test, IP Address:192.0.2.1"),
        "{x509}"
    );
    assert!(x509.contains("Public-Key: (2048 bit)"), "{x509}");
    assert!(x509.contains("CA:FALSE"), "{x509}");
    // Self-signed: the certificate verifies against itself.
    openssl(&["verify", "-CAfile", p(&cert), "-partial_chain", p(&cert)]);
    assert_eq!(mode(&key), 0o600);
    // The key is the certificate's.
    assert_eq!(
        openssl(&["pkey", "-in", p(&key), "-pubout"]),
        openssl(&["x509", "-in", p(&cert), "-pubkey", "-noout"])
    );
    let days = openssl(&["x509", "-in", p(&cert), "-noout", "-checkend", "7689600"]);
    assert!(days.contains("will not expire"), "{days}");
    assert!(report.contains("tinymta cert install"), "{report}");

    // An existing file is never replaced without --force.
    let before = fs::read(&cert).unwrap();
    let (code, err) = cert_err(&[
        "selfsigned",
        "--cn",
        "mx.example.test",
        "--out-cert",
        p(&cert),
        "--out-key",
        p(&dir.path().join("other.key")),
    ]);
    assert_eq!(code, 73, "{err}");
    assert!(
        err.contains("--out-cert") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(&cert).unwrap(), before);
    assert!(!dir.path().join("other.key").exists());
    cert_ok(&[
        "selfsigned",
        "--cn",
        "mx.example.test",
        "--out-cert",
        p(&cert),
        "--out-key",
        p(&key),
        "--force",
    ]);
    assert_ne!(fs::read(&cert).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn selfsigned_ec_and_larger_rsa_keys() {
    let dir = TempDir::new("cert-ec");
    let (cert, key) = (dir.path().join("ec.pem"), dir.path().join("ec.key"));
    cert_ok(&[
        "selfsigned",
        "--cn",
        "mx.example.test",
        "--ec",
        "--out-cert",
        p(&cert),
        "--out-key",
        p(&key),
    ]);
    let x509 = openssl(&["x509", "-in", p(&cert), "-noout", "-text"]);
    assert!(x509.contains("id-ecPublicKey"), "{x509}");
    assert!(x509.contains("prime256v1"), "{x509}");
    assert!(x509.contains("ecdsa-with-SHA256"), "{x509}");
    assert!(x509.contains("DNS:mx.example.test"), "{x509}");
    assert_eq!(mode(&key), 0o600);
    openssl(&["pkey", "-in", p(&key), "-check", "-noout"]);

    // Default file names come from the common name, in the current directory.
    let out = run_with_timeout(
        common::tinymta_command()
            .args([
                "cert",
                "selfsigned",
                "--cn",
                "big.example.test",
                "--key-size",
                "3072",
            ])
            .current_dir(dir.path()),
        None,
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let big = dir.path().join("big.example.test.pem");
    let x509 = openssl(&["x509", "-in", p(&big), "-noout", "-text"]);
    assert!(x509.contains("Public-Key: (3072 bit)"), "{x509}");
    assert_eq!(mode(&dir.path().join("big.example.test.key")), 0o600);
}

#[test]
fn bad_flags_exit_64_and_name_the_flag() {
    let dir = TempDir::new("cert-flags");
    let out = |n: &str| dir.path().join(n).display().to_string();
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "selfsigned",
            "--out-cert",
            &out("c.pem"),
            "--out-key",
            &out("k.pem"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: [(&[&str], &str); 8] = [
        (
            &["--cn", "mx.example.test", "--country", "ITA"],
            "--country",
        ),
        (&["--cn", "mx.example.test", "--country", "1T"], "--country"),
        (
            &["--cn", "mx.example.test", "--key-size", "1024"],
            "--key-size",
        ),
        (
            &["--cn", "mx.example.test", "--ec", "--key-size", "4096"],
            "--key-size",
        ),
        (&["--cn", "mx.example.test", "--email", "nobody"], "--email"),
        (&["--cn", "not a host name"], "--cn"),
        (&["--cn", "mx.example.test", "--san", "bad_name!"], "--san"),
        (&["--cn", "mx.example.test", "--days", "0"], "--days"),
    ];
    for (extra, flag) in cases {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = cert_err(&refs);
        assert_eq!(code, 64, "{extra:?}: {err}");
        assert!(err.contains(flag), "{extra:?}: {err}");
    }
    let long_org = "O".repeat(65);
    let (code, err) = cert_err(&["csr", "--cn", "mx.example.test", "--org", &long_org]);
    assert_eq!(code, 64);
    assert!(err.contains("--org"), "{err}");
    // Nothing was written by any of them.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn csr_verifies_with_openssl_req() {
    let dir = TempDir::new("cert-csr");
    for (tag, extra) in [("rsa", &["--key-size", "2048"][..]), ("ec", &["--ec"][..])] {
        let csr = dir.path().join(format!("{tag}.csr"));
        let key = dir.path().join(format!("{tag}.key"));
        let mut args = vec![
            "csr",
            "--cn",
            "mx.example.test",
            "--country",
            "DE",
            "--locality",
            "Berlin",
            "--org",
            "Example GmbH",
            "--ou",
            ".",
            "--email",
            "postmaster@example.test",
            "--san",
            "smtp.example.test",
            "--out-csr",
            p(&csr),
            "--out-key",
            p(&key),
        ];
        args.extend_from_slice(extra);
        let report = cert_ok(&args);
        assert!(
            report.contains("-----BEGIN CERTIFICATE REQUEST-----"),
            "{report}"
        );
        let out = certs::openssl_output(&["req", "-in", p(&csr), "-verify", "-noout"], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = text(&out.stdout) + &text(&out.stderr);
        assert!(said.contains("verify OK"), "{said}");
        let req = openssl(&["req", "-in", p(&csr), "-noout", "-text"]);
        assert!(
            req.contains(
                "C = DE, L = Berlin, O = Example GmbH, OU = ., CN = mx.example.test, emailAddress = postmaster@example.test"
            ),
            "{req}"
        );
        assert!(
            req.contains("DNS:mx.example.test, DNS:smtp.example.test"),
            "{req}"
        );
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            openssl(&["pkey", "-in", p(&key), "-pubout"]),
            openssl(&["req", "-in", p(&csr), "-pubkey", "-noout"])
        );
    }
}

/// Checks tinymta's fingerprint report of `cert` against the openssl command line.
fn assert_report_matches_openssl(report: &str, cert: &Path) {
    for d in ["sha256", "sha1", "md5"] {
        assert_eq!(
            field(report, &format!("{d} certificate")),
            certs::fingerprint(cert, d),
            "{d} of {}",
            cert.display()
        );
    }
    let spki = certs::spki_sha256(cert);
    assert_eq!(
        field(report, "sha256 public key")
            .replace(':', "")
            .to_ascii_lowercase(),
        spki
    );
    // The DANE record is the SPKI SHA-256, lower-case, under the CN.
    let tlsa = report
        .lines()
        .find(|l| l.starts_with("_25._tcp.mx.example.test. IN TLSA 3 1 1 "))
        .unwrap_or_else(|| panic!("no TLSA record in:\n{report}"));
    assert_eq!(tlsa.rsplit(' ').next().unwrap(), spki);
    for d in ["sha1", "md5"] {
        let v = field(report, &format!("{d} public key"));
        let expected = if d == "sha1" { 20 } else { 16 };
        assert_eq!(v.split(':').count(), expected, "{d}: {v}");
    }
}

#[test]
fn fingerprint_of_a_file_equals_openssl() {
    let dir = TempDir::new("cert-fp");
    for (tag, extra) in [("rsa", &[][..]), ("ec", &["--ec"][..])] {
        let cert = dir.path().join(format!("{tag}.pem"));
        let key = dir.path().join(format!("{tag}.key"));
        let mut args = vec![
            "selfsigned",
            "--cn",
            "mx.example.test",
            "--out-cert",
            p(&cert),
            "--out-key",
            p(&key),
        ];
        args.extend_from_slice(extra);
        cert_ok(&args);
        let report = cert_ok(&["fingerprint", p(&cert)]);
        assert_report_matches_openssl(&report, &cert);
        // DER input gives the same values.
        let der = dir.path().join(format!("{tag}.der"));
        openssl(&["x509", "-in", p(&cert), "-outform", "DER", "-out", p(&der)]);
        let der_report = cert_ok(&["fingerprint", p(&der)]);
        assert_eq!(
            field(&der_report, "sha256 certificate"),
            field(&report, "sha256 certificate")
        );
    }
    // A certificate made by the openssl command line, not by tinymta.
    let other = certs::self_signed(dir.path(), "openssl", "mx.example.test");
    let report = cert_ok(&["fingerprint", p(&other.cert)]);
    assert_report_matches_openssl(&report, &other.cert);

    let (code, err) = cert_err(&["fingerprint", p(&dir.path().join("missing.pem"))]);
    assert_eq!(code, 66, "{err}");
    let (code, err) = cert_err(&["fingerprint"]);
    assert_eq!(code, 64, "{err}");
}

/// The library's fingerprints (`tinymta::tls::fingerprint`, what `cert fingerprint` and
/// the policy table use) of a certificate the openssl command line made equal what the
/// command line prints.
#[test]
fn fingerprints_equal_openssl_cli() {
    use tinymta::tls::fingerprint::{
        cert_fingerprint, colon_hex, lower_hex, spki_fingerprint, tlsa_311, Digest,
    };
    let dir = TempDir::new("cert-lib-fp");
    let pair = certs::self_signed_with(dir.path(), "mx", "mx.example.test", certs::Key::Ec);
    let cert = openssl::x509::X509::from_pem(&fs::read(&pair.cert).unwrap()).unwrap();
    for d in [Digest::Sha256, Digest::Sha1, Digest::Md5] {
        let cli = certs::fingerprint(&pair.cert, d.name());
        assert_eq!(colon_hex(&cert_fingerprint(&cert, d)), cli, "{d}");
    }
    let cli = certs::spki_sha256(&pair.cert);
    assert_eq!(lower_hex(&spki_fingerprint(&cert, Digest::Sha256)), cli);
    assert_eq!(tlsa_311(&cert), format!("3 1 1 {cli}"));
}

#[test]
fn fingerprint_remote_starttls_and_implicit_tls() {
    let dir = TempDir::new("cert-remote");
    let (cert, key) = (dir.path().join("mx.pem"), dir.path().join("mx.key"));
    cert_ok(&[
        "selfsigned",
        "--cn",
        "mx.example.test",
        "--out-cert",
        p(&cert),
        "--out-key",
        p(&key),
    ]);
    let server = Server::start(&["--tls-cert", p(&cert), "--tls-key", p(&key)]);
    let want = certs::fingerprint(&cert, "sha256");
    let report = cert_ok(&["fingerprint", "--remote", &server.smtp, "--starttls"]);
    assert_eq!(field(&report, "sha256 certificate"), want, "{report}");
    assert!(report.contains("STARTTLS"), "{report}");
    assert_eq!(
        field(&report, "sha256 public key")
            .replace(':', "")
            .to_ascii_lowercase(),
        certs::spki_sha256(&cert)
    );
    // STARTTLS is the default on ports other than 465.
    let report = cert_ok(&["fingerprint", "--remote", &server.submission]);
    assert_eq!(field(&report, "sha256 certificate"), want, "{report}");
    let report = cert_ok(&["fingerprint", "--remote", &server.smtps, "--smtps"]);
    assert_eq!(field(&report, "sha256 certificate"), want, "{report}");
    assert!(report.contains("implicit TLS"), "{report}");
    assert_eq!(
        field(&report, "md5 certificate"),
        certs::fingerprint(&cert, "md5")
    );

    let closed = format!("127.0.0.1:{}", common::free_port("127.0.0.1"));
    let (code, err) = cert_err(&["fingerprint", "--remote", &closed, "--starttls"]);
    assert_eq!(code, 69, "{err}");
    let (code, _) = cert_err(&[
        "fingerprint",
        "--remote",
        &server.smtp,
        "--starttls",
        "--smtps",
    ]);
    assert_eq!(code, 64);
}

/// A two-level PKI made with the openssl command line: root CA and intermediate CA.
struct Pki {
    root: PathBuf,
    int: PathBuf,
    int_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let root = certs::ca(dir, "root");
    let (int, int_key, int_csr) = (
        dir.join("int.pem"),
        dir.join("int.key"),
        dir.join("int.csr"),
    );
    let ext = dir.join("int.ext");
    fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    certs::key_and_request(&int_key, &int_csr, "/CN=tinymta test intermediate");
    certs::sign_request(&int_csr, &root.cert, &root.key, 30, Some(&ext), &int);
    Pki {
        root: root.cert,
        int,
        int_key,
    }
}

/// Has the intermediate sign `csr` (keeping the SANs tinymta requested).
fn sign(pki: &Pki, csr: &Path, out: &Path, days: u32) {
    certs::sign_request(csr, &pki.int, &pki.int_key, days, None, out);
}

/// A key and request from `tinymta cert csr`, signed by the intermediate.
fn leaf(dir: &Path, pki: &Pki, tag: &str, days: u32) -> (PathBuf, PathBuf) {
    let (csr, key, cert) = (
        dir.join(format!("{tag}.csr")),
        dir.join(format!("{tag}.key")),
        dir.join(format!("{tag}.pem")),
    );
    cert_ok(&[
        "csr",
        "--cn",
        "mx.example.test",
        "--org",
        "Example",
        "--out-csr",
        p(&csr),
        "--out-key",
        p(&key),
    ]);
    sign(pki, &csr, &cert, days);
    (cert, key)
}

fn concat(out: &Path, parts: &[&Path]) {
    let mut data = Vec::new();
    for part in parts {
        data.extend(fs::read(part).unwrap());
    }
    fs::write(out, data).unwrap();
}

#[test]
fn install_refuses_a_key_that_does_not_match() {
    let dir = TempDir::new("cert-install-key");
    let pki = pki(dir.path());
    let (cert, _key) = leaf(dir.path(), &pki, "leaf", 30);
    let (_, other_key) = leaf(dir.path(), &pki, "other", 30);
    let state = dir.path().join("state");
    let (code, err) = cert_err(&[
        "install",
        p(&cert),
        "--key",
        p(&other_key),
        "--chain",
        p(&pki.int),
        "--state-dir",
        p(&state),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("key does not match certificate"), "{err}");
    assert!(!state.join("tls/cert.pem").exists());
    assert!(!state.join("tls/key.pem").exists());
    // No key anywhere: says to give --key.
    let (code, err) = cert_err(&["install", p(&cert), "--state-dir", p(&state)]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--key"), "{err}");
}

#[test]
fn install_refuses_a_misordered_chain() {
    let dir = TempDir::new("cert-install-chain");
    let pki = pki(dir.path());
    let (cert, key) = leaf(dir.path(), &pki, "leaf", 30);
    let state = dir.path().join("state");
    let wrong = dir.path().join("wrong-order.pem");
    concat(&wrong, &[&pki.root, &pki.int]);
    let (code, err) = cert_err(&[
        "install",
        p(&cert),
        "--key",
        p(&key),
        "--chain",
        p(&wrong),
        "--state-dir",
        p(&state),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("chain certificate 2 did not issue certificate 1: certificate 1 names CN=tinymta test intermediate as its issuer"),
        "{err}"
    );
    // Leaf and intermediate in order, but the root is followed by an unrelated CA.
    let stranger = certs::ca(dir.path(), "stranger");
    let bad_tail = dir.path().join("bad-tail.pem");
    concat(&bad_tail, &[&pki.int, &stranger.cert, &pki.root]);
    let (code, err) = cert_err(&[
        "install",
        p(&cert),
        "--key",
        p(&key),
        "--chain",
        p(&bad_tail),
        "--state-dir",
        p(&state),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("chain certificate 3 did not issue certificate 2"),
        "{err}"
    );
    assert!(!state.join("tls/cert.pem").exists());
}

/// A self-signed certificate with the given validity, made with the openssl crate
/// (the command line cannot put notAfter in the past).
fn dated_cert(dir: &Path, tag: &str, not_before: i64, not_after: i64) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "mx.example.test").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    // Through a GeneralizedTime string from date(1): Asn1Time::from_unix passes a
    // time_t, which Rust's libc and musl 1.2 size differently on 32-bit targets.
    let asn1 = |unix: i64| {
        let out = run_with_timeout(
            Command::new("date").args(["-u", "-d", &format!("@{unix}"), "+%Y%m%d%H%M%SZ"]),
            None,
            Duration::from_secs(10),
        );
        Asn1Time::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    };
    b.set_not_before(&asn1(not_before)).unwrap();
    b.set_not_after(&asn1(not_after)).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let (cert, keyf) = (
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    );
    fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
    fs::write(&keyf, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, keyf)
}

#[test]
fn install_refuses_expired_and_not_yet_valid_certificates() {
    let dir = TempDir::new("cert-install-dates");
    let state = dir.path().join("state");
    // 2001-01-01 .. 2002-01-01.
    let (cert, key) = dated_cert(dir.path(), "expired", 978_307_200, 1_009_843_200);
    let (code, err) = cert_err(&[
        "install",
        p(&cert),
        "--key",
        p(&key),
        "--state-dir",
        p(&state),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("certificate expired on"), "{err}");
    assert!(err.contains("2002"), "{err}");
    // 2100-01-01 .. 2101-01-01.
    let (cert, key) = dated_cert(dir.path(), "future", 4_102_444_800, 4_133_980_800);
    let (code, err) = cert_err(&[
        "install",
        p(&cert),
        "--key",
        p(&key),
        "--state-dir",
        p(&state),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("not valid before"), "{err}");
    assert!(!state.join("tls").exists());
}

/// The SHA-256 fingerprint (colon-hex) of the certificate a server presents after
/// STARTTLS, and s_client's whole output, by the openssl command line.
fn served(addr: &str, ca: &Path) -> (String, String) {
    let out = certs::openssl_output(
        &[
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            addr,
            "-CAfile",
            p(ca),
            "-showcerts",
        ],
        None,
    );
    assert!(out.status.success(), "s_client: {}", output_text(&out));
    let out = output_text(&out);
    let start = out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from s_client:\n{out}"));
    let end = out[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    let leaf = ca.with_file_name("served-leaf.pem");
    fs::write(&leaf, &out[start..end]).unwrap();
    (certs::fingerprint(&leaf, "sha256"), out)
}

#[test]
fn installed_certificate_is_served_and_reloaded_on_sighup() {
    let dir = TempDir::new("cert-install-ok");
    let pki = pki(dir.path());
    let (cert, key) = leaf(dir.path(), &pki, "leaf", 60);
    let state = dir.path().join("state");
    let chain = dir.path().join("chain.pem");
    concat(&chain, &[&pki.int, &pki.root]);
    let report = cert_ok(&[
        "install",
        p(&cert),
        "--key",
        p(&key),
        "--chain",
        p(&chain),
        "--state-dir",
        p(&state),
    ]);
    let (icert, ikey) = (state.join("tls/cert.pem"), state.join("tls/key.pem"));
    assert_eq!(mode(&ikey), 0o600);
    assert_eq!(pem_blocks(&icert), 3, "leaf, intermediate, root");
    assert!(
        report.contains(&format!(
            "tinymta serve --tls-cert {} --tls-key {}",
            p(&icert),
            p(&ikey)
        )),
        "{report}"
    );
    assert!(report.contains("SIGHUP"), "{report}");
    // No temporary files left next to the installed ones.
    assert_eq!(fs::read_dir(state.join("tls")).unwrap().count(), 2);

    let server = Server::start(&["--tls-cert", p(&icert), "--tls-key", p(&ikey)]);
    let (fp, out) = served(&server.smtp, &pki.root);
    assert_eq!(fp, certs::fingerprint(&cert, "sha256"));
    // The whole chain is sent: s_client verifies it against the root alone.
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");

    // Renewal with the same key: the CA signs the same request again, no --key needed,
    // and a short-lived certificate draws a warning.
    let renewed = dir.path().join("renewed.pem");
    sign(&pki, &dir.path().join("leaf.csr"), &renewed, 10);
    let out = tinymta(&[
        "cert",
        "install",
        p(&renewed),
        "--chain",
        p(&pki.int),
        "--state-dir",
        p(&state),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let warn = text(&out.stderr);
    assert!(
        warn.contains("warning") && warn.contains("expires in"),
        "{warn}"
    );
    assert!(!text(&out.stdout).contains("public key changed"));

    // A new key: the running daemon serves it after SIGHUP.
    let (next, next_key) = leaf(dir.path(), &pki, "next", 60);
    let report = cert_ok(&[
        "install",
        p(&next),
        "--key",
        p(&next_key),
        "--chain",
        p(&pki.int),
        "--state-dir",
        p(&state),
    ]);
    assert!(report.contains("public key changed"), "{report}");
    server.signal("HUP");
    let want = certs::fingerprint(&next, "sha256");
    let start = Instant::now();
    loop {
        let (fp, out) = served(&server.smtp, &pki.root);
        if fp == want {
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still serving {fp} after SIGHUP; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn install_to_explicit_files_with_the_key_in_the_certificate_file() {
    let dir = TempDir::new("cert-install-dest");
    let pki = pki(dir.path());
    let (cert, key) = leaf(dir.path(), &pki, "leaf", 30);
    let combined = dir.path().join("combined.pem");
    concat(&combined, &[&cert, &pki.int, &key]);
    let (dc, dk) = (dir.path().join("out/c.pem"), dir.path().join("out/k.pem"));
    cert_ok(&[
        "install",
        p(&combined),
        "--dest-cert",
        p(&dc),
        "--dest-key",
        p(&dk),
    ]);
    assert_eq!(pem_blocks(&dc), 2);
    assert!(!fs::read_to_string(&dc).unwrap().contains("PRIVATE KEY"));
    assert_eq!(mode(&dk), 0o600);
    let (code, err) = cert_err(&["install", p(&combined), "--dest-cert", p(&dc)]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--dest-key"), "{err}");

    let dest = |c: &Path, k: &Path| -> Vec<String> {
        vec![
            "--dest-cert".into(),
            p(c).into(),
            "--dest-key".into(),
            p(k).into(),
        ]
    };
    let run = |args: &[&str], extra: &[String]| {
        let mut all: Vec<&str> = vec!["cert", "install"];
        all.extend_from_slice(args);
        all.extend(extra.iter().map(String::as_str));
        tinymta(&all)
    };
    // A bundle in reverse order: the key belongs to the last certificate.
    let reversed = dir.path().join("reversed.pem");
    concat(&reversed, &[&pki.root, &pki.int, &cert]);
    let out = run(&[p(&reversed), "--key", p(&key)], &dest(&dc, &dk));
    assert_eq!(out.status.code(), Some(65));
    let err = text(&out.stderr);
    assert!(
        err.contains("key does not match certificate 1") && err.contains("certificate 3"),
        "{err}"
    );
    // fullchain.pem plus chain.pem: the repeated intermediate is dropped.
    let fullchain = dir.path().join("fullchain.pem");
    concat(&fullchain, &[&cert, &pki.int]);
    let (dc2, dk2) = (dir.path().join("out/c2.pem"), dir.path().join("out/k2.pem"));
    let out = run(
        &[p(&fullchain), "--key", p(&key), "--chain", p(&pki.int)],
        &dest(&dc2, &dk2),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("repeated"));
    assert_eq!(pem_blocks(&dc2), 2);
    // A DER certificate: the key must then come from --key.
    let der = dir.path().join("leaf.der");
    openssl(&["x509", "-in", p(&cert), "-outform", "DER", "-out", p(&der)]);
    let (dc3, dk3) = (dir.path().join("out/c3.pem"), dir.path().join("out/k3.pem"));
    let out = run(&[p(&der)], &dest(&dc3, &dk3));
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--key"));
    let out = run(&[p(&der), "--key", p(&key)], &dest(&dc3, &dk3));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        certs::fingerprint(&dc3, "sha256"),
        certs::fingerprint(&cert, "sha256")
    );
}
