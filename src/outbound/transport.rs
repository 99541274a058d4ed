//! The `--transport FILE` table: per-domain next hops, `domain  [host]:port` (an
//! optional `smtp:` prefix is accepted so Postfix transport maps can be reused).
//! `.example.com` entries match subdomains. Errors name the file and line.

use std::path::Path;

use super::route::NextHop;
use crate::domain::{is_ip, parse_port, split_host_port};
use crate::smtp::address::check_domain;

#[derive(Debug, Clone, Default)]
pub struct TransportTable {
    entries: Vec<(String, NextHop)>,
}

/// Parses a next hop: `[host]:port`, `[host]`, `host:port` or `host` (bracketed: no MX
/// lookup, as in Postfix).
pub fn parse_nexthop(s: &str, default_port: u16) -> Option<NextHop> {
    let s = s.strip_prefix("smtp:").unwrap_or(s);
    let hp = split_host_port(s)?;
    let port = match hp.port {
        Some(p) => parse_port(p)?,
        None => default_port,
    };
    let ok_host = is_ip(hp.host) || check_domain(hp.host).is_ok();
    (ok_host && port != 0).then(|| NextHop::Host {
        host: hp.host.to_ascii_lowercase(),
        port,
        bracketed: hp.bracketed,
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
                    "{origin}:{}: '{value}' is not a next hop like [host]:port",
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
                bracketed: true
            })
        );
        assert_eq!(
            t.lookup("a.b.example.net"),
            Some(&NextHop::Host {
                host: "mail.example.net".into(),
                port: 25,
                bracketed: true
            })
        );
        assert!(t.lookup("example.net").is_none());
        assert_eq!(
            t.lookup("other.org"),
            Some(&NextHop::Host {
                host: "relay.example.org".into(),
                port: 587,
                bracketed: false
            })
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = TransportTable::parse("a.com [x]:25\nb.com [bad_host]:25\n", "t").unwrap_err();
        assert_eq!(e, "t:2: '[bad_host]:25' is not a next hop like [host]:port");
        let e = TransportTable::parse("a.com\n", "t").unwrap_err();
        assert!(e.starts_with("t:1:"));
        assert!(parse_nexthop("[h]:0", 25).is_none());
    }
}
