//! `--sender-relay FILE`: the next hop by envelope sender, in the syntax of Postfix's
//! `sender_dependent_relayhost_maps`, so the router's alerts can leave through one
//! provider account and a NAS's mail through another:
//!
//! ```text
//! alerts@example.org   [smtp.example.com]:587
//! @example.net         smtps:[mail.example.net]:465
//! ```
//!
//! Keys as Postfix looks senders up (`mail_addr_find`, the `address` tables' `AddrMap`):
//! the whole address, then a bare local part (senders in the local domains only), then
//! `@domain`. Values are next hops as for `--relayhost`. The table only holds the
//! entries; `Router` decides when it applies (after transport entries and local
//! delivery, before the relay host).

use std::path::Path;

use super::route::NextHop;
use super::transport::parse_nexthop;
use crate::address::AddrMap;
use crate::smtp::address::Mailbox;
use crate::text::Joined;

/// The parsed table.
#[derive(Debug, Clone)]
pub struct SenderRelayTable {
    map: AddrMap<NextHop>,
}

impl SenderRelayTable {
    /// Reads and parses the file; every problem is in the error, one a line, each as
    /// `FILE:LINE: message`.
    pub fn load(path: &Path) -> Result<SenderRelayTable, String> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
        let mut errors = Vec::new();
        let table = SenderRelayTable::parse(&text, &origin, &mut errors);
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors.joined("\n"))
        }
    }

    /// Parses the file's text; `origin` names it in errors, which are added to `errors`.
    pub fn parse(text: &str, origin: &str, errors: &mut Vec<String>) -> SenderRelayTable {
        let map = AddrMap::parse(text, origin, errors, |value| {
            let mut words = value.split_whitespace();
            match (words.next(), words.next()) {
                (Some(hop), None) => parse_nexthop(hop, 25).ok_or_else(|| {
                    format!("'{hop}' is not a next hop like [host]:port or smtps:[host]:port")
                }),
                (None, _) => Err("expected 'sender  [host]:port' (no next hop)".into()),
                (Some(_), Some(_)) => Err("one next hop per sender".into()),
            }
        });
        SenderRelayTable { map }
    }

    /// The next hop for mail from `sender` (`local@domain`); `local_domain` says
    /// whether the sender's domain is one of ours (bare local-part keys apply there
    /// only). The null sender and senders without an entry get `None`.
    pub fn lookup(&self, sender: &str, local_domain: bool) -> Option<&NextHop> {
        let (local, domain) = sender.rsplit_once('@')?;
        let m = Mailbox {
            local: local.to_string(),
            domain: domain.to_string(),
        };
        self.map.lookup(&m, local_domain).map(|hit| hit.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_line() {
        let mut errors = Vec::new();
        SenderRelayTable::parse(
            "a@example.org [smtp.example.com]:587\n\
             b@example.org\n\
             c@example.org [x]:587 [y]:587\n\
             d@example.org lmtp:[x]:24\n\
             a@example.org [other.example]:587\n",
            "relays",
            &mut errors,
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("relays:2: expected"), "{errors:?}");
        assert!(
            errors[1].starts_with("relays:3: one next hop"),
            "{errors:?}"
        );
        assert_eq!(
            errors[2],
            "relays:4: 'lmtp:[x]:24' is not a next hop like [host]:port or smtps:[host]:port"
        );
        assert!(errors[3].starts_with("relays:5: duplicate"), "{errors:?}");
    }

    #[test]
    fn address_then_domain() {
        let mut errors = Vec::new();
        let t = SenderRelayTable::parse(
            "alerts@example.org [smtp.example.com]:587\n@example.org smtps:[smtp.example.com]\n",
            "relays",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let port = |s: &str| match t.lookup(s, false) {
            Some(NextHop::Host {
                port, implicit_tls, ..
            }) => Some((*port, *implicit_tls)),
            _ => None,
        };
        assert_eq!(port("alerts@example.org"), Some((587, false)));
        assert_eq!(port("alerts+x@Example.ORG"), Some((587, false)));
        assert_eq!(port("cron@example.org"), Some((465, true)));
        assert_eq!(port("cron@example.net"), None);
        assert_eq!(port(""), None);
    }
}
