//! Expansion of one recipient into the addresses mail is delivered to: the virtual
//! table first, then (for local domains) the aliases, recursively.
//!
//! What Postfix does: `cleanup(8)` expands `virtual_alias_maps` for every recipient,
//! replacing an address by the addresses of its entry and repeating. An address whose
//! entry contains the address itself stops there ("allow an address to expand into
//! itself once"), so `info@x  info@x, bob@y` delivers to `info@x` and to `bob@y`. There
//! is no other loop detection: `a -> b -> a` runs until `virtual_alias_recursion_limit`
//! (1000) nesting levels, and more than `virtual_alias_expansion_limit` (1000)
//! addresses also stops it; either refuses the message with a temporary error ("4.6.0
//! Alias expansion error": the client retries while the table is fixed). Then
//! `local(8)` expands `alias_maps` for local recipients, with a duplicate filter.
//!
//! What tinymta does, in one pass: every address goes through the virtual table, and
//! an address of a local domain that the virtual table does not redirect goes through
//! the aliases. Every address it yields goes through both again. An entry that names
//! the address itself keeps it: after the virtual table it still meets the aliases, and
//! after the aliases it is delivered (`root: root, admin` delivers to root's Maildir
//! and to admin). An address already expanded elsewhere in the tree is not expanded
//! again (its recipients are already in, and a table of diamonds stays linear); a
//! branch that comes back to an address on its own path is a loop, found at once and
//! cut there, as `local(8)`'s duplicate filter would. If loops leave nothing to deliver
//! to, expansion fails with `ExpandError::Loop`; past 1000 levels or 1000 recipients
//! with `TooDeep` or `TooMany`. These errors are for a bounce, not a deferral: mail
//! for a looping table is not retried for days (issue 11: "alias loops stop with a
//! bounce"). The walk uses its own stack, not recursion: thread stacks on musl are
//! small.

use std::collections::HashSet;
use std::fmt;

use super::aliases::Aliases;
use super::table::{fold_domain, key};
use super::virtual_map::VirtualMap;
use crate::smtp::address::Mailbox;
use crate::text::Joined;

/// Postfix `virtual_alias_recursion_limit`.
pub const RECURSION_LIMIT: usize = 1000;
/// Postfix `virtual_alias_expansion_limit`.
pub const EXPANSION_LIMIT: usize = 1000;

/// Why a recipient cannot be expanded; each carries the address chain, for the log and
/// the bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// Every branch came back to an address on its own path: `a -> b -> a`.
    Loop(String),
    /// More than `RECURSION_LIMIT` nested entries.
    TooDeep(String),
    /// More than `EXPANSION_LIMIT` final recipients.
    TooMany(String),
}

impl ExpandError {
    /// The RFC 3463 status of the bounce: X.4.6 "routing loop detected", X.5.3 "too many
    /// recipients".
    pub fn status(&self) -> &'static str {
        match self {
            ExpandError::Loop(_) | ExpandError::TooDeep(_) => "5.4.6",
            ExpandError::TooMany(_) => "5.5.3",
        }
    }
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Loop(chain) => write!(f, "alias loop: {chain}"),
            ExpandError::TooDeep(chain) => write!(
                f,
                "alias expansion nested more than {RECURSION_LIMIT} levels: {chain}"
            ),
            ExpandError::TooMany(rcpt) => write!(
                f,
                "alias expansion of {rcpt} gives more than {EXPANSION_LIMIT} recipients"
            ),
        }
    }
}

/// The tables expansion reads.
#[derive(Clone, Copy)]
pub(crate) struct Maps<'a> {
    pub virtual_map: Option<&'a VirtualMap>,
    pub aliases: Option<&'a Aliases>,
    /// Local domains, lower case.
    pub local_domains: &'a [String],
}

/// Which table an address is being expanded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stage {
    Virtual,
    Alias,
}

struct Frame {
    key: String,
    /// The stage the address was entered with ("been here" is per stage).
    entered: Stage,
    /// The stage that found the targets.
    stage: Stage,
    targets: Vec<Mailbox>,
    next: usize,
}

/// The result of a walk: the recipients, and every loop cut on the way (for `check`).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub recipients: Vec<Mailbox>,
    pub loops: Vec<Vec<String>>,
}

/// A chain of addresses for a message: all of a short one, the ends of a long one.
fn chain_text(keys: &[String]) -> String {
    if keys.len() <= 8 {
        keys.joined(" -> ")
    } else {
        format!(
            "{} -> ... -> {}",
            keys[..4].joined(" -> "),
            keys[keys.len() - 3..].joined(" -> ")
        )
    }
}

