//! The checks of mail received from outside (a client neither in `--relay-network`
//! nor logged in): SPF once per transaction at the first accepted RCPT, DKIM over the
//! content as it streams in, DMARC at the end of DATA, and the one
//! `Authentication-Results:` field that reports them (`mailauth::results`). What is
//! refused is opt-in: `--spf-reject` (SPF `fail`, at RCPT) and `--dmarc-reject`
//! (DMARC `fail` under an applied `p=reject`, at the end of DATA).
//!
//! Every lookup goes through the daemon's resolver behind [`Bounded`], whose
//! queries end at the message's deadline: a message's checks wait at most
//! [`MESSAGE_TIME`] for DNS in all, and a dead resolver is `temperror`, never a hang.
//! The checks run as futures on the session's task, so other sessions go on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::clock::unix_now;
use crate::dns::{DnsError, Lookup, Mx, Names, Resolver};
use crate::headers::Header;
use crate::mailauth::dkim::Verifier;
use crate::mailauth::dmarc::{self, DmarcVerdict};
use crate::mailauth::spf::{self, SpfResult};
use crate::mailauth::{results, Dns};
use crate::smtp::reply::Reply;

/// The time one SPF evaluation gets (RFC 7208 §4.6.4: "at least 20 seconds").
pub const SPF_TIME: Duration = Duration::from_secs(20);

/// The time all the lookups of one message get: SPF at RCPT, and what is left of
/// this for the DKIM keys and the DMARC record at the end of DATA.
pub const MESSAGE_TIME: Duration = Duration::from_secs(30);

/// The largest header section held back for the checks (the fields must all be seen
/// before a DKIM signature can be checked or a forged `Authentication-Results:` taken
/// out). The size of one write to the queue file, so holding it costs no more memory
/// than writing. A message whose header section is larger is refused with 552 5.3.4,
/// as Gmail refuses one over its limit; Postfix (`header_size_limit`, 100 KB) cuts
/// the excess instead, which would break the signatures anyway.
pub const MAX_HEADER_SECTION: usize = 64 * 1024;

/// What is enforced; without either flag nothing is refused for its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enforce {
    /// `--spf-reject`: SPF `fail` gets `550 5.7.23` at RCPT (RFC 7372).
    pub spf_reject: bool,
    /// `--dmarc-reject`: DMARC `fail` under `p=reject` gets `550 5.7.1` after DATA.
    pub dmarc_reject: bool,
}

/// The identities of one SPF check, as the session knows them at RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfQuery {
    pub ip: IpAddr,
    /// The MAIL FROM address; empty for `<>` (the HELO name is checked then).
    pub mail_from: String,
    pub helo: String,
}

/// Evaluates the transaction's SPF, bounded by [`SPF_TIME`].
pub async fn spf(resolver: Option<&Resolver>, receiver: &str, q: &SpfQuery) -> SpfResult {
    let dns = Bounded::new(resolver, SPF_TIME);
    spf::Check::new(q.ip, &q.mail_from, &q.helo)
        .receiver(receiver)
        .time_limit(SPF_TIME)
        .mail_from(&dns)
        .await
}

/// The reply refusing a recipient for an SPF `fail` (`--spf-reject`), with the
/// domain's explanation (`exp=`) when it gave one.
pub fn spf_refusal(spf: &SpfResult, ip: IpAddr) -> Reply {
    let why = match &spf.explanation {
        Some(exp) => exp.chars().take(200).collect(),
        None => format!("{} does not designate {ip} as permitted sender", spf.domain),
    };
    Reply::new(
        550,
        "5.7.23",
        format!("<{}>: Sender address rejected: SPF fail: {why}", spf.sender),
    )
}

/// The daemon's resolver as the checks use it: every query ended at a deadline
/// (`DnsError::Timeout`, by the resolver itself); without a resolver every query
/// fails at once.
pub struct Bounded(Option<Resolver>);

impl Bounded {
    pub fn new(resolver: Option<&Resolver>, time: Duration) -> Bounded {
        let deadline = Instant::now() + time;
        Bounded(resolver.map(|r| r.clone().with_names(Names::Any).with_deadline(deadline)))
    }

    fn resolver(&self) -> Result<&Resolver, DnsError> {
        self.0
            .as_ref()
            .ok_or_else(|| DnsError::Io("no DNS resolver".into()))
    }
}

