//! What every address table file shares: the one reader of logical lines (comments,
//! continuation lines, `FILE:LINE` errors), the folding of addresses into lookup keys,
//! the list splitter, the right-hand side `Target`, and `AddrMap`, the table keyed the
//! way Postfix keys `virtual`, `generic` and `local_recipient_maps`.
//!
//! Postfix reads all its table sources with one routine (`readllines()`): empty and
//! white-space-only lines are ignored, as are lines whose first non-white-space
//! character is `#`; a line starting with white space continues the logical line before
//! it. A `#` later in a line is text, not a comment. This module does the same, so a
//! file carried over from Postfix reads the same here.

use std::fmt::Display;
use std::path::Path;

use crate::keyed::Keyed;
use crate::smtp::address::{check_domain, parse_mailbox, Mailbox};

/// One logical line: its text (continuation lines joined by one space) and the number
/// of its first physical line, which is what errors name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub line: usize,
    pub text: String,
}

/// `FILE:LINE: message`, the shape of every table error.
pub(crate) fn at(origin: &str, line: usize, msg: impl Display) -> String {
    format!("{origin}:{line}: {msg}")
}

/// Reads a table file as text; the error names the file.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Splits `text` into logical lines. A continuation line with no entry before it is an
/// error (Postfix warns and drops it; here the administrator hears about it).
pub(crate) fn logical_lines(text: &str, origin: &str, errors: &mut Vec<String>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            match entries.last_mut() {
                Some(e) => {
                    e.text.push(' ');
                    e.text.push_str(trimmed);
                }
                None => errors.push(at(
                    origin,
                    line,
                    "a line starting with white space continues an entry, but there is none before it",
                )),
            }
            continue;
        }
        entries.push(Entry {
            line,
            text: trimmed.to_string(),
        });
    }
    entries
}

/// A local part without its quotes and backslash escapes (`"john doe"` is `john doe`),
/// the form tables are keyed by.
fn unquote(local: &str) -> String {
    match local
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        }
        None => local.to_string(),
    }
}

/// The lookup form of a local part: unquoted and lower case. Postfix folds table keys
/// and lookup strings to lower case, so `Root`, `ROOT` and `root` are one name.
pub(crate) fn fold_local(local: &str) -> String {
    unquote(local).to_lowercase()
}

/// The lookup form of a domain: lower case.
pub(crate) fn fold_domain(domain: &str) -> String {
    domain.to_lowercase()
}

/// The lookup form of a whole address; also what expansion compares and deduplicates.
pub(crate) fn key(m: &Mailbox) -> String {
    format!("{}@{}", fold_local(&m.local), fold_domain(&m.domain))
}

/// The recipient delimiter. Fixed at `+`, as the Maildir router already delivers
/// `user+detail` to `user` (Postfix: `recipient_delimiter = +`).
const DELIMITER: char = '+';

/// `(base, extension)` of a local part in lookup form: `alice+news` is `("alice",
/// "+news")`. `None` without a delimiter or when nothing precedes it.
pub(crate) fn split_extension(local: &str) -> Option<(&str, &str)> {
    match local.find(DELIMITER) {
        Some(i) if i > 0 => Some((&local[..i], &local[i..])),
        _ => None,
    }
}

/// Splits a right-hand side into its items: separated by commas and/or white space
/// outside double quotes (Postfix's `CHARS_COMMA_SP`), empty items dropped.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' | ' ' | '\t' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.retain(|s| !s.is_empty());
    items
}

/// Checks a bare local part by the rules of RFC 5321 (dot-atom or quoted string, at
/// most 64 octets): the address parser is the one authority, given a placeholder domain.
fn check_local(local: &str) -> Result<(), String> {
    parse_mailbox(&format!("{local}@localhost"), true, false, false)
        .map(|_| ())
        .map_err(|e| format!("'{local}' is not a local part ({e})"))
}

/// Parses `local@domain`, with the reason in words.
fn parse_address(s: &str) -> Result<Mailbox, String> {
    match parse_mailbox(s, true, false, false) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err("empty address".into()),
        Err(e) => Err(format!("'{s}' is not an address ({e})")),
    }
}

