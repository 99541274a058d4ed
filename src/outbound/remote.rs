//! Delivery to another host: next hop → candidate addresses (MX or relay host), the
//! destination's TLS policy level → what TLS must happen and what the certificate
//! must prove (including the DANE downgrade rules of RFC 7672, and implicit TLS for
//! `smtps:` next hops), candidates tried in order, SMTP AUTH to a smarthost with
//! `--relay-credentials` (only over mandatory TLS), the message as it leaves
//! (`--sender-rewrite`), one outcome per recipient, and alert notices when TLS that
//! was required failed. Idle sessions are parked here for reuse and expire on their
//! own timer.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{
    dsn, Candidate, ClientSession, ImplicitTlsError, RcptReply, Timeouts, TransactionResult,
};
use super::credentials::{Credentials, Entry, TOKEN_COMMAND_TIMEOUT};
use super::mta_sts::{Active, Discovery, MtaSts};
use super::outgoing::Outgoing;
use super::parked::Parked;
use super::policy::{self, Policy, PolicyTable};
use super::route::NextHop;
use super::sasl::{self, AuthFailure};
use super::tlsrpt::{self, FailureDetail, FailureType, PolicyType, Recorder};
use super::Settings;
use crate::dns::{DnsError, Resolver};
use crate::keyed::Keyed;
use crate::logline::{self, TlsStart};
use crate::queue::outcome::{
    Attempt, Disposition, Notice, Outcome, Relay, RemoteReply, REQUIRETLS_DEFERRED,
};
use crate::queue::Envelope;
use crate::smtp::reply::Reply;
use crate::text::Joined;
use crate::tls::client::{client_tls, ClientSettings, PeerCheck};
use crate::tls::dane::{self, Tlsa};
use crate::tls::fingerprint::{self, Digest};
use crate::tls::level::{DaneDecision, DaneState, Level};
use crate::tls::session::SessionCache;
use crate::tls::Trust;

/// Most addresses tried per delivery (Postfix's smtp_mx_address_limit is 5).
const MAX_CANDIDATES: usize = 10;
/// At most one alert per destination in this period (Cisco ESA behaviour).
const ALERT_INTERVAL: Duration = Duration::from_secs(3600);

/// Everything remote delivery needs, built once at start-up.
pub struct Remote {
    pub resolver: Result<Resolver, String>,
    pub policy: PolicyTable,
    pub default_level: Level,
    pub mx_port: u16,
    pub tls: ClientSettings,
    pub digest: Digest,
    pub alert_rcpt: Option<String>,
    pub timeouts: Timeouts,
    pub hostname: String,
    /// `--relay-credentials`: who to log in as at a smarthost, as last loaded.
    credentials: RefCell<Option<Arc<Credentials>>>,
    /// Its file, read again on SIGHUP.
    credentials_file: Option<PathBuf>,
    /// Credentials are looked up by envelope sender first (`--sender-relay` is on).
    pub per_sender: bool,
    alerts: RefCell<Keyed<Instant>>,
    /// Idle sessions kept for the next message to the same destination.
    parked: Rc<Parked>,
    /// TLS sessions of the servers delivered to, offered on the next connection.
    pub tls_sessions: Arc<SessionCache>,
    /// MTA-STS policies known and fetched (`--mta-sts`).
    pub sts: MtaSts,
    /// TLS reporting's session counters (the daemon sets them; disabled otherwise).
    pub tls_rpt: Rc<Recorder>,
}

impl Remote {
    /// Remote delivery from the outbound settings. `alert_rcpt` is where TLS-failure
    /// alerts go (none for `check-tls`). A resolver that cannot be set up is kept as the
    /// reason remote mail is deferred.
    pub fn new(out: &Settings, hostname: &str, alert_rcpt: Option<String>) -> Remote {
        Remote {
            resolver: crate::dns::Resolver::from_flag_or_system(out.resolver.as_deref()),
            policy: out.policy.clone(),
            default_level: out.default_level,
            mx_port: out.mx_port,
            tls: ClientSettings {
                ca_file: out.ca_file.clone(),
                ca_dir: out.ca_dir.clone(),
                cert: out.client_cert.clone(),
            },
            digest: out.digest,
            alert_rcpt,
            timeouts: Timeouts::default(),
            hostname: hostname.to_string(),
            credentials: RefCell::new(out.credentials.clone()),
            credentials_file: out.credentials_file.clone(),
            per_sender: out.router.per_sender(),
            alerts: RefCell::default(),
            parked: Rc::default(),
            tls_sessions: SessionCache::new(),
            sts: MtaSts::new(out.mta_sts, out.mta_sts_dir.clone()),
            tls_rpt: Rc::new(Recorder::disabled()),
        }
    }

    /// Starts closing parked sessions once they have been idle too long, on `ex`. The
    /// daemon calls it once; without it (`check-tls`) nothing is parked for long.
    pub fn expire_parked(&self, ex: &Rc<smol::LocalExecutor<'static>>) {
        crate::runtime::spawn_detached(ex, self.parked.clone().expire(ex.clone()));
    }

    /// The TLS policy for `hop`. A connection that starts with the handshake has no
    /// plaintext to fall back to, so for `smtps:` a level below `encrypt` counts as
    /// `encrypt` (Postfix demands at least that with `smtp_tls_wrappermode`).
    pub fn policy_for(&self, hop: &NextHop) -> Policy {
        let mut policy = self.policy.lookup(hop, self.default_level);
        if hop.implicit_tls() && policy.level < Level::Encrypt {
            policy.level = Level::Encrypt;
        }
        policy
    }

    /// The TLS policy for `msg` to `hop`: [`Remote::policy_for`], relaxed by a
    /// `TLS-Required: No` header (RFC 8689 §5) to `may` — delivered even where the
    /// table asks for more — but never below `encrypt` where TLS cannot be optional:
    /// an `smtps:` hop, or a hop we log in to (credentials go only over mandatory
    /// TLS). A REQUIRETLS message ignores the header (RFC 8689 §4.1). The relaxed
    /// policy names itself in `source`, so logs say why and parked sessions of the
    /// full policy are not mixed with it.
    pub fn policy_for_message(&self, hop: &NextHop, env: &Envelope, msg: &Outgoing) -> Policy {
        let mut policy = self.policy_for(hop);
        if !msg.tls_required_no() || env.requiretls {
            return policy;
        }
        let logs_in = self.logins().is_some_and(|c| {
            self.credentials_for(&c, &env.sender, &nexthop_domain(hop), hop)
                .is_some()
        });
        let floor = if hop.implicit_tls() || logs_in {
            Level::Encrypt
        } else {
            Level::May
        };
        if policy.level > floor {
            log::info!(
                "{}: TLS-Required: No: TLS policy level {} ({}) for {hop} relaxed to {floor}",
                env.id,
                policy.level,
                policy.source
            );
            policy.source = format!("{} relaxed by TLS-Required: No", policy.source);
            policy.level = floor;
        }
        policy
    }

    /// The credentials as last loaded: a snapshot for one attempt, whatever a SIGHUP
    /// does meanwhile.
    fn logins(&self) -> Option<Arc<Credentials>> {
        self.credentials.borrow().clone()
    }

