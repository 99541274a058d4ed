//! The header section of a message (RFC 5322 §2.2) as the MTA completes and reads it:
//! one scanner for the fields (folded lines kept whole), and the fields tinymta adds
//! itself — `Received:` (trace), `Date:` and `Message-ID:` (submission, RFC 6409 §8;
//! `sendmail`; bounces) — in one format each. Messages here are canonical CRLF text,
//! as the queue stores them.

use std::net::IpAddr;

use crate::clock::rfc5322_date;

/// One header field as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name, without the colon.
    pub name: &'a [u8],
    /// The whole field: name, colon, value and any folded lines, each with its CRLF.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// Field names compare case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (continuation lines joined by one space) and trimmed.
    pub fn value(&self) -> String {
        let after_colon = &self.raw[self.name.len() + 1..];
        let text = String::from_utf8_lossy(after_colon);
        let mut out = String::new();
        for line in text.split("\r\n").map(str::trim).filter(|l| !l.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        out
    }
}

/// The header section of a message: its fields, where they end and where the body
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub fields: Vec<Field<'a>>,
    /// Offset just past the last field: where a field can be added at the end, and
    /// where the empty line (if any) begins.
    pub end: usize,
    /// Offset of the body: past the empty line, or `end` when the section was ended by
    /// a line that is not a field (or by the end of the message).
    pub body: usize,
}

impl<'a> Header<'a> {
    /// Scans the header section of `msg`. A line that is neither a field nor a
    /// continuation ends it, as does the empty line; a continuation before any field
    /// is not a header at all.
    pub fn parse(msg: &'a [u8]) -> Header<'a> {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos < msg.len() {
            let line_end = next_line(msg, pos);
            let line = &msg[pos..line_end];
            if line == b"\r\n" {
                return Header {
                    fields,
                    end: pos,
                    body: line_end,
                };
            }
            let Some(name) = field_name(line) else {
                break;
            };
            // Folded lines (starting with space or tab) belong to this field.
            let mut end = line_end;
            while end < msg.len() && (msg[end] == b' ' || msg[end] == b'\t') {
                end = next_line(msg, end);
            }
            fields.push(Field {
                name,
                raw: &msg[pos..end],
            });
            pos = end;
        }
        Header {
            fields,
            end: pos,
            body: pos,
        }
    }

    /// Whether a field of this name is present.
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.is(name))
    }
}

/// The name of the field that `line` starts, if it starts one: text before a colon,
/// not empty, without space or tab.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let n = line.iter().position(|&b| b == b':')?;
    (n > 0 && !line[..n].iter().any(|&b| b == b' ' || b == b'\t')).then(|| &line[..n])
}

fn is_folded(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// The start of a message read from a stream in bounded memory: whole lines up to and
/// including the empty line that ends the header section (or the first line that is
/// neither a field nor a folded line), never more than the cap. For what needs the
/// header only — a bounce's quote, the fields `--sender-rewrite` rewrites, `sendmail`'s
/// completion — of a message that may be megabytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionPrefix {
    /// The bytes read, all of them: `r` is left just past them.
    pub bytes: Vec<u8>,
    /// The section ended within the cap (or the input did).
    pub complete: bool,
}

impl SectionPrefix {
    /// Reads from `r` (canonical CRLF text) at most `cap` bytes.
    pub fn read(r: &mut impl std::io::BufRead, cap: usize) -> std::io::Result<SectionPrefix> {
        use std::io::BufRead;
        let mut bytes = Vec::new();
        loop {
            let start = bytes.len();
            let left = cap - start;
            if left == 0 {
                return Ok(SectionPrefix {
                    bytes,
                    complete: false,
                });
            }
            let n = std::io::Read::take(&mut *r, left as u64).read_until(b'\n', &mut bytes)?;
            let line = &bytes[start..];
            let ended = if line.ends_with(b"\n") {
                line == b"\r\n" || (field_name(line).is_none() && !(start > 0 && is_folded(line)))
            } else {
                // The end of the input (shorter than asked for), or the cap mid-line.
                n < left
            };
            if ended {
                return Ok(SectionPrefix {
                    bytes,
                    complete: true,
                });
            }
        }
    }

