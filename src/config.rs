//! Flags → a validated `Config`. Every error names the flag (or file and line) and the
//! offending value, so a mistyped init script is fixed in one look.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::address::{TablePaths, Tables};
use crate::cli::{CheckTlsArgs, ServeArgs};
use crate::host::{default_state_dir, running_as_root, system_hostname};
use crate::inbound::relay::Cidr;
use crate::inbound::{self, InboundTls, Limits, Listener, Role};
use crate::mailauth::signing::{DkimKeys, KeySpec};
use crate::outbound::credentials::Credentials;
use crate::outbound::policy::{check_default_level, PolicyTable};
use crate::outbound::route::Router;
use crate::outbound::sender_relay::SenderRelayTable;
use crate::outbound::tlsrpt::{self, ReportSettings};
use crate::outbound::transport::{parse_nexthop, TransportTable};
use crate::outbound::Settings;
use crate::privileges::{self, Account};
use crate::queue::scheduler::Retry;
use crate::queue::spool::FreeSpace;
use crate::tls::fingerprint::Digest;
use crate::tls::level::Level;

/// A configuration error: printed as `tinymta: <where>: <what>` and exit code 64/78.
#[derive(Debug)]
pub struct ConfigError {
    pub place: String,
    pub message: String,
}

impl ConfigError {
    pub fn flag(flag: &str, value: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            place: format!("{flag} '{value}'"),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub hostname: String,
    pub state_dir: PathBuf,
    /// Whom the daemon changes to after binding (`--user`, or `tinymta`; see
    /// `privileges`); `None` when not started as root or there is no such user.
    pub account: Option<Account>,
    pub mail_dir: PathBuf,
    pub relay_networks: Vec<Cidr>,
    /// `--tls-ask-ccert`, `--tls-require-ccert`, `--relay-ccert` (read at start).
    pub client_certs: inbound::relay::ClientCertPolicy,
    /// `--tls-ccert-ca-file`.
    pub ccert_ca_file: Option<PathBuf>,
    /// Certificate/key pairs (one, or an RSA and an ECDSA one); empty means the
    /// generated demonstration certificate.
    pub tls_cert: Vec<(PathBuf, PathBuf)>,
    pub limits: Limits,
    /// `--queue-min-free`: bytes the queue's file system keeps free (0: no check).
    pub queue_min_free: u64,
    /// Where TLS-failure alerts go.
    pub alert_rcpt: Option<String>,
    /// `--tls-rpt` and its details; `None`: no TLS reporting.
    pub tls_rpt: Option<ReportSettings>,
    /// `--auth-file`; read at start and on SIGHUP.
    pub auth_file: Option<PathBuf>,
    /// `--aliases`, `--virtual`, `--local-recipients`; read again on SIGHUP.
    pub table_paths: TablePaths,
    /// The tables as read and checked at start.
    pub tables: Tables,
    /// `--srs-domain`, lower case, or the first local domain; `None`: no SRS (no
    /// `--srs-domain` and nothing that forwards: neither aliases nor a virtual table).
    pub srs_domain: Option<String>,
    /// `--dkim-key`; read again on SIGHUP.
    pub dkim_specs: Vec<KeySpec>,
    /// The keys as read and checked at start.
    pub dkim_keys: Arc<DkimKeys>,
    pub retry: Retry,
    pub outbound: Settings,
    /// `--spf-reject`, `--dmarc-reject`.
    pub enforce: inbound::checks::Enforce,
}

/// The outbound flags, the same for `serve` and `check-tls`.
#[derive(Debug, Clone)]
pub struct OutboundFlags<'a> {
    pub relayhost: &'a Option<String>,
    pub transport: &'a Option<String>,
    pub tls_policy: &'a Option<String>,
    pub tls_default_level: &'a str,
    pub tls_ca_file: &'a Option<String>,
    pub tls_ca_dir: &'a Option<String>,
    pub tls_fingerprint_digest: &'a str,
    pub tls_client_cert: &'a Option<String>,
    pub tls_client_key: &'a Option<String>,
    pub resolver: &'a Option<String>,
    pub mx_port: u16,
    pub mta_sts: Option<&'a str>,
    /// The smarthost flags of `serve` (`check-tls` has none of them; `--sender-rewrite`
    /// is one of the address tables).
    pub relay_credentials: Option<&'a str>,
    pub sender_relay: Option<&'a str>,
}

