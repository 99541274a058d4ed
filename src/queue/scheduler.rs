//! The queue manager: decides when each message is tried, asks delivery for an
//! attempt, records outcomes, queues the bounces and notices that follow, and removes
//! messages that are done. It owns its spool; delivery only reports.
//!
//! Events come from inbound sessions (a new message), the wakeup socket (sendmail
//! dropped a file, `queue flush`, `queue delete`), and a periodic rescan that catches
//! anything missed. When each message is tried next is a timer heap (`Schedule`), so
//! a wakeup costs O(log n) per message it starts, not a walk over the queue; the
//! rescan runs only when `messages/` changed and picks up only IDs it does not know.
//!
//! A message from `sendmail` or from the queue itself arrives with its recipients as
//! given (`Envelope::unexpanded`); at its first pick-up they go through the address
//! tables (`address::Rewriter`, the same the SMTP session asks at RCPT), refusals are
//! bounced, and the file is written again with the final recipients. The daemon does
//! it, not `sendmail`, so the tables have one owner — the daemon's flags, re-read on
//! SIGHUP, with the SRS secret in its state directory — and `sendmail root` needs no
//! configuration, as with Postfix, whose `cleanup` and `local` do it after `pickup`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use super::bounce;
use super::outcome::{ContentSource, Deliver, Disposition, Outcome, Relay, REQUIRETLS_DEFERRED};
use super::spool::{Envelope, EnvelopeDsn, QueueId, QueueKey, Spool};
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
    /// A message was committed (by this process, or by `sendmail`, which names it).
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
    /// After this long in the queue the sender is warned, once per recipient
    /// (`--delay-warning-time`; zero: never).
    pub delay_warning: Duration,
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
    crate::runtime::unblock(move || spool.store(&env, &content).map(|()| env.id)).await
}

