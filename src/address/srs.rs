//! The Sender Rewriting Scheme for forwarded mail, in the "guarded" form of libsrs2 and
//! postsrsd, so addresses made here and there are interchangeable given the same secret.
//!
//! A message forwarded from a foreign sender to a remote address leaves with the
//! envelope sender rewritten into the forwarder's domain, so SPF at the destination
//! checks the forwarder and not the original sender's domain:
//!
//! ```text
//! SRS0=HHHH=TT=orig.example=alice@srs.example           first forwarder
//! SRS1=HHHH=first.example==HHHH=TT=orig.example=alice@srs.example   a second one
//! ```
//!
//! - `TT`: the day (Unix time / 86400) modulo 1024, two base32 characters
//!   (`A-Z2-7`, high five bits first).
//! - `HHHH`: the first 4 characters of the standard base64 of HMAC-SHA1, keyed with the
//!   secret, over the ASCII-lowercased parts concatenated: timestamp, domain, local part
//!   for SRS0; first-hop domain and the rest of the SRS0 local part (with its leading
//!   `=`) for SRS1. Checked case-insensitively, since some MTAs fold local parts.
//! - An SRS0 address is valid for 21 days (libsrs2's `maxage`); a timestamp in the
//!   "future" reads as about three years old, so it fails too. SRS1 has no timestamp: the
//!   first hop checks its own SRS0 when the bounce reaches it.
//! - Forwarding an SRS0 address makes an SRS1 one; forwarding an SRS1 address keeps its
//!   first hop and re-signs it; a sender already in the SRS domain is left alone.
//!
//! The separator after `SRS0`/`SRS1` may be `=`, `-` or `+` on input (libsrs2);
//! output uses `=`. The key is the secret as written in the file (libsrs2 keys the HMAC
//! with the secret string); the first secret signs, every secret verifies, so a secret
//! can be rotated as with postsrsd. The secret lives in `<state-dir>/srs.secret`.
//!
//! Note: an SRS0 local part is 14 characters longer than the domain plus the original
//! local part, often past RFC 5321's 64; libsrs2, postsrsd and Postfix do not enforce
//! that limit, and a receiver of SRS bounces must not either.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

/// libsrs2's default `maxage`, in days.
pub const MAX_AGE_DAYS: u64 = 21;
/// libsrs2's default `hashlength` (and `hashmin`).
const HASH_LEN: usize = 4;
const TIME_CHARS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Two base32 characters of days: 1024 slots.
const TIME_SLOTS: u64 = 1024;
const DAY: u64 = 86_400;
/// The name of the secret file in the state directory.
pub const SECRET_FILE: &str = "srs.secret";

/// Why an address could not be rewritten or reversed. The caller answers a bad reverse
/// with `550 5.1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrsError {
    /// `encode`: the sender has no `@domain` (the null sender is never rewritten).
    NoDomain,
    /// `decode`: not an SRS0/SRS1 address at all.
    NotSrs,
    /// `decode`: an SRS address with a part missing or a bad timestamp character.
    Malformed(&'static str),
    /// The hash does not match: forged, or made with a secret we do not have.
    BadHash,
    /// The SRS0 timestamp is older than `MAX_AGE_DAYS` (or in the future).
    Expired,
    /// OpenSSL could not compute the HMAC (out of memory): `encode` leaves the sender
    /// as it is, `decode` refuses.
    Hmac,
}

impl fmt::Display for SrsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrsError::NoDomain => f.write_str("no domain in sender address"),
            SrsError::NotSrs => f.write_str("not an SRS address"),
            SrsError::Malformed(what) => write!(f, "malformed SRS address: {what}"),
            SrsError::BadHash => f.write_str("hash invalid in SRS address"),
            SrsError::Expired => f.write_str("SRS address expired"),
            SrsError::Hmac => f.write_str("cannot compute the SRS hash"),
        }
    }
}

/// The SRS secrets: the first signs, all verify.
#[derive(Clone)]
pub struct Secrets {
    /// HMAC keys.
    keys: Vec<PKey<Private>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        write!(f, "Secrets({} keys)", self.keys.len())
    }
}

impl Secrets {
    /// From secret strings (each non-empty); `None` if there is none.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Option<Secrets> {
        let keys: Vec<PKey<Private>> = secrets
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !s.is_empty())
            .filter_map(|s| PKey::hmac(s).ok())
            .collect();
        (!keys.is_empty()).then_some(Secrets { keys })
    }

    /// From a secret file's text: one secret a line, as postsrsd reads its secrets file
    /// (surrounding white space and empty lines ignored).
    pub fn from_text(text: &str) -> Option<Secrets> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        Secrets::new(&lines)
    }
}

