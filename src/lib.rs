//! tinymta as a library: the modules of the MTA, from the bottom up, so that the
//! binary (`main.rs`), the fuzz targets and the tests all use the same code.
//!
//! A module uses what is below it, never what is above it:
//! - building blocks: `exit`, `clock`, `runtime`, `host`, `cli`, `privileges`, `text`,
//!   `keyed`, `smtp`, `dns`, `headers`
//! - `tls`: profiles, contexts, the ordered levels, DANE and fingerprint matching
//! - `logline`, `auth`
//! - `queue`: spool, recovery, retry schedule, bounces, the wakeup protocol
//! - `inbound` (listeners, server session) and `outbound` (routing, policy table,
//!   client session, delivery agents)
//! - the commands and the daemon: `config`, `certtool`, `dkimtool`, `sendmail`,
//!   `newaliases`, `server`

pub mod address;
pub mod auth;
pub mod certtool;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dkimtool;
pub mod dns;
pub mod domain;
pub mod exit;
pub mod headers;
pub mod host;
pub mod inbound;
pub mod keyed;
pub mod logline;
pub mod mailauth;
pub mod newaliases;
pub mod outbound;
pub mod privileges;
pub mod queue;
pub mod runtime;
pub mod sendmail;
pub mod server;
pub mod smtp;
pub mod text;
pub mod tls;
