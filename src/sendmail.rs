//! `tinymta sendmail` (and the `sendmail` symlink): reads a message on stdin, completes
//! its headers as Postfix's pickup/cleanup do, and drops it into the queue of the
//! daemon that uses the same state directory, then wakes the daemon.
//!
//! The recipients are queued as given, marked unexpanded: the daemon puts them through
//! its address tables (aliases, virtual, recipient table, SRS) when it picks the file
//! up, so `sendmail root` reaches root's alias without flags here, and a recipient the
//! tables refuse is bounced to the sender (see `queue::scheduler`).

use std::io::Read;

use crate::address::address_list;
use crate::cli::SendmailArgs;
use crate::clock::unix_now;
use crate::exit;
use crate::headers::{self, Header, Origin};
use crate::host::{default_state_dir, system_hostname};
use crate::queue::wakeup::{self, Wakeup};
use crate::queue::{Envelope, QueueId, Spool};
use crate::smtp::address::parse_mailbox;

/// Largest message accepted on stdin (as the daemon's default SIZE limit).
const MAX_INPUT: u64 = 10_240_000;

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

/// Turns any mix of CRLF, LF and CR line ends into CRLF; with `dot_ends`, a line with
/// a single `.` ends the input (traditional sendmail without `-i`).
fn canonical_lines(raw: &[u8], dot_ends: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let text = raw.strip_suffix(b"\n").unwrap_or(raw);
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if dot_ends && line == b"." {
            break;
        }
        for part in line.split(|&b| b == b'\r') {
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Addresses in an address-list value (an argument or a `To:`-like header field):
/// `a@b, "Name" <c@d>, group: e@f;`, as written (qualified and checked by the caller).
fn addresses_in(value: &str) -> impl Iterator<Item = String> {
    address_list::addresses(value)
        .into_iter()
        .map(|s| s.address)
}

/// Everything but the I/O: builds the envelope and content and stores them.
fn queue_message(args: &SendmailArgs, stdin: &mut impl Read) -> Result<QueueId, (i32, String)> {
    let hostname = args.hostname.clone().unwrap_or_else(system_hostname);
    let mut raw = Vec::new();
    stdin
        .take(MAX_INPUT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| (exit::TEMPFAIL, format!("cannot read message: {e}")))?;
    if raw.len() as u64 > MAX_INPUT {
        return Err((
            exit::DATAERR,
            format!("message larger than {MAX_INPUT} bytes"),
        ));
    }
    if raw.contains(&0) {
        return Err((exit::DATAERR, "message contains NUL bytes".into()));
    }
    let msg = canonical_lines(&raw, !args.ignore_dots);
    let header = Header::parse(&msg);

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
    let uid = rustix::process::getuid().as_raw();
    let mut head = headers::received(&Origin::Local { uid }, &hostname, &id.0, &[], now);
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
    let mut content = head.into_bytes();
    for field in header.fields.iter().filter(|f| !f.is("Bcc")) {
        content.extend_from_slice(field.raw);
    }
    // The empty line after the header: the message's own, or one added when the
    // header section ended without it.
    content.extend_from_slice(b"\r\n");
    content.extend_from_slice(&msg[header.body..]);

    let state_dir = default_state_dir(&args.state_dir);
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
    };
    spool
        .store(&env, &content)
        .map_err(|e| (exit::TEMPFAIL, format!("cannot write queue file: {e}")))?;
    // A daemon that is not running finds the file at its next start.
    wakeup::poke(&spool, Wakeup::New);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_and_dot() {
        assert_eq!(canonical_lines(b"a\nb\r\nc", true), b"a\r\nb\r\nc\r\n");
        assert_eq!(canonical_lines(b"a\n.\nb\n", true), b"a\r\n");
        assert_eq!(canonical_lines(b"a\n.\nb\n", false), b"a\r\n.\r\nb\r\n");
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
