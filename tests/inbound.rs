//! The receive side against the real binary with a Rust client: EHLO keywords per TLS
//! level, RFC 3207 rules, STARTTLS injection, SMTP smuggling, limits, relay control,
//! the TLS `Received:` header and log line, Maildir delivery.

mod common;

use common::{Client, Server, DOMAIN};

const MSG: &str = "Subject: test\r\nFrom: a@client.test\r\n\r\nhello";

#[test]
fn ehlo_keywords_per_level() {
    let may = Server::start(&[]);
    let r = Client::greeted(&may.smtp).cmd("EHLO c.test");
    for kw in [
        "PIPELINING",
        "SIZE",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "SMTPUTF8",
    ] {
        assert!(r.has_keyword(kw), "may: {kw} missing in {r:?}");
    }
    assert!(r.lines.iter().any(|l| l == "SIZE 10240000"), "{r:?}");
    // Inside TLS, STARTTLS is no longer offered.
    let mut c = Client::greeted(&may.smtp);
    let r = c.ehlo(true);
    assert!(!r.has_keyword("STARTTLS"), "{r:?}");
    assert!(r.has_keyword("PIPELINING"));

    let none = Server::start(&["--tls-level", "none"]);
    let mut c = Client::greeted(&none.smtp);
    let r = c.cmd("EHLO c.test");
    assert!(!r.has_keyword("STARTTLS"), "none: {r:?}");
    assert_eq!(c.cmd("STARTTLS").code, 502);

    let enc = Server::start(&["--tls-level", "encrypt"]);
    let r = Client::greeted(&enc.smtp).cmd("EHLO c.test");
    assert!(r.has_keyword("STARTTLS"), "encrypt: {r:?}");
    // Submission is always encrypt.
    let r = Client::greeted(&may.submission).cmd("EHLO c.test");
    assert!(r.has_keyword("STARTTLS"), "submission: {r:?}");
}

#[test]
fn encrypt_level_refuses_everything_but_noop_ehlo_quit_starttls() {
    let s = Server::start(&["--tls-level", "encrypt"]);
    let mut c = Client::greeted(&s.smtp);
    assert_eq!(c.cmd("EHLO c.test").code, 250);
    assert_eq!(c.cmd("NOOP").code, 250);
    for cmd in [
        "HELO c.test",
        "MAIL FROM:<a@client.test>",
        "RCPT TO:<u@example.test>",
        "DATA",
        "RSET",
        "VRFY u",
        "HELP",
    ] {
        let r = c.cmd(cmd);
        assert_eq!(r.code, 530, "{cmd}: {r:?}");
        assert_eq!(r.lines[0], "5.7.0 Must issue a STARTTLS command first");
    }
    // After STARTTLS the same client may send mail.
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.start_tls();
    assert_eq!(c.cmd("EHLO c.test").code, 250);
    let r = c.send_mail("a@client.test", &["user@example.test"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    s.wait_delivered("user", 1);
}

#[test]
fn session_is_reset_after_starttls() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    assert_eq!(c.cmd("EHLO c.test").code, 250);
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.start_tls();
    // RFC 3207 §4.2: the client must EHLO again.
    let r = c.cmd("MAIL FROM:<a@client.test>");
    assert_eq!(r.code, 503, "{r:?}");
    assert_eq!(c.cmd("STARTTLS").code, 554, "TLS already active");
}

#[test]
fn bytes_pipelined_after_starttls_are_discarded() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    assert_eq!(c.cmd("EHLO c.test").code, 250);
    // CVE-2011-0411: a plaintext command injected behind STARTTLS must not run in TLS.
    c.raw(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
    let r = c.reply();
    assert_eq!(r.code, 220);
    c.start_tls();
    assert_eq!(c.cmd("EHLO c.test").code, 250);
    // Had the injected MAIL run, this would be a nested MAIL (503).
    let r = c.cmd("MAIL FROM:<a@client.test>");
    assert_eq!(r.code, 250, "injected command was executed: {r:?}");
    s.wait_log("discarding");
    assert!(s.log().contains("bytes pipelined after STARTTLS"));
}

#[test]
fn smuggling_variants_never_end_data() {
    let s = Server::start(&[]);
    for (i, sep) in ["\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r"]
        .iter()
        .enumerate()
    {
        let mut c = Client::greeted(&s.smtp);
        c.ehlo(false);
        assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
        assert_eq!(
            c.cmd(&format!("RCPT TO:<smuggle{i}@example.test>")).code,
            250
        );
        assert_eq!(c.cmd("DATA").code, 354);
        // A smuggled second transaction behind a fake end-of-data.
        c.raw(format!("Subject: one\r\n\r\nfirst{sep}MAIL FROM:<x@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n").as_bytes());
        let r = c.reply();
        assert_eq!(r.code, 250, "{sep:?}: {r:?}");
        // Exactly one reply: the next thing we read answers our NOOP.
        assert_eq!(
            c.cmd("NOOP").code,
            250,
            "{sep:?}: extra replies on the wire"
        );
        let msgs = s.wait_delivered(&format!("smuggle{i}"), 1);
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].contains("MAIL FROM:<x@evil.test>"),
            "{sep:?}: smuggled text must stay content"
        );
    }
    assert!(
        s.delivered("victim").is_empty(),
        "a smuggled message was delivered"
    );
}

