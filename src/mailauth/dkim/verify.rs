//! Verification (RFC 6376 §6): each DKIM-Signature field of a message, from the top,
//! up to [`MAX_SIGNATURES`], gets one [`Verdict`].
//!
//! The result words are Authentication-Results' (RFC 8601 §2.7.1), chosen so:
//! - `neutral`: the field breaks the rules of §3.5 ("syntax errors", in RFC 8601's
//!   words), or its timestamp is in the future;
//! - `policy`: rsa-sha1, which RFC 8301 §3.1 forbids accepting, reported unchecked;
//! - `temperror`: the key lookup failed (§6.1.2 TEMPFAIL);
//! - `permerror`: no usable key: no record, a broken or revoked one, the wrong type or
//!   hash, an RSA key under 1024 bits, `t=s` with a subdomain `i=` (§6.1.2 PERMFAIL);
//! - `fail`: the checks ran and failed: body hash, signature, expiry (`x=`), an `l=`
//!   longer than the body, or a From field the signature does not cover (a forged
//!   From added on top of a signed message; dkimpy refuses it too);
//! - `pass`.
//!
//! [`Verifier`] takes the header first and the body in chunks, so a caller can stream
//! the body; the header hash of every signature is computed up front, and only the
//! key lookups wait for [`Verifier::finish`], which makes them all at once.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::sha::sha256;

use super::canon::{header_data, BodyHasher};
use super::key::parse_record;
use super::signature::{Algorithm, Signature};
use super::{check_dns_name, rsa_pkcs1_sha256, FIELD};
use crate::dns::{DnsError, Lookup};
use crate::headers::{Field, Header};
use crate::mailauth::quoted;
use crate::mailauth::tags::{get, parse_tags};
use crate::mailauth::Dns;

/// Signatures checked per message; the ones below are ignored. Each costs a DNS
/// lookup and a hash of the body, and a message needs one that passes.
pub const MAX_SIGNATURES: usize = 5;

/// How far the signer's clock may be ahead of ours (`t=`) or our clock past the
/// expiry (`x=`) before it counts.
const CLOCK_SKEW: u64 = 300;

/// The result of one signature (RFC 8601 §2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimResult {
    Pass,
    Fail,
    Neutral,
    Policy,
    TempError,
    PermError,
}

impl DkimResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::Policy => "policy",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

/// What one signature came to, with what Authentication-Results reports of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: DkimResult,
    /// Why, for anything but a pass.
    pub reason: Option<String>,
    /// `d=` (lower case), or empty when missing or not a domain.
    pub domain: String,
    /// `s=` (lower case), or empty when missing or not a DNS name.
    pub selector: String,
    /// `b=` without whitespace, or empty when missing or not base64 text.
    pub b: String,
    pub algorithm: Option<Algorithm>,
    /// The key record says `t=y`: the domain is testing DKIM.
    pub testing: bool,
}

impl Verdict {
    fn decided(mut self, result: DkimResult, reason: impl Into<String>) -> Verdict {
        self.result = result;
        self.reason = Some(reason.into());
        self
    }

    /// `header.b`: the first 8 characters of `b=`, enough to tell signatures of one
    /// domain and selector apart (RFC 6008 §4).
    pub fn header_b(&self) -> &str {
        &self.b[..self.b.len().min(8)]
    }

    /// This verdict as a `resinfo` of Authentication-Results (RFC 8601 §2.2), e.g.
    /// `dkim=pass header.d=example.com header.s=sel header.b=AbCdEfGh`.
    pub fn resinfo(&self) -> String {
        let mut s = format!("dkim={}", self.result.as_str());
        if let Some(r) = &self.reason {
            s.push_str(" reason=");
            s.push_str(&quoted(r));
        }
        for (name, value) in [("d", &self.domain[..]), ("s", &self.selector[..])] {
            if !value.is_empty() {
                s.push_str(&format!(" header.{name}={value}"));
            }
        }
        let b = self.header_b();
        if !b.is_empty() {
            // `/` and `=` are tspecials (RFC 2045): such a value must be quoted.
            if b.contains(['/', '=']) {
                s.push_str(&format!(" header.b={}", quoted(b)));
            } else {
                s.push_str(&format!(" header.b={b}"));
            }
        }
        s
    }
}

