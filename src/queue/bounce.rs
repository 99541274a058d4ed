//! Messages the MTA writes itself: RFC 3464 delivery status notifications to the
//! sender of a message — failures (bounces), delays and successes, as its recipients'
//! `NOTIFY` asked (RFC 3461) — and short notices (TLS alerts) to an administrator.
//! All are sent with the null sender `<>`, so they never bounce back.
//!
//! A report returns the original's header section (read in bounded memory and capped
//! at [`MAX_RETURNED_HEADERS`]), or, for a failure of a message sent with `RET=FULL`,
//! the whole message when it is at most [`MAX_RETURNED_MESSAGE`] bytes: never more,
//! whatever the message's size.

use std::io::{self, BufRead, Read};

use super::outcome::{Outcome, Relay};
use super::{Envelope, QueueId};
use crate::clock::rfc5322_date;
use crate::clock::unix_now;
use crate::headers::{self, Header, SectionPrefix};
use crate::smtp::dsn::{decode_xtext, RcptDsn, Ret};

/// Most of the original's header section a report returns (Postfix keeps 100 KB of
/// any header section, `header_size_limit`; a bounce needs far less).
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;
/// Largest message a `RET=FULL` failure report returns whole (Postfix's
/// `bounce_size_limit`); a larger one gets its header section returned.
pub const MAX_RETURNED_MESSAGE: u64 = 50_000;

/// Whether a bounce of `original` may quote its body (`RET=FULL`): never for a
/// REQUIRETLS message (RFC 8689 §5), whose content must not travel where the
/// original could not.
pub fn may_return_body(original: &Envelope) -> bool {
    !original.requiretls
}

/// What a report says happened to a recipient (RFC 3464 §2.3.3 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    /// Delivered here (a Maildir).
    Delivered,
    /// Handed to a next hop that does not offer DSN: no more news will come.
    Relayed,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// Which report: one per kind of news, as Postfix sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Failure,
    Delay,
    Success,
}

impl ReportKind {
    fn subject(self) -> &'static str {
        match self {
            ReportKind::Failure => "Undelivered Mail Returned to Sender",
            ReportKind::Delay => "Delayed Mail (still being retried)",
            ReportKind::Success => "Successful Mail Delivery Report",
        }
    }

    /// How the log names the report queued (Postfix's words).
    pub fn log_name(self) -> &'static str {
        match self {
            ReportKind::Failure => "sender non-delivery notification",
            ReportKind::Delay => "sender delay notification",
            ReportKind::Success => "sender delivery status notification",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ReportKind::Failure => "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.",
            ReportKind::Delay => "Your message could not be delivered yet to one or more recipients.\r\nThe mail system will keep trying; you need not send it again.",
            ReportKind::Success => "Your message was successfully delivered to the destination(s)\r\nlisted below. If the message was delivered to a mailbox you will\r\nreceive no further notifications; otherwise you may still receive\r\nnotifications from other systems.",
        }
    }
}

/// One recipient in a report.
pub struct Reported<'a> {
    pub rcpt: &'a str,
    pub outcome: &'a Outcome,
    pub action: Action,
    /// Its DSN parameters (ORCPT becomes Original-Recipient).
    pub dsn: RcptDsn,
}

/// What a report returns of the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// Its header section (`text/rfc822-headers`).
    Headers(Vec<u8>),
    /// All of it (`message/rfc822`).
    Message(Vec<u8>),
}

fn envelope(hostname: &str, to: &str) -> Envelope {
    Envelope {
        id: QueueId::generate(),
        arrival: unix_now(),
        sender: String::new(),
        recipients: vec![to.to_string()],
        client: format!("{hostname}[local]"),
        protocol: "local".into(),
        // Through the tables like any mail: a bounce to root reaches root's alias, one
        // to an SRS address the original sender.
        unexpanded: true,
        requiretls: false,
        dsn: Default::default(),
    }
}

