//! Routing: the one decision of where a recipient goes — a local Maildir, or the next
//! hop of a transport entry, the sender's relay host (`--sender-relay`), the relay host
//! or the recipient domain's MX — made at RCPT time (to refuse what cannot be
//! delivered, [`Router::route`]) and again at delivery time with the envelope sender
//! ([`Router::route_from`]), one function underneath, so the two can never disagree.
//! Postfix's trivial-rewrite role.

use std::fmt;

use super::sender_relay::SenderRelayTable;
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
    /// `--sender-relay`: next hops by envelope sender, before the relay host.
    pub sender_relay: Option<SenderRelayTable>,
    /// `--relayhost`: every other non-local domain.
    pub relayhost: Option<NextHop>,
}

impl Router {
    /// Routes `rcpt` as RCPT needs it: local, invalid or remote. The sender is left
    /// out: it can change which host relays the mail, never whether it is accepted.
    pub fn route(&self, rcpt: &str) -> Route {
        self.decide(None, rcpt)
    }

    /// Routes `rcpt` of a message from `sender` (empty for the null sender) for
    /// delivery: as [`Router::route`], with the sender's `--sender-relay` entry in
    /// front of the relay host.
    pub fn route_from(&self, sender: &str, rcpt: &str) -> Route {
        self.decide(Some(sender), rcpt)
    }

    /// Whether the next hop can depend on the sender. Credentials are then looked up
    /// by sender first too (what Postfix's `smtp_sender_dependent_authentication`
    /// turns on separately): an account per sender goes with a relay per sender.
    pub fn per_sender(&self) -> bool {
        self.sender_relay.is_some()
    }

    /// The one routing decision (domains compared case-insensitively), in Postfix's
    /// order: a transport entry first — it routes even a local domain onward, a
    /// gateway in front of an internal server — then local delivery, then the
    /// sender's relay host (when `sender` is given), then the relay host, then the
    /// domain's MX.
    fn decide(&self, sender: Option<&str>, rcpt: &str) -> Route {
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
        let by_sender = sender
            .zip(self.sender_relay.as_ref())
            .and_then(|(s, table)| {
                let (_, sender_domain) = s.rsplit_once('@')?;
                table.lookup(s, self.is_local(sender_domain))
            });
        let hop = by_sender.or(self.relayhost.as_ref()).cloned();
        Route::Remote(hop.unwrap_or(NextHop::Domain(domain)))
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
    /// A relay host or transport next hop. `bracketed` is `[host]` (no MX lookup);
    /// `implicit_tls` is Postfix's `smtps:` transport (`smtp_tls_wrappermode`): TLS
    /// from the first byte, as on port 465, instead of STARTTLS.
    Host {
        host: String,
        port: u16,
        bracketed: bool,
        implicit_tls: bool,
    },
}

impl NextHop {
    /// Whether the connection starts with the TLS handshake (`smtps:`).
    pub fn implicit_tls(&self) -> bool {
        matches!(
            self,
            NextHop::Host {
                implicit_tls: true,
                ..
            }
        )
    }
}

/// The destination as routing wrote it and as tables key it (`--relay-credentials`,
/// logs): `[host]:port`, `host:port` or the recipient domain, without the `smtps:`
/// transport (which says how to connect, not where).
impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Domain(d) => f.write_str(d),
            NextHop::Host {
                host,
                port,
                bracketed: true,
                ..
            } => write!(f, "[{host}]:{port}"),
            NextHop::Host { host, port, .. } => write!(f, "{host}:{port}"),
        }
    }
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
            sender_relay: None,
            relayhost,
        }
    }

    fn host(host: &str, port: u16, implicit_tls: bool) -> NextHop {
        NextHop::Host {
            host: host.into(),
            port,
            bracketed: true,
            implicit_tls,
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
        let gateway = host("10.0.0.2", 25, false);
        let smarthost = host("smtp.provider.test", 587, false);
        let r = router("example.test  [10.0.0.2]:25\n", Some(smarthost.clone()));
        // A local domain with a transport entry is relayed, even with a local part that
        // could not be a Maildir name; it stays ours to accept.
        assert_eq!(r.route("a/b@example.test"), Route::Remote(gateway));
        assert!(r.is_local("EXAMPLE.test"));
        assert_eq!(r.route("x@far.test"), Route::Remote(smarthost));
        assert!(!r.is_local("far.test"));
    }

    #[test]
    fn sender_relay_before_relayhost_never_before_transport_or_local() {
        let alerts = host("smtp.example.com", 587, false);
        let net = host("mail.example.net", 465, true);
        let smarthost = host("smtp.provider.test", 587, false);
        let mut r = router("gw.test  [10.0.0.2]:25\n", Some(smarthost.clone()));
        let mut errors = Vec::new();
        r.sender_relay = Some(SenderRelayTable::parse(
            "alerts@example.org  [smtp.example.com]:587\n\
             @example.net  smtps:[mail.example.net]:465\n\
             cron  [smtp.example.com]:587\n",
            "sender-relay",
            &mut errors,
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(r.per_sender());
        let to = "x@far.test";
        assert_eq!(
            r.route_from("Alerts@example.org", to),
            Route::Remote(alerts.clone())
        );
        assert_eq!(
            r.route_from("anyone@Example.NET", to),
            Route::Remote(net.clone())
        );
        // A bare local part matches senders of the local domains only.
        assert_eq!(r.route_from("cron@example.test", to), Route::Remote(alerts));
        assert_eq!(
            r.route_from("cron@other.test", to),
            Route::Remote(smarthost.clone())
        );
        assert_eq!(r.route_from("", to), Route::Remote(smarthost.clone()));
        // RCPT-time routing has no sender: the relay host.
        assert_eq!(r.route(to), Route::Remote(smarthost));
        // Transport entries and local delivery come first.
        assert_eq!(
            r.route_from("anyone@example.net", "y@gw.test"),
            Route::Remote(host("10.0.0.2", 25, false))
        );
        assert!(matches!(
            r.route_from("anyone@example.net", "alice@example.test"),
            Route::Local { .. }
        ));
    }

    #[test]
    fn next_hops_print_as_tables_key_them() {
        assert_eq!(
            host("smtp.example.com", 465, true).to_string(),
            "[smtp.example.com]:465"
        );
        assert!(host("smtp.example.com", 465, true).implicit_tls());
        let unbracketed = NextHop::Host {
            host: "relay.example".into(),
            port: 25,
            bracketed: false,
            implicit_tls: false,
        };
        assert_eq!(unbracketed.to_string(), "relay.example:25");
        assert!(!unbracketed.implicit_tls());
        assert_eq!(
            NextHop::Domain("example.org".into()).to_string(),
            "example.org"
        );
    }
}