/// One signature on its way to a verdict.
enum Check {
    Decided(Verdict),
    Open(Box<Open>),
}

struct Open {
    verdict: Verdict,
    sig: Signature,
    header_hash: Vec<u8>,
    body: BodyHasher,
}

/// The verification of one message: [`new`](Self::new) with its header,
/// [`body`](Self::body) with each chunk of the body, [`finish`](Self::finish).
pub struct Verifier {
    checks: Vec<Check>,
}

impl Verifier {
    pub fn new(header: &Header<'_>) -> Verifier {
        let froms = header.fields.iter().filter(|f| f.is("From")).count();
        let checks = header
            .fields
            .iter()
            .filter(|f| f.is(FIELD))
            .take(MAX_SIGNATURES)
            .map(|f| prepare(header, f, froms))
            .collect();
        Verifier { checks }
    }

    /// How many signatures are being checked.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Feeds the next chunk of the body.
    pub fn body(&mut self, chunk: &[u8]) {
        for c in &mut self.checks {
            if let Check::Open(open) = c {
                open.body.update(chunk);
            }
        }
    }

    /// Looks the keys up (all at once, each name once) and gives each signature its
    /// verdict, in the order of the fields. `now` is the time of reception.
    pub async fn finish<D: Dns>(self, dns: &D, now: u64) -> Vec<Verdict> {
        let mut checks = self.checks;
        let mut names: Vec<String> = Vec::new();
        for c in &mut checks {
            let Check::Open(open) = c else { continue };
            let sig = &open.sig;
            if sig
                .expires
                .is_some_and(|x| x.saturating_add(CLOCK_SKEW) < now)
            {
                *c = Check::Decided(
                    open.verdict
                        .clone()
                        .decided(DkimResult::Fail, "signature expired (x=)"),
                );
            } else if sig
                .timestamp
                .is_some_and(|t| t > now.saturating_add(CLOCK_SKEW))
            {
                *c = Check::Decided(open.verdict.clone().decided(
                    DkimResult::Neutral,
                    "signature timestamp in the future (t=)",
                ));
            } else if !names.contains(&sig.key_name()) {
                names.push(sig.key_name());
            }
        }
        let answers = join_all(names.iter().map(|n| dns.txt(n)).collect()).await;
        checks
            .into_iter()
            .map(|c| match c {
                Check::Decided(v) => v,
                Check::Open(open) => {
                    let i = names.iter().position(|n| *n == open.sig.key_name());
                    match i.and_then(|i| answers.get(i)) {
                        Some(answer) => judge(*open, answer),
                        None => open.verdict.decided(DkimResult::TempError, "no key lookup"),
                    }
                }
            })
            .collect()
    }
}

/// Verifies every signature of `message` (canonical CRLF text) received at `now`.
pub async fn verify<D: Dns>(message: &[u8], dns: &D, now: u64) -> Vec<Verdict> {
    let header = Header::parse(message);
    let mut verifier = Verifier::new(&header);
    verifier.body(&message[header.body..]);
    verifier.finish(dns, now).await
}

