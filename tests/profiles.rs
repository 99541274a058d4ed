//! Cipher profiles on the wire: for each profile build (`profile-strict`,
//! `profile-medium`, `profile-compat`), what scanners see must be exactly what
//! `tinymta tls-info` prints, and that must be the Libraesva seed lists
//! (`000_68ee5cd58c7148f3.txt`, embedded below by IANA name, independently of
//! `src/tls/profile.rs`) minus the suites tls-info reports unavailable.
//!
//! - sslyze (`.venv/bin/sslyze`, installed by `bash tests/run`) scans the STARTTLS
//!   listener (`--smtp`), the submission listener (STARTTLS) and the implicit-TLS
//!   listener (`--smtps`) of every profile: accepted suites per TLS version, no SSL 2/3,
//!   TLS 1.0/1.1 only in compat, no compression, no client-initiated renegotiation.
//! - `openssl s_client` with the client's preference reversed checks that the server
//!   picks its own first suite per version (server preference).
//! - testssl.sh (`/usr/bin/testssl`) agrees with tls-info for the medium profile.
//! - Strict refuses a client-initiated renegotiation (`s_client -tls1_2`, `R`), with
//!   an `openssl s_server -client_renegotiation` control proving the detector.
//!
//! The default (medium) profile is the binary cargo built for this test; strict and
//! compat are built here once per test run with `cargo build --no-default-features
//! --features profile-NAME`, each into its own target directory
//! (`<target>/profile-NAME`), so the builds neither wait for each other's lock nor for
//! the main build directory.
//!
//! Under `TINYMTA_TEST_RUNNER` (cross/test: the test and the binary run under QEMU)
//! only the compiled-in profile is scanned: building and scanning the other profiles,
//! testssl and the renegotiation probe are host checks, which cross/test leaves out by
//! name (`--skip`), so they are never counted as passed there.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    certs, command_for, free_port, run_bounded, run_with_timeout, test_runner, Server, TempDir,
};

// ---------------------------------------------------------------------------
// The seed's lists (Libraesva ESG manual), IANA names, in the manual's order.
// ---------------------------------------------------------------------------

const SEED_TLS13: &[&str] = &[
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_128_CCM_SHA256",
];

const SEED_STRICT_TLS12: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    "TLS_DHE_RSA_WITH_AES_256_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CCM_8",
    "TLS_RSA_WITH_AES_256_CCM",
    "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    "TLS_DHE_RSA_WITH_AES_128_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CCM_8",
    "TLS_RSA_WITH_AES_128_CCM",
    "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
];

/// "Medium" TLS 1.2; the manual prints the same 49 suites for "High Compatibility".
const SEED_MEDIUM_TLS12: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    "TLS_DHE_RSA_WITH_AES_256_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CCM_8",
    "TLS_RSA_WITH_AES_256_CCM",
    "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    "TLS_DHE_RSA_WITH_AES_128_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CCM_8",
    "TLS_RSA_WITH_AES_128_CCM",
    "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
];

const SEED_COMPAT_TLS11: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_IDEA_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// As printed in the manual: the 1.1 list without TLS_RSA_WITH_3DES_EDE_CBC_SHA.
const SEED_COMPAT_TLS10: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_IDEA_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// TLS versions, highest first, with the names each tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tls13,
    Tls12,
    Tls11,
    Tls10,
}

const PROTOS: [Proto; 4] = [Proto::Tls13, Proto::Tls12, Proto::Tls11, Proto::Tls10];

impl Proto {
    /// As tls-info prints it.
    fn tls_info(self) -> &'static str {
        match self {
            Proto::Tls13 => "TLSv1.3",
            Proto::Tls12 => "TLSv1.2",
            Proto::Tls11 => "TLSv1.1",
            Proto::Tls10 => "TLSv1.0",
        }
    }
    /// sslyze's scan command (JSON key).
    fn sslyze_key(self) -> &'static str {
        match self {
            Proto::Tls13 => "tls_1_3_cipher_suites",
            Proto::Tls12 => "tls_1_2_cipher_suites",
            Proto::Tls11 => "tls_1_1_cipher_suites",
            Proto::Tls10 => "tls_1_0_cipher_suites",
        }
    }
    /// testssl's JSON id infix (`cipher-tls1_2_xc030`).
    fn testssl(self) -> &'static str {
        match self {
            Proto::Tls13 => "tls1_3",
            Proto::Tls12 => "tls1_2",
            Proto::Tls11 => "tls1_1",
            Proto::Tls10 => "tls1",
        }
    }
    /// openssl s_client's version flag.
    fn s_client_flag(self) -> &'static str {
        match self {
            Proto::Tls13 => "-tls1_3",
            Proto::Tls12 => "-tls1_2",
            Proto::Tls11 => "-tls1_1",
            Proto::Tls10 => "-tls1",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    Strict,
    Medium,
    Compat,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Strict => "strict",
            Profile::Medium => "medium",
            Profile::Compat => "compat",
        }
    }
    /// The seed's list for one version; empty when the profile disables it.
    fn seed(self, p: Proto) -> &'static [&'static str] {
        match (self, p) {
            (_, Proto::Tls13) => SEED_TLS13,
            (Profile::Strict, Proto::Tls12) => SEED_STRICT_TLS12,
            (_, Proto::Tls12) => SEED_MEDIUM_TLS12,
            (Profile::Compat, Proto::Tls11) => SEED_COMPAT_TLS11,
            (Profile::Compat, Proto::Tls10) => SEED_COMPAT_TLS10,
            _ => &[],
        }
    }
    fn enables(self, p: Proto) -> bool {
        !self.seed(p).is_empty()
    }
}