/// The `HASH_LEN`-character hash of `parts` with one key.
fn hash(key: &PKey<Private>, parts: &[&str]) -> Result<String, SrsError> {
    let tag = hmac_sha1(key, parts).map_err(|_| SrsError::Hmac)?;
    let mut b64 = openssl::base64::encode_block(&tag);
    b64.truncate(HASH_LEN);
    Ok(b64)
}

fn hmac_sha1(key: &PKey<Private>, parts: &[&str]) -> Result<Vec<u8>, ErrorStack> {
    let mut ctx = Signer::new(MessageDigest::sha1(), key)?;
    for part in parts {
        // libsrs2 lowercases ASCII only (`tolower` in the C locale).
        ctx.update(part.to_ascii_lowercase().as_bytes())?;
    }
    ctx.sign_to_vec()
}

/// Checks a hash against every secret, case-insensitively; as libsrs2, a hash longer
/// than `HASH_LEN` is compared on its first `HASH_LEN` characters.
fn check_hash(secrets: &Secrets, given: &str, parts: &[&str]) -> Result<(), SrsError> {
    let given = given.get(..HASH_LEN).ok_or(SrsError::BadHash)?;
    secrets
        .keys
        .iter()
        .any(|k| hash(k, parts).is_ok_and(|h| h.eq_ignore_ascii_case(given)))
        .then_some(())
        .ok_or(SrsError::BadHash)
}

/// The two-character timestamp of `now` (Unix seconds).
fn timestamp(now: u64) -> String {
    let day = now / DAY;
    let c = |v: u64| TIME_CHARS[(v & 31) as usize] as char;
    [c(day >> 5), c(day)].iter().collect()
}

/// Checks a timestamp as libsrs2 does: within `MAX_AGE_DAYS` of today, modulo 1024.
fn check_timestamp(stamp: &str, now: u64) -> Result<(), SrsError> {
    if stamp.len() != 2 {
        return Err(SrsError::Expired);
    }
    let mut then = 0u64;
    for b in stamp.bytes() {
        let v = TIME_CHARS
            .iter()
            .position(|&c| c == b.to_ascii_uppercase())
            .ok_or(SrsError::Malformed("bad base32 character in timestamp"))?;
        then = (then << 5) | v as u64;
    }
    let mut today = (now / DAY) % TIME_SLOTS;
    if today < then {
        today += TIME_SLOTS;
    }
    if today <= then + MAX_AGE_DAYS {
        Ok(())
    } else {
        Err(SrsError::Expired)
    }
}

/// `SRS0`/`SRS1` tag with a valid separator: the rest of the local part after it.
fn strip_tag<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    let head = local.get(..4)?;
    let sep = local[4..].chars().next()?;
    (head.eq_ignore_ascii_case(tag) && "=-+".contains(sep)).then(|| &local[5..])
}

/// Whether a local part is an SRS0 or SRS1 one (libsrs2 `SRS_IS_SRS_ADDRESS`).
pub fn is_srs(local: &str) -> bool {
    strip_tag(local, "SRS0").is_some() || strip_tag(local, "SRS1").is_some()
}

/// Rewrites the envelope sender `sender` (`local@domain`) of a forwarded message into
/// `srs_domain`. A sender already in `srs_domain` is returned as it is (libsrs2 without
/// `alwaysrewrite`); an SRS0 or SRS1 sender becomes SRS1.
pub fn encode(
    sender: &str,
    srs_domain: &str,
    secrets: &Secrets,
    now: u64,
) -> Result<String, SrsError> {
    let (local, domain) = sender
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
        .ok_or(SrsError::NoDomain)?;
    if domain.eq_ignore_ascii_case(srs_domain) {
        return Ok(sender.to_string());
    }
    let key = &secrets.keys[0];
    // SRS1 of a foreign SRS1: keep its first hop and the SRS0 part, sign again.
    if let Some(rest) = strip_tag(local, "SRS1") {
        if let Some((first_hop, srs0_rest)) = rest
            .split_once('=')
            .and_then(|(_, after_hash)| after_hash.split_once('='))
        {
            let h = hash(key, &[first_hop, srs0_rest])?;
            return Ok(format!("SRS1={h}={first_hop}={srs0_rest}@{srs_domain}"));
        }
    }
    // SRS1 of a foreign SRS0: its domain is the first hop; keep everything after "SRS0".
    if strip_tag(local, "SRS0").is_some() {
        let srs0_rest = &local[4..];
        let h = hash(key, &[domain, srs0_rest])?;
        return Ok(format!("SRS1={h}={domain}={srs0_rest}@{srs_domain}"));
    }
    let stamp = timestamp(now);
    let h = hash(key, &[&stamp, domain, local])?;
    Ok(format!("SRS0={h}={stamp}={domain}={local}@{srs_domain}"))
}

