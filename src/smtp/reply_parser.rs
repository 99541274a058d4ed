//! The client side of the wire protocol: parsing server replies (RFC 5321 §4.2) and
//! reading the EHLO keywords a server offers. Sans-IO like the rest of `smtp`.

use super::reply::Reply;

/// Longest reply line accepted. RFC 5321 says 512; real servers send longer EHLO
/// lines, so allow some room while still bounding memory.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one reply (EHLO replies are the longest, a dozen lines in practice).
const MAX_REPLY_LINES: usize = 100;

/// Accumulates the lines of one (possibly multi-line) reply.
#[derive(Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Feeds one line (without CRLF). Returns the whole reply after its last line, or an
    /// error text when the server does not speak SMTP.
    pub fn feed(&mut self, line: &[u8]) -> Result<Option<Reply>, String> {
        let text = String::from_utf8_lossy(line);
        let bad = || format!("malformed reply line: {:.60}", text);
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let code: u16 = text[..3].parse().map_err(|_| bad())?;
        if !(200..600).contains(&code) {
            return Err(bad());
        }
        if self.code.is_some_and(|c| c != code) {
            return Err(format!("reply code changed within a reply: {:.60}", text));
        }
        let more = match line.get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => return Err(bad()),
        };
        self.code = Some(code);
        self.lines.push(text.get(4..).unwrap_or("").to_string());
        if self.lines.len() > MAX_REPLY_LINES {
            return Err("reply has too many lines".to_string());
        }
        if more {
            return Ok(None);
        }
        let reply = Reply::plain(code, std::mem::take(&mut self.lines));
        self.code = None;
        Ok(Some(reply))
    }
}

/// What a server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    pub starttls: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub enhanced_status: bool,
    /// RFC 3030 `CHUNKING`: the content may go in BDAT chunks.
    pub chunking: bool,
    /// DSN (RFC 3461): NOTIFY/ORCPT/RET/ENVID may be passed on.
    pub dsn: bool,
    /// SIZE limit, if announced (0 means no fixed limit).
    pub size: Option<u64>,
    /// SASL mechanisms from `AUTH` (RFC 4954), upper case, in the server's order.
    pub auth: Vec<String>,
    /// `REQUIRETLS` (RFC 8689): the server carries the requirement on.
    pub requiretls: bool,
}

impl Extensions {
    /// Reads the keywords from an EHLO reply (its first line is the greeting name).
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status = true,
                "REQUIRETLS" => ext.requiretls = true,
                "CHUNKING" => ext.chunking = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                // `AUTH=` is the pre-RFC 2554 draft form old servers still send
                // beside (or instead of) `AUTH`.
                k if k == "AUTH" || k.starts_with("AUTH=") => {
                    let first = kw.get(5..).filter(|m| !m.is_empty());
                    for m in first.into_iter().chain(words) {
                        let m = m.to_ascii_uppercase();
                        if !ext.auth.contains(&m) {
                            ext.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// The enhanced status code at the start of a reply (`5.1.1`), or one derived from the
/// basic code when the server sent none (`X.0.0`, RFC 3463).
pub fn enhanced_status(reply: &Reply) -> String {
    let first = reply.lines.first().map(String::as_str).unwrap_or("");
    let word = first.split(' ').next().unwrap_or("");
    let parts: Vec<&str> = word.split('.').collect();
    let class = (reply.code / 100).to_string();
    if parts.len() == 3
        && parts[0] == class
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        word.to_string()
    } else {
        format!("{class}.0.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::dot_stuff;

    #[test]
    fn multiline_reply_and_extensions() {
        let mut p = ReplyParser::default();
        assert_eq!(p.feed(b"250-mx.example.test"), Ok(None));
        assert_eq!(p.feed(b"250-PIPELINING"), Ok(None));
        assert_eq!(p.feed(b"250-SIZE 1000"), Ok(None));
        assert_eq!(p.feed(b"250-starttls"), Ok(None));
        assert_eq!(p.feed(b"250-dsn"), Ok(None));
        let r = p.feed(b"250 8BITMIME").unwrap().unwrap();
        assert_eq!(r.code, 250);
        let e = Extensions::from_ehlo(&r);
        assert!(e.pipelining && e.starttls && e.eightbitmime && e.dsn && !e.smtputf8);
        assert_eq!(e.size, Some(1000));
        // The parser is ready for the next reply.
        assert_eq!(p.feed(b"221 bye").unwrap().unwrap().code, 221);
    }

    #[test]
    fn auth_mechanisms() {
        let r = Reply::plain(
            250,
            [
                "smtp.example.com",
                "AUTH PLAIN login XOAUTH2",
                "AUTH=LOGIN PLAIN",
                "8BITMIME",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(
            Extensions::from_ehlo(&r).auth,
            ["PLAIN", "LOGIN", "XOAUTH2"]
        );
        let none = Reply::plain(250, vec!["mx".into(), "PIPELINING".into()]);
        assert!(Extensions::from_ehlo(&none).auth.is_empty());
    }

    #[test]
    fn malformed_replies() {
        for bad in [
            &b"25"[..],
            b"abc hello",
            b"250xhello",
            b"199 too low",
            b"600 too high",
        ] {
            assert!(ReplyParser::default().feed(bad).is_err(), "{bad:?}");
        }
        let mut p = ReplyParser::default();
        p.feed(b"250-a").unwrap();
        assert!(p.feed(b"251 b").is_err());
        assert_eq!(
            ReplyParser::default().feed(b"220").unwrap().unwrap().lines,
            [""]
        );
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(
            enhanced_status(&Reply::new(550, "5.1.1", "no such user")),
            "5.1.1"
        );
        assert_eq!(
            enhanced_status(&Reply::plain(550, vec!["no such user".into()])),
            "5.0.0"
        );
        assert_eq!(
            enhanced_status(&Reply::plain(451, vec!["5.1.1 mismatch".into()])),
            "4.0.0"
        );
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..\r\n"), b"..a\r\nb\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
