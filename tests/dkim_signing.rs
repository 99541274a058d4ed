//! DKIM signing by the daemon (`serve --dkim-key`, issue 12): the mail we originate —
//! logged-in submission, `sendmail`, `--relay-network` clients — is signed once, when
//! it is queued, with the keys of its `From:` domain (after `--sender-rewrite`); mail
//! from outside is not. The messages are captured by a receiving peer and verified by
//! dkimpy (`tests/dkimpy.py`) against the keys published in a zone unbound serves.
//!
//! The `dkimpy_` tests run on the host only (cross/test skips them by that prefix);
//! the others run under QEMU too.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::capture::{Capture, TlsMode};
use common::dkim::{dkimpy_verify, keygen, python, Key};
use common::dns::{Unbound, Zone};
use common::{
    auth_file, free_port, output_text, run_with_timeout, tinymta, tinymta_command, Client, Server,
    TempDir, DOMAIN,
};

/// A domain with one key only (RSA).
const SOLO: &str = "solo.test";

/// A message with what the signature's canonicalisation must survive on its way: a
/// folded Subject, trailing whitespace, a line with a leading dot (dot-stuffed on the
/// wire), empty lines at the end.
fn message(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: Admin <far@remote.test>\r\nSubject: {subject}\r\n folded\r\n\
         Date: Mon, 01 Dec 2025 10:00:00 +0000\r\n\r\n\
         The WAN link went down  at 09:55. \r\n.a line with a leading dot\r\n\r\n\r\n"
    )
}

/// Dot-stuffing for DATA (the test client sends the content as it is).
fn stuff(msg: &str) -> String {
    msg.replace("\r\n.", "\r\n..")
}

/// A captured message as its sender meant it: the capture keeps the dots of the wire.
fn unstuff(wire: &str) -> String {
    let text = wire.replace("\r\n..", "\r\n.");
    text.strip_prefix('.').map_or(text.clone(), str::to_string)
}

/// The `DKIM-Signature:` fields of a message's header section, as they are.
fn signatures(msg: &str) -> Vec<String> {
    let header = msg.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in header.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = fields.last_mut() {
                if !last.is_empty() {
                    last.push_str("\r\n");
                    last.push_str(line);
                }
            }
        } else if line.to_ascii_lowercase().starts_with("dkim-signature:") {
            fields.push(line.to_string());
        } else {
            fields.push(String::new());
        }
    }
    fields.retain(|f| !f.is_empty());
    fields
}

/// A tag of a signature field (`d`, `s`, `a`, `t` ...), whitespace removed.
fn tag(field: &str, name: &str) -> String {
    let value = field.split_once(':').unwrap().1;
    value
        .split(';')
        .map(|t| t.split_whitespace().collect::<String>())
        .find_map(|t| t.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name}= in {field}"))
}

