//! DKIM against an independent implementation (issue 12's "done when"): dkimpy and
//! authheaders from PyPI (`tests/dkimpy.py`, installed into `.venv` by `tests/run`),
//! with the keys published in a zone that unbound serves (tests/common/dns.rs). Both
//! sides resolve through it: dkimpy with dnspython aimed at its port, tinymta with its
//! own resolver (`tinymta::dns::Resolver`, the daemon's code) behind the
//! `mailauth::Dns` trait.
//!
//! - `keygen_and_check_...`: the commands through the real binary (also under QEMU);
//! - `dkimpy_verifies_...`: messages signed by tinymta (RSA, Ed25519, both, a
//!   rewritten From) verify with dkimpy and authheaders;
//! - `dkimpy_signatures_...`: messages signed by dkimpy (both canonicalisations, both
//!   algorithms, `l=`, several signatures, tampered bodies and headers) get the same
//!   verdict from tinymta as from dkimpy.
//!
//! The `dkimpy_` tests run on the host only (cross/test skips them by that prefix).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::dkim::{dkimpy, dkimpy_verify, python, Key};
use common::dns::{Unbound, Zone};
use common::{free_port, output_text, tinymta, TempDir};
use tinymta::dns::Resolver;
use tinymta::mailauth::dkim::{self, DkimResult, SigningKey, Verdict};

const DOMAIN: &str = "example.test";

/// A message as a router's alert would be, with what canonicalisation has to get
/// right: a folded field, runs of spaces and tabs, trailing whitespace, a line with a
/// leading dot, empty lines at the end.
const MESSAGE: &str = "From: Router Alerts <alerts@example.test>\r
To: Admin <admin@example.net>\r
Cc: noc@example.net\r
Subject: [router] WAN link\r
 down  for 5 minutes\r
Date: Mon, 01 Dec 2025 10:00:00 +0000\r
Message-ID: <1.abc@router.example.test>\r
List-Unsubscribe: <mailto:unsubscribe@example.test>\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
\r
The WAN link went down at 09:55  and came back at 10:00.   \r
\r
\tdetails:\tnone \t \r
.a line with a leading dot\r
\r
\r
";

