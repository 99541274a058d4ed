//! The queue manager: decides when each message is tried, asks delivery for an
//! attempt, records outcomes, queues the bounces and notices that follow, and removes
//! messages that are done. It owns its spool; delivery only reports.
//!
//! Events come from inbound sessions (a new message), the wakeup socket (sendmail
//! dropped a file, `queue flush`), and a periodic rescan that catches anything missed.
//!
//! A message from `sendmail` or from the queue itself arrives with its recipients as
//! given (`Envelope::unexpanded`); at its first pick-up they go through the address
//! tables (`address::Rewriter`, the same the SMTP session asks at RCPT), refusals are
//! bounced, and the file is written again with the final recipients. The daemon does
//! it, not `sendmail`, so the tables have one owner — the daemon's flags, re-read on
//! SIGHUP, with the SRS secret in its state directory — and `sendmail root` needs no
//! configuration, as with Postfix, whose `cleanup` and `local` do it after `pickup`.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use super::bounce;
use super::outcome::{ContentSource, Deliver, Disposition, Outcome, Relay};
use super::spool::{Envelope, QueueId, Spool};
use crate::address::{Recipients, Refusal, SharedRewriter};
use crate::clock::unix_now;
use crate::logline;
use crate::mailauth::signing::{SharedKeys, Signer};
use crate::smtp::address::parse_mailbox;

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

/// Queue timing.
#[derive(Debug, Clone)]
pub struct Retry {
    /// After this long in the queue a message is bounced (`--queue-lifetime`).
    pub lifetime: Duration,
    pub min: Duration,
    pub max: Duration,
}

/// What the scheduler owns: the spool, the retry schedule, the host name its own
/// messages (bounces, notices) are sent as, and the address tables and DKIM keys
/// unexpanded messages go through.
pub struct Scheduler {
    pub spool: Spool,
    pub retry: Retry,
    pub hostname: String,
    pub rewriter: SharedRewriter,
    pub dkim: SharedKeys,
}

/// Delay before attempt number `attempts + 1`: doubling from `min`, capped at `max`.
pub fn backoff(retry: &Retry, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    (retry.min * factor).min(retry.max)
}

/// Writes a message the queue composed itself (a bounce, a notice) on the blocking pool.
async fn store(spool: &Spool, env: Envelope, content: Vec<u8>) -> std::io::Result<QueueId> {
    let spool = spool.clone();
    smol::unblock(move || spool.store(&env, &content).map(|()| env.id)).await
}

