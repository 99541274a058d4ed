//! Receiving mail: listeners, the server-side SMTP session, and the decisions made
//! while a client talks to us (may it relay, must it use TLS, is it over a limit).
//!
//! - `listener`: what each address is for (`Role`, `InboundTls`), the accept loops
//! - `session`: the SMTP dialogue as a sans-IO state machine (lines in, replies out)
//! - `sasl`: the AUTH command inside that dialogue
//! - `relay`: who may relay without logging in
//! - `checks`: SPF, DKIM and DMARC of mail from outside, and its
//!   `Authentication-Results:` field
//! - `connection`: drives a session over a socket and streams DATA into the queue
//!
//! The settings come in as plain data (`Settings`, `Listener`), built by `config`; this
//! module never reads flags. Sessions drive `smtp::` parsers, ask `tls::` for
//! handshakes through `MaybeTls`, and hand complete messages to `queue::` — they never
//! see OpenSSL or queue internals.

pub mod checks;
mod connection;
pub mod listener;
pub mod relay;
mod sasl;
mod session;

use crate::outbound::route::Router;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslContext;
use smol::channel::{Receiver, Sender};

use crate::address::SharedRewriter;
use crate::auth::AuthFile;
use crate::mailauth::signing::{DkimKeys, SharedKeys};
use crate::queue::scheduler::Event;
use crate::queue::spool::{FreeSpace, GroupCommit};
use crate::queue::Spool;
pub use listener::{InboundTls, Listener, Role};
use relay::Cidr;

/// Limits on sessions and messages.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub max_recipients: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// For a TLS handshake to finish (STARTTLS and implicit TLS).
    pub tls_handshake_timeout: Duration,
}

/// What the receiving side needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our name in the banner, the EHLO reply and the trace headers.
    pub hostname: String,
    /// Where recipients go: local domains (the first is where bare `<postmaster>`
    /// goes), transport table, relay host; the same routing delivery uses.
    pub router: Router,
    /// Clients that may relay without logging in.
    pub relay_networks: Vec<Cidr>,
    /// Client certificates: asked for, required, allowed to relay.
    pub client_certs: relay::ClientCertPolicy,
    pub limits: Limits,
    /// What the checks of mail from outside refuse (`--spf-reject`, `--dmarc-reject`).
    pub enforce: checks::Enforce,
    /// The daemon's resolver, for those checks; `None` when none could be set up
    /// (every check is then `temperror`).
    pub resolver: Option<crate::dns::Resolver>,
    /// Free space of the queue's file system against `--queue-min-free`, asked at MAIL.
    pub queue_space: FreeSpace,
}

/// The `--auth-file` users, shared by all sessions and replaced on SIGHUP; `None`:
/// AUTH is not offered. Sessions look at it each time, so a reload takes effect at once.
pub type AuthUsers = Rc<RefCell<Option<Arc<AuthFile>>>>;

/// What a SIGHUP replaces, as `serve` loaded it at start.
pub struct Reloadable {
    pub tls: SslContext,
    pub auth: Option<AuthFile>,
    /// Shared with the scheduler, which expands `sendmail`'s messages with it.
    pub rewriter: SharedRewriter,
    /// `--dkim-key`; shared with the scheduler, which signs `sendmail`'s messages.
    pub dkim: SharedKeys,
}

/// State shared by all sessions of the (single-threaded) server.
pub struct Shared {
    pub settings: Rc<Settings>,
    /// Current server TLS context; replaced on SIGHUP, sessions take a clone.
    pub tls: RefCell<Rc<SslContext>>,
    pub spool: Spool,
    pub commit: GroupCommit,
    pub scheduler: Sender<Event>,
    /// Closed when the server shuts down; sessions watch it between commands.
    pub shutdown: Receiver<()>,
    pub auth: AuthUsers,
    /// The address tables and SRS; replaced on SIGHUP, sessions look at it per RCPT.
    pub rewriter: SharedRewriter,
    /// The DKIM keys the mail of our own clients is signed with; replaced on SIGHUP.
    pub dkim: SharedKeys,
    sessions: Cell<usize>,
    /// Most sessions at once since the server was last without any.
    burst: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
}

/// Why a new connection was turned away.
pub enum Refusal {
    TooManySessions,
    TooManyFromIp,
}

/// Counts a session for as long as it lives.
pub struct SessionSlot {
    shared: Rc<Shared>,
    ip: IpAddr,
}

/// After this many sessions at once, the last one to end gives the heap's free pages back
/// (see [`release_free_memory`]).
const TRIM_AFTER_SESSIONS: usize = 64;

/// Returns the free pages of the heap to the system. glibc's malloc keeps what a burst
/// of sessions (a flood: a thousand sessions of a few KB each) freed, as holes between
/// live blocks, for good; musl's mallocng unmaps freed groups by itself.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap under its lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.shared.sessions.set(self.shared.sessions.get() - 1);
        if self.shared.sessions.get() == 0 && self.shared.burst.replace(0) >= TRIM_AFTER_SESSIONS {
            release_free_memory();
        }
        let mut per_ip = self.shared.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    pub fn new(
        settings: Settings,
        loaded: Reloadable,
        spool: Spool,
        commit: GroupCommit,
        scheduler: Sender<Event>,
        shutdown: Receiver<()>,
    ) -> Shared {
        Shared {
            settings: Rc::new(settings),
            tls: RefCell::new(Rc::new(loaded.tls)),
            spool,
            commit,
            scheduler,
            shutdown,
            auth: Rc::new(RefCell::new(loaded.auth.map(Arc::new))),
            rewriter: loaded.rewriter,
            dkim: loaded.dkim,
            sessions: Cell::new(0),
            burst: Cell::new(0),
            per_ip: RefCell::new(HashMap::new()),
        }
    }

    /// Takes a session slot, or says which limit is reached.
    pub fn admit(self: &Rc<Self>, ip: IpAddr) -> Result<SessionSlot, Refusal> {
        if self.sessions.get() >= self.settings.limits.max_sessions {
            return Err(Refusal::TooManySessions);
        }
        let mut per_ip = self.per_ip.borrow_mut();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.settings.limits.max_sessions_per_ip {
            return Err(Refusal::TooManyFromIp);
        }
        *n += 1;
        self.sessions.set(self.sessions.get() + 1);
        self.burst.set(self.burst.get().max(self.sessions.get()));
        Ok(SessionSlot {
            shared: self.clone(),
            ip,
        })
    }

    pub fn active_sessions(&self) -> usize {
        self.sessions.get()
    }

    pub fn current_tls(&self) -> Rc<SslContext> {
        self.tls.borrow().clone()
    }

    pub fn current_auth(&self) -> Option<Arc<AuthFile>> {
        self.auth.borrow().clone()
    }

    pub fn current_dkim(&self) -> Arc<DkimKeys> {
        self.dkim.borrow().clone()
    }
}
