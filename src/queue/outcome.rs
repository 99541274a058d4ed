//! The contract between the queue and delivery: what the scheduler asks for (one
//! attempt of a message, `Deliver`) and what comes back as data (an outcome per
//! recipient, notices for an administrator). Delivery reports; the scheduler decides
//! what follows (retry, bounce, removal) and is the only one that writes to the spool.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use super::spool::{Content, Spool};
use super::{Envelope, QueueId};
use crate::smtp::reply::Reply;

/// The status of a REQUIRETLS message that no next hop could carry (RFC 8689 §4.2.1):
/// deferred and retried; when the queue lifetime ends the scheduler bounces it with
/// class 5, 5.7.30 "REQUIRETLS support required" (RFC 8689 §5).
pub const REQUIRETLS_DEFERRED: &str = "4.7.30";

/// Where an attempt went, as logged in `relay=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// No host was reached (DNS failed, no usable host): `none`.
    None,
    /// This machine: a Maildir, or a recipient refused before routing: `local`.
    Local,
    /// A mail host: its name, and the address and port once a connection was made
    /// (`host[ip]:port`, as Postfix names a server); only the name when the host was
    /// given up before connecting (a failed TLSA lookup).
    Host {
        name: String,
        addr: Option<SocketAddr>,
    },
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relay::None => f.write_str("none"),
            Relay::Local => f.write_str("local"),
            Relay::Host { name, addr: None } => f.write_str(name),
            Relay::Host {
                name,
                addr: Some(a),
            } => write!(f, "{name}[{}]:{}", a.ip(), a.port()),
        }
    }
}

/// A remote server's reply that decided an outcome, and the command it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub reply: Reply,
    /// `RCPT TO`, `end of DATA`, ...
    pub stage: &'static str,
}

impl RemoteReply {
    /// `550 5.1.1 text (in reply to RCPT TO command)`: what the server said, for the
    /// log line and a bounce's Diagnostic-Code.
    pub fn diagnostic(&self) -> String {
        format!(
            "{} (in reply to {} command)",
            self.reply.summary(),
            self.stage
        )
    }
}

/// What an attempt means for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Sent,
    /// Try again later.
    Deferred,
    /// Give up: the sender gets a bounce.
    Bounced,
}

impl Disposition {
    /// The word of the log's `status=`.
    pub fn word(self) -> &'static str {
        match self {
            Disposition::Sent => "sent",
            Disposition::Deferred => "deferred",
            Disposition::Bounced => "bounced",
        }
    }
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub disposition: Disposition,
    pub relay: Relay,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub dsn: String,
    /// Human-readable, for the log line and the bounce's text part.
    pub detail: String,
    /// The server's reply, when one decided this outcome.
    pub reply: Option<RemoteReply>,
    /// The next hop offered DSN and was given the recipient's DSN parameters: it
    /// reports from here on, so a success needs no `relayed` report of ours.
    pub next_hop_dsn: bool,
}

impl Outcome {
    /// An outcome that no server reply decided.
    pub fn new(disposition: Disposition, relay: Relay, dsn: &str, detail: String) -> Outcome {
        Outcome {
            disposition,
            relay,
            dsn: dsn.to_string(),
            detail,
            reply: None,
            next_hop_dsn: false,
        }
    }

    pub fn is_final(&self) -> bool {
        self.disposition != Disposition::Deferred
    }
}

/// A short mail for an administrator that delivery asks the queue to send (a TLS
/// failure alert); the queue writes and schedules it as it does bounces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is, for the log: `TLS failure alert`.
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Everything one attempt of one message reports.
#[derive(Debug, Default)]
pub struct Attempt {
    /// One outcome per recipient tried.
    pub results: Vec<(String, Outcome)>,
    pub notices: Vec<Notice>,
}

impl From<Vec<(String, Outcome)>> for Attempt {
    fn from(results: Vec<(String, Outcome)>) -> Attempt {
        Attempt {
            results,
            notices: Vec::new(),
        }
    }
}

impl Attempt {
    /// Adds what another part of the same attempt reported.
    pub fn extend(&mut self, other: Attempt) {
        self.results.extend(other.results);
        self.notices.extend(other.notices);
    }
}

/// Where delivery reads a queued message's content: each reader (a next hop, a
/// Maildir, a second try of the same hop) opens its own and reads it in bounded pieces
/// ([`Content`]), so no attempt holds a message in memory, however large. Cheap to
/// clone and `Send`, for the blocking pool.
#[derive(Debug, Clone)]
pub struct ContentSource {
    spool: Spool,
    id: QueueId,
}

impl ContentSource {
    pub fn new(spool: &Spool, id: &QueueId) -> ContentSource {
        ContentSource {
            spool: spool.clone(),
            id: id.clone(),
        }
    }

    /// Opens the content from its start (blocking file I/O: call it on the blocking
    /// pool). Fails when the message was deleted meanwhile.
    pub fn open(&self) -> io::Result<Content> {
        self.spool
            .open_message(&self.id)
            .map(|(_, content)| content)
    }
}

/// Delivery as the scheduler sees it. The program runs on one thread (a
/// `LocalExecutor`), so the future need not be `Send`.
pub trait Deliver {
    /// One attempt of `env`, whose content `content` opens, to the recipients in
    /// `pending`.
    fn attempt(
        &self,
        env: &Envelope,
        content: &ContentSource,
        pending: &[String],
    ) -> impl Future<Output = Attempt>;
}

#[cfg(test)]
impl Outcome {
    /// What a remote server's `550 5.1.1 no such user` to RCPT TO makes, for the tests
    /// of the scheduler and the bounces.
    pub(crate) fn sample_rcpt_refused() -> Outcome {
        Outcome {
            disposition: Disposition::Bounced,
            relay: Relay::Host {
                name: "mx.example.net".into(),
                addr: Some("192.0.2.1:25".parse().unwrap()),
            },
            dsn: "5.1.1".into(),
            detail: "host mx.example.net[192.0.2.1]:25 said: 550 5.1.1 no such user (in reply to RCPT TO command)".into(),
            reply: Some(RemoteReply {
                reply: crate::smtp::reply::Reply::new(550, "5.1.1", "no such user"),
                stage: "RCPT TO",
            }),
            next_hop_dsn: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_named_as_postfix_does() {
        let host = |addr: Option<&str>| Relay::Host {
            name: "mx.example.net".into(),
            addr: addr.map(|a| a.parse().unwrap()),
        };
        assert_eq!(Relay::None.to_string(), "none");
        assert_eq!(Relay::Local.to_string(), "local");
        assert_eq!(host(None).to_string(), "mx.example.net");
        assert_eq!(
            host(Some("192.0.2.1:25")).to_string(),
            "mx.example.net[192.0.2.1]:25"
        );
        assert_eq!(
            host(Some("[2001:db8::1]:587")).to_string(),
            "mx.example.net[2001:db8::1]:587"
        );
    }
}
