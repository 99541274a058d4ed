//! MTA-STS (RFC 8461) end to end, in a network namespace of the test's own: unbound on
//! port 53 serving the `_mta-sts` TXT, MX and address records (one zone DNSSEC-signed
//! with TLSA records), a Python `http.server` wrapped in `ssl` on port 443 of each
//! `mta-sts.DOMAIN` address serving the policies with a certificate from a test CA,
//! and tinymta receivers as the MX hosts (a certificate from the CA, a self-signed
//! one, an expired one, and one that offers no STARTTLS). A tinymta sender in the
//! namespace delivers to each domain; what each receiver got and the sender's log
//! show what the policy did. `postfix-mta-sts-resolver`'s `mta-sts-query`, an
//! independent implementation, must find the same policies as `tinymta check-tls`.
//! Needs root (`ip netns`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{self, CertPair};
use common::dns::{Unbound, Zone};
use common::netns::{Netns, NsDaemon};
use common::{output_text, run_with_timeout, TempDir};

/// The policy server: one listener per policy host address, each serving the
/// `mta-sts.txt` of its directory. Marker files in the directory change the answer:
/// `chunked` (Transfer-Encoding: chunked), `redirect` (301). No `mta-sts.txt`: 404.
/// Requests are logged as `HOST PATH` lines.
const POLICY_SERVER: &str = r#"
import http.server, os, ssl, sys, threading
cert, key, log = sys.argv[1:4]
class Policy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        d = self.server.policy_dir
        with open(log, "a") as f:
            f.write("%s %s\n" % (self.headers.get("Host"), self.path))
        path = os.path.join(d, "mta-sts.txt")
        self.close_connection = True
        if os.path.exists(os.path.join(d, "redirect")):
            self.send_response(301)
            self.send_header("Location", "https://elsewhere.test/.well-known/mta-sts.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/.well-known/mta-sts.txt" or not os.path.exists(path):
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if os.path.exists(os.path.join(d, "chunked")):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 16):
                c = body[i:i + 16]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def log_message(self, *args):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
for spec in sys.argv[4:]:
    ip, d = spec.split("=", 1)
    s = http.server.ThreadingHTTPServer((ip, 443), Policy)
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
    s.policy_dir = d
    threading.Thread(target=s.serve_forever, daemon=True).start()
with open(log, "a") as f:
    f.write("ready\n")
threading.Event().wait()
"#;

/// The policy domains of the test, each with the address of its policy host.
const POLICY_DOMAINS: &[(&str, &str)] = &[
    ("good.test", "127.0.1.1"),
    ("nomatch-e.test", "127.0.1.2"),
    ("nomatch-t.test", "127.0.1.3"),
    ("forged-e.test", "127.0.1.4"),
    ("forged-t.test", "127.0.1.5"),
    ("expired-e.test", "127.0.1.6"),
    ("expired-t.test", "127.0.1.7"),
    ("strip-e.test", "127.0.1.8"),
    ("strip-t.test", "127.0.1.9"),
    ("cached.test", "127.0.1.10"),
    ("changing.test", "127.0.1.11"),
    ("dane.test", "127.0.1.12"),
    ("table.test", "127.0.1.13"),
];

fn policy_text(mode: &str, mx: &[&str]) -> String {
    let mut t = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        t.push_str(&format!("mx: {m}\r\n"));
    }
    t.push_str("max_age: 86400\r\n");
    t
}

/// The Python policy server, killed by PID on drop.
struct PolicyServer {
    child: Child,
    log: PathBuf,
}