    /// SIGHUP: reads `--relay-credentials` again, checked as at start; on an error the
    /// old logins stay. Idle sessions are no longer reused, so none logged in with a
    /// replaced user or password carries more mail. `None` without the flag; else the
    /// number of entries read.
    pub fn reload_credentials(&self) -> Option<Result<usize, String>> {
        let path = self.credentials_file.as_ref()?;
        Some(Credentials::load(path).map(|c| {
            let n = c.len();
            *self.credentials.borrow_mut() = Some(Arc::new(c));
            self.parked.retire_all();
            n
        }))
    }

    /// The entry of `creds` for a connection to `server` (the host name connected to)
    /// on the way to `hop`, for a message from `sender` (Postfix's lookup order, see
    /// `credentials`).
    fn credentials_for<'c>(
        &self,
        creds: &'c Credentials,
        sender: &str,
        server: &str,
        hop: &NextHop,
    ) -> Option<&'c Entry> {
        let sender = (self.per_sender && !sender.is_empty()).then_some(sender);
        creds.lookup(sender, server, &hop.to_string())
    }

    /// Who a session for a message from `sender` logs in as, as far as the sender
    /// decides it: the `FILE:LINE` of its per-sender entry, or "". The rest of the
    /// lookup depends only on the server and the next hop, which the cache key holds
    /// already; so a session logged in for one sender never carries another's mail.
    fn sender_login(&self, sender: &str) -> String {
        match self.logins() {
            Some(c) if self.per_sender => c
                .lookup_sender(sender)
                .map_or_else(String::new, |e| e.source.clone()),
            _ => String::new(),
        }
    }

    /// A start-up warning when the relay host has credentials but a TLS policy below
    /// `encrypt`: they would never be sent, and its mail would wait until it expires.
    pub fn login_warning(&self, relayhost: Option<&NextHop>) -> Option<String> {
        let hop = relayhost?;
        let NextHop::Host { host, .. } = hop else {
            return None;
        };
        let creds = self.logins()?;
        let entry = creds.lookup(None, host, &hop.to_string())?;
        let policy = self.policy_for(hop);
        (policy.level < Level::Encrypt).then(|| {
            format!(
                "--relay-credentials has a login for --relayhost {hop} ({}), but its TLS \
                 policy level is {} ({}): credentials go only over TLS at level encrypt or \
                 higher, so its mail will be deferred; add '{hop}  verify' to --tls-policy \
                 (or give --tls-default-level), or use an smtps: next hop",
                entry.source,
                policy.level.name(),
                policy.source
            )
        })
    }

    /// Returns true when an alert mail should be sent now for `destination`, and
    /// remembers that it was.
    pub fn alert_due(&self, destination: &str) -> bool {
        let mut alerts = self.alerts.borrow_mut();
        let now = Instant::now();
        match alerts.get(destination) {
            Some(last) if now.duration_since(*last) < ALERT_INTERVAL => false,
            _ => {
                alerts.insert(destination.to_string(), now);
                true
            }
        }
    }
}

/// How a failure applies to the recipients of this attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub relay: Relay,
    pub dsn: String,
    pub detail: String,
    pub permanent: bool,
    /// A TLS requirement was not met (alert-worthy).
    pub tls: bool,
    /// The server's reply, when one decided it (a refused AUTH).
    pub reply: Option<RemoteReply>,
}

impl Failure {
    fn temp(relay: Relay, dsn: &str, detail: String) -> Failure {
        Failure {
            relay,
            dsn: dsn.to_string(),
            detail,
            permanent: false,
            tls: false,
            reply: None,
        }
    }
    /// No host was reached (`relay=none`): resolver and DNS failures.
    fn unreached(dsn: &str, detail: String) -> Failure {
        Failure::temp(Relay::None, dsn, detail)
    }
    fn tls(relay: Relay, detail: String) -> Failure {
        Failure {
            relay,
            dsn: "4.7.5".to_string(),
            detail,
            permanent: false,
            tls: true,
            reply: None,
        }
    }
    /// A next hop that cannot carry a REQUIRETLS message: no authenticated TLS under
    /// its policy, or no REQUIRETLS in its EHLO (RFC 8689 §4.2.1). Deferred like any
    /// other failure (4.7.30): the receiver may be upgraded, its DNS signed, or our
    /// policy table changed before the queue lifetime ends; then the scheduler bounces
    /// it as 5.7.30 ("REQUIRETLS support required"), as Postfix retries first too.
    /// Other MX hosts are tried first.
    fn requiretls(relay: Relay, detail: String) -> Failure {
        Failure::temp(relay, REQUIRETLS_DEFERRED, format!("REQUIRETLS: {detail}"))
    }
    /// The same outcome for each of `rcpts`.
    fn for_all(&self, rcpts: &[String]) -> Vec<(String, Outcome)> {
        let disposition = if self.permanent {
            Disposition::Bounced
        } else {
            Disposition::Deferred
        };
        let outcome = Outcome {
            reply: self.reply.clone(),
            ..Outcome::new(
                disposition,
                self.relay.clone(),
                &self.dsn,
                self.detail.clone(),
            )
        };
        rcpts.iter().map(|r| (r.clone(), outcome.clone())).collect()
    }
}

/// A host to connect to, with whether its DNS was DNSSEC-validated end to end.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    /// MX (if any) and address records were authenticated: DANE may apply.
    pub secure: bool,
}

/// The domain used for `nexthop`/`dot-nexthop` name matching and DANE reference names.
pub fn nexthop_domain(hop: &NextHop) -> String {
    match hop {
        NextHop::Domain(d) => d.clone(),
        NextHop::Host { host, .. } => host.clone(),
    }
}

fn dns_reason(name: &str, rtype: &str, e: &DnsError) -> String {
    format!("Host or domain name not found. Name service error for name={name} type={rtype}: {e}")
}

/// Resolves a next hop into hosts in preference order. An error applies to every
/// recipient (temporary or permanent).
pub async fn resolve(remote: &Remote, hop: &NextHop) -> Result<Vec<Host>, Failure> {
    let resolver = remote
        .resolver
        .as_ref()
        .map_err(|e| Failure::unreached("4.3.0", format!("no DNS resolver: {e}")))?;
    let (domain, port, mx_lookup) = match hop {
        NextHop::Domain(d) => (d.clone(), remote.mx_port, true),
        NextHop::Host {
            host,
            port,
            bracketed,
            ..
        } => (host.clone(), *port, !*bracketed),
    };
    if let Ok(ip) = domain.parse::<IpAddr>() {
        return Ok(vec![Host {
            name: domain,
            addrs: vec![ip],
            port,
            secure: false,
        }]);
    }
    let mut names: Vec<String> = Vec::new();
    let mut mx_secure = true;
    if mx_lookup {
        match resolver.mx(&domain).await {
            Err(e) => return Err(Failure::unreached("4.4.3", dns_reason(&domain, "MX", &e))),
            Ok(l) if l.nxdomain => {
                return Err(Failure {
                    permanent: true,
                    ..Failure::unreached("5.4.4", format!("Host or domain name not found. Name service error for name={domain} type=MX: Host not found"))
                })
            }
            Ok(l) => {
                mx_secure = l.authenticated;
                let mut mxs = l.records;
                if mxs.len() == 1 && mxs[0].exchange.is_empty() {
                    // RFC 7505 null MX.
                    return Err(Failure {
                        permanent: true,
                        ..Failure::unreached("5.1.10", format!("Domain {domain} does not accept mail (nullMX)"))
                    });
                }
                mxs.sort_by_key(|m| m.preference);
                names = mxs.into_iter().filter(|m| !m.exchange.is_empty()).map(|m| m.exchange).collect();
            }
        }
    }
    if names.is_empty() {
        // RFC 5321 §5.1: no MX records, the domain itself is the implicit MX.
        names.push(domain.clone());
    }
    let mut hosts = Vec::new();
    let mut last_error = None;
    for name in names {
        match resolver.ips(&name).await {
            Ok(l) if !l.records.is_empty() => hosts.push(Host {
                secure: mx_secure && l.authenticated,
                name,
                addrs: l.records,
                port,
            }),
            Ok(_) => {
                last_error = Some(Failure::unreached(
                    "4.4.4",
                    format!("{name}: no address records"),
                ))
            }
            Err(e) => last_error = Some(Failure::unreached("4.4.3", dns_reason(&name, "A", &e))),
        }
    }
    if hosts.is_empty() {
        return Err(last_error.unwrap_or_else(|| {
            Failure::unreached("4.4.4", format!("{domain}: no usable mail host"))
        }));
    }
    Ok(hosts)
}