/// One right-hand-side item of an alias, virtual or generic entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `user@domain`.
    Address(Mailbox),
    /// `@domain`: the original local part at another domain (Postfix `mail_addr_map`:
    /// "@otherdomain" keeps the user).
    Domain(String),
    /// A bare name, `alice`: that local part at the domain of the address it replaces.
    /// Postfix appends `$myorigin`; tinymta has no such setting and keeps mail of each
    /// local domain in that domain's Maildirs, so it keeps the domain instead.
    Local(String),
}

impl Target {
    /// Parses one item. Deliveries to commands, files and `:include:` lists are refused
    /// here, for every table, with the reason.
    pub(crate) fn parse(item: &str) -> Result<Target, String> {
        let bare = unquote(item);
        if bare.starts_with('|') {
            return Err(format!(
                "'{item}': delivery to a command is refused: an MTA on a router that runs \
                 commands named in an alias file is a root shell waiting to happen; \
                 forward to an address instead"
            ));
        }
        if bare.starts_with('/') {
            return Err(format!(
                "'{item}': delivery to a file is refused (a table must not make the MTA \
                 write where it likes); tinymta delivers to Maildirs, forward to an address"
            ));
        }
        if bare
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case(":include:"))
        {
            return Err(format!(
                "'{item}': :include: lists are refused (the addresses would live in a file \
                 nobody checks); write the addresses here"
            ));
        }
        if let Some(name) = item.strip_prefix('\\') {
            return Err(format!(
                "'{item}': write '{name}' without the backslash; a name that maps to \
                 itself is delivered to its own mailbox"
            ));
        }
        if let Some(domain) = item.strip_prefix('@') {
            check_domain(domain).map_err(|e| format!("'{item}': bad domain ({e})"))?;
            return Ok(Target::Domain(fold_domain(domain)));
        }
        if has_at(item) {
            return parse_address(item).map(Target::Address);
        }
        check_local(item)?;
        Ok(Target::Local(item.to_string()))
    }

    /// The address this item makes of `original`. `extension` (`+news`) is appended to a
    /// new local part when the entry matched without it: Postfix's
    /// `propagate_unmatched_extensions` (on for `virtual`, off for aliases and generic).
    pub(crate) fn resolve(&self, original: &Mailbox, extension: Option<&str>) -> Mailbox {
        let with_ext = |local: &str| match extension {
            // A quoted local part has no room after its closing quote.
            Some(ext) if !local.starts_with('"') => format!("{local}{ext}"),
            _ => local.to_string(),
        };
        match self {
            Target::Address(m) => Mailbox {
                local: with_ext(&m.local),
                domain: m.domain.clone(),
            },
            Target::Domain(d) => Mailbox {
                local: original.local.clone(),
                domain: d.clone(),
            },
            Target::Local(name) => Mailbox {
                local: with_ext(name),
                domain: original.domain.clone(),
            },
        }
    }
}

/// Whether `s` has an `@` outside double quotes.
fn has_at(s: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => return true,
            _ => {}
        }
    }
    false
}

/// A value and the line it came from (for `check` reports).
#[derive(Debug, Clone)]
pub(crate) struct Row<V> {
    pub value: V,
    pub line: usize,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) struct Hit<'a, V> {
    pub value: &'a V,
    /// The address extension the matching key did not contain (`+news` when
    /// `alice+news@d` matched `alice@d`, `alice` or `@d`).
    pub unmatched: Option<String>,
}

/// Rows by key, with the line each came from.
#[derive(Debug, Clone)]
pub(crate) struct Table<V> {
    rows: Keyed<Row<V>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            rows: Keyed::default(),
        }
    }
}

