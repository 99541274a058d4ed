//! The validated outbound settings: the routing tables, TLS policy, trust anchors, DNS.
//! `config` builds them from the flags (the same for `serve` and `check-tls`); delivery
//! and `check-tls` only read them, so nothing here knows how a flag is spelled.

use std::path::PathBuf;

use super::policy::PolicyTable;
use super::route::Router;
use crate::tls::fingerprint::Digest;
use crate::tls::level::Level;

/// Validated outbound settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Transport table and relay host; the local domains are filled in for `serve`
    /// (`check-tls` routes no local mail).
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
}