impl Dns for Bounded {
    async fn txt(&self, name: &str) -> Result<Lookup<String>, DnsError> {
        self.resolver()?.txt(name).await
    }
    async fn mx(&self, domain: &str) -> Result<Lookup<Mx>, DnsError> {
        self.resolver()?.mx(domain).await
    }
    async fn a(&self, name: &str) -> Result<Lookup<Ipv4Addr>, DnsError> {
        self.resolver()?.a(name).await
    }
    async fn aaaa(&self, name: &str) -> Result<Lookup<Ipv6Addr>, DnsError> {
        self.resolver()?.aaaa(name).await
    }
    async fn ptr(&self, ip: IpAddr) -> Result<Lookup<String>, DnsError> {
        self.resolver()?.ptr(ip).await
    }
}

/// Where a message's checks are while its content streams in.
enum Stage {
    /// The header section is not complete yet: the content is held, not written.
    Header,
    /// The header is known: the body goes through the DKIM verifier.
    Body {
        verifier: Verifier,
        from: Result<String, &'static str>,
    },
    /// The header section passed [`MAX_HEADER_SECTION`]: the rest is discarded and
    /// the message refused.
    TooLarge,
}

/// The checks of one message, fed its content as it arrives.
pub struct MessageChecks {
    spf: SpfResult,
    /// Our host name: the authserv-id.
    authserv_id: String,
    /// Lookup time left for this message after SPF.
    time_left: Duration,
    stage: Stage,
    /// `Authentication-Results:` fields under our name taken out (forged).
    removed: usize,
}

/// What the checks came to.
pub struct Outcome {
    /// The `Authentication-Results:` field, CRLF-terminated.
    pub field: String,
    /// The results as the log line's `auth=` value.
    pub summary: String,
    pub dmarc: DmarcVerdict,
}

impl Outcome {
    /// The reply refusing the message, when `--dmarc-reject` is on and its DMARC
    /// result is `fail` with `p=reject` applied.
    pub fn refusal(&self, enforce: Enforce) -> Option<Reply> {
        (enforce.dmarc_reject && self.dmarc.rejects()).then(|| {
            Reply::new(
                550,
                "5.7.1",
                format!(
                    "Message rejected: {} fails DMARC, and the DMARC policy of {} is reject",
                    self.dmarc.from_domain,
                    self.dmarc
                        .policy_domain
                        .as_deref()
                        .unwrap_or(&self.dmarc.from_domain)
                ),
            )
        })
    }
}

impl MessageChecks {
    /// The checks of a message whose transaction's SPF gave `spf` after `spent`.
    pub fn new(spf: SpfResult, spent: Duration, authserv_id: &str) -> MessageChecks {
        MessageChecks {
            spf,
            authserv_id: authserv_id.to_string(),
            time_left: MESSAGE_TIME.saturating_sub(spent),
            stage: Stage::Header,
            removed: 0,
        }
    }

    /// While true, the content must not be written: the header section may still
    /// change (a forged field taken out) or the message is to be refused.
    pub fn holding(&self) -> bool {
        !matches!(self.stage, Stage::Body { .. })
    }

    /// The refusal the content alone earned (a header section over the limit).
    pub fn refusal(&self) -> Option<Reply> {
        matches!(self.stage, Stage::TooLarge).then(|| {
            Reply::new(
                552,
                "5.3.4",
                format!(
                    "Error: message header section exceeds {} KB",
                    MAX_HEADER_SECTION / 1024
                ),
            )
        })
    }

    /// How many `Authentication-Results:` fields under our name were taken out.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Sees the content in `chunk`, whose header section starts at `start` (after
    /// our `Received:`) and whose bytes from `new` on arrived since the last call;
    /// `done`: the end of data was seen. Once the header section is complete, the
    /// fields claiming our authserv-id are taken out of `chunk`.
    pub fn content(&mut self, chunk: &mut Vec<u8>, start: usize, new: usize, done: bool) {
        match &mut self.stage {
            Stage::Body { verifier, .. } => verifier.body(&chunk[new..]),
            Stage::TooLarge => chunk.truncate(start),
            Stage::Header => self.header(chunk, start, done),
        }
    }