impl<V> Table<V> {
    /// Inserts a row, refusing a second entry for the same key. Postfix warns about
    /// duplicates and uses the first; an ambiguous mail route is better fixed than
    /// guessed.
    pub(crate) fn insert_unique(
        &mut self,
        key: String,
        row: Row<V>,
        origin: &str,
        errors: &mut Vec<String>,
    ) {
        match self.rows.get(&key) {
            Some(first) => errors.push(at(
                origin,
                row.line,
                format!(
                    "duplicate entry for '{key}' (first at line {}); keep one",
                    first.line
                ),
            )),
            None => self.rows.insert(key, row),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Row<V>> {
        self.rows.get(key)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.rows.keys()
    }

    /// Every key with its row (in hash order, as a map of rows has it).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Row<V>)> {
        self.rows.iter()
    }
}

/// A table keyed as Postfix keys `virtual(5)`, `generic(5)` and the local recipient
/// maps: `user@domain`, `user` (only for local domains) and `@domain` (the whole
/// domain), looked up in that order (Postfix `mail_addr_find`), each first with the
/// address extension and then without it.
#[derive(Debug, Clone)]
pub(crate) struct AddrMap<V> {
    exact: Table<V>,
    user: Table<V>,
    domain: Table<V>,
}

impl<V> AddrMap<V> {
    /// Parses `key  value` lines; `value` turns the rest of the line (maybe empty) into
    /// `V`, and its errors get the file and line in front.
    pub(crate) fn parse(
        text: &str,
        origin: &str,
        errors: &mut Vec<String>,
        value: impl Fn(&str) -> Result<V, String>,
    ) -> AddrMap<V> {
        let mut map = AddrMap {
            exact: Table::default(),
            user: Table::default(),
            domain: Table::default(),
        };
        for entry in logical_lines(text, origin, errors) {
            let (key, rest) = match entry.text.split_once([' ', '\t']) {
                Some((k, r)) => (k, r.trim()),
                None => (entry.text.as_str(), ""),
            };
            let parsed = parse_key(key).and_then(|k| value(rest).map(|v| (k, v)));
            let ((table, key), value) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    errors.push(at(origin, entry.line, e));
                    continue;
                }
            };
            let table = match table {
                KeyKind::Exact => &mut map.exact,
                KeyKind::User => &mut map.user,
                KeyKind::Domain => &mut map.domain,
            };
            let row = Row {
                value,
                line: entry.line,
            };
            table.insert_unique(key, row, origin, errors);
        }
        map
    }

    /// Looks up `m`; `local_domain` says whether its domain is one of ours (bare `user`
    /// keys apply only there, as Postfix applies them only to `$mydestination` and
    /// `$myorigin`).
    pub(crate) fn lookup(&self, m: &Mailbox, local_domain: bool) -> Option<Hit<'_, V>> {
        let local = fold_local(&m.local);
        let domain = fold_domain(&m.domain);
        let ext = split_extension(&local);
        fn hit<'v, V>(row: &'v Row<V>, unmatched: Option<&str>) -> Hit<'v, V> {
            Hit {
                value: &row.value,
                unmatched: unmatched.map(str::to_string),
            }
        }
        if let Some(r) = self.exact.get(&format!("{local}@{domain}")) {
            return Some(hit(r, None));
        }
        if let Some((base, e)) = ext {
            if let Some(r) = self.exact.get(&format!("{base}@{domain}")) {
                return Some(hit(r, Some(e)));
            }
        }
        if local_domain {
            if let Some(r) = self.user.get(&local) {
                return Some(hit(r, None));
            }
            if let Some((base, e)) = ext {
                if let Some(r) = self.user.get(base) {
                    return Some(hit(r, Some(e)));
                }
            }
        }
        self.domain
            .get(&domain)
            .map(|r| hit(r, ext.map(|(_, e)| e)))
    }

    /// Whether any `user@domain` or `@domain` key is at `domain`.
    pub(crate) fn has_domain(&self, domain: &str) -> bool {
        let domain = fold_domain(domain);
        self.domain.contains_key(&domain)
            || self
                .exact
                .keys()
                .any(|k| k.rsplit_once('@').is_some_and(|(_, d)| d == domain))
    }

    /// Every `user@domain` and bare `user` key with its row, for `check`.
    pub(crate) fn named_rows(&self) -> impl Iterator<Item = (&str, &Row<V>)> {
        self.exact.iter().chain(self.user.iter())
    }
}

enum KeyKind {
    Exact,
    User,
    Domain,
}