#[test]
fn dot_stuffing_and_pipelining() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    c.raw(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<pipe@example.test>\r\nRCPT TO:<pipe2@example.test>\r\nDATA\r\n");
    for expect in [250, 250, 250, 354] {
        assert_eq!(c.reply().code, expect);
    }
    c.raw(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 221);
    let m = s.wait_delivered("pipe", 1);
    assert!(m[0].contains("\r\n.leading dot\r\n"), "{:?}", m[0]);
    s.wait_delivered("pipe2", 1);
}

#[test]
fn long_lines_and_nul_get_500_and_session_continues() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let long = format!("NOOP {}", "x".repeat(600));
    let r = c.cmd(&long);
    assert_eq!(r.code, 500, "{r:?}");
    assert!(r.lines[0].starts_with("5.5.2"));
    c.raw(b"NOOP\0\r\n");
    assert_eq!(c.reply().code, 500);
    assert_eq!(c.cmd("NOOP").code, 250, "session must continue");

    // In DATA: a 1001-octet line and a NUL each reject the message with 500.
    for body in [
        format!("Subject: long\r\n\r\n{}", "y".repeat(1001)),
        "Subject: nul\r\n\r\na\0b".to_string(),
    ] {
        assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
        assert_eq!(c.cmd("RCPT TO:<long@example.test>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.raw(body.as_bytes());
        c.raw(b"\r\n.\r\n");
        let r = c.reply();
        assert_eq!(r.code, 500, "{r:?}");
        assert_eq!(c.cmd("NOOP").code, 250);
    }
    // A line of exactly 998 octets + CRLF is fine.
    let r = c.send_mail(
        "a@client.test",
        &["long@example.test"],
        &format!("Subject: ok\r\n\r\n{}", "z".repeat(998)),
    );
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(s.wait_delivered("long", 1).len(), 1);
}

#[test]
fn size_limit() {
    let s = Server::start(&["--max-message-size", "2000"]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let r = c.cmd("MAIL FROM:<a@client.test> SIZE=5000");
    assert_eq!(r.code, 552, "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@client.test> SIZE=100").code, 250);
    assert_eq!(c.cmd("RCPT TO:<big@example.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    for _ in 0..50 {
        c.raw(format!("{}\r\n", "b".repeat(100)).as_bytes());
    }
    c.raw(b".\r\n");
    let r = c.reply();
    assert_eq!(r.code, 552, "{r:?}");
    assert!(r.lines[0].starts_with("5.3.4"));
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(s.queued(), 0);
    assert!(s.delivered("big").is_empty());
}

#[test]
fn relay_control() {
    // 127.0.0.1 is not a relay network here: foreign domains are refused.
    let s = Server::start(&["--relay-network", "192.0.2.0/24"]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
    let r = c.cmd("RCPT TO:<someone@foreign.test>");
    assert_eq!(r.code, 554, "{r:?}");
    assert!(
        r.lines[0].starts_with("5.7.1") && r.lines[0].contains("Relay access denied"),
        "{r:?}"
    );
    // Local domains (any case) and postmaster are accepted.
    assert_eq!(c.cmd("RCPT TO:<User@EXAMPLE.TEST>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<Postmaster>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(b"Subject: x\r\n\r\nx\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    s.wait_delivered("user", 1);
    s.wait_delivered("postmaster", 1);
    s.wait_log("Relay access denied");

    // From a relay network (default 127.0.0.0/8) a foreign domain is accepted.
    let open = Server::start(&[]);
    let mut c = Client::greeted(&open.smtp);
    c.ehlo(false);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<someone@foreign.test>").code, 250);
}

#[test]
fn address_syntax_and_sequence_errors() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test>").code,
        503,
        "MAIL before EHLO"
    );
    c.ehlo(false);
    assert_eq!(
        c.cmd("RCPT TO:<u@example.test>").code,
        503,
        "RCPT before MAIL"
    );
    assert_eq!(c.cmd("DATA").code, 503);
    assert_eq!(c.cmd("MAIL FROM:<a@@client.test>").code, 501);
    assert_eq!(c.cmd("MAIL FROM:<jörg@client.test>").code, 553);
    assert_eq!(c.cmd("MAIL FROM:<jörg@client.test> SMTPUTF8").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bad..dots@example.test>").code, 501);
    assert_eq!(c.cmd("RCPT TO:<ü@example.test>").code, 250);
    assert_eq!(c.cmd("VRFY u").code, 252);
    assert_eq!(c.cmd("BOGUS").code, 502);
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(c.cmd("DATA").code, 503, "RSET ends the transaction");
}

#[test]
fn tls_received_header_and_log_line() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(true);
    let r = c.send_mail("a@client.test", &["tls@example.test"], MSG);
    assert_eq!(r.code, 250);
    let id = r.lines[0].rsplit(' ').next().unwrap().to_string();
    let m = &s.wait_delivered("tls", 1)[0];
    let received: String = m
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Received:"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        received.starts_with("Received: from client.test (unknown [127.0.0.1])"),
        "{received}"
    );
    assert!(
        received.contains("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"),
        "{received}"
    );
    assert!(
        received.contains(&format!("by mx.example.test (tinymta) with ESMTPS id {id}")),
        "{received}"
    );
    assert!(received.contains("for <tls@example.test>; "), "{received}");
    let line = s.wait_log("TLS connection established from");
    assert!(
        line.ends_with("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
        "{line}"
    );
    s.wait_log(&format!("{id}: to=<tls@example.test>, relay=local, delay="));
    assert!(s.log().contains("status=sent (delivered to maildir"));

    // Plaintext: ESMTP keyword, no "using" clause.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    assert_eq!(
        c.send_mail("a@client.test", &["plain@example.test"], MSG)
            .code,
        250
    );
    let m = &s.wait_delivered("plain", 1)[0];
    assert!(m.contains("with ESMTP id") && !m.contains("(using"), "{m}");
}

#[test]
fn implicit_tls_and_submission_require_auth() {
    let s = Server::start(&[]);
    let mut c = Client::greeted_tls(&s.smtps);
    let r = c.cmd("EHLO c.test");
    assert!(!r.has_keyword("STARTTLS"));
    let r = c.cmd("MAIL FROM:<a@client.test>");
    assert_eq!(r.code, 530, "smtps requires AUTH: {r:?}");
    s.wait_log("TLS connection established from");

    let mut c = Client::greeted(&s.submission);
    c.cmd("EHLO c.test");
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test>").code,
        530,
        "submission requires STARTTLS"
    );
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.start_tls();
    c.cmd("EHLO c.test");
    let r = c.cmd("MAIL FROM:<a@client.test>");
    assert_eq!(r.code, 530, "submission requires AUTH: {r:?}");
    assert!(r.lines[0].contains("Authentication required"));
}

#[test]
fn too_many_errors_disconnects() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    let mut last = 0;
    for _ in 0..20 {
        last = c.cmd("BOGUS").code;
    }
    assert_eq!(last, 502);
    assert_eq!(c.reply().code, 421);
    assert!(c.is_closed());
}

