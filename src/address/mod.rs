//! Rewriting a recipient or a sender: the roles of Postfix's `trivial-rewrite` and
//! `cleanup` (virtual aliases, generic maps, the recipient table) and of `local(8)`'s
//! alias expansion, plus SRS for forwarded mail. Functions over loaded tables and
//! strings: nothing here knows about sessions, the queue, delivery or the configuration
//! (it uses only `smtp::address`, `domain` through it, and `headers`); the time is a
//! parameter, so callers pass `clock::unix_now()` and tests pass a fixed day. The only
//! I/O is reading the table files and the SRS secret.
//!
//! Files by role:
//! - `table`: the one table-file reader (comments, continuation lines, `FILE:LINE`
//!   errors), lookup keys, right-hand-side targets, the Postfix-keyed map;
//! - `address_list`: addresses in header values (display names, comments, groups);
//! - `aliases` (`--aliases`, `/etc/aliases` syntax), `virtual_map` (`--virtual`,
//!   `virtual(5)`), `recipients` (`--local-recipients`), `generic`
//!   (`--sender-rewrite`, `generic(5)`, envelope and header addresses);
//! - `expand`: one recipient into its final recipients, with loop and depth limits;
//! - `srs`: SRS0/SRS1 as libsrs2/postsrsd, and the secret in the state directory;
//! - `envelope`: `Rewriter` (the tables and SRS together), what one recipient becomes
//!   for the queue and what the sender becomes when that forwards it;
//! - here: `Tables`, all of them loaded together (again on SIGHUP), and `check`, every
//!   problem of the files for a `newaliases` command.
//!
//! Where each is used (the wiring, which lives above this module):
//! - RCPT (inbound) and the scheduler's first look at a message from `sendmail` or the
//!   queue itself: `Rewriter::recipient` — an SRS address at `--srs-domain` is
//!   `srs::decode`d, anything else goes through `Tables::check_recipient` and
//!   `Tables::expand`; a refusal is a `550` at RCPT and a bounce at pickup.
//! - Forwarding (an expanded recipient is remote and the sender is foreign):
//!   `Rewriter::sender`, `srs::encode` of the envelope sender.
//! - SMTP deliveries (outbound, not Maildir ones): `Tables::rewrite_sender` and
//!   `Tables::rewrite_headers`.

pub mod address_list;
pub mod aliases;
pub mod envelope;
pub mod expand;
pub mod generic;
pub mod recipients;
pub mod srs;
mod table;
pub mod virtual_map;

use std::fmt;
use std::path::PathBuf;

pub use aliases::Aliases;
pub use envelope::{Recipient, Recipients, Refusal, Rewriter, SharedRewriter, Srs};
pub use expand::ExpandError;
pub use generic::{GenericMap, RewrittenHeader};
pub use recipients::RecipientTable;
/// The Postfix-keyed address map, for tables outside this module keyed the same way
/// (`outbound::sender_relay`).
pub(crate) use table::AddrMap;
pub use table::Target;
pub use virtual_map::VirtualMap;

use crate::smtp::address::Mailbox;
use crate::text::Joined;
use expand::Maps;
use table::{at, fold_domain, fold_local};

/// The table files, each optional (from `--aliases`, `--virtual`, `--local-recipients`,
/// `--sender-rewrite`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePaths {
    pub aliases: Option<PathBuf>,
    pub virtual_map: Option<PathBuf>,
    pub local_recipients: Option<PathBuf>,
    pub sender_rewrite: Option<PathBuf>,
}

/// A table and the name of the file it came from (for `check` reports).
#[derive(Debug, Clone)]
struct Loaded<T> {
    origin: String,
    table: T,
}

/// The text of each table file with its name: what `Tables` is parsed from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Texts {
    pub aliases: Option<(String, String)>,
    pub virtual_map: Option<(String, String)>,
    pub local_recipients: Option<(String, String)>,
    pub sender_rewrite: Option<(String, String)>,
}

