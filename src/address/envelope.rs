//! The envelope a message is queued with: each recipient it was given goes through SRS
//! reversal, the recipient check and expansion here, one recipient at a time, and the
//! sender is rewritten with SRS when that expansion forwards the mail to another
//! domain. Postfix's `cleanup(8)` role (virtual expansion) with `local(8)`'s aliases
//! folded in, so the queue file holds final recipients and delivery never looks at a
//! table.
//!
//! One place for both ways in, so they cannot disagree: the SMTP session asks at RCPT
//! (a refusal is a `550` reply there, never a bounce later: no backscatter), and the
//! scheduler asks when it first picks up a message written by `sendmail` or by the
//! queue itself (a refusal is a bounce, there being nobody to reply to).
//!
//! "Local" here is the local domains given to `Tables`: a target outside them is
//! forwarded (SRS applies), even if a transport entry routes it to a neighbour; a
//! local domain relayed by `--transport` is still ours and gets no SRS.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use super::srs::{self, Secrets, SrsError};
use super::table::{fold_domain, key};
use super::{ExpandError, Tables, Unknown};
use crate::smtp::address::{parse_mailbox, Mailbox};

/// SRS for forwarded mail: the domain of the addresses made, and the secrets.
#[derive(Debug, Clone)]
pub struct Srs {
    /// Lower case.
    pub domain: String,
    pub secrets: Secrets,
}

/// The address tables and SRS, loaded together and replaced together on SIGHUP.
#[derive(Debug, Clone)]
pub struct Rewriter {
    pub tables: Tables,
    /// `None`: no SRS (no forwarding tables and no `--srs-domain`).
    pub srs: Option<Srs>,
}

/// The current `Rewriter` of the (single-threaded) daemon: sessions and the scheduler
/// look at it for each recipient, and a SIGHUP replaces what it holds.
pub type SharedRewriter = Rc<RefCell<Rc<Rewriter>>>;

/// Why a recipient is refused; the reply is `550 {status} <rcpt>: Recipient address
/// rejected: {self}`, and a bounce carries the same status and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// In no table (Postfix's words).
    Unknown(Unknown),
    /// An address in the SRS domain that is forged, expired or malformed.
    Srs(SrsError),
    /// Its expansion loops or grows past the limits.
    Expand(ExpandError),
}

impl Refusal {
    /// The RFC 3463 status: 5.1.1 "bad destination mailbox address" for an unknown or
    /// forged address, the expansion's own for a loop or limit.
    pub fn status(&self) -> &'static str {
        match self {
            Refusal::Unknown(_) | Refusal::Srs(_) => "5.1.1",
            Refusal::Expand(e) => e.status(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown(u) => u.fmt(f),
            Refusal::Srs(e) => e.fmt(f),
            Refusal::Expand(e) => e.fmt(f),
        }
    }
}

/// What one recipient becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The addresses to queue (at least one).
    pub targets: Vec<Mailbox>,
    /// A valid SRS address reversed: a bounce coming back to the original sender. It is
    /// accepted from anyone, as mail for a local domain is.
    pub returned: bool,
    /// A table sent it to an address outside the local domains.
    pub forwarded: bool,
}

impl Rewriter {
    /// Neither tables nor SRS: every recipient stays as it is.
    pub fn none(local_domains: &[String]) -> Rewriter {
        Rewriter {
            tables: Tables::empty(local_domains),
            srs: None,
        }
    }

    fn is_local(&self, domain: &str) -> bool {
        self.tables.is_local(domain)
    }

    /// Whether `domain` is ours to accept mail for besides the local domains: a domain
    /// of the virtual table (Postfix `virtual_alias_domains`).
    pub fn is_virtual_domain(&self, domain: &str) -> bool {
        self.tables.is_virtual_domain(domain)
    }

