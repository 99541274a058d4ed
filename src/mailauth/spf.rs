//! SPF, the Sender Policy Framework (RFC 7208): may this client IP send mail for the
//! domain of the MAIL FROM address (or of the HELO name)?
//!
//! This file owns the entry points the inbound session calls — the choice of identity
//! (§2.3, §2.4), the time bound on one evaluation (§4.6.4: a DNS failure or timeout
//! is `temperror`, never a hang), the explanation of a `fail` (§6.2) — and the result:
//! [`SpfResult`], with a `Received-SPF` field (§9.1) for those who want one. The rest
//! lives beside it:
//! - `spf/record.rs`: which TXT string is the record, and its grammar (pure, fuzzed);
//! - `spf/macros.rs`: macro strings, their grammar and expansion (pure);
//! - `spf/eval.rs`: `check_host()` itself, its mechanisms and processing limits.
//!
//! It asks DNS only through [`Dns`]; what to do with the result (a header, a `550` at
//! RCPT) is the session's decision.

mod eval;
pub mod macros;
pub mod record;

use std::fmt::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use smol::future::FutureExt;

use self::eval::{Decision, Evaluator, Stop};
use self::macros::{MacroString, Place};
use crate::dns::Names;
use crate::domain::{check_name, is_ip, NameRules};
use crate::mailauth::Dns;

/// The SPF results (§2.6), in the words of RFC 7208 and RFC 8601.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No record, or no domain to ask about.
    None,
    /// The record says nothing about this client.
    Neutral,
    Pass,
    Fail,
    SoftFail,
    /// A DNS failure or timeout; a later try may succeed.
    TempError,
    /// The record is broken or breaks the processing limits.
    PermError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Neutral => "neutral",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which identity was checked (§2.3, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    MailFrom,
    Helo,
}

impl Identity {
    /// As `Received-SPF: identity=` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Identity::MailFrom => "mailfrom",
            Identity::Helo => "helo",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfResult {
    pub result: Verdict,
    pub identity: Identity,
    /// The `<sender>` checked: the MAIL FROM address, or `postmaster@` the HELO name
    /// (`smtp.mailfrom` / `smtp.helo` of Authentication-Results).
    pub sender: String,
    /// Its domain, where the record was looked up.
    pub domain: String,
    /// The directive that decided, as written in the record (of the domain or of its
    /// `redirect=` target), e.g. `-all` or `include:_spf.example.net`. For the log.
    pub mechanism: Option<String>,
    /// On `fail`, the domain's own explanation (`exp=`, §6.2), printable; `None`
    /// when it gave none (the session then words its own).
    pub explanation: Option<String>,
    /// Why, for `temperror`, `permerror` and a `none` without a domain.
    pub problem: Option<String>,
}

/// One check, as the session describes it. The defaults follow RFC 7208: the
/// receiver is `unknown` until given (§7.3 `%{r}`), and the evaluation gets 20 s
/// (§4.6.4 "at least 20 seconds").
#[derive(Debug, Clone)]
pub struct Check<'a> {
    pub ip: IpAddr,
    /// The MAIL FROM address without brackets; empty for the null reverse-path.
    pub mail_from: &'a str,
    pub helo: &'a str,
    /// Our host name, for `%{r}` and `Received-SPF: receiver=`.
    pub receiver: &'a str,
    pub time_limit: Duration,
}

/// The default bound on one evaluation, explanation included.
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// The MAIL FROM identity of a session (the HELO identity when MAIL FROM is `<>`),
/// with the defaults of [`Check`].
pub async fn check_host(dns: &impl Dns, ip: IpAddr, mail_from: &str, helo: &str) -> SpfResult {
    Check::new(ip, mail_from, helo).mail_from(dns).await
}

