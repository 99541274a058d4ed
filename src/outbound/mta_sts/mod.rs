//! MTA-STS (RFC 8461) for recipient domains the TLS policy table does not list: the
//! `_mta-sts` TXT lookup, the policy fetched over verified HTTPS (`fetch`), parsed
//! (`policy`) and kept in the state directory across restarts (`cache`), and which
//! policy is in force for a domain now (`MtaSts::discover`, the rules of §5.1). What
//! an `enforce` policy demands of each MX host is decided in `remote` with this
//! module's answer; each session under a policy is counted by `tlsrpt` with policy-type
//! `sts` (its failure types are the ones discovery and `fetch` report).

pub mod cache;
pub mod fetch;
pub mod policy;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::tlsrpt::FailureType;
use crate::clock::unix_now;
use crate::dns::Resolver;
use crate::keyed::Keyed;
use crate::text::Joined;
use crate::tls::client::ClientSettings;
use cache::Cached;
use fetch::FetchError;
pub use policy::{Mode, StsPolicy};

/// A failed fetch of the same domain and `id` is not tried again for this long (the
/// cached policy, if any, applies meanwhile): a policy host that is down is not asked
/// once per message.
const FETCH_RETRY: Duration = Duration::from_secs(300);

/// Where the policy in force came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Fetched for this delivery (new `id`, nothing cached, or a refresh).
    Fetched,
    /// The cached copy, current under the TXT record's `id`.
    Cached,
    /// The cached copy, because no live policy could be had (fetch failed, no TXT
    /// record, DNS error): §5.1 says it still applies until it expires.
    CachedFallback,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Fetched => "fetched now",
            Source::Cached => "cached, current",
            Source::CachedFallback => "cached, no live policy could be had",
        }
    }
}

/// The policy in force for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub domain: String,
    pub id: String,
    pub policy: StsPolicy,
    pub source: Source,
    /// Unix seconds when it expires.
    pub expires: u64,
}

impl Active {
    /// `sts=enforce id=...`, for delivery lines and the session cache key.
    pub fn note(&self) -> String {
        format!("sts={} id={}", self.policy.mode, self.id)
    }

    pub fn enforces(&self) -> bool {
        self.policy.mode == Mode::Enforce
    }
}

/// What discovery found for a domain: the policy in force (if any; mode `none` is
/// returned too, and means none), and the fetch or TXT problem met on the way.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub active: Option<Active>,
    pub failure: Option<FetchError>,
}

/// MTA-STS state for the daemon's life: the policies known (loaded from the state
/// directory on first use) and the fetches that failed lately.
pub struct MtaSts {
    pub enabled: bool,
    /// `<state-dir>/mta-sts`; `None`: nothing is kept on disk (`check-tls`).
    dir: Option<PathBuf>,
    known: RefCell<Keyed<Cached>>,
    /// The last failed fetch by domain (`id`, when, why); `None` once one succeeded.
    failed: RefCell<Keyed<Option<(String, Instant, FetchError)>>>,
}

impl MtaSts {
    pub fn new(enabled: bool, dir: Option<PathBuf>) -> MtaSts {
        MtaSts {
            enabled,
            dir,
            known: RefCell::default(),
            failed: RefCell::default(),
        }
    }

    /// The cached entry of `domain`, read from disk the first time.
    fn cached(&self, domain: &str) -> Option<Cached> {
        if let Some(c) = self.known.borrow().get(domain) {
            return Some(c.clone());
        }
        let dir = self.dir.as_ref()?;
        match cache::load(dir, domain) {
            Ok(Some(c)) => {
                self.known
                    .borrow_mut()
                    .insert(domain.to_string(), c.clone());
                Some(c)
            }
            Ok(None) => None,
            Err(e) => {
                log::warn!("MTA-STS cache: {e}; ignoring it");
                None
            }
        }
    }

    /// The policy in force for `domain` now (RFC 8461 §5.1): the TXT record's `id`
    /// decides whether the cached policy is current; a new `id`, no cached copy or one
    /// past half its `max_age` is fetched; when no live policy can be had, an
    /// unexpired cached one applies.
    pub async fn discover(
        &self,
        resolver: &Resolver,
        tls: &ClientSettings,
        domain: &str,
    ) -> Discovery {
        let now = unix_now();
        let fresh = self.cached(domain).filter(|c| c.is_fresh(now));
        let fallback = |failure: Option<FetchError>| Discovery {
            active: fresh
                .as_ref()
                .map(|c| active(domain, c, Source::CachedFallback)),
            failure,
        };
        let qname = format!("_mta-sts.{domain}");
        let id = match resolver.txt(&qname).await {
            Ok(l) => match policy::record_id(&l.records) {
                Ok(id) => id,
                // No (valid) record: no policy, unless one is cached.
                Err(_) if l.records.is_empty() || l.nxdomain => return fallback(None),
                Err(why) => {
                    return fallback(Some(FetchError {
                        kind: FailureType::StsPolicyInvalid,
                        detail: format!("{qname}: {why}"),
                    }))
                }
            },
            Err(e) => {
                return fallback(Some(FetchError {
                    kind: FailureType::StsPolicyFetchError,
                    detail: format!("{qname} TXT lookup failed: {e}"),
                }))
            }
        };
        if let Some(c) = fresh
            .as_ref()
            .filter(|c| c.id == id && !c.wants_refresh(now))
        {
            return Discovery {
                active: Some(active(domain, c, Source::Cached)),
                failure: None,
            };
        }
        let recent_failure = self
            .failed
            .borrow()
            .get(domain)
            .and_then(Option::as_ref)
            .filter(|(fid, at, _)| *fid == id && at.elapsed() < FETCH_RETRY)
            .map(|(_, _, e)| e.clone());
        if let Some(e) = recent_failure {
            return fallback(Some(e));
        }
        match fetch::fetch(resolver, tls, domain).await {
            Ok(policy) => {
                if let Some(failure) = self.failed.borrow_mut().get_mut(domain) {
                    *failure = None;
                }
                let entry = Cached {
                    id,
                    fetched: now,
                    policy,
                };
                if let Some(dir) = &self.dir {
                    if let Err(e) = cache::store(dir, domain, &entry) {
                        log::warn!("MTA-STS cache: cannot store the policy of {domain}: {e}");
                    }
                }
                log::info!(
                    "MTA-STS policy of {domain} fetched: id={} mode={} max_age={} mx={}",
                    entry.id,
                    entry.policy.mode,
                    entry.policy.max_age,
                    entry.policy.mx.joined(",")
                );
                let found = active(domain, &entry, Source::Fetched);
                self.known.borrow_mut().insert(domain.to_string(), entry);
                Discovery {
                    active: Some(found),
                    failure: None,
                }
            }
            Err(e) => {
                log::warn!(
                    "MTA-STS policy of {domain} (id {id}) not fetched: {}{}",
                    e.detail,
                    if fresh.is_some() {
                        "; using the cached policy"
                    } else {
                        ""
                    }
                );
                self.failed
                    .borrow_mut()
                    .insert(domain.to_string(), Some((id, Instant::now(), e.clone())));
                fallback(Some(e))
            }
        }
    }
}

fn active(domain: &str, c: &Cached, source: Source) -> Active {
    Active {
        domain: domain.to_string(),
        id: c.id.clone(),
        policy: c.policy.clone(),
        source,
        expires: c.expires(),
    }
}
