//! DMARC (RFC 7489, with the policy discovery of RFC 9989 "DMARCbis"): whether the
//! domain of the `From:` a reader sees was authenticated by an aligned SPF or DKIM
//! pass, and what its owner asks a receiver to do when it was not.
//!
//! Where an organisation ends is found by the DNS Tree Walk of RFC 9989 §4.10 — the
//! `_dmarc` records up the tree, with their `psd=` tags — not by a Public Suffix List,
//! which a router cannot carry or keep current. The walk asks at most eight names per
//! domain; every answer is kept for the rest of the check, so the policy discovery and
//! the alignment of each identifier share the lookups.
//!
//! Pure over the [`Dns`] trait; the inbound session decides what a verdict leads to.

use std::fmt;

use super::dkim::{DkimResult, Verdict as DkimVerdict};
use super::spf::{SpfResult, Verdict as SpfVerdict};
use super::tags::{get, parse_tags};
use super::Dns;
use crate::address::address_list::addresses;
use crate::dns::DnsError;
use crate::domain::{check_name, NameRules};
use crate::headers::Header;
use crate::smtp::address::parse_mailbox;
use crate::text::Joined;

/// The walk asks at most this many names (RFC 9989 §4.10: a target of more labels is
/// shortened to seven after the first query).
const MAX_WALK_LABELS: usize = 7;

/// What a domain owner asks for mail that fails (`p=`, `sp=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// The next weaker policy: what a message outside the `pct=` sample, or under
    /// `t=y`, gets (RFC 7489 §6.6.4, RFC 9989 §4.7).
    fn weaker(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

/// `adkim=` / `aspf=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// The two domains have the same Organizational Domain.
    Relaxed,
    /// The two domains are the same.
    Strict,
}

/// `psd=`: where the Tree Walk stops (RFC 9989 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Psd {
    /// A public suffix: the Organizational Domain is one label below it.
    Yes,
    /// The Organizational Domain itself.
    No,
    /// Not said: the walk goes on.
    Unset,
}

/// A DMARC policy record (`v=DMARC1; p=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub p: Policy,
    pub sp: Option<Policy>,
    pub adkim: Alignment,
    pub aspf: Alignment,
    /// Percentage of failing mail the policy applies to (RFC 7489; RFC 9989 dropped
    /// it for `t=`, and both are honoured).
    pub pct: u8,
    /// `t=y`: the owner is testing; the next weaker policy applies.
    pub testing: bool,
    pub psd: Psd,
}

/// Parses a TXT record. `Err` for anything that is not a DMARC record (no leading
/// `v=DMARC1`, a broken tag list): such records are ignored (§6.6.3). Values a known
/// tag cannot have fall back to its default, as RFC 9989 §4.7 asks of unknown ones
/// (a missing or unknown `p=` is `none`).
pub fn parse_record(text: &str) -> Result<Record, &'static str> {
    let tags = parse_tags(text.as_bytes())?;
    match tags.first() {
        Some(t) if t.name == "v" && t.value == "DMARC1" => {}
        _ => return Err("not a DMARC1 record"),
    }
    let alignment = |name| match get(&tags, name) {
        Some(v) if v.eq_ignore_ascii_case("s") => Alignment::Strict,
        _ => Alignment::Relaxed,
    };
    let yes = |name| get(&tags, name).is_some_and(|v| v.eq_ignore_ascii_case("y"));
    Ok(Record {
        p: get(&tags, "p")
            .and_then(Policy::parse)
            .unwrap_or(Policy::None),
        sp: get(&tags, "sp").and_then(Policy::parse),
        adkim: alignment("adkim"),
        aspf: alignment("aspf"),
        pct: get(&tags, "pct")
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|&v| v <= 100)
            .unwrap_or(100),
        testing: yes("t"),
        psd: match get(&tags, "psd") {
            Some(v) if v.eq_ignore_ascii_case("y") => Psd::Yes,
            Some(v) if v.eq_ignore_ascii_case("n") => Psd::No,
            _ => Psd::Unset,
        },
    })
}

/// The DMARC results (RFC 8601 §2.7.6 via RFC 7489 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcResult {
    Pass,
    Fail,
    /// No policy record for the `From:` domain or its organisation.
    None,
    /// A DNS failure: a later try may decide.
    TempError,
    /// The message has no single `From:` domain to check.
    PermError,
}

