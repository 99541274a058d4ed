//! The DKIM-Signature field (RFC 6376 §3.5): which tags are required, what each may
//! hold, and the consistency rules a verifier checks before any DNS lookup (§6.1.1).
//! A signature that breaks one is reported `neutral` by the verifier.

use super::base64_value;
use super::canon::Canon;
use crate::domain::{check_name, NameRules};
use crate::mailauth::tags::{get, Tag};

/// The signing algorithms (`a=`) tinymta knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    /// RFC 8463: Ed25519 over the SHA-256 of the header data.
    Ed25519Sha256,
    /// Parsed so it can be reported: RFC 8301 §3.1 forbids accepting it.
    RsaSha1,
}

impl Algorithm {
    /// The `a=` value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
            Algorithm::RsaSha1 => "rsa-sha1",
        }
    }

    fn from_name(s: &str) -> Option<Algorithm> {
        [
            Algorithm::RsaSha256,
            Algorithm::Ed25519Sha256,
            Algorithm::RsaSha1,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }

    /// The hash name a key record's `h=` must allow.
    pub(super) fn hash(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "sha1",
            _ => "sha256",
        }
    }
}

/// A DKIM-Signature field that follows the rules of §3.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub algorithm: Algorithm,
    pub header_canon: Canon,
    pub body_canon: Canon,
    /// `d=`, lower case.
    pub domain: String,
    /// `s=`, lower case.
    pub selector: String,
    /// The domain of `i=` (default: `d=`), lower case.
    pub identity_domain: String,
    /// `h=`: the signed field names in order, lower case.
    pub headers: Vec<String>,
    pub body_hash: Vec<u8>,
    pub signature: Vec<u8>,
    /// `l=`: how many octets of the canonical body are signed (saturated at u64::MAX).
    pub length: Option<u64>,
    /// `t=`, Unix seconds.
    pub timestamp: Option<u64>,
    /// `x=`, Unix seconds.
    pub expires: Option<u64>,
}

/// Digits only, at most `max` of them (t= and x= have 12 in the ABNF, l= 76; a value
/// beyond u64 saturates: no body or clock reaches it).
fn decimal(v: &str, max: usize) -> Option<u64> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

/// A domain or selector as DNS takes it (the key is looked up under both).
fn dns_name(v: &str) -> Option<String> {
    check_name(v, NameRules::DNS)
        .ok()
        .map(|()| v.to_ascii_lowercase())
}

