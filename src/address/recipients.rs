//! `--local-recipients FILE`: the users of the local domains, one a line, as a local
//! part (`alice`, any local domain), a whole address (`alice@router.lan`) or a whole
//! domain (`@router.lan`). A second column (Postfix's `OK`, or any value of a Postfix
//! map file) is accepted and ignored, so a `local_recipient_maps` source carries over.
//!
//! The table only answers "is this user known?"; together with aliases and the virtual
//! table it decides RCPT (see `Tables::check_recipient`), so mail for an unknown user is
//! refused in the session instead of bounced later (backscatter).

use super::table::AddrMap;
use crate::smtp::address::Mailbox;

/// A parsed local recipient table.
#[derive(Debug, Clone)]
pub struct RecipientTable {
    map: AddrMap<()>,
}

impl RecipientTable {
    /// Parses the file's text; `origin` (the path) names it in errors.
    pub fn parse(text: &str, origin: &str, errors: &mut Vec<String>) -> RecipientTable {
        let map = AddrMap::parse(text, origin, errors, |rest| {
            if rest.split_whitespace().count() > 1 {
                Err("one recipient a line (an optional second column is ignored, a third is an error)".into())
            } else {
                Ok(())
            }
        });
        RecipientTable { map }
    }

    /// Whether `m` is listed; `local_domain` as for `AddrMap::lookup` (a bare local
    /// part matches in every local domain). `user+ext` matches `user`.
    pub fn contains(&self, m: &Mailbox, local_domain: bool) -> bool {
        self.map.lookup(m, local_domain).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    #[test]
    fn local_parts_addresses_and_domains() {
        let mut errors = Vec::new();
        let t = RecipientTable::parse(
            "# users\nalice\nbob@router.lan  OK\n@shared.lan\n",
            "recipients",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(t.contains(&mb("Alice@router.lan"), true));
        assert!(t.contains(&mb("alice+news@other.lan"), true));
        assert!(t.contains(&mb("bob@router.lan"), true));
        assert!(!t.contains(&mb("bob@other.lan"), true));
        assert!(t.contains(&mb("anyone@shared.lan"), true));
        assert!(!t.contains(&mb("carol@router.lan"), true));
    }

    #[test]
    fn errors_name_file_and_line() {
        let mut errors = Vec::new();
        RecipientTable::parse("alice\nbob carol dave\nx..y\n", "recipients", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("recipients:2: one recipient a line"));
        assert!(errors[1].starts_with("recipients:3: 'x..y' is not a local part"));
    }
}
