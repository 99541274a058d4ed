//! The validated outbound settings: the routing tables, TLS policy, trust anchors, DNS,
//! smarthost credentials. `config` builds them from the flags (the same for `serve` and
//! `check-tls`); delivery and `check-tls` only read them, so nothing here knows how a
//! flag is spelled. (Sender rewriting is one of the address tables, which SIGHUP
//! replaces: delivery gets them from the daemon.)

use std::path::PathBuf;
use std::sync::Arc;

use super::credentials::Credentials;
use super::policy::PolicyTable;
use super::route::Router;
use crate::tls::fingerprint::Digest;
use crate::tls::level::Level;

/// Validated outbound settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Local domains (none for `check-tls`, which routes no local mail), transport
    /// table, per-sender relay hosts and the relay host.
    pub router: Router,
    pub policy: PolicyTable,
    pub default_level: Level,
    pub ca_file: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    pub digest: Digest,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `--resolver` as given (resolved when the daemon starts).
    pub resolver: Option<String>,
    pub mx_port: u16,
    /// `--relay-credentials`, checked and parsed at start-up, and its file (read
    /// again on SIGHUP).
    pub credentials: Option<Arc<Credentials>>,
    pub credentials_file: Option<PathBuf>,
    /// `--mta-sts`: MTA-STS policies apply to domains the policy table does not list.
    pub mta_sts: bool,
    /// Where fetched MTA-STS policies are kept (`<state-dir>/mta-sts`); `None` for
    /// `check-tls`, which fetches afresh and keeps nothing.
    pub mta_sts_dir: Option<PathBuf>,
}