impl DmarcResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::None => "none",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for DmarcResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcVerdict {
    pub result: DmarcResult,
    /// The policy the record asks for this domain (`p=`, or `sp=` for a subdomain);
    /// `None` when no record applies.
    pub requested: Option<Policy>,
    /// What applies to this message: [`Policy::None`] on a pass, the requested policy
    /// on a failure — or the next weaker one outside the `pct=` sample or under
    /// `t=y`; `None` when no record applies.
    pub policy: Option<Policy>,
    /// The RFC5322.From domain (lower case); empty on a permerror.
    pub from_domain: String,
    /// Where the record was found (the From domain or an ancestor).
    pub policy_domain: Option<String>,
    /// Which aligned identifier passed (`dkim`, `spf`), for the log.
    pub passed_by: Option<&'static str>,
    /// Why, for temperror and permerror.
    pub reason: Option<String>,
}

impl DmarcVerdict {
    /// The verdict for a message without a single `From:` domain.
    pub fn permerror(reason: impl Into<String>) -> DmarcVerdict {
        DmarcVerdict {
            result: DmarcResult::PermError,
            requested: None,
            policy: None,
            from_domain: String::new(),
            policy_domain: None,
            passed_by: None,
            reason: Some(reason.into()),
        }
    }

    fn without_policy(result: DmarcResult, from_domain: &str, reason: Option<String>) -> Self {
        DmarcVerdict {
            result,
            from_domain: from_domain.to_string(),
            reason,
            ..DmarcVerdict::permerror("")
        }
    }

    /// Fails under a `p=reject` that applies to this message: what `--dmarc-reject`
    /// refuses.
    pub fn rejects(&self) -> bool {
        self.result == DmarcResult::Fail && self.policy == Some(Policy::Reject)
    }

    /// This verdict as a `resinfo` of Authentication-Results, in the form OpenDMARC
    /// writes: `dmarc=fail (p=reject dis=quarantine) header.from=example.com`.
    pub fn resinfo(&self) -> String {
        let mut s = format!("dmarc={}", self.result);
        if let (Some(p), Some(dis)) = (self.requested, self.policy) {
            s.push_str(&format!(" (p={} dis={})", p.as_str(), dis.as_str()));
        }
        if let Some(r) = &self.reason {
            s.push_str(" reason=");
            s.push_str(&super::quoted(r));
        }
        if !self.from_domain.is_empty() {
            s.push_str(&format!(" header.from={}", self.from_domain));
        }
        s
    }
}

/// The RFC5322.From domain (RFC 7489 §6.6.1): exactly one `From:` field with exactly
/// one address, whose domain is a DNS name; lower case.
pub fn from_domain(header: &Header<'_>) -> Result<String, &'static str> {
    let mut froms = header.fields.iter().filter(|f| f.is("From"));
    let (Some(from), None) = (froms.next(), froms.next()) else {
        return Err(if header.has("From") {
            "more than one From field"
        } else {
            "no From field"
        });
    };
    let value = from.value();
    let spans = addresses(&value);
    let [span] = &spans[..] else {
        return Err(if spans.is_empty() {
            "no address in From"
        } else {
            "more than one address in From"
        });
    };
    let mailbox = match parse_mailbox(&span.address, true, false, false) {
        Ok(Some(m)) if !m.domain.is_empty() => m,
        _ => return Err("the From address is not valid"),
    };
    let domain = mailbox.domain.trim_end_matches('.').to_ascii_lowercase();
    check_name(&domain, NameRules::DNS).map_err(|_| "the From domain is not a DNS name")?;
    Ok(domain)
}

/// A pseudo-random number in `0..100` for the `pct=` sample (no cryptographic
/// strength needed: the hasher keys are random per process, the counter differs per
/// call).
fn sample_roll() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() % 100) as u8
}

/// Checks a message whose From domain is `from_domain` (see [`from_domain`]), given
/// its SPF result and the verdict of each DKIM signature.
pub async fn check(
    dns: &impl Dns,
    from_domain: &str,
    spf: &SpfResult,
    dkim: &[DkimVerdict],
) -> DmarcVerdict {
    check_sampled(dns, from_domain, spf, dkim, sample_roll()).await
}

