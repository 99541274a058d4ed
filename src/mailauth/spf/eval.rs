//! `check_host()` (RFC 7208 §4): fetch and select the record (§4.4, §4.5), evaluate its
//! mechanisms in order (§4.6, §5) and `redirect=` (§6.1), under the processing limits
//! of §4.6.4 — 10 terms that query DNS, 2 void lookups, 10 MX names per `mx`, 10 PTR
//! names. This file owns the evaluation and its counters; the grammar is in
//! `record.rs` and `macros.rs`, the choice of identity, the time bound and the
//! explanation in `spf.rs`.

use std::net::IpAddr;

use super::macros::{MacroString, Values};
use super::record::{Cidr, Mechanism, Qualifier, Record};
use super::Verdict;
use crate::dns::Names;
use crate::mailauth::Dns;

/// Terms that query DNS, per check (§4.6.4).
const MAX_DNS_TERMS: u32 = 10;
/// Lookups answered with no records or NXDOMAIN, per check (§4.6.4).
const MAX_VOID: u32 = 2;
/// MX records an `mx` may have (§4.6.4: more is a `permerror`).
const MAX_MX: usize = 10;
/// PTR names looked at for `ptr` and `%{p}` (§4.6.4: the rest are ignored).
const MAX_PTR: usize = 10;

/// Why evaluation stopped before a result: `temperror` or `permerror`, with the
/// reason for the log.
#[derive(Debug)]
pub(super) enum Stop {
    Temp(String),
    Perm(String),
}

/// What one `check_host()` came to, short of an error.
pub(super) struct Decision {
    /// `None`, `Neutral`, `Pass`, `Fail` or `SoftFail`.
    pub verdict: Verdict,
    /// The directive that matched, as written.
    pub mechanism: Option<String>,
    /// On a `fail` by a mechanism: the record's `exp=` and the domain it belongs to
    /// (its `%{d}`).
    pub explanation: Option<(MacroString, String)>,
}

impl Decision {
    fn plain(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            mechanism: None,
            explanation: None,
        }
    }
}

/// The client's validated names (§5.5), found once per check and shared by every
/// `ptr` and `%{p}`.
struct Validated {
    names: Vec<String>,
    /// The PTR lookup found nothing (a void lookup each time a `ptr` asks).
    void: bool,
}

/// One check in progress: the inputs of §4.1 and the counters of §4.6.4.
pub(super) struct Evaluator<'a, D> {
    pub dns: &'a D,
    /// IPv4-mapped IPv6 addresses already turned into IPv4.
    pub ip: IpAddr,
    pub sender: &'a str,
    pub local: &'a str,
    pub sender_domain: &'a str,
    pub helo: &'a str,
    pub receiver: &'a str,
    pub time: u64,
    dns_terms: u32,
    voids: u32,
    validated: Option<Validated>,
}

