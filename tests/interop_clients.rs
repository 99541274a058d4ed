//! Real SMTP clients against tinymta: swaks and `openssl s_client` (TESTBENCH.md).

mod common;

use common::certs::{self, Key};
use common::{output_text, swaks, Server};

/// `openssl s_client ARGS` with `input`; everything it printed.
fn s_client(args: &[&str], input: &[u8]) -> String {
    let mut all = vec!["s_client"];
    all.extend_from_slice(args);
    output_text(&certs::openssl_output(&all, Some(input)))
}

#[test]
fn swaks_starttls_delivery() {
    let s = Server::start(&[]);
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "a@client.test",
        "--to",
        "swaks@example.test",
        "--tls",
        "--header",
        "Subject: swaks tls",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let m = &s.wait_delivered("swaks", 1)[0];
    assert!(
        m.contains("Subject: swaks tls") && m.contains("(using TLSv1.3 with cipher"),
        "{m}"
    );
}

#[test]
fn swaks_pipelining_and_plaintext() {
    let s = Server::start(&[]);
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "a@client.test",
        "--to",
        "pipe@example.test",
        "--pipeline",
    ]);
    assert_eq!(code, 0, "{out}");
    let m = &s.wait_delivered("pipe", 1)[0];
    assert!(m.contains("with ESMTP id"), "{m}");
}

#[test]
fn swaks_encrypt_level_refuses_plaintext_mail() {
    let s = Server::start(&["--tls-level", "encrypt"]);
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "a@client.test",
        "--to",
        "u@example.test",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("530 5.7.0 Must issue a STARTTLS command first"),
        "{out}"
    );
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "a@client.test",
        "--to",
        "u@example.test",
        "--tls",
    ]);
    assert_eq!(code, 0, "{out}");
    s.wait_delivered("u", 1);
}

#[test]
fn swaks_tls_on_connect_to_smtps() {
    let s = Server::start(&[]);
    let (code, out) = swaks(&[
        "--server",
        &s.smtps,
        "--from",
        "a@client.test",
        "--to",
        "u@example.test",
        "--tls-on-connect",
    ]);
    // The TLS session works; MAIL needs AUTH on port 465.
    assert_ne!(code, 0);
    assert!(out.contains("220 mx.example.test ESMTP tinymta"), "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
}

#[test]
fn swaks_relay_denied_for_foreign_client_network() {
    let s = Server::start(&["--relay-network", "10.9.9.0/24"]);
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "a@client.test",
        "--to",
        "x@elsewhere.test",
    ]);
    assert_ne!(code, 0);
    assert!(
        out.contains("554 5.7.1 <x@elsewhere.test>: Relay access denied"),
        "{out}"
    );
}

#[test]
fn openssl_s_client_starttls_and_implicit() {
    let s = Server::start(&[]);
    let out = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &s.smtp,
            "-brief",
            "-crlf",
            "-ign_eof",
        ],
        b"EHLO sclient.test\nQUIT\n",
    );
    assert!(out.contains("Protocol version: TLSv1.3"), "{out}");
    assert!(out.contains("Ciphersuite: TLS_AES_256_GCM_SHA384"), "{out}");
    assert!(out.contains("250-mx.example.test"), "{out}");
    assert!(out.contains("221 2.0.0 Bye"), "{out}");
    s.wait_log("TLS connection established from unknown[127.0.0.1]: TLSv1.3");

    let out = s_client(
        &["-connect", &s.smtps, "-brief", "-crlf", "-ign_eof"],
        b"EHLO sclient.test\nQUIT\n",
    );
    assert!(out.contains("Protocol version: TLSv1.3"), "{out}");
    assert!(out.contains("220 mx.example.test ESMTP tinymta"), "{out}");

    // TLS 1.2 negotiates too, with an ECDHE suite from the profile.
    let out = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &s.smtp,
            "-brief",
            "-tls1_2",
            "-crlf",
        ],
        b"QUIT\n",
    );
    assert!(out.contains("Protocol version: TLSv1.2"), "{out}");
    assert!(
        out.contains("Ciphersuite: ECDHE-RSA-AES256-GCM-SHA384"),
        "{out}"
    );
    // TLS 1.1 is not part of the default profile.
    let out = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &s.smtp,
            "-brief",
            "-tls1_1",
            "-cipher",
            "ALL:@SECLEVEL=0",
        ],
        b"QUIT\n",
    );
    assert!(!out.contains("Protocol version: TLSv1.1"), "{out}");
    s.wait_log("TLS handshake failed from");
}

#[test]
fn openssl_s_client_against_level_none_gets_no_tls() {
    let s = Server::start(&["--tls-level", "none"]);
    let out = s_client(
        &["-starttls", "smtp", "-connect", &s.smtp, "-brief"],
        b"QUIT\n",
    );
    assert!(!out.contains("Protocol version"), "{out}");
}

#[test]
fn dual_rsa_and_ecdsa_certificates() {
    let dir = common::TempDir::new("dual");
    let gen = |name: &str, key: Key| {
        let pair = certs::req_x509(dir.path(), name, key, &format!("/CN={name}.mx.test"), &[]);
        (
            pair.cert.display().to_string(),
            pair.key.display().to_string(),
        )
    };
    let (rc, rk) = gen("rsa", Key::Rsa);
    let (ec, ek) = gen("ec", Key::Ec);
    let s = Server::start(&[
        "--tls-cert",
        &rc,
        "--tls-key",
        &rk,
        "--tls-cert",
        &ec,
        "--tls-key",
        &ek,
    ]);
    let peer = |sigalgs: &str| {
        s_client(
            &[
                "-starttls",
                "smtp",
                "-connect",
                &s.smtp,
                "-brief",
                "-tls1_3",
                "-sigalgs",
                sigalgs,
                "-crlf",
                "-ign_eof",
            ],
            b"QUIT\n",
        )
    };
    let out = peer("ECDSA+SHA256");
    assert!(out.contains("Peer certificate: CN = ec.mx.test"), "{out}");
    let out = peer("rsa_pss_rsae_sha256");
    assert!(out.contains("Peer certificate: CN = rsa.mx.test"), "{out}");
    // TLS 1.2 suites of the profile are all RSA-authenticated: the RSA certificate.
    let out = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &s.smtp,
            "-brief",
            "-tls1_2",
            "-crlf",
            "-ign_eof",
        ],
        b"QUIT\n",
    );
    assert!(out.contains("Peer certificate: CN = rsa.mx.test"), "{out}");

    // Unpaired or same-type certificates are refused at start-up, naming the flag/file.
    let out = common::tinymta(&["serve", "--smtp", "127.0.0.1:1", "--tls-cert", &rc]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{out:?}"
    );
    let dir2 = common::TempDir::new("dual2");
    let st = dir2.path().display().to_string();
    let out = common::tinymta(&[
        "serve",
        "--smtp",
        "127.0.0.1:1",
        "--state-dir",
        &st,
        "--tls-cert",
        &rc,
        "--tls-key",
        &rk,
        "--tls-cert",
        &rc,
        "--tls-key",
        &rk,
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another key type"),
        "{out:?}"
    );
}