impl<'a> Check<'a> {
    pub fn new(ip: IpAddr, mail_from: &'a str, helo: &'a str) -> Check<'a> {
        Check {
            ip,
            mail_from,
            helo,
            receiver: "unknown",
            time_limit: TIME_LIMIT,
        }
    }

    pub fn receiver(mut self, receiver: &'a str) -> Check<'a> {
        self.receiver = receiver;
        self
    }

    pub fn time_limit(mut self, limit: Duration) -> Check<'a> {
        self.time_limit = limit;
        self
    }

    /// The MAIL FROM identity (§2.4); for the null reverse-path, the HELO identity
    /// with `postmaster@` the HELO name as sender.
    pub async fn mail_from(&self, dns: &impl Dns) -> SpfResult {
        if self.mail_from.is_empty() {
            return self.helo(dns).await;
        }
        // §4.3: a sender without local-part is postmaster at its domain.
        let (local, domain) = match self.mail_from.rsplit_once('@') {
            Some(("", domain)) => ("postmaster", domain),
            Some(parts) => parts,
            None => ("postmaster", self.mail_from),
        };
        self.run(dns, Identity::MailFrom, local, domain).await
    }

    /// The HELO identity (§2.3), checked on its own (RFC 7208 recommends it first).
    pub async fn helo(&self, dns: &impl Dns) -> SpfResult {
        self.run(dns, Identity::Helo, "postmaster", self.helo).await
    }

    async fn run(
        &self,
        dns: &impl Dns,
        identity: Identity,
        local: &str,
        domain: &str,
    ) -> SpfResult {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let sender = format!("{local}@{domain}");
        let mut out = SpfResult {
            result: Verdict::None,
            identity,
            sender: sender.clone(),
            domain: domain.to_string(),
            mechanism: None,
            explanation: None,
            problem: None,
        };
        // §4.3: no result for what is not a multi-label domain name (an address
        // literal, a bare word, a label over 63 octets, a non-ASCII name).
        if check_name(domain, NameRules::DNS).is_err() || !domain.contains('.') || is_ip(domain) {
            out.problem = Some(format!("{domain:?} is not a domain name"));
            return out;
        }
        // IPv4-mapped IPv6 is IPv4 (§5, and the suite's "ip4-mapped-ip6").
        let ip = match self.ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(self.ip, IpAddr::V4),
            v4 => v4,
        };
        let mut ev = Evaluator::new(
            dns,
            ip,
            (&sender, local, domain),
            self.helo,
            self.receiver,
            crate::clock::unix_now(),
        );
        let deadline = Instant::now() + self.time_limit;
        let decision = within(deadline, ev.check_host(domain))
            .await
            .unwrap_or_else(|| {
                Err(Stop::Temp(format!(
                    "no result within {} s",
                    self.time_limit.as_secs()
                )))
            });
        match decision {
            Ok(Decision {
                verdict,
                mechanism,
                explanation,
            }) => {
                out.result = verdict;
                out.mechanism = mechanism;
                if let (Verdict::Fail, Some((exp, exp_domain))) = (verdict, explanation) {
                    // What is left of the time; an explanation that does not come in
                    // time is no explanation, the fail stands.
                    out.explanation = within(deadline, explain(&mut ev, &exp, &exp_domain))
                        .await
                        .flatten();
                }
            }
            Err(Stop::Temp(why)) => {
                out.result = Verdict::TempError;
                out.problem = Some(why);
            }
            Err(Stop::Perm(why)) => {
                out.result = Verdict::PermError;
                out.problem = Some(why);
            }
        }
        out
    }
}

/// §6.2: the TXT record at the expanded `exp=` domain, exactly one, ASCII and a valid
/// explain-string, expanded; anything else means no explanation. Not counted against
/// the limits of §4.6.4 (the suite's "exp-void").
async fn explain<D: Dns>(
    ev: &mut Evaluator<'_, D>,
    exp: &MacroString,
    domain: &str,
) -> Option<String> {
    let name = ev.expand_domain(exp, domain).await;
    if !Names::Any.accepts(&name) {
        return None;
    }
    let txt = ev.dns.txt(&name).await.ok()?;
    let [text] = txt.records.as_slice() else {
        return None;
    };
    if !text.is_ascii() {
        return None;
    }
    let text = MacroString::parse(text, Place::Explanation).ok()?;
    let expanded = ev.expand_text(&text, domain).await;
    // Macro values (the local-part, the HELO name) are the peer's words.
    Some(expanded.chars().filter(|c| !c.is_control()).collect())
}

