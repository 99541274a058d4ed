//! The router's own mail through an authenticated smarthost, end to end: tinymta (the
//! real binary) relays to a private Postfix with Cyrus SASL (sasldb) on a STARTTLS
//! submission port and on a wrappermode (port 465 style) port, its certificate from a
//! test CA so delivery is `Verified` under a `verify` policy; Postfix relays what it
//! accepts to a capture server, so the test sees the message as it left. Scripted
//! capture servers stand in where Postfix cannot: a plaintext server offering AUTH (it
//! must never see the password), XOAUTH2 byte for byte, a 454.
//!
//! Peer-heavy: every test that needs a peer is named `smarthost_*` (cross/test skips
//! them under QEMU).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::capture::{Capture, TlsMode};
use common::certs::{self, CertPair};
use common::postfix::{is_listening, unique_listen_addr, unique_loopback, Postfix, PostfixOptions};
use common::{
    free_ports, output_text, run_with_timeout, tinymta, tinymta_command, wait_for, Server, TempDir,
    DOMAIN,
};

/// How long the waits for listeners and relayed mail may take.
const WAIT: Duration = Duration::from_secs(30);
use openssl::base64;

/// The SASL realm of the smarthost's users: logins are `user@smarthost.test`.
const REALM: &str = "smarthost.test";
/// The name on the smarthost's certificate (the policy's `match=`).
const CERT_NAME: &str = "smtp.smarthost.test";

/// `ip:port` as a bracketed next hop, `[ip]:port`.
fn bracketed(addr: &str) -> String {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    format!("[{ip}]:{port}")
}

/// A scratch directory for the files a test gives tinymta.
struct Files(TempDir);

impl Files {
    fn new() -> Files {
        Files(TempDir::new("smarthost"))
    }

    /// Writes `name` with `mode`; returns its path.
    fn write(&self, name: &str, text: &str, mode: u32) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }
}

/// A private Postfix as an authenticated smarthost, relaying what it accepts to a
/// capture server.
struct Smarthost {
    pf: Postfix,
    /// Where Postfix relays (what "the Internet" received).
    onward: Capture,
    /// STARTTLS required, AUTH after it (a port 587 submission service).
    submission: String,
    /// TLS from the first byte, AUTH (a port 465 service).
    smtps: String,
    ca: CertPair,
    files: Files,
}

