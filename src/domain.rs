//! Domain names and `host:port` as people write them in flags and tables and peers
//! send them: the one syntax check for a name (with the few differences between an
//! address's domain, a DNS name and a certificate name said once, in `NameRules`) and
//! the one splitter of `host:port`, `[host]:port` and bare IPv6 addresses.

use std::fmt;
use std::net::IpAddr;

/// What a name may contain beyond letters, digits and inner hyphens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// `_` in labels, as in `_mta-sts.example.com` or `_25._tcp.mx.example.com`.
    pub underscore: bool,
    /// Non-ASCII (UTF-8) labels: an address's domain under SMTPUTF8. Everywhere else
    /// internationalized names are written as A-labels (`xn--...`).
    pub utf8: bool,
    /// `*` as the whole first label (a certificate's wildcard name).
    pub wildcard: bool,
    /// A label may begin or end with `-` (names read from DNS data and tables are not
    /// held to the host-name rule).
    pub edge_hyphen: bool,
    /// Longest name in octets: 253 for DNS names in text form (RFC 1035), 255 for an
    /// address's domain (RFC 5321 §4.5.3.1.2).
    pub max_len: usize,
}

impl NameRules {
    /// The domain of a mail address (RFC 5321 §4.1.2 `Domain`).
    pub const ADDRESS: NameRules = NameRules {
        underscore: false,
        utf8: true,
        wildcard: false,
        edge_hyphen: false,
        max_len: 255,
    };
    /// A name to look up or to match: DNS queries, policy and transport tables.
    pub const DNS: NameRules = NameRules {
        underscore: true,
        utf8: false,
        wildcard: false,
        edge_hyphen: true,
        max_len: 253,
    };
    /// A subjectAltName or common name of a certificate we make.
    pub const CERTIFICATE: NameRules = NameRules {
        underscore: false,
        utf8: false,
        wildcard: true,
        edge_hyphen: false,
        max_len: 253,
    };
}

/// Why a name is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    EmptyLabel,
    LabelTooLong,
    Character,
    Hyphen,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty",
            NameError::TooLong => "too long",
            NameError::EmptyLabel => "empty label",
            NameError::LabelTooLong => "label longer than 63 characters",
            NameError::Character => {
                "only letters, digits, hyphens and dots are allowed (IDNs in A-label form)"
            }
            NameError::Hyphen => "a label cannot begin or end with a hyphen",
        })
    }
}

/// Checks a name without its trailing dot (callers that accept one strip it): labels
/// of 1 to 63 octets (RFC 1035 §2.3.4), at most `rules.max_len` in all.
pub fn check_name(name: &str, rules: NameRules) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > rules.max_len {
        return Err(NameError::TooLong);
    }
    let name = match name.strip_prefix("*.") {
        Some(rest) if rules.wildcard => rest,
        _ => name,
    };
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(NameError::LabelTooLong);
        }
        let allowed = |c: char| {
            c.is_ascii_alphanumeric()
                || c == '-'
                || (c == '_' && rules.underscore)
                || (!c.is_ascii() && rules.utf8)
        };
        if !label.chars().all(allowed) {
            return Err(NameError::Character);
        }
        if !rules.edge_hyphen && (label.starts_with('-') || label.ends_with('-')) {
            return Err(NameError::Hyphen);
        }
    }
    Ok(())
}

/// A `host:port` as written, split but not yet judged: callers check the host with
/// `check_name` or as an address, and the port with `parse_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort<'a> {
    pub host: &'a str,
    /// The text after the colon, if any.
    pub port: Option<&'a str>,
    /// Written in brackets: `[host]` or `[host]:port` (an IPv6 address, or in Postfix
    /// next hops "this host, no MX lookup").
    pub bracketed: bool,
}

impl HostPort<'_> {
    /// The port written (a number or a service name, `parse_port`), or `default` when
    /// none was; `None` for a port that is not one.
    pub fn port_or(&self, default: u16) -> Option<u16> {
        self.port.map_or(Some(default), parse_port)
    }
}

/// Splits `host`, `host:port`, `[host]`, `[host]:port` or a bare IPv6 address (more
/// than one colon and no brackets: no port). `None` for `[` without `]`, or anything
/// but `:port` after the `]`.
pub fn split_host_port(s: &str) -> Option<HostPort<'_>> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':')?),
        };
        return Some(HostPort {
            host,
            port,
            bracketed: true,
        });
    }
    if s.matches(':').count() > 1 {
        return Some(HostPort {
            host: s,
            port: None,
            bracketed: false,
        });
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    Some(HostPort {
        host,
        port,
        bracketed: false,
    })
}

/// A port number from 1 to 65535, or a mail service name as Postfix tables write
/// them (`smtp`, `submission`, `smtps`/`submissions`, `lmtp`).
pub fn parse_port(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(25),
        "lmtp" => Some(24),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        _ if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|n| *n != 0)
        }
        _ => None,
    }
}

/// Whether `s` is an IPv4 or IPv6 address.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// A host as table keys compare it: lower case, no trailing dot, no `ipv6:` prefix,
/// IP addresses in canonical form (`2001:DB8::01` and `2001:db8::1` are one key).
pub fn canonical_host(h: &str) -> String {
    let h = h.to_ascii_lowercase();
    let h = h.strip_prefix("ipv6:").unwrap_or(&h);
    let h = h.strip_suffix('.').unwrap_or(h);
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_each_rule() {
        assert!(check_name("mx.example.com", NameRules::ADDRESS).is_ok());
        assert!(check_name("bücher.example", NameRules::ADDRESS).is_ok());
        assert_eq!(
            check_name("bücher.example", NameRules::DNS),
            Err(NameError::Character)
        );
        assert!(check_name("_mta-sts.example.com", NameRules::DNS).is_ok());
        assert_eq!(
            check_name("_x.example", NameRules::ADDRESS),
            Err(NameError::Character)
        );
        assert_eq!(
            check_name("-x.example", NameRules::ADDRESS),
            Err(NameError::Hyphen)
        );
        assert!(check_name("*.example.com", NameRules::CERTIFICATE).is_ok());
        assert_eq!(
            check_name("*.example.com", NameRules::DNS),
            Err(NameError::Character)
        );
        assert_eq!(
            check_name("a..b", NameRules::DNS),
            Err(NameError::EmptyLabel)
        );
        assert_eq!(check_name("", NameRules::DNS), Err(NameError::Empty));
        assert_eq!(
            check_name(&"a".repeat(64), NameRules::DNS),
            Err(NameError::LabelTooLong)
        );
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(check_name(&long, NameRules::DNS), Err(NameError::TooLong));
    }

    #[test]
    fn host_port_forms() {
        let hp = |s| split_host_port(s).map(|h| (h.host, h.port, h.bracketed));
        assert_eq!(
            hp("mx.example:2525"),
            Some(("mx.example", Some("2525"), false))
        );
        assert_eq!(hp("mx.example"), Some(("mx.example", None, false)));
        assert_eq!(hp("[::1]:465"), Some(("::1", Some("465"), true)));
        assert_eq!(hp("[mx.example]"), Some(("mx.example", None, true)));
        assert_eq!(hp("::1"), Some(("::1", None, false)));
        assert_eq!(hp("[::1"), None);
        assert_eq!(hp("[::1]x"), None);
        assert_eq!(parse_port("smtp"), Some(25));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port(""), None);
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(canonical_host("MX.Example.COM."), "mx.example.com");
        assert_eq!(canonical_host("IPv6:2001:DB8::01"), "2001:db8::1");
        assert_eq!(canonical_host("192.0.2.1"), "192.0.2.1");
    }
}