macro_rules! outbound_flags {
    ($a:expr, $($smarthost:tt)*) => {
        OutboundFlags {
            relayhost: &$a.relayhost,
            transport: &$a.transport,
            tls_policy: &$a.tls_policy,
            tls_default_level: &$a.tls_default_level,
            tls_ca_file: &$a.tls_ca_file,
            tls_ca_dir: &$a.tls_ca_dir,
            tls_fingerprint_digest: &$a.tls_fingerprint_digest,
            tls_client_cert: &$a.tls_client_cert,
            tls_client_key: &$a.tls_client_key,
            resolver: &$a.resolver,
            mx_port: $a.mx_port,
            mta_sts: $a.mta_sts.as_deref(),
            $($smarthost)*
        }
    };
}

impl<'a> From<&'a ServeArgs> for OutboundFlags<'a> {
    fn from(a: &'a ServeArgs) -> Self {
        outbound_flags!(a,
            relay_credentials: a.relay_credentials.as_deref(),
            sender_relay: a.sender_relay.as_deref(),
        )
    }
}

impl<'a> From<&'a CheckTlsArgs> for OutboundFlags<'a> {
    fn from(a: &'a CheckTlsArgs) -> Self {
        outbound_flags!(a, relay_credentials: None, sender_relay: None)
    }
}

/// The client-certificate flags of `serve`: the networks that must present one, the
/// fingerprints that may relay, and the CA file (checked to be readable here; loaded
/// into the TLS context at start and on SIGHUP).
fn client_cert_policy(
    args: &ServeArgs,
) -> Result<(inbound::relay::ClientCertPolicy, Option<PathBuf>), ConfigError> {
    let mut required = Vec::new();
    for n in &args.tls_require_ccert {
        required.push(Cidr::parse(n).ok_or_else(|| {
            ConfigError::flag(
                "--tls-require-ccert",
                n,
                "expected CIDR, e.g. 192.168.1.0/24",
            )
        })?);
    }
    let ca_file = args.tls_ccert_ca_file.as_ref().map(PathBuf::from);
    if let Some(ca) = &args.tls_ccert_ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| ConfigError::flag("--tls-ccert-ca-file", ca, e.to_string()))?;
        if openssl::x509::X509::stack_from_pem(&pem).map_or(true, |v| v.is_empty()) {
            return Err(ConfigError::flag(
                "--tls-ccert-ca-file",
                ca,
                "no PEM certificate in the file",
            ));
        }
    } else if let Some(n) = args.tls_require_ccert.first() {
        return Err(ConfigError::flag(
            "--tls-require-ccert",
            n,
            "needs --tls-ccert-ca-file: the CAs a required certificate must verify against",
        ));
    }
    let ask = args.tls_ask_ccert || !required.is_empty() || args.relay_ccert.is_some();
    // Checked with the outbound flags too; here only when fingerprints are taken.
    let digest = match ask {
        false => Digest::default(),
        true => Digest::parse(&args.tls_fingerprint_digest).ok_or_else(|| {
            ConfigError::flag(
                "--tls-fingerprint-digest",
                &args.tls_fingerprint_digest,
                "expected sha256, sha1 or md5",
            )
        })?,
    };
    let relay = match &args.relay_ccert {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::flag("--relay-ccert", file, e.to_string()))?;
            inbound::relay::parse_relay_ccert(&text, file, digest)
                .map_err(table_error("--relay-ccert"))?
        }
        None => Vec::new(),
    };
    let policy = inbound::relay::ClientCertPolicy {
        ask,
        required,
        relay,
        digest,
    };
    Ok((policy, ca_file))
}

