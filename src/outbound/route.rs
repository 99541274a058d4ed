//! Routing: is a recipient local (a Maildir) or remote (the next hop), which Maildir a
//! local part maps to, and the [`NextHop`] a remote delivery goes to. Used at RCPT time
//! (to refuse what cannot be delivered) and at delivery time.

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `<mail-dir>/<domain>/<user>/`.
    Local {
        domain: String,
        user: String,
    },
    Remote {
        domain: String,
    },
    /// Local domain, but the local part cannot name a Maildir.
    Invalid(&'static str),
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

/// Classifies `local@domain` (domains compared case-insensitively).
pub fn classify(rcpt: &str, local_domains: &[String]) -> Destination {
    let Some((local, domain)) = rcpt.rsplit_once('@') else {
        return Destination::Invalid("recipient without a domain");
    };
    let domain = domain.to_ascii_lowercase();
    if !local_domains.contains(&domain) {
        return Destination::Remote { domain };
    }
    match maildir_user(local) {
        Some(user) => Destination::Local { domain, user },
        None => Destination::Invalid("local part cannot be delivered to a Maildir"),
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

    #[test]
    fn local_and_remote() {
        let doms = vec!["example.test".to_string()];
        assert_eq!(
            classify("Alice+news@Example.TEST", &doms),
            Destination::Local {
                domain: "example.test".into(),
                user: "alice".into()
            }
        );
        assert_eq!(
            classify("bob@other.test", &doms),
            Destination::Remote {
                domain: "other.test".into()
            }
        );
        assert!(matches!(
            classify("a/b@example.test", &doms),
            Destination::Invalid(_)
        ));
        assert!(matches!(
            classify("\"x y\"@example.test", &doms),
            Destination::Invalid(_)
        ));
        assert!(matches!(
            classify(".hidden@example.test", &doms),
            Destination::Invalid(_)
        ));
    }
}