/// What the TLS policy demands of one connection.
#[derive(Debug, Clone)]
pub enum TlsPlan {
    /// Never STARTTLS (level none).
    Off,
    /// STARTTLS if offered; a failed handshake is retried in plaintext.
    Opportunistic,
    /// STARTTLS must succeed and the check must pass; otherwise defer.
    Required(PeerCheck),
    /// TLS from the first byte (`smtps:`), and the check must pass; otherwise defer.
    Implicit(PeerCheck),
}

impl TlsPlan {
    /// The same demands for a connection that starts with the handshake: there is no
    /// plaintext to fall back to, so TLS is mandatory whatever the level allowed.
    fn implicit(self) -> TlsPlan {
        match self {
            TlsPlan::Required(check) | TlsPlan::Implicit(check) => TlsPlan::Implicit(check),
            TlsPlan::Off | TlsPlan::Opportunistic => TlsPlan::Implicit(PeerCheck::Nothing),
        }
    }

    /// Whether the plan authenticates the server (DANE, a pinned fingerprint, a CA
    /// chain with a name check — MTA-STS `enforce` too, which is the last): what
    /// REQUIRETLS demands of a next hop. Every check but `PeerCheck::Nothing`
    /// authenticates, so a level or check added later is asked here, in one place.
    pub fn authenticates(&self) -> bool {
        match self {
            TlsPlan::Required(check) | TlsPlan::Implicit(check) => {
                !matches!(check, PeerCheck::Nothing)
            }
            TlsPlan::Off | TlsPlan::Opportunistic => false,
        }
    }

    /// How far the plan falls short of REQUIRETLS, for the bounce.
    fn shortfall(&self) -> &'static str {
        match self {
            TlsPlan::Off => "TLS is off",
            TlsPlan::Opportunistic => "TLS is opportunistic",
            TlsPlan::Required(_) | TlsPlan::Implicit(_) => "TLS does not authenticate the server",
        }
    }

    /// Whether the connection is used only once TLS is established (level `encrypt`
    /// or above in effect): the only connections credentials are sent on.
    pub fn is_mandatory(&self) -> bool {
        matches!(self, TlsPlan::Required(_) | TlsPlan::Implicit(_))
    }
}

/// What the TLSA lookup for one host found (RFC 7672 §2.2). `level::DaneState` is
/// the same without the records; the level decision lives there.
#[derive(Debug, Clone)]
pub enum TlsaLookup {
    /// Validated TLSA with usable records.
    Usable(Vec<Tlsa>),
    /// Validated TLSA, but none usable: mandatory TLS without authentication.
    Unusable,
    /// No DNSSEC (or no TLSA): opportunistic.
    Insecure,
    /// The lookup failed (SERVFAIL, bogus, timeout): defer.
    Failed(String),
}

pub async fn tlsa_lookup(remote: &Remote, host: &Host) -> TlsaLookup {
    if !host.secure {
        return TlsaLookup::Insecure;
    }
    let Ok(resolver) = remote.resolver.as_ref() else {
        return TlsaLookup::Failed("no DNS resolver".into());
    };
    let qname = format!("_{}._tcp.{}", host.port, host.name);
    match resolver.tlsa(&qname).await {
        Err(e) => TlsaLookup::Failed(format!("TLSA lookup error for {qname}: {e}")),
        Ok(l) if !l.authenticated || l.records.is_empty() => TlsaLookup::Insecure,
        Ok(l) => {
            let records: Vec<Tlsa> = l
                .records
                .into_iter()
                .map(|r| Tlsa {
                    usage: r.usage,
                    selector: r.selector,
                    matching: r.matching,
                    data: r.data,
                })
                .collect();
            let usable: Vec<Tlsa> = dane::usable(&records).into_iter().cloned().collect();
            if usable.is_empty() {
                TlsaLookup::Unusable
            } else {
                TlsaLookup::Usable(usable)
            }
        }
    }
}

/// The plan for one host under `policy`, or the reason not to connect at all.
pub async fn plan(
    remote: &Remote,
    policy: &Policy,
    hop: &NextHop,
    host: &Host,
) -> Result<TlsPlan, String> {
    let domain = nexthop_domain(hop);
    let plan = match policy.level {
        Level::None => TlsPlan::Off,
        Level::May => TlsPlan::Opportunistic,
        Level::Encrypt => TlsPlan::Required(PeerCheck::Nothing),
        Level::Fingerprint => {
            let wanted = policy
                .matches
                .iter()
                .filter_map(|m| fingerprint::parse_fingerprint(m))
                .collect();
            TlsPlan::Required(PeerCheck::Fingerprint {
                digest: remote.digest,
                wanted,
            })
        }
        Level::Verify | Level::Secure => TlsPlan::Required(PeerCheck::Pkix {
            names: policy::name_patterns(policy, &domain, &host.name),
        }),
        Level::Dane | Level::DaneOnly => {
            let (state, records, failure) = match tlsa_lookup(remote, host).await {
                TlsaLookup::Usable(records) => (DaneState::Secure, records, None),
                TlsaLookup::Unusable => (DaneState::SecureUnusable, Vec::new(), None),
                TlsaLookup::Insecure => (DaneState::Insecure, Vec::new(), None),
                TlsaLookup::Failed(why) => (DaneState::Failed, Vec::new(), Some(why)),
            };
            match policy.level.effective_for_dane(state) {
                DaneDecision::Defer(reason) => {
                    return Err(failure.unwrap_or_else(|| format!("{reason} ({})", host.name)))
                }
                DaneDecision::Proceed(Level::Dane) => TlsPlan::Required(PeerCheck::Dane {
                    records,
                    reference_names: vec![host.name.clone(), domain],
                }),
                DaneDecision::Proceed(level) if level.requires_tls() => {
                    TlsPlan::Required(PeerCheck::Nothing)
                }
                DaneDecision::Proceed(_) => TlsPlan::Opportunistic,
            }
        }
    };
    // A DANE level that found no validated TLSA still asks for no less than encrypt.
    Ok(if hop.implicit_tls() {
        plan.implicit()
    } else {
        plan
    })
}