/// Waits (bounded) for the captured message whose Subject starts with `subject`.
fn captured(cap: &Capture, subject: &str, server: &Server) -> String {
    let start = Instant::now();
    loop {
        let needle = format!("\r\nSubject: {subject}\r\n");
        if let Some(m) = cap.messages().iter().find(|m| m.contains(&needle)) {
            return unstuff(m);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no message {subject:?} captured; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RSA and Ed25519 keys of example.test, the RSA key of solo.test, and unbound
/// serving their records.
struct Keys {
    rsa: Key,
    ed: Key,
    solo: Key,
    dns: Unbound,
}

impl Keys {
    fn new(dir: &Path) -> Keys {
        let rsa = keygen(dir, DOMAIN, "r1", false);
        let ed = keygen(dir, DOMAIN, "e1", true);
        let solo = keygen(dir, SOLO, "s1", false);
        let dns = Unbound::start(&[
            Zone::new(DOMAIN, false)
                .record(&rsa.zone_line)
                .record(&ed.zone_line),
            Zone::new(SOLO, false).record(&solo.zone_line),
        ]);
        Keys { rsa, ed, solo, dns }
    }

    /// `--dkim-key` for each key.
    fn flags(&self) -> Vec<String> {
        [
            self.rsa.flag("r1"),
            self.ed.flag("e1"),
            self.solo.flag("s1"),
        ]
        .into_iter()
        .flat_map(|k| ["--dkim-key".to_string(), k])
        .collect()
    }
}

fn server(keys: &Keys, extra: &[&str]) -> Server {
    let mut args = keys.flags();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&refs)
}

/// One message over SMTP from a client that has already said EHLO (`send_mail` adds
/// the CRLF before the final dot).
fn send(c: &mut Client, sender: &str, rcpts: &[&str], msg: &str) {
    let body = stuff(msg.strip_suffix("\r\n").unwrap());
    let r = c.send_mail(sender, rcpts, &body);
    assert_eq!(r.code, 250, "{r:?}");
}

fn sendmail(state: &Path, args: &[&str], msg: &str) {
    let mut cmd = tinymta_command();
    cmd.arg("sendmail").arg("--state-dir").arg(state).args(args);
    let out = run_with_timeout(&mut cmd, Some(msg.as_bytes()), Duration::from_secs(30));
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Asserts that `msg` carries signatures by `expect` (`d`, `s`, `a` each, top first)
/// and that dkimpy verifies every one of them.
fn assert_verifies(keys: &Keys, what: &str, msg: &str, expect: &[(&str, &str, &str)]) {
    let sigs = signatures(msg);
    let got: Vec<(String, String, String)> = sigs
        .iter()
        .map(|f| (tag(f, "d"), tag(f, "s"), tag(f, "a")))
        .collect();
    let want: Vec<(String, String, String)> = expect
        .iter()
        .map(|(d, s, a)| (d.to_string(), s.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, want, "{what}:\n{msg}");
    for f in &sigs {
        assert_eq!(tag(f, "c"), "relaxed/relaxed", "{what}");
        assert!(tag(f, "h").starts_with("From:From:"), "{what}: {f}");
    }
    assert_eq!(
        dkimpy_verify(&keys.dns, msg.as_bytes()),
        vec![Ok(()); expect.len()],
        "{what}:\n{msg}"
    );
    // A control: the body changed on the way, and dkimpy fails every signature.
    let tampered = msg.replace("09:55", "09:56");
    let verdicts = dkimpy_verify(&keys.dns, tampered.as_bytes());
    assert!(verdicts.iter().all(|v| v.is_err()), "{what}: {verdicts:?}");
}

const DUAL: [(&str, &str, &str); 2] = [
    (DOMAIN, "r1", "rsa-sha256"),
    (DOMAIN, "e1", "ed25519-sha256"),
];

#[test]
fn dkimpy_relay_network_and_sendmail_mail_is_signed_with_the_rewritten_from() {
    python();
    let dir = TempDir::new("dkim-sign");
    let keys = Keys::new(dir.path());
    let port = free_port("127.0.0.1");
    let cap = Capture::start(&format!("127.0.0.1:{port}"), TlsMode::Plain);
    let generic = dir.path().join("generic");
    std::fs::write(&generic, "@router.lan @example.test\n").unwrap();
    // 127.0.0.1 is in the default --relay-network: the test client is one of ours.
    let s = server(
        &keys,
        &[
            "--relayhost",
            &format!("[127.0.0.1]:{port}"),
            "--sender-rewrite",
            generic.to_str().unwrap(),
        ],
    );
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);

    // Both keys of the From: domain: two signatures, RSA and Ed25519.
    let msg = message("Router Alerts <alerts@example.test>", "dual");
    send(&mut c, "alerts@example.test", &["far@remote.test"], &msg);
    let got = captured(&cap, "dual", &s);
    assert_verifies(&keys, "relay network, dual", &got, &DUAL);
    assert!(got.ends_with(&msg), "the content is as sent:\n{got}");

    // One key: one signature.
    let msg = message("noc@solo.test", "solo");
    send(&mut c, "noc@solo.test", &["far@remote.test"], &msg);
    let got = captured(&cap, "solo", &s);
    assert_verifies(&keys, "one key", &got, &[(SOLO, "s1", "rsa-sha256")]);

    // A From: domain without a key: sent unsigned, nothing logged about it.
    let msg = message("x@other.test", "no key");
    send(&mut c, "x@other.test", &["far@remote.test"], &msg);
    let got = captured(&cap, "no key", &s);
    assert!(signatures(&got).is_empty(), "{got}");

    // The sender rewritten on the way out (generic map): the From: that leaves is
    // the one signed, and its domain's keys sign it; over SMTP and from sendmail.
    let msg = message("Cron <root@router.lan>", "rewritten smtp");
    send(&mut c, "root@router.lan", &["far@remote.test"], &msg);
    let got = captured(&cap, "rewritten smtp", &s);
    assert!(
        got.contains("\r\nFrom: Cron <root@example.test>\r\n"),
        "{got}"
    );
    assert_verifies(&keys, "rewritten, SMTP", &got, &DUAL);

    sendmail(
        &s.state,
        &["-oi", "-f", "root@router.lan", "far@remote.test"],
        &message("Cron Daemon <root@router.lan>", "rewritten sendmail").replace("\r\n", "\n"),
    );
    let got = captured(&cap, "rewritten sendmail", &s);
    assert!(
        got.contains("\r\nFrom: Cron Daemon <root@example.test>\r\n"),
        "{got}"
    );
    assert!(got.contains("(tinymta, from userid"), "sendmail's: {got}");
    assert_verifies(&keys, "rewritten, sendmail", &got, &DUAL);
    // One queued line per message (sendmail's at pick-up), each saying how it was
    // signed; the envelope sender is rewritten at delivery, after the line.
    let log = s.log();
    let queued: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("(queue active)"))
        .collect();
    assert_eq!(queued.len(), 5, "{queued:?}");
    for (line, signed) in queued.iter().zip([
        Some("dkim=example.test/r1+e1"),
        Some("dkim=solo.test/s1"),
        None,
        Some("dkim=example.test/r1+e1"),
        Some("dkim=example.test/r1+e1"),
    ]) {
        match signed {
            Some(note) => assert!(
                line.ends_with(&format!(", {note} (queue active)")),
                "{line}"
            ),
            None => assert!(!line.contains("dkim="), "{line}"),
        }
    }
    assert!(queued[4].contains("from=<root@router.lan>"), "{queued:?}");
    assert!(!log.contains("not DKIM-signed"), "{log}");
}

#[test]
fn dkimpy_logged_in_mail_is_signed_and_mail_from_outside_is_not() {
    python();
    let dir = TempDir::new("dkim-auth");
    let keys = Keys::new(dir.path());
    let port = free_port("127.0.0.1");
    let cap = Capture::start(&format!("127.0.0.1:{port}"), TlsMode::Plain);
    let users = auth_file(dir.path(), &[("alice", "wonderland")]);
    // 127.0.0.1 is not a relay network here: only logging in makes a client ours.
    let s = server(
        &keys,
        &[
            "--relayhost",
            &format!("[127.0.0.1]:{port}"),
            "--auth-file",
            &users,
            "--relay-network",
            "10.9.9.0/24",
        ],
    );

    let mut c = Client::greeted(&s.submission);
    c.ehlo(true);
    let login = openssl::base64::encode_block(b"\0alice\0wonderland");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {login}")).code, 235);
    let msg = message("Alice <alice@example.test>", "submitted");
    send(&mut c, "alice@example.test", &["far@remote.test"], &msg);
    let got = captured(&cap, "submitted", &s);
    assert!(got.contains("(Authenticated sender: alice)"), "{got}");
    assert_verifies(&keys, "AUTH", &got, &DUAL);

    // The same From: from a client on the Internet, to a local user: received, not
    // signed (a forgery must not get our signature), and logged without dkim=.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let msg = message("Alice <alice@example.test>", "from outside");
    send(&mut c, "alice@example.test", &["bob@example.test"], &msg);
    let got = &s.wait_delivered("bob", 1)[0];
    assert!(got.contains("Subject: from outside"), "{got}");
    assert!(signatures(got).is_empty(), "{got}");
    let queued: Vec<String> = s
        .log()
        .lines()
        .filter(|l| l.contains("(queue active)"))
        .map(str::to_string)
        .collect();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(
        queued[0].contains(", dkim=example.test/r1+e1 "),
        "{queued:?}"
    );
    assert!(!queued[1].contains("dkim="), "{queued:?}");
}

#[test]
fn dkimpy_a_retried_message_keeps_its_signature() {
    python();
    let dir = TempDir::new("dkim-retry");
    let keys = Keys::new(dir.path());
    // Nothing listens there yet: the first attempt is deferred.
    let port = free_port("127.0.0.1");
    let s = server(&keys, &["--relayhost", &format!("[127.0.0.1]:{port}")]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let msg = message("Router <alerts@example.test>", "retried");
    send(
        &mut c,
        "alerts@example.test",
        &["far@remote.test", "bob@example.test"],
        &msg,
    );
    s.wait_log("status=deferred");
    // The local recipient has its copy already, signed at queueing.
    let local = &s.wait_delivered("bob", 1)[0];
    let first = signatures(local);
    assert_eq!(first.len(), 2, "{local}");
    assert_verifies(&keys, "local copy", local, &DUAL);

    // A second later (a new signature would have another t=), the peer is up.
    let signed_at: u64 = tag(&first[0], "t").parse().unwrap();
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= signed_at
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cap = Capture::start(&format!("127.0.0.1:{port}"), TlsMode::Plain);
    let st = s.state.to_str().unwrap().to_string();
    let out = tinymta(&["queue", "--state-dir", &st, "flush"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let got = captured(&cap, "retried", &s);
    assert_eq!(
        signatures(&got),
        first,
        "the retry carries the same signature"
    );
    assert_verifies(&keys, "retried", &got, &DUAL);
}

#[test]
fn dkim_key_errors_name_the_flag_and_the_file() {
    let dir = TempDir::new("dkim-flags");
    let d = dir.path();
    let ed = keygen(d, DOMAIN, "e1", true);
    let ed2 = keygen(d, DOMAIN, "e2", true);
    std::fs::write(
        d.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let small = openssl::rsa::Rsa::generate(512).unwrap();
    std::fs::write(d.join("small.key"), small.private_key_to_pem().unwrap()).unwrap();
    let path = |f: &str| d.join(f).display().to_string();
    let cases = [
        (
            vec!["example.test".to_string()],
            "expected DOMAIN:SELECTOR:KEYFILE".to_string(),
        ),
        (
            vec![format!("example.test:s1:{}", path("missing.key"))],
            format!("{}: No such file", path("missing.key")),
        ),
        (
            vec![format!("example.test:s1:{}", path("cert.pem"))],
            format!("{}: holds no private key", path("cert.pem")),
        ),
        (
            vec![format!("example.test:s1:{}", path("small.key"))],
            "an RSA key of 512 bits".to_string(),
        ),
        (
            vec![format!("bad_domain!:s1:{}", ed.path.display())],
            "invalid domain".to_string(),
        ),
        (
            vec![ed.flag("e1"), ed2.flag("e2")],
            "a second ed25519-sha256 key for example.test".to_string(),
        ),
    ];
    for (specs, why) in cases {
        let mut args = vec!["serve", "--smtp", "127.0.0.1:1", "--state-dir"];
        let state = path("state");
        args.push(&state);
        for s in &specs {
            args.extend(["--dkim-key", s]);
        }
        let out = tinymta(&args);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(64), "{specs:?}: {text}");
        let last = specs.last().unwrap();
        assert!(
            text.contains(&format!("tinymta: --dkim-key '{last}': ")) && text.contains(&why),
            "{specs:?}: {text}"
        );
    }
}

#[test]
fn sighup_rereads_the_keys_and_keeps_them_when_a_file_is_broken() {
    let dir = TempDir::new("dkim-hup");
    let ed = keygen(dir.path(), DOMAIN, "k1", true);
    let port = free_port("127.0.0.1");
    let cap = Capture::start(&format!("127.0.0.1:{port}"), TlsMode::Plain);
    let flag = ed.flag("k1");
    let s = Server::start(&[
        "--relayhost",
        &format!("[127.0.0.1]:{port}"),
        "--dkim-key",
        &flag,
    ]);
    let algorithm_of = |subject: &str| {
        let mut c = Client::greeted(&s.smtp);
        c.ehlo(false);
        let msg = message("Router <alerts@example.test>", subject);
        send(&mut c, "alerts@example.test", &["far@remote.test"], &msg);
        let got = captured(&cap, subject, &s);
        let sigs = signatures(&got);
        assert_eq!(sigs.len(), 1, "{got}");
        assert_eq!(tag(&sigs[0], "s"), "k1");
        tag(&sigs[0], "a")
    };
    assert_eq!(algorithm_of("before"), "ed25519-sha256");

    // A broken file: the old key stays, and says so.
    std::fs::write(&ed.path, "not a key\n").unwrap();
    s.signal("HUP");
    let line = s.wait_log("SIGHUP: keeping the old DKIM keys");
    assert!(line.contains(&format!("--dkim-key '{flag}': ")), "{line}");
    assert_eq!(algorithm_of("broken"), "ed25519-sha256");

    // A new key in the file (an RSA one, for the same selector): used after SIGHUP.
    std::fs::remove_file(&ed.path).unwrap();
    keygen(dir.path(), DOMAIN, "k1", false);
    s.signal("HUP");
    s.wait_log("SIGHUP: --dkim-key keys reloaded");
    assert_eq!(algorithm_of("replaced"), "rsa-sha256");
}