impl Maps<'_> {
    fn is_local(&self, domain: &str) -> bool {
        self.local_domains.contains(&fold_domain(domain))
    }

    /// The targets of `m` at `stage`: the virtual table, falling through to the
    /// aliases for a local domain. `None`: `m` is a final recipient.
    fn lookup(&self, m: &Mailbox, stage: Stage) -> Option<(Stage, Vec<Mailbox>)> {
        let local = self.is_local(&m.domain);
        if stage == Stage::Virtual {
            if let Some(v) = self.virtual_map.and_then(|v| v.lookup(m, local)) {
                return Some((Stage::Virtual, v));
            }
        }
        if !local {
            return None;
        }
        let targets = self.aliases?.lookup(&m.local)?;
        Some((
            Stage::Alias,
            targets.iter().map(|t| t.resolve(m, None)).collect(),
        ))
    }

    /// Expands `rcpt` into its final recipients, deduplicated (case-insensitively), in
    /// the order they were found.
    pub(crate) fn expand(&self, rcpt: &Mailbox) -> Result<Vec<Mailbox>, ExpandError> {
        let walk = self.walk(rcpt)?;
        if walk.recipients.is_empty() {
            let chain = walk
                .loops
                .first()
                .map(|l| chain_text(l))
                .unwrap_or_default();
            return Err(ExpandError::Loop(chain));
        }
        Ok(walk.recipients)
    }

    /// Walks the expansion tree of `rcpt` depth first.
    pub(crate) fn walk(&self, rcpt: &Mailbox) -> Result<Walk, ExpandError> {
        let mut w = Walker {
            maps: self,
            rcpt,
            walk: Walk::default(),
            delivered: HashSet::new(),
            done: HashSet::new(),
            stack: Vec::new(),
        };
        w.enter(rcpt.clone(), Stage::Virtual)?;
        while let Some(top) = w.stack.last_mut() {
            let Some(t) = top.targets.get(top.next).cloned() else {
                if let Some(f) = w.stack.pop() {
                    if f.entered == Stage::Virtual {
                        w.done.insert(f.key);
                    }
                }
                continue;
            };
            top.next += 1;
            let tk = key(&t);
            if tk == top.key {
                // The entry names the address itself: it stays, past this table.
                match top.stage {
                    Stage::Virtual => w.enter(t, Stage::Alias)?,
                    Stage::Alias => w.deliver(t)?,
                }
            } else if let Some(i) = w.stack.iter().position(|f| f.key == tk) {
                let mut chain: Vec<String> = w.stack[i..].iter().map(|f| f.key.clone()).collect();
                chain.dedup();
                chain.push(tk);
                w.walk.loops.push(chain);
            } else if !w.done.contains(&tk) {
                w.enter(t, Stage::Virtual)?;
            }
        }
        Ok(w.walk)
    }
}

/// The state of one walk.
struct Walker<'a> {
    maps: &'a Maps<'a>,
    rcpt: &'a Mailbox,
    walk: Walk,
    /// Keys of the recipients found, for deduplication.
    delivered: HashSet<String>,
    /// Addresses entered at the virtual stage whose expansion is finished ("been
    /// here"; only that stage is ever asked about). Keys alone: a set of `String`s
    /// is a hash set type the binary has anyway, a set of `(String, Stage)` was 1 KB
    /// of hash set code of its own.
    done: HashSet<String>,
    /// The path from the recipient to the address being expanded.
    stack: Vec<Frame>,
}

