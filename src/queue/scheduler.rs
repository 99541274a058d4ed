//! The queue manager: decides when each message is tried, runs the attempts on the
//! blocking pool, records outcomes, and removes messages that are done.
//!
//! Events come from inbound sessions (a new message), the wakeup socket (sendmail
//! dropped a file, `queue flush`), and a periodic rescan that catches anything missed.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use super::bounce;
use super::spool::{QueueId, Spool};
use crate::clock::unix_now;
use crate::config::Retry;
use crate::logline;
use crate::outbound::{self, DeliveryContext, Outcome};

/// Most delivery attempts running at once.
const MAX_IN_FLIGHT: usize = 20;
/// How often the spool is rescanned for messages nobody told us about.
const RESCAN: Duration = Duration::from_secs(60);

/// Something the scheduler should react to.
#[derive(Debug)]
pub enum Event {
    /// A message was committed by this process.
    New(QueueId),
    /// Retry everything now (`tinymta queue flush`).
    Flush,
    /// Look for files dropped by another process (`sendmail`).
    Rescan,
    /// Forget a message deleted with `tinymta queue delete`.
    Forget(QueueId),
}

/// Delay before attempt number `attempts + 1`: doubling from `min`, capped at `max`.
pub fn backoff(retry: &Retry, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    (retry.min * factor).min(retry.max)
}

/// One attempt for one message, from reading it to recording the outcome. Returns
/// the Unix time of the next attempt (`None` when the message has left the queue) and
/// any bounce messages it queued.
async fn process(
    ctx: &DeliveryContext,
    retry: &Retry,
    id: &QueueId,
) -> (Option<u64>, Vec<QueueId>) {
    let spool = ctx.spool.clone();
    let id2 = id.clone();
    let loaded = smol::unblock(move || {
        spool
            .read_content(&id2)
            .map(|(env, content)| (spool.status(&id2), env, std::sync::Arc::new(content)))
    })
    .await;
    let (mut status, env, content) = match loaded {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, Vec::new()), // deleted
        Err(e) => {
            log::error!("{id}: cannot read queue file: {e}");
            return (Some(unix_now() + retry.max.as_secs()), Vec::new());
        }
    };
    let pending: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| !status.finished.contains(r))
        .cloned()
        .collect();
    let mut results = outbound::attempt(ctx, &env, &content, &pending).await;

    let age = unix_now().saturating_sub(env.arrival);
    let expired = age >= retry.lifetime.as_secs();
    let delay = Duration::from_secs(age);
    let mut deferred = 0;
    for (rcpt, outcome) in results.iter_mut() {
        if expired {
            if let Outcome::Deferred { relay, dsn, detail } = outcome {
                // Past --queue-lifetime: give up, the sender gets a bounce (4.x.x kept).
                *outcome = Outcome::Bounced {
                    relay: relay.clone(),
                    dsn: dsn.clone(),
                    detail: format!(
                        "message expired after {} days; last error: {detail}",
                        age / 86_400
                    ),
                };
            }
        }
        let (status_word, relay, dsn, detail) = match &*outcome {
            Outcome::Sent { relay, dsn, detail } => ("sent", relay, dsn, detail),
            Outcome::Deferred { relay, dsn, detail } => ("deferred", relay, dsn, detail),
            Outcome::Bounced { relay, dsn, detail } => ("bounced", relay, dsn, detail),
        };
        logline::delivery(&id.0, rcpt, relay, delay, dsn, status_word, detail);
        if outcome.is_final() {
            status.finished.push(rcpt.clone());
        } else {
            deferred += 1;
            status.last_reason = format!("{dsn} {detail}");
        }
    }

    let mut new_ids = Vec::new();
    let failed: Vec<bounce::Failed> = results
        .iter()
        .filter_map(|(rcpt, o)| match o {
            Outcome::Bounced { relay, dsn, detail } => Some(bounce::Failed {
                rcpt,
                relay,
                dsn,
                detail,
            }),
            _ => None,
        })
        .collect();
    // Never bounce a bounce: the null sender gets no notification (RFC 5321 §6.1).
    if !failed.is_empty() && !env.sender.is_empty() {
        let (benv, bcontent) =
            bounce::delivery_status_notification(&ctx.hostname, &env, &content, &failed);
        let spool = ctx.spool.clone();
        let bid = benv.id.clone();
        match smol::unblock(move || spool.store(&benv, &bcontent)).await {
            Ok(()) => {
                log::info!("{id}: sender non-delivery notification: {bid}");
                new_ids.push(bid);
            }
            Err(e) => {
                // Keep the message (and retry the bounce) rather than lose the news.
                log::error!("{id}: cannot queue the bounce: {e}");
                return (Some(unix_now() + retry.min.as_secs()), new_ids);
            }
        }
    }

    let spool = ctx.spool.clone();
    let id2 = id.clone();
    if deferred == 0 {
        if let Err(e) = smol::unblock(move || spool.remove(&id2)).await {
            log::error!("{id}: cannot remove queue file: {e}");
        }
        logline::removed(&id.0);
        return (None, new_ids);
    }
    status.attempts += 1;
    status.next_attempt = unix_now() + backoff(retry, status.attempts).as_secs();
    let next = status.next_attempt;
    if let Err(e) = smol::unblock(move || spool.set_status(&id2, &status)).await {
        log::error!("{id}: cannot record delivery status: {e}");
    }
    (Some(next), new_ids)
}

