//! SMTP TLS reporting (RFC 8460): the counters of delivery sessions per recipient
//! domain, policy and reporting period, and the daily aggregate report to the domains
//! that ask for one (`_smtp._tls.DOMAIN` TXT `v=TLSRPTv1; rua=mailto:...`).
//!
//! Delivery calls [`Recorder::record_success`] / [`Recorder::record_failure`] once per
//! session with the policy that applied (`tlsa` for DANE, `sts` for MTA-STS,
//! `no-policy-found` otherwise). Each call appends one line to the period's file,
//! `<state-dir>/tlsrpt/START-END.log` (Unix seconds, the period is the UTC day):
//! append-only, one `write(2)` per line, so a crash loses at most a torn last line,
//! which the reader skips. The file is fsynced when the period ends and at most every
//! [`SYNC_INTERVAL`] while it is written, not per session: the counts are statistics,
//! a power cut may cost the last minutes of them, and a router's flash is spared a
//! sync per message.
//!
//! [`run`] reports every period that has ended: for each domain in its file that
//! publishes a TLSRPT record, the JSON report of §4, gzipped, in the MIME form of §5.3,
//! is queued (null sender, unexpanded, so the queue DKIM-signs it with the key of the
//! `From:` domain) to its `mailto:` addresses. Then the file goes. Sessions carrying a
//! report are not counted (§5.3).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::clock::{civil, rfc5322_date, unix_now};
use crate::dns::Resolver;
use crate::headers;
use crate::queue::scheduler::Event;
use crate::queue::{Envelope, QueueId, Spool};
use crate::text::Joined;

/// The reporting period: the UTC day (§4.1: reports cover whole UTC days).
pub const DAY: u64 = 86_400;
/// How long after the period ends the daily report is made (§4.1 wants it soon after
/// the day ends; a few minutes let late sessions of the day finish).
const REPORT_DELAY: u64 = 600;
/// Most time the period file goes unsynced while it is written.
const SYNC_INTERVAL: Duration = Duration::from_secs(300);
/// A period whose domains' TLSRPT lookups keep failing is given up after this long.
const GIVE_UP_AFTER: u64 = 2 * DAY;

/// The policy a session was under (§4.3 `policy-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyType {
    Sts,
    Tlsa,
    NoPolicyFound,
}

impl PolicyType {
    pub fn name(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }

    fn parse(s: &str) -> Option<PolicyType> {
        [PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

/// One policy as the report names it (§4.3 `policy`): the recipient domain, the
/// policy's text (the TLSA records in presentation form, or the lines of an MTA-STS
/// policy) and the MX host it applied to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Policy {
    pub policy_type: PolicyType,
    pub policy_strings: Vec<String>,
    pub policy_domain: String,
    pub mx_host: Option<String>,
}

/// Why a session failed (§4.3 `result-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

const FAILURE_TYPES: [FailureType; 11] = [
    FailureType::StarttlsNotSupported,
    FailureType::CertificateHostMismatch,
    FailureType::CertificateExpired,
    FailureType::CertificateNotTrusted,
    FailureType::ValidationFailure,
    FailureType::TlsaInvalid,
    FailureType::DnssecInvalid,
    FailureType::DaneRequired,
    FailureType::StsPolicyFetchError,
    FailureType::StsPolicyInvalid,
    FailureType::StsWebpkiInvalid,
];

impl FailureType {
    pub fn name(self) -> &'static str {
        match self {
            FailureType::StarttlsNotSupported => "starttls-not-supported",
            FailureType::CertificateHostMismatch => "certificate-host-mismatch",
            FailureType::CertificateExpired => "certificate-expired",
            FailureType::CertificateNotTrusted => "certificate-not-trusted",
            FailureType::ValidationFailure => "validation-failure",
            FailureType::TlsaInvalid => "tlsa-invalid",
            FailureType::DnssecInvalid => "dnssec-invalid",
            FailureType::DaneRequired => "dane-required",
            FailureType::StsPolicyFetchError => "sts-policy-fetch-error",
            FailureType::StsPolicyInvalid => "sts-policy-invalid",
            FailureType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    fn parse(s: &str) -> Option<FailureType> {
        FAILURE_TYPES.into_iter().find(|t| t.name() == s)
    }

    /// The failure type of a TLS failure as delivery words it (`tls::client` and the
    /// DANE decisions of `tls::level`): the one place that reads those reasons.
    pub fn of_reason(reason: &str) -> FailureType {
        let r = reason.to_ascii_lowercase();
        if r.contains("but was not offered") || r.contains("starttls") && r.contains("refused") {
            FailureType::StarttlsNotSupported
        } else if r.contains("tlsa lookup error") {
            FailureType::DnssecInvalid
        } else if r.contains("no dnssec-validated tlsa") {
            FailureType::DaneRequired
        } else if r.contains("dane tlsa authentication failed") || r.contains("none is usable") {
            FailureType::TlsaInvalid
        } else if r.contains("certificate has expired") {
            FailureType::CertificateExpired
        } else if r.contains("do not match") {
            FailureType::CertificateHostMismatch
        } else if r.contains("not trusted") || r.contains("fingerprint mismatch") {
            FailureType::CertificateNotTrusted
        } else {
            FailureType::ValidationFailure
        }
    }
}

/// Where a failed session went (§4.3 `failure-details`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureDetail {
    pub result_type: FailureType,
    pub sending_mta_ip: Option<IpAddr>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_ip: Option<IpAddr>,
}

impl FailureDetail {
    /// A failure of a session to `receiving_ip` (when one was chosen): the sending
    /// address is the one the kernel picks for that destination (a connected UDP
    /// socket sends nothing), as the failed TCP connection had it.
    pub fn new(
        result_type: FailureType,
        receiving_mx_hostname: &str,
        receiving_ip: Option<IpAddr>,
    ) -> FailureDetail {
        FailureDetail {
            result_type,
            sending_mta_ip: receiving_ip.and_then(source_address),
            receiving_mx_hostname: Some(receiving_mx_hostname.to_string()),
            receiving_ip,
        }
    }
}

/// The local address the kernel would send from to `to`.
pub fn source_address(to: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = match to {
        IpAddr::V4(_) => [0, 0, 0, 0].into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    sock.connect(SocketAddr::new(to, 25)).ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

/// The start of the period of length `interval` that `unix` falls in (UTC-aligned).
fn period_start(unix: u64, interval: u64) -> u64 {
    unix - unix % interval
}

/// The period file being written: its start, the open file, its last sync.
struct Current {
    start: u64,
    file: File,
    synced: Instant,
}

/// The session counters, in the state directory. One per daemon; `check-tls` and
/// `--tls-rpt no` have a disabled one that records nothing.
pub struct Recorder {
    /// `<state-dir>/tlsrpt`; `None`: disabled.
    dir: Option<PathBuf>,
    interval: u64,
    current: RefCell<Option<Current>>,
    /// Queue IDs of the reports queued by this process: their sessions are not counted.
    reports: RefCell<HashSet<String>>,
}

impl Recorder {
    /// A recorder that records nothing.
    pub fn disabled() -> Recorder {
        Recorder {
            dir: None,
            interval: DAY,
            current: RefCell::new(None),
            reports: RefCell::default(),
        }
    }

    /// Records into `<state_dir>/tlsrpt`, in periods of `interval` seconds (a day but
    /// for tests).
    pub fn new(state_dir: &Path, interval: u64) -> Recorder {
        Recorder {
            dir: Some(state_dir.join("tlsrpt")),
            interval: interval.max(1),
            ..Recorder::disabled()
        }
    }

    /// Whether a session carrying message `id` is left out of the counts: it is a
    /// report (§5.3), or nothing is recorded.
    pub fn ignores(&self, id: &QueueId) -> bool {
        self.dir.is_none() || self.reports.borrow().contains(&id.0)
    }

    /// A session that satisfied `policy`.
    pub fn record_success(&self, policy: &Policy) {
        self.append(policy, None);
    }

    /// A session that failed under `policy`.
    pub fn record_failure(&self, policy: &Policy, detail: &FailureDetail) {
        self.append(policy, Some(detail));
    }

    fn append(&self, policy: &Policy, failure: Option<&FailureDetail>) {
        let Some(dir) = &self.dir else { return };
        let line = encode_line(policy, failure);
        let now = unix_now();
        let start = period_start(now, self.interval);
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_some_and(|c| c.start != start) {
            // The period ended: its file is complete, on disk before it is reported.
            if let Some(old) = current.take() {
                let _ = old.file.sync_all();
            }
        }
        if current.is_none() {
            let path = dir.join(file_name(start, start + self.interval));
            let opened = fs::create_dir_all(dir)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
            match opened {
                Ok(file) => {
                    *current = Some(Current {
                        start,
                        file,
                        synced: Instant::now(),
                    })
                }
                Err(e) => {
                    log::warn!("TLS reporting: cannot open {}: {e}", path.display());
                    return;
                }
            }
        }
        let Some(c) = current.as_mut() else { return };
        if let Err(e) = c.file.write_all(line.as_bytes()) {
            log::warn!("TLS reporting: cannot record a session: {e}");
        }
        if c.synced.elapsed() >= SYNC_INTERVAL {
            let _ = c.file.sync_data();
            c.synced = Instant::now();
        }
    }

    /// Syncs the file being written (before its period is reported).
    fn sync(&self) {
        if let Some(c) = self.current.borrow_mut().as_mut() {
            let _ = c.file.sync_data();
            c.synced = Instant::now();
        }
    }
}

fn file_name(start: u64, end: u64) -> String {
    format!("{start}-{end}.log")
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let (start, end) = name.strip_suffix(".log")?.split_once('-')?;
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    (start < end).then_some((start, end))
}

/// Escapes the separators of the line format (`%`, TAB, CR, LF) as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '\t' | '\r' | '\n' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// One session as a line: `ok` or the failure type, the policy (type, domain, MX
/// host), the failure's addresses, then the policy strings; TAB-separated, `-` for
/// none, each field escaped.
fn encode_line(policy: &Policy, failure: Option<&FailureDetail>) -> String {
    let opt = |s: Option<String>| s.map_or_else(|| "-".to_string(), |s| escape(&s));
    let mut fields = vec![
        failure.map_or("ok", |f| f.result_type.name()).to_string(),
        escape(&policy.policy_domain),
        policy.policy_type.name().to_string(),
        opt(policy.mx_host.clone()),
        opt(failure
            .and_then(|f| f.sending_mta_ip)
            .map(|i| i.to_string())),
        opt(failure.and_then(|f| f.receiving_mx_hostname.clone())),
        opt(failure.and_then(|f| f.receiving_ip).map(|i| i.to_string())),
    ];
    fields.extend(policy.policy_strings.iter().map(|s| escape(s)));
    let mut line = fields.joined("\t");
    line.push('\n');
    line
}

fn decode_line(line: &str) -> Option<(Policy, Option<FailureDetail>)> {
    let mut fields = line.split('\t');
    let mut next = || fields.next().and_then(unescape);
    let result = next()?;
    let policy_domain = next()?;
    let policy_type = PolicyType::parse(&next()?)?;
    let opt = |s: String| (s != "-").then_some(s);
    let mx_host = opt(next()?);
    let sending = opt(next()?);
    let receiving_mx = opt(next()?);
    let receiving_ip = opt(next()?);
    let policy_strings: Vec<String> = std::iter::from_fn(&mut next).collect();
    let failure = match result.as_str() {
        "ok" => None,
        other => Some(FailureDetail {
            result_type: FailureType::parse(other)?,
            sending_mta_ip: sending.and_then(|s| s.parse().ok()),
            receiving_mx_hostname: receiving_mx,
            receiving_ip: receiving_ip.and_then(|s| s.parse().ok()),
        }),
    };
    let policy = Policy {
        policy_type,
        policy_strings,
        policy_domain,
        mx_host,
    };
    Some((policy, failure))
}

/// One policy's counts in a period.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    successful: u64,
    failed: u64,
    failures: BTreeMap<FailureDetail, u64>,
}

/// The counts of a period file, by domain then policy. Lines that do not parse (a
/// torn last line after a crash) are skipped.
fn aggregate(text: &str) -> BTreeMap<String, BTreeMap<Policy, Counts>> {
    let mut domains: BTreeMap<String, BTreeMap<Policy, Counts>> = BTreeMap::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            continue;
        };
        let Some((policy, failure)) = decode_line(line) else {
            continue;
        };
        let counts = domains
            .entry(policy.policy_domain.clone())
            .or_default()
            .entry(policy)
            .or_default();
        match failure {
            None => counts.successful += 1,
            Some(f) => {
                counts.failed += 1;
                *counts.failures.entry(f).or_default() += 1;
            }
        }
    }
    domains
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters
/// escaped; everything else as it is (UTF-8).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `"name":"value"`.
fn json_field(out: &mut String, name: &str, value: &str) {
    json_string(out, name);
    out.push(':');
    json_string(out, value);
}

/// RFC 3339 UTC date-time, `2026-12-01T00:00:00Z`.
fn rfc3339(unix: u64) -> String {
    let (y, m, d, secs) = civil(unix);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Who the reports come from: `organization-name` and `contact-info` (whose domain
/// is the submitter, §5.1), and the reporting period (a day but for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    pub organization: String,
    pub contact: String,
    pub interval: u64,
}

impl ReportSettings {
    /// The domain reports are submitted as: the contact address's.
    pub fn submitter(&self) -> &str {
        self.contact
            .rsplit_once('@')
            .map_or(self.contact.as_str(), |(_, d)| d)
    }
}

/// The report of one domain for one period (§4.4).
struct Report<'a> {
    settings: &'a ReportSettings,
    report_id: String,
    start: u64,
    /// The last second of the period.
    end: u64,
    policies: &'a BTreeMap<Policy, Counts>,
}

impl Report<'_> {
    fn json(&self) -> String {
        let mut j = String::from("{");
        json_field(&mut j, "organization-name", &self.settings.organization);
        j.push_str(",\"date-range\":{");
        json_field(&mut j, "start-datetime", &rfc3339(self.start));
        j.push(',');
        json_field(&mut j, "end-datetime", &rfc3339(self.end));
        j.push_str("},");
        json_field(&mut j, "contact-info", &self.settings.contact);
        j.push(',');
        json_field(&mut j, "report-id", &self.report_id);
        j.push_str(",\"policies\":[");
        for (i, (policy, counts)) in self.policies.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            j.push_str("{\"policy\":{");
            json_field(&mut j, "policy-type", policy.policy_type.name());
            if !policy.policy_strings.is_empty() {
                j.push_str(",\"policy-string\":[");
                for (k, s) in policy.policy_strings.iter().enumerate() {
                    if k > 0 {
                        j.push(',');
                    }
                    json_string(&mut j, s);
                }
                j.push(']');
            }
            j.push(',');
            json_field(&mut j, "policy-domain", &policy.policy_domain);
            if let Some(mx) = &policy.mx_host {
                j.push(',');
                json_field(&mut j, "mx-host", mx);
            }
            let _ = write!(
                j,
                "}},\"summary\":{{\"total-successful-session-count\":{},\"total-failure-session-count\":{}}}",
                counts.successful, counts.failed
            );
            if !counts.failures.is_empty() {
                j.push_str(",\"failure-details\":[");
                for (k, (f, n)) in counts.failures.iter().enumerate() {
                    if k > 0 {
                        j.push(',');
                    }
                    j.push('{');
                    json_field(&mut j, "result-type", f.result_type.name());
                    if let Some(ip) = f.sending_mta_ip {
                        j.push(',');
                        json_field(&mut j, "sending-mta-ip", &ip.to_string());
                    }
                    if let Some(mx) = &f.receiving_mx_hostname {
                        j.push(',');
                        json_field(&mut j, "receiving-mx-hostname", mx);
                    }
                    if let Some(ip) = f.receiving_ip {
                        j.push(',');
                        json_field(&mut j, "receiving-ip", &ip.to_string());
                    }
                    let _ = write!(j, ",\"failed-session-count\":{n}}}");
                }
                j.push(']');
            }
            j.push('}');
        }
        j.push_str("]}");
        j
    }
}