impl Walker<'_> {
    fn deliver(&mut self, m: Mailbox) -> Result<(), ExpandError> {
        if self.delivered.insert(key(&m)) {
            self.walk.recipients.push(m);
            if self.walk.recipients.len() > EXPANSION_LIMIT {
                return Err(ExpandError::TooMany(self.rcpt.to_string()));
            }
        }
        Ok(())
    }

    /// Enters `m` at `stage`: a new frame if a table has an entry, else a recipient.
    fn enter(&mut self, m: Mailbox, entered: Stage) -> Result<(), ExpandError> {
        let Some((stage, targets)) = self.maps.lookup(&m, entered) else {
            return self.deliver(m);
        };
        if self.stack.len() >= RECURSION_LIMIT {
            let mut chain: Vec<String> = self.stack.iter().map(|f| f.key.clone()).collect();
            chain.push(key(&m));
            return Err(ExpandError::TooDeep(chain_text(&chain)));
        }
        self.stack.push(Frame {
            key: key(&m),
            entered,
            stage,
            targets,
            next: 0,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    struct Fixture {
        virtual_map: VirtualMap,
        aliases: Aliases,
        domains: Vec<String>,
    }

    fn fixture(virtual_text: &str, aliases_text: &str) -> Fixture {
        let mut errors = Vec::new();
        let f = Fixture {
            virtual_map: VirtualMap::parse(virtual_text, "virtual", &mut errors),
            aliases: Aliases::parse(aliases_text, "aliases", &mut errors),
            domains: vec!["router.lan".into(), "example.org".into()],
        };
        assert!(errors.is_empty(), "{errors:?}");
        f
    }

    impl Fixture {
        fn maps(&self) -> Maps<'_> {
            Maps {
                virtual_map: Some(&self.virtual_map),
                aliases: Some(&self.aliases),
                local_domains: &self.domains,
            }
        }

        fn expand(&self, rcpt: &str) -> Result<Vec<String>, ExpandError> {
            self.maps()
                .expand(&mb(rcpt))
                .map(|v| v.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn virtual_then_aliases_recursively() {
        let f = fixture(
            "info@example.org  root@router.lan, bob@example.net\n",
            "root: admin, alice@gmail.example\nadmin: alice@gmail.example, carol\n",
        );
        assert_eq!(
            f.expand("Info@example.org").unwrap(),
            ["alice@gmail.example", "carol@router.lan", "bob@example.net"]
        );
        // Nothing matches: the address itself; remote addresses never meet aliases.
        assert_eq!(f.expand("dave@router.lan").unwrap(), ["dave@router.lan"]);
        assert_eq!(
            f.expand("root@remote.example").unwrap(),
            ["root@remote.example"]
        );
        // A bare alias target stays in the domain it came from.
        assert_eq!(
            f.expand("admin@example.org").unwrap(),
            ["alice@gmail.example", "carol@example.org"]
        );
    }

    #[test]
    fn an_address_that_maps_to_itself_is_delivered_to_itself() {
        let f = fixture(
            "info@example.org  info@example.org, bob@example.net\n\
             @example.org      catchall@example.org\n\
             root@router.lan   root@router.lan\n",
            "root: root, admin\nadmin: ops@example.net\n",
        );
        assert_eq!(
            f.expand("info@example.org").unwrap(),
            ["info@example.org", "bob@example.net"]
        );
        // The catch-all's own address matches the catch-all: itself.
        assert_eq!(f.expand("x@example.org").unwrap(), ["catchall@example.org"]);
        // Past the virtual table an address still meets the aliases.
        assert_eq!(
            f.expand("root@router.lan").unwrap(),
            ["root@router.lan", "ops@example.net"]
        );
    }

    #[test]
    fn loops_end_with_an_error_or_are_cut() {
        let f = fixture(
            "a@example.org  b@example.org\nb@example.org  a@example.org\n",
            "x: y\ny: z\nz: x\nloopy: w, ops@example.net\nw: loopy\n",
        );
        match f.expand("a@example.org") {
            Err(e @ ExpandError::Loop(_)) => {
                assert_eq!(
                    e.to_string(),
                    "alias loop: a@example.org -> b@example.org -> a@example.org"
                );
                assert_eq!(e.status(), "5.4.6");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.expand("x@router.lan"),
            Err(ExpandError::Loop(_))
        ));
        // A loop in one branch: the other branches are delivered.
        assert_eq!(f.expand("loopy@router.lan").unwrap(), ["ops@example.net"]);
        let walk = f.maps().walk(&mb("loopy@router.lan")).unwrap();
        assert_eq!(
            walk.loops,
            [vec!["loopy@router.lan", "w@router.lan", "loopy@router.lan"]]
        );
    }

    #[test]
    fn shared_branches_are_expanded_once_and_deduplicated() {
        // A diamond repeated 30 times would be 2^30 paths without "been here".
        let mut aliases = String::new();
        for i in 0..30 {
            aliases.push_str(&format!(
                "n{i}: l{i}, r{i}\nl{i}: n{}\nr{i}: N{}\n",
                i + 1,
                i + 1
            ));
        }
        aliases.push_str("n30: end@example.net, END@example.net\n");
        let f = fixture("", &aliases);
        assert_eq!(f.expand("n0@router.lan").unwrap(), ["end@example.net"]);
    }

    #[test]
    fn limits() {
        let mut chain = String::new();
        for i in 0..=RECURSION_LIMIT {
            chain.push_str(&format!("a{i}: a{}\n", i + 1));
        }
        let f = fixture("", &chain);
        let e = f.expand("a0@router.lan").unwrap_err();
        assert!(matches!(e, ExpandError::TooDeep(_)), "{e}");
        assert!(e.to_string().starts_with(
            "alias expansion nested more than 1000 levels: a0@router.lan -> a1@router.lan"
        ));

        let many: Vec<String> = (0..=EXPANSION_LIMIT)
            .map(|i| format!("u{i}@example.net"))
            .collect();
        let f = fixture("", &format!("list: {}\n", many.join(", ")));
        assert_eq!(
            f.expand("list@router.lan"),
            Err(ExpandError::TooMany("list@router.lan".into()))
        );
        let f = fixture(
            "",
            &format!("list: {}\n", many[..EXPANSION_LIMIT].join(", ")),
        );
        assert_eq!(f.expand("list@router.lan").unwrap().len(), EXPANSION_LIMIT);
    }

    #[test]
    fn without_tables_an_address_is_itself() {
        let domains = vec!["router.lan".to_string()];
        let maps = Maps {
            virtual_map: None,
            aliases: None,
            local_domains: &domains,
        };
        assert_eq!(
            maps.expand(&mb("root@router.lan")).unwrap(),
            [mb("root@router.lan")]
        );
    }
}
