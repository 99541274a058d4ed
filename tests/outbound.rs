//! Outbound delivery under the TLS policy levels, against a validating unbound serving
//! signed and unsigned zones, tinymta and Postfix receivers, and a scripted capture
//! server. Each level ends delivered or deferred as Postfix would, with its log line;
//! forged certificates, wrong fingerprints, TLSA mismatches, STARTTLS stripping and
//! bogus DNSSEC answers end in a deferral, never a plaintext or unauthenticated
//! delivery.

mod common;

use std::time::Duration;

use common::capture::{Capture, TlsMode};
use common::certs::{self, CertPair};
use common::dns::{Unbound, Zone};
use common::postfix::{posttls_finger, Postfix, PostfixOptions};
use common::{free_port, tinymta, Client, Server, TempDir};

/// One scenario's world: the MX port every receiver listens on, and a scratch dir.
struct World {
    dir: TempDir,
    port: u16,
}

impl World {
    fn new() -> World {
        World {
            dir: TempDir::new("outbound"),
            port: free_port("127.0.0.1"),
        }
    }

    /// A tinymta receiver on `ip:port` accepting mail for `domain`.
    fn receiver(&self, ip: &str, domain: &str, extra: &[String]) -> Server {
        let mut args = vec!["--domain".to_string(), domain.to_string()];
        args.extend(extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_at(&format!("{ip}:{}", self.port), &refs)
    }

    /// The sending tinymta, asking `unbound`, delivering to the world's MX port.
    fn sender(&self, unbound: &Unbound, extra: &[&str]) -> Server {
        let port = self.port.to_string();
        let mut args = vec![
            "--resolver",
            unbound.addr.as_str(),
            "--mx-port",
            port.as_str(),
        ];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn cert(&self, tag: &str, name: &str) -> CertPair {
        certs::self_signed(self.dir.path(), tag, name)
    }
}

/// Sends one message through `sender`; returns its queue ID.
fn submit(sender: &Server, to: &str) -> String {
    sender.submit(
        "sender@example.test",
        &[to],
        "Subject: outbound test\r\n\r\nhello",
    )
}

/// The delivery log line of `id` for `rcpt`.
fn outcome(sender: &Server, id: &str, rcpt: &str) -> String {
    sender.wait_log(&format!("{id}: to=<{rcpt}>"))
}

fn zone_line(name: &str, rr: &str) -> String {
    format!("{name} {rr}")
}

#[test]
fn may_delivers_over_tls_and_none_never_uses_it() {
    let w = World::new();
    let r = w.receiver("127.0.0.21", "plain.test", &[]);
    let u = Unbound::start(&[Zone::new("plain.test", false)
        .record("@ IN MX 10 mx.plain.test.")
        .record("mx IN A 127.0.0.21")]);
    let s = w.sender(&u, &[]);
    let id = submit(&s, "user@plain.test");
    let line = outcome(&s, &id, "user@plain.test");
    assert!(
        line.contains("status=sent")
            && line.contains(&format!("relay=mx.plain.test[127.0.0.21]:{}", w.port)),
        "{line}"
    );
    let tls = s.wait_log("TLS connection established to");
    assert!(
        tls.contains(&format!("Untrusted TLS connection established to mx.plain.test[127.0.0.21]:{}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", w.port)),
        "{tls}"
    );
    let m = &r.wait_delivered_in("plain.test", "user", 1)[0];
    assert!(m.contains("(using TLSv1.3 with cipher"), "{m}");

    let s2 = w.sender(&u, &["--tls-default-level", "none"]);
    let id = submit(&s2, "user2@plain.test");
    assert!(outcome(&s2, &id, "user2@plain.test").contains("status=sent"));
    s2.wait_log(&format!(
        "{id}: host mx.plain.test[127.0.0.21]:{} offered STARTTLS",
        w.port
    ));
    assert!(!s2.log().contains("TLS connection established to"));
    let m = &r.wait_delivered_in("plain.test", "user2", 1)[0];
    assert!(m.contains("with ESMTP id") && !m.contains("(using"), "{m}");
}

#[test]
fn may_retries_in_plaintext_after_a_failed_handshake_but_encrypt_defers() {
    let w = World::new();
    let cap = Capture::start(&format!("127.0.0.22:{}", w.port), TlsMode::Broken);
    let u = Unbound::start(&[Zone::new("broken.test", false)
        .record("@ IN MX 10 mx.broken.test.")
        .record("mx IN A 127.0.0.22")]);
    let s = w.sender(&u, &[]);
    let id = submit(&s, "a@broken.test");
    assert!(outcome(&s, &id, "a@broken.test").contains("status=sent"));
    s.wait_log("retrying in plaintext (level may)");
    assert_eq!(cap.messages().len(), 1, "the plaintext retry delivered it");

    let policy = w.file("policy", "broken.test encrypt\n");
    let s2 = w.sender(&u, &["--tls-policy", &policy]);
    let id = submit(&s2, "b@broken.test");
    let line = outcome(&s2, &id, "b@broken.test");
    assert!(
        line.contains("status=deferred")
            && line.contains("dsn=4.7.5")
            && line.contains("TLS with mx.broken.test"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cap.messages().len(),
        1,
        "encrypt must never fall back to plaintext"
    );
}

#[test]
fn encrypt_defers_when_starttls_is_stripped_and_alerts() {
    let w = World::new();
    let r = w.receiver(
        "127.0.0.23",
        "strip.test",
        &["--tls-level".into(), "none".into()],
    );
    let u = Unbound::start(&[Zone::new("strip.test", false)
        .record("@ IN MX 10 mx.strip.test.")
        .record("mx IN A 127.0.0.23")]);
    let policy = w.file("policy", "strip.test encrypt\n");
    let s = w.sender(
        &u,
        &[
            "--tls-policy",
            &policy,
            "--alert-rcpt",
            "admin@example.test",
        ],
    );
    let id = submit(&s, "user@strip.test");
    let line = outcome(&s, &id, "user@strip.test");
    assert!(
        line.contains("status=deferred")
            && line
                .contains("TLS is required, but was not offered by host mx.strip.test[127.0.0.23]"),
        "{line}"
    );
    assert!(
        r.delivered_in("strip.test", "user").is_empty(),
        "never plaintext at encrypt"
    );
    s.wait_log("warning: TLS failure for destination strip.test (level encrypt");
    let alert = &s.wait_delivered("admin", 1)[0];
    assert!(
        alert.contains("Subject: TLS failure for destination strip.test")
            && alert.contains("TLS is required"),
        "{alert}"
    );
    assert!(
        alert.contains("Return-Path: <>"),
        "alerts use the null sender"
    );
    // A second failure within the hour logs again but sends no second alert.
    let id2 = submit(&s, "user2@strip.test");
    outcome(&s, &id2, "user2@strip.test");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.delivered("admin").len(), 1);
    // The message stays queued for a retry.
    assert!(s.queued() >= 2);
}

#[test]
fn fingerprint_level() {
    let w = World::new();
    let cert = w.cert("mx", "mx.fp.test");
    let other = w.cert("other", "mx.fp.test");
    let r = w.receiver("127.0.0.24", "fp.test", &cert.server_args());
    let u = Unbound::start(&[Zone::new("fp.test", false)
        .record("@ IN MX 10 mx.fp.test.")
        .record("mx IN A 127.0.0.24")]);
    let good = certs::fingerprint(&cert.cert, "sha256");
    let policy = w.file("good", &format!("fp.test fingerprint match={good}\n"));
    let s = w.sender(&u, &["--tls-policy", &policy]);
    let id = submit(&s, "user@fp.test");
    assert!(outcome(&s, &id, "user@fp.test").contains("status=sent"));
    let tls = s.wait_log("TLS connection established to");
    assert!(
        tls.contains("Verified TLS connection established to mx.fp.test"),
        "{tls}"
    );
    r.wait_delivered_in("fp.test", "user", 1);

    // Wrong fingerprint (another certificate's), MD5 digest table: still deferred.
    let bad = certs::fingerprint(&other.cert, "sha256");
    let policy = w.file("bad", &format!("fp.test fingerprint match={bad}\n"));
    let s2 = w.sender(&u, &["--tls-policy", &policy]);
    let id = submit(&s2, "user2@fp.test");
    let line = outcome(&s2, &id, "user2@fp.test");
    assert!(
        line.contains("status=deferred") && line.contains("fingerprint mismatch"),
        "{line}"
    );
    assert!(r.delivered_in("fp.test", "user2").is_empty());
}

#[test]
fn verify_and_secure_levels_refuse_forged_certificates() {
    let w = World::new();
    let ca = certs::ca(w.dir.path(), "ca");
    let good = certs::signed_by(w.dir.path(), &ca, "good", "mx.good.test");
    let wrong_name = certs::signed_by(w.dir.path(), &ca, "wrongname", "mail.elsewhere.test");
    let forged = w.cert("forged", "mx.forged.test");
    let r_good = w.receiver("127.0.0.25", "good.test", &good.server_args());
    let r_forged = w.receiver("127.0.0.26", "forged.test", &forged.server_args());
    let r_wrong = w.receiver("127.0.0.27", "wrongname.test", &wrong_name.server_args());
    let u = Unbound::start(&[
        Zone::new("good.test", false)
            .record("@ IN MX 10 mx.good.test.")
            .record("mx IN A 127.0.0.25"),
        Zone::new("forged.test", false)
            .record("@ IN MX 10 mx.forged.test.")
            .record("mx IN A 127.0.0.26"),
        Zone::new("wrongname.test", false)
            .record("@ IN MX 10 mx.wrongname.test.")
            .record("mx IN A 127.0.0.27"),
    ]);
    let policy = w.file(
        "policy",
        "good.test secure\nforged.test verify\nwrongname.test verify\n",
    );
    let ca_file = ca.cert.display().to_string();
    let s = w.sender(&u, &["--tls-policy", &policy, "--tls-ca-file", &ca_file]);

    let id = submit(&s, "user@good.test");
    assert!(outcome(&s, &id, "user@good.test").contains("status=sent"));
    let tls = s.wait_log("TLS connection established to mx.good.test");
    assert!(tls.contains("Verified TLS connection established"), "{tls}");
    r_good.wait_delivered_in("good.test", "user", 1);

    let id = submit(&s, "user@forged.test");
    let line = outcome(&s, &id, "user@forged.test");
    assert!(
        line.contains("status=deferred") && line.contains("server certificate not trusted"),
        "{line}"
    );
    let id = submit(&s, "user@wrongname.test");
    let line = outcome(&s, &id, "user@wrongname.test");
    assert!(
        line.contains("status=deferred") && line.contains("do not match"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(r_forged.delivered_in("forged.test", "user").is_empty());
    assert!(r_wrong.delivered_in("wrongname.test", "user").is_empty());
}

#[test]
fn dane_levels_with_dnssec() {
    let w = World::new();
    let p = w.port;
    let mk = |ip: &str, dom: &str, extra: &[String]| w.receiver(ip, dom, extra);
    let ra = mk("127.0.0.31", "a.dane.test", &[]);
    let rb = mk("127.0.0.32", "b.dane.test", &[]);
    let rc = mk("127.0.0.33", "c.dane.test", &[]);
    let rd = mk(
        "127.0.0.34",
        "d.dane.test",
        &["--tls-level".into(), "none".into()],
    );
    let re = mk("127.0.0.35", "e.dane.test", &[]);
    let rp = mk("127.0.0.36", "plain.test", &[]);
    // The ECDSA demonstration certificate: the one tinymta's TLS 1.3 client is sent.
    let tlsa_a = certs::spki_sha256(&ra.state.join("tls/demo-ec-cert.pem"));
    let wrong = "0".repeat(64);
    let fake = "a".repeat(64);
    let mut zone = Zone::new("dane.test", true);
    for (l, ip) in [("a", 31), ("b", 32), ("c", 33), ("d", 34), ("e", 35)] {
        zone = zone
            .record(&zone_line(l, &format!("IN MX 10 mx{l}.dane.test.")))
            .record(&zone_line(&format!("mx{l}"), &format!("IN A 127.0.0.{ip}")));
    }
    let zone = zone
        .record(&format!("_{p}._tcp.mxa IN TLSA 3 1 1 {tlsa_a}"))
        .record(&format!("_{p}._tcp.mxb IN TLSA 3 1 1 {wrong}"))
        .record(&format!("_{p}._tcp.mxc IN TLSA 3 1 1 {fake}"))
        .record(&format!("_{p}._tcp.mxd IN TLSA 1 1 1 {tlsa_a}"))
        .tamper(&fake, &"b".repeat(64));
    let u = Unbound::start(&[
        zone,
        Zone::new("plain.test", false)
            .record("@ IN MX 10 mx.plain.test.")
            .record("mx IN A 127.0.0.36"),
    ]);
    assert!(
        u.dig(&format!("_{p}._tcp.mxa.dane.test"), "TLSA")
            .contains(" ad"),
        "unbound must validate the zone"
    );
    let s = w.sender(&u, &["--tls-default-level", "dane"]);

    // Usable, matching TLSA: authenticated TLS.
    let id = submit(&s, "user@a.dane.test");
    assert!(outcome(&s, &id, "user@a.dane.test").contains("status=sent"));
    let m = s.wait_log("Matched DANE EE");
    assert!(m.contains(&format!("3 1 1 {tlsa_a}")), "{m}");
    assert!(s
        .wait_log("TLS connection established to mxa.dane.test")
        .contains("Verified TLS connection established"));
    ra.wait_delivered_in("a.dane.test", "user", 1);

    // TLSA mismatch (a forged or replaced certificate): deferred.
    let id = submit(&s, "user@b.dane.test");
    let line = outcome(&s, &id, "user@b.dane.test");
    assert!(
        line.contains("status=deferred") && line.contains("DANE TLSA authentication failed"),
        "{line}"
    );
    // Bogus DNSSEC answer for the TLSA RRset: deferred, no connection.
    let id = submit(&s, "user@c.dane.test");
    let line = outcome(&s, &id, "user@c.dane.test");
    assert!(
        line.contains("status=deferred") && line.contains("TLSA lookup error"),
        "{line}"
    );
    // Only unusable TLSA (PKIX-EE): mandatory TLS; the receiver strips STARTTLS.
    let id = submit(&s, "user@d.dane.test");
    let line = outcome(&s, &id, "user@d.dane.test");
    assert!(
        line.contains("status=deferred") && line.contains("TLS is required"),
        "{line}"
    );
    // Validated, but no TLSA: opportunistic.
    let id = submit(&s, "user@e.dane.test");
    assert!(outcome(&s, &id, "user@e.dane.test").contains("status=sent"));
    re.wait_delivered_in("e.dane.test", "user", 1);
    // Unsigned zone: like may.
    let id = submit(&s, "user@plain.test");
    assert!(outcome(&s, &id, "user@plain.test").contains("status=sent"));
    assert!(s
        .wait_log("TLS connection established to mx.plain.test")
        .contains("Untrusted TLS"));
    rp.wait_delivered_in("plain.test", "user", 1);

    std::thread::sleep(Duration::from_millis(300));
    for (r, d) in [
        (&rb, "b.dane.test"),
        (&rc, "c.dane.test"),
        (&rd, "d.dane.test"),
    ] {
        assert!(r.delivered_in(d, "user").is_empty(), "{d} must not receive");
    }

    // dane-only: an unsigned destination is deferred without a connection.
    let policy = w.file("policy", "plain.test dane-only\n");
    let s2 = w.sender(&u, &["--tls-policy", &policy]);
    let id = submit(&s2, "user2@plain.test");
    let line = outcome(&s2, &id, "user2@plain.test");
    assert!(
        line.contains("status=deferred") && line.contains("dane-only"),
        "{line}"
    );
    assert!(rp.delivered_in("plain.test", "user2").is_empty());
}

#[test]
fn dane_to_a_postfix_receiver() {
    let w = World::new();
    let pf = Postfix::start(PostfixOptions {
        smtpd_tls: true,
        ..PostfixOptions::sink(&format!("127.0.0.41:{}", w.port))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let tlsa = certs::spki_sha256(&pf.cert_path());
    let u = Unbound::start(&[Zone::new("pf.test", true)
        .record("@ IN MX 10 mx.pf.test.")
        .record("mx IN A 127.0.0.41")
        .record(&format!("_{}._tcp.mx IN TLSA 3 1 1 {tlsa}", w.port))]);
    let s = w.sender(&u, &["--tls-default-level", "dane"]);
    let id = submit(&s, "user@pf.test");
    let line = outcome(&s, &id, "user@pf.test");
    assert!(line.contains("status=sent (250 "), "{line}");
    assert!(s
        .wait_log("TLS connection established to mx.pf.test")
        .contains("Verified TLS connection established"));
    let queued_as = line
        .rsplit("queued as ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    pf.wait_log(&queued_as, Duration::from_secs(10)).unwrap();
    let pf_tls = pf
        .wait_log("TLS connection established from", Duration::from_secs(10))
        .unwrap();
    assert!(pf_tls.contains("TLSv1.3"), "{pf_tls}");
}

#[test]
fn bounces_go_to_the_sender_and_null_mx_bounces_at_once() {
    let w = World::new();
    // This receiver is not an MX for rej.test and refuses to relay: 554 5.7.1.
    let _r = w.receiver(
        "127.0.0.42",
        "other.test",
        &["--relay-network".into(), "10.9.9.0/24".into()],
    );
    let u = Unbound::start(&[
        Zone::new("rej.test", false)
            .record("@ IN MX 10 mx.rej.test.")
            .record("mx IN A 127.0.0.42"),
        Zone::new("nullmx.test", false).record("@ IN MX 0 ."),
    ]);
    let s = w.sender(&u, &[]);
    let id = submit(&s, "user@rej.test");
    let line = outcome(&s, &id, "user@rej.test");
    assert!(
        line.contains("status=bounced")
            && line.contains("dsn=5.7.1")
            && line.contains("in reply to RCPT TO command"),
        "{line}"
    );
    let dsn = &s.wait_delivered("sender", 1)[0];
    assert!(
        dsn.contains("Subject: Undelivered Mail Returned to Sender"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; user@rej.test\r\nAction: failed\r\nStatus: 5.7.1"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 554 5.7.1 <user@rej.test>: Relay access denied"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: outbound test"),
        "the original headers come back"
    );

    let id = submit(&s, "user@nullmx.test");
    let line = outcome(&s, &id, "user@nullmx.test");
    assert!(
        line.contains("status=bounced") && line.contains("dsn=5.1.10") && line.contains("nullMX"),
        "{line}"
    );
    s.wait_delivered("sender", 2);
    // Bounces themselves have the null sender: a bounce of a bounce is never sent.
    s.wait_log(&format!("{id}: removed"));
}

#[test]
fn relayhost_and_transport_table() {
    let w = World::new();
    let r = w.receiver("127.0.0.43", "far.test", &[]);
    let u = Unbound::start(&[Zone::new("unused.test", false)]);
    let relay = format!("[127.0.0.43]:{}", w.port);
    let s = w.sender(&u, &["--relayhost", &relay]);
    let id = submit(&s, "user@far.test");
    let line = outcome(&s, &id, "user@far.test");
    assert!(
        line.contains(&format!("relay=127.0.0.43[127.0.0.43]:{}", w.port))
            && line.contains("status=sent"),
        "{line}"
    );
    r.wait_delivered_in("far.test", "user", 1);

    // A transport entry for a local domain relays instead of delivering to a Maildir.
    let table = w.file("transport", &format!("example.test {relay}\n"));
    let s2 = w.sender(&u, &["--transport", &table]);
    let id = submit(&s2, "inside@example.test");
    assert!(outcome(&s2, &id, "inside@example.test").contains("status=sent"));
    r.wait_delivered("inside", 1);
    assert!(s2.delivered("inside").is_empty());
}

#[test]
fn check_tls_agrees_with_posttls_finger() {
    let w = World::new();
    let cert = w.cert("mx", "mx.check.test");
    let _r = w.receiver("127.0.0.44", "check.test", &cert.server_args());
    let plain = w.receiver(
        "127.0.0.45",
        "plain.test",
        &["--tls-level".into(), "none".into()],
    );
    let dest = format!("[127.0.0.44]:{}", w.port);
    let fp = certs::fingerprint(&cert.cert, "sha256");
    let verdict = |text: &str| -> Option<String> {
        text.lines()
            .find(|l| l.contains("TLS connection established to"))
            .and_then(|l| {
                ["Verified", "Trusted", "Untrusted", "Anonymous"]
                    .into_iter()
                    .find(|v| l.contains(&format!("{v} TLS connection")))
                    .map(String::from)
            })
    };
    let policy = w.file("policy", &format!("{dest} fingerprint match={fp}\n"));
    for (level, ours_args, theirs_args) in [
        ("may", vec!["--tls-default-level", "may"], vec!["-l", "may"]),
        (
            "encrypt",
            vec!["--tls-default-level", "encrypt"],
            vec!["-l", "encrypt"],
        ),
        (
            "fingerprint",
            vec!["--tls-policy", policy.as_str()],
            vec!["-l", "fingerprint", "-d", "sha256"],
        ),
    ] {
        let mut args = vec!["check-tls", "--resolver", "127.0.0.1:9", dest.as_str()];
        args.extend(ours_args);
        let ours = tinymta(&args);
        let ours_text = String::from_utf8_lossy(&ours.stdout).into_owned();
        assert!(
            ours.status.success(),
            "{level}: {ours_text}{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let mut pt = vec!["-c"];
        pt.extend(theirs_args);
        pt.push(dest.as_str());
        if level == "fingerprint" {
            pt.push(fp.as_str());
        }
        let theirs = posttls_finger(&pt);
        assert_eq!(
            verdict(&ours_text),
            verdict(&theirs),
            "{level}:\nours:\n{ours_text}\nposttls-finger:\n{theirs}"
        );
        assert!(verdict(&ours_text).is_some(), "{level}: {ours_text}");
    }
    // No STARTTLS at the destination: posttls-finger prints no TLS line, and
    // check-tls at encrypt says the delivery would be deferred.
    let dest = format!("[127.0.0.45]:{}", w.port);
    let theirs = posttls_finger(&["-c", "-l", "encrypt", dest.as_str()]);
    assert!(verdict(&theirs).is_none(), "{theirs}");
    let ours = tinymta(&[
        "check-tls",
        "--resolver",
        "127.0.0.1:9",
        "--tls-default-level",
        "encrypt",
        dest.as_str(),
    ]);
    let ours_text = String::from_utf8_lossy(&ours.stdout).into_owned();
    assert_eq!(ours.status.code(), Some(75), "{ours_text}");
    assert!(
        ours_text.contains("TLS is required, but was not offered")
            && ours_text.contains("result: defer"),
        "{ours_text}"
    );
    drop(plain);
}

#[test]
fn connection_reuse_for_the_next_message_to_the_same_destination() {
    let w = World::new();
    let r = w.receiver("127.0.0.46", "reuse.test", &[]);
    let u = Unbound::start(&[Zone::new("reuse.test", false)
        .record("@ IN MX 10 mx.reuse.test.")
        .record("mx IN A 127.0.0.46")]);
    let s = w.sender(&u, &[]);
    for n in 1..=3 {
        let id = submit(&s, &format!("u{n}@reuse.test"));
        assert!(outcome(&s, &id, &format!("u{n}@reuse.test")).contains("status=sent"));
    }
    s.wait_log("reusing connection to mx.reuse.test");
    // One connection for three messages (plus the harness's start-up probe).
    assert_eq!(
        r.log()
            .matches("connect from unknown[127.0.0.1] to smtp")
            .count(),
        2,
        "{}",
        r.log()
    );
    for n in 1..=3 {
        r.wait_delivered_in("reuse.test", &format!("u{n}"), 1);
    }
    // Only one TLS handshake for the three messages.
    assert_eq!(
        r.log().matches("TLS connection established from").count(),
        1
    );
}

#[test]
fn per_recipient_replies_and_retry_of_the_deferred_one() {
    let w = World::new();
    // The receiver takes one recipient per message: the second gets 452 4.5.3.
    let r = w.receiver(
        "127.0.0.47",
        "multi.test",
        &["--max-recipients".into(), "1".into()],
    );
    let u = Unbound::start(&[Zone::new("multi.test", false)
        .record("@ IN MX 10 mx.multi.test.")
        .record("mx IN A 127.0.0.47")]);
    let s = w.sender(&u, &[]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let reply = c.send_mail(
        "sender@example.test",
        &["one@multi.test", "two@multi.test"],
        "Subject: two\r\n\r\nx",
    );
    let id = reply.lines[0].rsplit(' ').next().unwrap().to_string();
    assert!(outcome(&s, &id, "one@multi.test").contains("status=sent"));
    let line = outcome(&s, &id, "two@multi.test");
    assert!(
        line.contains("status=deferred")
            && line.contains("dsn=4.5.3")
            && line.contains("in reply to RCPT TO command"),
        "{line}"
    );
    r.wait_delivered_in("multi.test", "one", 1);
    // A flush retries only the deferred recipient.
    let st = s.state.display().to_string();
    assert!(tinymta(&["queue", "--state-dir", &st, "flush"])
        .status
        .success());
    s.wait_log(&format!("{id}: removed"));
    r.wait_delivered_in("multi.test", "two", 1);
    assert_eq!(
        r.delivered_in("multi.test", "one").len(),
        1,
        "no duplicate for the finished recipient"
    );
}

#[test]
fn queue_lifetime_expiry_bounces_to_the_sender() {
    let w = World::new();
    let u = Unbound::start(&[Zone::new("unused.test", false)]);
    let s = w.sender(
        &u,
        &["--relayhost", "[127.0.0.1]:1", "--queue-lifetime", "0"],
    );
    let id = submit(&s, "user@gone.test");
    let line = outcome(&s, &id, "user@gone.test");
    assert!(
        line.contains("status=bounced")
            && line.contains("message expired after 0 days; last error: connect to"),
        "{line}"
    );
    let dsn = &s.wait_delivered("sender", 1)[0];
    assert!(
        dsn.contains("Final-Recipient: rfc822; user@gone.test") && dsn.contains("Action: failed"),
        "{dsn}"
    );
}

#[test]
fn client_certificate_global_and_per_destination() {
    let w = World::new();
    // Postfix asks for client certificates and, at log level 2, logs their subject.
    let ask = |ip: &str| {
        Postfix::start(PostfixOptions {
            smtpd_tls: true,
            smtpd_overrides: vec![
                ("smtpd_tls_ask_ccert".into(), "yes".into()),
                ("smtpd_tls_loglevel".into(), "2".into()),
            ],
            ..PostfixOptions::sink(&format!("{ip}:{}", w.port))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let pf_global = ask("127.0.0.48");
    let pf_dest = ask("127.0.0.49");
    let u = Unbound::start(&[
        Zone::new("cc1.test", false)
            .record("@ IN MX 10 mx.cc1.test.")
            .record("mx IN A 127.0.0.48"),
        Zone::new("cc2.test", false)
            .record("@ IN MX 10 mx.cc2.test.")
            .record("mx IN A 127.0.0.49"),
    ]);
    let global = w.cert("client", "client.example.test");
    let dedicated = w.cert("dedicated", "dedicated.example.test");
    let policy = w.file(
        "policy",
        &format!(
            "cc2.test may cert={} key={}\n",
            dedicated.cert.display(),
            dedicated.key.display()
        ),
    );

    // Without a client certificate the receiver sees an anonymous client.
    let plain = w.sender(&u, &[]);
    let id = submit(&plain, "a@cc1.test");
    assert!(outcome(&plain, &id, "a@cc1.test").contains("status=sent"));
    let line = pf_global
        .wait_log("TLS connection established from", Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("Anonymous TLS connection"), "{line}");

    let (c, k) = (
        global.cert.display().to_string(),
        global.key.display().to_string(),
    );
    let s = w.sender(
        &u,
        &[
            "--tls-client-cert",
            &c,
            "--tls-client-key",
            &k,
            "--tls-policy",
            &policy,
        ],
    );
    let mark = pf_global.log_mark();
    let id = submit(&s, "b@cc1.test");
    assert!(outcome(&s, &id, "b@cc1.test").contains("status=sent"));
    let line = pf_global
        .wait_log_since(
            mark,
            "TLS connection established from",
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(
        line.contains("Untrusted TLS connection"),
        "a client certificate was presented: {line}"
    );
    pf_global
        .wait_log_since(
            mark,
            "subject_CN=client.example.test",
            Duration::from_secs(10),
        )
        .unwrap();

    // The destination's own cert=/key= replaces the global certificate.
    let id = submit(&s, "c@cc2.test");
    assert!(outcome(&s, &id, "c@cc2.test").contains("status=sent"));
    pf_dest
        .wait_log("subject_CN=dedicated.example.test", Duration::from_secs(10))
        .unwrap();
    assert!(!pf_dest.log().contains("subject_CN=client.example.test"));
}
