//! Delivery status notification parameters (RFC 3461): `RET=` and `ENVID=` of MAIL,
//! `NOTIFY=` and `ORCPT=` of RCPT, and the xtext encoding (§4) that ENVID and ORCPT
//! are written in. Sans-IO: the command parser, the queue envelope and the outbound
//! client all use these types, so a value is validated once, at the edge, and is kept
//! and passed on in its wire form.

use std::fmt;

use crate::text::Joined;

/// Longest ENVID (RFC 3461 §4.4: 100 characters, before xtext decoding).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT value, address type included (§4.2: 500 characters).
pub const MAX_ORCPT: usize = 500;

/// `RET=`: what a failure report returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    pub fn parse(value: &str) -> Option<Ret> {
        if value.eq_ignore_ascii_case("FULL") {
            Some(Ret::Full)
        } else if value.eq_ignore_ascii_case("HDRS") {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// `NOTIFY=`: `NEVER`, or any of `SUCCESS`, `FAILURE`, `DELAY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// Parses the parameter's value; Err is the reason, for the 501.
    pub fn parse(value: &str) -> Result<Notify, &'static str> {
        let mut n = Notify::NEVER;
        let mut never = false;
        for word in value.split(',') {
            let seen = match word.to_ascii_uppercase().as_str() {
                "NEVER" => std::mem::replace(&mut never, true),
                "SUCCESS" => std::mem::replace(&mut n.success, true),
                "FAILURE" => std::mem::replace(&mut n.failure, true),
                "DELAY" => std::mem::replace(&mut n.delay, true),
                _ => return Err("NOTIFY takes NEVER or SUCCESS,FAILURE,DELAY"),
            };
            if seen {
                return Err("NOTIFY names a keyword twice");
            }
        }
        if never && n != Notify::NEVER {
            return Err("NOTIFY=NEVER cannot be combined with other keywords");
        }
        Ok(n)
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Notify::NEVER {
            return f.write_str("NEVER");
        }
        let words = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ];
        let on: Vec<&str> = words.iter().filter(|w| w.0).map(|w| w.1).collect();
        f.write_str(&on.joined(","))
    }
}

/// Checks that `s` is xtext (§4): printable ASCII except `+` and `=`, or `+` and two
/// upper-case hex digits. Err is the reason.
pub fn check_xtext(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if !(i + 2 < b.len() && hex(b[i + 1]) && hex(b[i + 2])) {
                    return Err("a + in xtext must be followed by two upper-case hex digits");
                }
                i += 3;
            }
            b'=' => return Err("= must be written +3D in xtext"),
            b'!'..=b'~' => i += 1,
            _ => return Err("xtext holds printable ASCII only"),
        }
    }
    Ok(())
}

/// Decodes checked xtext (for the text of a report). Bytes that are not UTF-8 are
/// replaced; the result is for display.
pub fn decode_xtext(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digit = |j: usize| b.get(j).and_then(|&c| (c as char).to_digit(16));
        if let (b'+', Some(hi), Some(lo)) = (b[i], digit(i + 1), digit(i + 2)) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes any text as xtext: what we write when we originate an ORCPT ourselves.
pub fn encode_xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Validates an `ENVID=` value (kept as xtext).
pub fn parse_envid(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_ENVID {
        return Err(format!("ENVID must be 1 to {MAX_ENVID} characters"));
    }
    check_xtext(value).map_err(|e| format!("Bad ENVID: {e}"))?;
    Ok(value.to_string())
}

/// Validates an `ORCPT=` value: `addr-type;xtext` (kept as given, the type as an
/// atom: `rfc822`, `utf-8`, ...).
pub fn parse_orcpt(value: &str) -> Result<String, String> {
    if value.len() > MAX_ORCPT {
        return Err(format!("ORCPT is longer than {MAX_ORCPT} characters"));
    }
    let (kind, addr) = value
        .split_once(';')
        .ok_or_else(|| "ORCPT must be addr-type;address".to_string())?;
    let atom = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c);
    if kind.is_empty() || !kind.bytes().all(atom) {
        return Err("Bad ORCPT address type".to_string());
    }
    if addr.is_empty() {
        return Err("ORCPT has no address".to_string());
    }
    check_xtext(addr).map_err(|e| format!("Bad ORCPT: {e}"))?;
    Ok(value.to_string())
}