/// A left-hand side: `@domain`, `user@domain` or `user`, in lookup form.
fn parse_key(key: &str) -> Result<(KeyKind, String), String> {
    if let Some(domain) = key.strip_prefix('@') {
        check_domain(domain).map_err(|e| format!("'{key}': bad domain ({e})"))?;
        return Ok((KeyKind::Domain, fold_domain(domain)));
    }
    if has_at(key) {
        let m = parse_address(key)?;
        return Ok((KeyKind::Exact, self::key(&m)));
    }
    check_local(key)?;
    Ok((KeyKind::User, fold_local(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    #[test]
    fn logical_lines_comments_and_continuations() {
        let text = "# comment\n\nroot: alice,\n  bob\n   # indented comment\n\tcarol\nx: y # not a comment\n";
        let mut errors = Vec::new();
        let lines = logical_lines(text, "f", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            lines,
            [
                Entry {
                    line: 3,
                    text: "root: alice, bob carol".into()
                },
                Entry {
                    line: 7,
                    text: "x: y # not a comment".into()
                }
            ]
        );
        let mut errors = Vec::new();
        let lines = logical_lines("  orphan\r\nok: x\r\n", "/etc/aliases", &mut errors);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "ok: x");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/etc/aliases:1: "), "{errors:?}");
    }

    #[test]
    fn folding_and_extensions() {
        assert_eq!(fold_local("\"John\\\"Doe\""), "john\"doe");
        assert_eq!(key(&mb("Root@Router.LAN")), "root@router.lan");
        assert_eq!(split_extension("alice+news"), Some(("alice", "+news")));
        assert_eq!(split_extension("+x"), None);
        assert_eq!(split_extension("alice"), None);
    }

    #[test]
    fn lists_split_on_commas_and_space_outside_quotes() {
        assert_eq!(
            split_list("a@x, \"john doe\"@y,b  c,,"),
            ["a@x", "\"john doe\"@y", "b", "c"]
        );
        assert_eq!(split_list(""), Vec::<&str>::new());
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("bob@example.net"),
            Ok(Target::Address(mb("bob@example.net")))
        );
        assert_eq!(
            Target::parse("@Example.COM"),
            Ok(Target::Domain("example.com".into()))
        );
        assert_eq!(Target::parse("alice"), Ok(Target::Local("alice".into())));
        for refused in [
            "|/bin/sh",
            "\"|/usr/bin/x -y\"",
            "/var/mail/x",
            ":INCLUDE:/etc/l",
        ] {
            let e = Target::parse(refused).unwrap_err();
            assert!(e.contains("refused"), "{refused}: {e}");
        }
        assert!(Target::parse("\\root").unwrap_err().contains("'root'"));
        // Non-ASCII names: no slicing inside a character.
        assert_eq!(
            Target::parse("aaaaaaaaö"),
            Ok(Target::Local("aaaaaaaaö".into()))
        );
        assert!(Target::parse("ö").is_ok() && Target::parse("@bücher.example").is_ok());
        assert!(Target::parse("a..b").is_err());
        assert!(Target::parse("a@-bad").is_err());
        let orig = mb("alice+news@example.org");
        assert_eq!(
            Target::parse("@example.net")
                .unwrap()
                .resolve(&orig, Some("+news")),
            mb("alice+news@example.net")
        );
        assert_eq!(
            Target::parse("bob@y")
                .unwrap()
                .resolve(&orig, Some("+news")),
            mb("bob+news@y")
        );
        assert_eq!(
            Target::parse("bob").unwrap().resolve(&orig, None),
            mb("bob@example.org")
        );
    }

    #[test]
    fn addr_map_precedence_and_errors() {
        let text = "info@example.org  a\n@example.org  b\nroot  c\n";
        let mut errors = Vec::new();
        let map = AddrMap::parse(text, "t", &mut errors, |v| Ok(v.to_string()));
        assert!(errors.is_empty(), "{errors:?}");
        let find = |s: &str, local: bool| map.lookup(&mb(s), local).map(|h| h.value.clone());
        assert_eq!(find("INFO@example.org", false).as_deref(), Some("a"));
        assert_eq!(find("other@example.org", false).as_deref(), Some("b"));
        assert_eq!(find("root@router.lan", true).as_deref(), Some("c"));
        assert_eq!(find("root@remote.example", false), None);
        let hit = map.lookup(&mb("info+x@example.org"), false).unwrap();
        assert_eq!(
            (hit.value.as_str(), hit.unmatched.as_deref()),
            ("a", Some("+x"))
        );
        assert!(map.has_domain("EXAMPLE.org") && !map.has_domain("router.lan"));

        let mut errors = Vec::new();
        AddrMap::parse("a@x 1\nbad@ 2\nA@X 3\n@-x 4\n", "t", &mut errors, |v| {
            Ok(v.to_string())
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("t:2: "));
        assert!(errors[1].starts_with("t:3: duplicate entry for 'a@x' (first at line 1)"));
        assert!(errors[2].starts_with("t:4: "));
    }
}
