//! TLS session resumption and the dual demonstration certificate, seen from outside:
//!
//! - inbound: `openssl s_client` saves the session (`-sess_out`) and brings it back
//!   (`-sess_in`): TLS 1.2 and TLS 1.3 tickets are "Reused", also after a SIGHUP
//!   (the rebuilt context shares the ticket keys), and refused by a restarted
//!   process (the keys were only in memory);
//! - outbound: tinymta delivering to a tinymta receiver over separate connections
//!   resumes the second handshake (both sides log it), and a session made under one
//!   policy is never offered under another to the same server;
//! - the demonstration certificate: a client that only takes ECDSA signatures gets
//!   the ECDSA certificate, one that only takes RSA gets the RSA one.
//!
//! Key rotation is covered by the unit tests in `src/tls/ticket.rs` (injected clock),
//! the checks on resumed sessions by those in `src/tls/client.rs`.

mod common;

use std::time::{Duration, Instant};

use common::certs::{fingerprint, openssl_output};
use common::postfix::{unique_listen_addr, unique_loopback, Postfix, PostfixOptions};
use common::{dns_server, free_port, output_text, Server, TempDir};

/// `openssl s_client` with STARTTLS to `addr`, saying QUIT and reading to the end (so
/// TLS 1.3 tickets arrive before it exits); everything it printed.
fn s_client(addr: &str, args: &[&str]) -> String {
    let mut all = vec![
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        addr,
        "-crlf",
        "-ign_eof",
    ];
    all.extend_from_slice(args);
    output_text(&openssl_output(&all, Some(b"QUIT\r\n")))
}

/// The session line s_client prints: "New, TLSv1.2, ..." or "Reused, TLSv1.3, ...".
fn session_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("New, ") || l.starts_with("Reused, "))
        .unwrap_or_else(|| panic!("no session line in:\n{out}"))
}

/// Server log lines that say how an inbound handshake went.
fn inbound_handshakes(s: &Server) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("TLS session from "))
        .map(str::to_string)
        .collect()
}

