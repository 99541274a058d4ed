//! Messages the MTA writes itself: RFC 3464 delivery status notifications (bounces)
//! to the sender of a message that failed, and short notices (TLS alerts) to an
//! administrator. Both are sent with the null sender `<>`, so they never bounce back.

use super::outcome::{Outcome, Relay};
use super::{Envelope, QueueId};
use crate::clock::rfc5322_date;
use crate::clock::unix_now;
use crate::headers::{self, Header};

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

/// Builds the bounce for `original` (whose sender is not empty).
pub fn delivery_status_notification(
    hostname: &str,
    original: &Envelope,
    content: &[u8],
    failed: &[Failed],
) -> (Envelope, Vec<u8>) {
    let env = envelope(hostname, &original.sender);
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
    let header = Header::parse(content);
    bytes.extend_from_slice(&content[..header.end]);
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
        };
        let (env, msg) = delivery_status_notification(
            "mx.example.org",
            &orig,
            b"Subject: hi\r\nFrom: alice@example.org\r\n\r\nsecret body\r\n",
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
}