fn headers(env: &Envelope, hostname: &str, to: &str, subject: &str) -> String {
    format!(
        "From: MAILER-DAEMON@{hostname} (Mail Delivery System)\r\nTo: <{to}>\r\nSubject: {subject}\r\n{}{}Auto-Submitted: auto-replied\r\n",
        headers::date(env.arrival),
        headers::message_id(env.arrival, &env.id.0, hostname),
    )
}

/// Keeps a line of diagnostic text plain: no CR/LF, printable ASCII.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The header fields of a message to return in its bounce, read from the start of its
/// content: whole fields, at most [`MAX_RETURNED_HEADERS`] bytes; the body is not read.
pub fn returned_headers(content: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let prefix = SectionPrefix::read(content, MAX_RETURNED_HEADERS)?;
    let fields = prefix.whole_fields();
    Ok(fields[..Header::parse(fields).end].to_vec())
}

/// What the report of `kind` returns of `original`, `size` bytes read from `content`:
/// for a failure of a `RET=FULL` message the whole message when it is at most
/// [`MAX_RETURNED_MESSAGE`] bytes and [`may_return_body`]; else (and for any other
/// report, RFC 3461 §4.3) its header section.
pub fn returned(
    original: &Envelope,
    kind: ReportKind,
    content: &mut impl BufRead,
    size: u64,
) -> io::Result<Returned> {
    let full = kind == ReportKind::Failure
        && original.dsn.message.ret == Some(Ret::Full)
        && may_return_body(original);
    if full && size <= MAX_RETURNED_MESSAGE {
        let mut all = Vec::with_capacity(size as usize);
        content.take(MAX_RETURNED_MESSAGE).read_to_end(&mut all)?;
        return Ok(Returned::Message(all));
    }
    returned_headers(content).map(Returned::Headers)
}

/// Builds the report of `kind` for `original` (whose sender is not empty) about
/// `reported`, returning `returned` of it.
pub fn delivery_status_notification(
    hostname: &str,
    original: &Envelope,
    kind: ReportKind,
    returned: &Returned,
    reported: &[Reported],
    retry_until: Option<u64>,
) -> (Envelope, Vec<u8>) {
    let env = Envelope {
        // RFC 8689 §5: the bounce of a REQUIRETLS message is REQUIRETLS too, since it
        // quotes the original's header section.
        requiretls: original.requiretls,
        ..envelope(hostname, &original.sender)
    };
    let boundary = format!("{}/{}", env.id, hostname);
    let mut m = headers(&env, hostname, &original.sender, kind.subject());
    m.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system at host {hostname}.\r\n\r\n{}\r\n\r\n",
        kind.text()
    ));
    for r in reported {
        m.push_str(&format!(
            "<{}>: {}\r\n\r\n",
            r.rcpt,
            one_line(&r.outcome.detail)
        ));
    }
    m.push_str(&format!(
        "--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {hostname}\r\nX-Tinymta-Queue-ID: {}\r\n",
        original.id,
    ));
    if let Some(envid) = &original.dsn.message.envid {
        m.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            one_line(&decode_xtext(envid))
        ));
    }
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322_date(original.arrival)
    ));
    for r in reported {
        m.push_str(&format!("\r\nFinal-Recipient: rfc822; {}\r\n", r.rcpt));
        if let Some(orig) = r.dsn.original_recipient() {
            m.push_str(&format!("Original-Recipient: {}\r\n", one_line(&orig)));
        }
        m.push_str(&format!(
            "Action: {}\r\nStatus: {}\r\n",
            r.action.word(),
            r.outcome.dsn
        ));
        match (&r.outcome.reply, &r.outcome.relay) {
            (Some(reply), Relay::Host { name, .. }) => m.push_str(&format!(
                "Remote-MTA: dns; {name}\r\nDiagnostic-Code: smtp; {}\r\n",
                one_line(&reply.diagnostic())
            )),
            _ => m.push_str(&format!(
                "Diagnostic-Code: X-Tinymta; {}\r\n",
                one_line(&r.outcome.detail)
            )),
        }
        if let (Action::Delayed, Some(until)) = (r.action, retry_until) {
            m.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }
    let (description, content_type, body) = match returned {
        Returned::Headers(h) => ("Undelivered Message Headers", "text/rfc822-headers", h),
        Returned::Message(all) => ("Undelivered Message", "message/rfc822", all),
    };
    let description = match kind {
        ReportKind::Failure => description,
        _ => "Message Headers",
    };
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: {description}\r\nContent-Type: {content_type}\r\n\r\n"
    ));
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(body);
    if !body.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (env, bytes)
}

