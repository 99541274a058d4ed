//! The AUTH command of the server session (RFC 4954): when AUTH may start, each SASL
//! line of the exchange, and what the verdict on the credentials means for the client
//! (235, or 535 and after repeated failures 421). A session's standing — who logged
//! in, how many attempts failed — lives here as `Login`.
//!
//! The PLAIN/LOGIN mechanics and the password check belong to `crate::auth`; running
//! the check (on the blocking pool) and the pause after a failure belong to the
//! connection. Nothing here does I/O.

use std::time::Duration;

use super::session::State;
use super::AuthUsers;
use crate::auth::{Sasl, Step};
use crate::smtp::reply::{canned, Reply};

/// RFC 4954 §4: a SASL response line may be up to 12288 octets.
pub const MAX_SASL_LINE: usize = 12_288;
/// Pause before answering a failed AUTH (Postfix's smtpd_error_sleep_time), which
/// slows password guessing to a crawl.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Failed AUTH attempts before the client is disconnected.
const MAX_AUTH_FAILURES: u32 = 3;

/// What the client gave, to be checked against the users (PBKDF2 is slow by design,
/// so the connection does it off the event loop).
pub struct Credentials {
    pub mechanism: &'static str,
    pub user: String,
    pub password: Vec<u8>,
}

/// Where an AUTH command or one SASL line leaves the exchange.
pub enum Progress {
    /// Send this `334` challenge and give the client's next line to the exchange.
    Challenge(Sasl, Reply),
    /// The exchange is complete: check these credentials.
    Verify(Credentials),
    /// Refused, cancelled or malformed: send this error; the session is outside AUTH.
    Refused(Reply),
}

/// What the session sends once the credentials are checked.
pub enum Verdict {
    /// `235`: the client is logged in.
    LoggedIn(Reply),
    /// `535` after `AUTH_FAILURE_DELAY`, and `farewell` (a `421`) when this was one
    /// failure too many and the session must end.
    Failed {
        reply: Reply,
        farewell: Option<Reply>,
    },
}

/// A session's standing with AUTH.
pub struct Login {
    users: AuthUsers,
    /// The user name once AUTH succeeded (at most once per session).
    user: Option<String>,
    failures: u32,
}

impl Login {
    pub fn new(users: AuthUsers) -> Login {
        Login {
            users,
            user: None,
            failures: 0,
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The EHLO keyword, when AUTH is offered. Only inside TLS, on every listener (the
    /// seeds; Postfix smtpd_tls_auth_only): a password never crosses the wire in clear.
    pub fn ehlo_keyword(&self, tls_active: bool) -> Option<&'static str> {
        (tls_active && self.users.borrow().is_some()).then_some("AUTH PLAIN LOGIN")
    }

    /// `AUTH mechanism [initial-response]`: only inside TLS, once per session, outside
    /// a transaction (RFC 4954 §4). The checks go in this order so the reply names the
    /// most basic thing that is wrong.
    pub fn start(
        &self,
        tls_active: bool,
        state: &State,
        mechanism: &str,
        initial: Option<&str>,
    ) -> Progress {
        if self.users.borrow().is_none() {
            return Progress::Refused(Reply::new(
                503,
                "5.5.1",
                "Error: authentication not enabled",
            ));
        }
        if !tls_active {
            return Progress::Refused(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        if matches!(state, State::Fresh) {
            return Progress::Refused(canned::bad_sequence("Error: send EHLO first"));
        }
        if self.user.is_some() {
            return Progress::Refused(canned::bad_sequence("Error: already authenticated"));
        }
        if matches!(state, State::Transaction(_) | State::Chunking { .. }) {
            return Progress::Refused(canned::bad_sequence("Error: MAIL transaction in progress"));
        }
        match Sasl::start(mechanism, initial) {
            Some((sasl, step)) => progress(sasl, step),
            None => Progress::Refused(Reply::new(
                504,
                "5.5.4",
                "Error: unsupported authentication mechanism",
            )),
        }
    }

    /// Records the result of checking `credentials` for the client called `client`
    /// (in the log) and says what to answer.
    pub fn verdict(&mut self, client: &str, credentials: Credentials, ok: bool) -> Verdict {
        let Credentials {
            mechanism, user, ..
        } = credentials;
        if ok {
            log::info!("{client}: sasl_method={mechanism}, sasl_username={user}");
            self.user = Some(user);
            return Verdict::LoggedIn(Reply::new(235, "2.7.0", "Authentication successful"));
        }
        // Postfix's wording, so fail2ban's postfix-sasl filter works unchanged.
        log::warn!("{client}: SASL {mechanism} authentication failed: authentication failure");
        self.failures += 1;
        let farewell = (self.failures >= MAX_AUTH_FAILURES).then(|| {
            log::warn!("too many failed AUTH attempts from {client}");
            Reply::new(
                421,
                "4.7.0",
                "Error: too many failed authentication attempts",
            )
        });
        Verdict::Failed {
            reply: Reply::new(
                535,
                "5.7.8",
                "Error: authentication failed: authentication failure",
            ),
            farewell,
        }
    }
}

/// The client's next line in an exchange.
pub fn respond(mut sasl: Sasl, line: &[u8]) -> Progress {
    let step = sasl.next(&String::from_utf8_lossy(line));
    progress(sasl, step)
}

fn progress(sasl: Sasl, step: Step) -> Progress {
    match step {
        Step::Challenge(c) => Progress::Challenge(sasl, Reply::plain(334, vec![c.to_string()])),
        Step::Credentials { user, password } => Progress::Verify(Credentials {
            mechanism: sasl.mechanism(),
            user,
            password,
        }),
        Step::Cancelled => Progress::Refused(Reply::new(501, "5.7.0", "Authentication aborted")),
        Step::Malformed(why) => {
            Progress::Refused(Reply::new(501, "5.5.2", format!("Error: {why}")))
        }
    }
}
