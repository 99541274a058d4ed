//! Delivery: where each recipient goes (routing) and getting the message there — into
//! a local Maildir, or (later) over SMTP to the next hop. Returns one outcome per
//! recipient; the queue decides what happens next.

pub mod maildir;
pub mod route;

use std::io::{self, Read};
use std::path::PathBuf;

use crate::queue::{Envelope, QueueId, Spool};

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
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    pub spool: Spool,
    pub hostname: String,
    pub domains: Vec<String>,
    pub mail_dir: PathBuf,
}

/// One delivery attempt of message `id` to the recipients in `pending`. Blocking (file
/// I/O): the scheduler runs it on the blocking pool.
pub fn attempt(
    ctx: &DeliveryContext,
    id: &QueueId,
    pending: &[String],
) -> io::Result<(Envelope, Vec<(String, Outcome)>)> {
    let (env, mut reader) = ctx.spool.open_message(id)?;
    let mut content = Vec::new();
    reader.read_to_end(&mut content)?;
    let mut results = Vec::new();
    for rcpt in pending {
        let outcome = match route::classify(rcpt, &ctx.domains) {
            route::Destination::Local { domain, user } => {
                match maildir::deliver(
                    &ctx.mail_dir,
                    &domain,
                    &user,
                    &ctx.hostname,
                    &env,
                    rcpt,
                    &content,
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
                }
            }
            route::Destination::Remote { .. } => Outcome::Deferred {
                relay: "none".into(),
                dsn: "4.4.0".into(),
                detail: "remote delivery is not available in this build yet".into(),
            },
            route::Destination::Invalid(why) => Outcome::Bounced {
                relay: "local".into(),
                dsn: "5.1.3".into(),
                detail: why.to_string(),
            },
        };
        results.push((rcpt.clone(), outcome));
    }
    Ok((env, results))
}