/// [`check`] with the `pct=` sample drawn: the policy applies when `roll < pct`.
pub async fn check_sampled(
    dns: &impl Dns,
    from_domain: &str,
    spf: &SpfResult,
    dkim: &[DkimVerdict],
    roll: u8,
) -> DmarcVerdict {
    let from = from_domain.trim_end_matches('.').to_ascii_lowercase();
    let mut walk = Walk {
        dns,
        seen: Vec::new(),
    };
    let (policy_domain, record) = match walk.policy(&from).await {
        Ok(Some(found)) => found,
        Ok(None) => return DmarcVerdict::without_policy(DmarcResult::None, &from, None),
        Err(e) => {
            let reason = Some(format!("DMARC record lookup: {e:?}"));
            return DmarcVerdict::without_policy(DmarcResult::TempError, &from, reason);
        }
    };
    let requested = if policy_domain == from {
        record.p
    } else {
        record.sp.unwrap_or(record.p)
    };

    // Identifiers that passed, each with the alignment mode the record asks for it.
    let spf_pass = (spf.result == SpfVerdict::Pass).then_some(spf.domain.as_str());
    let dkim_pass = dkim
        .iter()
        .filter(|v| v.result == DkimResult::Pass)
        .map(|v| v.domain.as_str());
    let candidates = dkim_pass
        .map(|d| ("dkim", d, record.adkim))
        .chain(spf_pass.map(|d| ("spf", d, record.aspf)));
    let mut passed_by = None;
    let mut temp = None;
    for (method, domain, mode) in candidates {
        match walk.aligned(&from, domain, mode).await {
            Ok(true) => {
                passed_by = Some(method);
                break;
            }
            Ok(false) => {}
            Err(e) => temp = Some(format!("organizational domain of {domain}: {e:?}")),
        }
    }
    let base = DmarcVerdict {
        result: DmarcResult::Pass,
        requested: Some(requested),
        policy: Some(Policy::None),
        from_domain: from.clone(),
        policy_domain: Some(policy_domain),
        passed_by,
        reason: None,
    };
    if passed_by.is_some() {
        return base;
    }
    // No aligned pass. A pass that could not be judged for want of DNS, or an
    // aligned-looking temporary failure, leaves the question open.
    let spf_temp = spf.result == SpfVerdict::TempError && share_top_label(&spf.domain, &from);
    let dkim_temp = dkim
        .iter()
        .any(|v| v.result == DkimResult::TempError && share_top_label(&v.domain, &from));
    if temp.is_some() || spf_temp || dkim_temp {
        return DmarcVerdict {
            result: DmarcResult::TempError,
            policy: None,
            reason: Some(temp.unwrap_or_else(|| "SPF or DKIM temperror".into())),
            ..base
        };
    }
    let sampled = !record.testing && roll < record.pct;
    DmarcVerdict {
        result: DmarcResult::Fail,
        policy: Some(if sampled {
            requested
        } else {
            requested.weaker()
        }),
        ..base
    }
}

/// Whether `a` and `b` could have one Organizational Domain at all: they share their
/// last label (an inexpensive test before any walk).
fn share_top_label(a: &str, b: &str) -> bool {
    !a.is_empty() && top_label(a).eq_ignore_ascii_case(top_label(b))
}

/// The last label of a domain name (`com` of `mail.example.com.`).
fn top_label(domain: &str) -> &str {
    domain
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or("")
}

/// The names the Tree Walk asks about for `domain`, in order (RFC 9989 §4.10): the
/// domain itself, then — a longer name cut to seven labels first — one label fewer
/// each time, down to a single label.
pub fn walk_targets(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let mut out = vec![labels.joined(".")];
    let mut n = labels.len().min(MAX_WALK_LABELS + 1);
    while n > 1 {
        n = if n > MAX_WALK_LABELS {
            MAX_WALK_LABELS
        } else {
            n - 1
        };
        out.push(labels[labels.len() - n..].joined("."));
    }
    out
}

/// One check's Tree Walks, with every record lookup remembered.
struct Walk<'d, D> {
    dns: &'d D,
    seen: Vec<(String, Option<Record>)>,
}