    fn header(&mut self, chunk: &mut Vec<u8>, start: usize, done: bool) {
        let section = &chunk[start..];
        // Only whole lines say where the header ends: a line cut short may still
        // become a field, and the next one a continuation of the last field.
        let whole = if done {
            section.len()
        } else {
            section
                .windows(2)
                .rposition(|w| w == b"\r\n")
                .map_or(0, |i| i + 2)
        };
        let header = Header::parse(&section[..whole]);
        let complete = done || header.body > header.end || header.body < whole;
        if !complete {
            if section.len() > MAX_HEADER_SECTION {
                self.stage = Stage::TooLarge;
                chunk.truncate(start);
            }
            return;
        }
        let verifier = Verifier::new(&header);
        let from = dmarc::from_domain(&header);
        let (end, body) = (header.end, header.body);
        let kept: Vec<u8> = header
            .fields
            .iter()
            .filter(|f| !results::is_ours(f, &self.authserv_id))
            .flat_map(|f| f.raw.iter().copied())
            .collect();
        let mut body = start + body;
        if kept.len() < end {
            self.removed = header
                .fields
                .iter()
                .filter(|f| results::is_ours(f, &self.authserv_id))
                .count();
            body -= end - kept.len();
            chunk.splice(start..start + end, kept);
        }
        let mut verifier = verifier;
        verifier.body(&chunk[body..]);
        self.stage = Stage::Body { verifier, from };
    }