/// The policy enforced under an `enforce` MTA-STS policy (RFC 8461 §4.2): mandatory
/// TLS, the chain verified against the trust anchors and the MX host name in the
/// certificate — the `verify` level (or the default level, when it is `secure`). So
/// every predicate of the levels (`must_match`, `must_verify_chain`, ...) counts it
/// as authenticated TLS.
pub fn sts_enforced(default: &Policy, active: &Active) -> Policy {
    Policy {
        level: default.level.max(Level::Verify),
        source: format!("MTA-STS {} {}", active.domain, active.note()),
        ..default.clone()
    }
}

/// The TLS policy of one delivery to `hop`: the table's (or the default), and the
/// MTA-STS policy that applies where the table has no entry for the domain.
pub struct DeliveryPolicy {
    /// The table entry or the default level.
    pub table: Policy,
    /// What MTA-STS discovery found (nothing when it does not apply).
    pub sts: Discovery,
    /// What is enforced: `table`, or [`sts_enforced`] under an `enforce` policy.
    pub effective: Policy,
}

impl DeliveryPolicy {
    /// The policy in force, when it is `enforce` or `testing`.
    pub fn sts(&self) -> Option<&Active> {
        self.sts
            .active
            .as_ref()
            .filter(|a| a.policy.mode != super::mta_sts::Mode::None)
    }

    pub fn sts_enforcing(&self) -> Option<&Active> {
        self.sts().filter(|a| a.enforces())
    }
}

impl Remote {
    /// The TLS policy for a delivery to `hop`. MTA-STS is looked at only with
    /// `--mta-sts yes`, for a recipient domain reached by MX lookup that the policy
    /// table does not list: an explicit entry wins over MTA-STS and DANE alike.
    /// `table` is [`Remote::policy_for`] or [`Remote::policy_for_message`]; `sts_allowed`
    /// is false for a message whose sender waived TLS policies (`TLS-Required: No`,
    /// RFC 8689 §5, which names MTA-STS among them).
    pub async fn delivery_policy(
        &self,
        hop: &NextHop,
        table: Policy,
        sts_allowed: bool,
    ) -> DeliveryPolicy {
        let sts = match (hop, &self.resolver) {
            (NextHop::Domain(domain), Ok(resolver))
                if sts_allowed && self.sts.enabled && !table.is_table_entry() =>
            {
                self.sts.discover(resolver, &self.tls, domain).await
            }
            _ => Discovery::default(),
        };
        let mut p = DeliveryPolicy {
            effective: table.clone(),
            table,
            sts,
        };
        if let Some(active) = p.sts_enforcing() {
            p.effective = sts_enforced(&p.table, active);
        }
        p
    }
}

/// The plan for one host of a delivery under `dp`. Under an `enforce` MTA-STS policy
/// a host with usable DNSSEC-validated TLSA records (when the level in effect does
/// DANE) is held to DANE instead (RFC 8461 §2); any other host must match one of the
/// policy's `mx` patterns and is held to `verify`. `Err`: do not connect.
pub async fn host_plan(
    remote: &Remote,
    dp: &DeliveryPolicy,
    hop: &NextHop,
    host: &Host,
) -> Result<TlsPlan, String> {
    let Some(active) = dp.sts_enforcing() else {
        if let Some(testing) = dp.sts() {
            if !testing.policy.allows(&host.name) {
                log::info!(
                    "MTA-STS {} (testing): MX host {} matches no mx pattern ({}); \
                     delivering as without a policy",
                    testing.domain,
                    host.name,
                    testing.policy.mx.joined(" ")
                );
            }
        }
        return plan(remote, &dp.effective, hop, host).await;
    };
    if dp.table.level.uses_dane() {
        if let p @ TlsPlan::Required(PeerCheck::Dane { .. }) =
            plan(remote, &dp.table, hop, host).await?
        {
            return Ok(p);
        }
    }
    if !active.policy.allows(&host.name) {
        return Err(format!(
            "MX host {} is not allowed by the MTA-STS policy of {} (id {}, mx {})",
            host.name,
            active.domain,
            active.id,
            active.policy.mx.joined(" ")
        ));
    }
    plan(remote, &dp.effective, hop, host).await
}

/// Adds the MTA-STS policy in force (`sts=enforce id=...`) to each outcome's detail,
/// so the delivery line says which policy the mail went under.
fn noted(mut results: Vec<(String, Outcome)>, dp: &DeliveryPolicy) -> Vec<(String, Outcome)> {
    if let Some(active) = dp.sts() {
        let note = active.note();
        for (_, o) in &mut results {
            o.detail = format!("{}; {note}", o.detail);
        }
    }
    results
}

/// Why `host` cannot carry a REQUIRETLS message under `plan`, known before connecting
/// (RFC 8689 §4.2.1), or `None`. The plan must authenticate the server; and the names
/// it checks must not come from forgeable DNS: `verify` matches the MX host name by
/// default, so after an MX lookup that DNSSEC did not validate an attacker's MX with a
/// valid certificate for its own name would pass. `secure`, `fingerprint`, DANE (which
/// needs validated DNS anyway) and `verify` with its own `match=` names do not trust
/// the MX records; nor does an MTA-STS `enforce` policy (`sts_pinned`), whose `mx`
/// patterns, fetched over verified HTTPS, the host name matched (RFC 8689 §4.2.1).
fn requiretls_shortfall(
    plan: &TlsPlan,
    policy: &Policy,
    hop: &NextHop,
    host: &Host,
    sts_pinned: bool,
) -> Option<&'static str> {
    if !plan.authenticates() {
        return Some(plan.shortfall());
    }
    let mx_lookup = match hop {
        NextHop::Domain(_) => true,
        NextHop::Host { bracketed, .. } => !bracketed,
    };
    let trusts_mx_name = policy.level == Level::Verify
        && (policy.matches.is_empty() || policy.matches.iter().any(|m| m == "hostname"));
    (trusts_mx_name && mx_lookup && !host.secure && !sts_pinned)
        .then_some("the MX records are not DNSSEC-validated and verify checks the MX host name")
}