    /// The bytes that hold whole fields only: all of them when the section ended
    /// within the cap; else up to the start of the last field read, whose folded lines
    /// (or rest) may lie beyond.
    pub fn whole_fields(&self) -> &[u8] {
        if self.complete {
            return &self.bytes;
        }
        let b = &self.bytes;
        let cut = (2..b.len())
            .rev()
            .find(|&i| &b[i - 2..i] == b"\r\n" && !is_folded(&b[i..]))
            .unwrap_or(0);
        &b[..cut]
    }
}

/// Offset just past the CRLF of the line starting at `pos` (or the end of `msg`).
fn next_line(msg: &[u8], pos: usize) -> usize {
    msg[pos..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(msg.len(), |i| pos + i + 2)
}

/// `Date:` for a message created at `unix`.
pub fn date(unix: u64) -> String {
    format!("Date: {}\r\n", rfc5322_date(unix))
}

/// `Message-ID:` in tinymta's one format, `<UNIXTIME.QUEUEID@HOSTNAME>`: unique per
/// queue ID and host.
pub fn message_id(unix: u64, queue_id: &str, hostname: &str) -> String {
    format!("Message-ID: <{unix}.{queue_id}@{hostname}>\r\n")
}

/// The `Date:` and `Message-ID:` a message lacks (RFC 6409 §8: a submission server may
/// add them), as lines to insert at the end of its header section.
pub fn missing_origination_fields(
    header: &Header<'_>,
    unix: u64,
    queue_id: &str,
    hostname: &str,
) -> String {
    let mut add = String::new();
    if !header.has("Date") {
        add.push_str(&date(unix));
    }
    if !header.has("Message-ID") {
        add.push_str(&message_id(unix, queue_id, hostname));
    }
    add
}

/// Where a message came from, for its `Received:` field.
#[derive(Debug, Clone)]
pub enum Origin<'a> {
    /// Over SMTP from `helo` at `ip`; `tls` is the negotiated TLS as Postfix writes it
    /// (`TLSv1.3 with cipher ... (256/256 bits)`), `user` the authenticated sender,
    /// `protocol` the RFC 3848 keyword (ESMTPSA ...).
    Smtp {
        helo: &'a str,
        ip: IpAddr,
        tls: Option<String>,
        /// The client certificate's comment (subject, issuer, fingerprint).
        client_cert: Option<String>,
        user: Option<&'a str>,
        protocol: &'a str,
    },
    /// Submitted on this host by the `sendmail` command of user `uid`.
    Local { uid: u32 },
}

