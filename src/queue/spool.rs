//! Writing, committing, reading and removing queue files.
//!
//! A message is acknowledged only after its file is complete, fsynced and renamed into
//! `messages/`, and the directory is fsynced. Directory fsyncs of concurrent sessions
//! are batched by `GroupCommit`: one fsync covers every rename made before it started.
//!
//! A queue file is the envelope, a blank line, and the content as received. Header
//! fields that can only be written once the whole message has been read (the
//! `Authentication-Results:` of the checks, a `DKIM-Signature:` over the body) are
//! appended after the content, and the fixed-width `headers-at` record of the envelope
//! is patched in place to point at them — as Postfix's cleanup patches its size
//! record — so the content is written once, however large. Readers get those fields
//! first, then the content ([`Content`]).
//!
//! Faults: a file that does not parse is set aside in `corrupt/`
//! ([`Spool::quarantine`]); a message whose commit failed is removed whole
//! ([`Spool::withdraw`]); [`FreeSpace`] tells sessions when the file system is below
//! its reserve.

use crate::clock::unix_now;
use crate::smtp::dsn::{self, MessageDsn, Notify, RcptDsn, Ret};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smol::channel::{self, Receiver, Sender};

/// First line of every queue file; bumped if the format changes. Version 2 added the
/// `headers-at` record; version 1 files (no record) are still read.
const MAGIC: &str = "tinymta-queue 2";
const MAGIC_V1: &str = "tinymta-queue 1";
/// The second line: where the appended header fields start (0: none), as a
/// fixed-width number so that it can be patched in place at commit.
const HEADERS_AT: &str = "headers-at ";
const HEADERS_AT_DIGITS: usize = 20;
/// Where the digits of `headers-at` are in every version-2 file.
const HEADERS_AT_OFFSET: u64 = (MAGIC.len() + 1 + HEADERS_AT.len()) as u64;
/// Appended header fields are a few KB; a larger block is a damaged file.
const MAX_ADDED_HEADERS: u64 = 1 << 20;

/// A queue ID: 8 hex digits of arrival time and 6 random ones (`6566D1A2F3B9C1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub String);

impl QueueId {
    pub fn generate() -> QueueId {
        let mut rnd = [0u8; 3];
        // Fails only if OpenSSL's generator cannot be seeded at all; the ID then
        // still carries the arrival time.
        let _ = openssl::rand::rand_bytes(&mut rnd);
        QueueId(format!(
            "{:08X}{:02X}{:02X}{:02X}",
            unix_now() as u32,
            rnd[0],
            rnd[1],
            rnd[2]
        ))
    }

    /// Validates an ID typed by a user or found on disk (it becomes a file name).
    pub fn parse(s: &str) -> Option<QueueId> {
        (!s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| QueueId(s.to_string()))
    }
}

/// A queue ID in 16 bytes and without an allocation of its own for the IDs
/// `QueueId::generate` makes (14 upper-case hex digits, packed into a number); any
/// other name is boxed. What recovery lists and the scheduler keeps per message:
/// a `QueueId` costs a 24-byte `String` and a 32-byte heap block more.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey(KeyForm);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyForm {
    /// Orders as the text does (same length, hex digits): oldest first.
    Packed(u64),
    Other(Box<str>),
}

/// Length of the IDs `QueueId::generate` makes.
const PACKED_DIGITS: usize = 14;

impl QueueKey {
    /// Validates a name as `QueueId::parse` does.
    pub fn parse(s: &str) -> Option<QueueKey> {
        let valid = !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        let upper_hex = s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        match u64::from_str_radix(s, 16) {
            _ if !valid => None,
            Ok(n) if s.len() == PACKED_DIGITS && upper_hex => Some(QueueKey(KeyForm::Packed(n))),
            _ => Some(QueueKey(KeyForm::Other(s.into()))),
        }
    }

    pub fn new(id: &QueueId) -> QueueKey {
        QueueKey::parse(&id.0).unwrap_or_else(|| QueueKey(KeyForm::Other(id.0.as_str().into())))
    }

    pub fn id(&self) -> QueueId {
        match &self.0 {
            KeyForm::Packed(n) => QueueId(format!("{n:0w$X}", w = PACKED_DIGITS)),
            KeyForm::Other(s) => QueueId(s.to_string()),
        }
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The envelope stored at the head of a queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: QueueId,
    /// Seconds since the epoch when the message was accepted.
    pub arrival: u64,
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    /// `host[ip]` of the client, or `local` for sendmail.
    pub client: String,
    /// How it arrived: ESMTP, ESMTPS, ESMTPA, ESMTPSA, SMTP, local.
    pub protocol: String,
    /// The recipients have not been through the address tables yet: a message from
    /// `sendmail` or the queue's own (a bounce, a notice). The scheduler expands them
    /// when it first picks the message up and writes the file again without the mark.
    /// An SMTP session expands at RCPT and never sets it.
    pub unexpanded: bool,
    /// RFC 8689 `REQUIRETLS` was given on MAIL: only authenticated TLS to a next hop
    /// that offers REQUIRETLS itself, and its bounce goes the same way.
    pub requiretls: bool,
    /// Delivery status notification requests (RFC 3461).
    pub dsn: EnvelopeDsn,
}

/// The DSN parameters of a message: `RET`/`ENVID` of its MAIL, and `NOTIFY`/`ORCPT`
/// of the recipients that had any (keyed by the recipient as queued, so code that
/// picks or filters recipients needs not keep a second list in step). Stored as
/// envelope lines of their own (`dsn-ret`, `dsn-envid`, `dsn-rcpt`) that older
/// versions skip; a file without them has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeDsn {
    pub message: MessageDsn,
    pub rcpts: Vec<(String, RcptDsn)>,
}