/// Delivers one message to the recipients that share next hop `hop`.
pub async fn deliver(
    remote: &Remote,
    helo: &str,
    env: &Envelope,
    msg: &Outgoing,
    hop: &NextHop,
    rcpts: &[String],
) -> Attempt {
    let id = env.id.0.as_str();
    let table = remote.policy_for_message(hop, env, msg);
    let waived = msg.tls_required_no() && !env.requiretls;
    let dp = remote.delivery_policy(hop, table, !waived).await;
    if let (Some(e), Some(domain)) = (&dp.sts.failure, reported_domain(remote, env, hop)) {
        // Discovery failed (with or without a cached policy to fall back on).
        let detail = FailureDetail {
            result_type: e.kind,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_ip: None,
        };
        remote
            .tls_rpt
            .record_failure(&sts_policy(domain, dp.sts()), &detail);
    }
    let policy = &dp.effective;
    let mut key = cache_key(hop, policy, &remote.sender_login(&env.sender));
    if env.requiretls {
        // Only sessions that passed the REQUIRETLS checks carry REQUIRETLS mail.
        key.push_str("|requiretls");
    }
    if let Some(results) = reuse(remote, id, &key, msg, rcpts).await {
        return noted(results, &dp).into();
    }
    let hosts = match resolve(remote, hop).await {
        Ok(h) => h,
        Err(f) => return noted(f.for_all(rcpts), &dp).into(),
    };
    // A transient failure of any candidate outweighs a permanent one of another: the
    // message waits for the host that may work.
    let mut last: Option<Failure> = None;
    let mut last_permanent: Option<Failure> = None;
    let mut tried = 0;
    'hosts: for host in &hosts {
        let tls_plan = match host_plan(remote, &dp, hop, host).await {
            Ok(p) => p,
            Err(why) => {
                log::info!("{id}: {why}");
                if let Some(domain) = reported_domain(remote, env, hop) {
                    // A DANE level's TLSA state, or an MX that an MTA-STS enforce
                    // policy does not allow.
                    let (policy, kind) = match dp.sts_enforcing() {
                        Some(a) => (sts_policy(domain, Some(a)), FailureType::ValidationFailure),
                        None => (
                            tlsa_policy(domain, &host.name, &[]),
                            FailureType::of_reason(&why),
                        ),
                    };
                    let detail = FailureDetail::new(kind, &host.name, None);
                    remote.tls_rpt.record_failure(&policy, &detail);
                }
                let relay = Relay::Host {
                    name: host.name.clone(),
                    addr: None,
                };
                last = Some(Failure::tls(relay, why));
                continue;
            }
        };
        if let Some(why) = env
            .requiretls
            .then(|| {
                let sts_pinned = dp.sts_enforcing().is_some();
                requiretls_shortfall(&tls_plan, policy, hop, host, sts_pinned)
            })
            .flatten()
        {
            let relay = Relay::Host {
                name: host.name.clone(),
                addr: None,
            };
            let f = Failure::requiretls(
                relay,
                format!(
                    "{why}: host {}, TLS policy level {} ({}) for {hop}",
                    host.name, policy.level, policy.source
                ),
            );
            log::info!("{id}: {}", f.detail);
            last_permanent = Some(f);
            continue;
        }
        for ip in &host.addrs {
            if tried >= MAX_CANDIDATES {
                break 'hosts;
            }
            tried += 1;
            let cand = Candidate {
                host: host.name.clone(),
                ip: *ip,
                port: host.port,
            };
            let target = Target {
                hop,
                policy,
                tls_plan: &tls_plan,
                key: &key,
                sts: &dp,
            };
            match attempt_candidate(remote, helo, env, msg, &target, &cand, rcpts).await {
                Ok(results) => return noted(results, &dp).into(),
                Err(f) => {
                    log::info!("{id}: {}", f.detail);
                    if f.permanent {
                        last_permanent = Some(f);
                    } else {
                        last = Some(f);
                    }
                }
            }
        }
    }
    let failure = last
        .or(last_permanent)
        .unwrap_or_else(|| Failure::unreached("4.4.1", "no mail host could be reached".into()));
    let alert = if failure.tls && policy.level.requires_tls() {
        raise_alert(remote, &nexthop_domain(hop), policy, &failure.detail)
    } else {
        None
    };
    Attempt {
        results: noted(failure.for_all(rcpts), &dp),
        notices: alert.into_iter().collect(),
    }
}

/// Logs a TLS failure; returns the alert for the queue to send, when one is due.
fn raise_alert(
    remote: &Remote,
    destination: &str,
    policy: &Policy,
    reason: &str,
) -> Option<Notice> {
    log::warn!(
        "TLS failure for destination {destination} (level {}, policy {}): {reason}",
        policy.level.name(),
        policy.source
    );
    let to = remote.alert_rcpt.as_ref()?;
    remote
        .alert_due(destination)
        .then(|| super::alert::notice(to, &remote.hostname, destination, policy, reason))
}

/// Opens a session to `cand` and applies the TLS plan: the part of a delivery that
/// `check-tls` also runs. Returns the session and the TLS outcome (None: plaintext).
pub async fn open_session(
    remote: &Remote,
    helo: &str,
    id: &str,
    policy: &Policy,
    tls_plan: &TlsPlan,
    cand: &Candidate,
) -> Result<(ClientSession, Option<crate::tls::TlsInfo>), Failure> {
    let relay = cand.relay();
    match tls_plan {
        TlsPlan::Off => {
            let session = connect_plain(remote, helo, cand).await?;
            if session.ext.starttls {
                log::info!("{id}: host {relay} offered STARTTLS: [STARTTLS]");
            }
            Ok((session, None))
        }
        TlsPlan::Opportunistic => {
            let mut session = connect_plain(remote, helo, cand).await?;
            if !session.ext.starttls {
                return Ok((session, None));
            }
            let tls = client_tls(
                &remote.tls,
                policy.tls(),
                Some(&cand.host),
                PeerCheck::Nothing,
            )
            .map_err(|e| Failure::temp(relay.clone(), "4.7.5", e))?
            .resuming(&remote.tls_sessions, &cand.name());
            match session.starttls(&tls, helo).await {
                Ok(info) => {
                    log_tls(id, cand, &info, TlsStart::StartTls);
                    Ok((session, Some(info)))
                }
                Err(e) => {
                    // Opportunistic: bad encryption beats plaintext, but a failed
                    // handshake is retried once without TLS on a new connection.
                    log::warn!(
                        "{id}: {e}; retrying in plaintext (level {})",
                        policy.level.name()
                    );
                    Ok((connect_plain(remote, helo, cand).await?, None))
                }
            }
        }
        TlsPlan::Required(check) => {
            let mut session = connect_plain(remote, helo, cand).await?;
            if !session.ext.starttls {
                session.quit().await;
                return Err(Failure::tls(
                    relay.clone(),
                    format!("TLS is required, but was not offered by host {relay}"),
                ));
            }
            let tls = client_tls(&remote.tls, policy.tls(), Some(&cand.host), check.clone())
                .map_err(|e| Failure::tls(relay.clone(), e))?
                .resuming(&remote.tls_sessions, &cand.name());
            match session.starttls(&tls, helo).await {
                Ok(info) => {
                    log_tls(id, cand, &info, TlsStart::StartTls);
                    Ok((session, Some(info)))
                }
                Err(e) => Err(Failure::tls(relay.clone(), e)),
            }
        }
        TlsPlan::Implicit(check) => {
            let tls = client_tls(&remote.tls, policy.tls(), Some(&cand.host), check.clone())
                .map_err(|e| Failure::tls(relay.clone(), e))?
                .resuming(&remote.tls_sessions, &cand.name());
            let (mut session, info) = ClientSession::connect_tls(cand, remote.timeouts, &tls)
                .await
                .map_err(|e| match e {
                    ImplicitTlsError::Tls(e) => Failure::tls(relay.clone(), e),
                    ImplicitTlsError::Connection(e) => Failure::temp(relay.clone(), "4.4.1", e),
                })?;
            log_tls(id, cand, &info, TlsStart::Implicit);
            session
                .hello(helo)
                .await
                .map_err(|e| Failure::temp(relay.clone(), "4.4.2", e))?;
            Ok((session, Some(info)))
        }
    }
}

/// A plaintext connection to `cand` past the greeting and EHLO.
async fn connect_plain(
    remote: &Remote,
    helo: &str,
    cand: &Candidate,
) -> Result<ClientSession, Failure> {
    let mut session = ClientSession::connect(cand, remote.timeouts)
        .await
        .map_err(|e| Failure::temp(cand.relay(), "4.4.1", e))?;
    session
        .hello(helo)
        .await
        .map_err(|e| Failure::temp(cand.relay(), "4.4.2", e))?;
    Ok(session)
}