/// The `Received:` trace field (RFC 5321 §4.4) in Postfix's shape; `for <rcpt>` only
/// when there is one recipient, as Postfix does, so Bcc recipients do not show.
pub fn received(
    origin: &Origin<'_>,
    hostname: &str,
    queue_id: &str,
    recipients: &[String],
    unix: u64,
) -> String {
    match origin {
        Origin::Local { uid } => format!(
            "Received: by {hostname} (tinymta, from userid {uid})\r\n\tid {queue_id}; {}\r\n",
            rfc5322_date(unix)
        ),
        Origin::Smtp {
            helo,
            ip,
            tls,
            client_cert,
            user,
            protocol,
        } => {
            let mut h = format!("Received: from {helo} (unknown [{ip}])\r\n");
            if let Some(tls) = tls {
                h.push_str(&format!("\t(using {tls})\r\n"));
            }
            if let Some(cert) = client_cert {
                h.push_str(&format!("\t({cert})\r\n"));
            }
            if let Some(user) = user {
                // The user name, never anything of the password.
                h.push_str(&format!("\t(Authenticated sender: {user})\r\n"));
            }
            h.push_str(&format!(
                "\tby {hostname} (tinymta) with {protocol} id {queue_id}"
            ));
            match recipients {
                [one] => h.push_str(&format!("\r\n\tfor <{one}>; ")),
                _ => h.push_str(";\r\n\t"),
            }
            h.push_str(&rfc5322_date(unix));
            h.push_str("\r\n");
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_prefix_is_read_whole_or_cut_at_a_field() {
        let read = |msg: &[u8], cap: usize| SectionPrefix::read(&mut &msg[..], cap).unwrap();
        let msg = b"From: a@b\r\nTo: c@d,\r\n e@f\r\n\r\nbody\r\n";
        let p = read(msg, 1000);
        assert!(p.complete);
        assert_eq!(p.bytes, b"From: a@b\r\nTo: c@d,\r\n e@f\r\n\r\n");
        assert_eq!(p.whole_fields(), &p.bytes[..]);
        // Cut inside the folded To: field: only From: is whole.
        let p = read(msg, 22);
        assert!(!p.complete);
        assert_eq!(p.bytes, &msg[..22]);
        assert_eq!(p.whole_fields(), b"From: a@b\r\n");
        // Cut right after a CRLF: the next line may be a folded one, so To: is not whole.
        let p = read(msg, 24);
        assert_eq!(p.whole_fields(), b"From: a@b\r\n");
        // A line that is not a field ends the section; so does the end of the input.
        let p = read(b"From: a@b\r\nnot a field\r\nmore\r\n", 1000);
        assert!(p.complete);
        assert_eq!(p.bytes, b"From: a@b\r\nnot a field\r\n");
        let p = read(b"From: a@b", 1000);
        assert!(p.complete && p.bytes == b"From: a@b");
        // One field longer than the cap: nothing whole, never more than the cap read.
        let long = [b"X: ".to_vec(), vec![b'x'; 5000], b"\r\n\r\n".to_vec()].concat();
        let p = read(&long, 100);
        assert_eq!(
            (p.bytes.len(), p.complete, p.whole_fields()),
            (100, false, &b""[..])
        );
    }

    #[test]
    fn fields_folded_lines_and_the_body() {
        let msg = b"From: a@b\r\nSubject: one\r\n two\r\nX-Empty:\r\n\r\nbody\r\n";
        let h = Header::parse(msg);
        let names: Vec<&[u8]> = h.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"X-Empty"]);
        assert_eq!(h.fields[1].raw, b"Subject: one\r\n two\r\n");
        assert_eq!(h.fields[1].value(), "one two");
        assert_eq!(h.fields[2].value(), "");
        assert_eq!(&msg[h.body..], b"body\r\n");
        assert_eq!(&msg[h.end..h.body], b"\r\n");
        assert!(h.has("subject") && !h.has("Date"));
    }

    #[test]
    fn a_line_that_is_not_a_field_starts_the_body() {
        let msg = b"Subject: x\r\nnot a header line\r\nmore\r\n";
        let h = Header::parse(msg);
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.end, h.body);
        assert_eq!(&msg[h.body..], b"not a header line\r\nmore\r\n");
        // No header at all: the empty line first, or a name with a space.
        let h = Header::parse(b"\r\nbody\r\n");
        assert!(h.fields.is_empty());
        assert_eq!((h.end, h.body), (0, 2));
        let h = Header::parse(b"Not A: field\r\n");
        assert!(h.fields.is_empty());
        assert_eq!(h.body, 0);
        // Only fields, no empty line, no final CRLF.
        let msg = b"Subject: x\r\nTo: y";
        let h = Header::parse(msg);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.body, msg.len());
    }

    #[test]
    fn origination_fields_only_when_missing() {
        let with = Header::parse(b"Date: x\r\nMessage-ID: <a@b>\r\n\r\n");
        assert_eq!(missing_origination_fields(&with, 0, "ID", "h"), "");
        let without = Header::parse(b"Subject: x\r\n\r\n");
        assert_eq!(
            missing_origination_fields(&without, 0, "ID", "h.example"),
            "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <0.ID@h.example>\r\n"
        );
    }

    #[test]
    fn received_in_postfix_shape() {
        let smtp = Origin::Smtp {
            helo: "client.example",
            ip: "192.0.2.1".parse().unwrap(),
            tls: Some("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)".into()),
            client_cert: Some("Client CN \"c\"".into()),
            user: Some("alice"),
            protocol: "ESMTPSA",
        };
        assert_eq!(
            received(&smtp, "mx.example", "ID", &["a@b".into()], 0),
            "Received: from client.example (unknown [192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\t(Client CN \"c\")\r\n\t(Authenticated sender: alice)\r\n\tby mx.example (tinymta) with ESMTPSA id ID\r\n\tfor <a@b>; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        assert_eq!(
            received(&Origin::Local { uid: 0 }, "router", "ID", &[], 0),
            "Received: by router (tinymta, from userid 0)\r\n\tid ID; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
