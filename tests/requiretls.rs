//! REQUIRETLS (RFC 8689) end to end: the inbound side (the keyword and the MAIL
//! parameter only inside TLS) and outbound delivery against a validating unbound with a
//! signed zone. Postfix 3.7 on this machine does not speak REQUIRETLS (it came in 3.11),
//! so the receivers are the tests' own capture server (tests/common/capture.rs) with
//! STARTTLS, announcing REQUIRETLS after it or not, and recording every command line —
//! the `MAIL FROM` with its parameters — and every message it accepted.

mod common;

use common::capture::{Capture, TlsMode};
use common::certs::{self, CertPair};
use common::dns::{Unbound, Zone};
use common::{free_port, Client, Server, TempDir};

/// What a capture server was sent: its MAIL commands.
fn mail_commands(c: &Capture) -> Vec<String> {
    c.commands()
        .into_iter()
        .filter(|l| l.to_ascii_uppercase().starts_with("MAIL FROM"))
        .collect()
}

/// Sends one message over STARTTLS to `sender`'s port 25, `MAIL FROM` with `params`;
/// returns its queue ID.
fn submit_tls(sender: &Server, to: &str, params: &str, content: &str) -> String {
    let mut c = Client::greeted(&sender.smtp);
    c.ehlo(true);
    let r = c.cmd(&format!("MAIL FROM:<sender@example.test>{params}"));
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(content.as_bytes());
    let r = c.cmd("\r\n.");
    assert_eq!(r.code, 250, "{r:?}");
    r.lines[0].rsplit(' ').next().unwrap().to_string()
}

const BODY: &str = "Subject: requiretls test\r\n\r\nthe secret body\r\n";

