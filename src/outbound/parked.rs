//! Idle SMTP sessions kept for the next message to the same destination (connection
//! reuse, like Postfix's connection cache), and their expiry. Owned by `remote`: a
//! task of its own closes sessions idle longer than `PARK_TIME`, so the queue never
//! needs to know that connections are parked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::LocalExecutor;

use super::client::ClientSession;

/// How long an idle session is kept for the next message to the same destination
/// (Postfix's smtp_connection_cache_time_limit is 2 s; a little longer suits a box
/// that sends in small bursts).
const PARK_TIME: Duration = Duration::from_secs(5);
/// Idle sessions kept per destination.
const MAX_PARKED: usize = 2;

/// The parked sessions, by cache key (next hop and policy entry).
pub struct Parked {
    sessions: RefCell<HashMap<String, Vec<(ClientSession, Instant)>>>,
    /// Wakes the expiry task when a session is parked while it sleeps with none.
    wake: (Sender<()>, Receiver<()>),
}

impl Default for Parked {
    fn default() -> Parked {
        Parked {
            sessions: RefCell::new(HashMap::new()),
            wake: smol::channel::bounded(1),
        }
    }
}

impl Parked {
    /// Keeps an idle session for reuse (at most `MAX_PARKED` per destination).
    pub fn park(&self, key: String, session: ClientSession) {
        let mut sessions = self.sessions.borrow_mut();
        let list = sessions.entry(key).or_default();
        if list.len() < MAX_PARKED {
            list.push((session, Instant::now()));
            // Full means the task is already awake or has a wakeup waiting.
            let _ = self.wake.0.try_send(());
        }
    }

    /// A parked session for `key` that has not been idle too long.
    pub fn take(&self, key: &str) -> Option<ClientSession> {
        let mut sessions = self.sessions.borrow_mut();
        let list = sessions.get_mut(key)?;
        while let Some((session, since)) = list.pop() {
            if since.elapsed() < PARK_TIME {
                return Some(session);
            }
        }
        None
    }

    /// Makes every parked session too old to be taken (the credentials changed); the
    /// expiry task QUITs them as it does idle ones.
    pub fn retire_all(&self) {
        let mut sessions = self.sessions.borrow_mut();
        match Instant::now().checked_sub(PARK_TIME) {
            Some(past) => {
                for (_, since) in sessions.values_mut().flatten() {
                    *since = past;
                }
            }
            // Too early after boot to date them back: close them now, without QUIT.
            None => sessions.clear(),
        }
    }

    /// Removes sessions idle for `PARK_TIME` or longer, for the caller to QUIT.
    fn expired(&self) -> Vec<ClientSession> {
        let mut out = Vec::new();
        let mut sessions = self.sessions.borrow_mut();
        for list in sessions.values_mut() {
            let (old, young): (Vec<_>, Vec<_>) = list
                .drain(..)
                .partition(|(_, since)| since.elapsed() >= PARK_TIME);
            *list = young;
            out.extend(old.into_iter().map(|(s, _)| s));
        }
        sessions.retain(|_, l| !l.is_empty());
        out
    }

    /// How long until the oldest parked session expires (`None`: none is parked).
    fn next_expiry(&self) -> Option<Duration> {
        self.sessions
            .borrow()
            .values()
            .flatten()
            .map(|(_, since)| PARK_TIME.saturating_sub(since.elapsed()))
            .min()
    }

    /// Closes idle sessions politely (QUIT, each on its own task) as they expire. Runs
    /// for the life of the daemon.
    pub async fn expire(self: Rc<Self>, ex: Rc<LocalExecutor<'static>>) {
        loop {
            for session in self.expired() {
                crate::runtime::spawn_detached(&ex, session.quit());
            }
            match self.next_expiry() {
                Some(wait) => {
                    smol::Timer::after(wait).await;
                }
                None => {
                    if self.wake.1.recv().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
