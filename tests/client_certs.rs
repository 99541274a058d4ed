//! Inbound client certificates with swaks as the client (`--tls-cert`/`--tls-key`):
//! certificates from the test CA given to `--tls-ccert-ca-file` and from another CA,
//! and none. `--tls-ask-ccert` logs the trust, subject and fingerprints as Postfix does
//! and puts them into the `Received:` comment; `--tls-require-ccert` refuses MAIL with
//! 530 5.7.0 without a verified certificate; `--relay-ccert` lets exactly the listed
//! certificate (or public key) relay, and not another certificate of the same CA.

mod common;

use std::path::Path;

use common::certs::{self, CertPair};
use common::{swaks, Server, TempDir};

/// A client certificate for `name` (CN), signed by `ca`, for TLS client authentication.
fn client_cert(dir: &Path, ca: &CertPair, tag: &str, name: &str) -> CertPair {
    let key = dir.join(format!("{tag}.key"));
    let csr = dir.join(format!("{tag}.csr"));
    let cert = dir.join(format!("{tag}.pem"));
    let ext = dir.join(format!("{tag}.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    certs::key_and_request(&key, &csr, &format!("/CN={name}"));
    certs::sign_request(&csr, &ca.cert, &ca.key, 30, Some(&ext), &cert);
    CertPair { cert, key }
}

/// The test CA with two client certificates, and a certificate of another CA.
struct Pki {
    dir: TempDir,
    ca: CertPair,
    alice: CertPair,
    bob: CertPair,
    stranger: CertPair,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("client-certs");
        let ca = certs::ca(dir.path(), "ca");
        let other = certs::ca(dir.path(), "other");
        let alice = client_cert(dir.path(), &ca, "alice", "alice.client.test");
        let bob = client_cert(dir.path(), &ca, "bob", "bob.client.test");
        let stranger = client_cert(dir.path(), &other, "stranger", "stranger.client.test");
        Pki {
            dir,
            ca,
            alice,
            bob,
            stranger,
        }
    }

    fn ca_file(&self) -> String {
        self.ca.cert.display().to_string()
    }
}

/// swaks over STARTTLS to `s` with `cert` (or none) from `from` to `to`, the whole
/// transaction; its exit code and transcript.
fn send(s: &Server, cert: Option<&CertPair>, to: &str) -> (i32, String) {
    let (c, k);
    let mut args = vec![
        "--server",
        s.smtp.as_str(),
        "--tls",
        "--from",
        "sender@client.test",
        "--to",
        to,
        "--header",
        "Subject: client certificate",
    ];
    if let Some(pair) = cert {
        c = pair.cert.display().to_string();
        k = pair.key.display().to_string();
        args.extend(["--tls-cert", c.as_str(), "--tls-key", k.as_str()]);
    }
    swaks(&args)
}

#[test]
fn asked_certificates_are_logged_with_trust_and_fingerprints() {
    let pki = Pki::new();
    let s = Server::start(&["--tls-ask-ccert", "--tls-ccert-ca-file", &pki.ca_file()]);
    for (cert, user) in [
        (Some(&pki.alice), "alice"),
        (Some(&pki.stranger), "stranger"),
        (None, "nobody"),
    ] {
        let (code, out) = send(&s, cert, &format!("{user}@example.test"));
        assert_eq!(code, 0, "{out}");
        s.wait_delivered(user, 1);
    }
    let log = s.log();
    let fp = certs::fingerprint(&pki.alice.cert, "sha256");
    let line = s.wait_log("subject_CN=alice.client.test");
    assert!(
        line.ends_with(&format!(
            "unknown[127.0.0.1]: Trusted: subject_CN=alice.client.test, issuer=tinymta test CA ca, fingerprint={fp}, pkey_fingerprint={}",
            colon_hex_upper(&certs::spki_sha256(&pki.alice.cert))
        )),
        "{line}"
    );
    let line = s.wait_log("subject_CN=stranger.client.test");
    assert!(
        line.contains("unknown[127.0.0.1]: Untrusted: subject_CN=stranger.client.test, issuer=tinymta test CA other, fingerprint="),
        "{line}"
    );
    for trust in ["Trusted", "Untrusted", "Anonymous"] {
        assert!(
            log.contains(&format!(
                "{trust} TLS connection established from unknown[127.0.0.1]: TLSv1.3"
            )),
            "{trust}: {log}"
        );
    }
    // The Received: comment names the certificate and its fingerprint.
    let msg = &s.delivered("alice")[0];
    assert!(
        msg.contains(&format!(
            "\t(Client CN \"alice.client.test\", Issuer \"tinymta test CA ca\" (verified OK)\r\n\t sha256 fingerprint {fp})\r\n"
        )),
        "{msg}"
    );
    let msg = &s.delivered("stranger")[0];
    assert!(
        msg.contains("Issuer \"tinymta test CA other\" (not verified)"),
        "{msg}"
    );
    assert!(!s.delivered("nobody")[0].contains("Client CN"));
}

/// `AB:CD:...` from lower-case hex.
fn colon_hex_upper(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn a_required_network_gets_530_without_a_verified_certificate() {
    let pki = Pki::new();
    let s = Server::start(&[
        "--tls-require-ccert",
        "127.0.0.0/8",
        "--tls-ccert-ca-file",
        &pki.ca_file(),
    ]);
    for (cert, user) in [(None, "none"), (Some(&pki.stranger), "stranger")] {
        let (code, out) = send(&s, cert, &format!("{user}@example.test"));
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains(
                "<~* 530 5.7.0 Error: a client certificate issued by a trusted CA is required"
            ),
            "{user}: {out}"
        );
    }
    // Without TLS: told to start it.
    let (_, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "sender@client.test",
        "--to",
        "plain@example.test",
    ]);
    assert!(
        out.contains("<** 530 5.7.0 Must issue a STARTTLS command first"),
        "{out}"
    );
    let (code, out) = send(&s, Some(&pki.alice), "alice@example.test");
    assert_eq!(code, 0, "{out}");
    s.wait_delivered("alice", 1);
    assert!(s
        .log()
        .contains("NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 530 5.7.0"));
    assert!(s.delivered("none").is_empty() && s.delivered("stranger").is_empty());
}