/// Where a connection goes and what it must satisfy: the next hop, its policy and the
/// TLS plan for the host, and the key its session is parked under.
struct Target<'a> {
    hop: &'a NextHop,
    policy: &'a Policy,
    tls_plan: &'a TlsPlan,
    key: &'a str,
    /// For the MTA-STS session report.
    sts: &'a DeliveryPolicy,
}

/// One connection: Ok with per-recipient outcomes once a transaction happened (or
/// login failed in a way no other address would change), Err when this address could
/// not be used (the next one is tried).
async fn attempt_candidate(
    remote: &Remote,
    helo: &str,
    env: &Envelope,
    msg: &Outgoing,
    target: &Target<'_>,
    cand: &Candidate,
    rcpts: &[String],
) -> Result<Vec<(String, Outcome)>, Failure> {
    let id = env.id.0.as_str();
    let creds = remote.logins();
    let login = creds
        .as_deref()
        .and_then(|c| remote.credentials_for(c, &env.sender, &cand.host, target.hop));
    let give_up = |f: Failure| {
        log::warn!("{id}: {}", f.detail);
        f.for_all(rcpts)
    };
    if let Some(entry) = login.filter(|_| !target.tls_plan.is_mandatory()) {
        // The login could not be sent on any connection this plan allows: no reason to
        // open one.
        return Ok(give_up(not_mandatory(entry, cand, target)));
    }
    let opened = open_session(remote, helo, id, target.policy, target.tls_plan, cand).await;
    report_session(remote, env, target, cand, &opened);
    let (mut session, _) = opened?;
    if env.requiretls {
        if let Some(f) = requiretls_refusal(&session) {
            session.quit().await;
            return Err(f);
        }
        log::info!(
            "{id}: requiretls: {} is authenticated and offers REQUIRETLS",
            cand.name()
        );
    }
    if let Some(entry) = login {
        if let Err(stop) = log_in(id, &mut session, entry).await {
            session.quit().await;
            return match stop {
                LoginStop::TryNext(f) => Err(f),
                LoginStop::GiveUp(f) => Ok(give_up(f)),
            };
        }
    }
    let (results, session) = send_on(session, msg, rcpts).await?;
    if let Some(session) = session {
        remote.parked.park(target.key.to_string(), session);
    }
    Ok(results)
}

/// Why an open session cannot carry a REQUIRETLS message, if it cannot: the plan
/// authenticated the server (checked before connecting), so what remains is that TLS
/// is up and the server said REQUIRETLS in its EHLO after it (RFC 8689 §4.2.1).
fn requiretls_refusal(session: &ClientSession) -> Option<Failure> {
    let relay = session.server.relay();
    if session.tls.is_none() {
        return Some(Failure::requiretls(
            relay.clone(),
            format!("no TLS with host {relay}"),
        ));
    }
    (!session.ext.requiretls).then(|| {
        Failure::requiretls(
            relay.clone(),
            format!("host {relay} does not offer REQUIRETLS"),
        )
    })
}

/// The recipient domain whose TLS-RPT counters a session to `hop` goes to: MX
/// deliveries only (a relay host's sessions are not a domain's policy), and not the
/// sessions carrying a report (RFC 8460 §5.3).
fn reported_domain<'h>(remote: &Remote, env: &Envelope, hop: &'h NextHop) -> Option<&'h str> {
    match hop {
        NextHop::Domain(d) if !remote.tls_rpt.ignores(&env.id) => Some(d),
        _ => None,
    }
}

fn tlsa_policy(domain: &str, mx: &str, records: &[Tlsa]) -> tlsrpt::Policy {
    tlsrpt::Policy {
        policy_type: PolicyType::Tlsa,
        policy_strings: records.iter().map(Tlsa::presentation).collect(),
        policy_domain: domain.to_string(),
        mx_host: Some(mx.to_string()),
    }
}

/// The MTA-STS policy of `domain` as the report names it (§4.3: the policy's lines,
/// its `mx` patterns); without a policy in force (a failed discovery) its strings are
/// empty.
fn sts_policy(domain: &str, active: Option<&Active>) -> tlsrpt::Policy {
    tlsrpt::Policy {
        policy_type: PolicyType::Sts,
        policy_strings: active.map(|a| a.policy.lines()).unwrap_or_default(),
        policy_domain: domain.to_string(),
        mx_host: active.map(|a| a.policy.mx.joined(" ")),
    }
}

/// Counts one new session for TLS reporting: under the DANE policy when the plan
/// authenticates with TLSA records, under the MTA-STS policy in force (enforce or
/// testing) otherwise, else as `no-policy-found` (where a session without
/// TLS is a `starttls-not-supported` failure, or a `validation-failure` when the
/// handshake failed and the mail went in plaintext). Sessions that never reached TLS
/// for other reasons (refused connections) and level `none` are not counted.
fn report_session(
    remote: &Remote,
    env: &Envelope,
    target: &Target<'_>,
    cand: &Candidate,
    opened: &Result<(ClientSession, Option<crate::tls::TlsInfo>), Failure>,
) {
    let Some(domain) = reported_domain(remote, env, target.hop) else {
        return;
    };
    let policy = match target.tls_plan {
        TlsPlan::Off => return,
        TlsPlan::Required(PeerCheck::Dane { records, .. })
        | TlsPlan::Implicit(PeerCheck::Dane { records, .. }) => {
            tlsa_policy(domain, &cand.host, records)
        }
        _ if target.sts.sts().is_some() => sts_policy(domain, target.sts.sts()),
        _ => tlsrpt::Policy {
            policy_type: PolicyType::NoPolicyFound,
            policy_strings: Vec::new(),
            policy_domain: domain.to_string(),
            mx_host: None,
        },
    };
    let failure = match opened {
        // Under a testing MTA-STS policy the session was opportunistic: a chain that
        // does not verify is what enforcing would have refused.
        Ok((_, Some(info)))
            if policy.policy_type == PolicyType::Sts && info.trust == Trust::Untrusted =>
        {
            Some(FailureType::CertificateNotTrusted)
        }
        Ok((_, Some(_))) => None,
        Ok((session, None)) if session.ext.starttls => Some(FailureType::ValidationFailure),
        Ok((_, None)) => Some(FailureType::StarttlsNotSupported),
        Err(f) if f.tls => Some(FailureType::of_reason(&f.detail)),
        Err(_) => return,
    };
    if let (Some(t), PolicyType::Sts) = (failure, policy.policy_type) {
        log::info!(
            "MTA-STS {domain}: session with {} failed: {}",
            cand.host,
            t.name()
        );
    }
    match failure {
        None => remote.tls_rpt.record_success(&policy),
        Some(t) => remote
            .tls_rpt
            .record_failure(&policy, &FailureDetail::new(t, &cand.host, Some(cand.ip))),
    }
}

/// Why a session did not log in, and what that means for the other addresses.
enum LoginStop {
    /// Another address of the next hop may do better (454, a broken connection).
    TryNext(Failure),
    /// Every address would end the same way (refused credentials, no TLS, no common
    /// mechanism): the recipients are deferred now, and retried on the queue's
    /// schedule rather than in a storm of logins.
    GiveUp(Failure),
}