impl EnvelopeDsn {
    /// The parameters of `rcpt` (none given: the default).
    pub fn rcpt(&self, rcpt: &str) -> RcptDsn {
        self.rcpts
            .iter()
            .find(|(r, _)| r == rcpt)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    }

    /// Records `dsn` for `rcpt` (nothing when it is empty).
    pub fn set(&mut self, rcpt: &str, dsn: &RcptDsn) {
        if !dsn.is_empty() && !self.rcpts.iter().any(|(r, _)| r == rcpt) {
            self.rcpts.push((rcpt.to_string(), dsn.clone()));
        }
    }

    /// Appends the `dsn-*` lines (the maildrop writes them too).
    pub(super) fn encode(&self, h: &mut String) {
        if let Some(ret) = self.message.ret {
            h.push_str(&format!("dsn-ret {}\n", ret.keyword()));
        }
        if let Some(envid) = &self.message.envid {
            h.push_str(&format!("dsn-envid {envid}\n"));
        }
        for (rcpt, d) in &self.rcpts {
            // NOTIFY and ORCPT hold no spaces (keywords, xtext); the address, which
            // may, comes last.
            let notify = d.notify.map_or("-".to_string(), |n| n.to_string());
            let orcpt = d.orcpt.as_deref().unwrap_or("-");
            h.push_str(&format!("dsn-rcpt {notify} {orcpt} {rcpt}\n"));
        }
    }

    /// Reads one `dsn-*` line; false when `key` is not one (or its value is damaged:
    /// the message is delivered without that request rather than not at all).
    pub(super) fn decode(&mut self, key: &str, value: &str) -> bool {
        match key {
            "dsn-ret" => self.message.ret = Ret::parse(value),
            "dsn-envid" => self.message.envid = dsn::parse_envid(value).ok(),
            "dsn-rcpt" => {
                let mut parts = value.splitn(3, ' ');
                let (Some(notify), Some(orcpt), Some(rcpt)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return true;
                };
                let d = RcptDsn {
                    notify: (notify != "-")
                        .then(|| Notify::parse(notify).ok())
                        .flatten(),
                    orcpt: (orcpt != "-")
                        .then(|| dsn::parse_orcpt(orcpt).ok())
                        .flatten(),
                };
                self.set(rcpt, &d);
            }
            _ => return false,
        }
        true
    }
}

impl Envelope {
    fn header(&self) -> String {
        let mut h = format!(
            "{MAGIC}\n{HEADERS_AT}{:0w$}\nid {}\narrival {}\nsender {}\nclient {}\nprotocol {}\n",
            0,
            self.id,
            self.arrival,
            self.sender,
            self.client,
            self.protocol,
            w = HEADERS_AT_DIGITS
        );
        if self.unexpanded {
            // A key older versions skip: they deliver the recipients as they are.
            h.push_str("unexpanded\n");
        }
        if self.requiretls {
            // A bare key like `unexpanded`; files without it are not REQUIRETLS.
            h.push_str("requiretls\n");
        }
        for r in &self.recipients {
            h.push_str("rcpt ");
            h.push_str(r);
            h.push('\n');
        }
        self.dsn.encode(&mut h);
        h.push('\n');
        h
    }

    /// Reads the envelope from the start of a queue file, leaving `r` at the content.
    pub fn read_from(r: &mut impl BufRead) -> io::Result<Envelope> {
        Self::read_layout(r).map(|(env, _)| env)
    }