/// `fut`, or `None` at `deadline`.
async fn within<T>(deadline: Instant, fut: impl std::future::Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            smol::Timer::at(deadline).await;
            None
        })
        .await
}

impl SpfResult {
    /// The body of a `Received-SPF:` field (§9.1) for this result, on one line:
    /// `pass (receiver: comment) client-ip=...; envelope-from=...; helo=...; ...`.
    pub fn received_spf(&self, check: &Check<'_>) -> String {
        let ip = check.ip;
        let who = &self.sender;
        let comment = match self.result {
            Verdict::Pass => format!("domain of {who} designates {ip} as permitted sender"),
            Verdict::Fail => format!("domain of {who} does not designate {ip} as permitted sender"),
            Verdict::SoftFail => {
                format!("domain of transitioning {who} does not designate {ip} as permitted sender")
            }
            Verdict::Neutral => format!("{ip} is neither permitted nor denied by domain of {who}"),
            Verdict::None => format!("domain of {who} does not publish SPF"),
            Verdict::TempError => format!("error in processing during lookup of {who}"),
            Verdict::PermError => format!("error in SPF record of {}", self.domain),
        };
        let mut out = format!("{} (", self.result);
        for c in format!("{}: {comment}", check.receiver).chars() {
            if matches!(c, '(' | ')' | '\\') {
                out.push('\\');
            }
            if !c.is_control() {
                out.push(c);
            }
        }
        out.push(')');
        let ip = ip.to_string();
        let mut fields = vec![
            ("client-ip", ip.as_str()),
            ("envelope-from", check.mail_from),
            ("helo", check.helo),
            ("receiver", check.receiver),
            ("identity", self.identity.as_str()),
        ];
        if let Some(m) = &self.mechanism {
            fields.push(("mechanism", m));
        }
        if let Some(p) = &self.problem {
            fields.push(("problem", p));
        }
        for (key, value) in fields {
            let _ = write!(out, " {key}={};", quoted(value));
        }
        out.pop();
        out
    }
}