/// `user (FILE:LINE)`, how logs and failures name a login.
fn who(entry: &Entry) -> String {
    format!("{} ({})", entry.user, entry.source)
}

/// The deferral when credentials apply but the TLS plan does not make TLS mandatory:
/// credentials travel only where the policy's level in effect is `encrypt` or above (or
/// the hop is `smtps:`), as Postfix's `smtp_sasl_tls_security_options` wants, because
/// below that an attacker who strips STARTTLS would read them.
fn not_mandatory(entry: &Entry, cand: &Candidate, target: &Target<'_>) -> Failure {
    Failure::temp(
        cand.relay(),
        "4.7.0",
        format!(
            "refusing to send credentials of {} to host {} over an unencrypted connection: \
             TLS is not mandatory under TLS policy level {} ({}) for {}; give it level \
             encrypt or higher (--tls-policy, --tls-default-level) or use an smtps: next hop",
            who(entry),
            cand.relay(),
            target.policy.level.name(),
            target.policy.source,
            target.hop
        ),
    )
}

/// SMTP AUTH with `entry` before MAIL (Postfix `smtp_sasl_auth_enable`), on a session
/// whose TLS is mandatory (the caller checked; `ClientSession::authenticate` refuses a
/// session without TLS all the same). A server that offers no AUTH gets the mail
/// without a login, as Postfix does.
async fn log_in(id: &str, session: &mut ClientSession, entry: &Entry) -> Result<(), LoginStop> {
    let relay = session.server.relay();
    let who = who(entry);
    let give_up =
        |dsn: &str, detail: String| LoginStop::GiveUp(Failure::temp(relay.clone(), dsn, detail));
    if session.ext.auth.is_empty() {
        log::warn!("{id}: host {relay} offers no AUTH; sending without logging in as {who}");
        return Ok(());
    }
    let Some(mechanism) = sasl::choose(&session.ext.auth, entry.mechanisms()) else {
        let wanted: Vec<&str> = entry.mechanisms().iter().map(|m| m.name()).collect();
        return Err(give_up(
            "4.7.0",
            format!(
                "SASL authentication failed; cannot authenticate to server {relay}: no \
                 mechanism available (it offers {}, {who} needs {})",
                session.ext.auth.joined(" "),
                wanted.joined(" or ")
            ),
        ));
    };
    let login = entry
        .login(TOKEN_COMMAND_TIMEOUT)
        .await
        .map_err(|e| give_up("4.7.0", format!("cannot log in as {who}: {e}")))?;
    match session.authenticate(&login, mechanism).await {
        Ok(()) => {
            log::info!("{id}: authenticated to {relay} as {who} with {mechanism}");
            Ok(())
        }
        Err(e) => Err(login_failure(&relay, &who, e)),
    }
}

/// A failed AUTH as a deferral: the server's words in the detail (and its reply for a
/// bounce after `--queue-lifetime`), with a 4.x.x status — a wrong password is fixed
/// by the administrator, and the mail waits for that (Postfix
/// `smtp_sasl_auth_soft_bounce`).
fn login_failure(relay: &Relay, who: &str, e: AuthFailure) -> LoginStop {
    let failure = |dsn: String, detail: String, reply: Option<Reply>| Failure {
        reply: reply.map(|reply| RemoteReply {
            reply,
            stage: "AUTH",
        }),
        ..Failure::temp(relay.clone(), &dsn, detail)
    };
    let said = |reply: &Reply, oauth_error: &Option<String>| {
        let oauth = oauth_error
            .as_ref()
            .map(|e| format!(" (OAuth error: {e})"))
            .unwrap_or_default();
        format!(
            "SASL authentication failed as {who}; server {relay} said: {}{oauth}",
            reply.summary()
        )
    };
    match e {
        AuthFailure::Rejected { reply, oauth_error } => {
            let status = dsn(&reply);
            let soft = format!("4{}", status.get(1..).unwrap_or(".7.0"));
            LoginStop::GiveUp(failure(soft, said(&reply, &oauth_error), Some(reply)))
        }
        AuthFailure::Temporary { reply, oauth_error } => {
            LoginStop::TryNext(failure(dsn(&reply), said(&reply, &oauth_error), Some(reply)))
        }
        AuthFailure::NotEncrypted => LoginStop::GiveUp(failure(
            "4.7.0".into(),
            format!("refusing to send credentials of {who} to host {relay} over an unencrypted connection"),
            None,
        )),
        AuthFailure::Protocol(t) => LoginStop::TryNext(failure(
            "4.7.0".into(),
            format!("SASL authentication failed as {who}: {t}"),
            None,
        )),
        AuthFailure::Connection(t) => LoginStop::TryNext(failure("4.4.2".into(), t, None)),
    }
}

/// One transaction on an open session. The session comes back when it can carry
/// another message (connection reuse), or is closed here.
async fn send_on(
    mut session: ClientSession,
    msg: &Outgoing,
    rcpts: &[String],
) -> Result<(Vec<(String, Outcome)>, Option<ClientSession>), Failure> {
    let relay = session.server.relay();
    let utf8 = !msg.mail_from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
    if utf8 && !session.ext.smtputf8 {
        let f = Failure {
            permanent: true,
            ..Failure::temp(
                relay.clone(),
                "5.6.7",
                format!("SMTPUTF8 is required, but was not offered by host {relay}"),
            )
        };
        return Ok((f.for_all(rcpts), Some(session)));
    }
    let result = session
        .transaction(msg, rcpts, utf8)
        .await
        .map_err(|e| Failure::temp(relay.clone(), "4.4.2", e))?;
    let results: Vec<(String, Outcome)> = match result {
        TransactionResult::Whole(reply, stage) => {
            let o = outcome_for(&relay, &reply, stage);
            rcpts.iter().map(|r| (r.clone(), o.clone())).collect()
        }
        TransactionResult::PerRecipient(replies) => replies
            .into_iter()
            .map(|RcptReply { rcpt, reply, stage }| (rcpt, outcome_for(&relay, &reply, stage)))
            .collect(),
    };
    let results = results
        .into_iter()
        .map(|(rcpt, o)| {
            let next_hop_dsn = session.ext.dsn;
            (rcpt, Outcome { next_hop_dsn, ..o })
        })
        .collect();
    Ok((results, Some(session)))
}

/// Sessions are reused only under the same next hop (`smtps:` or not), the same policy
/// entry and the same sender-chosen login (`Remote::sender_login`), so a reused
/// connection always satisfied the TLS the new message needs and is logged in as the
/// user a new one would be.
fn cache_key(hop: &NextHop, policy: &Policy, login: &str) -> String {
    format!("{hop:?}|{}|{}|{login}", policy.level.name(), policy.source)
}

/// Tries a parked session for `key`: RSET, then the transaction. `None` when there was
/// none or it no longer worked (the caller connects afresh).
async fn reuse(
    remote: &Remote,
    id: &str,
    key: &str,
    msg: &Outgoing,
    rcpts: &[String],
) -> Option<Vec<(String, Outcome)>> {
    let mut session = remote.parked.take(key)?;
    if session.reset().await.is_err() {
        return None;
    }
    log::info!("{id}: reusing connection to {}", session.server.name());
    match send_on(session, msg, rcpts).await {
        Ok((results, session)) => {
            if let Some(session) = session {
                remote.parked.park(key.to_string(), session);
            }
            Some(results)
        }
        Err(f) => {
            log::info!("{id}: reused connection failed: {}", f.detail);
            None
        }
    }
}

