//! `tinymta sendmail` (and the `sendmail` symlink): reads a message on stdin, completes
//! its headers as Postfix's pickup/cleanup do, and drops it into the queue of the
//! daemon that uses the same state directory, then wakes the daemon. When the queue
//! belongs to another user (a daemon started as root runs as its own user), the
//! message goes into the daemon's maildrop instead, which it checks and queues
//! (`queue::maildrop`).
//!
//! The recipients are queued as given, marked unexpanded: the daemon puts them through
//! its address tables (aliases, virtual, recipient table, SRS) when it picks the file
//! up, so `sendmail root` reaches root's alias without flags here, and a recipient the
//! tables refuse is bounced to the sender (see `queue::scheduler`).
//!
//! The input streams into the queue file: only the header section is held (at most
//! [`MAX_HEADER_SECTION`] bytes), to complete it and to find `-t`'s recipients before
//! the envelope is written.

use std::io::{self, BufRead, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::address::address_list;
use crate::cli::SendmailArgs;
use crate::clock::unix_now;
use crate::exit;
use crate::headers::{self, Header, Origin, SectionPrefix};
use crate::host::{default_state_dir, system_hostname, SYSTEM_STATE_DIR};
use crate::queue::maildrop;
use crate::queue::wakeup::{self, Wakeup};
use crate::queue::{Envelope, EnvelopeDsn, QueueId, Spool};
use crate::smtp::address::parse_mailbox;
use crate::smtp::dsn::{self, MessageDsn, Notify, RcptDsn, Ret};

/// Largest message accepted on stdin (as the daemon's default SIZE limit).
const MAX_INPUT: u64 = 10_240_000;
/// Largest header section accepted on stdin (Postfix's `header_size_limit` is 100 KiB).
const MAX_HEADER_SECTION: usize = 64 * 1024;
/// Raw input is read in pieces of this size.
const READ_CHUNK: usize = 8 * 1024;

pub fn run(args: SendmailArgs) -> i32 {
    match queue_message(&args, &mut std::io::stdin().lock()) {
        Ok(_) => 0,
        Err((code, msg)) => {
            eprintln!("sendmail: {msg}");
            code
        }
    }
}

fn login_name() -> String {
    std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .unwrap_or_else(|| {
            if rustix::process::geteuid().is_root() {
                "root".to_string()
            } else {
                format!("uid{}", rustix::process::geteuid().as_raw())
            }
        })
}

/// `--state-dir`, else the system daemon's when it exists, whoever runs `sendmail`
/// (cron and scripts run it as their users, without flags), else the default of
/// `default_state_dir`.
fn sendmail_state_dir(flag: &Option<String>) -> PathBuf {
    match flag {
        None if Path::new(SYSTEM_STATE_DIR).is_dir() => PathBuf::from(SYSTEM_STATE_DIR),
        _ => default_state_dir(flag),
    }
}

/// Whether the message goes through the maildrop rather than straight into the queue:
/// the queue belongs to another user (the daemon's, see `privileges`) — root too
/// would make files the daemon cannot read — and the daemon has made a maildrop.
fn via_maildrop(state_dir: &Path) -> bool {
    let euid = rustix::process::geteuid().as_raw();
    match std::fs::metadata(state_dir.join("queue")) {
        Ok(queue) => queue.uid() != euid && maildrop::dir(state_dir).is_dir(),
        Err(_) => false,
    }
}

/// Qualifies `user` with `@hostname`, then checks RFC 5321 syntax.
fn qualify(addr: &str, hostname: &str) -> Result<String, String> {
    let addr = addr.trim();
    let addr = addr
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr);
    let full = if addr.contains('@') {
        addr.to_string()
    } else {
        format!("{addr}@{hostname}")
    };
    match parse_mailbox(&full, true, false, false) {
        Ok(Some(m)) => Ok(m.to_string()),
        _ => Err(format!("bad address syntax: {addr}")),
    }
}

/// Where a line with a single dot stands in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    No,
    /// `.` at the start of a line.
    Seen,
    /// `.` and a CR at the start of a line.
    Cr,
}