/// `value` as a dot-atom when it is one, else a quoted-string (RFC 5322 §3.2.4),
/// without control characters.
fn quoted(value: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !value.is_empty()
        && value
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if dot_atom {
        return value.to_string();
    }
    crate::mailauth::quoted(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsError, Lookup, Mx};
    use std::collections::HashMap;
    use std::future::Future;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// TXT and A records by name; everything else is NXDOMAIN. A name mapped to
    /// `"TIMEOUT"` fails every query.
    #[derive(Default)]
    struct Fake {
        txt: HashMap<&'static str, Vec<&'static str>>,
        a: HashMap<&'static str, Vec<Ipv4Addr>>,
    }

    fn answer<T: Clone>(
        name: &str,
        m: &HashMap<&'static str, Vec<T>>,
    ) -> Result<Lookup<T>, DnsError> {
        let records = m.get(name).cloned().unwrap_or_default();
        Ok(Lookup {
            nxdomain: records.is_empty(),
            records,
            authenticated: false,
        })
    }

    impl Dns for Fake {
        async fn txt(&self, name: &str) -> Result<Lookup<String>, DnsError> {
            if self.txt.get(name) == Some(&vec!["TIMEOUT"]) {
                return Err(DnsError::Timeout);
            }
            answer(name, &self.txt).map(|l| Lookup {
                records: l.records.iter().map(|s| s.to_string()).collect(),
                authenticated: false,
                nxdomain: l.nxdomain,
            })
        }
        async fn mx(&self, name: &str) -> Result<Lookup<Mx>, DnsError> {
            answer(name, &HashMap::new())
        }
        async fn a(&self, name: &str) -> Result<Lookup<Ipv4Addr>, DnsError> {
            answer(name, &self.a)
        }
        async fn aaaa(&self, name: &str) -> Result<Lookup<Ipv6Addr>, DnsError> {
            answer(name, &HashMap::new())
        }
        async fn ptr(&self, _: IpAddr) -> Result<Lookup<String>, DnsError> {
            answer("", &HashMap::new())
        }
    }

    /// A resolver that never answers.
    struct Silent;

    impl Dns for Silent {
        fn txt(&self, _: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
            std::future::pending()
        }
        fn mx(&self, _: &str) -> impl Future<Output = Result<Lookup<Mx>, DnsError>> {
            std::future::pending()
        }
        fn a(&self, _: &str) -> impl Future<Output = Result<Lookup<Ipv4Addr>, DnsError>> {
            std::future::pending()
        }
        fn aaaa(&self, _: &str) -> impl Future<Output = Result<Lookup<Ipv6Addr>, DnsError>> {
            std::future::pending()
        }
        fn ptr(&self, _: IpAddr) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
            std::future::pending()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn zone() -> Fake {
        let mut f = Fake::default();
        f.txt.insert(
            "example.com",
            vec!["v=spf1 ip4:192.0.2.0/24 a:mail.example.com -all exp=why.example.com"],
        );
        f.txt.insert(
            "why.example.com",
            vec!["%{i} is not one of %{d}'s senders (asked by %{r})"],
        );
        f.txt.insert("helo.example.com", vec!["v=spf1 a -all"]);
        f.txt.insert("slow.example.com", vec!["TIMEOUT"]);
        f.a.insert("mail.example.com", vec![[198, 51, 100, 7].into()]);
        f.a.insert("helo.example.com", vec![[203, 0, 113, 1].into()]);
        f
    }

    #[test]
    fn identities() {
        let dns = zone();
        let r = smol::block_on(check_host(
            &dns,
            ip("192.0.2.9"),
            "alice@example.com",
            "x.example.net",
        ));
        assert_eq!((r.result, r.identity), (Verdict::Pass, Identity::MailFrom));
        assert_eq!(r.mechanism.as_deref(), Some("ip4:192.0.2.0/24"));
        assert_eq!(r.sender, "alice@example.com");

        // <> checks the HELO name, as postmaster@ it.
        let r = smol::block_on(check_host(&dns, ip("203.0.113.1"), "", "helo.example.com"));
        assert_eq!((r.result, r.identity), (Verdict::Pass, Identity::Helo));
        assert_eq!(r.sender, "postmaster@helo.example.com");

        for bad in ["[192.0.2.1]", "localhost", "192.0.2.1", "a..b.example", ""] {
            let r = smol::block_on(Check::new(ip("192.0.2.1"), "", bad).helo(&dns));
            assert_eq!(r.result, Verdict::None, "{bad:?}");
            assert!(r.problem.is_some());
        }
    }

    #[test]
    fn fail_with_explanation_and_received_spf() {
        let dns = zone();
        let check = Check::new(
            ip("::ffff:203.0.113.5"),
            "bob@example.com",
            "mx.example.net",
        )
        .receiver("mx.example.org");
        let r = smol::block_on(check.mail_from(&dns));
        assert_eq!(r.result, Verdict::Fail);
        assert_eq!(r.mechanism.as_deref(), Some("-all"));
        assert_eq!(
            r.explanation.as_deref(),
            Some("203.0.113.5 is not one of example.com's senders (asked by mx.example.org)")
        );
        assert_eq!(
            r.received_spf(&check),
            "fail (mx.example.org: domain of bob@example.com does not designate \
             ::ffff:203.0.113.5 as permitted sender) client-ip=\"::ffff:203.0.113.5\"; \
             envelope-from=\"bob@example.com\"; helo=mx.example.net; receiver=mx.example.org; \
             identity=mailfrom; mechanism=-all"
        );
    }

    #[test]
    fn dns_failure_is_temperror_and_silence_is_bounded() {
        let r = smol::block_on(check_host(
            &zone(),
            ip("192.0.2.1"),
            "x@slow.example.com",
            "h.example",
        ));
        assert_eq!(r.result, Verdict::TempError);
        let t0 = Instant::now();
        let r = smol::block_on(
            Check::new(ip("192.0.2.1"), "x@example.com", "h.example")
                .time_limit(Duration::from_millis(100))
                .mail_from(&Silent),
        );
        assert_eq!(r.result, Verdict::TempError);
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(r.problem.unwrap().contains("no result within"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("a.b-c@d.e"), "\"a.b-c@d.e\"");
        assert_eq!(quoted("mx.example.net"), "mx.example.net");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("say \"hi\"\r\n"), r#""say \"hi\"""#);
    }
}