/// Queues the bounce of `env` for `failed`, quoting its header section (read in
/// bounded memory). Err when it could not be written: the caller keeps the message
/// and tries again rather than lose the news.
async fn queue_bounce(
    q: &Scheduler,
    env: &Envelope,
    failed: &[bounce::Failed<'_>],
    new_ids: &mut Vec<QueueId>,
) -> Result<(), ()> {
    let source = ContentSource::new(&q.spool, &env.id);
    let headers = smol::unblock(move || bounce::returned_headers(&mut source.open()?))
        .await
        .unwrap_or_else(|e| {
            // The failure is news all the same; the bounce says it without the quote.
            log::warn!("{}: cannot read the header to return: {e}", env.id);
            Vec::new()
        });
    let (benv, bcontent) = bounce::delivery_status_notification(&q.hostname, env, &headers, failed);
    match store(&q.spool, benv, bcontent).await {
        Ok(bid) => {
            log::info!("{}: sender non-delivery notification: {bid}", env.id);
            new_ids.push(bid);
            Ok(())
        }
        Err(e) => {
            log::error!("{}: cannot queue the bounce: {e}", env.id);
            Err(())
        }
    }
}

/// One attempt for one message, from reading its envelope to recording the outcome.
/// The content stays on disk: delivery opens it for each reader. Returns the Unix time
/// of the next attempt (`None` when the message has left the queue) and the messages
/// it queued (bounces, notices).
async fn process<D: Deliver>(
    q: &Scheduler,
    delivery: &D,
    id: &QueueId,
) -> (Option<u64>, Vec<QueueId>) {
    let retry = &q.retry;
    let spool = q.spool.clone();
    let id2 = id.clone();
    let loaded = smol::unblock(move || {
        spool
            .open_message(&id2)
            .map(|(env, _content)| (spool.status(&id2), env))
    })
    .await;
    let (mut status, env) = match loaded {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, Vec::new()), // deleted
        Err(e) => {
            log::error!("{id}: cannot read queue file: {e}");
            return (Some(unix_now() + retry.max.as_secs()), Vec::new());
        }
    };
    let mut new_ids = Vec::new();
    let env = if env.unexpanded {
        match pick_up(q, env, &mut new_ids).await {
            Ok(Some(env)) => env,
            Ok(None) => {
                remove(q, id).await;
                return (None, new_ids);
            }
            Err(()) => return (Some(unix_now() + retry.min.as_secs()), new_ids),
        }
    } else {
        env
    };
    let pending: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| !status.finished.contains(r))
        .cloned()
        .collect();
    let content = ContentSource::new(&q.spool, id);
    let attempt = delivery.attempt(&env, &content, &pending).await;
    let mut results = attempt.results;

    for notice in attempt.notices {
        let (nenv, ncontent) =
            bounce::notice(&q.hostname, &notice.to, &notice.subject, &notice.body);
        match store(&q.spool, nenv, ncontent).await {
            Ok(nid) => {
                log::info!("{nid}: {} queued for <{}>", notice.kind, notice.to);
                new_ids.push(nid);
            }
            // A lost notice is logged, not retried: the message itself is unaffected.
            Err(e) => log::error!("cannot queue {}: {e}", notice.kind),
        }
    }

    let age = unix_now().saturating_sub(env.arrival);
    let expired = age >= retry.lifetime.as_secs();
    let delay = Duration::from_secs(age);
    let mut deferred = 0;
    for (rcpt, outcome) in results.iter_mut() {
        if expired && outcome.disposition == Disposition::Deferred {
            // Past --queue-lifetime: give up, the sender gets a bounce (4.x.x kept).
            outcome.disposition = Disposition::Bounced;
            outcome.detail = format!(
                "message expired after {} days; last error: {}",
                age / 86_400,
                outcome.detail
            );
        }
        logline::delivery(
            &id.0,
            rcpt,
            &outcome.relay.to_string(),
            delay,
            &outcome.dsn,
            outcome.disposition.word(),
            &outcome.detail,
        );
        if outcome.is_final() {
            status.finished.push(rcpt.clone());
        } else {
            deferred += 1;
            status.last_reason = format!("{} {}", outcome.dsn, outcome.detail);
        }
    }

    let failed: Vec<bounce::Failed> = results
        .iter()
        .filter(|(_, o)| o.disposition == Disposition::Bounced)
        .map(|(rcpt, outcome)| bounce::Failed { rcpt, outcome })
        .collect();
    // Never bounce a bounce: the null sender gets no notification (RFC 5321 §6.1).
    if !failed.is_empty()
        && !env.sender.is_empty()
        && queue_bounce(q, &env, &failed, &mut new_ids).await.is_err()
    {
        return (Some(unix_now() + retry.min.as_secs()), new_ids);
    }

    if deferred == 0 {
        remove(q, id).await;
        return (None, new_ids);
    }
    let spool = q.spool.clone();
    let id2 = id.clone();
    status.attempts += 1;
    status.next_attempt = unix_now() + backoff(retry, status.attempts).as_secs();
    let next = status.next_attempt;
    if let Err(e) = smol::unblock(move || spool.set_status(&id2, &status)).await {
        log::error!("{id}: cannot record delivery status: {e}");
    }
    (Some(next), new_ids)
}

/// Removes a message that needs nothing more.
async fn remove(q: &Scheduler, id: &QueueId) {
    let (spool, id2) = (q.spool.clone(), id.clone());
    if let Err(e) = smol::unblock(move || spool.remove(&id2)).await {
        log::error!("{id}: cannot remove queue file: {e}");
    }
    logline::removed(&id.0);
}