    /// The envelope and where the parts of the file are.
    fn read_layout(r: &mut impl BufRead) -> io::Result<(Envelope, Layout)> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        let mut layout = Layout {
            content_start: r.read_line(&mut line)? as u64,
            headers_at: 0,
        };
        if line.trim_end() != MAGIC && line.trim_end() != MAGIC_V1 {
            return Err(bad("not a tinymta queue file"));
        }
        let mut env = Envelope {
            id: QueueId(String::new()),
            arrival: 0,
            sender: String::new(),
            recipients: Vec::new(),
            client: String::new(),
            protocol: String::new(),
            unexpanded: false,
            requiretls: false,
            dsn: EnvelopeDsn::default(),
        };
        loop {
            line.clear();
            match r.read_line(&mut line)? {
                0 => return Err(bad("truncated envelope")),
                n => layout.content_start += n as u64,
            }
            let l = line.trim_end_matches('\n');
            if l.is_empty() {
                break;
            }
            let (key, value) = l.split_once(' ').unwrap_or((l, ""));
            match key {
                "headers-at" => {
                    layout.headers_at = value.parse().map_err(|_| bad("bad headers-at"))?
                }
                "id" => env.id = QueueId::parse(value).ok_or_else(|| bad("bad id"))?,
                "arrival" => env.arrival = value.parse().map_err(|_| bad("bad arrival"))?,
                "sender" => env.sender = value.to_string(),
                "client" => env.client = value.to_string(),
                "protocol" => env.protocol = value.to_string(),
                "rcpt" => env.recipients.push(value.to_string()),
                "unexpanded" => env.unexpanded = true,
                "requiretls" => env.requiretls = true,
                key if env.dsn.decode(key, value) => {}
                _ => {} // unknown keys from a newer version are skipped
            }
        }
        if env.id.0.is_empty() || env.recipients.is_empty() {
            return Err(bad("envelope without id or recipients"));
        }
        if layout.headers_at != 0 && layout.headers_at < layout.content_start {
            return Err(bad("headers-at before the content"));
        }
        Ok((env, layout))
    }
}

/// Where the parts of a queue file are: the content from `content_start`, up to
/// `headers_at` when header fields were appended (0: to the end).
struct Layout {
    content_start: u64,
    headers_at: u64,
}

/// The content of a queued message as delivery sends it: the header fields appended
/// at commit, then the content as received. Reads in bounded pieces ([`BufRead`]);
/// only the appended fields (a few KB) are held in memory.
pub struct Content {
    inner: io::Chain<io::Cursor<Vec<u8>>, io::Take<BufReader<File>>>,
    size: u64,
}

impl Content {
    /// Its length in bytes (the `SIZE=` of MAIL FROM, the log line).
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl BufRead for Content {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

/// Per-message delivery state, rewritten after each attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub attempts: u32,
    /// Unix time of the next attempt (0: as soon as possible).
    pub next_attempt: u64,
    /// Recipients that need no more attempts (delivered or bounced).
    pub finished: Vec<String>,
    /// Last reason per deferred recipient, for `queue list`.
    pub last_reason: String,
    /// Recipients whose sender was sent a delay warning (DSN), once each.
    pub warned: Vec<String>,
}

impl Status {
    fn encode(&self) -> String {
        let mut s = format!(
            "attempts {}\nnext {}\nreason {}\n",
            self.attempts,
            self.next_attempt,
            self.last_reason.replace('\n', " ")
        );
        for f in &self.finished {
            s.push_str("finished ");
            s.push_str(f);
            s.push('\n');
        }
        for w in &self.warned {
            s.push_str("warned ");
            s.push_str(w);
            s.push('\n');
        }
        s
    }

    fn decode(text: &str) -> Status {
        let mut st = Status::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "attempts" => st.attempts = v.parse().unwrap_or(0),
                "next" => st.next_attempt = v.parse().unwrap_or(0),
                "reason" => st.last_reason = v.to_string(),
                "finished" => st.finished.push(v.to_string()),
                "warned" => st.warned.push(v.to_string()),
                _ => {}
            }
        }
        st
    }
}

/// The queue directories under the state directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

