//! The maildrop: how `sendmail`, run by a user who may not write the queue (the daemon
//! runs as its own user, see `privileges`), hands a message to the daemon. Both ends
//! live here: the file `sendmail` drops and the daemon's pick-up of it.
//!
//! `<state-dir>/maildrop/` is owned by the daemon's user with mode 1733 (like `/tmp`
//! but not listable): anyone may create a file in it, nobody but the daemon (and
//! root) can list it, and the sticky bit keeps users from removing or renaming each
//! other's files. A file is `ID.RANDOM` (128 random bits, so a name cannot be guessed
//! to read another user's message), written as `ID.RANDOM.tmp` and renamed when
//! complete; `sendmail` then sends a datagram to `<state-dir>/pickup`.
//!
//! A dropped file is never made a queue file itself: the daemon opens it without
//! following links, requires a regular file with one link, takes the submitting user
//! from the file's owner (the kernel's word, not the file's), checks the envelope
//! (only `sender` and `rcpt` lines, each a valid address, and checked DSN requests),
//! and copies the content into a new queue file of its own, behind a `Received: ...
//! from userid N` field it writes itself. A dropped file holds no queue ID, client, protocol or uid the
//! daemon would take: a user can submit mail only as themselves, as `sendmail` from
//! a root-run daemon's queue would. Refused files are logged and removed.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::clock::unix_now;
use crate::headers::{self, Origin};
use crate::smtp::address::parse_mailbox;

use super::spool::{Envelope, EnvelopeDsn, QueueId, Spool};

/// First line of a dropped file.
const MAGIC: &str = "tinymta-maildrop 1";
/// Suffix of a file still being written.
const PARTIAL: &str = ".tmp";
/// A partial file this old was left by a `sendmail` that died: removed.
const STALE: Duration = Duration::from_secs(24 * 3600);
/// Envelope lines are short; a longer envelope is not one `sendmail` wrote.
const MAX_ENVELOPE: u64 = 1 << 20;

/// `<state-dir>/maildrop`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("maildrop")
}

/// `<state-dir>/pickup`: the daemon's datagram socket that anyone may write to; any
/// datagram means "look in the maildrop".
pub fn pickup_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("pickup")
}

/// Creates the maildrop (mode 1733) if needed and sets its mode if it differs (so a
/// read-only state directory that has one is no error); the daemon calls it at
/// start-up, before it hands the state directory to its user.
pub fn create(state_dir: &Path) -> io::Result<()> {
    let d = dir(state_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)?;
    if fs::metadata(&d)?.permissions().mode() & 0o7777 != 0o1733 {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1733))?;
    }
    Ok(())
}

/// `sendmail`'s side: writes the message (envelope, then `content` in pieces) into
/// the maildrop, complete and fsynced before it gets its final name, and pokes the
/// daemon. Returns the file's path.
pub fn submit(
    state_dir: &Path,
    id: &QueueId,
    (sender, recipients, dsn): (&str, &[String], &EnvelopeDsn),
    content: &mut impl Read,
) -> io::Result<PathBuf> {
    let mut rnd = [0u8; 16];
    openssl::rand::rand_bytes(&mut rnd).map_err(io::Error::other)?;
    let random: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let name = dir(state_dir).join(format!("{id}.{random}"));
    let partial = PathBuf::from(format!("{}{PARTIAL}", name.display()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial)?;
        // Readable by the daemon's user whatever the umask: the name is the secret.
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        let mut head = format!("{MAGIC}\nsender {sender}\n");
        for r in recipients {
            head.push_str(&format!("rcpt {r}\n"));
        }
        dsn.encode(&mut head);
        head.push('\n');
        f.write_all(head.as_bytes())?;
        io::copy(content, &mut f)?;
        f.sync_all()?;
        fs::rename(&partial, &name)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    let _ = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(b"maildrop", pickup_socket(state_dir)));
    Ok(name)
}

/// A message taken from the maildrop into the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickedUp {
    pub id: QueueId,
    /// The owner of the dropped file: who ran `sendmail`.
    pub uid: u32,
    pub sender: String,
    pub recipients: usize,
    pub size: u64,
}