/// A table file's errors (`FILE:LINE: message`, one a line) under the flag that named it.
fn table_error(flag: &str) -> impl Fn(String) -> ConfigError + '_ {
    move |message| ConfigError {
        place: flag.into(),
        message,
    }
}

/// Validates the outbound flags into delivery's settings; `local_domains` (validated,
/// lower case) are the domains delivered here.
pub fn outbound_settings(
    f: OutboundFlags,
    local_domains: Vec<String>,
) -> Result<Settings, ConfigError> {
    let relayhost = match f.relayhost {
        Some(r) => Some(parse_nexthop(r, 25).ok_or_else(|| {
            ConfigError::flag(
                "--relayhost",
                r,
                "expected [HOST]:PORT or smtps:[HOST]:PORT, e.g. [smtp.example.net]:587",
            )
        })?),
        None => None,
    };
    let sender_relay = f
        .sender_relay
        .map(|p| SenderRelayTable::load(Path::new(p)))
        .transpose()
        .map_err(table_error("--sender-relay"))?;
    // Read once here, so a missing or group-readable file stops the start, not the
    // first delivery.
    let credentials = f
        .relay_credentials
        .map(|p| Credentials::load(Path::new(p)).map(Arc::new))
        .transpose()
        .map_err(table_error("--relay-credentials"))?;
    let transport = match f.transport {
        Some(p) => TransportTable::load(std::path::Path::new(p)).map_err(|e| ConfigError {
            place: "--transport".into(),
            message: e,
        })?,
        None => TransportTable::default(),
    };
    let policy = match f.tls_policy {
        Some(p) => PolicyTable::load(std::path::Path::new(p)).map_err(|e| ConfigError {
            place: "--tls-policy".into(),
            message: e,
        })?,
        None => PolicyTable::default(),
    };
    let default_level = Level::parse(f.tls_default_level).ok_or_else(|| {
        ConfigError::flag(
            "--tls-default-level",
            f.tls_default_level,
            "expected none, may, encrypt, dane, dane-only, fingerprint, verify or secure",
        )
    })?;
    check_default_level(default_level)
        .map_err(|e| ConfigError::flag("--tls-default-level", f.tls_default_level, e))?;
    let digest = Digest::parse(f.tls_fingerprint_digest).ok_or_else(|| {
        ConfigError::flag(
            "--tls-fingerprint-digest",
            f.tls_fingerprint_digest,
            "expected sha256, sha1 or md5",
        )
    })?;
    policy
        .check_fingerprint_length(digest.name(), digest.output_len())
        .map_err(|e| ConfigError {
            place: "--tls-policy".into(),
            message: e,
        })?;
    let client_cert = match (f.tls_client_cert, f.tls_client_key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(c), None) => {
            return Err(ConfigError::flag(
                "--tls-client-cert",
                c,
                "--tls-client-key is required too",
            ))
        }
        (None, Some(k)) => {
            return Err(ConfigError::flag(
                "--tls-client-key",
                k,
                "--tls-client-cert is required too",
            ))
        }
    };
    if let Some(r) = f.resolver {
        crate::dns::Resolver::from_flag_or_system(Some(r))
            .map_err(|e| ConfigError::flag("--resolver", r, e))?;
    }
    if f.mx_port == 0 {
        return Err(ConfigError::flag("--mx-port", "0", "must be a port number"));
    }
    let mta_sts = match f.mta_sts.unwrap_or("yes") {
        "yes" => true,
        "no" => false,
        other => return Err(ConfigError::flag("--mta-sts", other, "expected yes or no")),
    };
    Ok(Settings {
        router: Router {
            local_domains,
            transport,
            sender_relay,
            relayhost,
        },
        policy,
        default_level,
        ca_file: f.tls_ca_file.as_ref().map(PathBuf::from),
        ca_dir: f.tls_ca_dir.as_ref().map(PathBuf::from),
        digest,
        client_cert,
        resolver: f.resolver.clone(),
        mx_port: f.mx_port,
        credentials,
        credentials_file: f.relay_credentials.map(PathBuf::from),
        mta_sts,
        mta_sts_dir: None,
    })
}