    /// What `rcpt` is queued as: an SRS address in the SRS domain is reversed (and must
    /// be valid); anything else must be known to the tables, and is expanded. `now` is
    /// the Unix time (SRS timestamps).
    pub fn recipient(&self, rcpt: &Mailbox, now: u64) -> Result<Recipient, Refusal> {
        if let Some(srs) = &self.srs {
            if fold_domain(&rcpt.domain) == srs.domain && srs::is_srs(&rcpt.local) {
                let original =
                    srs::decode(&rcpt.to_string(), &srs.secrets, now).map_err(Refusal::Srs)?;
                let m = match parse_mailbox(&original, true, false, false) {
                    Ok(Some(m)) => m,
                    _ => {
                        return Err(Refusal::Srs(SrsError::Malformed(
                            "not an address once reversed",
                        )))
                    }
                };
                return Ok(Recipient {
                    targets: vec![m],
                    returned: true,
                    forwarded: false,
                });
            }
        }
        self.tables
            .check_recipient(rcpt)
            .map_err(Refusal::Unknown)?;
        let targets = self.tables.expand(rcpt).map_err(Refusal::Expand)?;
        let own = key(rcpt);
        let forwarded = targets
            .iter()
            .any(|t| !self.is_local(&t.domain) && key(t) != own);
        Ok(Recipient {
            targets,
            returned: false,
            forwarded,
        })
    }

    /// The envelope sender to queue with: SRS-rewritten when `forwarded` and the sender
    /// is foreign (not in a local domain, not the null sender `""`), so SPF at the
    /// destination checks this host and not the sender's domain. Unchanged without SRS,
    /// and, as libsrs2 does, if it cannot be rewritten.
    pub fn sender(&self, sender: &str, forwarded: bool, now: u64) -> String {
        let (Some(srs), true) = (&self.srs, forwarded) else {
            return sender.to_string();
        };
        match sender.rsplit_once('@') {
            Some((_, domain)) if !self.is_local(domain) => {
                srs::encode(sender, &srs.domain, &srs.secrets, now)
                    .unwrap_or_else(|_| sender.to_string())
            }
            _ => sender.to_string(),
        }
    }
}

/// The recipients of one message, gathered one `Recipient` at a time: deduplicated
/// (as expansion compares addresses), in the order they came, with whether any was
/// forwarded.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    list: Vec<String>,
    keys: HashSet<String>,
    forwarded: bool,
}

impl Recipients {
    pub fn add(&mut self, r: Recipient) {
        self.forwarded |= r.forwarded;
        for t in r.targets {
            if self.keys.insert(key(&t)) {
                self.list.push(t.to_string());
            }
        }
    }

