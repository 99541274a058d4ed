//! Self-test of the private-Postfix test helper (tests/common/postfix.rs): a sink that
//! swaks talks to, a client-only instance relaying to it over STARTTLS, and
//! posttls-finger. Needs root and the postfix + swaks packages (see TESTBENCH.md);
//! fails, never skips, when Postfix is missing: `bash tests/run` installs it.

mod common;

use common::postfix::{posttls_finger, unique_listen_addr, Postfix, PostfixOptions};
use common::{free_port, swaks};
use std::time::Duration;

/// A test that cannot run must not pass: a missing Postfix is a failure.
fn have_postfix() -> bool {
    assert!(
        std::path::Path::new("/usr/sbin/postfix").exists(),
        "postfix is not installed: `bash tests/run` installs it"
    );
    true
}

#[test]
fn sink_accepts_from_swaks() {
    if !have_postfix() {
        return;
    }
    let sink = Postfix::start(PostfixOptions::sink(&unique_listen_addr())).unwrap();
    let (code, out) = swaks(&[
        "--server",
        &sink.listen,
        "--from",
        "alice@client.test",
        "--to",
        "bob@example.net",
        "--helo",
        "client.test",
        "--header",
        "Subject: swaks to sink",
        "--body",
        "hello",
    ]);
    assert_eq!(code, 0, "swaks failed: {out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = sink
        .wait_log("to=<bob@example.net>", Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("status=sent"), "{line}");
    assert!(line.contains("postfix/discard"), "{line}");
}

#[test]
fn client_relays_to_sink_over_starttls() {
    if !have_postfix() {
        return;
    }
    let mut sink_opts = PostfixOptions::sink(&unique_listen_addr());
    sink_opts.smtpd_tls = true;
    let sink = Postfix::start(sink_opts).unwrap();

    let (ip, port) = sink.listen.rsplit_once(':').unwrap();
    let relayhost = format!("[{ip}]:{port}");
    let client = Postfix::start(
        PostfixOptions::client(&relayhost)
            .set("smtp_tls_security_level", "may")
            .set("smtp_tls_loglevel", "1"),
    )
    .unwrap();
    assert_eq!(client.listen, "");

    let msg =
        b"From: carol@client.test\r\nTo: dave@example.org\r\nSubject: relayed\r\n\r\nbody\r\n";
    client
        .sendmail("carol@client.test", "dave@example.org", msg)
        .unwrap();

    // Client side: delivered to the relayhost over TLS.
    let sent = client
        .wait_log("to=<dave@example.org>", Duration::from_secs(15))
        .unwrap();
    assert!(
        sent.contains("status=sent (250 2.0.0 Ok: queued as"),
        "{sent}"
    );
    assert!(sent.contains(&format!("relay={ip}[{ip}]:{port}")), "{sent}");
    client
        .wait_log("TLS connection established to", Duration::from_secs(1))
        .unwrap();

    // Sink side: received over TLS from the client, accepted and discarded.
    sink.wait_log("TLS connection established from", Duration::from_secs(5))
        .unwrap();
    let got = sink
        .wait_log("to=<dave@example.org>", Duration::from_secs(10))
        .unwrap();
    assert!(got.contains("status=sent"), "{got}");
    let from = sink
        .wait_log("from=<carol@client.test>", Duration::from_secs(1))
        .unwrap();
    assert!(from.contains("nrcpt=1"), "{from}");
}

#[test]
fn posttls_finger_sees_starttls() {
    if !have_postfix() {
        return;
    }
    let mut plain_opts = PostfixOptions::sink(&unique_listen_addr());
    plain_opts.hostname = Some("plain.test".into());
    let plain = Postfix::start(plain_opts).unwrap();
    let mut tls_opts = PostfixOptions::sink(&unique_listen_addr());
    tls_opts.smtpd_tls = true;
    let tls = Postfix::start(tls_opts).unwrap();

    let bracket = |l: &str| {
        let (ip, port) = l.rsplit_once(':').unwrap();
        format!("[{ip}]:{port}")
    };
    let out = posttls_finger(&["-c", "-l", "may", &bracket(&tls.listen)]);
    assert!(out.contains("TLS connection established"), "{out}");
    let out = posttls_finger(&["-c", "-l", "may", &bracket(&plain.listen)]);
    assert!(!out.contains("TLS connection established"), "{out}");
}

#[test]
fn start_failure_is_reported_with_postfix_complaint() {
    if !have_postfix() {
        return;
    }
    // 127.0.0.7 is not an interface address: Postfix refuses it, silently without a TTY.
    let err = match Postfix::start(
        PostfixOptions::sink(&unique_listen_addr()).set("inet_interfaces", "127.0.0.7"),
    ) {
        Ok(_) => panic!("postfix started with a bad inet_interfaces"),
        Err(e) => e,
    };
    assert!(
        err.contains("no local interface found for 127.0.0.7"),
        "{err}"
    );
}

/// tinymta listens on 127.0.0.1 by default: a Postfix client must not take that address
/// for itself ("loops back to myself"), which the helper avoids with inet_interfaces=[::1].
#[test]
fn client_relays_to_127_0_0_1_and_reconfigure() {
    if !have_postfix() {
        return;
    }
    let port = free_port("127.0.0.1");
    let sink = Postfix::start(PostfixOptions::sink(&format!("127.0.0.1:{port}"))).unwrap();
    let client = Postfix::start(PostfixOptions::client(&format!("[127.0.0.1]:{port}"))).unwrap();
    client
        .sendmail(
            "erin@client.test",
            "frank@example.com",
            b"Subject: lo\r\n\r\nx\r\n",
        )
        .unwrap();
    let sent = client
        .wait_log("to=<frank@example.com>", Duration::from_secs(15))
        .unwrap();
    assert!(
        sent.contains("status=sent (250 2.0.0 Ok"),
        "{sent}\n{}",
        client.log()
    );
    sink.wait_log("to=<frank@example.com>", Duration::from_secs(10))
        .unwrap();

    // reconfigure(): postconf -e + reload takes effect.
    sink.reconfigure(&[("smtpd_banner", "$myhostname ESMTP reconfigured")])
        .unwrap();
    let (code, out) = swaks(&["--server", &sink.listen, "--quit-after", "CONNECT"]);
    assert!(code == 0 && out.contains("ESMTP reconfigured"), "{out}");
    assert!(
        client.queue().contains("Mail queue is empty"),
        "{}",
        client.queue()
    );
}