    /// Checks the DKIM signatures and DMARC (the lookups bounded by what is left of
    /// the message's time) and words the results.
    pub async fn finish(self, resolver: Option<&Resolver>) -> Outcome {
        let dns = Bounded::new(resolver, self.time_left);
        let (verifier, from) = match self.stage {
            Stage::Body { verifier, from } => (verifier, from),
            // The end of data completes any header section; a refused message is
            // not checked. No header: no signatures, no From.
            Stage::Header | Stage::TooLarge => {
                (Verifier::new(&Header::parse(b"")), Err("no header section"))
            }
        };
        let dkim = verifier.finish(&dns, unix_now()).await;
        let dmarc = match &from {
            Ok(domain) => dmarc::check(&dns, domain, &self.spf, &dkim).await,
            Err(why) => DmarcVerdict::permerror(*why),
        };
        Outcome {
            field: results::authentication_results(&self.authserv_id, &self.spf, &dkim, &dmarc),
            summary: results::summary(&self.spf, &dkim, &dmarc),
            dmarc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailauth::spf::{Identity, Verdict};

    fn spf_pass() -> SpfResult {
        SpfResult {
            result: Verdict::Pass,
            identity: Identity::MailFrom,
            sender: "a@example.com".into(),
            domain: "example.com".into(),
            mechanism: None,
            explanation: None,
            problem: None,
        }
    }

    /// Feeds `content` after a `Received:` field in pieces of `step` bytes, as the
    /// connection does; returns the checks and what would be written.
    fn feed(content: &[u8], step: usize) -> (MessageChecks, Vec<u8>) {
        let mut checks = MessageChecks::new(spf_pass(), Duration::ZERO, "mx.example.org");
        let mut chunk = b"Received: by us\r\n".to_vec();
        let start = chunk.len();
        let pieces: Vec<&[u8]> = content.chunks(step).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let new = chunk.len();
            chunk.extend_from_slice(piece);
            checks.content(&mut chunk, start, new, i + 1 == pieces.len());
        }
        (checks, chunk)
    }

    #[test]
    fn forged_results_are_taken_out_however_the_content_is_cut() {
        let msg = b"From: a@example.com\r\n\
            Authentication-Results: mx.example.org; dkim=pass\r\n\
            Authentication-Results: other.example; spf=pass\r\n\
            authentication-results: MX.EXAMPLE.ORG;\r\n dmarc=pass\r\n\
            Subject: hi\r\n\
            \r\n\
            Authentication-Results: mx.example.org; in the body\r\n";
        let want = b"Received: by us\r\n\
            From: a@example.com\r\n\
            Authentication-Results: other.example; spf=pass\r\n\
            Subject: hi\r\n\
            \r\n\
            Authentication-Results: mx.example.org; in the body\r\n";
        for step in [1, 2, 7, 30, msg.len()] {
            let (checks, chunk) = feed(msg, step);
            assert_eq!(
                String::from_utf8_lossy(&chunk),
                String::from_utf8_lossy(want),
                "step {step}"
            );
            assert!(!checks.holding());
            assert_eq!(checks.removed(), 2);
        }
    }

    #[test]
    fn the_header_is_held_until_complete_and_refused_past_the_limit() {
        let mut checks = MessageChecks::new(spf_pass(), Duration::ZERO, "mx.example.org");
        let mut chunk = b"Received: x\r\n".to_vec();
        let start = chunk.len();
        // A field cut before its colon, then continued: still the header.
        for piece in [&b"Subj"[..], b"ect: a\r\n", b" folded\r\n"] {
            let new = chunk.len();
            chunk.extend_from_slice(piece);
            checks.content(&mut chunk, start, new, false);
            assert!(checks.holding());
        }
        let new = chunk.len();
        chunk.extend_from_slice(b"\r\nbody\r\n");
        checks.content(&mut chunk, start, new, false);
        assert!(!checks.holding() && checks.refusal().is_none());

        let mut checks = MessageChecks::new(spf_pass(), Duration::ZERO, "mx.example.org");
        let mut chunk = b"Received: x\r\n".to_vec();
        let line = format!("X-Filler: {}\r\n", "y".repeat(1000));
        while checks.refusal().is_none() {
            let new = chunk.len();
            chunk.extend_from_slice(line.as_bytes());
            checks.content(&mut chunk, start, new, false);
            assert!(chunk.len() <= start + MAX_HEADER_SECTION + line.len());
        }
        assert!(checks.holding());
        assert_eq!(chunk, b"Received: x\r\n", "what was held is dropped");
        let r = checks.refusal().unwrap();
        assert_eq!(
            r.summary(),
            "552 5.3.4 Error: message header section exceeds 64 KB"
        );
    }

    #[test]
    fn unsigned_mail_without_dns_is_reported_not_refused() {
        let (checks, _) = feed(b"From: a@example.com\r\n\r\nhi\r\n", 5);
        let outcome = smol::block_on(checks.finish(None));
        assert!(
            outcome
                .field
                .starts_with("Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=a@example.com;\r\n\tdkim=none;\r\n\tdmarc="),
            "{}",
            outcome.field
        );
        assert!(outcome.summary.starts_with("spf:pass,dkim:none,dmarc:"));
        let enforce = Enforce {
            spf_reject: true,
            dmarc_reject: true,
        };
        assert_eq!(outcome.refusal(enforce), None);
    }

    #[test]
    fn a_silent_resolver_ends_at_the_deadline() {
        // A UDP socket nobody reads: every query waits until the deadline.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let resolver = Resolver::new(silent.local_addr().unwrap());
        let dns = Bounded::new(Some(&resolver), Duration::from_millis(200));
        let r = smol::block_on(Dns::txt(&dns, "example.com"));
        assert_eq!(r, Err(DnsError::Timeout));
        // Past the deadline nothing is asked at all.
        let r = smol::block_on(Dns::a(&dns, "example.com"));
        assert_eq!(r, Err(DnsError::Timeout));
        let none = Bounded::new(None, SPF_TIME);
        assert!(matches!(
            smol::block_on(Dns::mx(&none, "example.com")),
            Err(DnsError::Io(_))
        ));
    }

    #[test]
    fn only_an_applied_p_reject_failure_is_refused_and_only_when_asked() {
        use crate::mailauth::dmarc::{DmarcResult, Policy};
        let outcome = |result, policy| Outcome {
            field: String::new(),
            summary: String::new(),
            dmarc: DmarcVerdict {
                result,
                requested: Some(Policy::Reject),
                policy: Some(policy),
                from_domain: "sub.example.com".into(),
                policy_domain: Some("example.com".into()),
                ..DmarcVerdict::permerror("")
            },
        };
        let on = Enforce {
            spf_reject: false,
            dmarc_reject: true,
        };
        let r = outcome(DmarcResult::Fail, Policy::Reject)
            .refusal(on)
            .unwrap();
        assert_eq!(
            r.summary(),
            "550 5.7.1 Message rejected: sub.example.com fails DMARC, \
             and the DMARC policy of example.com is reject"
        );
        let off = Enforce::default();
        assert_eq!(
            outcome(DmarcResult::Fail, Policy::Reject).refusal(off),
            None
        );
        // Quarantined (pct= or t=y made it so) or passing: the header says it.
        assert_eq!(
            outcome(DmarcResult::Fail, Policy::Quarantine).refusal(on),
            None
        );
        assert_eq!(outcome(DmarcResult::Pass, Policy::None).refusal(on), None);
    }

    #[test]
    fn spf_refusal_words() {
        let mut fail = spf_pass();
        fail.result = Verdict::Fail;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            spf_refusal(&fail, ip).summary(),
            "550 5.7.23 <a@example.com>: Sender address rejected: SPF fail: \
             example.com does not designate 192.0.2.1 as permitted sender"
        );
        fail.explanation = Some("see https://example.com/why".into());
        assert_eq!(
            spf_refusal(&fail, ip).summary(),
            "550 5.7.23 <a@example.com>: Sender address rejected: SPF fail: \
             see https://example.com/why"
        );
    }
}