/// Why a local recipient is refused, in Postfix's words for the `550 5.1.1` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// A local domain's user in none of the recipient table, aliases and virtual table.
    LocalRecipientTable,
    /// An address in a domain of the virtual table (not a local domain) without an entry.
    VirtualAliasTable,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unknown::LocalRecipientTable => "User unknown in local recipient table",
            Unknown::VirtualAliasTable => "User unknown in virtual alias table",
        })
    }
}

/// Every address table, loaded together so a SIGHUP swaps them at once.
#[derive(Debug, Clone)]
pub struct Tables {
    aliases: Option<Loaded<Aliases>>,
    virtual_map: Option<Loaded<VirtualMap>>,
    recipients: Option<RecipientTable>,
    generic: Option<GenericMap>,
    /// Local domains, lower case.
    local_domains: Vec<String>,
}

impl Tables {
    /// Reads and parses the files of `paths`; `local_domains` are the domains
    /// delivered here (`Config::domains`). Every problem is in the error, one a line,
    /// each naming its file (and line).
    pub fn load(paths: &TablePaths, local_domains: &[String]) -> Result<Tables, String> {
        let (tables, errors) = Tables::build(paths, local_domains);
        if errors.is_empty() {
            Ok(tables)
        } else {
            Err(errors.joined("\n"))
        }
    }

    fn build(paths: &TablePaths, local_domains: &[String]) -> (Tables, Vec<String>) {
        let mut errors = Vec::new();
        let mut read = |p: &Option<PathBuf>| {
            let p = p.as_ref()?;
            table::read(p)
                .map(|text| (p.display().to_string(), text))
                .map_err(|e| errors.push(e))
                .ok()
        };
        let texts = Texts {
            aliases: read(&paths.aliases),
            virtual_map: read(&paths.virtual_map),
            local_recipients: read(&paths.local_recipients),
            sender_rewrite: read(&paths.sender_rewrite),
        };
        let tables = Tables::parse(&texts, local_domains, &mut errors);
        (tables, errors)
    }

    /// Parses table texts; problems are added to `errors`.
    pub(crate) fn parse(
        texts: &Texts,
        local_domains: &[String],
        errors: &mut Vec<String>,
    ) -> Tables {
        fn each<T>(
            src: &Option<(String, String)>,
            errors: &mut Vec<String>,
            parse: fn(&str, &str, &mut Vec<String>) -> T,
        ) -> Option<Loaded<T>> {
            let (origin, text) = src.as_ref()?;
            Some(Loaded {
                origin: origin.clone(),
                table: parse(text, origin, errors),
            })
        }
        Tables {
            aliases: each(&texts.aliases, errors, Aliases::parse),
            virtual_map: each(&texts.virtual_map, errors, VirtualMap::parse),
            recipients: each(&texts.local_recipients, errors, RecipientTable::parse)
                .map(|l| l.table),
            generic: each(&texts.sender_rewrite, errors, GenericMap::parse).map(|l| l.table),
            local_domains: local_domains.iter().map(|d| fold_domain(d)).collect(),
        }
    }

    /// No table at all: nothing is validated or rewritten.
    pub fn empty(local_domains: &[String]) -> Tables {
        Tables::parse(&Texts::default(), local_domains, &mut Vec::new())
    }

    pub(crate) fn is_local(&self, domain: &str) -> bool {
        self.local_domains.contains(&fold_domain(domain))
    }

    /// Whether aliases or a virtual table are loaded: mail may be forwarded (SRS).
    pub fn forwards(&self) -> bool {
        self.aliases.is_some() || self.virtual_map.is_some()
    }