/// `host=user` into its two parts, each non-empty (libsrs2 lets empty ones through to
/// the hash check; an empty host or user could not be delivered to anyway).
fn parts<'a>(
    rest: &'a str,
    no_host: &'static str,
    no_user: &'static str,
) -> Result<(&'a str, &'a str), SrsError> {
    let (host, user) = rest.split_once('=').ok_or(SrsError::Malformed(no_user))?;
    if host.is_empty() {
        return Err(SrsError::Malformed(no_host));
    }
    if user.is_empty() {
        return Err(SrsError::Malformed(no_user));
    }
    Ok((host, user))
}

/// Reverses an SRS address (the recipient of a bounce): SRS0 gives the original sender,
/// SRS1 the first hop's SRS0 address (`SRS0=...@first.example`), to be sent on there.
/// The domain of `addr` is not looked at: the caller reverses only addresses in its
/// SRS domain.
pub fn decode(addr: &str, secrets: &Secrets, now: u64) -> Result<String, SrsError> {
    let local = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
    if let Some(rest) = strip_tag(local, "SRS1") {
        if rest.is_empty() {
            return Err(SrsError::Malformed("no hash in SRS1 address"));
        }
        let (h, rest) = rest
            .split_once('=')
            .ok_or(SrsError::Malformed("no host in SRS1 address"))?;
        let (host, user) = parts(rest, "no host in SRS1 address", "no user in SRS1 address")?;
        check_hash(secrets, h, &[host, user])?;
        return Ok(format!("SRS0{user}@{host}"));
    }
    let rest = strip_tag(local, "SRS0").ok_or(SrsError::NotSrs)?;
    if rest.is_empty() {
        return Err(SrsError::Malformed("no hash in SRS0 address"));
    }
    let (h, rest) = rest
        .split_once('=')
        .ok_or(SrsError::Malformed("no timestamp in SRS0 address"))?;
    let (stamp, rest) = rest
        .split_once('=')
        .ok_or(SrsError::Malformed("no host in SRS0 address"))?;
    let (host, user) = parts(rest, "no host in SRS0 address", "no user in SRS0 address")?;
    check_timestamp(stamp, now)?;
    check_hash(secrets, h, &[stamp, host, user])?;
    Ok(format!("{user}@{host}"))
}

/// Loads the SRS secrets from `<state_dir>/srs.secret`, creating the file with a new
/// random secret (32 bytes from the system's generator, base64, one line) on first use.
/// A file that group or others can read is refused: with the secret anyone can make SRS
/// addresses this host will forward bounces to.
pub fn load_or_create_secret(state_dir: &Path) -> Result<Secrets, String> {
    let path = state_dir.join(SECRET_FILE);
    match fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "{}: readable by group or others; chmod 600 it",
                    path.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(&path)?,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Secrets::from_text(&text)
        .ok_or_else(|| format!("{}: no secret in the file (one a line)", path.display()))
}