/// Queues the report of `kind` to the sender of `env` about `reported`, returning what
/// RET asks of the message (read in bounded memory). Err when it could not be
/// written: for a failure the caller keeps the message and tries again rather than
/// lose the news.
async fn queue_report(
    q: &Scheduler,
    env: &Envelope,
    kind: bounce::ReportKind,
    reported: &[bounce::Reported<'_>],
    new_ids: &mut Vec<QueueId>,
) -> Result<(), ()> {
    let source = ContentSource::new(&q.spool, &env.id);
    let original = env.clone();
    let returned = crate::runtime::unblock(move || {
        let mut content = source.open()?;
        let size = content.size();
        bounce::returned(&original, kind, &mut content, size)
    })
    .await
    .unwrap_or_else(|e| {
        // The news is news all the same; the report says it without the quote.
        log::warn!("{}: cannot read the message to return: {e}", env.id);
        bounce::Returned::Headers(Vec::new())
    });
    let retry_until = env.arrival + q.retry.lifetime.as_secs();
    let (benv, bcontent) = bounce::delivery_status_notification(
        &q.hostname,
        env,
        kind,
        &returned,
        reported,
        Some(retry_until),
    );
    match store(&q.spool, benv, bcontent).await {
        Ok(bid) => {
            log::info!("{}: {}: {bid}", env.id, kind.log_name());
            new_ids.push(bid);
            Ok(())
        }
        Err(e) => {
            log::error!("{}: cannot queue the {}: {e}", env.id, kind.log_name());
            Err(())
        }
    }
}

/// The reports an attempt's `results` call for, as each recipient's NOTIFY asks
/// (none given: failures and delays): failures, delays (for recipients `delay_due`
/// says are due a warning) and successes — `delivered` here, `relayed` to a next
/// hop without DSN; a next hop with DSN reports itself. Never a report to the null
/// sender: a bounce is not bounced (RFC 5321 §6.1, RFC 3461 §6.2).
fn reports_for<'a>(
    env: &Envelope,
    results: &'a [(String, Outcome)],
    delay_due: impl Fn(&str) -> bool,
) -> [(bounce::ReportKind, Vec<bounce::Reported<'a>>); 3] {
    use bounce::{Action, ReportKind};
    let (mut failures, mut delays, mut successes) = (Vec::new(), Vec::new(), Vec::new());
    for (rcpt, outcome) in results.iter().filter(|_| !env.sender.is_empty()) {
        let dsn = env.dsn.rcpt(rcpt);
        let (list, action) = match outcome.disposition {
            Disposition::Bounced if dsn.wants_failure() => (&mut failures, Action::Failed),
            Disposition::Deferred if dsn.wants_delay() && delay_due(rcpt) => {
                (&mut delays, Action::Delayed)
            }
            Disposition::Sent if dsn.wants_success() => match outcome.relay {
                Relay::Local => (&mut successes, Action::Delivered),
                _ if outcome.next_hop_dsn => continue,
                _ => (&mut successes, Action::Relayed),
            },
            _ => continue,
        };
        list.push(bounce::Reported {
            rcpt,
            outcome,
            action,
            dsn,
        });
    }
    [
        (ReportKind::Failure, failures),
        (ReportKind::Delay, delays),
        (ReportKind::Success, successes),
    ]
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
    let loaded = crate::runtime::unblock(move || {
        spool
            .open_message(&id2)
            .map(|(env, _content)| (spool.status(&id2), env))
    })
    .await;
    let (mut status, env) = match loaded {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, Vec::new()), // deleted
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            // Not a queue file this version can read: set aside, never retried.
            quarantine(q, id, &e).await;
            return (None, Vec::new());
        }
        Err(e) => {
            // A read error (EIO): the file may read again later; nothing is decided.
            log::error!("{id}: cannot read queue file: {e}; deferred");
            return (Some(unix_now() + retry.min.as_secs()), Vec::new());
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
            // Past --queue-lifetime: give up, the sender gets a bounce (4.x.x kept,
            // as Postfix does, but for REQUIRETLS, whose failure RFC 8689 names 5.7.30).
            outcome.disposition = Disposition::Bounced;
            if outcome.dsn == REQUIRETLS_DEFERRED {
                outcome.dsn = "5.7.30".to_string();
            }
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

    // A delay warning once per recipient, after --delay-warning-time (0: never).
    let warn_after = retry.delay_warning.as_secs();
    let delay_due = |rcpt: &str| {
        warn_after > 0 && age >= warn_after && !status.warned.iter().any(|w| w == rcpt)
    };
    let reports = reports_for(&env, &results, delay_due);
    let mut warned = Vec::new();
    for (kind, reported) in reports.iter().filter(|(_, r)| !r.is_empty()) {
        let queued = queue_report(q, &env, *kind, reported, &mut new_ids).await;
        match (kind, queued) {
            // Keep the message and try again rather than lose the news.
            (bounce::ReportKind::Failure, Err(())) => {
                return (Some(unix_now() + retry.min.as_secs()), new_ids)
            }
            (bounce::ReportKind::Delay, Ok(())) => {
                warned.extend(reported.iter().map(|r| r.rcpt.to_string()))
            }
            _ => {}
        }
    }
    status.warned.extend(warned);

    if deferred == 0 {
        remove(q, id).await;
        return (None, new_ids);
    }
    let spool = q.spool.clone();
    let id2 = id.clone();
    status.attempts += 1;
    status.next_attempt = unix_now() + backoff(retry, status.attempts).as_secs();
    let next = status.next_attempt;
    if let Err(e) = crate::runtime::unblock(move || spool.set_status(&id2, &status)).await {
        log::error!("{id}: cannot record delivery status: {e}");
    }
    (Some(next), new_ids)
}

/// Moves a queue file that does not parse to `<state-dir>/corrupt/`, with one log line
/// naming it and where it went. When even that fails it stays where it is (and is
/// tried again later, not in a loop).
async fn quarantine(q: &Scheduler, id: &QueueId, why: &std::io::Error) {
    let (spool, id2) = (q.spool.clone(), id.clone());
    match crate::runtime::unblock(move || spool.quarantine(&id2)).await {
        Ok(to) => log::error!(
            "{id}: corrupt queue file ({why}): moved to {}",
            to.display()
        ),
        Err(e) => log::error!("{id}: corrupt queue file ({why}), cannot move it aside: {e}"),
    }
}

/// Removes a message that needs nothing more.
async fn remove(q: &Scheduler, id: &QueueId) {
    let (spool, id2) = (q.spool.clone(), id.clone());
    if let Err(e) = crate::runtime::unblock(move || spool.remove(&id2)).await {
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
    // What each recipient asked for (DSN) goes to every address it becomes.
    let mut dsn = EnvelopeDsn {
        message: env.dsn.message.clone(),
        rcpts: Vec::new(),
    };
    for rcpt in &env.recipients {
        let asked = env.dsn.rcpt(rcpt);
        let Ok(Some(m)) = parse_mailbox(rcpt, true, false, false) else {
            // Not an address the tables could know (sendmail checked it): as it is.
            queued.keep(rcpt);
            dsn.set(rcpt, &asked);
            continue;
        };
        match rewriter.recipient(&m, now) {
            Ok(r) => {
                for t in &r.targets {
                    dsn.set(&t.to_string(), &asked);
                }
                queued.add(r)
            }
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
    // A refused bounce is dropped (reports_for), logged above.
    let [(kind, failed), ..] = reports_for(&env, &refused, |_| false);
    if !failed.is_empty() {
        queue_report(q, &env, kind, &failed, new_ids).await?;
    }
    if queued.is_empty() {
        return Ok(None);
    }
    env.sender = rewriter.sender(&env.sender, queued.forwarded(), now);
    env.recipients = queued.as_slice().to_vec();
    env.dsn = dsn;
    env.unexpanded = false;
    // Mail from this host is mail we originate: DKIM-signed here, once, as an SMTP
    // session signs its own clients' mail at DATA. The content is copied from the old
    // file into the new one (same ID) through the signer; the signature is appended at
    // commit, and delivery reads it first.
    let keys = q.dkim.borrow().clone();
    let signer = (!keys.is_empty()).then(Signer::new);
    let (spool, env2) = (q.spool.clone(), env.clone());
    let copied = crate::runtime::unblock(move || copy_in(&spool, &env2, signer)).await;
    let (file, copied, signer) = match copied {
        Ok(c) => c,
        Err(e) => {
            log::error!("{}: cannot write the expanded queue file: {e}", env.id);
            return Err(());
        }
    };
    let pending = signer.map(|s| s.finish(&rewriter.tables));
    let (spool, id) = (q.spool.clone(), env.id.clone());
    let committed = crate::runtime::unblock(move || {
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
                .chain(logline::requiretls(env.requiretls))
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

/// The mark of a message being tried in `Schedule::known`.
const IN_FLIGHT: u64 = u64::MAX;

/// When each message is tried next (Postfix keeps that time in each deferred file's
/// modification time and finds the due ones by scanning the directory; in memory a
/// heap answers without a scan): a min-heap of (next attempt, message) beside a map
/// of each message's current time. Rescheduling pushes a new heap entry and leaves the old one behind; an entry
/// whose time no longer matches the map is stale and dropped when it reaches the top
/// (lazy deletion), and the heap is rebuilt once stale entries outnumber live ones.
/// Finding the next due message and rescheduling are O(log n); only `flush` walks
/// the whole queue. 48 bytes per message and a little slack (a 16-byte key and a
/// time in each).
#[derive(Default)]
struct Schedule {
    /// Every message the scheduler knows: its next attempt (Unix time), or `IN_FLIGHT`.
    known: HashMap<QueueKey, u64>,
    /// Earliest first; possibly stale (see above).
    timers: BinaryHeap<Reverse<(u64, QueueKey)>>,
}

impl Schedule {
    /// Sized for `n` messages at once: a map and a heap grown by doubling leave the
    /// smaller tables behind in the allocator, resident.
    fn with_capacity(n: usize) -> Schedule {
        Schedule {
            known: HashMap::with_capacity(n),
            timers: BinaryHeap::with_capacity(n),
        }
    }

    /// Messages known (waiting or being tried).
    fn len(&self) -> usize {
        self.known.len()
    }

    fn knows(&self, key: &QueueKey) -> bool {
        self.known.contains_key(key)
    }

    /// A new message (received, dropped by `sendmail`, a bounce): due now, unless it
    /// is being tried already.
    fn due_now(&mut self, id: &QueueId) {
        let key = QueueKey::new(id);
        if self.known.get(&key) != Some(&IN_FLIGHT) {
            self.set(key, 0);
        }
    }

    /// A message found on disk with its recorded next attempt. Returns false (and
    /// changes nothing) when it is known already: what the scheduler knows is newer.
    fn add_found(&mut self, key: QueueKey, next: u64) -> bool {
        if self.knows(&key) {
            return false;
        }
        self.set(key, next);
        true
    }

    /// A deleted message: its heap entry goes stale.
    fn forget(&mut self, id: &QueueId) {
        self.known.remove(&QueueKey::new(id));
    }

    /// `queue flush`: every waiting message due now. Returns how many.
    fn flush(&mut self) -> usize {
        let mut n = 0;
        for next in self.known.values_mut().filter(|n| **n != IN_FLIGHT) {
            *next = 0;
            n += 1;
        }
        self.rebuild();
        n
    }

    /// The earliest waiting message if it is due at `now`, marked as being tried.
    fn pop_due(&mut self, now: u64) -> Option<QueueId> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse((_, key)) = self.timers.pop()?;
        let id = key.id();
        self.known.insert(key, IN_FLIGHT);
        Some(id)
    }

    /// When the earliest waiting message is due; stale entries on top are dropped.
    fn next_due(&mut self) -> Option<u64> {
        while let Some(Reverse((next, key))) = self.timers.peek() {
            if self.known.get(key) == Some(next) {
                return Some(*next);
            }
            self.timers.pop();
        }
        None
    }

    /// An attempt ended: the message waits until `next`, or has left the queue. One
    /// forgotten while it was being tried stays forgotten.
    fn finished(&mut self, id: &QueueId, next: Option<u64>) {
        let key = QueueKey::new(id);
        if self.known.get(&key) != Some(&IN_FLIGHT) {
            return;
        }
        match next {
            Some(next) => self.set(key, next),
            None => {
                self.known.remove(&key);
            }
        }
    }

    fn set(&mut self, key: QueueKey, next: u64) {
        self.known.insert(key.clone(), next);
        self.timers.push(Reverse((next, key)));
        // Each rebuild follows at least len() + 64 pushes: O(1) per push, amortized.
        if self.timers.len() > 2 * self.known.len() + 64 {
            self.rebuild();
        }
    }

    /// The heap again from the map, without stale entries.
    fn rebuild(&mut self) {
        let live: Vec<_> = self
            .known
            .iter()
            .filter(|(_, &next)| next != IN_FLIGHT)
            .map(|(key, &next)| Reverse((next, key.clone())))
            .collect();
        self.timers = BinaryHeap::from(live);
    }
}

/// How many status records one blocking-pool job reads at a time when messages are
/// recovered at start-up or found by a rescan.
const LOAD_CHUNK: usize = 1024;
/// Jobs reading status records at once: the files are small and scattered, and a few
/// reads in flight keep a disk (or flash) busier than one; the event loop goes on
/// meanwhile (mail is received and new messages delivered during a long recovery).
const LOAD_JOBS: usize = 4;

/// What the scheduler's own tasks report to its event loop.
enum Report {
    /// An attempt ended.
    Done(Finished),
    /// A rescan listed `messages/`.
    Listed(std::io::Result<Vec<QueueKey>>),
    /// Status records read: each message with its next attempt.
    Found(Vec<(QueueKey, u64)>),
    /// A job reading status records has finished.
    Loaded,
}

/// The search for messages the schedule does not know: the recovered ones at
/// start-up, then files other processes dropped without telling us.
struct Scan {
    /// A listing or status reads are under way.
    busy: bool,
    /// Jobs still reading status records.
    jobs: usize,
    /// Another rescan was asked for meanwhile.
    again: bool,
    /// `queue flush` came while status records were read: what they bring is due now.
    flushed: bool,
    /// Names a rescan listed, messages it added, and when it began.
    names: usize,
    added: usize,
    began: Instant,
    /// The first scan is the start-up recovery.
    recovery: bool,
    /// The modification time of `messages/` read before the last complete listing,
    /// and when that listing began (see `Scan::is_current`).
    listed: Option<(SystemTime, SystemTime)>,
    /// The same for the listing under way.
    listing: Option<(SystemTime, SystemTime)>,
}

impl Scan {
    /// Nothing can have been added to `messages/` since the last listing: the
    /// directory's modification time is the one read before it, and that time was
    /// at least two seconds older than the listing (on file systems that keep whole
    /// seconds, a file added just after the listing in the same second would leave
    /// the time unchanged).
    fn is_current(&self, mtime: Option<SystemTime>) -> bool {
        match (self.listed, mtime) {
            (Some((seen, at)), Some(now)) => {
                now == seen
                    && at
                        .duration_since(seen)
                        .is_ok_and(|d| d >= Duration::from_secs(2))
            }
            _ => false,
        }
    }
}

/// The modification time of `messages/`: it changes whenever a file is renamed in.
fn messages_mtime(spool: &Spool) -> Option<SystemTime> {
    std::fs::metadata(spool.messages_dir())
        .and_then(|m| m.modified())
        .ok()
}

/// Time the event loop spends deciding, for the debug log (bench/queue_scale reads it).
#[derive(Default)]
struct Stats {
    /// Attempts started since the queue was last idle.
    started: u64,
    /// Time spent in the loop meanwhile, except on what a scan listed and read.
    busy: Duration,
}

/// The scheduler's event loop state.
struct Manager<D> {
    ex: Rc<smol::LocalExecutor<'static>>,
    queue: Rc<Scheduler>,
    delivery: Rc<D>,
    schedule: Schedule,
    in_flight: usize,
    reports: Sender<Report>,
    scan: Scan,
    stats: Stats,
}

impl<D: Deliver + 'static> Manager<D> {
    /// Starts attempts for due messages, earliest first, up to `MAX_IN_FLIGHT`: the
    /// work of one wakeup is bounded whatever the size of the queue.
    fn start_due(&mut self, now: u64) {
        while self.in_flight < MAX_IN_FLIGHT {
            let Some(id) = self.schedule.pop_due(now) else {
                break;
            };
            self.in_flight += 1;
            self.stats.started += 1;
            let (queue, delivery) = (self.queue.clone(), self.delivery.clone());
            let reports = self.reports.clone();
            crate::runtime::spawn_detached(&self.ex, async move {
                let (next, new_ids) = process(&queue, &*delivery, &id).await;
                let _ = reports.send(Report::Done((id, next, new_ids))).await;
            });
        }
    }

    /// Lists `messages/` on the blocking pool; the unknown IDs are loaded after.
    fn rescan(&mut self) {
        if self.scan.busy {
            self.scan.again = true;
            return;
        }
        self.begin_scan(false);
        let spool = self.queue.spool.clone();
        self.scan.listing = messages_mtime(&spool).map(|m| (m, SystemTime::now()));
        let reports = self.reports.clone();
        crate::runtime::spawn_detached(&self.ex, async move {
            let listed =
                crate::runtime::unblock(move || spool.keys().map(|keys| keys.collect())).await;
            let _ = reports.send(Report::Listed(listed)).await;
        });
    }

    fn begin_scan(&mut self, recovery: bool) {
        self.scan.busy = true;
        self.scan.recovery = recovery;
        self.scan.names = 0;
        self.scan.added = 0;
        self.scan.began = Instant::now();
    }

    /// Reads the status records of `keys` on the blocking pool, `LOAD_CHUNK` at a
    /// time in up to `LOAD_JOBS` jobs that take the next chunk when one is done.
    fn load(&mut self, keys: Vec<QueueKey>) {
        let jobs = LOAD_JOBS.min(keys.len().div_ceil(LOAD_CHUNK));
        let keys = Rc::new(keys);
        let taken = Rc::new(std::cell::Cell::new(0));
        for _ in 0..jobs {
            let (spool, reports) = (self.queue.spool.clone(), self.reports.clone());
            let (keys, taken) = (keys.clone(), taken.clone());
            self.scan.jobs += 1;
            crate::runtime::spawn_detached(&self.ex, async move {
                while taken.get() < keys.len() {
                    let start = taken.get();
                    let end = keys.len().min(start + LOAD_CHUNK);
                    taken.set(end);
                    let chunk = keys[start..end].to_vec();
                    let spool = spool.clone();
                    let found = crate::runtime::unblock(move || {
                        chunk
                            .into_iter()
                            .map(|key| {
                                let next = spool.status(&key.id()).next_attempt;
                                (key, next)
                            })
                            .collect()
                    })
                    .await;
                    let _ = reports.send(Report::Found(found)).await;
                }
                let _ = reports.send(Report::Loaded).await;
            });
        }
        if self.scan.jobs == 0 {
            self.end_scan();
        }
    }

    fn end_scan(&mut self) {
        let took = crate::clock::millis(self.scan.began.elapsed());
        if self.scan.recovery {
            log::info!(
                "queue: {} message(s) scheduled in {took} ms",
                self.schedule.len()
            );
        } else {
            log::debug!(
                "queue: rescan of {} name(s) found {} new message(s) in {took} ms",
                self.scan.names,
                self.scan.added
            );
        }
        self.scan.busy = false;
        self.scan.flushed = false;
        if std::mem::take(&mut self.scan.again) {
            self.rescan();
        }
    }

    /// Handles one report.
    fn report(&mut self, report: Report) {
        match report {
            Report::Done((id, next, new_ids)) => {
                self.in_flight -= 1;
                self.schedule.finished(&id, next);
                for new in &new_ids {
                    self.schedule.due_now(new);
                }
                if self.in_flight == 0 && self.stats.started > 0 {
                    let stats = std::mem::take(&mut self.stats);
                    // Tenths of a microsecond in integers: `{:.1}` of an f64 is 15 KB
                    // of float formatting on a soft-float router (see logline).
                    let tenths = crate::clock::nanos(stats.busy) / 100 / stats.started;
                    log::debug!(
                        "scheduler: {} attempt(s) started, {}.{} us of scheduling each; {} message(s) queued, {} timer(s)",
                        stats.started,
                        tenths / 10,
                        tenths % 10,
                        self.schedule.len(),
                        self.schedule.timers.len()
                    );
                }
            }
            Report::Listed(Ok(mut keys)) => {
                self.scan.listed = self.scan.listing.take();
                self.scan.names = keys.len();
                keys.retain(|k| !self.schedule.knows(k));
                self.load(keys);
            }
            Report::Listed(Err(e)) => {
                log::error!("cannot list queue: {e}");
                self.end_scan();
            }
            Report::Found(found) => {
                for (key, next) in found {
                    let next = if self.scan.flushed { 0 } else { next };
                    if self.schedule.add_found(key, next) {
                        self.scan.added += 1;
                    }
                }
            }
            Report::Loaded => {
                self.scan.jobs -= 1;
                if self.scan.jobs == 0 {
                    self.end_scan();
                }
            }
        }
    }

    /// Handles one event from outside.
    fn event(&mut self, event: Event) {
        match event {
            Event::New(id) => self.schedule.due_now(&id),
            Event::Flush => {
                let n = self.schedule.flush();
                if self.scan.busy {
                    self.scan.flushed = true;
                }
                log::info!("queue flush requested: {n} message(s)");
            }
            Event::Forget(id) => self.schedule.forget(&id),
            Event::Rescan => self.rescan(),
        }
    }
}

/// Runs the scheduler until `events` closes, with attempts spawned on `ex`. The
/// `initial` messages (recovered at start-up) are scheduled as their status records
/// are read, in the background.
pub async fn run<D: Deliver + 'static>(
    ex: Rc<smol::LocalExecutor<'static>>,
    queue: Scheduler,
    delivery: Rc<D>,
    events: Receiver<Event>,
    initial: Vec<QueueKey>,
) {
    let (reports, report_rx) = smol::channel::unbounded();
    let mut m = Manager {
        ex,
        queue: Rc::new(queue),
        delivery,
        schedule: Schedule::with_capacity(initial.len()),
        in_flight: 0,
        reports,
        scan: Scan {
            busy: false,
            jobs: 0,
            again: false,
            flushed: false,
            names: 0,
            added: 0,
            began: Instant::now(),
            recovery: true,
            listed: None,
            listing: None,
        },
        stats: Stats::default(),
    };
    m.begin_scan(true);
    m.load(initial);
    // The periodic rescan; the first listing is the recovery's, whose directory time
    // is unknown, so the first tick lists once more (it also finds a file dropped
    // between that listing and the wakeup socket).
    let mut last_tick = Instant::now();

    loop {
        let woke = Instant::now();
        let now = unix_now();
        m.start_due(now);
        let wait = m
            .schedule
            .next_due()
            .map(|next| Duration::from_secs(next.saturating_sub(now)))
            .unwrap_or(RESCAN)
            .min(RESCAN.saturating_sub(last_tick.elapsed()));
        m.stats.busy += woke.elapsed();

        enum Wake {
            Event(Option<Event>),
            Report(Report),
            Timer,
        }
        let wake = async { Wake::Event(events.recv().await.ok()) }
            .or(async {
                match report_rx.recv().await {
                    Ok(r) => Wake::Report(r),
                    Err(_) => std::future::pending().await,
                }
            })
            .or(async {
                // Below one second the queue's second-resolution times would spin.
                smol::Timer::after(wait.max(Duration::from_millis(200))).await;
                Wake::Timer
            })
            .await;
        let woke = Instant::now();
        // What a scan lists and reads is counted in its own log line, not here.
        let scan_work = matches!(
            wake,
            Wake::Report(Report::Listed(_) | Report::Found(_) | Report::Loaded)
        );
        match wake {
            Wake::Event(None) => return,
            Wake::Event(Some(event)) => m.event(event),
            Wake::Report(report) => m.report(report),
            Wake::Timer => {
                if last_tick.elapsed() >= RESCAN {
                    last_tick = Instant::now();
                    // Only when `messages/` may have changed: on an idle queue of
                    // deferred messages, nothing but a stat every minute.
                    if !m.scan.is_current(messages_mtime(&m.queue.spool)) {
                        m.rescan();
                    }
                }
            }
        }
        if !scan_work {
            m.stats.busy += woke.elapsed();
        }
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
            requiretls: false,
            dsn: Default::default(),
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
            requiretls: false,
            dsn: Default::default(),
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

    #[test]
    fn a_corrupt_queue_file_is_set_aside_not_retried() {
        let dir = std::env::temp_dir().join(format!("tinymta-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let queue = test_scheduler(&spool, Rewriter::none(&[]));
        let delivery = Recording(RefCell::new(Vec::new()));
        let cases: [&[u8]; 3] = [
            b"tinymta-queue 2\nheaders-at 00000000000000000000\nid 6566D1A2F3B9C1\n",
            b"\x00\xff garbage \xfe\n\n",
            b"tinymta-queue 9\nid 6566D1A2F3B9C1\nrcpt a@b.example\n\nx",
        ];
        for (n, bytes) in cases.iter().enumerate() {
            let id = qid(n as u64 + 1);
            std::fs::write(spool.message_path(&id), bytes).unwrap();
            let (next, new_ids) = smol::block_on(process(&queue, &delivery, &id));
            assert_eq!((next, new_ids.len()), (None, 0), "case {n}");
            assert!(!spool.message_path(&id).exists());
            assert_eq!(
                std::fs::read(dir.join("corrupt").join(&id.0)).unwrap(),
                *bytes
            );
        }
        assert!(delivery.0.borrow().is_empty(), "nothing was delivered");
        assert_eq!(spool.corrupt_count(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Postfix's defaults: 5 days, 300 s doubling to 3600 s.
    fn default_retry() -> Retry {
        Retry {
            lifetime: Duration::from_secs(432_000),
            delay_warning: Duration::from_secs(4 * 3600),
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

    fn qid(n: u64) -> QueueId {
        QueueId(format!("{n:014X}"))
    }

    #[test]
    fn the_schedule_gives_due_messages_earliest_first_and_nothing_early() {
        let mut s = Schedule::default();
        s.add_found(QueueKey::new(&qid(1)), 300);
        s.add_found(QueueKey::new(&qid(2)), 100);
        s.add_found(QueueKey::new(&qid(3)), 200);
        s.due_now(&qid(4));
        assert_eq!(s.next_due(), Some(0));
        assert_eq!(s.pop_due(150), Some(qid(4)));
        assert_eq!(s.pop_due(150), Some(qid(2)));
        assert_eq!(s.pop_due(150), None, "the next one is due at 200");
        assert_eq!(s.next_due(), Some(200));
        assert_eq!(s.pop_due(1000), Some(qid(3)));
        assert_eq!(s.pop_due(1000), Some(qid(1)));
        assert_eq!(s.pop_due(u64::MAX - 1), None);
        // All four are being tried: known, none waiting.
        assert_eq!((s.len(), s.next_due()), (4, None));
    }

    #[test]
    fn rescheduling_and_removal_follow_the_attempt() {
        let mut s = Schedule::default();
        s.add_found(QueueKey::new(&qid(1)), 0);
        s.add_found(QueueKey::new(&qid(2)), 0);
        assert_eq!(s.pop_due(10), Some(qid(1)));
        // In flight: neither a new arrival under its ID nor a rescan starts it twice.
        s.due_now(&qid(1));
        assert!(!s.add_found(QueueKey::new(&qid(1)), 0));
        assert_eq!(s.pop_due(10), Some(qid(2)));
        assert_eq!(s.pop_due(10), None);
        s.finished(&qid(1), Some(500));
        s.finished(&qid(2), None);
        assert_eq!(s.len(), 1, "a delivered message leaves the schedule");
        assert_eq!(s.pop_due(499), None);
        assert_eq!(s.pop_due(500), Some(qid(1)));
        // Rescheduled earlier than its old time: the old entry is stale, not a second try.
        s.finished(&qid(1), Some(900));
        s.due_now(&qid(1));
        assert_eq!(s.pop_due(10), Some(qid(1)));
        assert_eq!(s.pop_due(10_000), None);
        // A found message never overrides what the scheduler knows.
        s.finished(&qid(1), Some(700));
        assert!(!s.add_found(QueueKey::new(&qid(1)), 0));
        assert_eq!(s.next_due(), Some(700));
    }

    #[test]
    fn deleted_messages_are_never_tried() {
        let mut s = Schedule::default();
        for n in 1..=3 {
            s.add_found(QueueKey::new(&qid(n)), n);
        }
        s.forget(&qid(1));
        assert_eq!(
            s.next_due(),
            Some(2),
            "the stale entry is dropped from the top"
        );
        assert_eq!(s.pop_due(10), Some(qid(2)));
        // Deleted while being tried: the end of the attempt does not bring it back.
        s.forget(&qid(2));
        s.finished(&qid(2), Some(5));
        assert_eq!(s.pop_due(10), Some(qid(3)));
        assert_eq!(s.pop_due(u64::MAX - 1), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn flush_makes_every_waiting_message_due_but_not_twice() {
        let mut s = Schedule::default();
        for n in 1..=5 {
            s.add_found(QueueKey::new(&qid(n)), 10_000 + n);
        }
        assert_eq!(s.pop_due(20_000), Some(qid(1)));
        assert_eq!(s.flush(), 4, "the one being tried is not counted");
        let due: Vec<QueueId> = std::iter::from_fn(|| s.pop_due(0)).collect();
        assert_eq!(due, [qid(2), qid(3), qid(4), qid(5)], "oldest ID first");
        s.finished(&qid(1), Some(30_000));
        assert_eq!(s.next_due(), Some(30_000));
    }

    #[test]
    fn stale_entries_are_bounded() {
        let mut s = Schedule::default();
        for n in 0..1000 {
            s.add_found(QueueKey::new(&qid(n)), 1_000_000);
        }
        // Every message rescheduled many times without being tried.
        for round in 0..20 {
            for n in 0..1000 {
                s.forget(&qid(n));
                s.add_found(QueueKey::new(&qid(n)), 2_000_000 - round);
            }
        }
        assert!(s.timers.len() <= 2 * s.len() + 64, "{}", s.timers.len());
        assert_eq!(s.next_due(), Some(2_000_000 - 19));
        let due = std::iter::from_fn(|| s.pop_due(u64::MAX - 1)).count();
        assert_eq!(due, 1000);
    }

    /// Delivery that defers every recipient and remembers which messages it was given.
    struct Deferring(RefCell<Vec<QueueId>>);

    impl Deliver for Deferring {
        async fn attempt(
            &self,
            env: &Envelope,
            _content: &ContentSource,
            pending: &[String],
        ) -> Attempt {
            self.0.borrow_mut().push(env.id.clone());
            let later = Outcome::new(
                Disposition::Deferred,
                Relay::Local,
                "4.4.1",
                "no answer".into(),
            );
            pending
                .iter()
                .map(|r| (r.clone(), later.clone()))
                .collect::<Vec<_>>()
                .into()
        }
    }

    #[test]
    fn the_event_loop_tries_due_messages_and_finds_dropped_ones() {
        let dir = std::env::temp_dir().join(format!("tinymta-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let now = unix_now();
        let message = |n: u64| {
            let env = Envelope {
                id: qid((now << 24) + n),
                arrival: now,
                sender: "alice@example.org".into(),
                recipients: vec!["bob@example.net".into()],
                client: "local".into(),
                protocol: "local".into(),
                unexpanded: false,
                requiretls: false,
                dsn: Default::default(),
            };
            spool.store(&env, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
            env.id
        };
        // Two due, two whose next attempt is an hour away.
        let due: Vec<QueueId> = (1..=2).map(message).collect();
        let later: Vec<QueueId> = (3..=4).map(message).collect();
        for id in &later {
            let st = crate::queue::spool::Status {
                attempts: 1,
                next_attempt: now + 3600,
                ..Default::default()
            };
            spool.set_status(id, &st).unwrap();
        }
        let recovered = spool.recover().unwrap();
        let queue = test_scheduler(&spool, Rewriter::none(&[]));
        let delivery = Rc::new(Deferring(RefCell::new(Vec::new())));
        let (events, events_rx) = smol::channel::unbounded();
        let ex = Rc::new(smol::LocalExecutor::new());
        let tried = |want: usize| {
            let delivery = delivery.clone();
            async move {
                for _ in 0..2000 {
                    if delivery.0.borrow().len() >= want {
                        break;
                    }
                    smol::Timer::after(Duration::from_millis(10)).await;
                }
                let mut seen = delivery.0.borrow().clone();
                seen.sort();
                seen
            }
        };
        let sorted = |mut ids: Vec<QueueId>| {
            ids.sort();
            ids
        };
        smol::block_on(ex.run(async {
            let task = ex.spawn(run(
                ex.clone(),
                queue,
                delivery.clone(),
                events_rx,
                recovered,
            ));
            assert_eq!(tried(2).await, due, "only the due messages are tried");
            // A file dropped by another process, announced by name or not at all.
            let named = message(5);
            events.send(Event::New(named.clone())).await.unwrap();
            let mut expect = vec![due[0].clone(), due[1].clone(), named.clone()];
            assert_eq!(tried(3).await, sorted(expect.clone()));
            let unnamed = message(6);
            events.send(Event::Rescan).await.unwrap();
            expect.push(unnamed.clone());
            assert_eq!(tried(4).await, sorted(expect.clone()));
            // `queue flush` leaves a message being tried alone: first let the four
            // attempts end (their status records written, their reports handled).
            for id in &expect {
                for _ in 0..2000 {
                    if spool.status(id).attempts >= 1 {
                        break;
                    }
                    smol::Timer::after(Duration::from_millis(10)).await;
                }
            }
            smol::Timer::after(Duration::from_millis(100)).await;
            // Deleted, then flushed: every other message is tried once more.
            spool.remove(&later[0]).unwrap();
            events.send(Event::Forget(later[0].clone())).await.unwrap();
            events.send(Event::Flush).await.unwrap();
            let all = tried(9).await;
            // The last attempts record their status before the loop is stopped.
            for id in [&later[1], &due[0]] {
                for _ in 0..2000 {
                    if spool.status(id).attempts >= 2 {
                        break;
                    }
                    smol::Timer::after(Duration::from_millis(10)).await;
                }
            }
            drop(events);
            task.await;
            expect.extend([due[0].clone(), due[1].clone(), named, unnamed]);
            expect.push(later[1].clone());
            assert_eq!(all, sorted(expect));
        }));
        // Each attempt is recorded: the flushed message has two attempts behind it.
        assert_eq!(spool.status(&later[1]).attempts, 2);
        assert_eq!(spool.status(&due[0]).attempts, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = default_retry();
        let secs: Vec<u64> = (1..=6).map(|a| backoff(&r, a).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 3600, 3600]);
    }
}