impl<'a, D: Dns> Evaluator<'a, D> {
    /// `sender` is the `<sender>` whole, its local-part and its domain (`%{s}`,
    /// `%{l}`, `%{o}`).
    pub fn new(
        dns: &'a D,
        ip: IpAddr,
        sender: (&'a str, &'a str, &'a str),
        helo: &'a str,
        receiver: &'a str,
        time: u64,
    ) -> Self {
        Evaluator {
            dns,
            ip,
            sender: sender.0,
            local: sender.1,
            sender_domain: sender.2,
            helo,
            receiver,
            time,
            dns_terms: 0,
            voids: 0,
            validated: None,
        }
    }

    /// `check_host(<ip>, domain, <sender>)`.
    pub async fn check_host(&mut self, domain: &str) -> Result<Decision, Stop> {
        // §4.3: a malformed or single-label domain has no record (the identity was
        // checked more strictly by the caller; this catches names macros built).
        if !Names::Any.accepts(domain) || !domain.contains('.') {
            return Ok(Decision::plain(Verdict::None));
        }
        let txt = self
            .dns
            .txt(domain)
            .await
            .map_err(|e| Stop::Temp(format!("TXT {domain}: {e}")))?;
        let mut spf = txt.records.iter().filter(|t| super::record::is_spf(t));
        let text = match (spf.next(), spf.next()) {
            (None, _) => return Ok(Decision::plain(Verdict::None)),
            (Some(t), None) => t,
            (Some(_), Some(_)) => {
                return Err(Stop::Perm(format!("{domain} has more than one SPF record")))
            }
        };
        let record = Record::parse(text).map_err(|e| Stop::Perm(format!("{domain}: {e}")))?;
        for d in &record.directives {
            if self.matches(&d.mechanism, domain).await? {
                let explanation = match (d.qualifier, &record.explanation) {
                    (Qualifier::Fail, Some(exp)) => Some((exp.clone(), domain.to_string())),
                    _ => None,
                };
                return Ok(Decision {
                    verdict: Verdict::from(d.qualifier),
                    mechanism: Some(d.text.clone()),
                    explanation,
                });
            }
        }
        let Some(redirect) = &record.redirect else {
            return Ok(Decision::plain(Verdict::Neutral));
        };
        // §6.1: the target's result is the result, its exp= with it; this record's
        // exp= is not used.
        self.count_dns_term()?;
        let target = self.expand_domain(redirect, domain).await;
        let decision = Box::pin(self.check_host(&target)).await?;
        if decision.verdict == Verdict::None {
            return Err(Stop::Perm(format!(
                "redirect={target}: no SPF record there"
            )));
        }
        Ok(decision)
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, Stop> {
        if mechanism.queries_dns() {
            self.count_dns_term()?;
        }
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(in_network(self.ip, IpAddr::V4(*net), *len)),
            Mechanism::Ip6(net, len) => Ok(in_network(self.ip, IpAddr::V6(*net), *len)),
            Mechanism::Include(spec) => {
                // §5.2: only a pass matches; an error is the error; none is permerror.
                let target = self.expand_domain(spec, domain).await;
                let decision = Box::pin(self.check_host(&target)).await?;
                match decision.verdict {
                    Verdict::Pass => Ok(true),
                    Verdict::None => {
                        Err(Stop::Perm(format!("include:{target}: no SPF record there")))
                    }
                    _ => Ok(false),
                }
            }
            Mechanism::A(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                self.address_match(&target, *cidr, true).await
            }
            Mechanism::Mx(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                if !Names::Any.accepts(&target) {
                    return Ok(false);
                }
                let mx = self
                    .dns
                    .mx(&target)
                    .await
                    .map_err(|e| Stop::Temp(format!("MX {target}: {e}")))?;
                self.count_void(mx.records.is_empty())?;
                if mx.records.len() > MAX_MX {
                    return Err(Stop::Perm(format!(
                        "{target} has more than {MAX_MX} MX records"
                    )));
                }
                // §5.4 does not follow a null MX (RFC 7505): it names no host.
                for exchange in mx.records.iter().filter(|m| !m.exchange.is_empty()) {
                    if self.address_match(&exchange.exchange, *cidr, false).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let target = self.target(spec.as_ref(), domain).await;
                let v = self.validated().await;
                let (void, found) = (v.void, v.names.iter().any(|n| within(n, &target)));
                self.count_void(void)?;
                Ok(found)
            }
            Mechanism::Exists(spec) => {
                // §5.7: an A query whatever the client's address family.
                let target = self.expand_domain(spec, domain).await;
                if !Names::Any.accepts(&target) {
                    return Ok(false);
                }
                let a = self
                    .dns
                    .a(&target)
                    .await
                    .map_err(|e| Stop::Temp(format!("A {target}: {e}")))?;
                self.count_void(a.records.is_empty())?;
                Ok(!a.records.is_empty())
            }
        }
    }

    /// Whether an address of `name` in the client's family is within `cidr` of the
    /// client (§5.3, §5.4). A name DNS cannot be asked for matches nothing (the
    /// suite's "invalid-domain" cases; §4.3 by analogy).
    async fn address_match(&mut self, name: &str, cidr: Cidr, first: bool) -> Result<bool, Stop> {
        if !Names::Any.accepts(name) {
            return Ok(false);
        }
        let addresses: Vec<IpAddr> = match self.ip {
            IpAddr::V4(_) => self
                .dns
                .a(name)
                .await
                .map(|l| l.records.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => self
                .dns
                .aaaa(name)
                .await
                .map(|l| l.records.into_iter().map(IpAddr::V6).collect()),
        }
        .map_err(|e| Stop::Temp(format!("address of {name}: {e}")))?;
        // The void limit is about the term's own lookup, not each MX host's.
        if first {
            self.count_void(addresses.is_empty())?;
        }
        let len = match self.ip {
            IpAddr::V4(_) => cidr.v4,
            IpAddr::V6(_) => cidr.v6,
        };
        Ok(addresses.iter().any(|a| in_network(self.ip, *a, len)))
    }

    fn count_dns_term(&mut self) -> Result<(), Stop> {
        self.dns_terms += 1;
        if self.dns_terms > MAX_DNS_TERMS {
            return Err(Stop::Perm(format!(
                "more than {MAX_DNS_TERMS} DNS-querying terms"
            )));
        }
        Ok(())
    }

    fn count_void(&mut self, void: bool) -> Result<(), Stop> {
        if void {
            self.voids += 1;
            if self.voids > MAX_VOID {
                return Err(Stop::Perm(format!("more than {MAX_VOID} void lookups")));
            }
        }
        Ok(())
    }

    /// The validated names of the client (§5.5): PTR names (the first 10) whose
    /// addresses include the client's. A failed PTR lookup validates nothing; a
    /// failed address lookup skips that name.
    async fn validated(&mut self) -> &Validated {
        let v = match self.validated.take() {
            Some(v) => v,
            None => {
                let mut v = Validated {
                    names: Vec::new(),
                    void: false,
                };
                if let Ok(ptr) = self.dns.ptr(self.ip).await {
                    v.void = ptr.records.is_empty();
                    for name in ptr.records.into_iter().take(MAX_PTR) {
                        if self.has_address(&name).await {
                            v.names.push(name);
                        }
                    }
                }
                v
            }
        };
        self.validated.insert(v)
    }

    async fn has_address(&self, name: &str) -> bool {
        if !Names::Any.accepts(name) {
            return false;
        }
        match self.ip {
            IpAddr::V4(ip) => self
                .dns
                .a(name)
                .await
                .is_ok_and(|l| l.records.contains(&ip)),
            IpAddr::V6(ip) => self
                .dns
                .aaaa(name)
                .await
                .is_ok_and(|l| l.records.contains(&ip)),
        }
    }

    /// `%{p}` (§7.3): `domain` itself if validated, else a validated subdomain of
    /// it, else any validated name, else `unknown`.
    async fn ptr_name(&mut self, domain: &str) -> String {
        let names = &self.validated().await.names;
        names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(domain))
            .or_else(|| names.iter().find(|n| within(n, domain)))
            .or(names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// A mechanism's target: its domain-spec expanded, or the current domain.
    async fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(spec) => self.expand_domain(spec, domain).await,
            None => domain.to_string(),
        }
    }

    /// A domain-spec expanded into a name to look up.
    pub async fn expand_domain(&mut self, spec: &MacroString, domain: &str) -> String {
        let ptr = self.ptr_for(spec, domain).await;
        spec.expand_domain(&self.values(domain, &ptr))
    }

    /// Explanation text expanded (§6.2).
    pub async fn expand_text(&mut self, text: &MacroString, domain: &str) -> String {
        let ptr = self.ptr_for(text, domain).await;
        text.expand(&self.values(domain, &ptr))
    }

    async fn ptr_for(&mut self, spec: &MacroString, domain: &str) -> String {
        if spec.uses_ptr() {
            self.ptr_name(domain).await
        } else {
            String::new()
        }
    }

    fn values<'s>(&'s self, domain: &'s str, ptr: &'s str) -> Values<'s> {
        Values {
            sender: self.sender,
            local: self.local,
            sender_domain: self.sender_domain,
            domain,
            ip: self.ip,
            ptr,
            helo: self.helo,
            receiver: self.receiver,
            time: self.time,
        }
    }
}