/// The first pick-up of an unexpanded message: each recipient through the address
/// tables, refused ones bounced (logged as deliveries, `relay=local`), and the file
/// written again with the final recipients and the sender as forwarding makes it.
/// The bounce is queued before the file is replaced: a crash in between repeats the
/// bounce, never loses it. The content is copied from the old file into the new one
/// in pieces, never held. `Ok(None)`: no recipient is left; `Err`: try again later.
async fn pick_up(
    q: &Scheduler,
    mut env: Envelope,
    new_ids: &mut Vec<QueueId>,
) -> Result<Option<Envelope>, ()> {
    let rewriter = q.rewriter.borrow().clone();
    let now = unix_now();
    let mut queued = Recipients::default();
    let mut refused: Vec<(String, Outcome)> = Vec::new();
    for rcpt in &env.recipients {
        let Ok(Some(m)) = parse_mailbox(rcpt, true, false, false) else {
            // Not an address the tables could know (sendmail checked it): as it is.
            queued.keep(rcpt);
            continue;
        };
        match rewriter.recipient(&m, now) {
            Ok(r) => queued.add(r),
            Err(refusal) => refused.push((rcpt.clone(), refusal_outcome(&refusal))),
        }
    }
    for (rcpt, outcome) in &refused {
        logline::delivery(
            &env.id.0,
            rcpt,
            &outcome.relay.to_string(),
            Duration::from_secs(now.saturating_sub(env.arrival)),
            &outcome.dsn,
            outcome.disposition.word(),
            &outcome.detail,
        );
    }
    let failed: Vec<bounce::Failed> = refused
        .iter()
        .map(|(rcpt, outcome)| bounce::Failed { rcpt, outcome })
        .collect();
    // Never bounce a bounce (RFC 5321 §6.1): a refused bounce is dropped, logged above.
    if !failed.is_empty() && !env.sender.is_empty() {
        queue_bounce(q, &env, &failed, new_ids).await?;
    }
    if queued.is_empty() {
        return Ok(None);
    }
    env.sender = rewriter.sender(&env.sender, queued.forwarded(), now);
    env.recipients = queued.as_slice().to_vec();
    env.unexpanded = false;
    // Mail from this host is mail we originate: DKIM-signed here, once, as an SMTP
    // session signs its own clients' mail at DATA. The content is copied from the old
    // file into the new one (same ID) through the signer; the signature is appended at
    // commit, and delivery reads it first.
    let keys = q.dkim.borrow().clone();
    let signer = (!keys.is_empty()).then(Signer::new);
    let (spool, env2) = (q.spool.clone(), env.clone());
    let copied = smol::unblock(move || copy_in(&spool, &env2, signer)).await;
    let (file, copied, signer) = match copied {
        Ok(c) => c,
        Err(e) => {
            log::error!("{}: cannot write the expanded queue file: {e}", env.id);
            return Err(());
        }
    };
    let pending = signer.map(|s| s.finish(&rewriter.tables));
    let (spool, id) = (q.spool.clone(), env.id.clone());
    let committed = smol::unblock(move || {
        let signing = pending.map(|p| p.sign(&keys, unix_now()));
        let fields = signing.as_ref().and_then(|s| s.as_ref().ok());
        let fields = fields.map_or(&[][..], |s| &s.fields);
        let size = copied + fields.len() as u64;
        spool.commit(&id, file, fields).map(|()| (signing, size))
    })
    .await;
    match committed {
        Ok((signing, size)) => {
            let notes: Vec<String> = signing
                .and_then(|s| logline::dkim(&env.id.0, &s))
                .into_iter()
                .collect();
            logline::queued(&env.id.0, &env.sender, size, env.recipients.len(), &notes);
            Ok(Some(env))
        }
        Err(e) => {
            log::error!("{}: cannot write the expanded queue file: {e}", env.id);
            Err(())
        }
    }
}

