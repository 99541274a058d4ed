//! Counting resumed against full handshakes (both directions), and the outbound
//! session cache: the TLS sessions of servers we delivered to, kept in memory for the
//! next connection to the same server under the same policy (Postfix's
//! `smtp_tls_session_cache_database`, without the file).
//!
//! A cached session is keyed by everything that decided the handshake and the check of
//! the server's certificate: the server (host, address, port, SNI), the client
//! context's policy (level, protocols, ciphers, trust anchors, client certificate) and
//! the check itself (fingerprints, names, TLSA records). So a session is offered only
//! where an identical full handshake would have been made; `client` still runs the
//! level's check on the resumed session (OpenSSL keeps the server's chain and its
//! verification result in the session). A session enters the cache only once that
//! check passed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foreign_types::ForeignType;
use openssl::ssl::SslSession;
use openssl_sys as ffi;

extern "C" {
    // Since OpenSSL 1.1.1, not declared by openssl-sys 0.9.
    fn SSL_SESSION_dup(src: *const ffi::SSL_SESSION) -> *mut ffi::SSL_SESSION;
}

/// Most servers whose session is kept: a router sends to a smarthost or a few dozen
/// MX hosts; a session with the server's chain is a few KB.
pub const MAX_SESSIONS: usize = 32;
/// Longest a session is kept, whatever lifetime the server granted (Postfix's
/// `smtp_tls_session_cache_timeout` default).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// Which side of a handshake a count is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We were the server (a client connected to us).
    Inbound,
    /// We were the client (delivering).
    Outbound,
}

/// 32-bit counters: MIPS32 has no 64-bit atomics. They wrap after four billion
/// handshakes, which only a debug log line would notice.
static COUNTS: [[AtomicU32; 2]; 2] = [
    [AtomicU32::new(0), AtomicU32::new(0)],
    [AtomicU32::new(0), AtomicU32::new(0)],
];

/// Counts one finished handshake with `peer` and logs it at debug level with the
/// totals for `side` so far: `TLS session to X: resumed (outbound handshakes: 2
/// resumed, 1 full)`.
pub fn count(side: Side, peer: &str, resumed: bool) {
    let c = &COUNTS[side as usize];
    c[usize::from(!resumed)].fetch_add(1, Ordering::Relaxed);
    let (r, f) = (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed));
    // Logged under the side's own module, where an administrator asks for it
    // (`TINYMTA_LOG=tinymta::inbound=debug`).
    let (target, direction, side) = match side {
        Side::Inbound => ("tinymta::inbound::connection", "from", "inbound"),
        Side::Outbound => ("tinymta::outbound::client", "to", "outbound"),
    };
    let how = if resumed { "resumed" } else { "full handshake" };
    log::debug!(
        target: target,
        "TLS session {direction} {peer}: {how} ({side} handshakes: {r} resumed, {f} full)"
    );
}

/// A cached session and when it entered the cache.
struct Entry {
    session: SslSession,
    stored: Instant,
}

impl Entry {
    /// Whether the session is past the lifetime the server gave it (counted from the
    /// full handshake that made it, as OpenSSL does) or our own limit.
    // `time()` is a C long: 32 bits on mipsel, so the conversion is not useless there.
    #[allow(clippy::useless_conversion)]
    fn expired(&self, unix_now: i64) -> bool {
        let lifetime = self.session.timeout().min(MAX_AGE.as_secs() as i64);
        unix_now >= i64::from(self.session.time()) + lifetime
    }
}

fn unix_now() -> i64 {
    crate::clock::unix_now() as i64
}

/// The outbound session cache, shared by every delivery of the process (OpenSSL hands
/// new sessions to a callback that must be `Send + Sync`, hence the mutex).
#[derive(Default)]
pub struct SessionCache {
    /// A list: at [`MAX_SESSIONS`] a scan costs less than a hash map's code.
    entries: Mutex<Vec<([u8; 32], Entry)>>,
}

impl SessionCache {
    pub fn new() -> Arc<SessionCache> {
        Arc::new(SessionCache::default())
    }

    /// A copy of the session cached for `key`, to offer, if a live one is cached.
    ///
    /// The cached session stays until a newer one replaces it: a TLS 1.3 server that
    /// sends no new ticket on a resumed handshake (Postfix does not) gets the same
    /// ticket again, as from Postfix's own client. RFC 8446 §C.4 discourages that for
    /// the linkability it gives a passive observer, which between two mail servers
    /// that connect by address anyway is nothing. The copy (`SSL_SESSION_dup`, chain
    /// included) is what makes it possible: after a TLS 1.3 handshake OpenSSL marks the
    /// session it used not resumable.
    pub fn offer(&self, key: &[u8; 32]) -> Option<SslSession> {
        let mut entries = self.lock();
        let i = entries.iter().position(|(k, _)| k == key)?;
        let entry = &entries[i].1;
        if entry.expired(unix_now()) {
            entries.swap_remove(i);
            return None;
        }
        // SAFETY: a valid session in, a new session we own (or null) out.
        let copy = unsafe { SSL_SESSION_dup(entry.session.as_ptr()) };
        // SAFETY: non-null, and its one reference is ours.
        (!copy.is_null()).then(|| unsafe { SslSession::from_ptr(copy) })
    }

    /// Keeps `session` for `key`, replacing an older one. When full, expired sessions
    /// go first, then the one stored longest ago.
    pub fn store(&self, key: [u8; 32], session: SslSession) {
        let mut entries = self.lock();
        let entry = Entry {
            session,
            stored: Instant::now(),
        };
        if let Some((_, e)) = entries.iter_mut().find(|(k, _)| *k == key) {
            *e = entry;
            return;
        }
        if entries.len() >= MAX_SESSIONS {
            let now = unix_now();
            entries.retain(|(_, e)| !e.expired(now));
            if entries.len() >= MAX_SESSIONS {
                let oldest = (0..entries.len()).min_by_key(|&i| entries[i].1.stored);
                if let Some(i) = oldest {
                    entries.swap_remove(i);
                }
            }
        }
        entries.push((key, entry));
    }

    /// Drops the session for `key` (its resumption failed the policy's check).
    pub fn forget(&self, key: &[u8; 32]) {
        self.lock().retain(|(k, _)| k != key);
    }

    /// How many sessions are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<([u8; 32], Entry)>> {
        // A panic while holding the lock leaves a usable map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
