//! What the receiver does with SPF, DKIM and DMARC (issue 12), end to end: the real
//! `tinymta serve` with its `--resolver` aimed at unbound serving DNSSEC-signed zones
//! (tests/common/dns.rs), mail sent over SMTP by the tests' client and by swaks from
//! loopback addresses outside `--relay-network`, signed in-process with tinymta's own
//! signer (and by dkimpy in the `dkimpy_` test). Each accepted message is read back
//! from the Maildir it was delivered to, and its `Authentication-Results:` field
//! asserted; refusals are asserted by their reply and by nothing being queued.
//!
//! The `dkimpy_` test runs on the host only (cross/test skips them by that prefix).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::dkim::dkimpy;
use common::dns::{Unbound, Zone};
use common::{free_port, run_with_timeout, swaks, tinymta_command, Client, Server, TempDir};
use openssl::pkey::PKey;
use tinymta::headers::Header;
use tinymta::mailauth::dkim::{self, SigningKey};

/// Our authserv-id: the `--hostname` of the test server.
const US: &str = common::HOSTNAME;

/// Outside this network is everybody the tests connect from.
const NOT_LOOPBACK: &str = "10.9.9.0/24";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh Ed25519 key for `domain`, selector `sel`.
fn key(domain: &str) -> SigningKey {
    SigningKey::new(domain, "sel", PKey::generate_ed25519().unwrap()).unwrap()
}

/// The zone line publishing `key` in the zone `zone`.
fn key_record(key: &SigningKey, zone: &str) -> String {
    let owner = key
        .domain()
        .strip_suffix(zone)
        .unwrap()
        .trim_end_matches('.');
    let owner = if owner.is_empty() {
        "sel._domainkey".to_string()
    } else {
        format!("sel._domainkey.{owner}")
    };
    format!("{owner} IN TXT \"{}\"", key.record().unwrap())
}

/// A message from `from` (its From: field) to `to`.
fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: Sender <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Date: Mon, 01 Dec 2025 10:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\
         \r\nHello,\r\n  this is {subject}.\r\n"
    )
}

/// `msg` with tinymta's DKIM signature by `key` on top.
fn signed(msg: &str, key: &SigningKey) -> String {
    let fields = dkim::sign(msg.as_bytes(), std::slice::from_ref(key), now()).unwrap();
    String::from_utf8(fields).unwrap() + msg
}