/// gzip (RFC 1952) of `data`.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

/// The report message of §5.3 from `hostname` to `rua`, with `gz` attached.
fn message(
    env: &Envelope,
    hostname: &str,
    settings: &ReportSettings,
    domain: &str,
    report: &Report<'_>,
    gz: &[u8],
) -> Vec<u8> {
    let submitter = settings.submitter();
    let boundary = format!("tlsrpt-{}", env.id);
    let filename = format!(
        "{submitter}!{domain}!{}!{}!{}.json.gz",
        report.start,
        report.end,
        env.id
            .0
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    let to: Vec<String> = env.recipients.iter().map(|r| format!("<{r}>")).collect();
    let mut m = format!(
        "From: TLS reporting <{}>\r\nTo: {}\r\nSubject: Report Domain: {domain}\r\n Submitter: {submitter}\r\n Report-ID: <{}>\r\n{}{}TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: {submitter}\r\nAuto-Submitted: auto-generated\r\nTLS-Required: No\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"{boundary}\"\r\n\r\nThis is a multipart message in MIME format.\r\n\r\n",
        settings.contact,
        to.joined(",\r\n "),
        report.report_id,
        headers::date(env.arrival),
        headers::message_id(env.arrival, &env.id.0, hostname),
    );
    let _ = write!(
        m,
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
         This is an aggregate TLS report (RFC 8460) from {submitter} for {domain}, covering\r\n\
         {} to {}.\r\n\r\n--{boundary}\r\nContent-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n filename=\"{filename}\"\r\n\r\n",
        rfc5322_date(report.start),
        rfc5322_date(report.end),
    );
    let b64 = openssl::base64::encode_block(gz);
    for chunk in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        m.push_str("\r\n");
    }
    let _ = write!(m, "\r\n--{boundary}--\r\n");
    m.into_bytes()
}