// ---------------------------------------------------------------------------
// The profile binaries.
// ---------------------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the per-profile target directories go: `$CARGO_TARGET_DIR` when set (relative
/// to the package, as cargo reads it), else `<package>/target`.
fn target_root() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                manifest_dir().join(d)
            }
        }
        _ => manifest_dir().join("target"),
    }
}

/// Upper bound for one profile build (a cold build compiles every dependency).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// `cargo build` of one profile into `<target>/profile-NAME`; the path of its binary.
fn build_profile(profile: Profile) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(String::from))
        .unwrap_or_else(|| "cargo".into());
    let dir = target_root().join(format!("profile-{}", profile.name()));
    let manifest = manifest_dir().join("Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--bin",
        "tinymta",
        "--no-default-features",
        "--features",
    ])
    .arg(format!("profile-{}", profile.name()))
    .arg("--manifest-path")
    .arg(&manifest)
    .env("CARGO_TARGET_DIR", &dir)
    .current_dir(manifest_dir());
    let t0 = Instant::now();
    let out = run_bounded(&mut cmd, None, BUILD_LIMIT).map_err(|e| {
        format!(
            "cargo build of profile-{} into {}: {e}",
            profile.name(),
            dir.display()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --no-default-features --features profile-{} failed ({}):\n{}",
            profile.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = dir.join("debug").join("tinymta");
    if !bin.exists() {
        return Err(format!("built, but {} is missing", bin.display()));
    }
    eprintln!(
        "profile-{} built in {:.1} s: {}",
        profile.name(),
        t0.elapsed().as_secs_f64(),
        bin.display()
    );
    Ok(bin)
}

/// The binary for a profile: the test's own binary for the default (medium), a
/// once-per-run build for the others. A build failure fails every test that needs it.
/// The other builds are host binaries, used only outside cross/test (see `host_only`);
/// the test's own binary runs under `TINYMTA_TEST_RUNNER` there (`command_for`).
fn binary(profile: Profile) -> PathBuf {
    static BUILDS: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = match profile {
        Profile::Medium => return common::tinymta_bin().to_path_buf(),
        Profile::Strict => 0,
        Profile::Compat => 1,
    };
    match BUILDS[slot].get_or_init(|| build_profile(profile)) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Host checks refuse to run as a cross run (cross/test filters them out by name), so
/// a cross run can never count one as passed without doing it.
fn host_only(what: &str) -> bool {
    if let Some(r) = test_runner() {
        panic!("{what} is a host check; cross/test must --skip it (TINYMTA_TEST_RUNNER={r})");
    }
    false
}

// ---------------------------------------------------------------------------
// tinymta tls-info
// ---------------------------------------------------------------------------

/// One offered suite as tls-info prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Suite {
    openssl: String,
    iana: String,
}

#[derive(Debug, Default)]
struct TlsInfo {
    raw: String,
    /// Short profile name from "Cipher profile: Medium (medium)".
    profile: String,
    /// Per version (index as PROTOS): None = disabled by the profile; else the
    /// effective suites in server order.
    effective: [Option<Vec<Suite>>; 4],
    /// "listed suites" count from "TLSv1.2: 46 of 49 listed suites offered".
    listed: [usize; 4],
    unavailable: Vec<(Proto, String)>,
    unlisted: Vec<(Proto, String)>,
}

impl TlsInfo {
    fn effective(&self, p: Proto) -> &[Suite] {
        self.effective[idx(p)].as_deref().unwrap_or(&[])
    }
    fn effective_iana(&self, p: Proto) -> BTreeSet<String> {
        self.effective(p).iter().map(|s| s.iana.clone()).collect()
    }
    fn unavailable(&self, p: Proto) -> BTreeSet<String> {
        self.unavailable
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, s)| s.clone())
            .collect()
    }
    fn openssl_name(&self, iana: &str) -> Option<&str> {
        PROTOS
            .iter()
            .flat_map(|p| self.effective(*p))
            .find(|s| s.iana == iana)
            .map(|s| s.openssl.as_str())
    }
}

fn idx(p: Proto) -> usize {
    PROTOS.iter().position(|q| *q == p).unwrap()
}

fn proto_of(s: &str) -> Option<Proto> {
    PROTOS.iter().copied().find(|p| p.tls_info() == s)
}