/// A short plain-text notice to an administrator.
pub fn notice(hostname: &str, to: &str, subject: &str, body: &str) -> (Envelope, Vec<u8>) {
    let env = envelope(hostname, to);
    let mut m = headers(&env, hostname, to, &one_line(subject));
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n");
    for line in body.lines() {
        m.push_str(&one_line(line));
        m.push_str("\r\n");
    }
    (env, m.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message the reports are about: alice@example.org to bob@example.net.
    fn original() -> Envelope {
        Envelope {
            id: QueueId("ABC".into()),
            arrival: 0,
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            client: "x".into(),
            protocol: "ESMTP".into(),
            unexpanded: false,
            requiretls: false,
            dsn: Default::default(),
        }
    }

    #[test]
    fn dsn_shape() {
        let orig = original();
        let original = b"Subject: hi\r\nFrom: alice@example.org\r\n\r\nsecret body\r\n";
        let quoted = returned(
            &orig,
            ReportKind::Failure,
            &mut &original[..],
            original.len() as u64,
        )
        .unwrap();
        let (env, msg) = delivery_status_notification(
            "mx.example.org",
            &orig,
            ReportKind::Failure,
            &quoted,
            &[Reported {
                rcpt: "bob@example.net",
                outcome: &Outcome::sample_rcpt_refused(),
                action: Action::Failed,
                dsn: RcptDsn::default(),
            }],
            None,
        );
        let text = String::from_utf8(msg).unwrap();
        assert_eq!(env.sender, "");
        assert_eq!(env.recipients, ["alice@example.org"]);
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user (in reply to RCPT TO command)"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(
            !text.contains("secret body"),
            "only the headers are returned"
        );
        assert!(!text.split("\r\n").any(|l| l.len() > 998));
        assert!(!text.contains("Original-"), "no ENVID, no ORCPT: {text}");
    }

    #[test]
    fn success_report_with_envid_orcpt_and_full_return() {
        use crate::smtp::dsn::Notify;
        let mut orig = original();
        orig.dsn.message.envid = Some("QQ+2B1".into());
        let dsn = RcptDsn {
            notify: Some(Notify::parse("SUCCESS").unwrap()),
            orcpt: Some("rfc822;Bob+2Bx@example.net".into()),
        };
        let delivered = Outcome::new(
            crate::queue::outcome::Disposition::Sent,
            Relay::Local,
            "2.0.0",
            "delivered to maildir".into(),
        );
        let original = b"Subject: hi\r\n\r\nsecret body\r\n";
        let full = returned(&orig, ReportKind::Success, &mut &original[..], 30).unwrap();
        assert_eq!(
            full,
            Returned::Headers(b"Subject: hi\r\n".to_vec()),
            "FULL is for failures"
        );
        orig.dsn.message.ret = Some(Ret::Full);
        let full = returned(&orig, ReportKind::Failure, &mut &original[..], 30).unwrap();
        assert_eq!(full, Returned::Message(original.to_vec()));
        let (_, msg) = delivery_status_notification(
            "mx.example.org",
            &orig,
            ReportKind::Success,
            &full,
            &[Reported {
                rcpt: "bob@example.net",
                outcome: &delivered,
                action: Action::Delivered,
                dsn,
            }],
            None,
        );
        let text = String::from_utf8(msg).unwrap();
        assert!(text.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(text.contains("Original-Envelope-Id: QQ+1\r\n"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; bob@example.net\r\nOriginal-Recipient: rfc822;Bob+x@example.net\r\nAction: delivered\r\nStatus: 2.0.0\r\n"), "{text}");
        assert!(text
            .contains("Content-Type: message/rfc822\r\n\r\nSubject: hi\r\n\r\nsecret body\r\n--"));

        // FULL is bounded: a larger message returns its header section only.
        let mut big = b"Subject: big\r\n\r\n".to_vec();
        big.resize(MAX_RETURNED_MESSAGE as usize + 1, b'x');
        assert_eq!(
            returned(&orig, ReportKind::Failure, &mut &big[..], big.len() as u64).unwrap(),
            Returned::Headers(b"Subject: big\r\n".to_vec())
        );
    }

    #[test]
    fn the_bounce_of_a_requiretls_message_is_requiretls_and_keeps_the_body_back() {
        let orig = Envelope {
            protocol: "ESMTPS".into(),
            requiretls: true,
            ..original()
        };
        let mut orig = orig;
        orig.dsn.message.ret = Some(Ret::Full);
        assert!(!may_return_body(&orig));
        let original = b"Subject: hi\r\n\r\nsecret body\r\n";
        let quoted = returned(&orig, ReportKind::Failure, &mut &original[..], 30).unwrap();
        assert!(
            matches!(quoted, Returned::Headers(_)),
            "RET=FULL yields to REQUIRETLS"
        );
        let failed = [Reported {
            rcpt: "bob@example.net",
            outcome: &Outcome::sample_rcpt_refused(),
            action: Action::Failed,
            dsn: RcptDsn::default(),
        }];
        let report = |env: &Envelope| {
            delivery_status_notification(
                "mx.example.org",
                env,
                ReportKind::Failure,
                &quoted,
                &failed,
                None,
            )
        };
        let (env, msg) = report(&orig);
        assert!(env.requiretls && env.unexpanded && env.sender.is_empty());
        assert!(!String::from_utf8(msg).unwrap().contains("secret body"));
        let plain = Envelope {
            requiretls: false,
            ..orig
        };
        assert!(may_return_body(&plain));
        let (env, _) = report(&plain);
        assert!(!env.requiretls);
    }

    #[test]
    fn a_bounce_quotes_a_bounded_header_and_never_reads_the_body() {
        use std::io::Read;
        // A header, then an endless body: only the header is read.
        let header = b"From: a@example.org\r\nSubject: big\r\n\r\n";
        let mut r = io::BufReader::new(io::Cursor::new(&header[..]).chain(io::repeat(b'x')));
        let quoted = returned_headers(&mut r).unwrap();
        assert_eq!(quoted, b"From: a@example.org\r\nSubject: big\r\n");
        let mut next = [0u8; 4];
        r.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"xxxx", "the body is left unread");

        // A header section larger than the cap: whole fields up to the cap, no more.
        let mut huge = Vec::new();
        for i in 0..5000 {
            huge.extend_from_slice(format!("X-Filler-{i}: some value\r\n\tfolded\r\n").as_bytes());
        }
        huge.extend_from_slice(b"\r\nbody\r\n");
        let quoted = returned_headers(&mut &huge[..]).unwrap();
        assert!(quoted.len() <= MAX_RETURNED_HEADERS && quoted.len() > MAX_RETURNED_HEADERS / 2);
        assert!(quoted.ends_with(b"\tfolded\r\n"), "ends with a whole field");
        assert_eq!(&huge[..quoted.len()], &quoted[..]);

        // No header at all (the first line is not a field): nothing to quote.
        assert!(returned_headers(&mut &b"just text\r\n\r\nmore\r\n"[..])
            .unwrap()
            .is_empty());
    }
}