    fn maps(&self) -> Maps<'_> {
        Maps {
            virtual_map: self.virtual_map.as_ref().map(|l| &l.table),
            aliases: self.aliases.as_ref().map(|l| &l.table),
            local_domains: &self.local_domains,
        }
    }

    /// Whether RCPT is checked against tables at all: a recipient table, aliases or a
    /// virtual table. Without any, every local part of a local domain is accepted (and
    /// a public MX then bounces mail for users that do not exist: backscatter).
    pub fn validates_recipients(&self) -> bool {
        self.recipients.is_some() || self.aliases.is_some() || self.virtual_map.is_some()
    }

    /// Whether `rcpt` may be accepted at RCPT. A local domain's user is known if the
    /// virtual table, the aliases or the recipient table has it (`postmaster` always:
    /// RFC 5321 §4.5.1); an address in a domain of the virtual table only if the table
    /// has an entry for it (Postfix `virtual_alias_domains`). Other domains are not this
    /// table's business (relay rules decide) and pass. Without tables, all pass.
    pub fn check_recipient(&self, rcpt: &Mailbox) -> Result<(), Unknown> {
        if !self.validates_recipients() {
            return Ok(());
        }
        let local = self.is_local(&rcpt.domain);
        let virtual_map = self.virtual_map.as_ref().map(|l| &l.table);
        if virtual_map.is_some_and(|v| v.lookup(rcpt, local).is_some()) {
            return Ok(());
        }
        if local {
            let known = fold_local(&rcpt.local) == "postmaster"
                || self
                    .aliases
                    .as_ref()
                    .is_some_and(|a| a.table.lookup(&rcpt.local).is_some())
                || self
                    .recipients
                    .as_ref()
                    .is_some_and(|r| r.contains(rcpt, true));
            return if known {
                Ok(())
            } else {
                Err(Unknown::LocalRecipientTable)
            };
        }
        if virtual_map.is_some_and(|v| v.is_virtual_domain(&rcpt.domain)) {
            return Err(Unknown::VirtualAliasTable);
        }
        Ok(())
    }

    /// Whether `domain` has entries in the virtual table: mail for it is accepted (for
    /// the addresses the table has) even when it is not a local domain.
    pub fn is_virtual_domain(&self, domain: &str) -> bool {
        self.virtual_map
            .as_ref()
            .is_some_and(|v| v.table.is_virtual_domain(domain))
    }

    /// The final recipients of `rcpt`: virtual table, then aliases, recursively (see
    /// `expand` for the rules and limits). Without tables: `rcpt` itself.
    pub fn expand(&self, rcpt: &Mailbox) -> Result<Vec<Mailbox>, ExpandError> {
        self.maps().expand(rcpt)
    }

    /// The envelope sender for an SMTP delivery (`local@domain`, or empty for the null
    /// sender, which stays empty): `None` when the generic map leaves it as it is.
    pub fn rewrite_sender(&self, sender: &str) -> Option<String> {
        let generic = self.generic.as_ref()?;
        let (local, domain) = sender.rsplit_once('@')?;
        let m = Mailbox {
            local: local.to_string(),
            domain: domain.to_string(),
        };
        generic
            .rewrite(&m, self.is_local(domain))
            .map(|m| m.to_string())
    }

    /// The `From:`, `Sender:` and `Reply-To:` addresses of a message for an SMTP
    /// delivery, rewritten by the generic map; `None` when nothing changes.
    pub fn rewrite_headers(&self, msg: &[u8]) -> Option<RewrittenHeader> {
        let generic = self.generic.as_ref()?;
        generic::rewrite_sender_fields(msg, |m| generic.rewrite(m, self.is_local(&m.domain)))
    }

    /// Loops and limits the tables run into, found by expanding every alias name and
    /// every virtual key, each cycle reported once at the entry it was found from.
    fn loop_reports(&self) -> Vec<String> {
        let placeholder = ["localhost".to_string()];
        let domains = if self.local_domains.is_empty() {
            &placeholder[..]
        } else {
            &self.local_domains[..]
        };
        let maps = Maps {
            local_domains: domains,
            ..self.maps()
        };
        let mut starts: Vec<(&str, usize, Mailbox)> = Vec::new();
        if let Some(a) = &self.aliases {
            for (name, line) in a.table.names() {
                starts.push((&a.origin, line, mailbox(name, &domains[0])));
            }
        }
        if let Some(v) = &self.virtual_map {
            for (k, line) in v.table.keys() {
                starts.push((&v.origin, line, mailbox(k, &domains[0])));
            }
        }
        starts.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut seen: Vec<Vec<String>> = Vec::new();
        let mut reports = Vec::new();
        for (origin, line, start) in starts {
            match maps.walk(&start) {
                Ok(walk) => {
                    for chain in walk.loops {
                        let mut members = chain.clone();
                        members.sort();
                        members.dedup();
                        if seen.contains(&members) {
                            continue;
                        }
                        seen.push(members);
                        let effect = if walk.recipients.is_empty() {
                            "mail to it bounces"
                        } else {
                            "the loop is cut there"
                        };
                        let msg = format!("alias loop: {} ({effect})", chain.joined(" -> "));
                        reports.push(at(origin, line, msg));
                    }
                }
                Err(e) => reports.push(at(origin, line, e)),
            }
        }
        reports
    }
}

