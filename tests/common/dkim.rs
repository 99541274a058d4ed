//! DKIM helpers shared by tests/dkim.rs and tests/dkim_signing.rs: keys made by
//! `tinymta dkim keygen` with the zone-file line it prints, and dkimpy
//! (`tests/dkimpy.py`, installed into `.venv` by `tests/run`) as the independent
//! verifier, resolving through the test's unbound.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tinymta::mailauth::dkim::SigningKey;

use super::dns::Unbound;
use super::{output_text, run_bounded, tinymta};

/// A key made by `tinymta dkim keygen`, and the zone-file line it printed.
pub struct Key {
    pub path: PathBuf,
    pub domain: String,
    pub zone_line: String,
}

impl Key {
    /// The record itself: the quoted strings of the zone line, joined.
    pub fn record(&self) -> String {
        let strings = self.zone_line.split_once(" IN TXT ").unwrap().1;
        strings.split('"').skip(1).step_by(2).collect()
    }

    pub fn signing(&self, selector: &str) -> SigningKey {
        SigningKey::load(&self.domain, selector, &self.path).unwrap()
    }

    /// `--dkim-key DOMAIN:SELECTOR:KEYFILE` for it.
    pub fn flag(&self, selector: &str) -> String {
        format!("{}:{selector}:{}", self.domain, self.path.display())
    }
}

/// `tinymta dkim keygen` into `dir/SELECTOR.key` (RSA, or Ed25519).
pub fn keygen(dir: &Path, domain: &str, selector: &str, ed25519: bool) -> Key {
    let path = dir.join(format!("{selector}.key"));
    let mut args = vec![
        "dkim",
        "keygen",
        "--domain",
        domain,
        "--selector",
        selector,
        "--out",
        path.to_str().unwrap(),
    ];
    if ed25519 {
        args.push("--ed25519");
    }
    let out = tinymta(&args);
    assert!(out.status.success(), "{}", output_text(&out));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let zone_line = text
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .unwrap_or_else(|| panic!("no record in:\n{text}"))
        .to_string();
    assert!(zone_line.starts_with(&format!(
        "{selector}._domainkey.{domain}. IN TXT \"v=DKIM1; k="
    )));
    Key {
        path,
        domain: domain.to_string(),
        zone_line,
    }
}

/// The venv's python with dkimpy, or a panic saying how to get it.
pub fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    let ok = run_bounded(
        Command::new(&p).args(["-c", "import dkim, dns.resolver, nacl, authheaders"]),
        None,
        Duration::from_secs(30),
    )
    .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "dkimpy is missing from {}: run `bash tests/run` (it installs dkimpy, pynacl and authheaders into .venv with pip)",
        p.display()
    );
    p
}

/// `tests/dkimpy.py ARGS` with `stdin`; its stdout.
pub fn dkimpy(args: &[&str], stdin: &[u8]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dkimpy.py");
    let out = run_bounded(
        Command::new(python()).arg(script).args(args),
        Some(stdin),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "dkimpy.py {args:?}: {}",
        output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// dkimpy's verdict per signature, top first: Ok for a pass, Err(why) otherwise.
pub fn dkimpy_verify(u: &Unbound, msg: &[u8]) -> Vec<Result<(), String>> {
    dkimpy(&["verify", "--dns", &u.addr], msg)
        .lines()
        .map(|l| match l {
            "pass" => Ok(()),
            other => Err(other.to_string()),
        })
        .collect()
}