/// A finished attempt: the message, its next attempt time, bounces it queued.
type Finished = (QueueId, Option<u64>, Vec<QueueId>);

/// Runs the scheduler until `events` closes.
pub async fn run(
    ex: Rc<smol::LocalExecutor<'static>>,
    ctx: Rc<DeliveryContext>,
    retry: Retry,
    events: Receiver<Event>,
    initial: Vec<QueueId>,
) {
    let spool: Spool = ctx.spool.clone();
    let retry = Rc::new(retry);
    // Next attempt time per waiting message.
    let mut waiting: HashMap<QueueId, u64> = HashMap::new();
    let mut in_flight: HashSet<QueueId> = HashSet::new();
    let (done_tx, done_rx): (Sender<Finished>, _) = smol::channel::unbounded();
    for id in initial {
        let next = spool.status(&id).next_attempt;
        waiting.insert(id, next);
    }
    let mut last_rescan = Instant::now();

    loop {
        let now = unix_now();
        let mut due: Vec<QueueId> = waiting
            .iter()
            .filter(|(_, &next)| next <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        for id in due {
            if in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            waiting.remove(&id);
            in_flight.insert(id.clone());
            let (ctx, retry, done) = (ctx.clone(), retry.clone(), done_tx.clone());
            ex.spawn(async move {
                let (next, new_ids) = process(&ctx, &retry, &id).await;
                let _ = done.send((id, next, new_ids)).await;
            })
            .detach();
        }

        // Idle outbound sessions past their reuse time are closed politely.
        for session in ctx.remote.expired_sessions() {
            ex.spawn(session.quit()).detach();
        }
        let park_wait = if ctx.remote.has_parked() {
            crate::outbound::remote::PARK_TIME
        } else {
            RESCAN
        };
        let wait = waiting
            .values()
            .min()
            .map(|&next| Duration::from_secs(next.saturating_sub(now)))
            .unwrap_or(RESCAN)
            .min(RESCAN.saturating_sub(last_rescan.elapsed()))
            .min(park_wait);
        enum Wake {
            Event(Option<Event>),
            Done(Finished),
            Timer,
        }
        let wake = async { Wake::Event(events.recv().await.ok()) }
            .or(async {
                match done_rx.recv().await {
                    Ok(d) => Wake::Done(d),
                    Err(_) => std::future::pending().await,
                }
            })
            .or(async {
                // Below one second the queue's second-resolution times would spin.
                smol::Timer::after(wait.max(Duration::from_millis(200))).await;
                Wake::Timer
            })
            .await;
        match wake {
            Wake::Event(None) => return,
            Wake::Event(Some(Event::New(id))) => {
                if !in_flight.contains(&id) {
                    waiting.insert(id, 0);
                }
            }
            Wake::Event(Some(Event::Flush)) => {
                for next in waiting.values_mut() {
                    *next = 0;
                }
                log::info!("queue flush requested: {} message(s)", waiting.len());
            }
            Wake::Event(Some(Event::Forget(id))) => {
                waiting.remove(&id);
            }
            Wake::Event(Some(Event::Rescan)) => {
                rescan(&spool, &mut waiting, &in_flight);
                last_rescan = Instant::now();
            }
            Wake::Done((id, next, new_ids)) => {
                in_flight.remove(&id);
                for new in new_ids {
                    waiting.insert(new, 0);
                }
                if let Some(next) = next {
                    waiting.insert(id, next);
                }
            }
            Wake::Timer => {
                if last_rescan.elapsed() >= RESCAN {
                    rescan(&spool, &mut waiting, &in_flight);
                    last_rescan = Instant::now();
                }
            }
        }
    }
}

/// Adds messages present on disk but unknown to the scheduler (dropped by sendmail).
fn rescan(spool: &Spool, waiting: &mut HashMap<QueueId, u64>, in_flight: &HashSet<QueueId>) {
    match spool.list() {
        Ok(ids) => {
            let on_disk: HashSet<&QueueId> = ids.iter().collect();
            waiting.retain(|id, _| on_disk.contains(id));
            for id in ids {
                if !waiting.contains_key(&id) && !in_flight.contains(&id) {
                    let next = spool.status(&id).next_attempt;
                    waiting.insert(id, next);
                }
            }
        }
        Err(e) => log::error!("cannot list queue: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry {
            lifetime: Duration::from_secs(432_000),
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
        };
        let secs: Vec<u64> = (1..=6).map(|a| backoff(&r, a).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 3600, 3600]);
    }
}