impl<D: Dns> Walk<'_, D> {
    /// The one DMARC record at `_dmarc.NAME`, if there is exactly one (several are
    /// all ignored, §6.6.3).
    async fn record(&mut self, name: &str) -> Result<Option<Record>, DnsError> {
        if let Some((_, r)) = self.seen.iter().find(|(n, _)| n == name) {
            return Ok(r.clone());
        }
        let found = match self.dns.txt(&format!("_dmarc.{name}")).await {
            Ok(lookup) => {
                let mut records = lookup.records.iter().filter_map(|t| parse_record(t).ok());
                match (records.next(), records.next()) {
                    (Some(r), None) => Some(r),
                    _ => None,
                }
            }
            // A name DNS cannot carry has no record.
            Err(DnsError::Malformed(_)) => None,
            Err(e) => return Err(e),
        };
        self.seen.push((name.to_string(), found.clone()));
        Ok(found)
    }

    /// Policy discovery (RFC 9989 §4.10.1): the From domain's own record, else the
    /// first one up the tree.
    async fn policy(&mut self, from: &str) -> Result<Option<(String, Record)>, DnsError> {
        for target in walk_targets(from) {
            if let Some(r) = self.record(&target).await? {
                return Ok(Some((target, r)));
            }
        }
        Ok(None)
    }

    /// The Organizational Domain of `domain` (RFC 9989 §4.10.2): where a `psd=n`
    /// record stands, one label below a `psd=y` record, else the shortest name with
    /// a record, else the domain itself.
    async fn organizational(&mut self, domain: &str) -> Result<String, DnsError> {
        let labels: Vec<&str> = domain.split('.').collect();
        let mut shortest = None;
        for target in walk_targets(domain) {
            let Some(r) = self.record(&target).await? else {
                continue;
            };
            match r.psd {
                Psd::No => return Ok(target),
                Psd::Yes if target == domain => return Ok(target),
                Psd::Yes => {
                    let n = target.split('.').count() + 1;
                    return Ok(labels[labels.len() - n..].joined("."));
                }
                Psd::Unset => shortest = Some(target),
            }
        }
        Ok(shortest.unwrap_or_else(|| domain.to_string()))
    }

    /// Identifier alignment (RFC 7489 §3.1).
    async fn aligned(&mut self, from: &str, id: &str, mode: Alignment) -> Result<bool, DnsError> {
        let id = id.trim_end_matches('.').to_ascii_lowercase();
        if id == from {
            return Ok(true);
        }
        if mode == Alignment::Strict || !share_top_label(&id, from) {
            return Ok(false);
        }
        Ok(self.organizational(from).await? == self.organizational(&id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailauth::fake_dns::FakeDns;
    use crate::mailauth::spf::Identity;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        smol::block_on(f)
    }

    fn spf(result: SpfVerdict, domain: &str) -> SpfResult {
        SpfResult {
            result,
            identity: Identity::MailFrom,
            sender: format!("bounce@{domain}"),
            domain: domain.to_string(),
            mechanism: None,
            explanation: None,
            problem: None,
        }
    }

    fn dkim(result: DkimResult, domain: &str) -> DkimVerdict {
        DkimVerdict {
            result,
            reason: None,
            domain: domain.to_string(),
            selector: "s".into(),
            b: "AbCdEfGh12".into(),
            algorithm: None,
            testing: false,
        }
    }

    fn none_spf() -> SpfResult {
        spf(SpfVerdict::None, "")
    }

    fn run(dns: &FakeDns, from: &str, spf: &SpfResult, dkim: &[DkimVerdict]) -> DmarcVerdict {
        block(check_sampled(dns, from, spf, dkim, 0))
    }

    #[test]
    fn records_parse_with_defaults_and_foreign_text_is_not_a_record() {
        let r = parse_record("v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=30; psd=n").unwrap();
        assert_eq!(
            (r.p, r.sp, r.adkim, r.aspf, r.pct, r.psd, r.testing),
            (
                Policy::Reject,
                Some(Policy::Quarantine),
                Alignment::Strict,
                Alignment::Relaxed,
                30,
                Psd::No,
                false
            )
        );
        let d = parse_record("v=DMARC1").unwrap();
        assert_eq!(
            (d.p, d.sp, d.pct, d.psd),
            (Policy::None, None, 100, Psd::Unset)
        );
        let odd = parse_record("v=DMARC1; p=bogus; pct=400; adkim=x; t=y; rua=mailto:a@b").unwrap();
        assert_eq!(
            (odd.p, odd.pct, odd.adkim, odd.testing),
            (Policy::None, 100, Alignment::Relaxed, true)
        );
        for bad in [
            "v=spf1 -all",
            "p=reject; v=DMARC1",
            "v=DMARC2; p=reject",
            "v=DMARC1; p=reject; p=none",
            "",
        ] {
            assert!(parse_record(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_walk_asks_at_most_eight_names() {
        assert_eq!(
            walk_targets("a.mail.example.com"),
            [
                "a.mail.example.com",
                "mail.example.com",
                "example.com",
                "com"
            ]
        );
        let long = "a.b.c.d.e.f.g.h.i.example.com";
        let t = walk_targets(long);
        assert_eq!(t.len(), 8, "{t:?}");
        assert_eq!(t[0], long);
        assert_eq!(t[1], "e.f.g.h.i.example.com");
        assert_eq!(t[7], "com");
        assert_eq!(walk_targets("com"), ["com"]);
    }

    #[test]
    fn aligned_dkim_or_spf_passes_and_nothing_aligned_fails() {
        let dns = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=reject"]);
        let pass = run(
            &dns,
            "example.com",
            &none_spf(),
            &[dkim(DkimResult::Pass, "example.com")],
        );
        assert_eq!(
            (pass.result, pass.passed_by, pass.policy),
            (DmarcResult::Pass, Some("dkim"), Some(Policy::None))
        );
        assert_eq!(
            pass.resinfo(),
            "dmarc=pass (p=reject dis=none) header.from=example.com"
        );
        let by_spf = run(
            &dns,
            "example.com",
            &spf(SpfVerdict::Pass, "example.com"),
            &[],
        );
        assert_eq!(
            (by_spf.result, by_spf.passed_by),
            (DmarcResult::Pass, Some("spf"))
        );
        // A pass for another organisation, a failed signature of ours: fail, reject.
        let fail = run(
            &dns,
            "example.com",
            &spf(SpfVerdict::Pass, "other.example"),
            &[
                dkim(DkimResult::Fail, "example.com"),
                dkim(DkimResult::Pass, "other.example"),
            ],
        );
        assert_eq!(
            (fail.result, fail.policy),
            (DmarcResult::Fail, Some(Policy::Reject))
        );
        assert!(fail.rejects());
        assert_eq!(
            fail.resinfo(),
            "dmarc=fail (p=reject dis=reject) header.from=example.com"
        );
    }

    #[test]
    fn relaxed_alignment_uses_the_organizational_domain_and_strict_does_not() {
        let relaxed = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=quarantine"]);
        let v = run(
            &relaxed,
            "news.example.com",
            &spf(SpfVerdict::Pass, "bounce.example.com"),
            &[],
        );
        assert_eq!((v.result, v.passed_by), (DmarcResult::Pass, Some("spf")));
        let strict = FakeDns::new().txt(
            "_dmarc.example.com",
            &["v=DMARC1; p=quarantine; aspf=s; adkim=s"],
        );
        let v = run(
            &strict,
            "news.example.com",
            &spf(SpfVerdict::Pass, "bounce.example.com"),
            &[dkim(DkimResult::Pass, "example.com")],
        );
        assert_eq!(v.result, DmarcResult::Fail);
        assert_eq!(
            v.policy,
            Some(Policy::Quarantine),
            "no sp=: p applies to subdomains"
        );
        assert!(!v.rejects());
        let exact = run(
            &strict,
            "example.com",
            &none_spf(),
            &[dkim(DkimResult::Pass, "example.com")],
        );
        assert_eq!(exact.result, DmarcResult::Pass);
    }

    #[test]
    fn a_subdomain_gets_sp_and_its_own_record_wins() {
        let dns = FakeDns::new()
            .txt("_dmarc.example.com", &["v=DMARC1; p=reject; sp=none"])
            .txt("_dmarc.strict.example.com", &["v=DMARC1; p=reject"]);
        let sub = run(&dns, "a.b.example.com", &none_spf(), &[]);
        assert_eq!(
            (sub.result, sub.requested, sub.policy),
            (DmarcResult::Fail, Some(Policy::None), Some(Policy::None))
        );
        assert_eq!(sub.policy_domain.as_deref(), Some("example.com"));
        let own = run(&dns, "strict.example.com", &none_spf(), &[]);
        assert_eq!(
            (own.requested, own.policy_domain.as_deref()),
            (Some(Policy::Reject), Some("strict.example.com"))
        );
    }

    #[test]
    fn psd_records_set_the_organizational_domain() {
        // `example` is a public suffix that says so: bank.example and shop.example
        // are different organisations, though both are "under" one record.
        let dns = FakeDns::new().txt("_dmarc.example", &["v=DMARC1; p=reject; psd=y"]);
        let v = run(
            &dns,
            "mail.bank.example",
            &spf(SpfVerdict::Pass, "shop.example"),
            &[],
        );
        assert_eq!(
            (v.result, v.policy),
            (DmarcResult::Fail, Some(Policy::Reject))
        );
        let v = run(
            &dns,
            "mail.bank.example",
            &spf(SpfVerdict::Pass, "bounce.bank.example"),
            &[],
        );
        assert_eq!(v.result, DmarcResult::Pass);
        // psd=n stops the walk where it stands.
        let dns = FakeDns::new()
            .txt("_dmarc.example", &["v=DMARC1; p=none"])
            .txt("_dmarc.unit.corp.example", &["v=DMARC1; p=reject; psd=n"]);
        let v = run(
            &dns,
            "unit.corp.example",
            &spf(SpfVerdict::Pass, "corp.example"),
            &[],
        );
        assert_eq!(v.result, DmarcResult::Fail);
    }

    #[test]
    fn no_record_is_none_and_dns_trouble_is_temperror() {
        let dns = FakeDns::new();
        let v = run(&dns, "mail.example.org", &none_spf(), &[]);
        assert_eq!((v.result, v.policy), (DmarcResult::None, None));
        assert_eq!(v.resinfo(), "dmarc=none header.from=mail.example.org");
        assert_eq!(
            dns.asked(),
            [
                "_dmarc.mail.example.org",
                "_dmarc.example.org",
                "_dmarc.org"
            ]
        );
        let broken = FakeDns::new().failing("_dmarc.example.org", DnsError::Timeout);
        let v = run(&broken, "mail.example.org", &none_spf(), &[]);
        assert_eq!(v.result, DmarcResult::TempError);
        assert!(!v.rejects());
        // Two records at one name: both ignored, the walk goes on.
        let two = FakeDns::new()
            .txt(
                "_dmarc.example.org",
                &["v=DMARC1; p=reject", "v=DMARC1; p=none"],
            )
            .txt("_dmarc.org", &["v=DMARC1; p=quarantine"]);
        let v = run(&two, "example.org", &none_spf(), &[]);
        assert_eq!(
            (v.policy_domain.as_deref(), v.requested),
            (Some("org"), Some(Policy::Quarantine))
        );
    }

    #[test]
    fn an_aligned_temporary_failure_is_temperror_not_fail() {
        let dns = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=reject"]);
        let v = run(
            &dns,
            "example.com",
            &none_spf(),
            &[dkim(DkimResult::TempError, "example.com")],
        );
        assert_eq!(v.result, DmarcResult::TempError);
        assert!(!v.rejects());
        let v = run(
            &dns,
            "example.com",
            &none_spf(),
            &[dkim(DkimResult::TempError, "other.net")],
        );
        assert_eq!(v.result, DmarcResult::Fail);
    }

    #[test]
    fn pct_and_testing_weaken_the_policy_outside_the_sample() {
        let dns = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=reject; pct=20"]);
        let inside = block(check_sampled(&dns, "example.com", &none_spf(), &[], 19));
        let outside = block(check_sampled(&dns, "example.com", &none_spf(), &[], 20));
        assert_eq!(
            (inside.policy, outside.policy),
            (Some(Policy::Reject), Some(Policy::Quarantine))
        );
        assert_eq!(
            outside.resinfo(),
            "dmarc=fail (p=reject dis=quarantine) header.from=example.com"
        );
        let testing = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=quarantine; t=y"]);
        let v = block(check_sampled(&testing, "example.com", &none_spf(), &[], 0));
        assert_eq!(v.policy, Some(Policy::None));
    }

    #[test]
    fn the_walk_shares_its_lookups_between_policy_and_alignment() {
        let dns = FakeDns::new().txt("_dmarc.example.com", &["v=DMARC1; p=reject"]);
        let v = run(
            &dns,
            "a.example.com",
            &spf(SpfVerdict::Pass, "b.example.com"),
            &[],
        );
        assert_eq!(v.result, DmarcResult::Pass);
        let mut asked = dns.asked();
        let n = asked.len();
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), n, "a name asked twice: {asked:?}");
    }

    #[test]
    fn the_from_domain_is_one_address_of_one_field() {
        let domain = |msg: &str| from_domain(&Header::parse(msg.as_bytes()));
        assert_eq!(
            domain("From: Joe <Joe@Example.COM>\r\n\r\n"),
            Ok("example.com".into())
        );
        assert_eq!(domain("Subject: x\r\n\r\n"), Err("no From field"));
        assert_eq!(
            domain("From: a@x.example\r\nFrom: b@y.example\r\n\r\n"),
            Err("more than one From field")
        );
        assert_eq!(
            domain("From: a@x.example, b@y.example\r\n\r\n"),
            Err("more than one address in From")
        );
        assert_eq!(
            domain("From: undisclosed:;\r\n\r\n"),
            Err("no address in From")
        );
        assert!(domain("From: a@[192.0.2.1]\r\n\r\n").is_err());
    }
}
