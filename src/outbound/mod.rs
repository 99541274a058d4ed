//! Delivery: where each recipient goes (routing) and getting the message there — into
//! a local Maildir, or over SMTP to the next hop under the destination's TLS policy.
//! Returns one outcome per recipient; the queue decides what happens next.

pub mod alert;
pub mod check;
pub mod client;
pub mod maildir;
pub mod remote;
pub mod route;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use crate::queue::{Envelope, Spool};
use crate::smtp::data::dot_stuff;
use crate::tls::policy::NextHop;

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        relay: String,
        dsn: String,
        detail: String,
    },
    Deferred {
        relay: String,
        dsn: String,
        detail: String,
    },
    Bounced {
        relay: String,
        dsn: String,
        detail: String,
    },
}

impl Outcome {
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Deferred { .. })
    }
}

/// What delivery needs from the configuration.
pub struct DeliveryContext {
    pub spool: Spool,
    pub hostname: String,
    pub domains: Vec<String>,
    pub mail_dir: PathBuf,
    pub remote: remote::Remote,
}

/// One delivery attempt of a message to the recipients in `pending`: local ones into
/// Maildirs (on the blocking pool), remote ones grouped by next hop over SMTP.
pub async fn attempt(
    ctx: &DeliveryContext,
    env: &Envelope,
    content: &Arc<Vec<u8>>,
    pending: &[String],
) -> Vec<(String, Outcome)> {
    let mut results = Vec::new();
    let mut local = Vec::new();
    let mut groups: Vec<(NextHop, Vec<String>)> = Vec::new();
    for rcpt in pending {
        let domain = rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        // A transport entry routes even a local domain onward (a gateway in front of an
        // internal server).
        let dest = if ctx.remote.transport.lookup(&domain).is_some() {
            route::Destination::Remote {
                domain: domain.clone(),
            }
        } else {
            route::classify(rcpt, &ctx.domains)
        };
        match dest {
            route::Destination::Local { domain, user } => local.push((rcpt.clone(), domain, user)),
            route::Destination::Invalid(why) => results.push((
                rcpt.clone(),
                Outcome::Bounced {
                    relay: "local".into(),
                    dsn: "5.1.3".into(),
                    detail: why.to_string(),
                },
            )),
            route::Destination::Remote { domain } => {
                let hop = ctx.remote.nexthop(&domain);
                match groups.iter_mut().find(|(h, _)| *h == hop) {
                    Some((_, rcpts)) => rcpts.push(rcpt.clone()),
                    None => groups.push((hop, vec![rcpt.clone()])),
                }
            }
        }
    }
    if !local.is_empty() {
        let (mail_dir, hostname, env2, content2) = (
            ctx.mail_dir.clone(),
            ctx.hostname.clone(),
            env.clone(),
            // Shared with the blocking pool, not copied: messages may be megabytes.
            Arc::clone(content),
        );
        let local_results = smol::unblock(move || {
            local
                .into_iter()
                .map(|(rcpt, domain, user)| {
                    let outcome = match maildir::deliver(
                        &mail_dir, &domain, &user, &hostname, &env2, &rcpt, &content2,
                    ) {
                        Ok(path) => Outcome::Sent {
                            relay: "local".into(),
                            dsn: "2.0.0".into(),
                            detail: format!("delivered to maildir {}", path.display()),
                        },
                        Err(e) => Outcome::Deferred {
                            relay: "local".into(),
                            dsn: "4.2.0".into(),
                            detail: format!("cannot write maildir: {e}"),
                        },
                    };
                    (rcpt, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await;
        results.extend(local_results);
    }
    if !groups.is_empty() {
        let stuffed = dot_stuff(content);
        for (hop, rcpts) in groups {
            results.extend(
                remote::deliver(
                    &ctx.remote,
                    &ctx.hostname,
                    &env.id.0,
                    env,
                    &stuffed,
                    &hop,
                    &rcpts,
                )
                .await,
            );
        }
    }
    results
}