#[test]
fn only_a_listed_certificate_or_key_may_relay() {
    let pki = Pki::new();
    // Alice's certificate by its fingerprint, the stranger's by its public key's.
    let table = pki.dir.path().join("relay_ccert");
    std::fs::write(
        &table,
        format!(
            "# clients that may relay\n{}  alice\n{}  stranger's key\n",
            certs::fingerprint(&pki.alice.cert, "sha256"),
            certs::spki_sha256(&pki.stranger.cert)
        ),
    )
    .unwrap();
    let s = Server::start(&[
        // Loopback is no relay network here: only certificates let a client relay.
        "--relay-network",
        "10.0.0.0/8",
        "--relay-ccert",
        table.to_str().unwrap(),
        "--tls-ccert-ca-file",
        &pki.ca_file(),
    ]);
    let denied = "<~* 554 5.7.1 <far@elsewhere.test>: Relay access denied";
    for cert in [None, Some(&pki.bob)] {
        let (code, out) = send(&s, cert, "far@elsewhere.test");
        assert_ne!(code, 0, "{out}");
        assert!(out.contains(denied), "{out}");
    }
    for cert in [&pki.alice, &pki.stranger] {
        let (code, out) = send(&s, Some(cert), "far@elsewhere.test");
        assert_eq!(code, 0, "{}: {out}", cert.cert.display());
        assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");
    }
    // Local mail is still accepted from the others.
    let (code, out) = send(&s, Some(&pki.bob), "bob@example.test");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn bad_client_certificate_flags_are_named() {
    let pki = Pki::new();
    let bad = pki.dir.path().join("bad_table");
    std::fs::write(&bad, "AB:CD  too short\n").unwrap();
    for (args, want) in [
        (
            vec!["--tls-require-ccert", "10.0.0.0/8"],
            "--tls-require-ccert '10.0.0.0/8': needs --tls-ccert-ca-file",
        ),
        (
            vec![
                "--tls-require-ccert",
                "10.0.0.0/99",
                "--tls-ccert-ca-file",
                "/x",
            ],
            "--tls-require-ccert '10.0.0.0/99': expected CIDR",
        ),
        (
            vec!["--relay-ccert", bad.to_str().unwrap()],
            "has 2 bytes, a sha256 fingerprint 32",
        ),
        (
            vec!["--tls-ccert-ca-file", pki.alice.key.to_str().unwrap()],
            "no PEM certificate in the file",
        ),
    ] {
        let mut all = vec!["serve", "--smtp", "127.0.0.1:1", "--state-dir"];
        let state = pki.dir.path().join("state");
        all.push(state.to_str().unwrap());
        all.extend(args);
        let out = common::tinymta(&all);
        let text = common::output_text(&out);
        assert!(
            !out.status.success() && text.contains(want),
            "{want}: {text}"
        );
    }
}
