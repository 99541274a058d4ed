//! `--aliases FILE` in `/etc/aliases` syntax (Postfix `aliases(5)`, as `local(8)` reads
//! it): `name: target, target`, continuation lines starting with white space, `#`
//! comment lines. A name is a local part, without a domain, and applies to every local
//! domain; it is looked up case-insensitively, and a name with special characters is
//! written in double quotes (`"john doe": john`). A target is a local name (delivered
//! in the same domain) or a whole address (local or remote).
//!
//! Postfix's `local(8)` also delivers to `|command`, `/file/name` and `:include:` lists.
//! tinymta refuses all three with a `FILE:LINE` error: on a router the MTA runs as root,
//! and a line in a table that runs a command or writes a file is a root shell waiting
//! to happen.
//!
//! Like `local(8)`, a lookup of `user+ext` falls back to `user`, and the extension is not
//! carried to the targets (Postfix's default `propagate_unmatched_extensions` leaves
//! aliases out). `owner-name` aliases are plain names here (no list owner semantics).

use super::table::{
    at, fold_local, logical_lines, split_extension, split_list, Row, Table, Target,
};

/// A parsed aliases file: folded name to targets (each a `Target::Local` or
/// `Target::Address`).
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    names: Table<Vec<Target>>,
}

impl Aliases {
    /// Parses the file's text; `origin` (the path) names it in errors. Every bad line is
    /// reported; the good ones are kept.
    pub fn parse(text: &str, origin: &str, errors: &mut Vec<String>) -> Aliases {
        let mut names = Table::default();
        for entry in logical_lines(text, origin, errors) {
            match parse_entry(&entry.text) {
                Ok((name, targets)) => {
                    let row = Row {
                        value: targets,
                        line: entry.line,
                    };
                    names.insert_unique(name, row, origin, errors);
                }
                Err(e) => errors.push(at(origin, entry.line, e)),
            }
        }
        Aliases { names }
    }

    /// The targets of a local part (any spelling), `user+ext` falling back to `user`.
    pub fn lookup(&self, local: &str) -> Option<&[Target]> {
        let local = fold_local(local);
        let row = self
            .names
            .get(&local)
            .or_else(|| split_extension(&local).and_then(|(base, _)| self.names.get(base)))?;
        Some(&row.value)
    }

    /// Every name with the line it is on, for `check`.
    pub(crate) fn names(&self) -> impl Iterator<Item = (&str, usize)> {
        self.names.iter().map(|(k, r)| (k, r.line))
    }
}

/// `name: targets` into the folded name and its targets.
fn parse_entry(text: &str) -> Result<(String, Vec<Target>), String> {
    let colon =
        find_colon(text).ok_or("expected 'name: target, target' (no ':' after the name)")?;
    let name = text[..colon].trim();
    if name.is_empty() {
        return Err("empty name before ':'".into());
    }
    if name.contains([' ', '\t']) && !name.starts_with('"') {
        return Err(format!(
            "'{name}': a name with white space must be in double quotes"
        ));
    }
    if name.contains('@') && !name.starts_with('"') {
        return Err(format!(
            "'{name}': alias names have no domain (they apply to every local domain); \
             put whole addresses in the --virtual table"
        ));
    }
    let items = split_list(&text[colon + 1..]);
    if items.is_empty() {
        return Err(format!("'{name}' has no target after ':'"));
    }
    let mut targets = Vec::with_capacity(items.len());
    for item in items {
        match Target::parse(item)? {
            Target::Domain(_) => {
                return Err(format!(
                    "'{item}': an alias target is a name or an address, not a domain"
                ))
            }
            t => targets.push(t),
        }
    }
    Ok((fold_local(name), targets))
}

/// The colon ending the name: the first outside double quotes.
fn find_colon(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ':' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn parse(text: &str) -> (Aliases, Vec<String>) {
        let mut errors = Vec::new();
        let a = Aliases::parse(text, "/etc/aliases", &mut errors);
        (a, errors)
    }

    fn addr(s: &str) -> Target {
        Target::Address(parse_mailbox(s, true, false, false).unwrap().unwrap())
    }

    #[test]
    fn the_usual_file() {
        let (a, errors) = parse(
            "# Basic system aliases\n\
             MAILER-DAEMON: postmaster\n\
             postmaster: root\n\
             Root: admin@example.com,\n\
             \x20   alice\n\
             \"john doe\": john\n\
             lists: a@x.example b@y.example, c\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.lookup("mailer-daemon"),
            Some(&[Target::Local("postmaster".into())][..])
        );
        assert_eq!(
            a.lookup("ROOT"),
            Some(&[addr("admin@example.com"), Target::Local("alice".into())][..])
        );
        assert_eq!(
            a.lookup("\"John Doe\""),
            Some(&[Target::Local("john".into())][..])
        );
        assert_eq!(a.lookup("lists").map(<[_]>::len), Some(3));
        assert_eq!(a.lookup("root+cron").map(<[_]>::len), Some(2));
        assert_eq!(a.lookup("nobody"), None);
    }

    #[test]
    fn commands_files_and_includes_are_refused_with_file_and_line() {
        let (a, errors) = parse(
            "ok: alice\n\
             backup: |/usr/bin/backup\n\
             log: alice, /var/log/mail.txt\n\
             staff: :include:/etc/mail/staff\n\
             quoted: \"|/bin/sh -c x\"\n",
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        for (e, line) in errors.iter().zip(2..) {
            assert!(e.starts_with(&format!("/etc/aliases:{line}: ")), "{e}");
            assert!(e.contains("refused"), "{e}");
        }
        assert!(errors[0].contains("root shell"), "{}", errors[0]);
        // The good entry stays, the refused ones are not half-loaded.
        assert!(a.lookup("ok").is_some());
        assert!(a.lookup("log").is_none());
    }

    #[test]
    fn syntax_errors() {
        let (_, errors) = parse(
            "nocolon alice\n\
             : alice\n\
             empty:\n\
             root@example.com: alice\n\
             two words: x\n\
             dom: @example.com\n\
             root: a\n\
             ROOT: b\n",
        );
        let lines: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "/etc/aliases:1",
                "/etc/aliases:2",
                "/etc/aliases:3",
                "/etc/aliases:4",
                "/etc/aliases:5",
                "/etc/aliases:6",
                "/etc/aliases:8"
            ],
            "{errors:?}"
        );
        assert!(errors[3].contains("--virtual"));
        assert!(errors[6].contains("duplicate entry for 'root' (first at line 7)"));
    }
}