/// Writes a new secret file atomically: a temporary file (mode 0600, fsynced), linked
/// into place so a concurrent creator's file is never replaced (then theirs is used),
/// and the directory fsynced so the secret survives a power cut.
fn create_secret(path: &Path) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let mut raw = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw)
        .map_err(|_| format!("{}: no random bytes from the system", path.display()))?;
    let mut line = openssl::base64::encode_block(&raw);
    line.push('\n');
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(&tmp, e));
    }
    let placed = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links (FAT on a USB stick): rename.
        Err(_) => fs::rename(&tmp, path),
    };
    let _ = fs::remove_file(&tmp);
    placed.map_err(|e| err(path, e))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// postsrsd's test setup (tests/unit/test_srs2.c, tests/blackbox/socketmap.py):
    /// secret "tops3cr3t", 2020-01-01 00:01:00 UTC, SRS domain example.com.
    const NOW: u64 = 1_577_836_860;

    fn secrets() -> Secrets {
        Secrets::new(&["tops3cr3t"]).unwrap()
    }

    #[test]
    fn postsrsd_vectors_forward() {
        let s = secrets();
        let fwd = |a: &str| encode(a, "example.com", &s, NOW);
        assert_eq!(
            fwd("test@otherdomain.com").unwrap(),
            "SRS0=vmyz=2W=otherdomain.com=test@example.com"
        );
        assert_eq!(fwd("test@example.com").unwrap(), "test@example.com");
        assert_eq!(
            fwd("SRS0=XjO9=2V=otherdomain.com=test@example.com").unwrap(),
            "SRS0=XjO9=2V=otherdomain.com=test@example.com"
        );
        assert_eq!(
            fwd("SRS0=opaque+string@otherdomain.com").unwrap(),
            "SRS1=chaI=otherdomain.com==opaque+string@example.com"
        );
        assert_eq!(
            fwd("SRS1=X=thirddomain.com==opaque+string@otherdomain.com").unwrap(),
            "SRS1=JIBX=thirddomain.com==opaque+string@example.com"
        );
        let long = format!("test@{}.net", "a".repeat(512 - 9));
        assert_eq!(
            fwd(&long).unwrap(),
            format!("SRS0=G7tR=2W={}.net=test@example.com", "a".repeat(512 - 9))
        );
        assert_eq!(fwd("foo"), Err(SrsError::NoDomain));
        assert_eq!(fwd(""), Err(SrsError::NoDomain));
    }

    #[test]
    fn postsrsd_vectors_reverse() {
        let s = secrets();
        let rev = |a: &str| decode(a, &s, NOW);
        assert_eq!(
            rev("SRS0=XjO9=2V=otherdomain.com=test@example.com").unwrap(),
            "test@otherdomain.com"
        );
        assert_eq!(
            rev("SRS1=JIBX=thirddomain.com==opaque+string@example.com").unwrap(),
            "SRS0=opaque+string@thirddomain.com"
        );
        assert_eq!(rev("test@example.com"), Err(SrsError::NotSrs));
        // Six months old, and six months "in the future".
        assert_eq!(
            rev("SRS0=te87=T7=otherdomain.com=test@example.com"),
            Err(SrsError::Expired)
        );
        assert_eq!(
            rev("SRS0=VcIb=7N=otherdomain.com=test@example.com"),
            Err(SrsError::Expired)
        );
        assert_eq!(
            rev("SRS0=FAKE=2V=otherdomain.com=test@example.com"),
            Err(SrsError::BadHash)
        );
        // Case-munged by some MTA on the way back.
        assert_eq!(
            rev("srs0=xjo9=2v=otherdomain.com=test@example.com").unwrap(),
            "test@otherdomain.com"
        );
        assert_eq!(
            rev("SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM").unwrap(),
            "TEST@OTHERDOMAIN.COM"
        );
        let long = "a".repeat(512 - 34);
        assert_eq!(
            rev(&format!("SRS0=iCvJ=2W={long}.net=test@example.com")).unwrap(),
            format!("test@{long}.net")
        );
        for (addr, what) in [
            ("SRS0=@example.com", "no hash in SRS0 address"),
            ("SRS0=XjO9@example.com", "no timestamp in SRS0 address"),
            ("SRS0=XjO9=2V@example.com", "no host in SRS0 address"),
            (
                "SRS0=XjO9=2V=otherdomain.com@example.com",
                "no user in SRS0 address",
            ),
            (
                "SRS0=XjO9=2!=otherdomain.com=test@example.com",
                "bad base32 character in timestamp",
            ),
            ("SRS1=@example.com", "no hash in SRS1 address"),
            ("SRS1=JIBX@example.com", "no host in SRS1 address"),
            (
                "SRS1=JIBX=thirddomain.com=@example.com",
                "no user in SRS1 address",
            ),
            (
                "SRS1=JIBX=thirddomain.com@example.com",
                "no user in SRS1 address",
            ),
            ("SRS1=JIBX==x@example.com", "no host in SRS1 address"),
            ("SRS0=XjO9=2V==test@example.com", "no host in SRS0 address"),
        ] {
            assert_eq!(rev(addr), Err(SrsError::Malformed(what)), "{addr}");
        }
    }

    #[test]
    fn round_trips_tampering_and_age() {
        let s = secrets();
        let srs0 = encode("Alice@Orig.example", "fwd.example", &s, NOW).unwrap();
        assert!(srs0.starts_with("SRS0=") && srs0.ends_with("=Orig.example=Alice@fwd.example"));
        assert_eq!(decode(&srs0, &s, NOW).unwrap(), "Alice@Orig.example");
        // Still good on day 21, expired on day 22.
        assert!(decode(&srs0, &s, NOW + 21 * DAY).is_ok());
        assert_eq!(decode(&srs0, &s, NOW + 22 * DAY), Err(SrsError::Expired));
        // Across the 1024-day wrap of the timestamp.
        let wrap = 1023 * DAY + 5;
        let a = encode("a@b.example", "fwd.example", &s, wrap).unwrap();
        assert!(decode(&a, &s, wrap + 3 * DAY).is_ok());
        // Another user or domain under the same hash and timestamp: refused.
        let forged = srs0.replace("=Alice@", "=Mallory@");
        assert_eq!(decode(&forged, &s, NOW), Err(SrsError::BadHash));
        let forged = srs0.replace("Orig.example", "evil.example");
        assert_eq!(decode(&forged, &s, NOW), Err(SrsError::BadHash));
        let other = Secrets::new(&["another secret"]).unwrap();
        assert_eq!(decode(&srs0, &other, NOW), Err(SrsError::BadHash));
        // The '-' and '+' separators libsrs2 accepts after the tag.
        let dash = srs0.replacen("SRS0=", "SRS0-", 1);
        assert_eq!(decode(&dash, &s, NOW).unwrap(), "Alice@Orig.example");
    }

    #[test]
    fn srs1_for_a_second_forwarder_and_back() {
        let first = Secrets::new(&["first hop"]).unwrap();
        let second = Secrets::new(&["second hop"]).unwrap();
        let third = Secrets::new(&["third hop"]).unwrap();
        let srs0 = encode("bob@orig.example", "first.example", &first, NOW).unwrap();
        let srs1 = encode(&srs0, "second.example", &second, NOW).unwrap();
        let hop1 = srs0
            .strip_prefix("SRS0")
            .unwrap()
            .split('@')
            .next()
            .unwrap();
        assert!(srs1.starts_with("SRS1="));
        assert!(srs1.ends_with(&format!("=first.example={hop1}@second.example")));
        // A third forwarder keeps the first hop and signs with its own secret.
        let srs1b = encode(&srs1, "third.example", &third, NOW).unwrap();
        assert!(srs1b.ends_with(&format!("=first.example={hop1}@third.example")));
        // The bounce goes back: third -> first hop's SRS0 -> original sender.
        let back = decode(&srs1b, &third, NOW).unwrap();
        assert_eq!(back, srs0);
        assert_eq!(decode(&back, &first, NOW).unwrap(), "bob@orig.example");
        assert_eq!(decode(&srs1b, &second, NOW), Err(SrsError::BadHash));
    }

    #[test]
    fn rotated_secrets_verify_and_the_first_signs() {
        let old = Secrets::new(&["old"]).unwrap();
        let rotated = Secrets::from_text("new\n\n  old  \n").unwrap();
        let made_before = encode("a@b.example", "f.example", &old, NOW).unwrap();
        assert_eq!(decode(&made_before, &rotated, NOW).unwrap(), "a@b.example");
        let made_after = encode("a@b.example", "f.example", &rotated, NOW).unwrap();
        assert_ne!(made_after, made_before);
        assert!(Secrets::from_text("\n \n").is_none());
        assert!(is_srs("srs0+x") && is_srs("SRS1=x") && !is_srs("SRS2=x") && !is_srs("SRS0x"));
        assert_eq!(format!("{rotated:?}"), "Secrets(2 keys)");
    }

    #[test]
    fn secret_file_is_created_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("tinymta-srs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let a = load_or_create_secret(&dir).unwrap();
        let path = dir.join(SECRET_FILE);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 44, "base64 of 32 bytes: {text:?}");
        assert!(text.ends_with('\n'));
        // The same secret on the next start.
        let b = load_or_create_secret(&dir).unwrap();
        let x = encode("u@d.example", "f.example", &a, NOW).unwrap();
        assert_eq!(decode(&x, &b, NOW).unwrap(), "u@d.example");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        // A group-readable file is refused, naming it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_or_create_secret(&dir).unwrap_err();
        assert!(e.contains("srs.secret") && e.contains("chmod 600"), "{e}");
        fs::write(&path, "\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create_secret(&dir)
            .unwrap_err()
            .contains("no secret"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