fn create_dir_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Opens a queue file for reading without updating its access time: recovery reads
/// every status record, and with `relatime` the first read after each rewrite would
/// otherwise write the inode back (measured here: cold reads of 10,000 status
/// records took 1.8-2.3 s so, 3.2-6.0 s without). The flag needs the file's owner
/// (or CAP_FOWNER); anyone else reads it the ordinary way.
fn open_read(path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    const NOATIME: i32 = libc::O_NOATIME;
    #[cfg(not(target_os = "linux"))]
    const NOATIME: i32 = 0;
    match OpenOptions::new()
        .read(true)
        .custom_flags(NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

/// fsync a directory, so a rename or unlink in it survives a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl Spool {
    /// Opens (creating if needed) the queue under `state_dir`.
    pub fn open(state_dir: &Path) -> io::Result<Spool> {
        let root = state_dir.join("queue");
        for sub in ["tmp", "messages", "status"] {
            create_dir_private(&root.join(sub)).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", root.join(sub).display()))
            })?;
        }
        Ok(Spool { root })
    }

    pub fn messages_dir(&self) -> PathBuf {
        self.root.join("messages")
    }
    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("messages").join(&id.0)
    }
    fn tmp_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("tmp").join(&id.0)
    }
    fn status_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("status").join(&id.0)
    }
    pub fn wakeup_socket(&self) -> PathBuf {
        self.root.join("wakeup")
    }

    /// Starts a message: creates `tmp/ID` (never an existing file) and writes the
    /// envelope. The content follows through the returned file.
    pub fn create(&self, env: &Envelope) -> io::Result<File> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.tmp_path(&env.id))?;
        f.write_all(env.header().as_bytes())?;
        Ok(f)
    }

    /// Makes a complete message durable: fsync the file, rename it into `messages/`.
    /// The caller must then fsync `messages/` (see `GroupCommit`) before acknowledging.
    pub fn finish(&self, id: &QueueId, file: File) -> io::Result<()> {
        self.finish_with_headers(id, file, b"")
    }

    /// [`finish`](Self::finish), with header fields that delivery puts before the
    /// content (whole CRLF-terminated fields: `Authentication-Results: ...\r\n`).
    /// They are appended and the `headers-at` record patched, before the fsync.
    pub fn finish_with_headers(
        &self,
        id: &QueueId,
        mut file: File,
        headers: &[u8],
    ) -> io::Result<()> {
        if !headers.is_empty() {
            use std::io::{Seek, SeekFrom};
            use std::os::unix::fs::FileExt;
            let at = file.seek(SeekFrom::End(0))?;
            file.write_all(headers)?;
            let digits = format!("{at:0w$}", w = HEADERS_AT_DIGITS);
            file.write_all_at(digits.as_bytes(), HEADERS_AT_OFFSET)?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(self.tmp_path(id), self.message_path(id))
    }

    /// Drops a message that was being received (client gone, rejected content).
    pub fn abandon(&self, id: &QueueId) {
        let _ = fs::remove_file(self.tmp_path(id));
    }

    /// Drops a received message whose commit failed and that is therefore not
    /// acknowledged: the partial `tmp/ID`, and `messages/ID` too when the rename was
    /// made but the directory fsync after it failed (the client is told to retry, so
    /// a copy left behind would be delivered twice). Only for a new ID: a file that
    /// replaces a committed one ([`commit`](Self::commit)) must never take that away.
    pub fn withdraw(&self, id: &QueueId) {
        self.abandon(id);
        let _ = fs::remove_file(self.message_path(id));
    }

    /// Moves a queue file that cannot be read as one (garbage, a truncated envelope,
    /// an unknown version) out of the queue into `<state-dir>/corrupt/`, as Postfix's
    /// `corrupt` queue, with its status record: it is kept for a human to look at,
    /// never delivered, and never retried in a loop. Returns where it went.
    pub fn quarantine(&self, id: &QueueId) -> io::Result<PathBuf> {
        let dir = self.corrupt_dir();
        create_dir_private(&dir)?;
        let to = dir.join(&id.0);
        fs::rename(self.message_path(id), &to)?;
        let _ = fs::remove_file(self.status_path(id));
        let _ = sync_dir(&self.messages_dir());
        Ok(to)
    }

    /// Moves `messages/NAME`, a name that is no queue ID, to `corrupt/`, logged.
    fn set_aside_name(&self, name: &std::ffi::OsStr) {
        let (from, to) = (
            self.messages_dir().join(name),
            self.corrupt_dir().join(name),
        );
        match create_dir_private(&self.corrupt_dir()).and_then(|()| fs::rename(&from, &to)) {
            Ok(()) => log::error!(
                "queue: {} is not a queue file name: moved to {}",
                from.display(),
                to.display()
            ),
            Err(e) => log::error!("queue: cannot move {} aside: {e}", from.display()),
        }
    }

    /// `<state-dir>/corrupt/`: queue files set aside by [`quarantine`](Self::quarantine).
    pub fn corrupt_dir(&self) -> PathBuf {
        self.root.with_file_name("corrupt")
    }

    /// How many files [`quarantine`](Self::quarantine) has set aside (0 without the
    /// directory).
    pub fn corrupt_count(&self) -> usize {
        fs::read_dir(self.corrupt_dir()).map_or(0, |d| d.count())
    }

    /// Writes a whole message held in memory (a bounce, a notice) and makes it
    /// durable; see [`store_from`](Self::store_from).
    pub fn store(&self, env: &Envelope, content: &[u8]) -> io::Result<()> {
        self.store_from(env, &mut &content[..])
    }

    /// Writes a message whose content is read from `content` in pieces (`sendmail`'s
    /// input) and makes it durable. A message already committed under the same ID is
    /// replaced in one rename.
    pub fn store_from(&self, env: &Envelope, content: &mut impl Read) -> io::Result<()> {
        let (file, _) = self.copy_in(env, content)?;
        self.commit(&env.id, file, b"")
    }

    /// The first half of [`store_from`](Self::store_from): `tmp/ID` with `env` and all
    /// of `content`, copied in pieces, never held; returns the file and the bytes
    /// copied. The scheduler writes an expanded envelope so, copying the queued
    /// content, and then [`commit`](Self::commit)s it with the header fields only the
    /// whole content could give (a DKIM signature). On an error nothing is left.
    pub fn copy_in(&self, env: &Envelope, content: &mut impl Read) -> io::Result<(File, u64)> {
        let mut f = self.create(env)?;
        match io::copy(content, &mut f) {
            Ok(n) => Ok((f, n)),
            Err(e) => {
                self.abandon(&env.id);
                Err(e)
            }
        }
    }

    /// Commits a file from [`copy_in`](Self::copy_in) with `headers` delivered before
    /// its content ([`finish_with_headers`](Self::finish_with_headers)), and fsyncs
    /// `messages/`; replaces a message committed under the same ID in one rename.
    pub fn commit(&self, id: &QueueId, file: File, headers: &[u8]) -> io::Result<()> {
        let res = self
            .finish_with_headers(id, file, headers)
            .and_then(|_| sync_dir(&self.messages_dir()));
        if res.is_err() {
            self.abandon(id);
        }
        res
    }

    /// Opens a queued message: its envelope and its content, to be read in pieces.
    pub fn open_message(&self, id: &QueueId) -> io::Result<(Envelope, Content)> {
        use std::io::{Seek, SeekFrom};
        let file = open_read(&self.message_path(id))?;
        let file_len = file.metadata()?.len();
        let mut r = BufReader::new(file);
        let (env, layout) = Envelope::read_layout(&mut r)?;
        let mut added = Vec::new();
        let content_end = match layout.headers_at {
            0 => file_len,
            at => {
                if at > file_len || file_len - at > MAX_ADDED_HEADERS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "headers-at outside the file",
                    ));
                }
                r.seek(SeekFrom::Start(at))?;
                r.read_to_end(&mut added)?;
                r.seek(SeekFrom::Start(layout.content_start))?;
                at
            }
        };
        let body_len = content_end.saturating_sub(layout.content_start);
        let size = added.len() as u64 + body_len;
        let inner = io::Cursor::new(added).chain(r.take(body_len));
        Ok((env, Content { inner, size }))
    }

    /// The message content as bytes, whole in memory (tests, `queue list`'s size).
    pub fn read_content(&self, id: &QueueId) -> io::Result<(Envelope, Vec<u8>)> {
        let (env, mut r) = self.open_message(id)?;
        let mut content = Vec::new();
        r.read_to_end(&mut content)?;
        Ok((env, content))
    }

    pub fn status(&self, id: &QueueId) -> Status {
        // Read through `Take`: `File::read_to_string` would first ask the file's
        // size and position (two more system calls per record, at recovery 200,000).
        let mut text = Vec::with_capacity(256);
        match open_read(&self.status_path(id)).and_then(|f| f.take(u64::MAX).read_to_end(&mut text))
        {
            Ok(_) => Status::decode(&String::from_utf8_lossy(&text)),
            Err(_) => Status::default(),
        }
    }

    /// Replaces the status record atomically (write, fsync, rename). A lost update
    /// costs at most a repeated delivery attempt, never a message.
    pub fn set_status(&self, id: &QueueId, st: &Status) -> io::Result<()> {
        let tmp = self.root.join("status").join(format!("{}.new", id.0));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(st.encode().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.status_path(id))
    }

    /// Removes a message and its status once nothing is left to do.
    pub fn remove(&self, id: &QueueId) -> io::Result<()> {
        let res = fs::remove_file(self.message_path(id));
        let _ = fs::remove_file(self.status_path(id));
        res
    }

    /// Names in `messages/`, in directory order, read as the directory is (one
    /// `getdents` batch at a time).
    fn names(&self) -> io::Result<impl Iterator<Item = std::ffi::OsString>> {
        Ok(fs::read_dir(self.messages_dir())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name()))
    }

    /// Every committed message, in directory order: nothing per message but its name.
    pub fn keys(&self) -> io::Result<impl Iterator<Item = QueueKey>> {
        Ok(self
            .names()?
            .filter_map(|n| n.to_str().and_then(QueueKey::parse)))
    }

    /// Every committed message in `QueueKey` order: oldest first for the daemon's
    /// IDs (they start with the arrival time). Only names are read; 16 bytes each.
    pub fn list(&self) -> io::Result<Vec<QueueKey>> {
        let mut keys: Vec<QueueKey> = self.keys()?.collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Start-up recovery: half-received files in `tmp/` were never acknowledged, so
    /// they are removed; status records without a message are removed too (found by
    /// comparing the two directory listings, not by a lookup per file).
    /// Returns the committed messages to schedule, in `QueueKey` order (oldest
    /// first): 16 bytes each, 1.6 MB for 100,000 messages.
    pub fn recover(&self) -> io::Result<Vec<QueueKey>> {
        for e in fs::read_dir(self.root.join("tmp"))?.flatten() {
            let _ = fs::remove_file(e.path());
        }
        // One listing of `messages/`: the keys to schedule, and any name no queue ID
        // has (not put there by tinymta) set aside rather than skipped at every scan.
        // What is inside the files is read at each one's first attempt, not here.
        let mut keys = Vec::new();
        for name in self.names()? {
            match name.to_str().and_then(QueueKey::parse) {
                Some(key) => keys.push(key),
                None => self.set_aside_name(&name),
            }
        }
        keys.sort_unstable();
        for e in fs::read_dir(self.root.join("status"))?.flatten() {
            let name = e.file_name();
            let orphan = match name.to_str().and_then(QueueKey::parse) {
                Some(key) => keys.binary_search(&key).is_err(),
                None => true,
            };
            if orphan {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(keys)
    }
}

/// Free space on the queue's file system against a reserve (`--queue-min-free`, as
/// Postfix's `queue_minfree`): below it a session refuses new mail at MAIL with
/// `452 4.3.1`, so a filling flash turns clients away before a message is cut short,
/// and the space left is for delivery's status records and bounces. Shared by every
/// session; each change between enough and too little is logged once, not per
/// message. A reserve of 0 turns the check off.
#[derive(Debug, Clone)]
pub struct FreeSpace {
    dir: PathBuf,
    reserve: u64,
    /// Below the reserve at the last look.
    low: Arc<AtomicBool>,
}

impl FreeSpace {
    /// The gauge of the file system that holds `dir` (the state directory).
    pub fn new(dir: &Path, reserve: u64) -> FreeSpace {
        FreeSpace {
            dir: dir.to_path_buf(),
            reserve,
            low: Arc::new(AtomicBool::new(false)),
        }
    }

    /// No reserve: every message is let through to the write (tests).
    pub fn unchecked() -> FreeSpace {
        FreeSpace::new(Path::new("/"), 0)
    }

    /// Bytes an unprivileged writer may still use there (`statvfs`: `f_bavail`
    /// blocks of `f_frsize`).
    pub fn available(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Whether a new message of `size` bytes (0: not declared) may be taken: the
    /// space left must stay above the reserve. A file system that cannot be asked
    /// does not stop mail: the write itself is the last word.
    pub fn admits(&self, size: u64) -> bool {
        if self.reserve == 0 {
            return true;
        }
        let free = match self.available() {
            Ok(free) => free,
            Err(e) => {
                log::debug!(
                    "queue: cannot read free space of {}: {e}",
                    self.dir.display()
                );
                return true;
            }
        };
        let low = free < self.reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                log::warn!(
                    "queue: low on space: {free} bytes free in {}, below --queue-min-free {}: new mail is refused (452 4.3.1) until space returns",
                    self.dir.display(),
                    self.reserve
                );
            } else {
                log::info!(
                    "queue: space back: {free} bytes free in {}: accepting mail",
                    self.dir.display()
                );
            }
        }
        free >= self.reserve.saturating_add(size)
    }
}

/// Whether an I/O error means the file system is full (or the user over quota): the
/// `4.3.1` of RFC 3463, rather than a generic `4.3.0` failure.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Batches directory fsyncs: every session that renamed a message into `messages/`
/// asks for a commit; one fsync answers all requests that arrived before it began.
#[derive(Clone)]
pub struct GroupCommit {
    requests: Sender<Sender<io::Result<()>>>,
}

impl GroupCommit {
    /// Spawns the committer on the current executor; it ends when every handle is dropped.
    pub fn start(ex: &smol::LocalExecutor<'_>, dir: PathBuf) -> GroupCommit {
        let (tx, rx) = channel::unbounded::<Sender<io::Result<()>>>();
        crate::runtime::spawn_detached(ex, Self::run(rx, dir));
        GroupCommit { requests: tx }
    }

    async fn run(rx: Receiver<Sender<io::Result<()>>>, dir: PathBuf) {
        while let Ok(first) = rx.recv().await {
            let mut waiters = vec![first];
            while let Ok(more) = rx.try_recv() {
                waiters.push(more);
            }
            let d = dir.clone();
            let res = crate::runtime::unblock(move || sync_dir(&d)).await;
            for w in waiters {
                let r = match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                let _ = w.try_send(r);
            }
        }
    }

    /// Returns once `messages/` has been fsynced after this call.
    pub async fn commit(&self) -> io::Result<()> {
        let (tx, rx) = channel::bounded(1);
        self.requests
            .send(tx)
            .await
            .map_err(|_| io::Error::other("queue committer stopped"))?;
        rx.recv()
            .await
            .map_err(|_| io::Error::other("queue committer stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tinymta-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn env() -> Envelope {
        Envelope {
            id: QueueId::generate(),
            arrival: 1_700_000_000,
            sender: "a@b.example".into(),
            recipients: vec!["c@d.example".into(), "e@f.example".into()],
            client: "localhost[127.0.0.1]".into(),
            protocol: "ESMTPS".into(),
            unexpanded: false,
            requiretls: false,
            dsn: EnvelopeDsn::default(),
        }
    }

    #[test]
    fn dsn_requests_survive_and_older_files_have_none() {
        let dir = tempdir("dsn");
        let spool = Spool::open(&dir).unwrap();
        let mut e = env();
        e.dsn.message = MessageDsn {
            ret: Some(Ret::Full),
            envid: Some("QQ+2B1".into()),
        };
        let d = RcptDsn {
            notify: Some(Notify::parse("SUCCESS,DELAY").unwrap()),
            orcpt: Some("rfc822;c+2Bx@d.example".into()),
        };
        e.dsn.set("c@d.example", &d);
        e.dsn.set(
            "\"x y\"@f.example",
            &RcptDsn {
                notify: Some(Notify::NEVER),
                orcpt: None,
            },
        );
        e.recipients.push("\"x y\"@f.example".into());
        spool.store(&e, b"x\r\n").unwrap();
        let back = spool.read_content(&e.id).unwrap().0;
        assert_eq!(back, e);
        assert_eq!(back.dsn.rcpt("c@d.example"), d);
        assert_eq!(
            back.dsn.rcpt("\"x y\"@f.example").notify,
            Some(Notify::NEVER)
        );
        assert_eq!(back.dsn.rcpt("e@f.example"), RcptDsn::default());
        let raw = fs::read_to_string(spool.message_path(&e.id)).unwrap();
        assert!(raw.contains("\ndsn-ret FULL\ndsn-envid QQ+2B1\ndsn-rcpt SUCCESS,DELAY rfc822;c+2Bx@d.example c@d.example\n"), "{raw}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn store_read_status_remove() {
        let dir = tempdir("roundtrip");
        let spool = Spool::open(&dir).unwrap();
        let e = env();
        spool.store(&e, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let (back, content) = spool.read_content(&e.id).unwrap();
        assert_eq!(back, e);
        assert_eq!(content, b"Subject: hi\r\n\r\nbody\r\n");
        let st = Status {
            attempts: 2,
            next_attempt: 99,
            finished: vec!["c@d.example".into()],
            last_reason: "4.4.1 no answer".into(),
            warned: vec!["c@d.example".into()],
        };
        spool.set_status(&e.id, &st).unwrap();
        assert_eq!(spool.status(&e.id), st);
        assert_eq!(spool.list().unwrap(), vec![QueueKey::new(&e.id)]);
        spool.remove(&e.id).unwrap();
        assert!(spool.list().unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_unexpanded_mark_survives_and_store_replaces_in_place() {
        let dir = tempdir("replace");
        let spool = Spool::open(&dir).unwrap();
        let mut e = env();
        e.unexpanded = true;
        spool.store(&e, b"x\r\n").unwrap();
        assert_eq!(spool.read_content(&e.id).unwrap().0, e);
        // The scheduler writes the expanded envelope over the same ID: one rename.
        e.unexpanded = false;
        e.recipients = vec!["g@h.example".into()];
        spool.store(&e, b"x\r\n").unwrap();
        assert_eq!(
            spool.read_content(&e.id).unwrap(),
            (e.clone(), b"x\r\n".to_vec())
        );
        assert_eq!(spool.list().unwrap(), vec![QueueKey::new(&e.id)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_requiretls_mark_survives_and_old_files_read_without_it() {
        let dir = tempdir("requiretls");
        let spool = Spool::open(&dir).unwrap();
        let mut e = env();
        e.requiretls = true;
        spool.store(&e, b"x\r\n").unwrap();
        assert_eq!(spool.read_content(&e.id).unwrap().0, e);
        // A file written before the key existed: not REQUIRETLS.
        let old = format!(
            "{MAGIC_V1}\nid {}\narrival 1\nsender a@b.example\nrcpt c@d.example\n\nx\r\n",
            e.id
        );
        let env = Envelope::read_from(&mut old.as_bytes()).unwrap();
        assert!(!env.requiretls);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovery_drops_unfinished_and_keeps_committed() {
        let dir = tempdir("recover");
        let spool = Spool::open(&dir).unwrap();
        let done = env();
        spool.store(&done, b"x\r\n").unwrap();
        let mut half = env();
        half.id = QueueId(format!("{}Z", done.id));
        let mut f = spool.create(&half).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        let st = Status {
            attempts: 1,
            ..Status::default()
        };
        spool.set_status(&done.id, &st).unwrap();
        // A status whose message is gone, and a status update cut short by a crash.
        spool.set_status(&half.id, &st).unwrap();
        let unfinished = spool.root.join("status").join(format!("{}.new", done.id));
        fs::write(&unfinished, "attempts 2\n").unwrap();
        let keys = Spool::open(&dir).unwrap().recover().unwrap();
        assert_eq!(keys, vec![QueueKey::new(&done.id)]);
        assert!(!spool.tmp_path(&half.id).exists());
        assert!(!spool.status_path(&half.id).exists() && !unfinished.exists());
        assert_eq!(spool.status(&done.id), st);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appended_headers_come_first_and_the_content_is_written_once() {
        let dir = tempdir("added");
        let spool = Spool::open(&dir).unwrap();
        let e = env();
        let mut f = spool.create(&e).unwrap();
        f.write_all(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        spool
            .finish_with_headers(&e.id, f, b"Authentication-Results: mx; spf=pass\r\n")
            .unwrap();
        let (back, content) = spool.read_content(&e.id).unwrap();
        assert_eq!(back, e);
        let want = b"Authentication-Results: mx; spf=pass\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(content, want);
        assert_eq!(
            spool.open_message(&e.id).unwrap().1.size(),
            want.len() as u64
        );
        // The record points past the content: the content bytes are as received.
        let raw = fs::read(spool.message_path(&e.id)).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("tinymta-queue 2\nheaders-at 000000000000"),
            "{text}"
        );
        assert!(text.ends_with("body\r\nAuthentication-Results: mx; spf=pass\r\n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_version_1_queue_file_is_still_read() {
        let dir = tempdir("v1");
        let spool = Spool::open(&dir).unwrap();
        let v1 = "tinymta-queue 1\nid 6566D1A2F3B9C1\narrival 1700000000\nsender a@b.example\n\
                  client local\nprotocol local\nrcpt c@d.example\n\nSubject: old\r\n\r\nx\r\n";
        let id = QueueId("6566D1A2F3B9C1".into());
        fs::write(spool.message_path(&id), v1).unwrap();
        let (e, content) = spool.read_content(&id).unwrap();
        assert_eq!((e.sender.as_str(), e.recipients.len()), ("a@b.example", 1));
        assert_eq!(content, b"Subject: old\r\n\r\nx\r\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_headers_at_record_is_an_error_not_a_panic() {
        let dir = tempdir("damaged");
        let spool = Spool::open(&dir).unwrap();
        let e = env();
        spool.store(&e, b"x\r\n").unwrap();
        let path = spool.message_path(&e.id);
        let raw = fs::read_to_string(&path).unwrap();
        for bad in [
            "99999999999999999999",
            "00000000000000000001",
            "0000000000000000000x",
        ] {
            fs::write(&path, raw.replacen("00000000000000000000", bad, 1)).unwrap();
            let err = spool.read_content(&e.id).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad}: {err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_pack_the_daemons_ids_and_keep_any_other() {
        assert_eq!(std::mem::size_of::<QueueKey>(), 16);
        let own = QueueId::generate();
        assert!(matches!(QueueKey::new(&own).0, KeyForm::Packed(_)));
        assert_eq!(QueueKey::new(&own).id(), own);
        for other in ["abc", "6566d1a2f3b9c1", "6566D1A2F3B9C1Z", "00000000000001"] {
            let id = QueueId(other.into());
            assert_eq!(QueueKey::new(&id).id(), id);
            assert_eq!(QueueKey::parse(other), Some(QueueKey::new(&id)));
        }
        assert!(matches!(
            QueueKey::parse("abc").unwrap().0,
            KeyForm::Other(_)
        ));
        for bad in ["", "../etc", "a.new", &"A".repeat(33)] {
            assert_eq!(QueueKey::parse(bad), None, "{bad}");
        }
        // Packed keys sort as the IDs do: ties in time go oldest first.
        let (older, newer) = (
            QueueKey::parse("6566D1A2F3B9C1"),
            QueueKey::parse("6566D1A30000A0"),
        );
        assert!(older < newer);
    }

    #[test]
    fn corrupt_files_are_set_aside_and_counted() {
        let dir = tempdir("corrupt");
        let spool = Spool::open(&dir).unwrap();
        assert_eq!(spool.corrupt_count(), 0);
        let e = env();
        spool.store(&e, b"x\r\n").unwrap();
        spool.set_status(&e.id, &Status::default()).unwrap();
        let to = spool.quarantine(&e.id).unwrap();
        assert_eq!(to, dir.join("corrupt").join(&e.id.0));
        assert!(to.exists() && !spool.message_path(&e.id).exists());
        assert!(!spool.status_path(&e.id).exists());
        // A name no queue ID has is moved aside at recovery, the others stay.
        let kept = env();
        spool.store(&kept, b"x\r\n").unwrap();
        fs::write(spool.messages_dir().join("core.1234"), "?").unwrap();
        assert_eq!(spool.recover().unwrap(), vec![QueueKey::new(&kept.id)]);
        assert!(dir.join("corrupt/core.1234").exists());
        assert_eq!(spool.corrupt_count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn withdraw_removes_a_renamed_but_unacknowledged_message() {
        let dir = tempdir("withdraw");
        let spool = Spool::open(&dir).unwrap();
        let e = env();
        let f = spool.create(&e).unwrap();
        spool.finish(&e.id, f).unwrap();
        assert!(spool.message_path(&e.id).exists());
        spool.withdraw(&e.id);
        assert!(!spool.message_path(&e.id).exists() && !spool.tmp_path(&e.id).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_space_is_compared_with_the_reserve() {
        let dir = tempdir("space");
        fs::create_dir_all(&dir).unwrap();
        let free = FreeSpace::new(&dir, 1).available().unwrap();
        assert!(free > 0);
        assert!(FreeSpace::new(&dir, 1).admits(0));
        assert!(
            !FreeSpace::new(&dir, 1).admits(u64::MAX - 1),
            "SIZE= counts too"
        );
        let full = FreeSpace::new(&dir, u64::MAX);
        assert!(!full.admits(0) && full.low.load(Ordering::Relaxed));
        assert!(FreeSpace::new(&dir.join("missing"), u64::MAX).admits(0));
        assert!(FreeSpace::unchecked().admits(u64::MAX));
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_out_of_space(&enospc) && !is_out_of_space(&io::Error::other("x")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_foreign_files() {
        let mut r = BufReader::new(&b"hello\n\n"[..]);
        assert!(Envelope::read_from(&mut r).is_err());
        assert!(QueueId::parse("../etc").is_none());
    }
}