/// Everything about one signature that needs no DNS: its tags, the rules of §3.5,
/// and the hash of the header data it covers.
fn prepare(header: &Header<'_>, field: &Field<'_>, froms: usize) -> Check {
    let start = field.name.len() + 1;
    let value = &field.raw[start..];
    let value = value.strip_suffix(b"\r\n").unwrap_or(value);
    let mut verdict = Verdict {
        result: DkimResult::Neutral,
        reason: None,
        domain: String::new(),
        selector: String::new(),
        b: String::new(),
        algorithm: None,
        testing: false,
    };
    let tags = match parse_tags(value) {
        Ok(t) => t,
        Err(e) => return Check::Decided(verdict.decided(DkimResult::Neutral, e)),
    };
    // What identifies the signature in a report, as far as it can be trusted to be
    // a name and base64 text (the report is a header field of ours).
    verdict.domain = get(&tags, "d")
        .and_then(|d| check_dns_name("d=", d).ok())
        .unwrap_or_default();
    verdict.selector = get(&tags, "s")
        .and_then(|s| check_dns_name("s=", s).ok())
        .unwrap_or_default();
    let b: String = get(&tags, "b")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if b.chars()
        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    {
        verdict.b = b;
    }
    let sig = match Signature::from_tags(&tags) {
        Ok(s) => s,
        Err(e) => return Check::Decided(verdict.decided(DkimResult::Neutral, e)),
    };
    verdict.algorithm = Some(sig.algorithm);
    if sig.algorithm == Algorithm::RsaSha1 {
        return Check::Decided(verdict.decided(DkimResult::Policy, "rsa-sha1 (RFC 8301)"));
    }
    if froms > sig.headers.iter().filter(|h| *h == "from").count() {
        return Check::Decided(verdict.decided(DkimResult::Fail, "a From field is not signed"));
    }
    // The field with the value of b= taken out, whitespace and all (§3.7).
    let b_span = match tags.iter().find(|t| t.name == "b") {
        Some(t) => t.span.clone(),
        None => return Check::Decided(verdict.decided(DkimResult::Neutral, "missing b=")),
    };
    let mut unsigned = field.raw[..start + b_span.start].to_vec();
    unsigned.extend_from_slice(&field.raw[start + b_span.end..]);
    let data = header_data(
        sig.header_canon,
        &header.fields,
        &sig.headers,
        &unsigned,
        field.name.len(),
    );
    Check::Open(Box::new(Open {
        verdict,
        header_hash: sha256(&data).to_vec(),
        body: BodyHasher::new(sig.body_canon, sig.length),
        sig,
    }))
}

/// The verdict once the key record is known (§6.1.2, §6.1.3).
fn judge(open: Open, answer: &Result<Lookup<String>, DnsError>) -> Verdict {
    let Open {
        mut verdict,
        sig,
        header_hash,
        body,
    } = open;
    let lookup = match answer {
        Ok(l) => l,
        Err(e) => return verdict.decided(DkimResult::TempError, format!("key lookup: {e}")),
    };
    let records: Vec<_> = lookup.records.iter().map(|r| parse_record(r)).collect();
    // The first record that is a key record; if none is, the first one's error.
    let record = match (
        records.iter().find_map(|r| r.as_ref().ok()),
        records.first(),
    ) {
        (Some(r), _) => r,
        (None, None) => return verdict.decided(DkimResult::PermError, "no key for signature"),
        (None, Some(e)) => {
            let e = e.as_ref().err().copied().unwrap_or_default();
            return verdict.decided(DkimResult::PermError, format!("invalid key record: {e}"));
        }
    };
    verdict.testing = record.testing;
    if record.strict && sig.identity_domain != sig.domain {
        return verdict.decided(
            DkimResult::PermError,
            "i= is a subdomain of d=, which the key forbids (t=s)",
        );
    }
    let key = match record.public_key(sig.algorithm) {
        Ok(k) => k,
        Err(e) => return verdict.decided(DkimResult::PermError, e),
    };
    let (body_hash, body_len) = body.finish();
    if sig.length.is_some_and(|l| l > body_len) {
        return verdict.decided(DkimResult::Fail, "l= is longer than the body");
    }
    if body_hash[..] != sig.body_hash[..] {
        return verdict.decided(DkimResult::Fail, "body hash did not verify");
    }
    if !signature_verifies(&key, sig.algorithm, &header_hash, &sig.signature) {
        return verdict.decided(DkimResult::Fail, "signature did not verify");
    }
    verdict.result = DkimResult::Pass;
    verdict
}

/// Checks `sig` over the SHA-256 of the header data (see `SigningKey::sign_hash`).
fn signature_verifies(key: &PKey<Public>, algorithm: Algorithm, hash: &[u8], sig: &[u8]) -> bool {
    let verified = if algorithm == Algorithm::Ed25519Sha256 {
        openssl::sign::Verifier::new_without_digest(key)
            .and_then(|mut v| v.verify_oneshot(sig, hash))
    } else {
        PkeyCtx::new(key).and_then(|mut ctx| {
            ctx.verify_init()?;
            rsa_pkcs1_sha256(&mut ctx)?;
            ctx.verify(hash, sig)
        })
    };
    // An error (a signature of the wrong length, say) is a signature that does not verify.
    verified.unwrap_or(false)
}

/// Runs the futures concurrently on the current task and collects their outputs in
/// order: the key lookups of one message take as long as the slowest, not the sum.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut waiting = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
