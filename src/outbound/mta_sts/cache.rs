//! The MTA-STS policy cache on disk: one file per policy domain,
//! `<state-dir>/mta-sts/DOMAIN`, so a policy outlives a restart (RFC 8461 §5.1: a
//! cached, unexpired policy is applied when no live one can be had). A file is a few
//! `key: value` lines, an empty line, and the policy exactly as served:
//!
//! ```text
//! domain: example.com
//! id: 20240101T000000
//! fetched: 1733011200
//!
//! version: STSv1
//! mode: enforce
//! ...
//! ```
//!
//! Written whole (temporary file, fsync, rename, directory fsync), so a reader sees
//! the old policy or the new one, never a mix.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::policy::StsPolicy;
use crate::tls::cert::Staged;

/// A policy as fetched: which TXT `id` it went with and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub id: String,
    /// Unix seconds of the fetch.
    pub fetched: u64,
    pub policy: StsPolicy,
}

impl Cached {
    /// Unix seconds from which it may no longer be used.
    pub fn expires(&self) -> u64 {
        self.fetched.saturating_add(self.policy.max_age)
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires()
    }

    /// Past half its lifetime: time to fetch again while it is still good (§5.1
    /// proactive refresh), so a policy host that is down for a while costs nothing.
    pub fn wants_refresh(&self, now: u64) -> bool {
        now >= self.fetched.saturating_add(self.policy.max_age / 2)
    }
}

/// The cache file of `domain` in `dir`. The domain was checked as a DNS name (no `/`);
/// it is lower-cased so two spellings share one file.
pub fn path(dir: &Path, domain: &str) -> PathBuf {
    dir.join(domain.to_ascii_lowercase())
}

/// The cached policy of `domain`: `Ok(None)` when there is none, `Err` when the file
/// cannot be read or is not a cache file (the caller logs it and fetches anew).
pub fn load(dir: &Path, domain: &str) -> Result<Option<Cached>, String> {
    let p = path(dir, domain);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn parse(text: &str) -> Result<Cached, String> {
    let (head, body) = text
        .split_once("\n\n")
        .ok_or("no empty line between the header and the policy")?;
    let (mut id, mut fetched) = (None, None);
    for line in head.lines() {
        match line.split_once(": ") {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("fetched", v)) => {
                fetched = Some(v.parse::<u64>().map_err(|_| "bad fetched: time")?)
            }
            _ => {}
        }
    }
    Ok(Cached {
        id: id.ok_or("no id: line")?,
        fetched: fetched.ok_or("no fetched: line")?,
        policy: StsPolicy::parse(body)?,
    })
}

/// Writes `domain`'s entry, creating `dir` when needed.
pub fn store(dir: &Path, domain: &str, entry: &Cached) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = format!(
        "domain: {domain}\nid: {}\nfetched: {}\n\n{}",
        entry.id, entry.fetched, entry.policy.text
    );
    Staged::write(&path(dir, domain), text.as_bytes(), 0o644)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_age() {
        let dir = std::env::temp_dir().join(format!("tinymta-sts-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&dir, "example.com"), Ok(None));
        let policy = StsPolicy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 100\r\n",
        )
        .unwrap();
        let entry = Cached {
            id: "abc1".into(),
            fetched: 1000,
            policy,
        };
        store(&dir, "Example.COM", &entry).unwrap();
        assert_eq!(load(&dir, "example.com"), Ok(Some(entry.clone())));
        assert!(entry.is_fresh(1099) && !entry.is_fresh(1100));
        assert!(!entry.wants_refresh(1049) && entry.wants_refresh(1050));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::write(path(&dir, "bad.example"), "id: x\n").unwrap();
        assert!(load(&dir, "bad.example").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