/// The daemon's side: moves every complete file of the maildrop into the queue (see
/// the module documentation for the checks). Files it refuses are logged, then
/// removed, as are stale partial files. Blocking; returns what was queued.
pub fn pick_up(state_dir: &Path, spool: &Spool, hostname: &str, max_size: u64) -> Vec<PickedUp> {
    let entries = match fs::read_dir(dir(state_dir)) {
        Ok(e) => e,
        Err(e) => {
            log::error!("cannot list {}: {e}", dir(state_dir).display());
            return Vec::new();
        }
    };
    let mut queued = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(PARTIAL) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE);
            if old {
                log::warn!("maildrop: removing {name}, left incomplete by a sendmail that stopped");
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        match take(&path, &name, spool, hostname, max_size) {
            Ok(p) => {
                log::info!(
                    "{}: maildrop from uid {}: sender <{}>, {} recipient(s), {} bytes",
                    p.id,
                    p.uid,
                    p.sender,
                    p.recipients,
                    p.size
                );
                queued.push(p);
            }
            // The queue could not be written: the file stays for the next pick-up.
            Err(Take::Later(e)) => {
                log::error!("maildrop: {name}: cannot queue it yet: {e}");
                continue;
            }
            Err(Take::Refused(uid, why)) => {
                let owner = uid.map_or(String::new(), |u| format!(" from uid {u}"));
                log::warn!("maildrop: {name}{owner}: refused and removed: {why}")
            }
        }
        if let Err(e) = fs::remove_file(&path) {
            log::error!("maildrop: cannot remove {name}: {e}");
        }
    }
    queued
}

enum Take {
    /// The file is bad (uid of its owner if known, why): it is removed.
    Refused(Option<u32>, String),
    /// The queue could not take it now: it stays.
    Later(io::Error),
}

/// Validates one dropped file and copies it into the queue.
fn take(
    path: &Path,
    name: &str,
    spool: &Spool,
    hostname: &str,
    max_size: u64,
) -> Result<PickedUp, Take> {
    let unknown = |why: String| Take::Refused(None, why);
    // No link is followed and no FIFO or device blocks the daemon.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| unknown(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| unknown(format!("cannot stat: {e}")))?;
    let uid = meta.uid();
    let refuse = |why: &str| Take::Refused(Some(uid), why.to_string());
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file"));
    }
    if meta.nlink() != 1 {
        return Err(refuse("a file with more than one link"));
    }
    let mut r = BufReader::new(file);
    let (sender, recipients, dsn) = read_envelope(&mut r).map_err(|e| refuse(&e))?;
    let suggested = name
        .split_once('.')
        .and_then(|(id, _)| QueueId::parse(id))
        .filter(|id| !spool.message_path(id).exists());
    let now = unix_now();
    let mut last = None;
    for id in suggested
        .into_iter()
        .chain(std::iter::repeat_with(QueueId::generate).take(3))
    {
        let env = Envelope {
            id: id.clone(),
            arrival: now,
            sender: sender.clone(),
            recipients: recipients.clone(),
            client: "local".into(),
            protocol: "local".into(),
            unexpanded: true,
            requiretls: false,
            dsn: dsn.clone(),
        };
        let received = headers::received(&Origin::Local { uid }, hostname, &id.0, &[], now);
        let mut content = received.as_bytes().chain((&mut r).take(max_size + 1));
        let (file, copied) = match spool.copy_in(&env, &mut content) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(Take::Later(e)),
        };
        if copied > max_size + received.len() as u64 {
            drop(file);
            spool.abandon(&id);
            return Err(refuse(&format!("larger than {max_size} bytes")));
        }
        spool.commit(&id, file, b"").map_err(Take::Later)?;
        return Ok(PickedUp {
            id,
            uid,
            sender,
            recipients: recipients.len(),
            size: copied,
        });
    }
    Err(Take::Later(
        last.unwrap_or_else(|| io::Error::other("no queue ID")),
    ))
}

/// One line of the envelope into `line`, without its line end.
fn envelope_line(r: &mut impl BufRead, line: &mut String) -> Result<(), String> {
    line.clear();
    match r.read_line(line) {
        Ok(_) if !line.ends_with('\n') => Err("truncated envelope".into()),
        Ok(_) => {
            line.pop();
            Ok(())
        }
        Err(e) => Err(format!("unreadable envelope: {e}")),
    }
}