/// Reads and checks the address tables; every problem is named by its flag and
/// `FILE:LINE`, one a line.
/// `--tls-rpt`, `--tls-rpt-org`, `--tls-rpt-contact`, `--tls-rpt-interval`.
fn tls_rpt_settings(
    args: &ServeArgs,
    hostname: &str,
) -> Result<Option<ReportSettings>, ConfigError> {
    match args.tls_rpt.as_deref().unwrap_or("yes") {
        "yes" => {}
        "no" => return Ok(None),
        other => return Err(ConfigError::flag("--tls-rpt", other, "expected yes or no")),
    }
    let contact = match &args.tls_rpt_contact {
        Some(c) => match crate::smtp::address::parse_mailbox(c, true, false, false) {
            Ok(Some(m)) => m.to_string(),
            _ => {
                return Err(ConfigError::flag(
                    "--tls-rpt-contact",
                    c,
                    "not an email address",
                ))
            }
        },
        None => format!("postmaster@{}", hostname.to_ascii_lowercase()),
    };
    let organization = args
        .tls_rpt_org
        .clone()
        .unwrap_or_else(|| hostname.to_string());
    if organization.chars().any(char::is_control) {
        return Err(ConfigError::flag(
            "--tls-rpt-org",
            &organization,
            "contains control characters",
        ));
    }
    let interval = match args.tls_rpt_interval {
        Some(0) => {
            return Err(ConfigError::flag(
                "--tls-rpt-interval",
                "0",
                "must be at least 1 second",
            ))
        }
        Some(s) => s,
        None => tlsrpt::DAY,
    };
    Ok(Some(ReportSettings {
        organization,
        contact,
        interval,
    }))
}

fn load_tables(paths: &TablePaths, domains: &[String]) -> Result<Tables, ConfigError> {
    let flags = [
        ("--aliases", &paths.aliases),
        ("--virtual", &paths.virtual_map),
        ("--local-recipients", &paths.local_recipients),
        ("--sender-rewrite", &paths.sender_rewrite),
    ];
    Tables::load(paths, domains).map_err(|e| {
        let flag_of = |line: &str| {
            flags
                .iter()
                .find(|(_, p)| {
                    p.as_ref()
                        .is_some_and(|p| line.starts_with(&format!("{}:", p.display())))
                })
                .map_or("address table", |(f, _)| f)
        };
        let mut lines = e.lines();
        let first = lines.next().unwrap_or_default();
        let mut message = first.to_string();
        for line in lines {
            message.push_str(&format!("\ntinymta: {}: {line}", flag_of(line)));
        }
        ConfigError {
            place: flag_of(first).to_string(),
            message,
        }
    })
}

