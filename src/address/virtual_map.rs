//! `--virtual FILE` in Postfix `virtual(5)` syntax (`virtual_alias_maps`): whole
//! addresses redirected to one or more addresses, for any domain.
//!
//! ```text
//! info@example.org   alice@example.org, bob@example.net
//! @example.org       catchall@example.org
//! postmaster         root@router.lan
//! @old.example       @new.example
//! ```
//!
//! Keys, as Postfix looks them up: `user@domain` first, then a bare `user` (only for
//! local domains), then the `@domain` catch-all, each first with the address extension
//! (`user+ext`) and then without. So an exact address always wins over a catch-all.
//! Targets are addresses, bare names (kept in the domain of the address they replace)
//! or `@domain` (the same local part at another domain). An extension the key did not
//! match is carried to the targets (Postfix's default `propagate_unmatched_extensions`
//! includes `virtual`). Postfix's `virtual_alias_domains` defaults to the domains of
//! this table; `is_virtual_domain` answers that question here.

use super::table::{split_list, AddrMap, Hit, Target};
use crate::smtp::address::Mailbox;

/// A parsed virtual alias table.
#[derive(Debug, Clone)]
pub struct VirtualMap {
    map: AddrMap<Vec<Target>>,
}

impl VirtualMap {
    /// Parses the file's text; `origin` (the path) names it in errors.
    pub fn parse(text: &str, origin: &str, errors: &mut Vec<String>) -> VirtualMap {
        let map = AddrMap::parse(text, origin, errors, |rest| {
            let items = split_list(rest);
            if items.is_empty() {
                return Err("expected 'address  target, target' (no target)".into());
            }
            items.into_iter().map(Target::parse).collect()
        });
        VirtualMap { map }
    }

    /// The addresses `m` is redirected to, or `None` if no entry matches.
    pub fn lookup(&self, m: &Mailbox, local_domain: bool) -> Option<Vec<Mailbox>> {
        let Hit { value, unmatched } = self.map.lookup(m, local_domain)?;
        Some(
            value
                .iter()
                .map(|t| t.resolve(m, unmatched.as_deref()))
                .collect(),
        )
    }

    /// Whether the table has an entry at `domain` (`user@domain` or `@domain`): Postfix's
    /// default `virtual_alias_domains`, where an address without an entry is unknown.
    pub fn is_virtual_domain(&self, domain: &str) -> bool {
        self.map.has_domain(domain)
    }

    /// Every address and bare-name key with its line, for `check`.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&str, usize)> {
        self.map.named_rows().map(|(k, r)| (k, r.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    fn parse(text: &str) -> (VirtualMap, Vec<String>) {
        let mut errors = Vec::new();
        let v = VirtualMap::parse(text, "/etc/tinymta/virtual", &mut errors);
        (v, errors)
    }

    fn show(v: Option<Vec<Mailbox>>) -> Option<Vec<String>> {
        v.map(|l| l.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn exact_wins_over_catch_all() {
        let (v, errors) = parse(
            "info@example.org  alice@example.org, bob@example.net\n\
             @example.org      catchall@example.org\n\
             postmaster        root@router.lan\n\
             @old.example      @new.example\n\
             sales@example.org carol\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            show(v.lookup(&mb("Info@Example.ORG"), false)).unwrap(),
            ["alice@example.org", "bob@example.net"]
        );
        assert_eq!(
            show(v.lookup(&mb("x@example.org"), false)).unwrap(),
            ["catchall@example.org"]
        );
        assert_eq!(
            show(v.lookup(&mb("sales@example.org"), false)).unwrap(),
            ["carol@example.org"]
        );
        assert_eq!(
            show(v.lookup(&mb("Bob@old.example"), false)).unwrap(),
            ["Bob@new.example"]
        );
        // A bare name applies to local domains only.
        assert_eq!(
            show(v.lookup(&mb("postmaster@router.lan"), true)).unwrap(),
            ["root@router.lan"]
        );
        assert_eq!(v.lookup(&mb("postmaster@remote.example"), false), None);
        assert_eq!(v.lookup(&mb("x@example.net"), false), None);
        assert!(v.is_virtual_domain("example.org") && !v.is_virtual_domain("example.net"));
    }

    #[test]
    fn unmatched_extensions_are_propagated() {
        let (v, _) = parse("info@example.org  alice@example.org\n@example.net bob@x\n");
        assert_eq!(
            show(v.lookup(&mb("info+sales@example.org"), false)).unwrap(),
            ["alice+sales@example.org"]
        );
        assert_eq!(
            show(v.lookup(&mb("any+tag@example.net"), false)).unwrap(),
            ["bob+tag@x"]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let (v, errors) = parse(
            "info@example.org\n\
             ok@example.org  a@b.example\n\
             x@example.org   |/bin/cat\n\
             @bad_domain     a@b.example\n",
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("/etc/tinymta/virtual:1: expected"));
        assert!(errors[1]
            .starts_with("/etc/tinymta/virtual:3: '|/bin/cat': delivery to a command is refused"));
        assert!(errors[2].starts_with("/etc/tinymta/virtual:4: "));
        assert!(v.lookup(&mb("ok@example.org"), false).is_some());
    }
}