/// The `mailto:` addresses of a TLSRPT record (§3), or None when `txt` is not one.
pub fn rua_mailto(txt: &str) -> Option<Vec<String>> {
    let mut tags = txt.split(';').map(str::trim);
    if !tags.next()?.eq_ignore_ascii_case("v=TLSRPTv1") {
        return None;
    }
    let rua = tags.find_map(|t| {
        let (k, v) = t.split_once('=')?;
        k.trim().eq_ignore_ascii_case("rua").then_some(v)
    })?;
    Some(
        rua.split(',')
            .filter_map(|u| {
                let u = u.trim();
                let addr = u
                    .get(..7)?
                    .eq_ignore_ascii_case("mailto:")
                    .then(|| &u[7..])?;
                // A `mailto:` URI may carry ?headers; the address is before them.
                let addr = addr.split('?').next()?;
                addr.contains('@').then(|| addr.to_string())
            })
            .collect(),
    )
}

/// What the daily report needs: where to find the counts and queue the reports, and
/// how to wake the queue.
pub struct Reporter {
    pub recorder: Rc<Recorder>,
    pub settings: ReportSettings,
    pub hostname: String,
    pub spool: Spool,
    pub events: smol::channel::Sender<Event>,
    pub resolver: Result<Resolver, String>,
}