#[test]
fn session_limit_per_ip_gives_421() {
    let s = Server::start(&["--max-sessions-per-ip", "2"]);
    let mut a = Client::greeted(&s.smtp);
    let mut b = Client::greeted(&s.smtp);
    let mut extra = Client::connect(&s.smtp);
    let r = extra.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.lines[0].starts_with("4.3.2"));
    // The admitted sessions keep working.
    assert_eq!(a.cmd("NOOP").code, 250);
    assert_eq!(b.cmd("NOOP").code, 250);
    drop(a);
    // A slot frees up when a session ends.
    let start = std::time::Instant::now();
    loop {
        let mut c = Client::connect(&s.smtp);
        if c.reply().code == 220 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_certificate_and_sigterm_stops_cleanly() {
    let mut s = Server::start(&[]);
    // The ECDSA one of the two demonstration certificates: what a TLS 1.3 client gets.
    let cert = s.state.join("tls/demo-ec-cert.pem");
    let before = std::fs::read(&cert).unwrap();
    s.wait_log("demonstration certificate");
    // Replace the demonstration certificate, then SIGHUP: new handshakes use it.
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(s.state.join("tls/demo-ec-key.pem")).unwrap();
    s.signal("HUP");
    s.wait_log("SIGHUP: certificate and key reloaded");
    let after = std::fs::read(&cert).unwrap();
    assert_ne!(before, after);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(true);
    assert_eq!(
        c.peer_cert_pem(),
        after,
        "new sessions must get the reloaded certificate"
    );
    drop(c);
    assert_eq!(s.stop(), Some(0));
    assert!(s.log().contains("stopped"));
    assert_eq!(DOMAIN, "example.test");
}