fn log_tls(id: &str, cand: &Candidate, info: &crate::tls::TlsInfo, start: TlsStart) {
    if let Some(note) = &info.note {
        log::info!("{id}: {}: {note}", cand.name());
    }
    logline::tls_outbound_established(&cand.name(), info, start);
}

/// Postfix's wording: `250 2.0.0 Ok` for success, `host X said: 550 ... (in reply to
/// RCPT TO command)` otherwise. The reply itself goes along as data.
fn outcome_for(relay: &Relay, reply: &Reply, stage: &'static str) -> Outcome {
    let said = RemoteReply {
        reply: reply.clone(),
        stage,
    };
    let disposition = match reply.code / 100 {
        2 => Disposition::Sent,
        4 => Disposition::Deferred,
        _ => Disposition::Bounced,
    };
    let detail = match disposition {
        Disposition::Sent => reply.summary(),
        _ => format!("host {relay} said: {}", said.diagnostic()),
    };
    Outcome {
        disposition,
        relay: relay.clone(),
        dsn: dsn(reply),
        detail,
        reply: Some(said),
        next_hop_dsn: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::route::Router;

    fn remote(policy: &str, default_level: Level) -> Remote {
        let out = Settings {
            router: Router::default(),
            policy: PolicyTable::parse(policy, "policy").unwrap(),
            default_level,
            ca_file: None,
            ca_dir: None,
            digest: Digest::default(),
            client_cert: None,
            resolver: Some("127.0.0.1:9".into()),
            mx_port: 25,
            credentials: None,
            credentials_file: None,
            mta_sts: false,
            mta_sts_dir: None,
        };
        Remote::new(&out, "router.example", None)
    }

    fn hop(port: u16, implicit_tls: bool) -> NextHop {
        NextHop::Host {
            host: "smtp.example.com".into(),
            port,
            bracketed: true,
            implicit_tls,
        }
    }

    fn plan_for(remote: &Remote, hop: &NextHop) -> TlsPlan {
        let host = Host {
            name: "smtp.example.com".into(),
            addrs: Vec::new(),
            port: 465,
            secure: false,
        };
        smol::block_on(plan(remote, &remote.policy_for(hop), hop, &host)).unwrap()
    }

    #[test]
    fn implicit_tls_is_at_least_encrypt_and_always_mandatory() {
        let r = remote("[smtp.example.com]:465  verify\n", Level::May);
        // Below encrypt counts as encrypt; a stricter entry stays as written.
        assert_eq!(r.policy_for(&hop(2465, true)).level, Level::Encrypt);
        assert_eq!(r.policy_for(&hop(465, true)).level, Level::Verify);
        assert_eq!(r.policy_for(&hop(2465, false)).level, Level::May);
        let none = remote("", Level::None);
        assert_eq!(none.policy_for(&hop(465, true)).level, Level::Encrypt);

        assert!(matches!(
            plan_for(&r, &hop(2465, true)),
            TlsPlan::Implicit(PeerCheck::Nothing)
        ));
        assert!(matches!(
            plan_for(&r, &hop(465, true)),
            TlsPlan::Implicit(PeerCheck::Pkix { .. })
        ));
        let starttls = plan_for(&r, &hop(2465, false));
        assert!(matches!(starttls, TlsPlan::Opportunistic));
        // Only mandatory TLS carries credentials.
        assert!(!starttls.is_mandatory());
        assert!(plan_for(&r, &hop(2465, true)).is_mandatory());
        assert!(TlsPlan::Required(PeerCheck::Nothing).is_mandatory());
        assert!(!TlsPlan::Off.is_mandatory());
    }

    #[test]
    fn only_plans_that_authenticate_the_server_carry_requiretls() {
        let fp = vec!["3D"; 32].join(":");
        let r = remote(
            &format!(
                "[smtp.example.com]:1 may\n[smtp.example.com]:2 encrypt\n\
             [smtp.example.com]:3 verify\n[smtp.example.com]:4 secure\n\
             [smtp.example.com]:5 fingerprint match={fp}\n"
            ),
            Level::None,
        );
        let expect = [
            (1, false),
            (2, false),
            (3, true),
            (4, true),
            (5, true),
            (6, false),
        ];
        for (port, authenticates) in expect {
            let p = plan_for(&r, &hop(port, false));
            assert_eq!(p.authenticates(), authenticates, "port {port}: {p:?}");
        }
        // smtps: without authentication is mandatory TLS, still not authenticated.
        assert!(!plan_for(&r, &hop(7, true)).authenticates());
        // DANE without validated TLSA falls back (here: an unsigned host) to may.
        let dane = remote("", Level::Dane);
        assert!(!plan_for(&dane, &hop(25, false)).authenticates());
        let records = TlsPlan::Required(PeerCheck::Dane {
            records: Vec::new(),
            reference_names: Vec::new(),
        });
        assert!(records.authenticates());
    }

    #[test]
    fn verify_carries_requiretls_only_where_the_mx_name_cannot_be_forged() {
        let host = |secure: bool| Host {
            name: "mx.example.com".into(),
            addrs: Vec::new(),
            port: 25,
            secure,
        };
        let domain = NextHop::Domain("example.com".into());
        let pkix = TlsPlan::Required(PeerCheck::Pkix { names: Vec::new() });
        let verify = Policy::default_for(Level::Verify);
        assert!(requiretls_shortfall(&pkix, &verify, &domain, &host(false), false).is_some());
        // Unless an MTA-STS enforce policy's mx patterns vouched for the name.
        assert_eq!(
            requiretls_shortfall(&pkix, &verify, &domain, &host(false), true),
            None
        );
        assert_eq!(
            requiretls_shortfall(&pkix, &verify, &domain, &host(true), false),
            None
        );
        // A relay host in brackets: no MX records to forge.
        assert_eq!(
            requiretls_shortfall(&pkix, &verify, &hop(25, false), &host(false), false),
            None
        );
        let own_names = Policy {
            matches: vec![".example.com".into()],
            ..Policy::default_for(Level::Verify)
        };
        assert_eq!(
            requiretls_shortfall(&pkix, &own_names, &domain, &host(false), false),
            None
        );
        let secure = Policy::default_for(Level::Secure);
        assert_eq!(
            requiretls_shortfall(&pkix, &secure, &domain, &host(false), false),
            None
        );
        let may = Policy::default_for(Level::May);
        assert_eq!(
            requiretls_shortfall(&TlsPlan::Opportunistic, &may, &domain, &host(true), false),
            Some("TLS is opportunistic")
        );
    }

    #[test]
    fn parked_sessions_are_keyed_by_the_senders_login() {
        let policy = Policy::default_for(Level::Encrypt);
        let (a, b) = (hop(587, false), hop(587, true));
        assert_ne!(cache_key(&a, &policy, ""), cache_key(&b, &policy, ""));
        assert_ne!(
            cache_key(&a, &policy, "creds:1"),
            cache_key(&a, &policy, "creds:2")
        );
        assert_ne!(
            cache_key(&a, &policy, "creds:1"),
            cache_key(&a, &policy, "")
        );
    }
}