impl Smarthost {
    /// Starts Postfix with the SASL `users` (`(user, password)` in `REALM`).
    fn start(users: &[(&str, &str)]) -> Smarthost {
        let files = Files::new();
        let ca = certs::ca(files.0.path(), "ca");
        let cert = certs::signed_by(files.0.path(), &ca, "smtp", CERT_NAME);
        let ip = unique_loopback();
        let ports = free_ports(&ip, 2);
        let (submission, smtps) = (format!("{ip}:{}", ports[0]), format!("{ip}:{}", ports[1]));
        let onward = Capture::start(&unique_listen_addr(), TlsMode::Plain);
        // Relaying only for logged-in clients, and never a password before TLS: a
        // smarthost as providers run them (mynetworks would let loopback relay).
        let auth = [
            ("smtpd_sasl_auth_enable", "yes"),
            ("smtpd_tls_auth_only", "yes"),
            (
                "smtpd_relay_restrictions",
                "permit_sasl_authenticated,reject",
            ),
        ];
        let mut smtpd_overrides: Vec<(String, String)> = auth
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        smtpd_overrides.push(("smtpd_tls_security_level".into(), "encrypt".into()));
        let mut wrapper = format!(
            "{smtps} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt"
        );
        for (k, v) in auth {
            wrapper.push_str(&format!("\n  -o {k}={v}"));
        }
        let pf = Postfix::start(PostfixOptions {
            listen: Some(submission.clone()),
            relayhost: Some(bracketed(&onward.addr)),
            smtpd_cert: Some(cert),
            sasl_users: users
                .iter()
                .map(|(u, p)| (format!("{u}@{REALM}"), p.to_string()))
                .collect(),
            smtpd_overrides,
            master_cf: vec![wrapper],
            ..PostfixOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        wait_for("the wrappermode listener", WAIT, || {
            is_listening(&smtps).then_some(())
        });
        Smarthost {
            pf,
            onward,
            submission,
            smtps,
            ca,
            files,
        }
    }

    /// A TLS policy table requiring a CA-verified certificate for `CERT_NAME` on both
    /// ports (the next hops are IP addresses, so the name is given with `match=`).
    fn policy(&self) -> String {
        let text = format!(
            "{}  verify match={CERT_NAME}\n{}  verify match={CERT_NAME}\n",
            bracketed(&self.submission),
            bracketed(&self.smtps)
        );
        self.files.write("tls_policy", &text, 0o644)
    }

    /// The credentials file with `lines`, mode 0600.
    fn credentials(&self, lines: &str) -> String {
        self.files.write("credentials", lines, 0o600)
    }

    /// The router: tinymta trusting the test CA under the verify policy, with `extra`.
    fn router(&self, extra: &[&str]) -> Server {
        let (policy, ca) = (self.policy(), self.ca.cert.display().to_string());
        let mut args = vec![
            "--tls-policy",
            policy.as_str(),
            "--tls-ca-file",
            ca.as_str(),
        ];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    /// The router sending everything through `relayhost`, logging in with `creds`.
    fn router_via(&self, relayhost: &str, creds: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--relayhost", relayhost, "--relay-credentials", creds];
        args.extend_from_slice(extra);
        self.router(&args)
    }

    /// The messages the smarthost relayed onward, once there are `n`.
    fn relayed(&self, n: usize) -> Vec<String> {
        wait_for("mail relayed by the smarthost", WAIT, || {
            let m = self.onward.messages();
            (m.len() >= n).then_some(m)
        })
    }
}

/// The delivery log line of `id` for `rcpt` that contains `status`.
fn outcome(router: &Server, id: &str, rcpt: &str, status: &str) -> String {
    router.wait_log(&format!("{id}: to=<{rcpt}>"));
    wait_for(&format!("{id} to {rcpt}: {status}"), WAIT, || {
        router
            .log()
            .lines()
            .find(|l| l.contains(&format!("{id}: to=<{rcpt}>")) && l.contains(status))
            .map(str::to_string)
    })
}

const MESSAGE: &str = "From: sender@example.test\r\nSubject: via the smarthost\r\n\r\nhello\r\n";

#[test]
fn smarthost_submission_port_verified_starttls_and_login() {
    let sh = Smarthost::start(&[("alice", "alice: s3cret")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!("{hop}  alice@{REALM}:alice: s3cret\n"));
    let router = sh.router_via(&hop, &creds, &[]);
    let id = router.submit("sender@example.test", &["someone@far.test"], MESSAGE);
    let line = outcome(&router, &id, "someone@far.test", "status=sent");
    let (ip, port) = sh.submission.rsplit_once(':').unwrap();
    assert!(line.contains(&format!("relay={ip}[{ip}]:{port}")), "{line}");
    let log = router.log();
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to {ip}[{ip}]:{port}: TLSv1.3"
        )) && log.contains("via STARTTLS"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{id}: authenticated to {ip}[{ip}]:{port} as alice@{REALM} ({creds}:1) with PLAIN"
        )),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "the password is never logged");
    sh.pf
        .wait_log(
            &format!("sasl_username=alice@{REALM}"),
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(sh.relayed(1)[0].contains("Subject: via the smarthost"));
}

#[test]
fn smarthost_smtps_port_implicit_tls_and_login() {
    let sh = Smarthost::start(&[("bob", "bob-secret")]);
    let hop = bracketed(&sh.smtps);
    let creds = sh.credentials(&format!("{hop}  bob@{REALM}:bob-secret\n"));
    let relay = format!("smtps:{hop}");
    let router = sh.router_via(&relay, &creds, &[]);
    let id = router.submit("sender@example.test", &["someone@far.test"], MESSAGE);
    outcome(&router, &id, "someone@far.test", "status=sent");
    let (ip, port) = sh.smtps.rsplit_once(':').unwrap();
    let tls = router.wait_log("TLS connection established to");
    assert!(
        tls.contains(&format!(
            "Verified TLS connection established to {ip}[{ip}]:{port}"
        )) && tls.ends_with("implicit TLS"),
        "{tls}"
    );
    assert!(router.log().contains(&format!("as bob@{REALM}")));
    sh.pf
        .wait_log(
            &format!("sasl_username=bob@{REALM}"),
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(sh.relayed(1)[0].contains("Subject: via the smarthost"));

    // check-tls speaks implicit TLS to it too, under the same policy.
    let (policy, ca) = (sh.policy(), sh.ca.cert.display().to_string());
    let out = tinymta(&[
        "check-tls",
        &relay,
        "--tls-policy",
        &policy,
        "--tls-ca-file",
        &ca,
        "--resolver",
        "127.0.0.1:9",
    ]);
    let text = output_text(&out);
    assert!(
        text.contains(&format!("destination: smtps:{hop}"))
            && text.contains("Verified TLS connection established")
            && text.contains("implicit TLS")
            && text.contains("result: deliver over TLS (Verified)"),
        "{text}"
    );
}

#[test]
fn smarthost_wrong_password_defers_with_the_servers_words_then_bounces() {
    let sh = Smarthost::start(&[("carol", "right")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!("{hop}  carol@{REALM}:wrong\n"));
    let router = sh.router_via(
        &hop,
        &creds,
        &[
            "--queue-lifetime",
            "4",
            "--retry-min",
            "1",
            "--retry-max",
            "1",
        ],
    );
    let id = router.submit("sender@example.test", &["someone@far.test"], MESSAGE);
    let deferred = outcome(&router, &id, "someone@far.test", "status=deferred");
    assert!(
        deferred.contains("dsn=4.7.8")
            && deferred.contains(&format!("SASL authentication failed as carol@{REALM}"))
            && deferred.contains("said: 535 5.7.8 Error: authentication failed"),
        "{deferred}"
    );
    let bounced = outcome(&router, &id, "someone@far.test", "status=bounced");
    assert!(
        bounced.contains("message expired") && bounced.contains("SASL authentication failed"),
        "{bounced}"
    );
    let dsn = &router.wait_delivered("sender", 1)[0];
    assert!(
        dsn.contains("SASL authentication failed")
            && dsn.contains("Diagnostic-Code: smtp; 535 5.7.8 Error: authentication failed")
            && dsn.contains("(in reply to AUTH command)"),
        "{dsn}"
    );
    // One login per attempt on the retry schedule (about 1 s apart for 4 s), no storm.
    let failures = sh.pf.log_lines("SASL PLAIN authentication failed").len();
    assert!((2..=8).contains(&failures), "{failures} failed logins");
    assert!(sh.onward.messages().is_empty());
}

#[test]
fn smarthost_without_tls_never_sees_the_password() {
    let files = Files::new();
    // A server that offers AUTH in plaintext and would accept anything.
    let plain = Capture::with_auth(
        &unique_listen_addr(),
        TlsMode::Plain,
        "PLAIN LOGIN",
        &["235 2.7.0 Authentication successful"],
    );
    // The same server reached as smtps: it speaks plaintext, so the handshake fails.
    let implicit = Capture::with_auth(
        &unique_listen_addr(),
        TlsMode::Plain,
        "PLAIN LOGIN",
        &["235 2.7.0 Authentication successful"],
    );
    let (plain_hop, implicit_hop) = (bracketed(&plain.addr), bracketed(&implicit.addr));
    let secret = "never-on-the-wire";
    let creds = files.write(
        "credentials",
        &format!("{plain_hop}  router@example.com:{secret}\n{implicit_hop}  router@example.com:{secret}\n"),
        0o600,
    );
    let transport = files.write(
        "transport",
        &format!("plain.test  {plain_hop}\nimplicit.test  smtps:{implicit_hop}\n"),
        0o644,
    );
    let router = Server::start(&["--transport", &transport, "--relay-credentials", &creds]);
    let id = router.submit(
        "sender@example.test",
        &["a@plain.test", "b@implicit.test"],
        MESSAGE,
    );
    let refused = outcome(&router, &id, "a@plain.test", "status=deferred");
    assert!(
        refused.contains("refusing to send credentials of router@example.com")
            && refused.contains("over an unencrypted connection")
            && refused.contains("TLS policy level may (default)")
            && refused.contains("dsn=4.7.0"),
        "{refused}"
    );
    let no_tls = outcome(&router, &id, "b@implicit.test", "status=deferred");
    assert!(
        no_tls.contains("dsn=4.7.5") && no_tls.contains("TLS with"),
        "{no_tls}"
    );

    let b64 = |s: &str| base64::encode_block(s.as_bytes());
    let forbidden = [
        secret.to_string(),
        b64(&format!("\0router@example.com\0{secret}")),
        b64(secret),
    ];
    for (name, server) in [("plaintext", &plain), ("implicit", &implicit)] {
        let seen = server.commands();
        for line in &seen {
            assert!(
                !line.to_ascii_uppercase().starts_with("AUTH"),
                "{name}: {seen:?}"
            );
            assert!(!line.starts_with("MAIL"), "{name}: {seen:?}");
            for f in &forbidden {
                assert!(
                    !line.contains(f.as_str()),
                    "{name} saw the secret: {seen:?}"
                );
            }
        }
        assert!(server.messages().is_empty(), "{name}");
    }
    // At level may the login could never be sent, so there is not even a connection.
    assert!(plain.commands().is_empty(), "{:?}", plain.commands());
    // smtps: never falls back to plaintext SMTP.
    assert!(!implicit.commands().iter().any(|l| l.starts_with("EHLO")));
}

#[test]
fn smarthost_per_sender_credentials_pick_the_account() {
    let sh = Smarthost::start(&[("alerts", "pw-alerts"), ("shared", "pw-shared")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!(
        "alerts@example.test  alerts@{REALM}:pw-alerts\n{hop}  shared@{REALM}:pw-shared\n"
    ));
    let relays = sh
        .files
        .write("sender_relay", &format!("@example.test  {hop}\n"), 0o644);
    let router = sh.router(&["--sender-relay", &relays, "--relay-credentials", &creds]);
    let to = ["someone@far.test"];
    let first = router.submit("alerts@example.test", &to, MESSAGE);
    outcome(&router, &first, to[0], "status=sent");
    // Right after: the session logged in as alerts is parked, but not for this sender.
    let second = router.submit("nas@example.test", &to, MESSAGE);
    outcome(&router, &second, to[0], "status=sent");
    let third = router.submit("alerts@example.test", &to, MESSAGE);
    outcome(&router, &third, to[0], "status=sent");
    sh.relayed(3);
    let log = router.log();
    assert!(log.contains(&format!("{first}: authenticated to")), "{log}");
    assert!(
        log.contains(&format!("{second}: authenticated to")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{third}: reusing connection")),
        "the alerts session carries the next alerts message: {log}"
    );
    assert_eq!(
        sh.pf.sasl_usernames(),
        [
            format!("alerts@{REALM}"),
            format!("shared@{REALM}"),
            format!("alerts@{REALM}")
        ]
    );
}

#[test]
fn smarthost_xoauth2_token_file_byte_for_byte_and_454_defers() {
    let files = Files::new();
    let cert = certs::self_signed(files.0.path(), "capture", "capture.test");
    let accepting = Capture::with_auth(
        &unique_listen_addr(),
        TlsMode::StartTls(cert.clone()),
        "PLAIN LOGIN XOAUTH2",
        &["235 2.7.0 Accepted"],
    );
    let busy = Capture::with_auth(
        &unique_listen_addr(),
        TlsMode::StartTls(cert),
        "PLAIN LOGIN",
        &["454 4.7.0 Temporary authentication failure"],
    );
    let token = "ya29.a0AfH6SMBx-test_token~for/tinymta+1=";
    let token_file = files.write("gmail.token", &format!("{token}\n"), 0o600);
    let (ok_hop, busy_hop) = (bracketed(&accepting.addr), bracketed(&busy.addr));
    let creds = files.write(
        "credentials",
        &format!(
            "{ok_hop}  router@gmail.example:oauth2:file:{token_file}\n{busy_hop}  router@example.net:password\n"
        ),
        0o600,
    );
    let transport = files.write(
        "transport",
        &format!("gmail.example  {ok_hop}\nbusy.example  {busy_hop}\n"),
        0o644,
    );
    let router = Server::start(&[
        "--transport",
        &transport,
        "--relay-credentials",
        &creds,
        "--tls-default-level",
        "encrypt",
    ]);
    let id = router.submit(
        "sender@example.test",
        &["me@gmail.example", "x@busy.example"],
        MESSAGE,
    );
    outcome(&router, &id, "me@gmail.example", "status=sent");
    let seen = accepting.commands();
    let starttls = seen.iter().position(|l| l == "STARTTLS").expect("STARTTLS");
    let auth = seen
        .iter()
        .position(|l| l.starts_with("AUTH"))
        .expect("AUTH");
    // Google's XOAUTH2 initial response: base64("user=" U ^A "auth=Bearer " T ^A ^A).
    let expected = base64::encode_block(
        format!("user=router@gmail.example\x01auth=Bearer {token}\x01\x01").as_bytes(),
    );
    assert_eq!(seen[auth], format!("AUTH XOAUTH2 {expected}"), "{seen:?}");
    assert!(
        starttls < auth && seen[auth - 1].starts_with("EHLO"),
        "{seen:?}"
    );
    assert!(
        seen[auth + 1].starts_with("MAIL FROM:<sender@example.test>"),
        "{seen:?}"
    );
    assert_eq!(accepting.messages().len(), 1);

    let later = outcome(&router, &id, "x@busy.example", "status=deferred");
    assert!(
        later.contains("said: 454 4.7.0 Temporary authentication failure")
            && later.contains("dsn=4.7.0"),
        "{later}"
    );
    assert!(busy.messages().is_empty());
}

#[test]
fn smarthost_sender_rewrite_for_smtp_only() {
    let sh = Smarthost::start(&[("router", "pw")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!("{hop}  router@{REALM}:pw\n"));
    let generic = sh.files.write(
        "generic",
        "root@example.test  router-alerts@example.com\n@example.test  @example.com\n",
        0o644,
    );
    let router = sh.router_via(&hop, &creds, &["--sender-rewrite", &generic]);
    let content = "From: Cron Daemon <root@example.test>\r\nReply-To: nas@example.test\r\n\
                   To: someone@far.test\r\nSubject: disk\r\n\r\nroot@example.test says hi\r\n";
    let id = router.submit(
        "root@example.test",
        &["someone@far.test", "alice@example.test"],
        content,
    );
    outcome(&router, &id, "someone@far.test", "status=sent");
    sh.pf
        .wait_log("from=<router-alerts@example.com>", Duration::from_secs(20))
        .unwrap();
    let relayed = &sh.relayed(1)[0];
    assert!(
        relayed.contains("From: Cron Daemon <router-alerts@example.com>\r\n")
            && relayed.contains("Reply-To: nas@example.com\r\n")
            && relayed.contains("To: someone@far.test\r\n")
            && relayed.contains("\r\n\r\nroot@example.test says hi\r\n"),
        "{relayed}"
    );
    assert!(sh
        .onward
        .commands()
        .iter()
        .any(|l| l.starts_with("MAIL FROM:<router-alerts@example.com>")));
    // The local copy keeps the original addresses.
    let local = &router.wait_delivered("alice", 1)[0];
    assert!(
        local.starts_with("Return-Path: <root@example.test>")
            && local.contains("From: Cron Daemon <root@example.test>\r\n")
            && local.contains("Reply-To: nas@example.test\r\n"),
        "{local}"
    );
}

/// The router's own mail, the whole way: `sendmail root` on the router → the alias of
/// root (a mailbox elsewhere) → the sender rewritten to the provider's domain → the
/// smarthost on its submission port, over Verified TLS, logged in → onward.
#[test]
fn smarthost_sendmail_root_alias_rewrite_and_login_end_to_end() {
    let sh = Smarthost::start(&[("router", "pw")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!("{hop}  router@{REALM}:pw\n"));
    let aliases = sh
        .files
        .write("aliases", "root: admin@mailbox.far.test\n", 0o644);
    let generic = sh
        .files
        .write("generic", &format!("@{DOMAIN}  @provider.example\n"), 0o644);
    let router = sh.router_via(
        &hop,
        &creds,
        &["--aliases", &aliases, "--sender-rewrite", &generic],
    );
    let mut cmd = tinymta_command();
    cmd.arg("sendmail")
        .arg("--state-dir")
        .arg(&router.state)
        .args(["--hostname", DOMAIN, "-f", "cron", "root"]);
    let out = run_with_timeout(
        &mut cmd,
        Some(b"Subject: backup done\n\nall good\n"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");

    let log = router.wait_log("to=<admin@mailbox.far.test>");
    assert!(
        log.contains("status=sent"),
        "the alias target is delivered through the smarthost: {}",
        router.log()
    );
    let (ip, port) = sh.submission.rsplit_once(':').unwrap();
    let all = router.log();
    assert!(
        all.contains(&format!(
            "Verified TLS connection established to {ip}[{ip}]:{port}"
        )) && all.contains(&format!("as router@{REALM}")),
        "{all}"
    );
    sh.pf
        .wait_log(
            &format!("sasl_username=router@{REALM}"),
            Duration::from_secs(20),
        )
        .unwrap();
    sh.pf
        .wait_log("from=<cron@provider.example>", Duration::from_secs(20))
        .unwrap();
    let relayed = &sh.relayed(1)[0];
    assert!(
        relayed.contains("From: cron@provider.example\r\n")
            && relayed.contains("Subject: backup done\r\n"),
        "{relayed}"
    );
    let commands = sh.onward.commands();
    assert!(
        commands
            .iter()
            .any(|l| l.starts_with("RCPT TO:<admin@mailbox.far.test>")),
        "{commands:?}"
    );
}

#[test]
fn smarthost_sighup_rereads_credentials_and_sender_rewrite() {
    let sh = Smarthost::start(&[("dave", "new-password")]);
    let hop = bracketed(&sh.submission);
    let creds = sh.credentials(&format!("{hop}  dave@{REALM}:old-password\n"));
    let generic = sh
        .files
        .write("generic", "@example.test  @old.example\n", 0o644);
    let router = sh.router_via(
        &hop,
        &creds,
        &[
            "--sender-rewrite",
            &generic,
            "--retry-min",
            "1",
            "--retry-max",
            "2",
        ],
    );
    let id = router.submit("nas@example.test", &["someone@far.test"], MESSAGE);
    outcome(&router, &id, "someone@far.test", "status=deferred");
    // The administrator fixes the password and the address, then reloads.
    sh.credentials(&format!("{hop}  dave@{REALM}:new-password\n"));
    sh.files
        .write("generic", "@example.test  @new.example\n", 0o644);
    router.signal("HUP");
    router.wait_log("SIGHUP: --relay-credentials reloaded (1 entries)");
    router.wait_log("SIGHUP: address tables reloaded");
    outcome(&router, &id, "someone@far.test", "status=sent");
    sh.pf
        .wait_log("from=<nas@new.example>", Duration::from_secs(20))
        .unwrap();
    assert_eq!(sh.pf.sasl_usernames(), [format!("dave@{REALM}")]);
}

#[test]
fn credentials_and_relay_tables_are_checked_at_start() {
    let files = Files::new();
    let serve = |extra: &[&str]| {
        let state = files.0.path().join("state").display().to_string();
        let mut args = vec!["serve", "--smtp", "127.0.0.1:1", "--state-dir", &state];
        args.extend_from_slice(extra);
        let out = tinymta(&args);
        assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
        output_text(&out)
    };
    let creds = files.write("credentials", "[smtp.example.com]:587  u:p\n", 0o644);
    let text = serve(&["--relay-credentials", &creds]);
    assert!(
        text.contains(&format!(
            "--relay-credentials: credentials file {creds} is accessible by group or others (mode 0644)"
        )),
        "{text}"
    );
    let relays = files.write(
        "sender_relay",
        "a@example.org  [smtp.example.com]:587\nb@example.org  [bad host]:587\n",
        0o644,
    );
    let text = serve(&["--sender-relay", &relays]);
    assert!(
        text.contains(&format!("--sender-relay: {relays}:2: ")),
        "{text}"
    );
    let generic = files.write("generic", "a@example.org  b@x, c@y\n", 0o644);
    let text = serve(&["--sender-rewrite", &generic]);
    assert!(
        text.contains(&format!("--sender-rewrite: {generic}:1: one new address")),
        "{text}"
    );
    let text = serve(&["--relayhost", "lmtp:[smtp.example.com]:24"]);
    assert!(
        text.contains("--relayhost 'lmtp:[smtp.example.com]:24'"),
        "{text}"
    );

    // A login that could never be sent (policy may) is named at start.
    let creds = files.write("credentials", "[127.0.0.1]:1  u:p\n", 0o600);
    let router = Server::start(&[
        "--relayhost",
        "[127.0.0.1]:1",
        "--relay-credentials",
        &creds,
    ]);
    let warning = router.wait_log("--relay-credentials has a login for --relayhost");
    assert!(
        warning.contains(&format!("[127.0.0.1]:1 ({creds}:1)"))
            && warning.contains("TLS policy level is may (default)"),
        "{warning}"
    );
}
