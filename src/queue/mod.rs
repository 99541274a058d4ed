//! The durable queue: message files under `<state-dir>/queue`, their recovery after a
//! restart or crash, the retry schedule, and the commands that inspect it.
//!
//! Layout (one file per message, flash-friendly):
//! - `tmp/ID`      a message being received; never delivered, removed at start-up
//! - `messages/ID` envelope header + content, written once, fsynced, then renamed here
//! - `status/ID`   small per-attempt record (attempts, next retry, finished recipients)
//! - `wakeup`      datagram socket of the running daemon (sendmail, queue flush)
//!
//! and beside it `<state-dir>/maildrop/`, where `sendmail` run by other users drops
//! messages for the daemon to check and queue (see `maildrop`).
//! `<state-dir>/corrupt/` holds queue files that did not parse, set aside (never
//! delivered, never retried) for a human to look at.
//!
//! The queue knows nothing of SMTP sessions or TLS; it stores envelopes and bytes. It
//! asks delivery for attempts through `outcome::Deliver` and decides on what comes
//! back (retry, bounce, removal); delivery never writes to the spool.

pub mod admin;
pub mod bounce;
pub mod maildrop;
pub mod outcome;
pub mod scheduler;
pub mod spool;
pub mod wakeup;

pub use spool::{Envelope, EnvelopeDsn, QueueId, QueueKey, Spool};
