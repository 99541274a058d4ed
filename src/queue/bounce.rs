//! Messages the MTA writes itself: RFC 3464 delivery status notifications (bounces)
//! to the sender of a message that failed, and short notices (TLS alerts) to an
//! administrator. Both are sent with the null sender `<>`, so they never bounce back.
//!
//! A bounce returns the original's header section only (as `RET=HDRS` asks, RFC 3461),
//! read in bounded memory and capped at [`MAX_RETURNED_HEADERS`]: never the message,
//! which may be megabytes.

use std::io::{self, BufRead};

use super::outcome::{Outcome, Relay};
use super::{Envelope, QueueId};
use crate::clock::rfc5322_date;
use crate::clock::unix_now;
use crate::headers::{self, Header, SectionPrefix};

/// Most of the original's header section a bounce returns (Postfix keeps 100 KB of
/// any header section, `header_size_limit`; a bounce needs far less).
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// Whether a bounce of `original` may quote its body (`RET=FULL`): never for a
/// REQUIRETLS message (RFC 8689 §5), whose content must not travel where the
/// original could not.
pub fn may_return_body(original: &Envelope) -> bool {
    !original.requiretls
}

/// One failed recipient for a DSN.
pub struct Failed<'a> {
    pub rcpt: &'a str,
    pub outcome: &'a Outcome,
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

/// Builds the bounce for `original` (whose sender is not empty), quoting `returned`
/// (its [`returned_headers`]).
pub fn delivery_status_notification(
    hostname: &str,
    original: &Envelope,
    returned: &[u8],
    failed: &[Failed],
) -> (Envelope, Vec<u8>) {
    let env = Envelope {
        // RFC 8689 §5: the bounce of a REQUIRETLS message is REQUIRETLS too, since it
        // quotes the original's header section.
        requiretls: original.requiretls,
        ..envelope(hostname, &original.sender)
    };
    let boundary = format!("{}/{}", env.id, hostname);
    let mut m = headers(
        &env,
        hostname,
        &original.sender,
        "Undelivered Mail Returned to Sender",
    );
    m.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system at host {hostname}.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
    ));
    for f in failed {
        m.push_str(&format!(
            "<{}>: {}\r\n\r\n",
            f.rcpt,
            one_line(&f.outcome.detail)
        ));
    }
    m.push_str(&format!(
        "--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {hostname}\r\nX-Tinymta-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        original.id,
        rfc5322_date(original.arrival)
    ));
    for f in failed {
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.rcpt, f.outcome.dsn
        ));
        match (&f.outcome.reply, &f.outcome.relay) {
            (Some(reply), Relay::Host { name, .. }) => m.push_str(&format!(
                "Remote-MTA: dns; {name}\r\nDiagnostic-Code: smtp; {}\r\n",
                one_line(&reply.diagnostic())
            )),
            _ => m.push_str(&format!(
                "Diagnostic-Code: X-Tinymta; {}\r\n",
                one_line(&f.outcome.detail)
            )),
        }
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(returned);
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
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

    #[test]
    fn dsn_shape() {
        let orig = Envelope {
            id: QueueId("ABC".into()),
            arrival: 0,
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            client: "x".into(),
            protocol: "ESMTP".into(),
            unexpanded: false,
            requiretls: false,
        };
        let original = b"Subject: hi\r\nFrom: alice@example.org\r\n\r\nsecret body\r\n";
        let quoted = returned_headers(&mut &original[..]).unwrap();
        let (env, msg) = delivery_status_notification(
            "mx.example.org",
            &orig,
            &quoted,
            &[Failed {
                rcpt: "bob@example.net",
                outcome: &Outcome::sample_rcpt_refused(),
            }],
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
    }

    #[test]
    fn the_bounce_of_a_requiretls_message_is_requiretls_and_keeps_the_body_back() {
        let orig = Envelope {
            id: QueueId("ABC".into()),
            arrival: 0,
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            client: "x".into(),
            protocol: "ESMTPS".into(),
            unexpanded: false,
            requiretls: true,
        };
        assert!(!may_return_body(&orig));
        let original = b"Subject: hi\r\n\r\nsecret body\r\n";
        let quoted = returned_headers(&mut &original[..]).unwrap();
        let failed = [Failed {
            rcpt: "bob@example.net",
            outcome: &Outcome::sample_rcpt_refused(),
        }];
        let (env, msg) = delivery_status_notification("mx.example.org", &orig, &quoted, &failed);
        assert!(env.requiretls && env.unexpanded && env.sender.is_empty());
        assert!(!String::from_utf8(msg).unwrap().contains("secret body"));
        let plain = Envelope {
            requiretls: false,
            ..orig
        };
        assert!(may_return_body(&plain));
        let (env, _) = delivery_status_notification("mx.example.org", &plain, &quoted, &failed);
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