fn parse_listeners(
    flag: &str,
    values: &[String],
    role: Role,
    tls: InboundTls,
    out: &mut Vec<Listener>,
) -> Result<(), ConfigError> {
    for v in values {
        let addr = v.parse::<SocketAddr>().map_err(|_| {
            ConfigError::flag(flag, v, "expected IP:PORT, e.g. 127.0.0.1:2525 or [::]:25")
        })?;
        out.push(Listener { addr, role, tls });
    }
    Ok(())
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        // First: the files read below as root may belong to that user already.
        let account = privileges::target_account(args.user.as_deref()).map_err(|e| {
            let name = args.user.as_deref().unwrap_or(privileges::DEFAULT_USER);
            ConfigError::flag("--user", name, e)
        })?;
        let tls_level = [InboundTls::None, InboundTls::May, InboundTls::Encrypt]
            .into_iter()
            .find(|l| l.name() == args.tls_level)
            .ok_or_else(|| {
                ConfigError::flag(
                    "--tls-level",
                    &args.tls_level,
                    "expected none, may or encrypt",
                )
            })?;
        let mut listeners = Vec::new();
        parse_listeners("--smtp", &args.smtp, Role::Smtp, tls_level, &mut listeners)?;
        parse_listeners(
            "--submission",
            &args.submission,
            Role::Submission,
            InboundTls::Encrypt,
            &mut listeners,
        )?;
        parse_listeners(
            "--smtps",
            &args.smtps,
            Role::Smtps,
            InboundTls::Implicit,
            &mut listeners,
        )?;
        if listeners.is_empty() {
            let (host, ports) = if running_as_root() {
                ("[::]", [25, 587, 465])
            } else {
                ("127.0.0.1", [2525, 2587, 2465])
            };
            let addr = |p: u16| format!("{host}:{p}");
            parse_listeners(
                "--smtp",
                &[addr(ports[0])],
                Role::Smtp,
                tls_level,
                &mut listeners,
            )?;
            parse_listeners(
                "--submission",
                &[addr(ports[1])],
                Role::Submission,
                InboundTls::Encrypt,
                &mut listeners,
            )?;
            parse_listeners(
                "--smtps",
                &[addr(ports[2])],
                Role::Smtps,
                InboundTls::Implicit,
                &mut listeners,
            )?;
        }

        let hostname = args.hostname.clone().unwrap_or_else(system_hostname);
        if crate::smtp::address::check_domain(&hostname).is_err() {
            return Err(ConfigError::flag(
                "--hostname",
                &hostname,
                "not a valid host name",
            ));
        }
        let mut domains = Vec::new();
        for d in &args.domain {
            if crate::smtp::address::check_domain(d).is_err() {
                return Err(ConfigError::flag("--domain", d, "not a valid domain"));
            }
            domains.push(d.to_ascii_lowercase());
        }
        if domains.is_empty() {
            domains.push(hostname.to_ascii_lowercase());
        }

        let mut relay_networks = Vec::new();
        for n in &args.relay_network {
            relay_networks.push(Cidr::parse(n).ok_or_else(|| {
                ConfigError::flag("--relay-network", n, "expected CIDR, e.g. 192.168.1.0/24")
            })?);
        }
        if relay_networks.is_empty() {
            relay_networks = ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| Cidr::parse(n))
                .collect();
        }

        let (client_certs, ccert_ca_file) = client_cert_policy(args)?;

        if args.tls_cert.len() != args.tls_key.len() {
            let (flag, values) = if args.tls_cert.len() > args.tls_key.len() {
                ("--tls-cert", &args.tls_cert)
            } else {
                ("--tls-key", &args.tls_key)
            };
            return Err(ConfigError::flag(
                flag,
                values.last().map(String::as_str).unwrap_or(""),
                "give --tls-cert and --tls-key in pairs (one key per certificate)",
            ));
        }
        if args.tls_cert.len() > 2 {
            return Err(ConfigError::flag(
                "--tls-cert",
                &args.tls_cert[2],
                "at most two certificates (one RSA, one ECDSA)",
            ));
        }
        let tls_cert: Vec<(PathBuf, PathBuf)> = args
            .tls_cert
            .iter()
            .zip(&args.tls_key)
            .map(|(c, k)| (PathBuf::from(c), PathBuf::from(k)))
            .collect();
        if args.max_sessions == 0 {
            return Err(ConfigError::flag(
                "--max-sessions",
                "0",
                "must be at least 1",
            ));
        }
        if args.max_sessions_per_ip == 0 {
            return Err(ConfigError::flag(
                "--max-sessions-per-ip",
                "0",
                "must be at least 1",
            ));
        }
        if args.retry_min == 0 || args.retry_min > args.retry_max {
            return Err(ConfigError::flag(
                "--retry-min",
                &args.retry_min.to_string(),
                "must be at least 1 and at most --retry-max",
            ));
        }

        let path = |p: &Option<String>| p.as_ref().map(PathBuf::from);
        let table_paths = TablePaths {
            aliases: path(&args.aliases),
            virtual_map: path(&args.virtual_map),
            local_recipients: path(&args.local_recipients),
            sender_rewrite: path(&args.sender_rewrite),
        };
        let tables = load_tables(&table_paths, &domains)?;
        let srs_domain = match &args.srs_domain {
            Some(d) if crate::smtp::address::check_domain(d).is_err() => {
                return Err(ConfigError::flag("--srs-domain", d, "not a valid domain"))
            }
            Some(d) => Some(d.to_ascii_lowercase()),
            None => tables.forwards().then(|| domains[0].clone()),
        };

        let dkim_specs = args
            .dkim_key
            .iter()
            .map(|s| KeySpec::parse(s).map_err(|e| ConfigError::flag("--dkim-key", s, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let dkim_keys = DkimKeys::load(&dkim_specs)
            .map_err(|e| ConfigError::flag("--dkim-key", &e.spec, e.message))?;

        let mut outbound = outbound_settings(OutboundFlags::from(args), domains)?;
        let alert_rcpt = match &args.alert_rcpt {
            Some(a) => match crate::smtp::address::parse_mailbox(a, true, false, false) {
                Ok(Some(m)) => Some(m.to_string()),
                _ => return Err(ConfigError::flag("--alert-rcpt", a, "not an email address")),
            },
            None => None,
        };
        let tls_rpt = tls_rpt_settings(args, &hostname)?;
        let state_dir = default_state_dir(&args.state_dir);
        outbound.mta_sts_dir = Some(state_dir.join("mta-sts"));
        let mail_dir = args
            .mail_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| state_dir.join("mail"));
        Ok(Config {
            listeners,
            hostname,
            state_dir,
            account,
            mail_dir,
            relay_networks,
            client_certs,
            ccert_ca_file,
            tls_cert,
            limits: Limits {
                max_message_size: args.max_message_size,
                max_sessions: args.max_sessions,
                max_sessions_per_ip: args.max_sessions_per_ip,
                max_recipients: args.max_recipients.max(1),
                command_timeout: Duration::from_secs(args.command_timeout.max(1)),
                data_timeout: Duration::from_secs(args.data_timeout.max(1)),
                tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout.max(1)),
            },
            // Postfix's queue_minfree rule: room for two messages of the largest size.
            queue_min_free: args
                .queue_min_free
                .unwrap_or(args.max_message_size.saturating_mul(2)),
            alert_rcpt,
            tls_rpt,
            auth_file: args.auth_file.as_ref().map(PathBuf::from),
            table_paths,
            tables,
            srs_domain,
            dkim_specs,
            dkim_keys: Arc::new(dkim_keys),
            retry: Retry {
                lifetime: Duration::from_secs(args.queue_lifetime),
                delay_warning: Duration::from_secs(args.delay_warning_time),
                min: Duration::from_secs(args.retry_min),
                max: Duration::from_secs(args.retry_max),
            },
            outbound,
            enforce: inbound::checks::Enforce {
                spf_reject: args.spf_reject,
                dmarc_reject: args.dmarc_reject,
            },
        })
    }

    /// Whether and how the server context asks clients for certificates.
    pub fn client_cert_request(&self) -> crate::tls::ClientCertRequest {
        crate::tls::ClientCertRequest {
            ask: self.client_certs.ask,
            ca_file: self.ccert_ca_file.clone(),
        }
    }

    /// What the receiving side needs of this configuration.
    pub fn inbound_settings(&self) -> inbound::Settings {
        inbound::Settings {
            hostname: self.hostname.clone(),
            router: self.outbound.router.clone(),
            relay_networks: self.relay_networks.clone(),
            client_certs: self.client_certs.clone(),
            limits: self.limits.clone(),
            enforce: self.enforce,
            // Checked at start when given; a system without one is warned about by
            // delivery, and the checks then report temperror.
            resolver: crate::dns::Resolver::from_flag_or_system(self.outbound.resolver.as_deref())
                .ok(),
            queue_space: FreeSpace::new(&self.state_dir, self.queue_min_free),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid values for the serve flags that have no usable zero default.
    fn valid() -> ServeArgs {
        ServeArgs {
            smtp: vec!["127.0.0.1:2525".into()],
            tls_level: "may".into(),
            max_sessions: 1,
            max_sessions_per_ip: 1,
            retry_min: 1,
            retry_max: 2,
            ..Default::default()
        }
    }

    #[test]
    fn errors_name_the_flag() {
        let args = ServeArgs {
            smtp: vec!["localhost".into()],
            ..valid()
        };
        let e = Config::from_args(&args).unwrap_err().to_string();
        assert!(e.starts_with("--smtp 'localhost'"), "{e}");
        let args = ServeArgs {
            tls_level: "sometimes".into(),
            ..args
        };
        let e = Config::from_args(&args).unwrap_err().to_string();
        assert!(e.starts_with("--tls-level 'sometimes'"), "{e}");
        let args = ServeArgs {
            tls_default_level: "may".into(),
            tls_fingerprint_digest: "sha256".into(),
            mx_port: 25,
            mta_sts: Some("maybe".into()),
            ..valid()
        };
        let e = Config::from_args(&args).unwrap_err().to_string();
        assert!(
            e.starts_with("--mta-sts 'maybe': expected yes or no"),
            "{e}"
        );
        for (spec, why) in [
            ("example.org", "expected DOMAIN:SELECTOR:KEYFILE"),
            ("example.org:s 1:/k", "invalid selector"),
            (
                "example.org:s1:/nonexistent/s1.key",
                "/nonexistent/s1.key: No such file",
            ),
        ] {
            let args = ServeArgs {
                dkim_key: vec![spec.into()],
                ..valid()
            };
            let e = Config::from_args(&args).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--dkim-key '{spec}': ")) && e.contains(why),
                "{e}"
            );
        }
    }

    #[test]
    fn tls_reporting_flags() {
        let base = || ServeArgs {
            hostname: Some("mx.example.org".into()),
            tls_default_level: "may".into(),
            tls_fingerprint_digest: "sha256".into(),
            mx_port: 25,
            ..valid()
        };
        let on = Config::from_args(&base()).unwrap().tls_rpt.unwrap();
        assert_eq!(on.contact, "postmaster@mx.example.org");
        assert_eq!(on.organization, "mx.example.org");
        assert_eq!((on.interval, on.submitter()), (86_400, "mx.example.org"));
        let args = ServeArgs {
            tls_rpt_org: Some("Example".into()),
            tls_rpt_contact: Some("tlsrpt@example.org".into()),
            ..base()
        };
        let set = Config::from_args(&args).unwrap().tls_rpt.unwrap();
        assert_eq!(
            (set.organization.as_str(), set.submitter()),
            ("Example", "example.org")
        );
        let off = ServeArgs {
            tls_rpt: Some("no".into()),
            ..base()
        };
        assert_eq!(Config::from_args(&off).unwrap().tls_rpt, None);
        for (args, flag) in [
            (
                ServeArgs {
                    tls_rpt: Some("maybe".into()),
                    ..base()
                },
                "--tls-rpt 'maybe'",
            ),
            (
                ServeArgs {
                    tls_rpt_contact: Some("not an address".into()),
                    ..base()
                },
                "--tls-rpt-contact 'not an address'",
            ),
            (
                ServeArgs {
                    tls_rpt_interval: Some(0),
                    ..base()
                },
                "--tls-rpt-interval '0'",
            ),
        ] {
            let e = Config::from_args(&args).unwrap_err().to_string();
            assert!(e.starts_with(flag), "{e}");
        }
    }
}