fn parse_tls_info(raw: &str) -> TlsInfo {
    let mut info = TlsInfo {
        raw: raw.to_string(),
        ..TlsInfo::default()
    };
    #[derive(PartialEq)]
    enum Section {
        Head,
        Version(Proto),
        Unavailable,
        Unlisted,
    }
    let mut section = Section::Head;
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix("Cipher profile: ") {
            let short = rest.rsplit('(').next().unwrap_or("").trim_end_matches(')');
            info.profile = short.to_string();
            continue;
        }
        if line.starts_with("Unavailable") {
            section = Section::Unavailable;
            continue;
        }
        if line.starts_with("Offered but not listed") {
            section = Section::Unlisted;
            continue;
        }
        if !line.starts_with(' ') {
            if let Some((head, rest)) = line.split_once(": ") {
                if let Some(p) = proto_of(head) {
                    section = Section::Version(p);
                    if rest.starts_with("disabled") {
                        info.effective[idx(p)] = None;
                    } else {
                        info.effective[idx(p)] = Some(Vec::new());
                        // "46 of 49 listed suites offered, server order"
                        let words: Vec<&str> = rest.split_whitespace().collect();
                        assert!(
                            words.len() > 3 && words[1] == "of",
                            "unexpected tls-info line {line:?}"
                        );
                        info.listed[idx(p)] = words[2].parse().unwrap();
                    }
                }
            }
            continue;
        }
        let t = line.trim();
        match section {
            Section::Version(p) => {
                assert!(
                    !t.starts_with("(nothing offered"),
                    "tls-info: {} offers nothing: {t}",
                    p.tls_info()
                );
                // "  1. ECDHE-RSA-AES256-GCM-SHA384    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
                let mut w = t.split_whitespace();
                let (Some(num), Some(openssl), Some(iana), None) =
                    (w.next(), w.next(), w.next(), w.next())
                else {
                    panic!("unexpected tls-info suite line {line:?}");
                };
                assert!(
                    num.ends_with('.'),
                    "unexpected tls-info suite line {line:?}"
                );
                info.effective[idx(p)]
                    .as_mut()
                    .expect("suite under a disabled version")
                    .push(Suite {
                        openssl: openssl.into(),
                        iana: iana.into(),
                    });
            }
            Section::Unavailable | Section::Unlisted => {
                // "  TLSv1.2: ECDHE-RSA-DES-CBC3-SHA   TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA   why"
                let (head, rest) = t
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("unexpected tls-info line {line:?}"));
                let p = proto_of(head).unwrap_or_else(|| panic!("unexpected line {line:?}"));
                let iana = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_else(|| panic!("unexpected tls-info line {line:?}"))
                    .to_string();
                if section == Section::Unavailable {
                    info.unavailable.push((p, iana));
                } else {
                    info.unlisted.push((p, iana));
                }
            }
            Section::Head => {}
        }
    }
    info
}

fn tls_info(bin: &Path) -> TlsInfo {
    let out = run_with_timeout(
        command_for(bin).arg("tls-info"),
        None,
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "tinymta tls-info: {out:?}");
    parse_tls_info(&String::from_utf8_lossy(&out.stdout))
}