/// A table key (`user@domain`, or a bare name at `domain`) as an address.
fn mailbox(key: &str, domain: &str) -> Mailbox {
    match key.rsplit_once('@') {
        Some((l, d)) => Mailbox {
            local: l.to_string(),
            domain: d.to_string(),
        },
        None => Mailbox {
            local: key.to_string(),
            domain: domain.to_string(),
        },
    }
}

/// Every problem of the table files, for `newaliases` and a configuration check: read
/// and syntax errors and refused targets (`FILE:LINE: ...`), then loops and limits the
/// entries run into. Empty when all is well.
pub fn check(paths: &TablePaths, local_domains: &[String]) -> Vec<String> {
    let (tables, mut problems) = Tables::build(paths, local_domains);
    problems.extend(tables.loop_reports());
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    fn src(origin: &str, text: &str) -> Option<(String, String)> {
        Some((origin.to_string(), text.to_string()))
    }

    fn domains() -> Vec<String> {
        vec!["Router.LAN".into(), "example.org".into()]
    }

    fn tables(texts: Texts) -> Tables {
        let mut errors = Vec::new();
        let t = Tables::parse(&texts, &domains(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        t
    }

    #[test]
    fn no_tables_accept_all_and_change_nothing() {
        let t = tables(Texts::default());
        assert!(!t.validates_recipients());
        assert_eq!(t.check_recipient(&mb("anyone@router.lan")), Ok(()));
        assert_eq!(
            t.expand(&mb("root@router.lan")).unwrap(),
            [mb("root@router.lan")]
        );
        assert_eq!(t.rewrite_sender("root@router.lan"), None);
        assert_eq!(t.rewrite_headers(b"From: root@router.lan\r\n\r\n"), None);
    }

    #[test]
    fn recipient_validation_uses_every_table() {
        let t = tables(Texts {
            aliases: src("aliases", "root: alice\n"),
            virtual_map: src(
                "virtual",
                "info@example.org alice@router.lan\n\
                 sales@virt.example bob@example.net\n",
            ),
            local_recipients: src("recipients", "alice\n"),
            ..Texts::default()
        });
        assert!(t.validates_recipients());
        for ok in [
            "root@router.lan",
            "ROOT+cron@example.org",
            "alice@router.lan",
            "alice+x@example.org",
            "info@example.org",
            "postmaster@router.lan",
            "Sales@virt.example",
            "anyone@remote.example",
        ] {
            assert_eq!(t.check_recipient(&mb(ok)), Ok(()), "{ok}");
        }
        assert_eq!(
            t.check_recipient(&mb("bob@router.lan")),
            Err(Unknown::LocalRecipientTable)
        );
        assert_eq!(
            t.check_recipient(&mb("info@virt.example")),
            Err(Unknown::VirtualAliasTable)
        );
        assert_eq!(
            Unknown::LocalRecipientTable.to_string(),
            "User unknown in local recipient table"
        );
        assert!(t.is_virtual_domain("virt.example") && !t.is_virtual_domain("router.lan"));
        // Aliases alone are enough to refuse unknown users.
        let t = tables(Texts {
            aliases: src("aliases", "root: alice\n"),
            ..Texts::default()
        });
        assert_eq!(t.check_recipient(&mb("root@router.lan")), Ok(()));
        assert_eq!(
            t.check_recipient(&mb("mallory@router.lan")),
            Err(Unknown::LocalRecipientTable)
        );
    }

    #[test]
    fn the_routers_own_mail() {
        let t = tables(Texts {
            aliases: src("aliases", "root: admin\nadmin: me@gmail.example\n"),
            sender_rewrite: src(
                "generic",
                "root@router.lan router-alerts@example.com\n@router.lan @example.com\n",
            ),
            ..Texts::default()
        });
        assert_eq!(
            t.expand(&mb("root@router.lan")).unwrap(),
            [mb("me@gmail.example")]
        );
        assert_eq!(
            t.rewrite_sender("root@router.lan").as_deref(),
            Some("router-alerts@example.com")
        );
        assert_eq!(
            t.rewrite_sender("nas@Router.LAN").as_deref(),
            Some("nas@example.com")
        );
        assert_eq!(t.rewrite_sender(""), None);
        assert_eq!(t.rewrite_sender("me@gmail.example"), None);
        let msg = b"From: root@router.lan (Cron Daemon)\r\nSubject: x\r\n\r\nbody";
        let r = t.rewrite_headers(msg).unwrap();
        assert_eq!(
            r.header,
            b"From: router-alerts@example.com (Cron Daemon)\r\nSubject: x\r\n"
        );
        assert_eq!(&msg[r.rest..], b"\r\nbody");
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn load_and_check_name_files_and_lines() {
        let dir = std::env::temp_dir().join(format!("tinymta-tables-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = TablePaths {
            aliases: Some(write(
                &dir,
                "aliases",
                "root: admin\nadmin: a@example.net\n",
            )),
            virtual_map: Some(write(&dir, "virtual", "info@example.org root@router.lan\n")),
            local_recipients: Some(write(&dir, "recipients", "alice\n")),
            sender_rewrite: Some(write(&dir, "generic", "@router.lan @example.com\n")),
        };
        let t = Tables::load(&good, &domains()).unwrap();
        assert_eq!(
            t.expand(&mb("info@example.org")).unwrap(),
            [mb("a@example.net")]
        );
        assert!(check(&good, &domains()).is_empty());

        let aliases = write(
            &dir,
            "aliases.bad",
            "root: |/usr/bin/procmail\n\
             a: b\n\
             b: a\n\
             c: d, ops@example.net\n\
             d: c\n",
        );
        let bad = TablePaths {
            aliases: Some(aliases.clone()),
            virtual_map: Some(dir.join("missing")),
            ..TablePaths::default()
        };
        let e = Tables::load(&bad, &domains()).unwrap_err();
        let a = aliases.display().to_string();
        assert!(
            e.contains(&format!(
                "\n{a}:1: '|/usr/bin/procmail': delivery to a command is refused"
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!("{}: ", dir.join("missing").display())),
            "{e}"
        );
        let problems = check(&bad, &domains());
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert_eq!(
            problems[2],
            format!("{a}:2: alias loop: a@router.lan -> b@router.lan -> a@router.lan (mail to it bounces)")
        );
        assert_eq!(
            problems[3],
            format!("{a}:4: alias loop: c@router.lan -> d@router.lan -> c@router.lan (the loop is cut there)")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