/// The input as canonical CRLF lines, converted as it is read: any mix of CRLF, LF and
/// CR line ends becomes CRLF, a missing final line end is added, and with `dot_ends` a
/// line with a single `.` ends the input (traditional sendmail without `-i`). NUL
/// bytes and input beyond [`MAX_INPUT`] are refused: the reader fails and `refusal`
/// says why (a data error, not an I/O one). Memory: one piece of input and its
/// conversion.
struct CanonicalInput<R> {
    inner: R,
    dot_ends: bool,
    /// Converted bytes not yet handed out, from `pos`.
    out: Vec<u8>,
    pos: usize,
    raw_len: u64,
    at_line_start: bool,
    /// The last byte was a CR, already written as CRLF: a LF next is part of it.
    after_cr: bool,
    /// Bytes were written since the last line end.
    line_open: bool,
    dot: Dot,
    /// The input ended (its end, or the dot line).
    ended: bool,
    refusal: Option<String>,
    read_error: Option<String>,
}

impl<R: Read> CanonicalInput<R> {
    fn new(inner: R, dot_ends: bool) -> CanonicalInput<R> {
        CanonicalInput {
            inner,
            dot_ends,
            out: Vec::with_capacity(READ_CHUNK + READ_CHUNK / 8),
            pos: 0,
            raw_len: 0,
            at_line_start: true,
            after_cr: false,
            line_open: false,
            dot: Dot::No,
            ended: false,
            refusal: None,
            read_error: None,
        }
    }

    fn refuse(&mut self, why: String) -> io::Error {
        self.refusal = Some(why.clone());
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    fn line_end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
        self.line_open = false;
    }

    /// Converts one piece of raw input into `out`; sets `ended` at a dot line.
    fn convert(&mut self, raw: &[u8]) {
        for &b in raw {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match self.dot {
                Dot::Seen | Dot::Cr if b == b'\n' => {
                    self.ended = true;
                    return;
                }
                Dot::Seen if b == b'\r' => {
                    self.dot = Dot::Cr;
                    continue;
                }
                Dot::Seen => {
                    self.out.push(b'.');
                    self.line_open = true;
                }
                // `.` and a bare CR: the dot was a line of its own, not the end.
                Dot::Cr => {
                    self.out.push(b'.');
                    self.line_end();
                }
                Dot::No => {}
            }
            self.dot = Dot::No;
            match b {
                b'\r' => {
                    self.line_end();
                    self.after_cr = true;
                }
                b'\n' => self.line_end(),
                b'.' if self.at_line_start && self.dot_ends => {
                    self.dot = Dot::Seen;
                    self.at_line_start = false;
                }
                _ => {
                    self.out.push(b);
                    self.at_line_start = false;
                    self.line_open = true;
                }
            }
        }
    }
}

impl<R: Read> Read for CanonicalInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for CanonicalInput<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(why) = &self.refusal {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        while self.pos == self.out.len() && !self.ended {
            self.out.clear();
            self.pos = 0;
            let mut raw = [0u8; READ_CHUNK];
            let n = match self.inner.read(&mut raw) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_error = Some(e.to_string());
                    return Err(e);
                }
            };
            if n == 0 {
                // A line "." or ".\r" at the very end ends the input too.
                if self.dot == Dot::No && self.line_open {
                    self.line_end();
                }
                self.ended = true;
                break;
            }
            self.raw_len += n as u64;
            if self.raw_len > MAX_INPUT {
                return Err(self.refuse(format!("message larger than {MAX_INPUT} bytes")));
            }
            if raw[..n].contains(&0) {
                return Err(self.refuse("message contains NUL bytes".into()));
            }
            self.convert(&raw[..n]);
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.out.len());
    }
}

impl<R> CanonicalInput<R> {
    /// The exit code and message for a failed read of the input, or for `other` (a
    /// queue file that could not be written) when the input was fine.
    fn failure(&self, other: impl FnOnce() -> String) -> (i32, String) {
        match (&self.refusal, &self.read_error) {
            (Some(why), _) => (exit::DATAERR, why.clone()),
            (None, Some(e)) => (exit::TEMPFAIL, format!("cannot read message: {e}")),
            (None, None) => (exit::TEMPFAIL, other()),
        }
    }
}

/// Addresses in an address-list value (an argument or a `To:`-like header field):
/// `a@b, "Name" <c@d>, group: e@f;`, as written (qualified and checked by the caller).
fn addresses_in(value: &str) -> impl Iterator<Item = String> {
    address_list::addresses(value)
        .into_iter()
        .map(|s| s.address)
}

