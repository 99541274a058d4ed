//! `--sender-rewrite FILE` in Postfix `generic(5)` syntax (`smtp_generic_maps`): the
//! addresses a router uses inside the LAN replaced by ones valid on the Internet, on
//! mail leaving over SMTP, so a smarthost that accepts only its own domain takes it.
//!
//! ```text
//! root@router.lan    router-alerts@example.com
//! @router.lan        @example.com
//! ```
//!
//! Keys as in `virtual(5)` (`user@domain`, then `user` for local domains, then
//! `@domain`); one target per key: an address, or `@domain`, which keeps the local part
//! (`nas@router.lan` becomes `nas@example.com`). Postfix applies the map to the envelope
//! and to every address header of mail leaving through `smtp(8)`; tinymta rewrites the
//! envelope sender and the sender fields `From:`, `Sender:` and `Reply-To:`, keeping
//! display names, comments and folding as they were. Local deliveries keep the original
//! addresses (the caller applies this only to SMTP deliveries). Extensions are not
//! propagated (Postfix's default `propagate_unmatched_extensions` leaves generic out).

use super::address_list;
use super::table::{split_list, AddrMap, Target};
use crate::headers::Header;
use crate::smtp::address::Mailbox;

/// The header fields whose addresses are rewritten.
pub const SENDER_FIELDS: [&str; 3] = ["From", "Sender", "Reply-To"];

/// A parsed generic map.
#[derive(Debug, Clone)]
pub struct GenericMap {
    map: AddrMap<Target>,
}

impl GenericMap {
    /// Parses the file's text; `origin` (the path) names it in errors.
    pub fn parse(text: &str, origin: &str, errors: &mut Vec<String>) -> GenericMap {
        let map = AddrMap::parse(text, origin, errors, |rest| match split_list(rest)[..] {
            [one] => Target::parse(one),
            [] => Err("expected 'address  new-address' (no new address)".into()),
            _ => Err("one new address per entry (a sender has one address)".into()),
        });
        GenericMap { map }
    }

    /// The new address for `m`, or `None` when no entry matches or it changes nothing.
    pub fn rewrite(&self, m: &Mailbox, local_domain: bool) -> Option<Mailbox> {
        let hit = self.map.lookup(m, local_domain)?;
        let new = hit.value.resolve(m, None);
        (new != *m).then_some(new)
    }
}

/// A header section with rewritten fields: `header` replaces `msg[..rest]`, the rest of
/// the message is sent as it is (no copy of the body on a router with little memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenHeader {
    pub header: Vec<u8>,
    pub rest: usize,
}