/// tls-info against the seed: effective = seed minus unavailable, in the seed's order
/// (server order); nothing unlisted; the right versions enabled.
fn check_tls_info(profile: Profile, info: &TlsInfo) {
    let raw = &info.raw;
    assert_eq!(info.profile, profile.name(), "tls-info profile:\n{raw}");
    assert!(info.unlisted.is_empty(), "offered but not listed:\n{raw}");
    for p in PROTOS {
        let seed = profile.seed(p);
        assert_eq!(
            info.effective[idx(p)].is_some(),
            profile.enables(p),
            "{} {}: enabled in tls-info vs the seed:\n{raw}",
            profile.name(),
            p.tls_info()
        );
        let unavailable = info.unavailable(p);
        for s in &unavailable {
            assert!(
                seed.contains(&s.as_str()),
                "{} {}: unavailable {s} is not in the seed list:\n{raw}",
                profile.name(),
                p.tls_info()
            );
        }
        let expected: Vec<&str> = seed
            .iter()
            .copied()
            .filter(|s| !unavailable.contains(*s))
            .collect();
        let effective: Vec<&str> = info.effective(p).iter().map(|s| s.iana.as_str()).collect();
        assert_eq!(
            effective,
            expected,
            "{} {}: tls-info's effective list (server order) is not the seed's list \
             minus the unavailable ones:\n{raw}",
            profile.name(),
            p.tls_info()
        );
        if profile.enables(p) {
            assert_eq!(info.listed[idx(p)], seed.len(), "listed count:\n{raw}");
        }
        // On the host's OpenSSL 3.0 (Debian, legacy provider present) exactly the
        // 3DES and IDEA suites are missing; other OpenSSL builds (vendored, cross)
        // may differ and are covered by wire == tls-info alone.
        if test_runner().is_none() {
            let weak: BTreeSet<String> = seed
                .iter()
                .filter(|s| s.contains("_3DES_") || s.contains("_IDEA_"))
                .map(|s| s.to_string())
                .collect();
            assert_eq!(
                unavailable,
                weak,
                "{} {}: tls-info's unavailable suites should be exactly 3DES and IDEA \
                 with this OpenSSL:\n{raw}",
                profile.name(),
                p.tls_info()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A tinymta server for one profile.
// ---------------------------------------------------------------------------

/// `common::Server` running a profile's binary with an RSA certificate made by openssl
/// (every listed suite authenticates with RSA, and no key generation by tinymta, slow
/// under QEMU) and a per-IP limit that lets the scanners' many connections in.
struct Daemon {
    server: Server,
    _cert_dir: TempDir,
}

impl Daemon {
    fn start(bin: &Path, tag: &str) -> Daemon {
        let cert_dir = TempDir::new(&format!("profiles-{tag}"));
        let cert = certs::self_signed(cert_dir.path(), "mx", "mx.example.test");
        let mut extra = vec!["--max-sessions-per-ip", "1000"];
        let cert_args = cert.server_args();
        extra.extend(cert_args.iter().map(String::as_str));
        let server = Server::start_binary(bin, &extra);
        for addr in [&server.smtp, &server.submission, &server.smtps] {
            if let Err(e) = TcpStream::connect(addr) {
                panic!(
                    "tinymta ({tag}) does not accept on {addr}: {e}\n{}",
                    server.log()
                );
            }
        }
        Daemon {
            server,
            _cert_dir: cert_dir,
        }
    }
}

impl Deref for Daemon {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

// ---------------------------------------------------------------------------
// The scanners' JSON (serde_json), read leniently: a missing key is `null`, and a
// missing list is empty, so the assertions below say what is wrong.
// ---------------------------------------------------------------------------

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Follows a dotted path of object keys (`null` when a key is missing).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The elements of an array (none for anything else).
fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

#[test]
fn json_reader_handles_what_the_scanners_write() {
    let v = parse_json(
        r#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "x\"y\\u00e9\u00e9\ud83d\ude00"},
            "e": [], "f": {}} "#,
    )
    .unwrap();
    assert_eq!(arr(at(&v, "a")).len(), 5);
    assert_eq!(arr(at(&v, "a"))[1].as_f64(), Some(-2500.0));
    assert_eq!(at(&v, "b.c").as_str(), Some("x\"y\\u00e9é😀"));
    assert_eq!(arr(at(&v, "e")).len(), 0);
    assert_eq!(at(&v, "missing.deeper"), &Value::Null);
    assert!(parse_json("[1,]").is_err());
    assert!(parse_json("{\"a\" 1}").is_err());
}

// ---------------------------------------------------------------------------
// sslyze
// ---------------------------------------------------------------------------

fn sslyze_path() -> PathBuf {
    let p = manifest_dir().join(".venv/bin/sslyze");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/run` (it creates .venv and installs sslyze with pip)",
        p.display()
    );
    p
}

/// Runs sslyze on `targets` (STARTTLS SMTP when `starttls`), returns the parsed JSON.
fn sslyze(dir: &Path, tag: &str, starttls: bool, targets: &[&str]) -> Value {
    let json = dir.join(format!("sslyze-{tag}.json"));
    let mut cmd = Command::new(sslyze_path());
    cmd.args(["--quiet", "--mozilla_config=disable"])
        .args([
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
        ])
        .args(["--compression", "--reneg"])
        .arg(format!("--json_out={}", json.display()));
    if starttls {
        cmd.arg("--starttls=smtp");
    }
    cmd.args(targets);
    // Under QEMU every handshake is slow; natively a scan takes about 2 s.
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(300));
    assert!(out.status.success(), "sslyze {targets:?} failed: {out:?}");
    let text = fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("sslyze wrote no {}: {e}; {out:?}", json.display()));
    parse_json(&text).unwrap_or_else(|e| panic!("sslyze JSON {}: {e}", json.display()))
}

/// What sslyze found on one listener.
#[derive(Debug)]
struct Scan {
    target: String,
    /// Per PROTOS index: accepted and rejected suite names (IANA).
    accepted: [BTreeSet<String>; 4],
    tested: [BTreeSet<String>; 4],
    /// Why sslyze counted a suite as rejected, per PROTOS index: (name, error).
    rejected_why: [Vec<(String, String)>; 4],
    ssl_accepted: usize,
    compression: bool,
    secure_renegotiation: bool,
    client_renegotiation_dos: bool,
    client_renegotiations: f64,
}

/// Checks every status is COMPLETED and extracts the results, one Scan per target.
fn read_sslyze(doc: &Value) -> Vec<Scan> {
    let mut scans = Vec::new();
    let servers = arr(&doc["server_scan_results"]);
    assert!(!servers.is_empty(), "sslyze scanned nothing: {doc:?}");
    for s in servers {
        let target = format!(
            "{}:{}",
            at(s, "server_location.hostname").as_str().unwrap_or("?"),
            at(s, "server_location.port").as_f64().unwrap_or(0.0)
        );
        for key in ["connectivity_status", "scan_status"] {
            assert_eq!(
                s[key].as_str(),
                Some("COMPLETED"),
                "sslyze {target}: {key}: {:?}",
                s["connectivity_error_trace"]
            );
        }
        let r = &s["scan_result"];
        let cmd = |name: &str| -> &Value {
            let c = &r[name];
            assert_eq!(
                c["status"].as_str(),
                Some("COMPLETED"),
                "sslyze {target}: scan command {name} did not complete: {:?} {:?}",
                c["error_reason"],
                c["error_trace"]
            );
            &c["result"]
        };
        let names = |list: &Value| -> BTreeSet<String> {
            arr(list)
                .iter()
                .map(|x| at(x, "cipher_suite.name").as_str().unwrap().to_string())
                .collect()
        };
        let mut scan = Scan {
            target: target.clone(),
            accepted: Default::default(),
            tested: Default::default(),
            rejected_why: Default::default(),
            ssl_accepted: 0,
            compression: true,
            secure_renegotiation: false,
            client_renegotiation_dos: true,
            client_renegotiations: -1.0,
        };
        for p in PROTOS {
            let res = cmd(p.sslyze_key());
            let acc = names(&res["accepted_cipher_suites"]);
            let rej = names(&res["rejected_cipher_suites"]);
            assert_eq!(
                res["is_tls_version_supported"].as_bool(),
                Some(!acc.is_empty()),
                "sslyze {target} {}: is_tls_version_supported vs accepted suites",
                p.tls_info()
            );
            scan.tested[idx(p)] = acc.union(&rej).cloned().collect();
            scan.rejected_why[idx(p)] = arr(&res["rejected_cipher_suites"])
                .iter()
                .map(|x| {
                    (
                        at(x, "cipher_suite.name")
                            .as_str()
                            .unwrap_or("?")
                            .to_string(),
                        x["error_message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            scan.accepted[idx(p)] = acc;
        }
        for key in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites"] {
            scan.ssl_accepted += arr(&cmd(key)["accepted_cipher_suites"]).len();
        }
        scan.compression = cmd("tls_compression")["supports_compression"]
            .as_bool()
            .expect("supports_compression");
        let reneg = cmd("session_renegotiation");
        scan.secure_renegotiation = reneg["supports_secure_renegotiation"]
            .as_bool()
            .expect("supports_secure_renegotiation");
        scan.client_renegotiation_dos = reneg["is_vulnerable_to_client_renegotiation_dos"]
            .as_bool()
            .expect("is_vulnerable_to_client_renegotiation_dos");
        scan.client_renegotiations = reneg["client_renegotiations_success_count"]
            .as_f64()
            .unwrap_or(-1.0);
        scans.push(scan);
    }
    scans
}

/// One listener's scan against tls-info and the profile.
fn check_scan(profile: Profile, info: &TlsInfo, scan: &Scan) {
    let what = format!("{} {}", profile.name(), scan.target);
    for p in PROTOS {
        let wire = &scan.accepted[idx(p)];
        let expected = info.effective_iana(p);
        let extra: Vec<&String> = wire.difference(&expected).collect();
        // Missing suites with sslyze's reason (e.g. "TLS alert: bad record mac").
        let missing: Vec<String> = expected
            .difference(wire)
            .map(|m| {
                let why = scan.rejected_why[idx(p)]
                    .iter()
                    .find(|(n, _)| n == m)
                    .map_or("not tested", |(_, w)| w.as_str());
                format!("{m} ({why})")
            })
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what} {}: sslyze accepted {} suites, tls-info lists {}; \
             in tls-info but not accepted: {missing:?}; accepted but not in tls-info: {extra:?}\n{}",
            p.tls_info(),
            wire.len(),
            expected.len(),
            info.raw
        );
        // The comparison means something only if sslyze tried every seed suite.
        for s in profile.seed(p) {
            assert!(
                scan.tested[idx(p)].contains(*s),
                "{what} {}: sslyze did not test {s}",
                p.tls_info()
            );
        }
        if matches!(p, Proto::Tls10 | Proto::Tls11) {
            assert_eq!(
                !wire.is_empty(),
                profile == Profile::Compat,
                "{what}: {} must be accepted only by compat",
                p.tls_info()
            );
        }
    }
    assert_eq!(scan.ssl_accepted, 0, "{what}: SSL 2/3 accepted");
    assert!(!scan.compression, "{what}: TLS compression supported");
    // RFC 5746 renegotiation_info is always sent (it also protects a peer that never
    // renegotiates); client-initiated renegotiation is refused in every profile
    // (tls-info: strict "disabled", the others "never client-initiated").
    assert!(
        scan.secure_renegotiation,
        "{what}: no secure renegotiation (RFC 5746)"
    );
    assert!(
        !scan.client_renegotiation_dos,
        "{what}: client-initiated renegotiation accepted ({} in a row)",
        scan.client_renegotiations
    );
}

// ---------------------------------------------------------------------------
// openssl s_client
// ---------------------------------------------------------------------------

/// The suite the server picks when the client offers the effective list reversed:
/// with server preference, the server's first one.
fn check_server_preference(profile: Profile, info: &TlsInfo, d: &Daemon) {
    for p in PROTOS {
        let list = info.effective(p);
        if list.is_empty() {
            continue;
        }
        let reversed: Vec<&str> = list.iter().rev().map(|s| s.openssl.as_str()).collect();
        let mut args = vec![
            "s_client",
            "-brief",
            "-starttls",
            "smtp",
            "-connect",
            &d.smtp,
            p.s_client_flag(),
        ];
        let (flag, suites) = if p == Proto::Tls13 {
            ("-ciphersuites", reversed.join(":"))
        } else {
            ("-cipher", format!("{}:@SECLEVEL=0", reversed.join(":")))
        };
        args.extend([flag, &suites]);
        let out = certs::openssl_output(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        let chosen = err
            .lines()
            .find_map(|l| l.strip_prefix("Ciphersuite: "))
            .unwrap_or_else(|| {
                panic!(
                    "{} {}: s_client made no handshake: {err}",
                    profile.name(),
                    p.tls_info()
                )
            });
        assert_eq!(
            chosen,
            list[0].openssl,
            "{} {}: with the client's order reversed the server should still pick its first suite",
            profile.name(),
            p.tls_info()
        );
    }
}

// ---------------------------------------------------------------------------
// The per-profile wire test.
// ---------------------------------------------------------------------------

fn wire_test(profile: Profile) {
    let t0 = Instant::now();
    let bin = binary(profile);
    let info = tls_info(&bin);
    check_tls_info(profile, &info);

    let mut d = Daemon::start(&bin, profile.name());
    let dir = TempDir::new(&format!("profiles-scan-{}", profile.name()));
    // STARTTLS listeners in one sslyze run, implicit TLS in a parallel one.
    let scans = std::thread::scope(|s| {
        let starttls = s.spawn(|| {
            sslyze(
                dir.path(),
                "starttls",
                true,
                &[d.smtp.as_str(), d.submission.as_str()],
            )
        });
        let implicit = sslyze(dir.path(), "implicit", false, &[d.smtps.as_str()]);
        let mut v = read_sslyze(&starttls.join().unwrap());
        v.extend(read_sslyze(&implicit));
        v
    });
    assert_eq!(scans.len(), 3, "{scans:?}");
    for scan in &scans {
        check_scan(profile, &info, scan);
    }
    check_server_preference(profile, &info, &d);
    assert!(
        d.running(),
        "tinymta ({}) died during the scans:\n{}",
        profile.name(),
        d.log()
    );

    let counts: Vec<String> = PROTOS
        .iter()
        .map(|p| {
            format!(
                "{} expected {} offered {} unavailable {}",
                p.tls_info(),
                profile.seed(*p).len(),
                scans[0].accepted[idx(*p)].len(),
                info.unavailable(*p).len()
            )
        })
        .collect();
    eprintln!(
        "profile {}: {} ({:.1} s)",
        profile.name(),
        counts.join("; "),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn strict_profile_on_the_wire_equals_tls_info() {
    if host_only("strict profile build") {
        return;
    }
    wire_test(Profile::Strict);
}

#[test]
fn medium_profile_on_the_wire_equals_tls_info() {
    wire_test(Profile::Medium);
}

#[test]
fn compat_profile_on_the_wire_equals_tls_info() {
    if host_only("compat profile build") {
        return;
    }
    wire_test(Profile::Compat);
}

// ---------------------------------------------------------------------------
// testssl.sh
// ---------------------------------------------------------------------------

#[test]
fn testssl_agrees_with_tls_info_for_medium() {
    if host_only("testssl") {
        return;
    }
    let testssl = common::require_tool("testssl", "testssl.sh");
    let bin = binary(Profile::Medium);
    let info = tls_info(&bin);
    check_tls_info(Profile::Medium, &info);
    let d = Daemon::start(&bin, "testssl");
    let dir = TempDir::new("profiles-testssl");
    let json = dir.path().join("testssl.json");
    let out = run_with_timeout(
        Command::new(&testssl)
            .args([
                "--quiet",
                "--color",
                "0",
                "--starttls",
                "smtp",
                "-E",
                "--jsonfile",
            ])
            .arg(&json)
            .arg(&d.smtp),
        None,
        Duration::from_secs(300),
    );
    let text = fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("testssl wrote no JSON ({e}): {out:?}"));
    let doc = parse_json(&text).unwrap_or_else(|e| panic!("testssl JSON: {e}\n{text}"));
    let entries = arr(&doc);
    assert!(
        entries.iter().any(|e| e["id"].as_str() == Some("scanTime")),
        "testssl did not finish: {out:?}\n{text}"
    );
    for e in entries {
        let sev = e["severity"].as_str().unwrap_or("");
        assert!(
            sev != "FATAL" && e["id"].as_str() != Some("scanProblem"),
            "testssl: {e:?}"
        );
    }
    // {"id": "cipher-tls1_2_xc030", "finding": "TLS 1.2   xc030   ECDHE-RSA-AES256-GCM-SHA384
    //   ECDH 253   AESGCM   256   TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
    let mut offered: [BTreeSet<String>; 4] = Default::default();
    for e in entries {
        let id = e["id"].as_str().unwrap_or("");
        let Some(rest) = id.strip_prefix("cipher-") else {
            continue;
        };
        let (proto, _hex) = rest.rsplit_once('_').unwrap();
        let finding = e["finding"].as_str().unwrap_or("");
        let words: Vec<&str> = finding.split_whitespace().collect();
        let Some(p) = PROTOS.iter().copied().find(|p| p.testssl() == proto) else {
            panic!("testssl reports {proto} offered: {finding}");
        };
        let iana = *words.last().unwrap();
        assert!(
            iana.starts_with("TLS_"),
            "testssl finding without an IANA name: {finding}"
        );
        // The OpenSSL name column must be tinymta's name for that suite too.
        let openssl = words[3];
        assert_eq!(
            info.openssl_name(iana),
            Some(openssl),
            "testssl {}: {iana} shown as {openssl}",
            p.tls_info()
        );
        offered[idx(p)].insert(iana.to_string());
    }
    let mut counts = Vec::new();
    for p in PROTOS {
        let expected = info.effective_iana(p);
        let got = &offered[idx(p)];
        assert_eq!(
            got,
            &expected,
            "testssl {}: offered per testssl vs tls-info; in tls-info only: {:?}; testssl only: {:?}",
            p.tls_info(),
            expected.difference(got).collect::<Vec<_>>(),
            got.difference(&expected).collect::<Vec<_>>()
        );
        counts.push(format!("{} {}", p.tls_info(), got.len()));
    }
    eprintln!("testssl (medium) offered: {}", counts.join(", "));
}

// ---------------------------------------------------------------------------
// Client-initiated renegotiation
// ---------------------------------------------------------------------------

/// An interactive `openssl s_client`: stdin kept open, output collected as it comes.
struct Interactive {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Interactive {
    fn spawn(cmd: &mut Command) -> Interactive {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let collect = |r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&buf);
            std::thread::spawn(move || {
                let mut r = r;
                let mut b = [0u8; 4096];
                while let Ok(n) = r.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&b[..n]));
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Interactive {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }
    fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }
    fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }
    fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(line.as_bytes());
            let _ = s.flush();
        }
    }
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
    /// Waits until `cond` holds or the process ends (bounded).
    fn wait_for(&mut self, limit: Duration, cond: impl Fn(&Interactive) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if cond(self) {
                return true;
            }
            if self.exited() || start.elapsed() > limit {
                // Let the reader threads catch the last output.
                std::thread::sleep(Duration::from_millis(200));
                return cond(self);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn finish(mut self) -> (Option<i32>, String, String) {
        self.stdin.take();
        let start = Instant::now();
        let code = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st.code();
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (code, self.out(), self.err())
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What happened to an `R` typed into s_client after a TLS 1.2 handshake. The
/// transcripts are read through `Debug` in failure messages.
#[derive(Debug)]
#[allow(dead_code)]
struct Renegotiation {
    /// s_client started one ("RENEGOTIATING").
    attempted: bool,
    /// A new handshake completed: the certificate was verified again after "R".
    completed: bool,
    /// The connection carried data after "R" (`probe` got `expect` back).
    usable_after: bool,
    /// An OpenSSL error after "R" (e.g. "no renegotiation", an alert).
    error: Option<String>,
    exit: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Connects with `s_client -tls1_2 ARGS`, waits for the handshake, types `R`, then
/// sends `probe` and looks for `expect` in the output.
fn try_renegotiation(args: &[&str], probe: &str, expect: &str) -> Renegotiation {
    let mut c = Interactive::spawn(
        Command::new("openssl")
            .arg("s_client")
            .args(args)
            .arg("-tls1_2"),
    );
    let handshake = c.wait_for(Duration::from_secs(30), |c| {
        c.out().contains("Verify return code")
    });
    assert!(
        handshake,
        "s_client {args:?}: no handshake: {}\n{}",
        c.out(),
        c.err()
    );
    // s_client's stdout "---" ends the session block; then it reads stdin.
    std::thread::sleep(Duration::from_millis(300));
    let verifies_before = c.err().matches("verify return:").count();
    let out_before = c.out().len();
    c.send("R\n");
    c.wait_for(Duration::from_secs(10), |c| {
        let e = c.err();
        e.contains("RENEGOTIATING")
            && (e.matches("verify return:").count() > verifies_before || e.contains(":error:"))
    });
    // Whatever happened, try to use the connection.
    std::thread::sleep(Duration::from_millis(300));
    c.send(probe);
    c.wait_for(Duration::from_secs(5), |c| {
        c.out()[out_before..].contains(expect)
    });
    let usable_after = c.out()[out_before..].contains(expect);
    let (exit, stdout, stderr) = c.finish();
    let after = stderr
        .split_once("RENEGOTIATING")
        .map(|(_, a)| a.to_string());
    Renegotiation {
        attempted: after.is_some(),
        completed: after
            .as_deref()
            .is_some_and(|a| a.contains("verify return:")),
        usable_after,
        error: after
            .as_deref()
            .and_then(|a| a.lines().find(|l| l.contains(":error:")).map(String::from)),
        exit,
        stdout,
        stderr,
    }
}

#[test]
fn strict_refuses_client_initiated_renegotiation() {
    if host_only("strict renegotiation") {
        return;
    }
    // Control: a server that allows client renegotiation, so the detector is proven to
    // see a successful one.
    let dir = TempDir::new("profiles-reneg");
    let cert = certs::self_signed(dir.path(), "ctl", "localhost");
    let port = free_port("127.0.0.1");
    let mut server = Interactive::spawn(
        Command::new("openssl")
            .args(["s_server", "-client_renegotiation", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert.cert)
            .arg("-key")
            .arg(&cert.key),
    );
    assert!(
        server.wait_for(Duration::from_secs(20), |s| s.out().contains("ACCEPT")),
        "s_server did not start: {}",
        server.err()
    );
    let addr = format!("127.0.0.1:{port}");
    let ctl = try_renegotiation(&["-connect", &addr], "ping\n", "");
    let server_saw_ping = server.wait_for(Duration::from_secs(5), |s| s.out().contains("ping"));
    drop(server);
    assert!(
        ctl.attempted && ctl.completed && ctl.error.is_none() && server_saw_ping,
        "control: s_server -client_renegotiation should renegotiate: {ctl:?}"
    );

    let bin = binary(Profile::Strict);
    let d = Daemon::start(&bin, "reneg-strict");
    let r = try_renegotiation(
        &["-starttls", "smtp", "-connect", &d.smtp],
        "EHLO renegotiation.test\n",
        "250",
    );
    assert!(r.attempted, "s_client did not renegotiate: {r:?}");
    assert!(
        !r.completed && !r.usable_after,
        "strict: client-initiated renegotiation succeeded: {r:?}"
    );
    assert!(
        r.error.is_some() && r.exit != Some(0),
        "strict: s_client should fail after R: {r:?}"
    );
    eprintln!(
        "strict renegotiation refused: {} (s_client exit {:?})",
        r.error.as_deref().unwrap_or(""),
        r.exit
    );
    drop(d);

    // For the record (no assertion here beyond sslyze's): what medium does.
    let bin = binary(Profile::Medium);
    let d = Daemon::start(&bin, "reneg-medium");
    let r = try_renegotiation(
        &["-starttls", "smtp", "-connect", &d.smtp],
        "EHLO renegotiation.test\n",
        "250",
    );
    eprintln!(
        "medium after R: completed {}, usable {}, error {:?}",
        r.completed, r.usable_after, r.error
    );
}

/// SEED (legacy provider) must carry data with clients that do not negotiate
/// Encrypt-then-MAC (RFC 7366), as sslyze's OpenSSL 1.0.2 and the old peers SEED is
/// listed for: the MAC-then-encrypt record path of a legacy-provider cipher needs a
/// random generator in the provider's library context.
#[test]
fn seed_suites_carry_data_without_encrypt_then_mac() {
    let bin = binary(Profile::Medium);
    let info = tls_info(&bin);
    let seed: Vec<&Suite> = info
        .effective(Proto::Tls12)
        .iter()
        .filter(|s| s.iana.contains("_SEED_"))
        .collect();
    if test_runner().is_none() {
        assert_eq!(seed.len(), 2, "SEED suites in tls-info:\n{}", info.raw);
    }
    let d = Daemon::start(&bin, "seed-mte");
    let mut failures = Vec::new();
    for s in seed {
        for etm in [false, true] {
            let mut cmd = Command::new("openssl");
            cmd.args(["s_client", "-provider", "legacy", "-provider", "default"])
                .args(["-starttls", "smtp", "-connect", &d.smtp, "-tls1_2"])
                .args(["-cipher", &s.openssl]);
            if !etm {
                cmd.arg("-no_etm");
            }
            let mut c = Interactive::spawn(&mut cmd);
            let up = c.wait_for(Duration::from_secs(30), |c| {
                c.out().contains("Verify return code")
            });
            let before = c.out().len();
            if up {
                std::thread::sleep(Duration::from_millis(200));
                c.send("EHLO seed.test\n");
                c.wait_for(Duration::from_secs(10), |c| {
                    c.out()[before..].contains("250 ")
                });
            }
            let replied = c.out().get(before..).unwrap_or("").contains("250 ");
            let (_, _, err) = c.finish();
            if !(up && replied) {
                failures.push(format!(
                    "{} ({}), {}: no EHLO reply over TLS; s_client: {}",
                    s.openssl,
                    s.iana,
                    if etm {
                        "Encrypt-then-MAC"
                    } else {
                        "MAC-then-encrypt (-no_etm)"
                    },
                    err.lines()
                        .filter(|l| l.contains("error"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ));
            }
        }
    }
    let log = d.log();
    assert!(
        failures.is_empty(),
        "SEED suites listed as offered by tls-info fail on the wire:\n{}\n\ntinymta log:\n{log}",
        failures.join("\n")
    );
}