    /// An address the tables cannot read (not RFC 5321 syntax: a queue file edited by
    /// hand), kept as it is for delivery to decide.
    pub fn keep(&mut self, addr: &str) {
        if self.keys.insert(addr.to_lowercase()) {
            self.list.push(addr.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a table sent any of them outside the local domains.
    pub fn forwarded(&self) -> bool {
        self.forwarded
    }

    pub fn as_slice(&self) -> &[String] {
        &self.list
    }
}

/// For tests here and above: tables from texts (an empty one: no such table) for the
/// one local domain `domain`, which is also the SRS domain, with a fixed secret.
#[cfg(test)]
pub(crate) fn test_rewriter(
    domain: &str,
    aliases: &str,
    virtual_map: &str,
    recipients: &str,
) -> Rewriter {
    let src =
        |name: &str, text: &str| (!text.is_empty()).then(|| (name.to_string(), text.to_string()));
    let texts = super::Texts {
        aliases: src("aliases", aliases),
        virtual_map: src("virtual", virtual_map),
        local_recipients: src("recipients", recipients),
        ..super::Texts::default()
    };
    let mut errors = Vec::new();
    let tables = Tables::parse(&texts, &[domain.to_string()], &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    Rewriter {
        tables,
        srs: Some(Srs {
            domain: domain.to_string(),
            secrets: Secrets::new(&["test secret"]).unwrap(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 20_000 * DAY;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s, true, false, false).unwrap().unwrap()
    }

    fn rewriter(aliases: &str, virtual_map: &str) -> Rewriter {
        test_rewriter("router.lan", aliases, virtual_map, "")
    }

    #[test]
    fn recipients_are_checked_expanded_and_marked_forwarded() {
        let rw = rewriter(
            "root: admin, ops@example.net\nadmin: admin\nloop: loop2\nloop2: loop\n",
            "info@virt.example  admin@router.lan\n",
        );
        let r = rw.recipient(&mb("Root@router.lan"), NOW).unwrap();
        assert_eq!(r.targets, [mb("admin@router.lan"), mb("ops@example.net")]);
        assert!(r.forwarded && !r.returned);
        let r = rw.recipient(&mb("info@virt.example"), NOW).unwrap();
        assert!(!r.forwarded, "a local target is not forwarding");
        // A remote recipient without an entry (relayed) is not forwarding either.
        let r = rw.recipient(&mb("dave@example.net"), NOW).unwrap();
        assert_eq!(r.targets, [mb("dave@example.net")]);
        assert!(!r.forwarded);
        let e = rw.recipient(&mb("nobody@router.lan"), NOW).unwrap_err();
        assert_eq!(e.status(), "5.1.1");
        assert_eq!(e.to_string(), "User unknown in local recipient table");
        let e = rw.recipient(&mb("loop@router.lan"), NOW).unwrap_err();
        assert_eq!(e.status(), "5.4.6");
        assert!(e.to_string().starts_with("alias loop: "), "{e}");

        let mut all = Recipients::default();
        for r in ["root@router.lan", "ADMIN@router.lan", "info@virt.example"] {
            all.add(rw.recipient(&mb(r), NOW).unwrap());
        }
        assert_eq!(all.as_slice(), ["admin@router.lan", "ops@example.net"]);
        assert!(all.forwarded());
    }

    #[test]
    fn forwarding_rewrites_foreign_senders_and_bounces_come_back() {
        let rw = rewriter("root: ops@example.net\n", "");
        // Local and null senders, or no forwarding: unchanged.
        assert_eq!(rw.sender("cron@router.lan", true, NOW), "cron@router.lan");
        assert_eq!(rw.sender("", true, NOW), "");
        assert_eq!(
            rw.sender("alice@gmail.example", false, NOW),
            "alice@gmail.example"
        );
        let srs0 = rw.sender("alice@gmail.example", true, NOW);
        assert!(srs0.starts_with("SRS0="), "{srs0}");
        assert!(srs0.ends_with("=gmail.example=alice@router.lan"), "{srs0}");

        // The bounce to it goes to the original sender, accepted as a returned one.
        let r = rw.recipient(&mb(&srs0), NOW + DAY).unwrap();
        assert_eq!(r.targets, [mb("alice@gmail.example")]);
        assert!(r.returned);
        // Forged (hash), expired: 5.1.1.
        let forged = srs0.replacen("SRS0=", "SRS0=x", 1);
        let e = rw.recipient(&mb(&forged), NOW).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            ("5.1.1", "hash invalid in SRS address")
        );
        let e = rw.recipient(&mb(&srs0), NOW + 30 * DAY).unwrap_err();
        assert_eq!(e, Refusal::Srs(SrsError::Expired));
        // Without SRS the same address is only a local part the tables do not know.
        let none = Rewriter {
            srs: None,
            ..rw.clone()
        };
        assert_eq!(
            none.recipient(&mb(&srs0), NOW),
            Err(Refusal::Unknown(Unknown::LocalRecipientTable))
        );
        assert_eq!(
            none.sender("alice@gmail.example", true, NOW),
            "alice@gmail.example"
        );
    }

    #[test]
    fn no_tables_change_nothing() {
        let rw = Rewriter::none(&["router.lan".to_string()]);
        let r = rw.recipient(&mb("anyone@router.lan"), NOW).unwrap();
        assert_eq!(r.targets, [mb("anyone@router.lan")]);
        assert!(!r.forwarded && !r.returned);
        assert!(!rw.is_virtual_domain("router.lan"));
    }
}
