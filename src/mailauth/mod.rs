//! Mail authentication: SPF (RFC 7208), DKIM signing and verification (RFC 6376,
//! RFC 8463) and DMARC (RFC 7489) as pure evaluators. They ask DNS through the
//! [`Dns`] trait — the daemon's resolver in production, a fake or a test server in
//! tests — and return results; what to do with a result (a header, a refusal) is the
//! inbound session's decision, not theirs.

use std::future::Future;

use crate::dns::{DnsError, Lookup, Mx, Resolver};

/// The DNS lookups the evaluators make. Each call is one query, bounded in time by
/// the resolver; the evaluators bound the number of calls.
pub trait Dns {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>>;
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Lookup<Mx>, DnsError>>;
}

impl Dns for Resolver {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
        Resolver::txt(self, name)
    }
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Lookup<Mx>, DnsError>> {
        Resolver::mx(self, domain)
    }
}