impl Signature {
    /// The tags' meaning, or the rule they break.
    pub fn from_tags(tags: &[Tag<'_>]) -> Result<Signature, &'static str> {
        let required = |name: &'static str, missing: &'static str| get(tags, name).ok_or(missing);
        if required("v", "missing v=")? != "1" {
            return Err("unsupported version (v= is not 1)");
        }
        let algorithm =
            Algorithm::from_name(required("a", "missing a=")?).ok_or("unsupported algorithm")?;
        let signature = base64_value(required("b", "missing b=")?).ok_or("b= is not base64")?;
        if signature.is_empty() {
            return Err("empty b=");
        }
        let body_hash = base64_value(required("bh", "missing bh=")?).ok_or("bh= is not base64")?;
        let domain = dns_name(required("d", "missing d=")?).ok_or("invalid d= domain")?;
        let selector = dns_name(required("s", "missing s=")?).ok_or("invalid s= selector")?;
        if selector.len() + "._domainkey.".len() + domain.len() > NameRules::DNS.max_len {
            return Err("s= and d= make too long a name");
        }
        let mut headers = Vec::new();
        for name in required("h", "missing h=")?.split(':') {
            let name = name.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
            // A field name is 1*ftext: printable US-ASCII but the colon.
            if name.is_empty() || !name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err("invalid field name in h=");
            }
            headers.push(name.to_ascii_lowercase());
        }
        if !headers.iter().any(|h| h == "from") {
            return Err("From is not signed (h=)");
        }
        let (header_canon, body_canon) = match get(tags, "c") {
            None => (Canon::Simple, Canon::Simple),
            Some(c) => {
                let (h, b) = c.split_once('/').unwrap_or((c, "simple"));
                match (Canon::from_name(h), Canon::from_name(b)) {
                    (Some(h), Some(b)) => (h, b),
                    _ => return Err("unknown canonicalisation (c=)"),
                }
            }
        };
        let identity_domain = match get(tags, "i") {
            None => domain.clone(),
            Some(i) => {
                let (_, id) = i.rsplit_once('@').ok_or("i= has no @")?;
                let id = id.to_ascii_lowercase();
                let under = id
                    .strip_suffix(domain.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
                if !under {
                    return Err("i= is not within d=");
                }
                id
            }
        };
        if let Some(q) = get(tags, "q") {
            if !q.split(':').any(|m| m.trim() == "dns/txt") {
                return Err("unsupported query method (q=)");
            }
        }
        let length = match get(tags, "l") {
            None => None,
            Some(l) => Some(decimal(l, 76).ok_or("invalid l=")?),
        };
        let timestamp = match get(tags, "t") {
            None => None,
            Some(t) => Some(decimal(t, 20).ok_or("invalid t=")?),
        };
        let expires = match get(tags, "x") {
            None => None,
            Some(x) => Some(decimal(x, 20).ok_or("invalid x=")?),
        };
        if let (Some(t), Some(x)) = (timestamp, expires) {
            if x < t {
                return Err("x= is before t=");
            }
        }
        Ok(Signature {
            algorithm,
            header_canon,
            body_canon,
            domain,
            selector,
            identity_domain,
            headers,
            body_hash,
            signature,
            length,
            timestamp,
            expires,
        })
    }

    /// Where the key is published (§3.6.2.1).
    pub fn key_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailauth::tags::parse_tags;

    const GOOD: &str = "v=1; a=rsa-sha256; d=Example.COM; s=Sel; h=From : to; bh=AAAA; b=AAAA";

    fn parse(s: &str) -> Result<Signature, &'static str> {
        Signature::from_tags(&parse_tags(s.as_bytes()).unwrap())
    }

    #[test]
    fn defaults_and_case() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.algorithm, Algorithm::RsaSha256);
        assert_eq!(
            (s.header_canon, s.body_canon),
            (Canon::Simple, Canon::Simple)
        );
        assert_eq!(
            (s.domain.as_str(), s.selector.as_str()),
            ("example.com", "sel")
        );
        assert_eq!(s.identity_domain, "example.com");
        assert_eq!(s.headers, ["from", "to"]);
        assert_eq!(s.key_name(), "sel._domainkey.example.com");
        assert_eq!((s.length, s.timestamp, s.expires), (None, None, None));
        let s = parse(&format!(
            "{GOOD}; c=relaxed; i=user@Mail.example.com; l=12; t=5; x=6; q=dns/txt"
        ))
        .unwrap();
        assert_eq!(
            (s.header_canon, s.body_canon),
            (Canon::Relaxed, Canon::Simple)
        );
        assert_eq!(s.identity_domain, "mail.example.com");
        assert_eq!(
            (s.length, s.timestamp, s.expires),
            (Some(12), Some(5), Some(6))
        );
        let s = parse(&format!("{GOOD}; c=simple/relaxed; l={}", "9".repeat(76))).unwrap();
        assert_eq!((s.body_canon, s.length), (Canon::Relaxed, Some(u64::MAX)));
    }

    #[test]
    fn the_rules_of_section_3_5() {
        let with = |extra: &str| parse(&format!("{GOOD}; {extra}"));
        let without = |tag: &str| {
            let kept: Vec<&str> = GOOD
                .split("; ")
                .filter(|t| !t.starts_with(&format!("{tag}=")))
                .collect();
            parse(&kept.join("; "))
        };
        for (tag, err) in [
            ("v", "missing v="),
            ("a", "missing a="),
            ("b", "missing b="),
            ("bh", "missing bh="),
            ("d", "missing d="),
            ("s", "missing s="),
            ("h", "missing h="),
        ] {
            assert_eq!(without(tag), Err(err));
        }
        assert_eq!(
            parse(&GOOD.replace("v=1", "v=2")),
            Err("unsupported version (v= is not 1)")
        );
        assert_eq!(
            parse(&GOOD.replace("rsa-sha256", "dsa-sha256")),
            Err("unsupported algorithm")
        );
        assert_eq!(
            parse(&GOOD.replace("rsa-sha256", "rsa-sha1"))
                .unwrap()
                .algorithm,
            Algorithm::RsaSha1
        );
        assert_eq!(
            parse(&GOOD.replace("h=From : to", "h=to")),
            Err("From is not signed (h=)")
        );
        assert_eq!(
            parse(&GOOD.replace("h=From : to", "h=from::to")),
            Err("invalid field name in h=")
        );
        assert_eq!(
            parse(&GOOD.replace("d=Example.COM", "d=exa mple")),
            Err("invalid d= domain")
        );
        assert_eq!(
            parse(&GOOD.replace("s=Sel", "s=a..b")),
            Err("invalid s= selector")
        );
        assert_eq!(parse(&GOOD.replace("b=AAAA", "b=")), Err("empty b="));
        assert_eq!(
            parse(&GOOD.replace("b=AAAA", "b=A!AA")),
            Err("b= is not base64")
        );
        assert_eq!(
            parse(&GOOD.replace("bh=AAAA", "bh=AAA")),
            Err("bh= is not base64")
        );
        assert_eq!(with("c=fancy"), Err("unknown canonicalisation (c=)"));
        assert_eq!(
            with("c=relaxed/fancy"),
            Err("unknown canonicalisation (c=)")
        );
        assert_eq!(with("i=user@example.org"), Err("i= is not within d="));
        assert_eq!(with("i=user@badexample.com"), Err("i= is not within d="));
        assert_eq!(with("i=nobody"), Err("i= has no @"));
        assert_eq!(with("q=http"), Err("unsupported query method (q=)"));
        assert_eq!(with("l=-1"), Err("invalid l="));
        assert_eq!(with("t=12a"), Err("invalid t="));
        assert_eq!(with("x="), Err("invalid x="));
        assert_eq!(with("t=10; x=9"), Err("x= is before t="));
        // b= and bh= may be folded anywhere.
        assert_eq!(
            parse(&GOOD.replace("b=AAAA", "b=AA\r\n\tAA"))
                .unwrap()
                .signature,
            [0, 0, 0]
        );
    }
}
