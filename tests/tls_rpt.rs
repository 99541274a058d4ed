//! TLS reporting (RFC 8460): a sending tinymta delivers to DANE-authenticated MX hosts
//! (a signed zone with TLSA), to one whose certificate does not match its TLSA record,
//! to a plain domain with STARTTLS and to one without; every domain publishes
//! `_smtp._tls` with a `mailto:` rua at reports.test, a tinymta receiver. The sender is
//! restarted between the traffic and the report (the counters are in the state
//! directory); the restart with a short `--tls-rpt-interval` reports the day so far.
//! Each report must arrive as `multipart/report; report-type=tlsrpt` with the RFC's
//! headers, gunzip (with gzip(1)), hold every required JSON field (parsed by
//! serde_json) with the counts of the sessions the sender's log shows, and verify with
//! dkimpy against the key unbound serves.
//!
//! The `dkimpy_` prefix keeps it to the host (cross/test skips it): dkimpy runs there.

mod common;

use std::time::{Duration, Instant};

use common::dkim::{dkimpy_verify, keygen};
use common::dns::{Unbound, Zone};
use common::{certs, free_port, run_with_timeout, Server, TempDir, DOMAIN};
use serde_json::Value;

const RUA: &str = "tlsrpt@reports.test";

fn tlsrpt_record() -> String {
    format!("_smtp._tls IN TXT \"v=TLSRPTv1; rua=mailto:{RUA}\"")
}

/// The header section of a message, unfolded, as (lower-case name, value) pairs.
fn header_fields(msg: &str) -> Vec<(String, String)> {
    let head = msg.split("\r\n\r\n").next().unwrap();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

fn field(msg: &str, name: &str) -> String {
    header_fields(msg)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}: in\n{msg}"))
}