impl PolicyServer {
    fn start(ns: &Netns, dir: &Path, cert: &CertPair) -> PolicyServer {
        let script = dir.join("policy_server.py");
        fs::write(&script, POLICY_SERVER).unwrap();
        let log = dir.join("https.log");
        let mut cmd = ns.command("python3");
        cmd.arg(&script).arg(&cert.cert).arg(&cert.key).arg(&log);
        for (domain, ip) in POLICY_DOMAINS {
            cmd.arg(format!("{ip}={}", dir.join(domain).display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("https.stderr")).unwrap())
            .spawn()
            .unwrap();
        let s = PolicyServer { child, log };
        let start = Instant::now();
        while !s.requests().contains("ready") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "policy server did not start: {}",
                fs::read_to_string(dir.join("https.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn requests(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the policy of `domain` was asked for.
    fn fetches(&self, domain: &str) -> usize {
        self.requests()
            .lines()
            .filter(|l| l.starts_with(&format!("mta-sts.{domain} ")))
            .count()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate for `name` signed by `ca` that expired yesterday (through the
/// openssl crate: `openssl x509 -req` cannot date a certificate in the past).
fn expired_signed_by(dir: &Path, ca: &CertPair, name: &str) -> CertPair {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder, X509};

    let ca_cert = X509::from_pem(&fs::read(&ca.cert).unwrap()).unwrap();
    let ca_key = PKey::private_key_from_pem(&fs::read(&ca.key).unwrap()).unwrap();
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut subject = X509NameBuilder::new().unwrap();
    subject.append_entry_by_text("CN", name).unwrap();
    let subject = subject.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(ca_cert.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    // Thirty days ago to one day ago.
    let ago = |days: u32| {
        let out = run_with_timeout(
            Command::new("date").args(["-u", "-d", &format!("{days} days ago"), "+%Y%m%d%H%M%SZ"]),
            None,
            Duration::from_secs(10),
        );
        Asn1Time::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    };
    b.set_not_before(&ago(30)).unwrap();
    b.set_not_after(&ago(1)).unwrap();
    let san = SubjectAlternativeName::new()
        .dns(name)
        .build(&b.x509v3_context(Some(&ca_cert), None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let pair = CertPair {
        cert: dir.join("expired.pem"),
        key: dir.join("expired.key"),
    };
    let mut pem = cert.to_pem().unwrap();
    pem.extend(ca_cert.to_pem().unwrap());
    fs::write(&pair.cert, pem).unwrap();
    fs::write(&pair.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    pair
}

/// A certificate for all of `names` signed by `ca` (the policy hosts share one).
fn signed_for_names(dir: &Path, ca: &CertPair, tag: &str, names: &[String]) -> CertPair {
    let key = dir.join(format!("{tag}.key"));
    let csr = dir.join(format!("{tag}.csr"));
    let cert = dir.join(format!("{tag}.pem"));
    let ext = dir.join(format!("{tag}.ext"));
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    fs::write(
        &ext,
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )
    .unwrap();
    certs::key_and_request(&key, &csr, &format!("/CN={}", names[0]));
    certs::sign_request(&csr, &ca.cert, &ca.key, 30, Some(&ext), &cert);
    CertPair { cert, key }
}

/// Every domain the receivers accept mail for.
const RECIPIENT_DOMAINS: &[&str] = &[
    "good.test",
    "nomatch-e.test",
    "nomatch-t.test",
    "forged-e.test",
    "forged-t.test",
    "expired-e.test",
    "expired-t.test",
    "strip-e.test",
    "strip-t.test",
    "cached.test",
    "changing.test",
    "dane.test",
    "table.test",
];

fn receiver(ns: &Netns, ip: &str, hostname: &str, tls: &[String]) -> NsDaemon {
    let mut args: Vec<String> = [
        "--smtp",
        &format!("{ip}:25"),
        "--submission",
        &format!("{ip}:587"),
        "--smtps",
        &format!("{ip}:465"),
        "--hostname",
        hostname,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for d in RECIPIENT_DOMAINS {
        args.extend(["--domain".to_string(), d.to_string()]);
    }
    args.extend(tls.iter().cloned());
    NsDaemon::start(ns, "sts-rx", &args)
}

/// The zones; `phase` 2 changes `cached.test` (a new id whose policy cannot be
/// fetched, and an MX outside its patterns in front) and `changing.test` (a new id).
fn zones(phase: u32, dane_tlsa: &str) -> Vec<Zone> {
    let sts = |z: Zone, domain: &str, id: &str| {
        let ip = POLICY_DOMAINS.iter().find(|(d, _)| *d == domain).unwrap().1;
        z.record(&format!("_mta-sts IN TXT \"v=STSv1; id={id}\""))
            .record(&format!("mta-sts IN A {ip}"))
    };
    let mx_to = |domain: &str, signed: bool, mx: &[&str], id: &str| {
        let mut z = Zone::new(domain, signed);
        for (i, m) in mx.iter().enumerate() {
            z = z.record(&format!("@ IN MX {} {m}.", 10 * (i + 1)));
        }
        sts(z, domain, id)
    };
    vec![
        Zone::new("hosts.test", false)
            .record("mx1 IN A 127.0.0.2")
            .record("outside IN A 127.0.0.3")
            .record("forged IN A 127.0.0.4")
            .record("expired IN A 127.0.0.5")
            .record("plain IN A 127.0.0.6"),
        // The outside MX first: enforce must pass it over.
        mx_to(
            "good.test",
            false,
            &["outside.hosts.test", "mx1.good.test"],
            "g1",
        )
        .record("mx1 IN A 127.0.0.2"),
        mx_to("nomatch-e.test", false, &["outside.hosts.test"], "n1"),
        mx_to("nomatch-t.test", false, &["outside.hosts.test"], "n1"),
        mx_to("forged-e.test", false, &["forged.hosts.test"], "f1"),
        mx_to("forged-t.test", false, &["forged.hosts.test"], "f1"),
        mx_to("expired-e.test", false, &["expired.hosts.test"], "x1"),
        mx_to("expired-t.test", false, &["expired.hosts.test"], "x1"),
        mx_to("strip-e.test", false, &["plain.hosts.test"], "s1"),
        mx_to("strip-t.test", false, &["plain.hosts.test"], "s1"),
        if phase == 1 {
            mx_to("cached.test", false, &["mx1.hosts.test"], "c1")
        } else {
            mx_to(
                "cached.test",
                false,
                &["outside.hosts.test", "mx1.hosts.test"],
                "c2",
            )
        },
        mx_to(
            "changing.test",
            false,
            &["outside.hosts.test", "mx1.hosts.test"],
            if phase == 1 { "v1" } else { "v2" },
        ),
        // Signed, with the DANE receiver's key: DANE applies, whatever MTA-STS says.
        mx_to("dane.test", true, &["mx.dane.test"], "d1")
            .record("mx IN A 127.0.0.7")
            .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {dane_tlsa}")),
        // Signed, with a TLSA record the receiver's key does not match, and an
        // MTA-STS policy it does not meet: only the table entry lets mail through.
        mx_to("table.test", true, &["mx.table.test"], "t1")
            .record("mx IN A 127.0.0.4")
            .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {dane_tlsa}")),
    ]
}

/// Sends one message from the sender's SMTP listener with swaks (inside the
/// namespace); asserts it was queued.
fn send(ns: &Netns, to: &str) {
    let out = run_with_timeout(
        ns.command("swaks").args([
            "--server",
            "127.0.0.1:2525",
            "--from",
            "alice@example.test",
            "--to",
            to,
            "--header",
            &format!("Subject: to {to}"),
            "--body",
            "MTA-STS test",
        ]),
        None,
        Duration::from_secs(60),
    );
    let text = output_text(&out);
    assert!(text.contains("queued as"), "{text}");
}

/// Sends one message with `MAIL FROM:<...> REQUIRETLS` (inside TLS, as RFC 8689 asks)
/// with Python's smtplib in the namespace; asserts it was accepted.
fn send_requiretls(ns: &Netns, to: &str) {
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", 2525, timeout=30)
s.starttls(context=ctx)
s.sendmail("alice@example.test", [sys.argv[1]],
           b"Subject: requiretls\r\n\r\nbody\r\n", mail_options=["REQUIRETLS"])
s.quit()
print("accepted")
"#;
    let out = run_with_timeout(
        ns.command("python3").args(["-c", script, to]),
        None,
        Duration::from_secs(60),
    );
    let text = output_text(&out);
    assert!(text.contains("accepted"), "{text}");
}

/// Waits (bounded) until `rx` holds `n` messages for `user@domain`.
fn wait_delivered(rx: &NsDaemon, domain: &str, n: usize, sender: &NsDaemon) {
    let start = Instant::now();
    while rx.delivered(domain, "user").len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{domain}: {} of {n} messages at the receiver; sender log:\n{}",
            rx.delivered(domain, "user").len(),
            sender.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `mta-sts:` lines of check-tls, as (mode, mx patterns).
fn check_tls_policy(out: &str) -> (String, Vec<String>) {
    let mode = out
        .lines()
        .find_map(|l| l.strip_prefix("mta-sts: mode: "))
        .unwrap_or_else(|| panic!("no mode in:\n{out}"))
        .to_string();
    let mx = out
        .lines()
        .filter_map(|l| l.strip_prefix("mta-sts: mx: "))
        .map(str::to_string)
        .collect();
    (mode, mx)
}

/// `mta-sts-query`'s printed result, `(<STSFetchResult.VALID: 1>, ('ID', {'version':
/// 'STSv1', 'mode': 'enforce', 'mx': ['a', 'b'], 'max_age': 86400}))`, as (mode, mx).
fn resolver_policy(out: &str) -> (String, Vec<String>) {
    assert!(out.contains("STSFetchResult.VALID"), "{out}");
    let after = |key: &str| {
        let i = out
            .find(&format!("'{key}': "))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"));
        &out[i + key.len() + 4..]
    };
    let mode = after("mode").split('\'').nth(1).unwrap().to_string();
    let list = after("mx");
    let list = &list[1..list.find(']').unwrap()];
    let mx = list
        .split(',')
        .map(|s| s.trim().trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (mode, mx)
}

fn mta_sts_query() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/mta-sts-query");
    assert!(
        p.exists(),
        "{} is missing: `bash tests/run` installs postfix-mta-sts-resolver into .venv",
        p.display()
    );
    p
}

/// The delivery line of the sender for `rcpt` with `status`.
fn delivery_line(sender: &NsDaemon, rcpt: &str, status: &str) -> String {
    sender.wait_log(&[&format!("to=<{rcpt}>"), &format!("status={status}")])
}

#[test]
fn mta_sts_policies_are_found_cached_and_enforced() {
    let query = mta_sts_query();
    let ns = Netns::new("sts");
    let dir = TempDir::new("mta-sts");
    let d = dir.path();
    let ca = certs::ca(d, "ca");

    // The MX hosts.
    let good_cert = signed_for_names(
        d,
        &ca,
        "mx1",
        &["mx1.good.test".into(), "mx1.hosts.test".into()],
    );
    let outside_cert = certs::signed_by(d, &ca, "outside", "outside.hosts.test");
    let forged_cert = certs::self_signed(d, "forged", "forged.hosts.test");
    let expired_cert = expired_signed_by(d, &ca, "expired.hosts.test");
    let dane_cert = certs::self_signed(d, "dane", "mx.dane.test");
    let tls = |c: &CertPair| c.server_args();
    let rx_good = receiver(&ns, "127.0.0.2", "mx1.hosts.test", &tls(&good_cert));
    let rx_outside = receiver(&ns, "127.0.0.3", "outside.hosts.test", &tls(&outside_cert));
    let rx_forged = receiver(&ns, "127.0.0.4", "forged.hosts.test", &tls(&forged_cert));
    let rx_expired = receiver(&ns, "127.0.0.5", "expired.hosts.test", &tls(&expired_cert));
    let mut plain_args = vec!["--tls-level".to_string(), "none".to_string()];
    plain_args.extend(tls(&outside_cert));
    let rx_plain = receiver(&ns, "127.0.0.6", "plain.hosts.test", &plain_args);
    let rx_dane = receiver(&ns, "127.0.0.7", "mx.dane.test", &tls(&dane_cert));
    let dane_tlsa = certs::spki_sha256(&dane_cert.cert);

    // The policies.
    let policies = d.join("policies");
    let write_policy = |domain: &str, text: &str| {
        let dir = policies.join(domain);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("mta-sts.txt"), text).unwrap();
    };
    write_policy("good.test", &policy_text("enforce", &["*.good.test"]));
    for (domain, mode, mx) in [
        ("nomatch-e.test", "enforce", "mx1.good.test"),
        ("nomatch-t.test", "testing", "mx1.good.test"),
        ("forged-e.test", "enforce", "forged.hosts.test"),
        ("forged-t.test", "testing", "forged.hosts.test"),
        ("expired-e.test", "enforce", "*.hosts.test"),
        ("expired-t.test", "testing", "*.hosts.test"),
        ("strip-e.test", "enforce", "plain.hosts.test"),
        ("strip-t.test", "testing", "plain.hosts.test"),
        ("cached.test", "enforce", "mx1.hosts.test"),
        ("changing.test", "testing", "mx1.hosts.test"),
        ("dane.test", "enforce", "nothing.dane.test"),
        ("table.test", "enforce", "nothing.table.test"),
    ] {
        write_policy(domain, &policy_text(mode, &[mx]));
    }
    // One of them sent in chunks (Transfer-Encoding: chunked).
    fs::write(policies.join("changing.test/chunked"), "").unwrap();
    let hosts: Vec<String> = POLICY_DOMAINS
        .iter()
        .map(|(d, _)| format!("mta-sts.{d}"))
        .collect();
    let https_cert = signed_for_names(d, &ca, "https", &hosts);
    let https = PolicyServer::start(&ns, &policies, &https_cert);
    let unbound = Unbound::start_in(&zones(1, &dane_tlsa), Some(&ns.0));

    // The sender: DANE where TLSA is validated, MTA-STS where published, the table
    // entry for table.test over both.
    let table = d.join("tls_policy");
    fs::write(&table, "table.test  may\n").unwrap();
    let sender_args: Vec<String> = [
        "--smtp",
        "127.0.0.1:2525",
        "--submission",
        "127.0.0.1:2587",
        "--smtps",
        "127.0.0.1:2465",
        "--domain",
        "example.test",
        "--hostname",
        "sender.example.test",
        "--resolver",
        "127.0.0.1:53",
        "--tls-default-level",
        "dane",
        "--tls-policy",
        table.to_str().unwrap(),
        "--tls-ca-file",
        ca.cert.to_str().unwrap(),
        "--retry-min",
        "1",
        "--retry-max",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sender = NsDaemon::start(&ns, "sts-tx", &sender_args);

    // enforce: only the MX that matches, over verified TLS.
    send(&ns, "user@good.test");
    wait_delivered(&rx_good, "good.test", 1, &sender);
    let sent = delivery_line(&sender, "user@good.test", "sent");
    assert!(sent.contains("relay=mx1.good.test[127.0.0.2]:25"), "{sent}");
    assert!(sent.contains("sts=enforce id=g1"), "{sent}");
    sender.wait_log(&["Verified TLS connection established to mx1.good.test"]);
    sender.wait_log(&[
        "MX host outside.hosts.test is not allowed by the MTA-STS policy of good.test",
    ]);
    assert!(rx_outside.delivered("good.test", "user").is_empty());
    // The policy is in the state directory.
    let cached = fs::read_to_string(sender.state().join("mta-sts/good.test")).unwrap();
    assert!(
        cached.contains("id: g1") && cached.contains("mode: enforce"),
        "{cached}"
    );

    // Each failure defers under enforce and is delivered under testing.
    let cases: [(&str, &NsDaemon, &str); 4] = [
        (
            "nomatch",
            &rx_outside,
            "is not allowed by the MTA-STS policy",
        ),
        ("forged", &rx_forged, "server certificate not trusted"),
        ("expired", &rx_expired, "certificate has expired"),
        ("strip", &rx_plain, "TLS is required, but was not offered"),
    ];
    for (case, _, _) in &cases {
        send(&ns, &format!("user@{case}-e.test"));
        send(&ns, &format!("user@{case}-t.test"));
    }
    for (case, rx, why) in &cases {
        let (e, t) = (format!("{case}-e.test"), format!("{case}-t.test"));
        let deferred = delivery_line(&sender, &format!("user@{e}"), "deferred");
        assert!(deferred.contains(why), "{case}: {deferred}");
        assert!(deferred.contains("sts=enforce id="), "{case}: {deferred}");
        wait_delivered(rx, &t, 1, &sender);
        let sent = delivery_line(&sender, &format!("user@{t}"), "sent");
        assert!(sent.contains("sts=testing id="), "{case}: {sent}");
        assert!(
            rx.delivered(&e, "user").is_empty(),
            "{case}: enforce delivered"
        );
    }
    // REQUIRETLS: an enforce policy vouches for the MX name that unsigned DNS gave
    // (RFC 8689 §4.2.1), so the message goes; under a testing policy nothing
    // authenticates the host and it waits (4.7.30, bounced as 5.7.30 at expiry).
    send_requiretls(&ns, "user@good.test");
    wait_delivered(&rx_good, "good.test", 2, &sender);
    sender.wait_log(&[
        "requiretls: mx1.good.test[127.0.0.2]:25 is authenticated and offers REQUIRETLS",
    ]);
    send_requiretls(&ns, "user@nomatch-t.test");
    let deferred = delivery_line(&sender, "user@nomatch-t.test", "deferred");
    assert!(deferred.contains("dsn=4.7.30"), "{deferred}");
    assert_eq!(rx_outside.delivered("nomatch-t.test", "user").len(), 1);

    // The testing sessions' failures are there for the report.
    sender.wait_log(&[
        "MTA-STS forged-t.test: session with forged.hosts.test failed: certificate-not-trusted",
    ]);
    sender.wait_log(&[
        "MTA-STS strip-t.test: session with plain.hosts.test failed: starttls-not-supported",
    ]);
    // ... and in the TLS-RPT counters of the state directory (lines `RESULT\tDOMAIN\t
    // POLICY-TYPE\t...`), under policy-type sts.
    let counters: String = fs::read_dir(sender.state().join("tlsrpt"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    for (domain, result) in [
        ("forged-t.test", "certificate-not-trusted"),
        ("forged-e.test", "certificate-not-trusted"),
        ("expired-e.test", "certificate-expired"),
        ("strip-e.test", "starttls-not-supported"),
        ("nomatch-e.test", "validation-failure"),
    ] {
        assert!(
            counters
                .lines()
                .any(|l| l.starts_with(&format!("{result}\t{domain}\tsts\t"))),
            "{domain} {result}:\n{counters}"
        );
    }

    // DANE beats MTA-STS: delivered on the TLSA match, although the policy's
    // pattern excludes the host and its certificate is self-signed.
    send(&ns, "user@dane.test");
    wait_delivered(&rx_dane, "dane.test", 1, &sender);
    sender.wait_log(&["Matched DANE EE"]);
    sender.wait_log(&["Verified TLS connection established to mx.dane.test"]);
    // A policy-table entry beats both: level may, neither DANE (its TLSA does not
    // match) nor MTA-STS (no fetch at all) is consulted.
    send(&ns, "user@table.test");
    wait_delivered(&rx_forged, "table.test", 1, &sender);
    let sent = delivery_line(&sender, "user@table.test", "sent");
    assert!(!sent.contains("sts="), "{sent}");
    assert_eq!(https.fetches("table.test"), 0, "{}", https.requests());

    // Phase 1 of the cache and id cases.
    send(&ns, "user@cached.test");
    wait_delivered(&rx_good, "cached.test", 1, &sender);
    send(&ns, "user@changing.test");
    wait_delivered(&rx_outside, "changing.test", 1, &sender);
    assert_eq!(https.fetches("changing.test"), 1);
    // The policy file changes to enforce but the id does not: not fetched again.
    write_policy(
        "changing.test",
        &policy_text("enforce", &["mx1.hosts.test"]),
    );
    send(&ns, "user@changing.test");
    wait_delivered(&rx_outside, "changing.test", 2, &sender);
    assert_eq!(https.fetches("changing.test"), 1, "{}", https.requests());

    // A restart (the cache is on disk), then new ids; cached.test's policy host now
    // answers 404.
    sender.kill();
    drop(unbound);
    fs::remove_file(policies.join("cached.test/mta-sts.txt")).unwrap();
    let _unbound = Unbound::start_in(&zones(2, &dane_tlsa), Some(&ns.0));
    sender.spawn();

    // The fetch fails; the unexpired cached policy still enforces: the outside MX now
    // in front is passed over.
    send(&ns, "user@cached.test");
    wait_delivered(&rx_good, "cached.test", 2, &sender);
    sender.wait_log(&[
        "MTA-STS policy of cached.test (id c2) not fetched",
        "HTTP 404",
        "using the cached policy",
    ]);
    let sent: Vec<String> = sender
        .log()
        .lines()
        .filter(|l| l.contains("to=<user@cached.test>") && l.contains("status=sent"))
        .map(str::to_string)
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].contains("sts=enforce id=c1"), "{}", sent[1]);
    assert!(rx_outside.delivered("cached.test", "user").is_empty());

    // The new id is fetched: now enforce, so the matching MX gets the mail.
    send(&ns, "user@changing.test");
    wait_delivered(&rx_good, "changing.test", 1, &sender);
    assert_eq!(https.fetches("changing.test"), 2, "{}", https.requests());
    sender.wait_log(&["MTA-STS policy of changing.test fetched: id=v2 mode=enforce"]);
    assert_eq!(rx_outside.delivered("changing.test", "user").len(), 2);

    // The independent implementation finds the same policies as check-tls.
    for domain in ["good.test", "nomatch-t.test", "changing.test"] {
        let theirs = run_with_timeout(
            ns.command(query.to_str().unwrap())
                .arg(domain)
                .env("SSL_CERT_FILE", &ca.cert),
            None,
            Duration::from_secs(60),
        );
        let theirs = output_text(&theirs);
        let ours =
            output_text(&ns.check_tls(&["--tls-ca-file", ca.cert.to_str().unwrap()], domain));
        assert_eq!(
            check_tls_policy(&ours),
            resolver_policy(&theirs),
            "{domain}:\ncheck-tls:\n{ours}\nmta-sts-query:\n{theirs}"
        );
        if domain == "good.test" {
            assert!(
                ours.contains("outside.hosts.test")
                    && ours.contains("MTA-STS: matches no mx pattern")
                    && ours.contains("result: deliver over TLS (Verified)"),
                "{ours}"
            );
        }
    }
    drop((
        rx_good, rx_outside, rx_forged, rx_expired, rx_plain, rx_dane,
    ));
}