#[test]
fn inbound_tickets_resume_tls12_and_tls13_across_sighup_but_not_restart() {
    let mut s = Server::start_logging("info,tinymta::inbound=debug", None, &[]);
    let dir = TempDir::new("sess");
    let protos = [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")];
    for (flag, name) in protos {
        let file = dir.path().join(name);
        let file = file.to_str().unwrap();
        let out = s_client(&s.smtp, &[flag, "-sess_out", file]);
        assert!(
            session_line(&out).starts_with(&format!("New, {name}")),
            "{out}"
        );
        let out = s_client(&s.smtp, &[flag, "-sess_in", file]);
        assert!(
            session_line(&out).starts_with(&format!("Reused, {name}")),
            "{out}"
        );
        assert!(
            out.contains("250 "),
            "the session goes on after resumption:\n{out}"
        );
    }
    let lines = inbound_handshakes(&s);
    let resumed: Vec<_> = lines.iter().filter(|l| l.contains(": resumed")).collect();
    assert_eq!(resumed.len(), 2, "{lines:#?}");
    assert!(
        lines
            .last()
            .unwrap()
            .contains("(inbound handshakes: 2 resumed, 2 full)"),
        "{lines:#?}"
    );

    // TLS 1.2 clients that keep the session in memory (-reconnect) resume too.
    let out = s_client(&s.smtp, &["-tls1_2", "-reconnect"]);
    assert_eq!(out.matches("\nReused, TLSv1.2").count(), 5, "{out}");

    // SIGHUP rebuilds the server context: the tickets stay valid.
    s.signal("HUP");
    s.wait_log("SIGHUP: certificate and key reloaded");
    for (flag, name) in protos {
        let file = dir.path().join(name);
        let out = s_client(&s.smtp, &[flag, "-sess_in", file.to_str().unwrap()]);
        assert!(
            session_line(&out).starts_with(&format!("Reused, {name}")),
            "after SIGHUP: {out}"
        );
    }

    // A restarted process has new keys: the same tickets give full handshakes.
    assert_eq!(s.stop(), Some(0));
    s.spawn();
    for (flag, name) in protos {
        let file = dir.path().join(name);
        let out = s_client(&s.smtp, &[flag, "-sess_in", file.to_str().unwrap()]);
        assert!(
            session_line(&out).starts_with(&format!("New, {name}")),
            "after a restart: {out}"
        );
    }
}

/// The server certificate s_client printed, PEM.
fn served_cert(out: &str) -> String {
    let start = out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in:\n{out}"));
    let end = out[start..].find("-----END CERTIFICATE-----").unwrap() + start;
    format!("{}-----END CERTIFICATE-----\n", &out[start..end])
}

#[test]
fn demonstration_certificate_is_ecdsa_beside_rsa() {
    let mut s = Server::start(&[]);
    let tls = s.state.join("tls");
    let rsa = std::fs::read_to_string(tls.join("demo-cert.pem")).unwrap();
    let ec = std::fs::read_to_string(tls.join("demo-ec-cert.pem")).unwrap();
    let ec_key_mode = std::fs::metadata(tls.join("demo-ec-key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&ec_key_mode.permissions()) & 0o777,
        0o600
    );
    let text = |pem: &str| {
        let out = openssl_output(&["x509", "-noout", "-text"], Some(pem.as_bytes()));
        output_text(&out)
    };
    assert!(text(&ec).contains("ASN1 OID: prime256v1"), "{}", text(&ec));
    assert!(
        text(&rsa).contains("Public-Key: (2048 bit)"),
        "{}",
        text(&rsa)
    );

    let out = s_client(&s.smtp, &["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"]);
    assert!(out.contains("Peer signature type: ECDSA"), "{out}");
    assert_eq!(served_cert(&out), ec);
    let out = s_client(&s.smtp, &["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"]);
    assert!(out.contains("Peer signature type: RSA-PSS"), "{out}");
    assert_eq!(served_cert(&out), rsa);
    // A client that takes both is sent the cheap one.
    let out = s_client(&s.smtp, &["-tls1_3"]);
    assert_eq!(served_cert(&out), ec);
    // The profile's TLS 1.2 suites are RSA-authenticated (the lists are unchanged).
    let out = s_client(&s.smtp, &["-tls1_2"]);
    assert_eq!(served_cert(&out), rsa);

    // A state directory from before the ECDSA certificate gets one on its next start;
    // the RSA one is kept.
    s.stop();
    std::fs::remove_file(tls.join("demo-ec-cert.pem")).unwrap();
    std::fs::remove_file(tls.join("demo-ec-key.pem")).unwrap();
    s.spawn();
    let new_ec = std::fs::read_to_string(tls.join("demo-ec-cert.pem")).unwrap();
    assert_ne!(new_ec, ec);
    assert_eq!(
        std::fs::read_to_string(tls.join("demo-cert.pem")).unwrap(),
        rsa
    );
    let out = s_client(&s.smtp, &["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"]);
    assert_eq!(served_cert(&out), new_ec);
}

/// Sends one message through `sender`; its queue ID.
fn submit(sender: &Server, to: &str) -> String {
    sender.submit(
        "sender@example.test",
        &[to],
        "Subject: resumption test\r\n\r\nhello",
    )
}

/// Waits (bounded) until `s` has logged `needle` at least `n` times.
fn wait_count(s: &Server, needle: &str, n: usize) {
    let start = Instant::now();
    while s.log().matches(needle).count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "fewer than {n} {needle:?} in:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sender's outbound handshake lines, in order.
fn outbound_handshakes(s: &Server) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("TLS session to "))
        .map(str::to_string)
        .collect()
}

#[test]
fn outbound_sessions_resume_per_server_and_never_across_policies() {
    let ip = unique_loopback();
    let port = free_port(&ip);
    let r = Server::start_logging(
        "info,tinymta::inbound=debug",
        Some(&format!("{ip}:{port}")),
        &["--domain", "one.test", "--domain", "two.test"],
    );
    let dir = TempDir::new("resume-out");
    // Two next hops to the same server (same name, address, port and SNI): one.test
    // via [mx.two.test] (no MX lookup) under `encrypt`, two.test via mx.two.test (MX
    // lookup, none, so its address) under `fingerprint` with the receiver's ECDSA
    // certificate, the one tinymta is sent.
    let mut zone = dns_server::Zone::default();
    zone.add("mx.two.test", dns_server::Rr::A(ip.parse().unwrap()));
    let dns = dns_server::DnsServer::start(zone);
    let transport = dir.path().join("transport");
    std::fs::write(
        &transport,
        format!("one.test  [mx.two.test]:{port}\ntwo.test  mx.two.test:{port}\n"),
    )
    .unwrap();
    let fp = fingerprint(&r.state.join("tls/demo-ec-cert.pem"), "sha256");
    let policy = dir.path().join("policy");
    std::fs::write(
        &policy,
        format!("[mx.two.test]:{port}  encrypt\nmx.two.test:{port}  fingerprint match={fp}\n"),
    )
    .unwrap();
    let resolver = dns.addr.to_string();
    let s = Server::start_logging(
        "info,tinymta::outbound=debug",
        None,
        &[
            "--resolver",
            &resolver,
            "--transport",
            transport.to_str().unwrap(),
            "--tls-policy",
            policy.to_str().unwrap(),
        ],
    );
    // Connections the receiver has seen end (the harness's readiness probe counts).
    let closed_at_start = r.log().matches("disconnect from").count();
    let deliver = |to: &str| {
        let id = submit(&s, to);
        let line = s.wait_log(&format!("{id}: to=<{to}>"));
        assert!(line.contains("status=sent"), "{line}");
    };
    // The idle connection is parked for the next message to the same next hop and
    // policy; waiting until the receiver saw it end makes the next message open a new
    // connection, with a new handshake.
    let wait_closed = |connections: usize| {
        wait_count(&r, "disconnect from", closed_at_start + connections);
    };

    deliver("a@one.test");
    wait_closed(1);
    deliver("b@one.test");
    // Same server, other policy (and so never the parked connection either): the
    // encrypt session is not offered.
    deliver("c@two.test");
    wait_closed(3);
    deliver("d@two.test");

    let out = outbound_handshakes(&s);
    assert_eq!(out.len(), 4, "{out:#?}");
    let how: Vec<bool> = out.iter().map(|l| l.contains(": resumed (")).collect();
    assert_eq!(how, [false, true, false, true], "{out:#?}");
    assert!(
        out[3].contains("(outbound handshakes: 2 resumed, 2 full)"),
        "{out:#?}"
    );
    // The fingerprint level still verified the resumed session's certificate.
    let verified: Vec<_> = s
        .log()
        .lines()
        .filter(|l| l.contains("Verified TLS connection established to"))
        .map(str::to_string)
        .collect();
    assert_eq!(verified.len(), 2, "{}", s.log());

    // The receiving side saw the same: full, resumed, full, resumed.
    let seen: Vec<bool> = inbound_handshakes(&r)
        .iter()
        .map(|l| l.contains(": resumed ("))
        .collect();
    assert_eq!(seen, [false, true, false, true], "{}", r.log());
    assert_eq!(r.wait_delivered_in("two.test", "d", 1).len(), 1);
}

/// Postfix as the receiving side: it says itself that it resumed ("Reusing old
/// session"), also on a third connection (Postfix sends no new TLS 1.3 ticket on a
/// resumed handshake, so the cached ticket is offered again).
#[test]
fn outbound_sessions_resume_with_postfix() {
    let listen = unique_listen_addr();
    let pf = Postfix::start(
        PostfixOptions {
            smtpd_tls: true,
            ..PostfixOptions::sink(&listen)
        }
        .set("smtpd_tls_loglevel", "2"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ip, port) = listen.rsplit_once(':').unwrap();
    let relayhost = format!("[{ip}]:{port}");
    let s = Server::start_logging(
        "info,tinymta::outbound=debug",
        None,
        &["--relayhost", &relayhost, "--tls-default-level", "encrypt"],
    );
    for (n, to) in ["a@sink.test", "b@sink.test", "c@sink.test"]
        .into_iter()
        .enumerate()
    {
        let id = submit(&s, to);
        let line = s.wait_log(&format!("{id}: to=<{to}>"));
        assert!(line.contains("status=sent"), "{line}");
        // Wait for the parked connection to be closed (see the test above).
        let start = Instant::now();
        while n < 2 && pf.log_lines("disconnect from").len() < n + 1 {
            assert!(start.elapsed() < Duration::from_secs(30), "{}", pf.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let how: Vec<bool> = outbound_handshakes(&s)
        .iter()
        .map(|l| l.contains(": resumed ("))
        .collect();
    assert_eq!(how, [false, true, true], "{}", s.log());
    // Postfix's log is written by postlogd, a little after the fact.
    let start = Instant::now();
    while pf.log_lines("Reusing old session").len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", pf.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        pf.log_lines("Issuing session ticket").len(),
        1,
        "{}",
        pf.log()
    );
}