/// Rewrites the addresses of the `SENDER_FIELDS` of `msg` (canonical CRLF text) with
/// `rewrite`; `None` when nothing changed. Fields that are not UTF-8 are left alone.
pub fn rewrite_sender_fields(
    msg: &[u8],
    rewrite: impl Fn(&Mailbox) -> Option<Mailbox>,
) -> Option<RewrittenHeader> {
    let header = Header::parse(msg);
    let mut out = Vec::with_capacity(header.end + 64);
    let mut changed = false;
    for field in &header.fields {
        let new = SENDER_FIELDS
            .iter()
            .any(|n| field.is(n))
            .then(|| std::str::from_utf8(&field.raw[field.name.len() + 1..]).ok())
            .flatten()
            .and_then(|value| address_list::rewrite(value, &rewrite));
        match new {
            Some(value) => {
                out.extend_from_slice(field.name);
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
                changed = true;
            }
            None => out.extend_from_slice(field.raw),
        }
    }
    changed.then_some(RewrittenHeader {
        header: out,
        rest: header.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    fn map(text: &str) -> GenericMap {
        let mut errors = Vec::new();
        let g = GenericMap::parse(text, "generic", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        g
    }

    const ROUTER: &str = "root@router.lan  router-alerts@example.com\n@router.lan  @example.com\n";

    #[test]
    fn envelope_addresses() {
        let g = map(ROUTER);
        assert_eq!(
            g.rewrite(&mb("Root@router.lan"), true),
            Some(mb("router-alerts@example.com"))
        );
        assert_eq!(
            g.rewrite(&mb("nas@router.lan"), true),
            Some(mb("nas@example.com"))
        );
        // No extension propagation, but @domain keeps the whole local part.
        assert_eq!(
            g.rewrite(&mb("root+cron@router.lan"), true),
            Some(mb("router-alerts@example.com"))
        );
        assert_eq!(
            g.rewrite(&mb("a+b@router.lan"), true),
            Some(mb("a+b@example.com"))
        );
        assert_eq!(g.rewrite(&mb("alice@example.com"), false), None);
        let same = map("a@x.example a@x.example\n");
        assert_eq!(same.rewrite(&mb("a@x.example"), false), None);
    }

    #[test]
    fn one_target_per_entry() {
        let mut errors = Vec::new();
        GenericMap::parse("a@x b@y, c@z\nd@x\ne@x /dev/null\n", "generic", &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("generic:1: one new address"));
        assert!(errors[1].starts_with("generic:2: expected"));
        assert!(errors[2].starts_with("generic:3: '/dev/null': delivery to a file is refused"));
    }

    fn rw(value: &str) -> Option<String> {
        let g = map(ROUTER);
        address_list::rewrite(value, |m| g.rewrite(m, m.domain == "router.lan"))
    }

    #[test]
    fn header_values_keep_names_comments_and_folding() {
        assert_eq!(
            rw(" root@router.lan\r\n").as_deref(),
            Some(" router-alerts@example.com\r\n")
        );
        assert_eq!(
            rw(" \"Router, the\" <root@router.lan> (cron)\r\n").as_deref(),
            Some(" \"Router, the\" <router-alerts@example.com> (cron)\r\n")
        );
        assert_eq!(
            rw(" nas@router.lan (NAS <disk>), Bob <bob@example.net>,\r\n\tCarol\r\n <carol@router.lan>\r\n")
                .as_deref(),
            Some(" nas@example.com (NAS <disk>), Bob <bob@example.net>,\r\n\tCarol\r\n <carol@example.com>\r\n")
        );
        assert_eq!(
            rw(" Admins: root@router.lan, x@router.lan;, y@example.net\r\n").as_deref(),
            Some(" Admins: router-alerts@example.com, x@example.com;, y@example.net\r\n")
        );
        assert_eq!(
            rw(" <@relay.example:root@router.lan>").as_deref(),
            Some(" <router-alerts@example.com>")
        );
        assert_eq!(
            rw(" \"root@router.lan\" <bob@example.net>"),
            None,
            "a display name is not an address"
        );
        assert_eq!(rw(" undisclosed-recipients:;"), None);
        assert_eq!(rw(" not an address"), None);
        assert_eq!(
            rw(" Jörg <jörg@router.lan>").as_deref(),
            Some(" Jörg <jörg@example.com>")
        );
    }

    #[test]
    fn sender_fields_of_a_message() {
        let g = map(ROUTER);
        let msg = b"Received: from x by root@router.lan\r\n\
                    From: Cron Daemon <root@router.lan>\r\n\
                    To: root@router.lan\r\n\
                    reply-to: nas@router.lan\r\n\
                    Subject: root@router.lan\r\n\
                    \r\n\
                    From: root@router.lan in the body\r\n";
        let r = rewrite_sender_fields(msg, |m| g.rewrite(m, true)).unwrap();
        let mut full = r.header.clone();
        full.extend_from_slice(&msg[r.rest..]);
        assert_eq!(
            String::from_utf8(full).unwrap(),
            "Received: from x by root@router.lan\r\n\
             From: Cron Daemon <router-alerts@example.com>\r\n\
             To: root@router.lan\r\n\
             reply-to: nas@example.com\r\n\
             Subject: root@router.lan\r\n\
             \r\n\
             From: root@router.lan in the body\r\n"
        );
        assert_eq!(
            rewrite_sender_fields(b"From: a@example.net\r\n\r\nx", |m| g.rewrite(m, false)),
            None
        );
    }
}