/// The DSN parameters of one recipient, from its RCPT command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptDsn {
    /// None: no NOTIFY given (failure and delay reports, as without DSN).
    pub notify: Option<Notify>,
    /// `addr-type;xtext` as given.
    pub orcpt: Option<String>,
}

impl RcptDsn {
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }
    pub fn wants_success(&self) -> bool {
        self.notify.is_some_and(|n| n.success)
    }
    pub fn wants_failure(&self) -> bool {
        self.notify.is_none_or(|n| n.failure)
    }
    pub fn wants_delay(&self) -> bool {
        self.notify.is_none_or(|n| n.delay)
    }

    /// ` NOTIFY=... ORCPT=...` for a RCPT command to a server that offers DSN.
    pub fn rcpt_params(&self) -> String {
        let mut p = String::new();
        if let Some(n) = self.notify {
            p.push_str(&format!(" NOTIFY={n}"));
        }
        if let Some(o) = &self.orcpt {
            p.push_str(&format!(" ORCPT={o}"));
        }
        p
    }

    /// The Original-Recipient field value of a report: `rfc822;addr` decoded.
    pub fn original_recipient(&self) -> Option<String> {
        let (kind, addr) = self.orcpt.as_deref()?.split_once(';')?;
        Some(format!("{kind};{}", decode_xtext(addr)))
    }
}

/// The message-level DSN parameters, from MAIL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageDsn {
    pub ret: Option<Ret>,
    /// xtext as given.
    pub envid: Option<String>,
}

impl MessageDsn {
    /// ` RET=... ENVID=...` for a MAIL command to a server that offers DSN.
    pub fn mail_params(&self) -> String {
        let mut p = String::new();
        if let Some(r) = self.ret {
            p.push_str(&format!(" RET={}", r.keyword()));
        }
        if let Some(e) = &self.envid {
            p.push_str(&format!(" ENVID={e}"));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values() {
        assert_eq!(Notify::parse("never"), Ok(Notify::NEVER));
        let n = Notify::parse("SUCCESS,delay").unwrap();
        assert!(n.success && n.delay && !n.failure);
        assert_eq!(n.to_string(), "SUCCESS,DELAY");
        assert_eq!(Notify::NEVER.to_string(), "NEVER");
        for bad in [
            "NEVER,SUCCESS",
            "",
            "SUCCESS,",
            "FAILURE,FAILURE",
            "SOMETIMES",
        ] {
            assert!(Notify::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xtext_checked_decoded_encoded() {
        assert!(check_xtext("abc+2Bdef+3D").is_ok());
        for bad in ["a=b", "a+2", "a+2b", "a+ZZ", "a b", "é"] {
            assert!(check_xtext(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_xtext("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(encode_xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(decode_xtext(&encode_xtext("x+y=z\u{e9}")), "x+y=z\u{e9}");
    }

    #[test]
    fn orcpt_and_envid() {
        assert!(parse_orcpt("rfc822;bob+2B1@example.org").is_ok());
        assert!(parse_orcpt("rfc822;").is_err());
        assert!(parse_orcpt("bob@example.org").is_err());
        assert!(parse_orcpt("rfc 822;bob@example.org").is_err());
        assert!(parse_orcpt("rfc822;bob=x@example.org").is_err());
        assert!(parse_orcpt(&format!("rfc822;{}", "a".repeat(500))).is_err());
        assert!(parse_envid("QQ314159").is_ok());
        assert!(parse_envid(&"x".repeat(101)).is_err());
        assert!(parse_envid("a=b").is_err());
        let r = RcptDsn {
            notify: Some(Notify::parse("FAILURE").unwrap()),
            orcpt: Some("rfc822;b+2Bx@e.org".into()),
        };
        assert_eq!(r.rcpt_params(), " NOTIFY=FAILURE ORCPT=rfc822;b+2Bx@e.org");
        assert_eq!(r.original_recipient().unwrap(), "rfc822;b+x@e.org");
        assert!(RcptDsn::default().wants_failure() && !RcptDsn::default().wants_success());
    }
}
