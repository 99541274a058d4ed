//! Mail authentication: SPF (RFC 7208), DKIM signing and verification (RFC 6376,
//! RFC 8463) and DMARC (RFC 7489) as pure evaluators. They ask DNS through the
//! [`Dns`] trait — the daemon's resolver in production, a fake or a test server in
//! tests — and return results; what to do with a result (a header, a refusal) is the
//! inbound session's decision, not theirs.
//!
//! `signing` is the daemon's side of DKIM signing: the `--dkim-key` keys by domain and
//! a signer fed each message we originate as it is queued.

pub mod dkim;
pub mod dmarc;
#[cfg(test)]
mod fake_dns;
pub mod results;
pub mod tags;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dns::{DnsError, Lookup, Mx, Names, Resolver};

pub mod signing;
pub mod spf;

/// The DNS lookups the evaluators make. Each call is one query, bounded in time by
/// the resolver; the evaluators bound the number of calls.
///
/// Names are taken as DNS carries them ([`Names::Any`]): SPF builds them by macro
/// expansion (RFC 7208 §7.3) and may ask for `foo:bar/baz.example.com`.
pub trait Dns {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>>;
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Lookup<Mx>, DnsError>>;
    fn a(&self, name: &str) -> impl Future<Output = Result<Lookup<Ipv4Addr>, DnsError>>;
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Lookup<Ipv6Addr>, DnsError>>;
    /// The names in `ip`'s reverse zone.
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Lookup<String>, DnsError>>;
}

impl Dns for Resolver {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
        let r = any_names(self);
        async move { r.txt(name).await }
    }
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Lookup<Mx>, DnsError>> {
        let r = any_names(self);
        async move { r.mx(domain).await }
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Lookup<Ipv4Addr>, DnsError>> {
        let r = any_names(self);
        async move { r.a(name).await }
    }
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Lookup<Ipv6Addr>, DnsError>> {
        let r = any_names(self);
        async move { r.aaaa(name).await }
    }
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
        let r = any_names(self);
        async move { r.ptr(ip).await }
    }
}

/// An RFC 5322 quoted-string of `text`, control characters dropped: how the results
/// quote a reason or a value in Authentication-Results and Received-SPF.
pub(crate) fn quoted(text: &str) -> String {
    let mut q = String::from("\"");
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The daemon's resolver as the evaluators need it, whatever names it was built for
/// (a copy: the resolver is an address and two numbers).
fn any_names(r: &Resolver) -> Resolver {
    r.clone().with_names(Names::Any)
}
