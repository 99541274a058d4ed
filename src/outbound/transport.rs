//! The `--transport FILE` table: per-domain next hops, `domain  [host]:port`, and the
//! one next-hop syntax of every flag and table (`--relayhost`, `--sender-relay`):
//! Postfix's `transport:nexthop` with the transports `smtp:` (STARTTLS, the default)
//! and `smtps:` (TLS from the first byte), so Postfix transport maps can be reused.
//! `.example.com` entries match subdomains. Errors name the file and line.

use std::path::Path;

use super::route::NextHop;
use crate::domain::{is_ip, split_host_port};
use crate::smtp::address::check_domain;

#[derive(Debug, Clone, Default)]
pub struct TransportTable {
    entries: Vec<(String, NextHop)>,
}

/// Port of an `smtps:` next hop written without one (RFC 8314 submissions).
const SMTPS_PORT: u16 = 465;

/// Parses a next hop: `[host]:port`, `[host]`, `host:port` or `host` (bracketed: no MX
/// lookup, as in Postfix), optionally after a transport: `smtp:` (the default) or
/// `smtps:` (implicit TLS, port 465 unless given). Transport names compare
/// case-insensitively; any other transport is refused (`None`).
pub fn parse_nexthop(s: &str, default_port: u16) -> Option<NextHop> {
    let (rest, implicit_tls, default_port) = match s.split_once(':') {
        Some((t, rest)) if t.eq_ignore_ascii_case("smtps") => (rest, true, SMTPS_PORT),
        Some((t, rest)) if t.eq_ignore_ascii_case("smtp") => (rest, false, default_port),
        _ => (s, false, default_port),
    };
    let hp = split_host_port(rest)?;
    let port = hp.port_or(default_port)?;
    let ok_host = is_ip(hp.host) || check_domain(hp.host).is_ok();
    (ok_host && port != 0).then(|| NextHop::Host {
        host: hp.host.to_ascii_lowercase(),
        port,
        bracketed: hp.bracketed,
        implicit_tls,
    })
}

impl TransportTable {
    pub fn load(path: &Path) -> Result<TransportTable, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        TransportTable::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<TransportTable, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "{origin}:{}: expected 'domain  [host]:port'",
                    n + 1
                ));
            };
            let key = key.to_ascii_lowercase();
            if check_domain(key.trim_start_matches('.')).is_err() {
                return Err(format!("{origin}:{}: '{key}' is not a domain", n + 1));
            }
            let hop = parse_nexthop(value, 25).ok_or_else(|| {
                format!(
                    "{origin}:{}: '{value}' is not a next hop like [host]:port or \
                     smtps:[host]:port",
                    n + 1
                )
            })?;
            entries.push((key, hop));
        }
        Ok(TransportTable { entries })
    }

    /// Exact domain first, then the closest `.parent` entry.
    pub fn lookup(&self, domain: &str) -> Option<&NextHop> {
        if let Some((_, hop)) = self.entries.iter().find(|(k, _)| k == domain) {
            return Some(hop);
        }
        let mut rest = domain;
        while let Some((_, parent)) = rest.split_once('.') {
            let key = format!(".{parent}");
            if let Some((_, hop)) = self.entries.iter().find(|(k, _)| *k == key) {
                return Some(hop);
            }
            rest = parent;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_lookup() {
        let t = TransportTable::parse(
            "# gateway\nexample.com  [10.0.0.5]:2525\n.example.net smtp:[mail.example.net]\nother.org relay.example.org:587\n",
            "transport",
        )
        .unwrap();
        assert_eq!(
            t.lookup("example.com"),
            Some(&NextHop::Host {
                host: "10.0.0.5".into(),
                port: 2525,
                bracketed: true,
                implicit_tls: false,
            })
        );
        assert_eq!(
            t.lookup("a.b.example.net"),
            Some(&NextHop::Host {
                host: "mail.example.net".into(),
                port: 25,
                bracketed: true,
                implicit_tls: false,
            })
        );
        assert!(t.lookup("example.net").is_none());
        assert_eq!(
            t.lookup("other.org"),
            Some(&NextHop::Host {
                host: "relay.example.org".into(),
                port: 587,
                bracketed: false,
                implicit_tls: false,
            })
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = TransportTable::parse("a.com [x]:25\nb.com [bad_host]:25\n", "t").unwrap_err();
        assert_eq!(
            e,
            "t:2: '[bad_host]:25' is not a next hop like [host]:port or smtps:[host]:port"
        );
        let e = TransportTable::parse("a.com\n", "t").unwrap_err();
        assert!(e.starts_with("t:1:"));
        assert!(parse_nexthop("[h]:0", 25).is_none());
    }

    #[test]
    fn smtp_and_smtps_transports() {
        let hop = |s: &str| match parse_nexthop(s, 25) {
            Some(NextHop::Host {
                host,
                port,
                bracketed,
                implicit_tls,
            }) => Some((host, port, bracketed, implicit_tls)),
            _ => None,
        };
        let h = |port, implicit| Some(("smtp.example.com".to_string(), port, true, implicit));
        assert_eq!(hop("smtp:[smtp.example.com]:587"), h(587, false));
        assert_eq!(hop("[smtp.example.com]:submission"), h(587, false));
        assert_eq!(hop("smtps:[smtp.example.com]:465"), h(465, true));
        assert_eq!(hop("SMTPS:[smtp.example.com]"), h(465, true));
        assert_eq!(hop("smtps:[smtp.example.com]:2465"), h(2465, true));
        assert_eq!(hop("smtp:[smtp.example.com]"), h(25, false));
        assert_eq!(
            hop("smtps:relay.example.com"),
            Some(("relay.example.com".into(), 465, false, true))
        );
        assert_eq!(
            hop("smtps:[::1]:465"),
            Some(("::1".into(), 465, true, true))
        );
        for bad in ["lmtp:[h]:24", "smtps:", "smtps:[h]:0", "relay:[h]"] {
            assert_eq!(hop(bad), None, "{bad}");
        }
    }
}