/// The envelope of a dropped file: only `sender` (once) and `rcpt` lines, each a valid
/// address, and the DSN requests (`dsn-*` lines, as in a queue file, each checked),
/// ended by an empty line; leaves `r` at the content.
fn read_envelope(r: &mut impl BufRead) -> Result<(String, Vec<String>, EnvelopeDsn), String> {
    let mut limited = r.take(MAX_ENVELOPE);
    let mut line = String::new();
    envelope_line(&mut limited, &mut line)?;
    if line != MAGIC {
        return Err("not a maildrop file".into());
    }
    let (mut sender, mut recipients, mut dsn) = (None, Vec::new(), EnvelopeDsn::default());
    loop {
        envelope_line(&mut limited, &mut line)?;
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once(' ').unwrap_or((&line, ""));
        match key {
            "sender" if sender.is_none() => {
                let ok = value.is_empty()
                    || matches!(parse_mailbox(value, true, false, false), Ok(Some(_)));
                if !ok {
                    return Err(format!("bad sender address {value:?}"));
                }
                sender = Some(value.to_string());
            }
            "rcpt" => match parse_mailbox(value, true, false, false) {
                Ok(Some(m)) => recipients.push(m.to_string()),
                _ => return Err(format!("bad recipient address {value:?}")),
            },
            key if dsn.decode(key, value) => {}
            _ => return Err(format!("unexpected envelope line {key:?}")),
        }
    }
    let sender = sender.ok_or("no sender line")?;
    if recipients.is_empty() {
        return Err("no recipients".into());
    }
    Ok((sender, recipients, dsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tinymta-maildrop-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_dropped_message_is_queued_with_the_owners_uid() {
        let state = tempdir("queued");
        let spool = Spool::open(&state).unwrap();
        create(&state).unwrap();
        let mode = fs::metadata(dir(&state)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1733);
        let id = QueueId::generate();
        let rcpts = vec!["a@example.org".to_string()];
        let mut dsn = EnvelopeDsn::default();
        dsn.message.envid = Some("E+2B1".into());
        let notify = crate::smtp::dsn::Notify::parse("SUCCESS").ok();
        let asked = crate::smtp::dsn::RcptDsn {
            notify,
            orcpt: None,
        };
        dsn.set("a@example.org", &asked);
        submit(
            &state,
            &id,
            ("u@example.org", &rcpts, &dsn),
            &mut &b"Subject: x\r\n\r\nhi\r\n"[..],
        )
        .unwrap();
        let got = pick_up(&state, &spool, "mx.example.org", 1000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        let (env, content) = spool.read_content(&id).unwrap();
        assert_eq!(env.recipients, rcpts);
        assert_eq!(env.sender, "u@example.org");
        assert!(env.unexpanded);
        assert_eq!(env.dsn, dsn, "the DSN requests (sendmail -N/-V) come along");
        let uid = rustix::process::geteuid().as_raw();
        let text = String::from_utf8(content).unwrap();
        assert!(
            text.starts_with(&format!(
                "Received: by mx.example.org (tinymta, from userid {uid})"
            )),
            "{text}"
        );
        assert!(text.ends_with("Subject: x\r\n\r\nhi\r\n"));
        assert_eq!(fs::read_dir(dir(&state)).unwrap().count(), 0);
        fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn forged_and_damaged_files_are_refused_and_removed() {
        let state = tempdir("refused");
        let spool = Spool::open(&state).unwrap();
        create(&state).unwrap();
        let d = dir(&state);
        for (name, body) in [
            (
                "A1.x",
                "tinymta-maildrop 1\nsender a@b.example\nuid 0\nrcpt c@d.example\n\nx\r\n",
            ),
            ("A2.x", "tinymta-queue 2\nid A2\nrcpt c@d.example\n\nx\r\n"),
            (
                "A3.x",
                "tinymta-maildrop 1\nsender a@b.example\nrcpt not an address\n\n",
            ),
            ("A4.x", "tinymta-maildrop 1\nsender a@b.example\n"),
            (
                "A5.x",
                "tinymta-maildrop 1\nsender a@b.example\n\nno recipients\r\n",
            ),
            (
                "A6.x",
                "tinymta-maildrop 1\nsender a@b.example\nrcpt c@d.example\n\n0123456789abc",
            ),
        ] {
            fs::write(d.join(name), body).unwrap();
        }
        // A link to a file of the daemon's, and a hard link: neither is read.
        std::os::unix::fs::symlink(spool.messages_dir(), d.join("L1.x")).unwrap();
        fs::write(
            state.join("secret"),
            "tinymta-maildrop 1\nsender a@b.example\nrcpt c@d.example\n\nx\r\n",
        )
        .unwrap();
        fs::hard_link(state.join("secret"), d.join("L2.x")).unwrap();
        // A partial file is left for its writer.
        fs::write(d.join("P1.x.tmp"), "tinymta-maildrop 1\n").unwrap();
        assert_eq!(pick_up(&state, &spool, "mx.example.org", 10), Vec::new());
        let left: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["P1.x.tmp"]);
        assert_eq!(spool.list().unwrap(), Vec::new());
        fs::remove_dir_all(&state).unwrap();
    }
}
