//! RFC 5321 §4.1.2 address syntax: paths, mailboxes, domains and address literals,
//! with RFC 6531 (SMTPUTF8) UTF-8 local parts and domains when the client asked for it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::domain::{check_name, NameError, NameRules};

/// RFC 5321 §4.5.3.1: size limits on the parts of a path.
const MAX_LOCAL_PART: usize = 64;
const MAX_PATH: usize = 256;

/// A mailbox `local@domain`. `local` keeps the client's spelling (quoted if it was);
/// `domain` is empty only for the bare `<postmaster>` recipient RFC 5321 §4.5.1 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// True for `<postmaster>` without a domain.
    pub fn is_bare_postmaster(&self) -> bool {
        self.domain.is_empty()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// Why an address was refused; the session turns it into a 501 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    Syntax(&'static str),
    TooLong,
    /// Non-ASCII without SMTPUTF8 (RFC 6531 §3.4: 553 5.6.7).
    NeedsUtf8,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Syntax(why) => f.write_str(why),
            AddressError::TooLong => f.write_str("address too long"),
            AddressError::NeedsUtf8 => f.write_str("non-ASCII address without SMTPUTF8"),
        }
    }
}

/// Splits `<path> params...` (or a bare `path params...`, which Postfix also accepts)
/// into the text inside the angle brackets and the rest.
pub fn split_path(arg: &str) -> Result<(&str, &str), AddressError> {
    let arg = arg.trim_start();
    if let Some(inner) = arg.strip_prefix('<') {
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => return Ok((&inner[..i], &inner[i + 1..])),
                _ => {}
            }
        }
        Err(AddressError::Syntax("missing '>'"))
    } else {
        Ok(arg.split_once(' ').unwrap_or((arg, "")))
    }
}

/// Parses the inside of a path: empty (the null path `<>`, only if `allow_null`),
/// `postmaster` (only if `allow_postmaster`), or `[@route,...:]local@domain`.
pub fn parse_mailbox(
    path: &str,
    utf8: bool,
    allow_null: bool,
    allow_postmaster: bool,
) -> Result<Option<Mailbox>, AddressError> {
    if path.len() > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    if path.is_empty() {
        return if allow_null {
            Ok(None)
        } else {
            Err(AddressError::Syntax("empty address"))
        };
    }
    if !utf8 && !path.is_ascii() {
        return Err(AddressError::NeedsUtf8);
    }
    if allow_postmaster && path.eq_ignore_ascii_case("postmaster") {
        return Ok(Some(Mailbox {
            local: path.to_string(),
            domain: String::new(),
        }));
    }
    // RFC 5321 §4.1.2 / appendix C: a source route is accepted and ignored.
    let path = if path.starts_with('@') {
        match path.split_once(':') {
            Some((route, rest)) => {
                for hop in route.split(',') {
                    let hop = hop
                        .strip_prefix('@')
                        .ok_or(AddressError::Syntax("bad source route"))?;
                    check_domain(hop)?;
                }
                rest
            }
            None => return Err(AddressError::Syntax("bad source route")),
        }
    } else {
        path
    };
    let at = path
        .rfind('@')
        .ok_or(AddressError::Syntax("missing '@domain'"))?;
    let (local, domain) = (&path[..at], &path[at + 1..]);
    check_local_part(local)?;
    check_domain_or_literal(domain)?;
    Ok(Some(Mailbox {
        local: local.to_string(),
        domain: domain.to_string(),
    }))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn check_local_part(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::Syntax("empty local part"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::TooLong);
    }
    if let Some(inner) = local.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or(AddressError::Syntax("unterminated quoted local part"))?;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(' '..='~') => {}
                    _ => return Err(AddressError::Syntax("bad quoted pair")),
                },
                '"' => return Err(AddressError::Syntax("stray quote")),
                ' '..='~' => {}
                c if !c.is_ascii() => {}
                _ => return Err(AddressError::Syntax("control character in local part")),
            }
        }
        return Ok(());
    }
    for atom in local.split('.') {
        if atom.is_empty() || !atom.chars().all(is_atext) {
            return Err(AddressError::Syntax("bad local part"));
        }
    }
    Ok(())
}

fn check_domain_or_literal(domain: &str) -> Result<(), AddressError> {
    match domain.strip_prefix('[') {
        Some(lit) => {
            let lit = lit
                .strip_suffix(']')
                .ok_or(AddressError::Syntax("unterminated address literal"))?;
            let ok = match lit.get(..5) {
                Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                    lit[5..].parse::<Ipv6Addr>().is_ok()
                }
                _ => lit.parse::<Ipv4Addr>().is_ok(),
            };
            if ok {
                Ok(())
            } else {
                Err(AddressError::Syntax("bad address literal"))
            }
        }
        None => check_domain(domain),
    }
}

/// RFC 5321 Domain: dot-separated labels of letters, digits and inner hyphens
/// (UTF-8 labels allowed; they only reach here when SMTPUTF8 was given).
pub fn check_domain(domain: &str) -> Result<(), AddressError> {
    check_name(domain, NameRules::ADDRESS).map_err(|e| match e {
        NameError::Empty => AddressError::Syntax("empty domain"),
        NameError::TooLong => AddressError::TooLong,
        _ => AddressError::Syntax("bad domain"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Result<Option<Mailbox>, AddressError> {
        parse_mailbox(s, false, true, true)
    }

    #[test]
    fn plain_and_null_and_postmaster() {
        let m = mb("user.name+tag@Example.COM").unwrap().unwrap();
        assert_eq!(m.local, "user.name+tag");
        assert_eq!(m.domain, "Example.COM");
        assert_eq!(mb("").unwrap(), None);
        assert!(mb("Postmaster").unwrap().unwrap().is_bare_postmaster());
        assert!(parse_mailbox("", false, false, false).is_err());
    }

    #[test]
    fn quoted_and_literals_and_routes() {
        assert!(mb("\"john doe\"@example.com").unwrap().is_some());
        assert!(mb("a@[192.0.2.1]").unwrap().is_some());
        assert!(mb("a@[IPv6:2001:db8::1]").unwrap().is_some());
        assert!(mb("a@[300.1.1.1]").is_err());
        let m = mb("@relay.example,@b.example:u@c.example")
            .unwrap()
            .unwrap();
        assert_eq!(m.to_string(), "u@c.example");
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "a@", "@b", "a..b@c", ".a@c", "a@-b.c", "a@b..c", "a b@c", "a@b_c", "\"a@b", "a\u{0}@b",
        ] {
            assert!(mb(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(mb(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn utf8_only_with_smtputf8() {
        assert_eq!(mb("jörg@bücher.de"), Err(AddressError::NeedsUtf8));
        assert!(parse_mailbox("jörg@bücher.de", true, false, false).is_ok());
    }

    #[test]
    fn split_path_handles_quotes_and_bare_form() {
        assert_eq!(split_path("<a@b> SIZE=5").unwrap(), ("a@b", " SIZE=5"));
        assert_eq!(split_path("<\"x>y\"@b>").unwrap(), ("\"x>y\"@b", ""));
        assert_eq!(
            split_path("a@b BODY=8BITMIME").unwrap(),
            ("a@b", "BODY=8BITMIME")
        );
        assert!(split_path("<a@b").is_err());
    }
}