#[test]
fn requiretls_is_refused_and_not_announced_in_plaintext() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    let ehlo = c.ehlo(false);
    assert!(!ehlo.has_keyword("REQUIRETLS"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<a@example.test> REQUIRETLS");
    assert_eq!(r.code, 530, "{r:?}");
    assert!(r.text().contains("5.7.10"), "{r:?}");
    // The session goes on: the same MAIL without it is fine.
    assert_eq!(c.cmd("MAIL FROM:<a@example.test>").code, 250);

    let mut c = Client::greeted(&s.smtp);
    let ehlo = c.ehlo(true);
    assert!(ehlo.has_keyword("REQUIRETLS"), "{ehlo:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@example.test> REQUIRETLS").code, 250);
    // Kept in the queue file and said in the log.
    assert_eq!(c.cmd("RCPT TO:<postmaster@example.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(BODY.as_bytes());
    let r = c.cmd("\r\n.");
    let id = r.lines[0].rsplit(' ').next().unwrap().to_string();
    let line = s.wait_log(&format!("{id}: from=<a@example.test>"));
    assert!(line.contains(", requiretls (queue active)"), "{line}");
    // Local delivery is fine for a REQUIRETLS message.
    s.wait_log(&format!("{id}: to=<postmaster@example.test>, relay=local"));
}

#[test]
fn requiretls_goes_only_to_authenticated_receivers_that_announce_it() {
    let dir = TempDir::new("requiretls");
    let port = free_port("127.0.0.1");
    let cert = |tag: &str, name: &str| -> CertPair { certs::self_signed(dir.path(), tag, name) };
    let addr = |last: u8| format!("127.0.0.{last}:{port}");
    // a: DANE-authenticated, announces REQUIRETLS.
    let (ca, cb, cc, cd, ce) = (
        cert("a", "mxa.rt.test"),
        cert("b", "mxb.rt.test"),
        cert("c", "mxc.rt.test"),
        cert("d", "mx.may.test"),
        cert("e", "mx.enc.test"),
    );
    let forged = cert("forged", "mxc.rt.test");
    let ra = Capture::with_requiretls(&addr(151), TlsMode::StartTls(ca.clone()));
    // b: DANE-authenticated, does not announce it.
    let rb = Capture::start(&addr(152), TlsMode::StartTls(cb.clone()));
    // c: the TLSA record is for `c`, the server shows another certificate (forged).
    let rc = Capture::with_requiretls(&addr(153), TlsMode::StartTls(forged));
    // d, e: announce REQUIRETLS, but the policy does not authenticate them (may, encrypt).
    let rd = Capture::with_requiretls(&addr(154), TlsMode::StartTls(cd));
    let re = Capture::with_requiretls(&addr(155), TlsMode::StartTls(ce));

    let mut zone = Zone::new("rt.test", true);
    for (l, ip, pair) in [("a", 151, &ca), ("b", 152, &cb), ("c", 153, &cc)] {
        zone = zone
            .record(&format!("{l} IN MX 10 mx{l}.rt.test."))
            .record(&format!("mx{l} IN A 127.0.0.{ip}"))
            .record(&format!(
                "_{port}._tcp.mx{l} IN TLSA 3 1 1 {}",
                certs::spki_sha256(&pair.cert)
            ));
    }
    let u = Unbound::start(&[
        zone,
        Zone::new("may.test", false)
            .record("@ IN MX 10 mx.may.test.")
            .record("mx IN A 127.0.0.154"),
        Zone::new("enc.test", false)
            .record("@ IN MX 10 mx.enc.test.")
            .record("mx IN A 127.0.0.155"),
    ]);
    assert!(
        u.dig(&format!("_{port}._tcp.mxa.rt.test"), "TLSA")
            .contains(" ad"),
        "unbound must validate the zone"
    );
    let policy = dir.path().join("policy");
    std::fs::write(&policy, "enc.test encrypt\n").unwrap();
    let port_s = port.to_string();
    let s = Server::start(&[
        "--resolver",
        u.addr.as_str(),
        "--mx-port",
        &port_s,
        "--tls-default-level",
        "dane",
        "--tls-policy",
        policy.to_str().unwrap(),
    ]);

    // Authenticated by DANE and announcing REQUIRETLS: sent, with REQUIRETLS on MAIL.
    let id = submit_tls(&s, "user@a.rt.test", " REQUIRETLS", BODY);
    let line = s.wait_log(&format!("{id}: to=<user@a.rt.test>"));
    assert!(line.contains("status=sent"), "{line}");
    let said = s.wait_log(&format!("{id}: requiretls: mxa.rt.test[127.0.0.151]"));
    assert!(
        said.contains("is authenticated and offers REQUIRETLS"),
        "{said}"
    );
    assert_eq!(
        mail_commands(&ra),
        ["MAIL FROM:<sender@example.test> REQUIRETLS"]
    );
    assert!(ra.messages()[0].contains("the secret body"));

    // Authenticated, but no REQUIRETLS in its EHLO: nothing sent, deferred (4.7.30)
    // and retried like any failure; bounced as 5.7.30 when the queue lifetime ends
    // (below).
    let id = submit_tls(&s, "user@b.rt.test", " REQUIRETLS", BODY);
    let line = s.wait_log(&format!("{id}: to=<user@b.rt.test>"));
    assert!(
        line.contains("status=deferred")
            && line.contains("dsn=4.7.30")
            && line.contains("does not offer REQUIRETLS"),
        "{line}"
    );
    assert!(rb.commands().iter().any(|l| l == "STARTTLS"));
    assert!(mail_commands(&rb).is_empty(), "{:?}", rb.commands());

    // A forged certificate: not sent, deferred (an attacker or a broken renewal may go
    // away), and retried.
    let id = submit_tls(&s, "user@c.rt.test", " REQUIRETLS", BODY);
    let line = s.wait_log(&format!("{id}: to=<user@c.rt.test>"));
    assert!(
        line.contains("status=deferred") && line.contains("DANE TLSA authentication failed"),
        "{line}"
    );
    assert!(mail_commands(&rc).is_empty(), "{:?}", rc.commands());
    assert!(s.queued() >= 1, "kept for the next attempt");
    // After the queue lifetime (0 days here) the same failures are bounced: the host
    // without REQUIRETLS as 5.7.30, the forged certificate with its own 4.7.5; each
    // bounce is REQUIRETLS itself and does not quote the body.
    let short = Server::start(&[
        "--resolver",
        u.addr.as_str(),
        "--mx-port",
        &port_s,
        "--tls-default-level",
        "dane",
        "--tls-policy",
        policy.to_str().unwrap(),
        "--queue-lifetime",
        "0",
    ]);
    for (n, to, status) in [
        (1, "user@b.rt.test", "5.7.30"),
        (2, "user@c.rt.test", "4.7.5"),
    ] {
        let id = submit_tls(&short, to, " REQUIRETLS", BODY);
        let line = short.wait_log(&format!("{id}: to=<{to}>"));
        assert!(
            line.contains("status=bounced")
                && line.contains("message expired")
                && line.contains(&format!("dsn={status}")),
            "{line}"
        );
        let bounce = short.wait_log(&format!("{id}: sender non-delivery notification: "));
        let bid = bounce.rsplit(' ').next().unwrap();
        let queued = short.wait_log(&format!("{bid}: from=<>"));
        assert!(queued.contains(", requiretls (queue active)"), "{queued}");
        let delivered = short.wait_delivered("sender", n);
        let dsn = delivered
            .iter()
            .find(|m| m.contains(&format!("Final-Recipient: rfc822; {to}\r\n")))
            .unwrap_or_else(|| panic!("no report for {to}: {delivered:?}"));
        assert!(
            dsn.contains(&format!("Action: failed\r\nStatus: {status}")),
            "{dsn}"
        );
        assert!(dsn.contains("Subject: requiretls test"), "{dsn}");
        assert!(!dsn.contains("the secret body"), "{dsn}");
    }
    assert!(mail_commands(&rb).is_empty(), "{:?}", rb.commands());
    assert!(mail_commands(&rc).is_empty(), "{:?}", rc.commands());

    // `may` (DANE without DNSSEC) and `encrypt`: deferred (4.7.30), never connected to.
    for (to, capture, why) in [
        (
            "user@may.test",
            &rd,
            "TLS is opportunistic: host mx.may.test, TLS policy level dane",
        ),
        (
            "user@enc.test",
            &re,
            "TLS does not authenticate the server: host mx.enc.test, TLS policy level encrypt",
        ),
    ] {
        let id = submit_tls(&s, to, " REQUIRETLS", BODY);
        let line = s.wait_log(&format!("{id}: to=<{to}>"));
        assert!(
            line.contains("status=deferred") && line.contains("dsn=4.7.30") && line.contains(why),
            "{line}"
        );
        assert!(
            capture.commands().is_empty(),
            "{to}: {:?}",
            capture.commands()
        );
    }

    let relaxed = "TLS-Required: No\r\nSubject: relaxed\r\n\r\nbody\r\n";
    // With REQUIRETLS on MAIL the header is ignored (RFC 8689 §4.1): not sent.
    let id = submit_tls(&s, "user@c.rt.test", " REQUIRETLS", relaxed);
    let line = s.wait_log(&format!("{id}: to=<user@c.rt.test>"));
    assert!(line.contains("status=deferred"), "{line}");
    assert!(rc.messages().is_empty());

    // TLS-Required: No relaxes our policy: the forged certificate's host gets it over
    // unauthenticated TLS, the field passed on.
    let id = submit_tls(&s, "user@c.rt.test", "", relaxed);
    let line = s.wait_log(&format!("{id}: to=<user@c.rt.test>"));
    assert!(line.contains("status=sent"), "{line}");
    s.wait_log(&format!("{id}: TLS-Required: No: TLS policy level dane"));
    assert_eq!(rc.messages().len(), 1);
    assert!(rc.messages()[0].contains("TLS-Required: No\r\n"));
    assert!(!mail_commands(&rc)[0].contains("REQUIRETLS"));
}
