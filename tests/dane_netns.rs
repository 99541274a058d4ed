//! DANE seen by Postfix's posttls-finger and by `tinymta check-tls` on the same
//! destinations. posttls-finger uses the system resolver, so the test builds a network
//! namespace with its own /etc/resolv.conf, a validating unbound on port 53 and
//! receiving MX hosts on port 25 (TESTBENCH.md "Network namespaces"). The TLSA record
//! is the one `tinymta cert fingerprint` prints. Needs root.

mod common;

use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::certs::spki_sha256;
use common::dns::{Unbound, Zone};
use common::netns::Netns;
use common::{output_text, run_with_timeout, TempDir};

/// A tinymta receiver inside the namespace, killed by PID on drop.
struct Receiver {
    child: Child,
    dir: TempDir,
}

impl Receiver {
    fn start(ns: &Netns, ip: &str, domain: &str, extra: &[&str]) -> Receiver {
        let dir = TempDir::new("netns-rx");
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = ns
            .command(env!("CARGO_BIN_EXE_tinymta"))
            .args([
                "serve",
                "--smtp",
                &format!("{ip}:25"),
                "--submission",
                &format!("{ip}:587"),
            ])
            .args([
                "--smtps",
                &format!("{ip}:465"),
                "--domain",
                domain,
                "--hostname",
                &format!("mx.{domain}"),
            ])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Receiver { child, dir };
        let start = Instant::now();
        while !r.log().contains("started:") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "receiver did not start:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn cert(&self) -> std::path::PathBuf {
        // The ECDSA demonstration certificate: the one a TLS 1.3 client is sent.
        self.dir.path().join("state/tls/demo-ec-cert.pem")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `X TLS connection established` verdict in a transcript.
fn verdict(text: &str) -> Option<&'static str> {
    let line = text
        .lines()
        .find(|l| l.contains("TLS connection established to"))?;
    ["Verified", "Trusted", "Untrusted", "Anonymous"]
        .into_iter()
        .find(|v| line.contains(&format!("{v} TLS connection")))
}

#[test]
fn posttls_finger_and_check_tls_agree_on_dane() {
    let ns = Netns::new("");
    let good = Receiver::start(&ns, "127.0.0.2", "dane.test", &[]);
    let forged = Receiver::start(&ns, "127.0.0.3", "forged.test", &[]);
    let plain = Receiver::start(&ns, "127.0.0.4", "plain.test", &[]);
    // The record `tinymta cert fingerprint` tells the administrator to publish.
    let printed = common::tinymta(&["cert", "fingerprint", good.cert().to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    let tlsa = printed
        .lines()
        .find_map(|l| {
            l.split_once(" IN TLSA 3 1 1 ")
                .map(|(_, hex)| hex.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no 3 1 1 record in:\n{printed}"));
    assert_eq!(
        tlsa,
        spki_sha256(&good.cert()),
        "the openssl pipeline agrees"
    );
    let zones = [
        Zone::new("dane.test", true)
            .record("@ IN MX 10 mx.dane.test.")
            .record("mx IN A 127.0.0.2")
            .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {tlsa}")),
        // forged.test publishes dane.test's key, but its MX has another certificate.
        Zone::new("forged.test", true)
            .record("@ IN MX 10 mx.forged.test.")
            .record("mx IN A 127.0.0.3")
            .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {tlsa}")),
        Zone::new("plain.test", false)
            .record("@ IN MX 10 mx.plain.test.")
            .record("mx IN A 127.0.0.4"),
    ];
    let _unbound = Unbound::start_in(&zones, Some(&ns.0));
    let pf_conf = TempDir::new("posttls");
    fs::write(pf_conf.path().join("main.cf"), "").unwrap();

    for (domain, expect) in [
        ("dane.test", Some("Verified")),
        ("forged.test", None),
        ("plain.test", Some("Untrusted")),
    ] {
        let theirs = run_with_timeout(
            ns.command("posttls-finger")
                .args(["-c", "-l", "dane", domain])
                .env("MAIL_CONFIG", pf_conf.path()),
            None,
            Duration::from_secs(60),
        );
        let theirs = output_text(&theirs);
        let ours = ns.check_tls(&["--tls-default-level", "dane"], domain);
        let ours_text = output_text(&ours);
        match expect {
            Some("Verified") => {
                assert_eq!(
                    verdict(&theirs),
                    Some("Verified"),
                    "posttls-finger {domain}:\n{theirs}"
                );
                assert_eq!(
                    verdict(&ours_text),
                    Some("Verified"),
                    "check-tls {domain}:\n{ours_text}"
                );
                assert!(
                    theirs.contains("Matched DANE") && ours_text.contains("Matched DANE EE"),
                    "{theirs}\n{ours_text}"
                );
                assert!(ours_text.contains(&format!("3 1 1 {tlsa}")), "{ours_text}");
                assert!(ours.status.success());
            }
            Some(v) => {
                assert_eq!(
                    verdict(&theirs),
                    Some(v),
                    "posttls-finger {domain}:\n{theirs}"
                );
                assert_eq!(
                    verdict(&ours_text),
                    Some(v),
                    "check-tls {domain}:\n{ours_text}"
                );
                assert!(ours_text.contains("DNSSEC not validated"), "{ours_text}");
            }
            None => {
                // A TLSA mismatch: Postfix does not verify the peer; tinymta defers.
                assert_ne!(
                    verdict(&theirs),
                    Some("Verified"),
                    "posttls-finger {domain}:\n{theirs}"
                );
                assert_eq!(ours.status.code(), Some(75), "{ours_text}");
                assert!(
                    ours_text.contains("DANE TLSA authentication failed")
                        && ours_text.contains("result: defer"),
                    "{ours_text}"
                );
            }
        }
    }
    drop((good, forged, plain));
}