/// The report attachment: the base64 body of the `application/tlsrpt+gzip` part, its
/// part header, decoded.
fn attachment(msg: &str) -> (String, Vec<u8>) {
    let at = msg
        .find("Content-Type: application/tlsrpt+gzip")
        .unwrap_or_else(|| panic!("no tlsrpt+gzip part in\n{msg}"));
    let part = &msg[at..];
    let (head, body) = part.split_once("\r\n\r\n").unwrap();
    let b64: String = body
        .lines()
        .take_while(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .concat();
    let gz = openssl::base64::decode_block(b64.trim()).expect("base64");
    (head.to_string(), gz)
}

/// gunzip with gzip(1), an implementation other than ours.
fn gunzip(dir: &TempDir, gz: &[u8]) -> Vec<u8> {
    let out = run_with_timeout(
        std::process::Command::new("gzip").args(["-dc"]),
        Some(gz),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "gzip -dc failed ({})",
        dir.path().display()
    );
    out.stdout
}

/// Lines of the sender's log containing `needle`.
fn count(log: &str, needle: &str) -> u64 {
    log.lines().filter(|l| l.contains(needle)).count() as u64
}

/// The one policy of `kind` in a report.
fn policy<'a>(report: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = report["policies"]
        .as_array()
        .expect("policies is an array")
        .iter()
        .filter(|p| p["policy"]["policy-type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "{kind} policies in {report:#}");
    found[0]
}

fn summary(p: &Value) -> (u64, u64) {
    let s = &p["summary"];
    (
        s["total-successful-session-count"]
            .as_u64()
            .expect("successful count"),
        s["total-failure-session-count"]
            .as_u64()
            .expect("failure count"),
    )
}

#[test]
fn dkimpy_reports_after_a_restart_count_the_sessions_and_verify() {
    let dir = TempDir::new("tlsrpt");
    let port = free_port("127.0.0.1");
    let rx = |ip: &str, domain: &str, extra: &[&str]| {
        let mut args = vec!["--domain", domain];
        args.extend_from_slice(extra);
        Server::start_at(&format!("{ip}:{port}"), &args)
    };
    let dane = rx("127.0.0.41", "dane.test", &[]);
    let forged = rx("127.0.0.42", "forged.test", &[]);
    let plain = rx("127.0.0.43", "plain.test", &[]);
    let notls = rx("127.0.0.44", "notls.test", &["--tls-level", "none"]);
    let reports = rx("127.0.0.45", "reports.test", &[]);
    // The ECDSA demonstration certificate: the one tinymta's TLS 1.3 client is sent.
    let tlsa = certs::spki_sha256(&dane.state.join("tls/demo-ec-cert.pem"));
    let key = keygen(dir.path(), DOMAIN, "s1", false);
    let mx = |z: Zone, ip: &str| {
        z.record("@ IN MX 10 mx")
            .record(&format!("mx IN A {ip}"))
            .record(&tlsrpt_record())
    };
    let u = Unbound::start(&[
        mx(Zone::new("dane.test", true), "127.0.0.41")
            .record(&format!("_{port}._tcp.mx IN TLSA 3 1 1 {tlsa}")),
        // forged.test publishes dane.test's key; its MX has a certificate of its own.
        mx(Zone::new("forged.test", true), "127.0.0.42")
            .record(&format!("_{port}._tcp.mx IN TLSA 3 1 1 {tlsa}")),
        mx(Zone::new("plain.test", false), "127.0.0.43"),
        mx(Zone::new("notls.test", false), "127.0.0.44"),
        Zone::new("reports.test", false)
            .record("@ IN MX 10 mx")
            .record("mx IN A 127.0.0.45"),
        Zone::new(DOMAIN, false).record(&key.zone_line),
    ]);
    let port_s = port.to_string();
    let dkim = key.flag("s1");
    let mut s = Server::start(&[
        "--resolver",
        &u.addr,
        "--mx-port",
        &port_s,
        "--tls-default-level",
        "dane",
        // No retry of the deferred messages while the test runs.
        "--retry-min",
        "3600",
        "--dkim-key",
        &dkim,
        "--tls-rpt-org",
        "Test \"Org\"",
        "--tls-rpt-contact",
        "tlsrpt@example.test",
    ]);

    let send = |to: &str| {
        let id = s.submit(
            "sender@example.test",
            &[to],
            "Subject: tls-rpt traffic\r\n\r\nhello",
        );
        s.wait_log(&format!("{id}: to=<{to}>"))
    };
    let sent = |to: &str| {
        let line = send(to);
        assert!(line.contains("status=sent"), "{line}");
    };
    for _ in 0..2 {
        sent("user@dane.test");
        sent("user@plain.test");
        let line = send("user@forged.test");
        assert!(line.contains("status=deferred"), "{line}");
    }
    sent("user@notls.test");
    dane.wait_delivered_in("dane.test", "user", 2);
    plain.wait_delivered_in("plain.test", "user", 2);
    notls.wait_delivered_in("notls.test", "user", 1);
    assert!(forged.delivered_in("forged.test", "user").is_empty());

    // The sessions the sender made, as its log shows them (a reused connection is
    // the same session).
    let log = s.log();
    let port_tail = format!("]:{port}");
    let dane_sessions = count(
        &log,
        &format!("Verified TLS connection established to mx.dane.test[127.0.0.41{port_tail}"),
    );
    let plain_sessions = count(
        &log,
        &format!("TLS connection established to mx.plain.test[127.0.0.43{port_tail}"),
    );
    let forged_failures = count(&log, "to=<user@forged.test>");
    assert!(dane_sessions >= 1 && plain_sessions >= 1, "{log}");
    assert_eq!(forged_failures, 2);
    assert_eq!(
        count(&log, "TLS report for"),
        0,
        "no report before the day ends"
    );

    // Counters survive the restart: the new process reports the day so far at once
    // (a period of another length has ended for it).
    assert_eq!(s.stop(), Some(0));
    s.extra
        .extend(["--tls-rpt-interval".to_string(), "2".to_string()]);
    s.spawn();

    let start = Instant::now();
    let got = loop {
        let got = reports.delivered_in("reports.test", "tlsrpt");
        if got.len() >= 4 {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of 4 reports arrived (sender state {} exists: {}); sender log:\n{}",
            got.len(),
            s.state.display(),
            s.state.exists(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let today = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        now - now % 86_400
    };
    let mut seen = Vec::new();
    for msg in &got {
        let domain = field(msg, "tls-report-domain");
        seen.push(domain.clone());
        assert_eq!(field(msg, "tls-report-submitter"), DOMAIN);
        // RFC 8460 §5.3: delivered despite TLS failures, i.e. with RFC 8689's relaxation.
        assert_eq!(field(msg, "tls-required"), "No");
        let content_type = field(msg, "content-type").replace('"', "");
        assert!(
            content_type.starts_with("multipart/report; report-type=tlsrpt;"),
            "{content_type}"
        );
        let subject = field(msg, "subject");
        assert!(
            subject.starts_with(&format!(
                "Report Domain: {domain} Submitter: {DOMAIN} Report-ID: <"
            )),
            "{subject}"
        );
        assert!(field(msg, "from").contains("<tlsrpt@example.test>"));
        assert!(
            msg.contains("Content-Type: text/plain"),
            "a human-readable part"
        );

        let (part, gz) = attachment(msg);
        let json = gunzip(&dir, &gz);
        let report: Value = serde_json::from_slice(&json).expect("the report is JSON");
        // §5.1 file name: submitter!policy-domain!begin!end[!unique-id].json.gz
        let filename = part
            .split("filename=\"")
            .nth(1)
            .and_then(|f| f.split('"').next())
            .unwrap_or_else(|| panic!("no filename in {part}"));
        let name_parts: Vec<&str> = filename.trim_end_matches(".json.gz").split('!').collect();
        assert_eq!(name_parts[..2], [DOMAIN, domain.as_str()], "{filename}");
        assert_eq!(name_parts[2], today.to_string(), "{filename}");
        assert!(filename.ends_with(".json.gz"));

        // Every required field of §4.4.
        assert_eq!(report["organization-name"], "Test \"Org\"");
        assert_eq!(report["contact-info"], "tlsrpt@example.test");
        assert!(report["report-id"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(subject.contains(&format!("<{}>", report["report-id"].as_str().unwrap())));
        let range = &report["date-range"];
        let start_dt = range["start-datetime"].as_str().expect("start-datetime");
        assert!(start_dt.ends_with("T00:00:00Z"), "{start_dt}");
        assert!(range["end-datetime"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z') && e > start_dt));
        for p in report["policies"].as_array().unwrap() {
            assert_eq!(p["policy"]["policy-domain"], domain.as_str());
            assert!(p["policy"]["policy-type"].is_string());
            summary(p);
        }

        match domain.as_str() {
            "dane.test" => {
                let p = policy(&report, "tlsa");
                assert_eq!(summary(p), (dane_sessions, 0), "{report:#}");
                assert_eq!(p["policy"]["policy-string"][0], format!("3 1 1 {tlsa}"));
                assert_eq!(p["policy"]["mx-host"], "mx.dane.test");
                assert_eq!(report["policies"].as_array().unwrap().len(), 1);
            }
            "forged.test" => {
                let p = policy(&report, "tlsa");
                assert_eq!(summary(p), (0, forged_failures), "{report:#}");
                let details = p["failure-details"].as_array().expect("failure-details");
                assert_eq!(details.len(), 1, "{report:#}");
                let d = &details[0];
                assert_eq!(d["result-type"], "tlsa-invalid");
                assert_eq!(d["receiving-mx-hostname"], "mx.forged.test");
                assert_eq!(d["receiving-ip"], "127.0.0.42");
                let sending: std::net::IpAddr =
                    d["sending-mta-ip"].as_str().unwrap().parse().unwrap();
                assert!(sending.is_loopback(), "{sending}");
                assert_eq!(d["failed-session-count"], forged_failures);
            }
            "plain.test" => {
                let p = policy(&report, "no-policy-found");
                assert_eq!(summary(p), (plain_sessions, 0), "{report:#}");
                assert!(p["policy"].get("policy-string").is_none());
            }
            "notls.test" => {
                let p = policy(&report, "no-policy-found");
                assert_eq!(summary(p), (0, 1), "{report:#}");
                assert_eq!(
                    p["failure-details"][0]["result-type"],
                    "starttls-not-supported"
                );
                assert_eq!(p["failure-details"][0]["receiving-ip"], "127.0.0.44");
            }
            other => panic!("a report for {other}"),
        }

        let verdicts = dkimpy_verify(&u, msg.as_bytes());
        assert_eq!(verdicts, vec![Ok(())], "dkimpy on the {domain} report");
    }
    seen.sort();
    assert_eq!(
        seen,
        ["dane.test", "forged.test", "notls.test", "plain.test"]
    );
    // The sessions that carried the reports are not counted, and a period without
    // sessions makes no report: nothing more arrives.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        reports.delivered_in("reports.test", "tlsrpt").len(),
        4,
        "{}",
        s.log()
    );
    // Nothing of the reported day is left in the state directory.
    let left: Vec<_> = std::fs::read_dir(s.state.join("tlsrpt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&today.to_string()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
