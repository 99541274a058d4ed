//! Delivery: where each recipient goes (routing, with the envelope sender) and getting
//! the message there — into a local Maildir as it arrived, or over SMTP to the next hop
//! under the destination's TLS policy, logged in at a smarthost and with the sender
//! rewritten for the Internet when so configured. Reports one outcome per recipient
//! (and any TLS alert to send) to the queue, which decides what happens next; nothing
//! here writes to the spool.

pub mod alert;
pub mod check;
pub mod client;
pub mod credentials;
pub mod maildir;
pub mod mta_sts;
pub mod outgoing;
pub mod parked;
pub mod policy;
pub mod remote;
pub mod route;
pub mod sasl;
pub mod sender_relay;
pub mod settings;
pub mod tlsrpt;
pub mod transport;

use std::path::PathBuf;
use std::rc::Rc;

pub use settings::Settings;

use crate::address::SharedRewriter;
use crate::queue::outcome::{Attempt, ContentSource, Deliver, Disposition, Outcome, Relay};
use crate::queue::Envelope;
use outgoing::Outgoing;
use route::{NextHop, Route};

/// What delivery needs from the configuration, and the remote delivery state (parked
/// sessions, alert rate limits) that lives as long as the daemon.
pub struct DeliveryContext {
    pub hostname: String,
    pub router: route::Router,
    pub mail_dir: PathBuf,
    pub remote: remote::Remote,
    /// The address tables as last loaded (SIGHUP replaces them): their generic map
    /// (`--sender-rewrite`) is applied to mail leaving over SMTP.
    pub rewriter: SharedRewriter,
}

impl Deliver for DeliveryContext {
    async fn attempt(
        &self,
        env: &Envelope,
        content: &ContentSource,
        pending: &[String],
    ) -> Attempt {
        attempt(self, env, content, pending).await
    }
}

/// One delivery attempt of a message to the recipients in `pending`: local ones into
/// Maildirs (on the blocking pool), remote ones grouped by next hop over SMTP. Each
/// Maildir copy and each SMTP transaction reads the queue file on its own, in pieces.
pub async fn attempt(
    ctx: &DeliveryContext,
    env: &Envelope,
    content: &ContentSource,
    pending: &[String],
) -> Attempt {
    let mut results = Vec::new();
    let mut local = Vec::new();
    let mut groups: Vec<(NextHop, Vec<String>)> = Vec::new();
    for rcpt in pending {
        match ctx.router.route_from(&env.sender, rcpt) {
            Route::Local { domain, user } => local.push((rcpt.clone(), domain, user)),
            Route::Invalid(why) => results.push((
                rcpt.clone(),
                Outcome::new(Disposition::Bounced, Relay::Local, "5.1.3", why.to_string()),
            )),
            Route::Remote(hop) => match groups.iter_mut().find(|(h, _)| *h == hop) {
                Some((_, rcpts)) => rcpts.push(rcpt.clone()),
                None => groups.push((hop, vec![rcpt.clone()])),
            },
        }
    }
    if !local.is_empty() {
        let (mail_dir, hostname, env2, source) = (
            ctx.mail_dir.clone(),
            ctx.hostname.clone(),
            env.clone(),
            content.clone(),
        );
        let local_results = crate::runtime::unblock(move || {
            local
                .into_iter()
                .map(|(rcpt, domain, user)| {
                    let delivered = source.open().and_then(|mut content| {
                        maildir::deliver(
                            &mail_dir,
                            &domain,
                            &user,
                            &hostname,
                            &env2,
                            &rcpt,
                            &mut content,
                        )
                    });
                    let outcome = match delivered {
                        Ok(path) => Outcome::new(
                            Disposition::Sent,
                            Relay::Local,
                            "2.0.0",
                            format!("delivered to maildir {}", path.display()),
                        ),
                        Err(e) => Outcome::new(
                            Disposition::Deferred,
                            Relay::Local,
                            maildir::failure_status(&e),
                            format!("cannot write maildir: {e}"),
                        ),
                    };
                    (rcpt, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await;
        results.extend(local_results);
    }
    let mut attempt = Attempt {
        results,
        notices: Vec::new(),
    };
    if !groups.is_empty() {
        // This attempt's tables, whatever a SIGHUP does meanwhile.
        let rewriter = Rc::clone(&ctx.rewriter.borrow());
        match Outgoing::prepare(&rewriter.tables, env, content).await {
            Ok(msg) => {
                for (hop, rcpts) in groups {
                    attempt.extend(
                        remote::deliver(&ctx.remote, &ctx.hostname, env, &msg, &hop, &rcpts).await,
                    );
                }
            }
            Err(e) => {
                let unread = Outcome::new(
                    Disposition::Deferred,
                    Relay::Local,
                    "4.3.0",
                    format!("cannot read the queue file: {e}"),
                );
                for rcpt in groups.into_iter().flat_map(|(_, rcpts)| rcpts) {
                    attempt.results.push((rcpt, unread.clone()));
                }
            }
        }
    }
    attempt
}
