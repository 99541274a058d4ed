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

use super::spool::{unix_now, QueueId, Spool};
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
/// the Unix time of the next attempt, or `None` when the message has left the queue.
fn process(ctx: &DeliveryContext, retry: &Retry, id: &QueueId) -> Option<u64> {
    let spool = &ctx.spool;
    let mut status = spool.status(id);
    let env = match spool.open_message(id) {
        Ok((env, _)) => env,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None, // deleted
        Err(e) => {
            log::error!("{id}: cannot read queue file: {e}");
            return Some(unix_now() + retry.max.as_secs());
        }
    };
    let pending: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| !status.finished.contains(r))
        .cloned()
        .collect();
    let results = match outbound::attempt(ctx, id, &pending) {
        Ok((_, results)) => results,
        Err(e) => {
            log::error!("{id}: delivery attempt failed: {e}");
            Vec::new()
        }
    };
    let delay = Duration::from_secs(unix_now().saturating_sub(env.arrival));
    let mut deferred = 0;
    for (rcpt, outcome) in &results {
        let (status_word, relay, dsn, detail) = match outcome {
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
    if deferred == 0 && !results.is_empty() || pending.is_empty() {
        if let Err(e) = spool.remove(id) {
            log::error!("{id}: cannot remove queue file: {e}");
        }
        logline::removed(&id.0);
        return None;
    }
    status.attempts += 1;
    status.next_attempt = unix_now() + backoff(retry, status.attempts).as_secs();
    if let Err(e) = spool.set_status(id, &status) {
        log::error!("{id}: cannot record delivery status: {e}");
    }
    Some(status.next_attempt)
}

/// Runs the scheduler until `events` closes.
pub async fn run(
    ex: Rc<smol::LocalExecutor<'static>>,
    ctx: DeliveryContext,
    retry: Retry,
    events: Receiver<Event>,
    initial: Vec<QueueId>,
) {
    let spool: Spool = ctx.spool.clone();
    let ctx = std::sync::Arc::new(ctx);
    let retry = std::sync::Arc::new(retry);
    // Next attempt time per waiting message.
    let mut waiting: HashMap<QueueId, u64> = HashMap::new();
    let mut in_flight: HashSet<QueueId> = HashSet::new();
    let (done_tx, done_rx): (Sender<(QueueId, Option<u64>)>, _) = smol::channel::unbounded();
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
                let id2 = id.clone();
                let next = smol::unblock(move || process(&ctx, &retry, &id2)).await;
                let _ = done.send((id, next)).await;
            })
            .detach();
        }

        let wait = waiting
            .values()
            .min()
            .map(|&next| Duration::from_secs(next.saturating_sub(now)))
            .unwrap_or(RESCAN)
            .min(RESCAN.saturating_sub(last_rescan.elapsed()));
        enum Wake {
            Event(Option<Event>),
            Done((QueueId, Option<u64>)),
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
            Wake::Done((id, next)) => {
                in_flight.remove(&id);
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