fn keygen(dir: &Path, selector: &str, ed25519: bool) -> Key {
    common::dkim::keygen(dir, DOMAIN, selector, ed25519)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn resolver(u: &Unbound) -> Resolver {
    let addr: SocketAddr = u.addr.parse().unwrap();
    Resolver::new(addr).with_timeout(Duration::from_secs(3))
}

/// tinymta's verdicts on `msg`, through the real resolver.
fn tinymta_verify(u: &Unbound, msg: &[u8]) -> Vec<Verdict> {
    smol::block_on(dkim::verify(msg, &resolver(u), now()))
}

fn check(key: &Path, selector: &str, resolver: &str) -> Output {
    tinymta(&[
        "dkim",
        "check",
        "--domain",
        DOMAIN,
        "--selector",
        selector,
        "--key",
        key.to_str().unwrap(),
        "--resolver",
        resolver,
    ])
}

#[test]
fn keygen_and_check_against_published_records() {
    let dir = TempDir::new("dkim-check");
    let rsa = keygen(dir.path(), "r1", false);
    let ed = keygen(dir.path(), "e1", true);
    let other = keygen(dir.path(), "other", false);
    let u = Unbound::start(&[Zone::new(DOMAIN, false)
        .record(&rsa.zone_line)
        .record(&ed.zone_line)
        .record("revoked._domainkey IN TXT \"v=DKIM1; k=rsa; p=\"")
        .record(&format!("edhere._domainkey IN TXT \"{}\"", ed.record()))
        .record(&format!(
            "testing._domainkey IN TXT \"{}\" \"; t=y\"",
            ed.record()
        ))
        .record("spf._domainkey IN TXT \"v=spf1 -all\"")]);
    let code = |o: &Output| o.status.code().unwrap_or(-1);

    for (key, selector) in [(&rsa, "r1"), (&ed, "e1")] {
        let out = check(&key.path, selector, &u.addr);
        assert_eq!(code(&out), 0, "{}", output_text(&out));
        assert!(output_text(&out).contains("the published key matches"));
    }
    let out = check(&ed.path, "testing", &u.addr);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    assert!(output_text(&out).contains("t=y"), "{}", output_text(&out));

    for (key, selector, why) in [
        (&other, "r1", "another key"),
        (&rsa, "revoked", "key revoked"),
        (&rsa, "edhere", "k=ed25519 key for an rsa-sha256 signature"),
        (&rsa, "spf", "not a key record"),
        (&rsa, "missing", "no such name"),
    ] {
        let out = check(&key.path, selector, &u.addr);
        let text = output_text(&out);
        assert_eq!(code(&out), 65, "{selector}: {text}");
        assert!(text.contains(why), "{selector}: {text}");
        // What to publish instead: the key's own record.
        assert!(
            text.contains(&key.zone_line.replace(
                &format!(
                    "{}._domainkey",
                    key.path.file_stem().unwrap().to_str().unwrap()
                ),
                &format!("{selector}._domainkey")
            )),
            "{selector}: {text}"
        );
    }
    // Nobody answers on this port: a DNS failure, to try again later.
    let dead = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let out = check(&rsa.path, "r1", &dead);
    assert_eq!(code(&out), 75, "{}", output_text(&out));
    let out = check(&dir.path().join("nope.key"), "r1", &u.addr);
    assert_eq!(code(&out), 66, "{}", output_text(&out));

    // keygen does not overwrite a key without --force.
    let again = tinymta(&[
        "dkim",
        "keygen",
        "--domain",
        DOMAIN,
        "--selector",
        "r1",
        "--out",
        rsa.path.to_str().unwrap(),
    ]);
    assert_eq!(code(&again), 73, "{}", output_text(&again));
}

// ---------------------------------------------------------------------------------
// dkimpy

#[test]
fn dkimpy_verifies_tinymta_signatures() {
    python();
    let dir = TempDir::new("dkim-ours");
    let rsa = keygen(dir.path(), "r1", false);
    let ed = keygen(dir.path(), "e1", true);
    let u = Unbound::start(&[Zone::new(DOMAIN, false)
        .record(&rsa.zone_line)
        .record(&ed.zone_line)]);
    // The sender rewritten (as generic maps do): the From that is signed is the new one.
    let rewritten = MESSAGE.replace(
        "From: Router Alerts <alerts@example.test>",
        "From: \"root (via router)\" <router+root@example.test>",
    );
    for (what, message, keys) in [
        ("rsa", MESSAGE, vec![rsa.signing("r1")]),
        ("ed25519", MESSAGE, vec![ed.signing("e1")]),
        ("dual", MESSAGE, vec![rsa.signing("r1"), ed.signing("e1")]),
        (
            "dual, rewritten From",
            &rewritten[..],
            vec![ed.signing("e1"), rsa.signing("r1")],
        ),
    ] {
        let fields = dkim::sign(message.as_bytes(), &keys, now()).unwrap();
        let msg = [&fields[..], message.as_bytes()].concat();
        let theirs = dkimpy_verify(&u, &msg);
        assert_eq!(
            theirs,
            vec![Ok(()); keys.len()],
            "{what}:\n{}",
            String::from_utf8_lossy(&msg)
        );
        let ours = tinymta_verify(&u, &msg);
        assert!(
            ours.iter().all(|v| v.result == DkimResult::Pass),
            "{what}: {ours:?}"
        );
        // A control: the same message with its body changed fails on both sides.
        let tampered = String::from_utf8(msg.clone())
            .unwrap()
            .replace("09:55", "09:56");
        let theirs = dkimpy_verify(&u, tampered.as_bytes());
        assert!(
            theirs.iter().all(|r| r.is_err()) && theirs.len() == keys.len(),
            "{what}: {theirs:?}"
        );
        if what == "dual" {
            let ar = dkimpy(
                &[
                    "authres",
                    "--dns",
                    &u.addr,
                    "--authserv-id",
                    "mx.example.net",
                ],
                &msg,
            );
            assert!(
                ar.contains("dkim=pass") && ar.contains("header.d=example.test"),
                "{ar}"
            );
        }
    }
}

/// How dkimpy signs: algorithm, canonicalisation, whether with `l=`, and the header
/// list (None: dkimpy's default).
struct Signed {
    algorithm: &'static str,
    canon: &'static str,
    length: bool,
}

const fn signed(algorithm: &'static str, canon: &'static str, length: bool) -> Signed {
    Signed {
        algorithm,
        canon,
        length,
    }
}

/// One case: signatures made in order (each prepended), `change` applied after the
/// signature at index `after` (None: after all), and what a verifier must say, top
/// signature first.
struct Case {
    name: &'static str,
    sign: Vec<Signed>,
    change: Option<(usize, &'static str, &'static str)>,
    expect: Vec<bool>,
}

#[test]
fn dkimpy_signatures_are_judged_alike() {
    python();
    let dir = TempDir::new("dkim-theirs");
    let rsa = keygen(dir.path(), "r1", false);
    let ed = keygen(dir.path(), "e1", true);
    // dkimpy reads RSA keys in PKCS#1 only; tinymta reads that form too.
    let pkcs1 = dir.path().join("r1.pkcs1.pem");
    let pkey =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&rsa.path).unwrap()).unwrap();
    std::fs::write(&pkcs1, pkey.rsa().unwrap().private_key_to_pem().unwrap()).unwrap();
    assert!(String::from_utf8(std::fs::read(&pkcs1).unwrap())
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    SigningKey::load(DOMAIN, "r1", &pkcs1).unwrap();
    let u = Unbound::start(&[Zone::new(DOMAIN, false)
        .record(&rsa.zone_line)
        .record(&ed.zone_line)]);

    let rr = || signed("rsa-sha256", "relaxed/relaxed", false);
    let cases = vec![
        Case {
            name: "rsa relaxed/relaxed",
            sign: vec![rr()],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "rsa simple/simple",
            sign: vec![signed("rsa-sha256", "simple/simple", false)],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "rsa relaxed/simple",
            sign: vec![signed("rsa-sha256", "relaxed/simple", false)],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "rsa simple/relaxed",
            sign: vec![signed("rsa-sha256", "simple/relaxed", false)],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "ed25519 relaxed/relaxed",
            sign: vec![signed("ed25519-sha256", "relaxed/relaxed", false)],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "ed25519 simple/simple",
            sign: vec![signed("ed25519-sha256", "simple/simple", false)],
            change: None,
            expect: vec![true],
        },
        Case {
            name: "two signatures",
            sign: vec![rr(), signed("ed25519-sha256", "simple/simple", false)],
            change: None,
            expect: vec![true, true],
        },
        Case {
            name: "l=, text appended",
            sign: vec![signed("rsa-sha256", "relaxed/simple", true)],
            change: Some((0, "\r\n\r\n\r\n", "\r\n\r\nappended by a list\r\n")),
            expect: vec![true],
        },
        Case {
            name: "l=, signed text changed",
            sign: vec![signed("ed25519-sha256", "simple/simple", true)],
            change: Some((0, "went down", "went DOWN")),
            expect: vec![false],
        },
        Case {
            name: "tampered body",
            sign: vec![rr()],
            change: Some((0, "09:55", "09:56")),
            expect: vec![false],
        },
        Case {
            name: "tampered body, simple",
            sign: vec![signed("ed25519-sha256", "simple/simple", false)],
            change: Some((0, "none \t \r\n", "none\r\n")),
            expect: vec![false],
        },
        Case {
            name: "whitespace changed, relaxed",
            sign: vec![rr()],
            change: Some((0, "none \t \r\n", "none\r\n")),
            expect: vec![true],
        },
        Case {
            name: "tampered signed header",
            sign: vec![rr()],
            change: Some((0, "Subject: [router] WAN", "Subject: [router] LAN")),
            expect: vec![false],
        },
        Case {
            name: "refolded header, simple",
            sign: vec![signed("rsa-sha256", "simple/simple", false)],
            change: Some((0, "WAN link\r\n down", "WAN link down")),
            expect: vec![false],
        },
        Case {
            name: "refolded header, relaxed",
            sign: vec![signed("ed25519-sha256", "relaxed/simple", false)],
            change: Some((0, "WAN link\r\n down", "WAN link down")),
            expect: vec![true],
        },
        Case {
            name: "unsigned header added",
            sign: vec![rr()],
            change: Some((0, "MIME-Version", "X-Mailer: test\r\nMIME-Version")),
            expect: vec![true],
        },
        Case {
            name: "From added on top",
            sign: vec![rr()],
            change: Some((
                0,
                "From: Router",
                "From: Mallory <m@evil.example>\r\nFrom: Router",
            )),
            expect: vec![false],
        },
        // The body changed between two signatures: the older one (below) breaks.
        Case {
            name: "changed between signatures",
            sign: vec![rr(), signed("ed25519-sha256", "relaxed/relaxed", false)],
            change: Some((0, "09:55", "09:57")),
            expect: vec![true, false],
        },
    ];

    let mut disagreements = Vec::new();
    for case in &cases {
        let mut msg = MESSAGE.to_string();
        let apply = |msg: &mut String, change: Option<(usize, &str, &str)>, at: usize| {
            if let Some((i, from, to)) = change {
                if i == at {
                    assert!(
                        msg.contains(from),
                        "{}: {from:?} not in the message",
                        case.name
                    );
                    *msg = msg.replacen(from, to, 1);
                }
            }
        };
        for (i, s) in case.sign.iter().enumerate() {
            let (key, selector) = match s.algorithm {
                "ed25519-sha256" => (&ed.path, "e1"),
                _ => (&pkcs1, "r1"),
            };
            let mut args = vec![
                "sign",
                "--key",
                key.to_str().unwrap(),
                "--domain",
                DOMAIN,
                "--selector",
                selector,
                "--algorithm",
                s.algorithm,
                "--canon",
                s.canon,
            ];
            if s.length {
                args.push("--length");
            }
            let field = dkimpy(&args, msg.as_bytes());
            assert!(
                field.starts_with("DKIM-Signature:"),
                "{}: {field}",
                case.name
            );
            msg = format!("{field}{msg}");
            apply(&mut msg, case.change, i);
        }
        let theirs = dkimpy_verify(&u, msg.as_bytes());
        let ours = tinymta_verify(&u, msg.as_bytes());
        let theirs_ok: Vec<bool> = theirs.iter().map(Result::is_ok).collect();
        let ours_ok: Vec<bool> = ours.iter().map(|v| v.result == DkimResult::Pass).collect();
        assert_eq!(
            theirs_ok, case.expect,
            "{}: dkimpy said {theirs:?}\n{msg}",
            case.name
        );
        let resinfo: Vec<String> = ours.iter().map(Verdict::resinfo).collect();
        eprintln!("{}: dkimpy {theirs:?}; tinymta {resinfo:?}", case.name);
        if ours_ok != theirs_ok {
            disagreements.push(format!(
                "{}: dkimpy {theirs:?}, tinymta {ours:?}",
                case.name
            ));
        }
        // What tinymta reports for each: the signature's domain, selector and b=.
        for v in &ours {
            assert_eq!(
                (v.domain.as_str(), v.header_b().len()),
                (DOMAIN, 8),
                "{}",
                case.name
            );
            assert!(v.resinfo().contains("header.s="), "{}", case.name);
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
