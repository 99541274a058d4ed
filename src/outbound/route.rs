//! Routing: the one decision of where a recipient goes — a local Maildir, or the next
//! hop of a transport entry, the relay host or the recipient domain's MX — made by
//! [`Router::route`] at RCPT time (to refuse what cannot be delivered) and again at
//! delivery time, so the two can never disagree. Postfix's trivial-rewrite role.

use super::transport::TransportTable;

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `<mail-dir>/<domain>/<user>/`.
    Local { domain: String, user: String },
    /// Over SMTP to this next hop.
    Remote(NextHop),
    /// Local domain, but the local part cannot name a Maildir.
    Invalid(&'static str),
}

/// The routing tables.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Local domains, lower case; the first is where bare `<postmaster>` goes.
    pub local_domains: Vec<String>,
    /// `--transport`: per-domain next hops, local domains included.
    pub transport: TransportTable,
    /// `--relayhost`: every other non-local domain.
    pub relayhost: Option<NextHop>,
}

impl Router {
    /// Routes `local@domain` (domains compared case-insensitively), in Postfix's order:
    /// a transport entry first — it routes even a local domain onward, a gateway in
    /// front of an internal server — then local delivery, then the relay host, then
    /// the domain's MX.
    pub fn route(&self, rcpt: &str) -> Route {
        let Some((local, domain)) = rcpt.rsplit_once('@') else {
            return Route::Invalid("recipient without a domain");
        };
        let domain = domain.to_ascii_lowercase();
        if let Some(hop) = self.transport.lookup(&domain) {
            return Route::Remote(hop.clone());
        }
        if self.is_local(&domain) {
            return match maildir_user(local) {
                Some(user) => Route::Local { domain, user },
                None => Route::Invalid("local part cannot be delivered to a Maildir"),
            };
        }
        Route::Remote(self.relayhost.clone().unwrap_or(NextHop::Domain(domain)))
    }

    /// Whether mail for `domain` is ours to accept from anyone: a local domain, even
    /// when a transport entry relays it.
    pub fn is_local(&self, domain: &str) -> bool {
        self.local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Where a message goes next, as routing decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// MX delivery for a recipient domain.
    Domain(String),
    /// A relay host or transport next hop. `bracketed` is `[host]` (no MX lookup).
    Host {
        host: String,
        port: u16,
        bracketed: bool,
    },
}

/// Maps a local part to a Maildir name: case-insensitive (lower case, as users expect
/// and RFC 5321 §2.4 permits for the receiving host), `user+detail` delivered to `user`
/// (the usual recipient delimiter), and only characters that are safe in a file name.
pub fn maildir_user(local: &str) -> Option<String> {
    let base = local.split('+').next().unwrap_or(local);
    let user = base.to_lowercase();
    let safe = !user.is_empty()
        && !user.starts_with('.')
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_alphanumeric() || "._-=!#$%&'*^`{|}~?".contains(c));
    safe.then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(transport: &str, relayhost: Option<NextHop>) -> Router {
        Router {
            local_domains: vec!["example.test".to_string()],
            transport: TransportTable::parse(transport, "transport").unwrap(),
            relayhost,
        }
    }

    #[test]
    fn local_and_remote() {
        let r = router("", None);
        assert_eq!(
            r.route("Alice+news@Example.TEST"),
            Route::Local {
                domain: "example.test".into(),
                user: "alice".into()
            }
        );
        assert_eq!(
            r.route("bob@Other.test"),
            Route::Remote(NextHop::Domain("other.test".into()))
        );
        for bad in [
            "a/b@example.test",
            "\"x y\"@example.test",
            ".hidden@example.test",
            "nodomain",
        ] {
            assert!(matches!(r.route(bad), Route::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn transport_before_local_and_relayhost_before_mx() {
        let gateway = NextHop::Host {
            host: "10.0.0.2".into(),
            port: 25,
            bracketed: true,
        };
        let smarthost = NextHop::Host {
            host: "smtp.provider.test".into(),
            port: 587,
            bracketed: true,
        };
        let r = router("example.test  [10.0.0.2]:25\n", Some(smarthost.clone()));
        // A local domain with a transport entry is relayed, even with a local part that
        // could not be a Maildir name; it stays ours to accept.
        assert_eq!(r.route("a/b@example.test"), Route::Remote(gateway));
        assert!(r.is_local("EXAMPLE.test"));
        assert_eq!(r.route("x@far.test"), Route::Remote(smarthost));
        assert!(!r.is_local("far.test"));
    }
}