/// Copies the content of the queued message `env.id` into a new, uncommitted file
/// under `env` ([`Spool::copy_in`]), feeding `signer` on the way. The old file stays
/// readable through its open descriptor while the new one is written beside it and
/// later renamed over it. Blocking.
fn copy_in(
    spool: &Spool,
    env: &Envelope,
    mut signer: Option<Signer>,
) -> std::io::Result<(std::fs::File, u64, Option<Signer>)> {
    let (_, content) = spool.open_message(&env.id)?;
    let mut reader = Feeding {
        inner: content,
        signer: signer.as_mut(),
    };
    let (file, copied) = spool.copy_in(env, &mut reader)?;
    Ok((file, copied, signer))
}

/// A reader that hands what it reads to a DKIM signer too.
struct Feeding<'a, R> {
    inner: R,
    signer: Option<&'a mut Signer>,
}

impl<R: std::io::Read> std::io::Read for Feeding<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(signer) = self.signer.as_deref_mut() {
            signer.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A refused recipient as a bounced outcome: the reply an SMTP client would have got.
fn refusal_outcome(refusal: &Refusal) -> Outcome {
    Outcome::new(
        Disposition::Bounced,
        Relay::Local,
        refusal.status(),
        format!("Recipient address rejected: {refusal}"),
    )
}

/// A finished attempt: the message, its next attempt time, bounces it queued.
type Finished = (QueueId, Option<u64>, Vec<QueueId>);

/// Runs the scheduler until `events` closes, with attempts spawned on `ex`.
pub async fn run<D: Deliver + 'static>(
    ex: Rc<smol::LocalExecutor<'static>>,
    queue: Scheduler,
    delivery: Rc<D>,
    events: Receiver<Event>,
    initial: Vec<QueueId>,
) {
    let queue = Rc::new(queue);
    let spool = &queue.spool;
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
            let (queue, delivery, done) = (queue.clone(), delivery.clone(), done_tx.clone());
            ex.spawn(async move {
                let (next, new_ids) = process(&queue, &*delivery, &id).await;
                let _ = done.send((id, next, new_ids)).await;
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
                rescan(spool, &mut waiting, &in_flight);
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
                    rescan(spool, &mut waiting, &in_flight);
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
    use crate::address::Rewriter;
    use crate::queue::outcome::{Attempt, Notice};
    use std::cell::RefCell;

    /// Delivery that refuses every recipient the way a remote server does, and asks
    /// for one notice.
    struct Refusing;

    impl Deliver for Refusing {
        async fn attempt(
            &self,
            _env: &Envelope,
            _content: &ContentSource,
            pending: &[String],
        ) -> Attempt {
            let outcome = Outcome::sample_rcpt_refused();
            Attempt {
                results: pending
                    .iter()
                    .map(|r| (r.clone(), outcome.clone()))
                    .collect(),
                notices: vec![Notice {
                    kind: "test notice",
                    to: "admin@example.org".into(),
                    subject: "attention".into(),
                    body: "something happened\n".into(),
                }],
            }
        }
    }

    #[test]
    fn the_scheduler_queues_the_bounce_and_the_notice_delivery_reports() {
        let dir = std::env::temp_dir().join(format!("tinymta-scheduler-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let env = Envelope {
            id: QueueId::generate(),
            arrival: unix_now(),
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            client: "localhost[127.0.0.1]".into(),
            protocol: "ESMTP".into(),
            unexpanded: false,
        };
        spool.store(&env, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let queue = test_scheduler(&spool, Rewriter::none(&[]));

        let (next, new_ids) = smol::block_on(process(&queue, &Refusing, &env.id));
        assert_eq!(next, None, "a bounced message leaves the queue");
        assert!(spool.read_content(&env.id).is_err());
        let queued: Vec<(Envelope, String)> = new_ids
            .iter()
            .map(|id| {
                let (e, c) = spool.read_content(id).unwrap();
                (e, String::from_utf8(c).unwrap())
            })
            .collect();
        assert_eq!(queued.len(), 2);
        let find = |to: &str| {
            queued
                .iter()
                .find(|(e, _)| e.recipients == [to])
                .map(|(_, text)| text)
                .unwrap()
        };
        assert!(find("alice@example.org").contains(
            "Remote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user (in reply to RCPT TO command)\r\n"
        ));
        let notice = find("admin@example.org");
        assert!(notice.contains("Subject: attention\r\n") && notice.contains("something happened"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Delivery that takes everything and remembers the envelope it was given and the
    /// content it read.
    struct Recording(RefCell<Vec<(Envelope, Vec<u8>)>>);

    impl Deliver for Recording {
        async fn attempt(
            &self,
            env: &Envelope,
            content: &ContentSource,
            pending: &[String],
        ) -> Attempt {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut content.open().unwrap(), &mut bytes).unwrap();
            self.0.borrow_mut().push((env.clone(), bytes));
            let sent = Outcome::new(Disposition::Sent, Relay::Local, "2.0.0", "ok".into());
            pending
                .iter()
                .map(|r| (r.clone(), sent.clone()))
                .collect::<Vec<_>>()
                .into()
        }
    }

    #[test]
    fn an_unexpanded_message_is_expanded_once_and_refusals_bounce() {
        use crate::address::{srs::Secrets, Srs, TablePaths, Tables};
        let dir = std::env::temp_dir().join(format!("tinymta-pickup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(
            &aliases,
            "root: alice, far@example.net\nloop: loop2\nloop2: loop\n",
        )
        .unwrap();
        let paths = TablePaths {
            aliases: Some(aliases),
            ..TablePaths::default()
        };
        let rewriter = Rewriter {
            tables: Tables::load(&paths, &["example.org".to_string()]).unwrap(),
            srs: Some(Srs {
                domain: "example.org".into(),
                secrets: Secrets::new(&["k"]).unwrap(),
            }),
        };
        let env = Envelope {
            id: QueueId::generate(),
            arrival: unix_now(),
            sender: "carol@example.net".into(),
            recipients: vec!["root@example.org".into(), "loop@example.org".into()],
            client: "local".into(),
            protocol: "local".into(),
            unexpanded: true,
        };
        spool.store(&env, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let queue = test_scheduler(&spool, rewriter);
        let delivery = Recording(RefCell::new(Vec::new()));
        let (next, new_ids) = smol::block_on(process(&queue, &delivery, &env.id));
        assert_eq!(next, None);
        let seen = delivery.0.borrow();
        // The file written again holds the same content, copied in pieces.
        assert_eq!(seen[0].1, b"Subject: hi\r\n\r\nbody\r\n");
        let seen: Vec<&Envelope> = seen.iter().map(|(e, _)| e).collect();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].recipients, ["alice@example.org", "far@example.net"]);
        assert!(!seen[0].unexpanded);
        assert!(
            seen[0].sender.starts_with("SRS0="),
            "forwarded: {}",
            seen[0].sender
        );
        // The loop bounced to the sender; the bounce itself waits for its own pick-up.
        assert_eq!(new_ids.len(), 1);
        let (benv, bounce) = spool.read_content(&new_ids[0]).unwrap();
        assert_eq!((benv.sender.as_str(), benv.unexpanded), ("", true));
        assert_eq!(benv.recipients, ["carol@example.net"]);
        let bounce = String::from_utf8(bounce).unwrap();
        assert!(
            bounce.contains(
                "Final-Recipient: rfc822; loop@example.org\r\nAction: failed\r\nStatus: 5.4.6\r\n"
            ),
            "{bounce}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Postfix's defaults: 5 days, 300 s doubling to 3600 s.
    fn default_retry() -> Retry {
        Retry {
            lifetime: Duration::from_secs(432_000),
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
        }
    }

    fn test_scheduler(spool: &Spool, rewriter: Rewriter) -> Scheduler {
        Scheduler {
            spool: spool.clone(),
            retry: default_retry(),
            hostname: "mx.example.org".into(),
            rewriter: Rc::new(RefCell::new(Rc::new(rewriter))),
            dkim: Default::default(),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = default_retry();
        let secs: Vec<u64> = (1..=6).map(|a| backoff(&r, a).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 3600, 3600]);
    }
}