/// One transaction over a fresh connection from 127.0.0.1; the reply to RCPT if it
/// was refused, else to the end of data.
fn send(s: &Server, mail_from: &str, rcpt: &str, content: &str) -> common::Reply {
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let r = c.cmd(&format!("MAIL FROM:<{mail_from}>"));
    assert_eq!(r.code, 250, "MAIL: {r:?}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if r.code != 250 {
        return r;
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(content.as_bytes());
    c.raw(b".\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    r
}

/// The `Authentication-Results:` fields of a delivered message, unfolded.
fn results(msg: &str) -> Vec<String> {
    Header::parse(msg.as_bytes())
        .fields
        .iter()
        .filter(|f| f.is("Authentication-Results"))
        .map(|f| f.value().replace("\t", " "))
        .collect()
}

/// The `Authentication-Results:` field of ours in the first message `user`
/// received (there must be exactly one), unfolded: `ID; spf=...; dkim=...; dmarc=...`.
fn our_results(s: &Server, user: &str) -> String {
    let msg = &s.wait_delivered(user, 1)[0];
    let fields = results(msg);
    let ours: Vec<&String> = fields
        .iter()
        .filter(|f| f.starts_with(&format!("{US};")))
        .collect();
    assert_eq!(ours.len(), 1, "{msg}");
    // Ours comes first: the queue puts it before the content.
    assert!(
        msg.find("Authentication-Results:") < msg.find("Received:"),
        "{msg}"
    );
    ours[0].clone()
}

fn checked_server(u: &Unbound, extra: &[&str]) -> Server {
    let mut args = vec!["--relay-network", NOT_LOOPBACK, "--resolver", &u.addr];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The zones of the DMARC cases, all signed. The unsigned `test` zone above them
/// answers the Tree Walk's last question (`_dmarc.test`) from here.
fn dmarc_zones(keys: &[&SigningKey]) -> Vec<Zone> {
    let zones = vec![
        Zone::new("test", false),
        // SPF fails; the aligned signature alone passes DMARC.
        Zone::new("dkim.test", true)
            .record("@ IN TXT \"v=spf1 -all\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=reject\""),
        // SPF passes and is aligned; no signature.
        Zone::new("spf.test", true)
            .record("@ IN TXT \"v=spf1 ip4:127.0.0.1 -all\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=reject\""),
        // SPF passes for bounce.D, the signature is by mail.D, From is D: aligned only
        // under relaxed alignment.
        Zone::new("relaxed.test", true)
            .record("bounce IN TXT \"v=spf1 ip4:127.0.0.1 -all\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=reject\""),
        Zone::new("strict.test", true)
            .record("bounce IN TXT \"v=spf1 ip4:127.0.0.1 -all\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\""),
        // p=none for the domain, sp=reject for its subdomains.
        Zone::new("sp.test", true).record("_dmarc IN TXT \"v=DMARC1; p=none; sp=reject\""),
        Zone::new("nodmarc.test", true).record("@ IN TXT \"v=spf1 ip4:127.0.0.1 -all\""),
        Zone::new("reject.test", true)
            .record("@ IN TXT \"v=spf1 -all exp=why.reject.test\"")
            .record("why IN TXT \"%{i} is not one of %{d}'s senders\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=reject\""),
        Zone::new("quarantine.test", true)
            .record("@ IN TXT \"v=spf1 -all\"")
            .record("_dmarc IN TXT \"v=DMARC1; p=quarantine\""),
    ];
    zones
        .into_iter()
        .map(|mut zone| {
            let name = zone.name.clone();
            for key in keys.iter().filter(|k| zone_name(k) == name) {
                zone = zone.record(&key_record(key, &name));
            }
            zone
        })
        .collect()
}

/// The DMARC case zone a key's domain belongs to (its last two labels).
fn zone_name(key: &SigningKey) -> String {
    let labels: Vec<&str> = key.domain().split('.').collect();
    labels[labels.len() - 2..].join(".")
}

/// One DMARC case: the envelope, the From domain, the signing key, and the results
/// it must get (prefixes of each resinfo).
struct Case<'a> {
    user: &'a str,
    mail_from: &'a str,
    from: &'a str,
    key: Option<&'a SigningKey>,
    spf: &'a str,
    dkim: &'a str,
    dmarc: &'a str,
    /// `--dmarc-reject` refuses it.
    refused: bool,
}

#[test]
fn dmarc_results_and_dmarc_reject() {
    let dkim_key = key("dkim.test");
    let relaxed_key = key("mail.relaxed.test");
    let strict_key = key("mail.strict.test");
    let u = Unbound::start(&dmarc_zones(&[&dkim_key, &relaxed_key, &strict_key]));
    let cases = [
        Case {
            user: "aligned-dkim",
            mail_from: "a@dkim.test",
            from: "a@dkim.test",
            key: Some(&dkim_key),
            spf: "spf=fail smtp.mailfrom=a@dkim.test",
            dkim: "dkim=pass header.d=dkim.test header.s=sel header.b=",
            dmarc: "dmarc=pass (p=reject dis=none) header.from=dkim.test",
            refused: false,
        },
        Case {
            user: "aligned-spf",
            mail_from: "a@spf.test",
            from: "a@spf.test",
            key: None,
            spf: "spf=pass smtp.mailfrom=a@spf.test",
            dkim: "dkim=none",
            dmarc: "dmarc=pass (p=reject dis=none) header.from=spf.test",
            refused: false,
        },
        Case {
            user: "relaxed",
            mail_from: "a@bounce.relaxed.test",
            from: "a@relaxed.test",
            key: Some(&relaxed_key),
            spf: "spf=pass smtp.mailfrom=a@bounce.relaxed.test",
            dkim: "dkim=pass header.d=mail.relaxed.test",
            dmarc: "dmarc=pass (p=reject dis=none) header.from=relaxed.test",
            refused: false,
        },
        Case {
            user: "strict",
            mail_from: "a@bounce.strict.test",
            from: "a@strict.test",
            key: Some(&strict_key),
            spf: "spf=pass smtp.mailfrom=a@bounce.strict.test",
            dkim: "dkim=pass header.d=mail.strict.test",
            dmarc: "dmarc=fail (p=reject dis=reject) header.from=strict.test",
            refused: true,
        },
        Case {
            user: "subdomain-sp",
            mail_from: "a@sub.sp.test",
            from: "a@sub.sp.test",
            key: None,
            spf: "spf=none smtp.mailfrom=a@sub.sp.test",
            dkim: "dkim=none",
            dmarc: "dmarc=fail (p=reject dis=reject) header.from=sub.sp.test",
            refused: true,
        },
        Case {
            user: "organisational-p",
            mail_from: "a@sp.test",
            from: "a@sp.test",
            key: None,
            spf: "spf=none smtp.mailfrom=a@sp.test",
            dkim: "dkim=none",
            dmarc: "dmarc=fail (p=none dis=none) header.from=sp.test",
            refused: false,
        },
        Case {
            user: "no-record",
            mail_from: "a@nodmarc.test",
            from: "a@nodmarc.test",
            key: None,
            spf: "spf=pass smtp.mailfrom=a@nodmarc.test",
            dkim: "dkim=none",
            dmarc: "dmarc=none header.from=nodmarc.test",
            refused: false,
        },
        Case {
            user: "p-reject",
            mail_from: "a@reject.test",
            from: "a@reject.test",
            key: None,
            spf: "spf=fail smtp.mailfrom=a@reject.test",
            dkim: "dkim=none",
            dmarc: "dmarc=fail (p=reject dis=reject) header.from=reject.test",
            refused: true,
        },
        Case {
            user: "quarantine",
            mail_from: "a@quarantine.test",
            from: "a@quarantine.test",
            key: None,
            spf: "spf=fail smtp.mailfrom=a@quarantine.test",
            dkim: "dkim=none",
            dmarc: "dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test",
            refused: false,
        },
    ];
    let reporting = checked_server(&u, &[]);
    let enforcing = checked_server(&u, &["--dmarc-reject"]);
    for case in &cases {
        let rcpt = format!("{}@{}", case.user, common::DOMAIN);
        let msg = message(case.from, &rcpt, case.user);
        let content = match case.key {
            Some(k) => signed(&msg, k),
            None => msg,
        };
        // Without --dmarc-reject every case is accepted, with its results.
        let r = send(&reporting, case.mail_from, &rcpt, &content);
        assert_eq!(r.code, 250, "{}: {r:?}", case.user);
        let ar = our_results(&reporting, case.user);
        let parts: Vec<&str> = ar.split("; ").collect();
        assert_eq!(parts.len(), 4, "{}: {ar}", case.user);
        assert_eq!(parts[0], US);
        for (part, want) in parts[1..].iter().zip([case.spf, case.dkim, case.dmarc]) {
            assert!(part.starts_with(want), "{}: {part:?} in {ar}", case.user);
        }
        let summary = format!(
            "auth=spf:{},dkim:{},dmarc:{}",
            word(case.spf),
            word(case.dkim),
            word(case.dmarc)
        );
        reporting.wait_log(&format!("nrcpt=1, {summary} (queue active)"));

        // With it, only a failure under an applied p=reject is refused: 550, nothing
        // queued or delivered.
        let r = send(&enforcing, case.mail_from, &rcpt, &content);
        if case.refused {
            assert_eq!(r.code, 550, "{}: {r:?}", case.user);
            let policy_domain = case
                .from
                .rsplit('@')
                .next()
                .unwrap()
                .trim_start_matches("sub.");
            assert_eq!(
                r.text(),
                format!(
                    "5.7.1 Message rejected: {} fails DMARC, and the DMARC policy of \
                     {policy_domain} is reject",
                    case.from.rsplit('@').next().unwrap()
                ),
            );
            assert_eq!(enforcing.queued(), 0);
            enforcing.wait_log(&format!("{}; {summary}", r.text()));
        } else {
            assert_eq!(r.code, 250, "{}: {r:?}", case.user);
            assert_eq!(our_results(&enforcing, case.user), ar);
        }
    }
    for case in cases.iter().filter(|c| c.refused) {
        assert!(enforcing.delivered(case.user).is_empty(), "{}", case.user);
    }
}

/// The result word of a resinfo: `dkim=pass header.d=...` → `pass`.
fn word(resinfo: &str) -> &str {
    resinfo.split(['=', ' ']).nth(1).unwrap()
}

#[test]
fn spf_reject_refuses_at_rcpt_with_the_domains_explanation() {
    let u = Unbound::start(&dmarc_zones(&[]));
    let s = checked_server(&u, &["--spf-reject"]);
    // swaks from 127.0.0.5: reject.test's record names nobody, and explains.
    let (code, out) = swaks(&[
        "--server",
        &s.smtp,
        "--local-interface",
        "127.0.0.5",
        "--from",
        "a@reject.test",
        "--to",
        "user@example.test",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(
            "<** 550 5.7.23 <a@reject.test>: Sender address rejected: SPF fail: \
             127.0.0.5 is not one of reject.test's senders"
        ),
        "{out}"
    );
    assert!(!out.contains("DATA"), "refused at RCPT: {out}");
    // spf.test allows 127.0.0.1 only; from 127.0.0.6 it fails, in our own words.
    let (_, out) = swaks(&[
        "--server",
        &s.smtp,
        "--local-interface",
        "127.0.0.6",
        "--from",
        "a@spf.test",
        "--to",
        "user@example.test",
    ]);
    assert!(
        out.contains(
            "<** 550 5.7.23 <a@spf.test>: Sender address rejected: SPF fail: \
             spf.test does not designate 127.0.0.6 as permitted sender"
        ),
        "{out}"
    );
    s.wait_log("NOQUEUE: reject: RCPT from unknown[127.0.0.6]: 550 5.7.23");
    // From 127.0.0.1 it passes; softfail and none are never refused.
    let msg = message("a@spf.test", "user@example.test", "spf-pass");
    assert_eq!(send(&s, "a@spf.test", "user@example.test", &msg).code, 250);
    assert!(our_results(&s, "user").contains("spf=pass smtp.mailfrom=a@spf.test"));
    let msg = message("a@sp.test", "none@example.test", "spf-none");
    assert_eq!(send(&s, "a@sp.test", "none@example.test", &msg).code, 250);
    assert!(our_results(&s, "none").contains("spf=none smtp.mailfrom=a@sp.test"));

    // Without --spf-reject the fail is only reported.
    let open = checked_server(&u, &[]);
    let msg = message("a@reject.test", "user@example.test", "spf-fail");
    assert_eq!(
        send(&open, "a@reject.test", "user@example.test", &msg).code,
        250
    );
    assert!(our_results(&open, "user").starts_with(&format!(
        "{US}; spf=fail smtp.mailfrom=a@reject.test; dkim=none; dmarc=fail"
    )));
}

#[test]
fn forged_results_are_removed_and_trusted_clients_get_none() {
    let u = Unbound::start(&dmarc_zones(&[]));
    let s = checked_server(&u, &[]);
    let msg = message("a@spf.test", "user@example.test", "forged");
    let forged = format!(
        "Authentication-Results: {};\r\n\tspf=pass smtp.mailfrom=a@spf.test;\r\n\tdmarc=pass\r\n\
         Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=a@spf.test\r\n\
         authentication-results: (looks official) {US}; dkim=pass header.d=spf.test\r\n{msg}",
        US.to_uppercase()
    );
    assert_eq!(
        send(&s, "a@spf.test", "user@example.test", &forged).code,
        250
    );
    let delivered = &s.wait_delivered("user", 1)[0];
    let fields = results(delivered);
    assert_eq!(fields.len(), 2, "{delivered}");
    assert!(
        fields[0].starts_with(&format!("{US}; spf=pass")),
        "{delivered}"
    );
    assert_eq!(
        fields[1],
        "relay.other.test; spf=pass smtp.mailfrom=a@spf.test"
    );
    assert!(!delivered.contains("looks official"), "{delivered}");
    assert!(delivered.contains("Subject: forged\r\n"), "{delivered}");
    s.wait_log(
        "removed 2 Authentication-Results field(s) with our authserv-id from unknown[127.0.0.1]",
    );

    // A header section over 64 KB is refused after DATA; the session goes on.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let filler = format!("X-Filler: {}\r\n", "y".repeat(900)).repeat(80);
    let r = c.send_mail(
        "a@spf.test",
        &["big@example.test"],
        &format!("{filler}{msg}"),
    );
    assert_eq!(
        (r.code, r.text()),
        (
            552,
            "5.3.4 Error: message header section exceeds 64 KB".to_string()
        )
    );
    let r = c.send_mail("a@spf.test", &["small@example.test"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_delivered("small", 1);
    assert!(s.delivered("big").is_empty());

    // From the relay network (the default 127.0.0.0/8): no checks, no field; a
    // forged field is the business of whoever we relay to.
    let trusted = Server::start(&["--resolver", &u.addr]);
    assert_eq!(
        send(&trusted, "a@spf.test", "user@example.test", &forged).code,
        250
    );
    let delivered = &trusted.wait_delivered("user", 1)[0];
    assert_eq!(results(delivered).len(), 3, "{delivered}");
    assert!(!trusted.log().contains("auth="));

    // Logged in (port 25, STARTTLS, AUTH) from outside the relay network: none either.
    let dir = TempDir::new("mailauth-users");
    let users = dir.path().join("users");
    let out = run_with_timeout(
        tinymta_command().args(["passwd", "alice", "--iterations", "1000"]),
        Some(b"wonderland\n"),
        std::time::Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&users, &out.stdout).unwrap();
    let s = checked_server(&u, &["--auth-file", users.to_str().unwrap()]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(true);
    let login = openssl::base64::encode_block(b"\0alice\0wonderland");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {login}")).code, 235);
    let r = c.send_mail("alice@example.test", &["user@example.test"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let delivered = &s.wait_delivered("user", 1)[0];
    assert!(results(delivered).is_empty(), "{delivered}");
}

#[test]
fn dns_failures_are_temperror_and_the_server_stays_responsive() {
    let key = key("spf.test");
    let msg = signed(
        &message("a@spf.test", "user@example.test", "dns-down"),
        &key,
    );
    // Nobody at the resolver's port: every lookup fails at once.
    let closed = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let s = Server::start(&["--relay-network", NOT_LOOPBACK, "--resolver", &closed]);
    assert_eq!(send(&s, "a@spf.test", "user@example.test", &msg).code, 250);
    let ar = our_results(&s, "user");
    assert!(
        ar.starts_with(&format!("{US}; spf=temperror reason=")),
        "{ar}"
    );
    assert!(
        ar.contains("; dkim=temperror reason=\"key lookup: "),
        "{ar}"
    );
    assert!(ar.contains("; dmarc=temperror"), "{ar}");
    s.wait_log("auth=spf:temperror,dkim:temperror,dmarc:temperror");

    // A resolver that never answers (a socket nobody reads): the checks end at the
    // message's deadline, with temperror; meanwhile other sessions are served.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let s = Server::start(&[
        "--relay-network",
        NOT_LOOPBACK,
        "--resolver",
        &silent_addr,
        "--dmarc-reject",
        "--spf-reject",
    ]);
    let mut slow = Client::greeted(&s.smtp);
    slow.set_read_timeout(std::time::Duration::from_secs(60));
    slow.ehlo(false);
    assert_eq!(slow.cmd("MAIL FROM:<a@spf.test>").code, 250);
    // The RCPT waits for SPF, and SPF for the resolver...
    slow.send("RCPT TO:<user@example.test>");
    // ... while other sessions are served.
    for _ in 0..3 {
        let mut c = Client::greeted(&s.smtp);
        assert_eq!(c.cmd("EHLO other.test").code, 250);
        assert_eq!(c.cmd("NOOP").code, 250);
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = slow.reply();
    assert_eq!(r.code, 250, "temperror refuses nothing: {r:?}");
    assert_eq!(slow.cmd("DATA").code, 354);
    slow.raw(msg.as_bytes());
    slow.raw(b".\r\n");
    let r = slow.reply();
    assert_eq!(r.code, 250, "temperror refuses nothing: {r:?}");
    let ar = our_results(&s, "user");
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(ar.contains("dkim=temperror"), "{ar}");
    assert!(ar.contains("dmarc=temperror"), "{ar}");
    drop(silent);
}

#[test]
fn dkimpy_signed_mail_passes_dkim_and_dmarc() {
    let dir = TempDir::new("mailauth-dkimpy");
    let pkey = PKey::generate_ed25519().unwrap();
    let pem_path = dir.path().join("ed.pem");
    std::fs::write(&pem_path, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let ours = SigningKey::new("dkim.test", "sel", pkey).unwrap();
    let u = Unbound::start(&dmarc_zones(&[&ours]));
    let s = checked_server(&u, &["--dmarc-reject"]);
    // dkimpy's signature field for `msg` (extra arguments after the key's), CRLF.
    let signed_by_dkimpy = |msg: &str, extra: &[&str]| {
        let mut args = vec![
            "sign",
            "--key",
            path(&pem_path),
            "--domain",
            "dkim.test",
            "--selector",
            "sel",
            "--algorithm",
            "ed25519-sha256",
        ];
        args.extend_from_slice(extra);
        let field = dkimpy(&args, msg.as_bytes());
        field.replace("\r\n", "\n").replace('\n', "\r\n")
    };
    for (user, canon) in [("simple", "simple/simple"), ("relaxed", "relaxed/relaxed")] {
        let msg = message("a@dkim.test", &format!("{user}@example.test"), user);
        let content = signed_by_dkimpy(&msg, &["--canon", canon]) + &msg;
        let r = send(&s, "a@dkim.test", &format!("{user}@example.test"), &content);
        assert_eq!(r.code, 250, "{canon}: {r:?}");
        let ar = our_results(&s, user);
        assert!(
            ar.contains("; dkim=pass header.d=dkim.test header.s=sel header.b="),
            "{canon}: {ar}"
        );
        assert!(ar.contains("; dmarc=pass"), "{canon}: {ar}");
    }
    // The same signature over a body changed on the way: dkim=fail, and DMARC (SPF
    // fails too) refuses it under p=reject.
    let msg = message("a@dkim.test", "user@example.test", "tampered");
    let content = signed_by_dkimpy(&msg, &[]) + &msg.replace("Hello", "Bye");
    let r = send(&s, "a@dkim.test", "user@example.test", &content);
    assert_eq!(r.code, 550, "{r:?}");
    s.wait_log("auth=spf:fail,dkim:fail,dmarc:fail");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