/// The daily timer: reports the periods that ended (at start, those a stopped daemon
/// left), then waits for the end of the next one.
pub async fn run(reporter: Reporter) {
    let interval = reporter.recorder.interval;
    let delay = if interval >= DAY { REPORT_DELAY } else { 1 };
    loop {
        reporter.report_ended().await;
        let now = unix_now();
        let next = period_start(now, interval) + interval + delay;
        smol::Timer::after(Duration::from_secs(next.saturating_sub(now).max(1))).await;
    }
}

impl Reporter {
    /// Reports every period file whose period has ended, or that was written with
    /// another interval (a restart with another `--tls-rpt-interval`).
    async fn report_ended(&self) {
        let Some(dir) = self.recorder.dir.clone() else {
            return;
        };
        let now = unix_now();
        let interval = self.recorder.interval;
        let current = period_start(now, interval);
        let mut due: Vec<(u64, u64, PathBuf)> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| {
                    let e = e.ok()?;
                    let (start, end) = parse_file_name(e.file_name().to_str()?)?;
                    (end <= now || start != current).then(|| (start, end, e.path()))
                })
                .collect(),
            Err(_) => return,
        };
        if due.is_empty() {
            return;
        }
        due.sort();
        self.recorder.sync();
        for (start, end, path) in due {
            self.report_period(start, end.min(now.max(start + 1)), &path)
                .await;
        }
    }

    /// Queues the reports of one period file; the file goes when every domain in it is
    /// done (reported, or without a TLSRPT record). Domains whose lookup failed stay,
    /// for the next run, up to [`GIVE_UP_AFTER`].
    async fn report_period(&self, start: u64, end: u64, path: &Path) {
        let text = match fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                log::warn!("TLS reporting: cannot read {}: {e}", path.display());
                return;
            }
        };
        let mut retry = Vec::new();
        for (domain, policies) in aggregate(&text) {
            match self.rua(&domain).await {
                Ok(Some(rua)) if !rua.is_empty() => {
                    if self
                        .queue_report(&domain, start, end, &policies, rua)
                        .await
                        .is_err()
                    {
                        retry.push(domain);
                    }
                }
                Ok(_) => log::debug!("TLS reporting: {domain} asks for no report by mail"),
                Err(e) => {
                    log::warn!("TLS reporting: TLSRPT lookup for {domain}: {e}");
                    retry.push(domain);
                }
            }
        }
        let give_up = unix_now() > end + GIVE_UP_AFTER;
        let kept: String = if give_up {
            String::new()
        } else {
            text.split_inclusive('\n')
                .filter(|l| {
                    decode_line(l.trim_end_matches('\n'))
                        .is_some_and(|(p, _)| retry.contains(&p.policy_domain))
                })
                .collect()
        };
        let done = if kept.is_empty() {
            fs::remove_file(path)
        } else {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, kept).and_then(|()| fs::rename(&tmp, path))
        };
        if let Err(e) = done {
            log::warn!("TLS reporting: cannot update {}: {e}", path.display());
        }
    }

    /// The `mailto:` addresses `domain` publishes; `Ok(None)` without a record.
    async fn rua(&self, domain: &str) -> Result<Option<Vec<String>>, String> {
        let resolver = self.resolver.as_ref().map_err(|e| e.clone())?;
        let name = format!("_smtp._tls.{domain}");
        let lookup = resolver.txt(&name).await.map_err(|e| e.to_string())?;
        Ok(lookup.records.iter().find_map(|t| rua_mailto(t)))
    }

    async fn queue_report(
        &self,
        domain: &str,
        start: u64,
        end: u64,
        policies: &BTreeMap<Policy, Counts>,
        rua: Vec<String>,
    ) -> Result<(), ()> {
        let env = Envelope {
            id: QueueId::generate(),
            arrival: unix_now(),
            sender: String::new(),
            recipients: rua,
            client: format!("{}[local]", self.hostname),
            protocol: "local".into(),
            // Through the tables like any mail we originate, and DKIM-signed there.
            unexpanded: true,
            requiretls: false,
            dsn: Default::default(),
        };
        let report = Report {
            settings: &self.settings,
            report_id: format!("{}.{}@{}", start, env.id, self.settings.submitter()),
            start,
            end: end - 1,
            policies,
        };
        let gz = match gzip(report.json().as_bytes()) {
            Ok(gz) => gz,
            Err(e) => {
                log::error!("TLS reporting: cannot compress the report for {domain}: {e}");
                return Err(());
            }
        };
        let content = message(&env, &self.hostname, &self.settings, domain, &report, &gz);
        self.recorder.reports.borrow_mut().insert(env.id.0.clone());
        let (spool, env2) = (self.spool.clone(), env.clone());
        match crate::runtime::unblock(move || spool.store(&env2, &content)).await {
            Ok(()) => {
                log::info!(
                    "{}: TLS report for {domain} queued for {}",
                    env.id,
                    env.recipients.joined(", ")
                );
                let _ = self.events.send(Event::New(env.id)).await;
                Ok(())
            }
            Err(e) => {
                log::error!("TLS reporting: cannot queue the report for {domain}: {e}");
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlsa_policy() -> Policy {
        Policy {
            policy_type: PolicyType::Tlsa,
            policy_strings: vec!["3 1 1 abcd".into(), "odd\t%\"\\\u{1}".into()],
            policy_domain: "dane.test".into(),
            mx_host: Some("mx.dane.test".into()),
        }
    }

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let p = tlsa_policy();
        let f = FailureDetail {
            result_type: FailureType::TlsaInvalid,
            sending_mta_ip: Some("192.0.2.1".parse().unwrap()),
            receiving_mx_hostname: Some("mx.dane.test".into()),
            receiving_ip: Some("2001:db8::25".parse().unwrap()),
        };
        let ok = encode_line(&p, None);
        let bad = encode_line(&p, Some(&f));
        assert_eq!(ok.matches('\n').count(), 1);
        assert_eq!(decode_line(ok.trim_end()), Some((p.clone(), None)));
        assert_eq!(
            decode_line(bad.trim_end()),
            Some((p.clone(), Some(f.clone())))
        );
        let torn = &bad[..bad.len() - 5];
        let text = format!("{ok}{bad}{ok}{torn}");
        let counts = aggregate(&text);
        let c = &counts["dane.test"][&p];
        assert_eq!((c.successful, c.failed), (2, 1));
        assert_eq!(c.failures[&f], 1);
    }

    #[test]
    fn failure_reasons_map_to_rfc_8460_types() {
        for (reason, t) in [
            (
                "TLS is required, but was not offered by host mx[1.2.3.4]:25",
                FailureType::StarttlsNotSupported,
            ),
            (
                "server certificate not trusted: certificate has expired",
                FailureType::CertificateExpired,
            ),
            (
                "server certificate not trusted: self-signed certificate",
                FailureType::CertificateNotTrusted,
            ),
            (
                "server certificate names a.test do not match b.test",
                FailureType::CertificateHostMismatch,
            ),
            (
                "DANE TLSA authentication failed: no TLSA record matched",
                FailureType::TlsaInvalid,
            ),
            (
                "TLSA lookup error for _25._tcp.mx.test: SERVFAIL",
                FailureType::DnssecInvalid,
            ),
            (
                "dane-only: no DNSSEC-validated TLSA records for the MX host (mx)",
                FailureType::DaneRequired,
            ),
            ("handshake failure", FailureType::ValidationFailure),
        ] {
            assert_eq!(FailureType::of_reason(reason), t, "{reason}");
        }
        for t in FAILURE_TYPES {
            assert_eq!(FailureType::parse(t.name()), Some(t));
        }
    }

    #[test]
    fn the_report_is_rfc_8460_json() {
        let p = tlsa_policy();
        let none = Policy {
            policy_type: PolicyType::NoPolicyFound,
            policy_strings: Vec::new(),
            policy_domain: "dane.test".into(),
            mx_host: None,
        };
        let f = FailureDetail::new(
            FailureType::CertificateNotTrusted,
            "mx.dane.test",
            Some("127.0.0.1".parse().unwrap()),
        );
        let text = [
            encode_line(&p, None),
            encode_line(&p, Some(&f)),
            encode_line(&none, None),
        ]
        .concat();
        let counts = aggregate(&text);
        let settings = ReportSettings {
            organization: "Org \"quoted\"".into(),
            contact: "tlsrpt@example.test".into(),
            interval: DAY,
        };
        let report = Report {
            settings: &settings,
            report_id: "1.X@example.test".into(),
            start: 1_764_547_200,
            end: 1_764_547_200 + DAY - 1,
            policies: &counts["dane.test"],
        };
        let v: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(v["organization-name"], "Org \"quoted\"");
        assert_eq!(v["date-range"]["start-datetime"], "2025-12-01T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2025-12-01T23:59:59Z");
        assert_eq!(v["contact-info"], "tlsrpt@example.test");
        let policies = v["policies"].as_array().unwrap();
        assert_eq!(policies.len(), 2);
        let tlsa = &policies[0];
        assert_eq!(tlsa["policy"]["policy-type"], "tlsa");
        assert_eq!(tlsa["policy"]["policy-string"][1], "odd\t%\"\\\u{1}");
        assert_eq!(tlsa["policy"]["mx-host"], "mx.dane.test");
        assert_eq!(tlsa["summary"]["total-successful-session-count"], 1);
        assert_eq!(tlsa["summary"]["total-failure-session-count"], 1);
        let d = &tlsa["failure-details"][0];
        assert_eq!(d["result-type"], "certificate-not-trusted");
        assert_eq!(d["sending-mta-ip"], "127.0.0.1");
        assert_eq!(d["receiving-ip"], "127.0.0.1");
        assert_eq!(d["failed-session-count"], 1);
        assert_eq!(policies[1]["policy"]["policy-type"], "no-policy-found");
        assert!(policies[1]["policy"].get("policy-string").is_none());
    }

    #[test]
    fn tlsrpt_records() {
        assert_eq!(
            rua_mailto(
                "v=TLSRPTv1; rua=mailto:a@x.test,https://r.test/x, mailto:b@y.test?subject=x"
            ),
            Some(vec!["a@x.test".to_string(), "b@y.test".to_string()])
        );
        assert_eq!(rua_mailto("v=spf1 -all"), None);
        assert_eq!(rua_mailto("v=TLSRPTv1;rua=https://r.test/"), Some(vec![]));
        assert_eq!(parse_file_name("100-200.log"), Some((100, 200)));
        assert_eq!(parse_file_name("100-200.tmp"), None);
        assert_eq!(period_start(1_764_590_000, DAY), 1_764_547_200);
    }

    #[test]
    fn the_recorder_appends_per_period_and_skips_reports() {
        let dir = std::env::temp_dir().join(format!("tlsrpt-unit-{}", std::process::id()));
        let r = Recorder::new(&dir, DAY);
        r.record_success(&tlsa_policy());
        r.record_success(&tlsa_policy());
        let start = period_start(unix_now(), DAY);
        let text =
            fs::read_to_string(dir.join("tlsrpt").join(file_name(start, start + DAY))).unwrap();
        assert_eq!(aggregate(&text)["dane.test"][&tlsa_policy()].successful, 2);
        r.reports.borrow_mut().insert("ID1".into());
        assert!(r.ignores(&QueueId("ID1".into())));
        assert!(!r.ignores(&QueueId("ID2".into())));
        assert!(Recorder::disabled().ignores(&QueueId("ID2".into())));
        let _ = fs::remove_dir_all(&dir);
    }
}