/// The DSN requests of `-N`, `-R` and `-V` (Postfix's sendmail flags), checked as the
/// SMTP parameters are; Err names the flag. `-V` is plain text, kept xtext-encoded.
fn dsn_options(args: &SendmailArgs) -> Result<(MessageDsn, RcptDsn), String> {
    let mut message = MessageDsn::default();
    if let Some(r) = &args.ret {
        message.ret = Some(Ret::parse(r).ok_or_else(|| format!("-R {r}: expected full or hdrs"))?);
    }
    if let Some(v) = &args.envid {
        let xtext = dsn::encode_xtext(v);
        if v.is_empty()
            || xtext.len() > dsn::MAX_ENVID
            || !v.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            return Err(format!(
                "-V: the envelope ID must be printable ASCII, 1 to {} characters xtext-encoded",
                dsn::MAX_ENVID
            ));
        }
        message.envid = Some(xtext);
    }
    let mut rcpt = RcptDsn::default();
    if let Some(n) = &args.notify {
        rcpt.notify = Some(Notify::parse(n).map_err(|e| format!("-N {n}: {e}"))?);
    }
    Ok((message, rcpt))
}

/// Everything but the I/O: reads the header section, builds the envelope and the
/// completed header, and streams the rest of the input into the queue file after it.
fn queue_message(args: &SendmailArgs, stdin: &mut impl Read) -> Result<QueueId, (i32, String)> {
    let hostname = args.hostname.clone().unwrap_or_else(system_hostname);
    let (message_dsn, rcpt_dsn) = dsn_options(args).map_err(|e| (exit::USAGE, e))?;
    let mut input = CanonicalInput::new(stdin, !args.ignore_dots);
    let start = SectionPrefix::read(&mut input, MAX_HEADER_SECTION)
        .map_err(|e| input.failure(|| format!("cannot read message: {e}")))?;
    if !start.complete {
        return Err((
            exit::DATAERR,
            format!("header section larger than {MAX_HEADER_SECTION} bytes"),
        ));
    }
    let header = Header::parse(&start.bytes);

    let sender = match &args.from {
        Some(f) if f.is_empty() || f == "<>" => String::new(),
        Some(f) => qualify(f, &hostname).map_err(|e| (exit::USAGE, format!("-f: {e}")))?,
        None => format!("{}@{}", login_name(), hostname),
    };
    let mut recipients = Vec::new();
    for r in &args.recipients {
        for a in addresses_in(r) {
            recipients.push(qualify(&a, &hostname).map_err(|e| (exit::USAGE, e))?);
        }
    }
    if args.read_recipients {
        for field in &header.fields {
            if ["To", "Cc", "Bcc"].iter().any(|n| field.is(n)) {
                let name = String::from_utf8_lossy(field.name);
                for a in addresses_in(&field.value()) {
                    recipients.push(
                        qualify(&a, &hostname)
                            .map_err(|e| (exit::DATAERR, format!("{name}: header: {e}")))?,
                    );
                }
            }
        }
    }
    recipients.dedup();
    if recipients.is_empty() {
        return Err((
            exit::USAGE,
            "no recipients specified (give them as arguments or use -t)".into(),
        ));
    }

    let id = QueueId::generate();
    let now = unix_now();
    let state_dir = sendmail_state_dir(&args.state_dir);
    let dropping = via_maildrop(&state_dir);
    // Through the maildrop the daemon writes the trace field, with the uid it takes
    // from the dropped file's owner; one written here would not be believed.
    let mut head = if dropping {
        String::new()
    } else {
        let uid = rustix::process::getuid().as_raw();
        headers::received(&Origin::Local { uid }, &hostname, &id.0, &[], now)
    };
    if !header.has("From") {
        let addr = if sender.is_empty() {
            format!("MAILER-DAEMON@{hostname}")
        } else {
            sender.clone()
        };
        // -F gives the display name, as with Postfix's sendmail.
        let from = match &args.full_name {
            Some(name) if !name.is_empty() => {
                format!("\"{}\" <{addr}>", name.replace(['"', '\\'], ""))
            }
            _ => addr,
        };
        head.push_str(&format!("From: {from}\r\n"));
    }
    head.push_str(&headers::missing_origination_fields(
        &header, now, &id.0, &hostname,
    ));
    // Bcc: is removed from the header (it is in the envelope only).
    let mut completed = head.into_bytes();
    for field in header.fields.iter().filter(|f| !f.is("Bcc")) {
        completed.extend_from_slice(field.raw);
    }
    // The empty line after the header: the message's own, or one added when the
    // header section ended without it; then what was read of the body.
    completed.extend_from_slice(b"\r\n");
    completed.extend_from_slice(&start.bytes[header.body..]);

    let mut dsn = EnvelopeDsn {
        message: message_dsn,
        rcpts: Vec::new(),
    };
    for r in &recipients {
        dsn.set(r, &rcpt_dsn);
    }
    if dropping {
        let mut content = completed.as_slice().chain(&mut input);
        let envelope = (sender.as_str(), &recipients[..], &dsn);
        maildrop::submit(&state_dir, &id, envelope, &mut content).map_err(|e| {
            input.failure(|| {
                let dir = maildrop::dir(&state_dir);
                format!("cannot write to the maildrop {}: {e}", dir.display())
            })
        })?;
        return Ok(id);
    }
    let spool = Spool::open(&state_dir).map_err(|e| {
        (
            exit::TEMPFAIL,
            format!("cannot open queue in {}: {e}", state_dir.display()),
        )
    })?;
    let env = Envelope {
        id: id.clone(),
        arrival: now,
        sender,
        recipients,
        client: "local".into(),
        protocol: "local".into(),
        unexpanded: true,
        requiretls: false,
        dsn,
    };
    spool
        .store_from(&env, &mut completed.as_slice().chain(&mut input))
        .map_err(|e| input.failure(|| format!("cannot write queue file: {e}")))?;
    // A daemon that is not running finds the file at its next start.
    wakeup::poke(&spool, Wakeup::New(id.clone()));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `chunk` bytes at a time.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The input converted, fed in pieces of every size from 1 to 9 bytes, which must
    /// all agree.
    fn canonical(raw: &[u8], dot_ends: bool) -> Vec<u8> {
        let convert = |chunk| {
            let mut out = Vec::new();
            CanonicalInput::new(Trickle(raw, chunk), dot_ends)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let whole = convert(raw.len().max(1));
        for chunk in 1..10 {
            assert_eq!(convert(chunk), whole, "{raw:?} in pieces of {chunk}");
        }
        whole
    }

    #[test]
    fn line_ends_and_dot() {
        assert_eq!(canonical(b"a\nb\r\nc", true), b"a\r\nb\r\nc\r\n");
        assert_eq!(canonical(b"a\n.\nb\n", true), b"a\r\n");
        assert_eq!(canonical(b"a\n.\nb\n", false), b"a\r\n.\r\nb\r\n");
        assert_eq!(
            canonical(b"a\rb\r\r\nc\n\n", true),
            b"a\r\nb\r\n\r\nc\r\n\r\n"
        );
        assert_eq!(canonical(b"a\r\n.\r\nafter", true), b"a\r\n");
        assert_eq!(canonical(b"a\n.", true), b"a\r\n");
        assert_eq!(canonical(b"a\n.\r", true), b"a\r\n");
        // A dot with more on its line, or ended by a bare CR, is content.
        assert_eq!(canonical(b".x\n.\rb\n", true), b".x\r\n.\r\nb\r\n");
        assert_eq!(canonical(b"", true), b"");
    }

    #[test]
    fn nul_and_size_are_refused_whichever_piece_they_are_in() {
        let mut big = vec![b'x'; MAX_INPUT as usize];
        big.extend_from_slice(b"\n\n");
        for (raw, why) in [
            (
                b"Subject: x\n\nab\0c\n".to_vec(),
                "message contains NUL bytes",
            ),
            (big, "message larger than 10240000 bytes"),
        ] {
            let mut input = CanonicalInput::new(Trickle(&raw, 5000), true);
            let err = io::copy(&mut input, &mut io::sink()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(input.failure(String::new), (exit::DATAERR, why.to_string()));
        }
    }

    #[test]
    fn header_addresses() {
        assert_eq!(
            addresses_in(
                "\"Doe, J\" <j@x.example>, k@y.example (Kay), team: a@z.example, b@z.example;"
            )
            .collect::<Vec<_>>(),
            ["j@x.example", "k@y.example", "a@z.example", "b@z.example"]
        );
        assert_eq!(addresses_in("root").collect::<Vec<_>>(), ["root"]);
        let header = Header::parse(b"To: a@b,\r\n c@d\r\nSubject: s\r\n\r\nbody\r\n");
        assert!(header.fields[0].is("to"));
        assert_eq!(header.fields[0].value(), "a@b, c@d");
        assert_eq!(header.body, b"To: a@b,\r\n c@d\r\nSubject: s\r\n\r\n".len());
    }

    #[test]
    fn qualifies_bare_users() {
        assert_eq!(qualify("root", "router.lan").unwrap(), "root@router.lan");
        assert!(qualify("a b", "router.lan").is_err());
    }
}
