//! Local delivery into Maildir (`tmp/` → fsync → rename into `new/` → fsync `new/`),
//! with `Return-Path:` and `Delivered-To:` prepended as Postfix's local delivery does.
//! The content is copied from the queue file in pieces, never held whole.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::queue::spool::{is_out_of_space, sync_dir};
use crate::queue::Envelope;

// 32 bits: MIPS32 has no 64-bit atomics; the name also has time and PID in it.
static DELIVERIES: AtomicU32 = AtomicU32::new(0);

/// A Maildir file name unique on this host: `secs.MmicrosPpidQn.host`.
fn unique_name(hostname: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        DELIVERIES.fetch_add(1, Ordering::Relaxed),
        hostname.replace(['/', ':'], "_")
    )
}

/// The RFC 3463 status of a delivery that failed with `e`. Every failure defers, never
/// bounces — a full flash or a read-only Maildir is this host's trouble, not the
/// sender's: `4.3.1` (mail system full) when out of space or over quota, else
/// `4.2.0`. The partial file is removed either way and the queue keeps the message.
pub fn failure_status(e: &io::Error) -> &'static str {
    if is_out_of_space(e) {
        "4.3.1"
    } else {
        "4.2.0"
    }
}

/// Delivers `content` (read to its end) for `rcpt` into
/// `<mail_dir>/<domain>/<user>/new/`, creating the Maildir if needed. Returns the path
/// of the delivered file.
pub fn deliver(
    mail_dir: &Path,
    domain: &str,
    user: &str,
    hostname: &str,
    env: &Envelope,
    rcpt: &str,
    content: &mut impl Read,
) -> io::Result<PathBuf> {
    let maildir = mail_dir.join(domain).join(user);
    for sub in ["tmp", "new", "cur"] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(maildir.join(sub))?;
    }
    let name = unique_name(hostname);
    let tmp = maildir.join("tmp").join(&name);
    let new = maildir.join("new").join(&name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let head = format!(
        "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
        env.sender, rcpt
    );
    let res = f
        .write_all(head.as_bytes())
        .and_then(|_| io::copy(content, &mut f))
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, &new))
        .and_then(|_| sync_dir(&maildir.join("new")));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map(|_| new)
}
