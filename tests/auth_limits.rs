//! Submission with SMTP AUTH only after TLS (swaks as the client, credentials made by
//! `tinymta passwd`), and the limits that keep a small box up: failed-AUTH counter,
//! per-IP sessions, slowloris, 1000 idle sessions.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{run_with_timeout, swaks, tinymta_command, Client, Server, TempDir};

/// An --auth-file with alice/wonderland and bob/builder, made by `tinymta passwd`.
fn auth_file(dir: &TempDir) -> String {
    common::auth_file(dir.path(), &[("alice", "wonderland"), ("bob", "builder")])
}

fn b64(s: &[u8]) -> String {
    openssl::base64::encode_block(s)
}

#[test]
fn auth_is_offered_and_accepted_only_inside_tls() {
    let dir = TempDir::new("auth");
    let users = auth_file(&dir);
    let s = Server::start(&["--auth-file", &users]);
    // swaks: AUTH not advertised before TLS (exit 28).
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--to",
        "u@example.test",
        "-a",
        "PLAIN",
        "-au",
        "alice",
        "-ap",
        "wonderland",
    ]);
    assert_eq!(code, 28, "{out}");
    // A client that tries anyway gets 538; inside TLS AUTH is advertised.
    let mut c = Client::greeted(&s.smtp);
    let r = c.cmd("EHLO c.test");
    assert!(!r.lines.iter().any(|l| l.starts_with("AUTH")), "{r:?}");
    let r = c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0wonderland")));
    assert_eq!(r.code, 538, "{r:?}");
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.start_tls();
    let r = c.cmd("EHLO c.test");
    assert!(r.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{r:?}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0wonderland")))
            .code,
        235
    );
    assert_eq!(c.cmd("AUTH LOGIN").code, 503, "already authenticated");

    // Without --auth-file there is no AUTH at all.
    let plain = Server::start(&[]);
    let mut c = Client::greeted(&plain.smtp);
    let r = c.ehlo(true);
    assert!(!r.lines.iter().any(|l| l.starts_with("AUTH")), "{r:?}");
    assert_eq!(c.cmd("AUTH PLAIN AGFsaWNlAHg=").code, 503);
}

#[test]
fn plain_and_login_with_swaks() {
    let dir = TempDir::new("auth");
    let users = auth_file(&dir);
    let s = Server::start(&["--auth-file", &users]);
    for mech in ["PLAIN", "LOGIN"] {
        let (code, out) = swaks(&[
            "--server",
            &s.submission,
            "--tls",
            "--from",
            "alice@example.test",
            "--to",
            "friend@example.test",
            "-a",
            mech,
            "-au",
            "alice",
            "-ap",
            "wonderland",
        ]);
        assert_eq!(code, 0, "{mech}: {out}");
        assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
        let (code, out) = swaks(&[
            "--server",
            &s.submission,
            "--tls",
            "--from",
            "alice@example.test",
            "--to",
            "friend@example.test",
            "-a",
            mech,
            "-au",
            "alice",
            "-ap",
            "wrong",
        ]);
        assert_ne!(code, 0);
        assert!(out.contains("535 5.7.8"), "{mech}: {out}");
    }
    // Implicit TLS works too.
    let (code, out) = swaks(&[
        "--server",
        &s.smtps,
        "--tls-on-connect",
        "--from",
        "bob@example.test",
        "--to",
        "friend@example.test",
        "-a",
        "LOGIN",
        "-au",
        "bob",
        "-ap",
        "builder",
    ]);
    assert_eq!(code, 0, "{out}");
    s.wait_delivered("friend", 3);
    let line = s.wait_log("SASL PLAIN authentication failed");
    assert!(
        line.contains("unknown[127.0.0.1]: SASL PLAIN authentication failed"),
        "fail2ban needs the address: {line}"
    );
    assert!(s.log().contains("sasl_method=LOGIN, sasl_username=bob"));
    assert!(
        !s.log().contains("wonderland") && !s.log().contains("builder"),
        "passwords must never be logged"
    );
}