impl From<Qualifier> for Verdict {
    fn from(q: Qualifier) -> Verdict {
        match q {
            Qualifier::Pass => Verdict::Pass,
            Qualifier::Fail => Verdict::Fail,
            Qualifier::SoftFail => Verdict::SoftFail,
            Qualifier::Neutral => Verdict::Neutral,
        }
    }
}

/// `name` is `domain` or a name under it, case-blind (§5.5).
fn within(name: &str, domain: &str) -> bool {
    let (n, d) = (name.as_bytes(), domain.as_bytes());
    n.len() >= d.len()
        && n[n.len() - d.len()..].eq_ignore_ascii_case(d)
        && (n.len() == d.len() || n[n.len() - d.len() - 1] == b'.')
}

/// Whether `ip` is in `net`/`len`; addresses of the other family never are (§5).
fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("192.0.2.5"), ip("192.0.2.0"), 24));
        assert!(!in_network(ip("192.0.3.5"), ip("192.0.2.0"), 24));
        assert!(in_network(ip("203.0.113.9"), ip("1.1.1.1"), 0));
        assert!(in_network(ip("192.0.2.5"), ip("192.0.2.5"), 32));
        assert!(!in_network(ip("192.0.2.5"), ip("192.0.2.4"), 32));
        assert!(in_network(ip("2001:db8::1"), ip("::"), 0));
        assert!(in_network(
            ip("cafe:babe:8000::"),
            ip("cafe:babe:8000::"),
            33
        ));
        assert!(!in_network(ip("cafe:babe::"), ip("cafe:babe:8000::"), 33));
        assert!(
            !in_network(ip("192.0.2.5"), ip("::"), 0),
            "families never mix"
        );
        assert!(!in_network(ip("::1"), ip("0.0.0.0"), 0));
    }

    #[test]
    fn names_within_a_domain() {
        assert!(within("mail.example.com", "example.com"));
        assert!(within("Mail.Example.COM", "example.Com"));
        assert!(within("example.com", "example.com"));
        assert!(!within("badexample.com", "example.com"));
        assert!(!within("com", "example.com"));
    }
}