#[test]
fn submission_and_smtps_require_auth_and_authenticated_users_may_relay() {
    let dir = TempDir::new("auth");
    let users = auth_file(&dir);
    let receiver = Server::start(&["--domain", "elsewhere.test"]);
    let relay = format!("[{}", receiver.smtp.replace(':', "]:"));
    // 127.0.0.1 is not a relay network here: only authentication grants relay.
    let s = Server::start(&[
        "--auth-file",
        &users,
        "--relay-network",
        "10.9.9.0/24",
        "--relayhost",
        &relay,
    ]);
    let mut c = Client::greeted(&s.submission);
    c.ehlo(true);
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(r.code, 530, "unauthenticated MAIL on 587: {r:?}");
    let mut c = Client::greeted_tls(&s.smtps);
    c.cmd("EHLO c.test");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.test>").code,
        530,
        "unauthenticated MAIL on 465"
    );
    // Port 25, unauthenticated: relay refused.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(c.cmd("RCPT TO:<far@elsewhere.test>").code, 554);

    // Authenticated on 587, a message without Date/Message-ID to a foreign domain.
    let mut c = Client::greeted(&s.submission);
    c.ehlo(true);
    assert_eq!(c.cmd("AUTH LOGIN").code, 334);
    assert_eq!(c.cmd(&b64(b"alice")).code, 334);
    assert_eq!(c.cmd(&b64(b"wonderland")).code, 235);
    let r = c.send_mail(
        "alice@example.test",
        &["far@elsewhere.test"],
        "Subject: from the router\r\n\r\nhello",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = &receiver.wait_delivered_in("elsewhere.test", "far", 1)[0];
    assert!(m.contains("with ESMTPSA id"), "{m}");
    assert!(m.contains("(Authenticated sender: alice)"), "{m}");
    assert!(
        m.contains("\r\nDate: ") && m.contains("\r\nMessage-ID: <"),
        "submission adds Date and Message-ID: {m}"
    );
    assert!(!m.contains("wonderland"));
    // A message that has them keeps its own.
    let r = c.send_mail(
        "alice@example.test",
        &["far2@elsewhere.test"],
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mine@router.test>\r\nSubject: x\r\n\r\nhello",
    );
    assert_eq!(r.code, 250);
    let m = &receiver.wait_delivered_in("elsewhere.test", "far2", 1)[0];
    assert_eq!(m.matches("Message-ID:").count(), 1, "{m}");
    assert!(m.contains("Message-ID: <mine@router.test>"));
}

#[test]
fn failed_auth_is_delayed_counted_and_disconnects() {
    let dir = TempDir::new("auth");
    let users = auth_file(&dir);
    let s = Server::start(&["--auth-file", &users]);
    let mut c = Client::greeted(&s.submission);
    c.ehlo(true);
    let start = Instant::now();
    for _ in 0..3 {
        let r = c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0guess")));
        assert_eq!(r.code, 535, "{r:?}");
    }
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "each failure is answered after a delay"
    );
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.is_closed());
    // Cancel and malformed responses.
    let mut c = Client::greeted(&s.submission);
    c.ehlo(true);
    assert_eq!(c.cmd("AUTH PLAIN").code, 334);
    assert_eq!(c.cmd("*").code, 501);
    assert_eq!(c.cmd("AUTH PLAIN !!!notbase64").code, 501);
    assert_eq!(c.cmd("AUTH CRAM-MD5").code, 504);
}

#[test]
fn passwd_rejects_bad_user_names() {
    let out = run_with_timeout(
        tinymta_command().args(["passwd", "a:b"]),
        Some(b"pw\n"),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
    let out = run_with_timeout(
        tinymta_command().args(["passwd", "alice"]),
        Some(b"\n"),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(65), "empty password");
    // A broken --auth-file stops start-up with file and line.
    let dir = TempDir::new("auth");
    let bad = dir.path().join("users");
    std::fs::write(&bad, "# users\nalice:plaintext\n").unwrap();
    let out = run_with_timeout(
        tinymta_command()
            .args(["serve", "--smtp", "127.0.0.1:1", "--state-dir"])
            .arg(dir.path().join("s"))
            .arg("--auth-file")
            .arg(&bad),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
}

#[test]
fn slowloris_is_dropped_at_the_command_timeout() {
    let s = Server::start(&["--command-timeout", "2"]);
    let mut stream = TcpStream::connect(&s.smtp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220"));
    // One byte every 300 ms: each read arrives well within 2 s, the line never ends.
    let start = Instant::now();
    let mut got = Vec::new();
    for b in b"EHLO a-very-slow-client.example.test and more bytes"
        .iter()
        .cycle()
    {
        if stream.write_all(&[*b]).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&got).contains("421")
            || start.elapsed() > Duration::from_secs(20)
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("421 4.4.2"),
        "slowloris must be dropped at the timeout, got {text:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    s.wait_log("timeout after command from unknown[127.0.0.1]");
}

#[test]
fn a_thousand_idle_sessions_are_held() {
    // The test process needs the descriptors too.
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).unwrap();
    let s = Server::start(&["--max-sessions-per-ip", "1100", "--max-sessions", "1100"]);
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .unwrap()
    };
    let idle_rss = rss(s.pid());
    let mut conns = Vec::new();
    for _ in 0..1000 {
        let t = TcpStream::connect(&s.smtp).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conns.push(t);
    }
    for t in conns.iter_mut() {
        let mut buf = [0u8; 64];
        let n = t.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"220 "),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    let held_rss = rss(s.pid());
    eprintln!("tinymta VmRSS: idle {idle_rss} kB, with 1000 idle sessions {held_rss} kB");
    // The server still answers while holding them.
    let mut c = Client::greeted(&s.smtp);
    assert_eq!(c.cmd("NOOP").code, 250);
    drop(conns);
}
