//! Matching a certificate's DNS names against the names a connection expects (RFC 6125
//! section 6.4, as OpenSSL and Postfix do it): one matcher for the policy's `match=`
//! names at verify/secure and for the DANE-TA reference names (RFC 7672 section 3.2.2),
//! so both checks accept and refuse the same certificates.
//!
//! This module compares strings; which names a destination expects is the policy's
//! decision, and which names a certificate presents is read by `dane::presented_names`.

use std::fmt;

/// A name the peer certificate may carry: a `match=` entry already expanded from its
/// keywords, or a DANE reference name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    /// This name exactly.
    Exact(String),
    /// Any strict subdomain of this domain, at any depth (`.example.com`).
    Subdomains(String),
}

/// As written in `match=`, for logs: `mx.example.com`, `.example.com`.
impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Subdomains(d) => write!(f, ".{d}"),
        }
    }
}

impl NamePattern {
    /// A name as written in `match=` or given as a DANE reference name: `.example.com`
    /// stands for any subdomain of example.com, anything else for itself. Case and a
    /// trailing dot are ignored when matching.
    pub fn parse(name: &str) -> NamePattern {
        match name.strip_prefix('.') {
            Some(domain) => NamePattern::Subdomains(domain.to_string()),
            None => NamePattern::Exact(name.to_string()),
        }
    }
}

/// Whether any certificate name satisfies any pattern. `cert_names` are the DNS
/// subjectAltNames, or the subject CN when there is no DNS SAN (RFC 6125 6.4.4).
/// Comparison ignores ASCII case and one trailing dot.
///
/// Wildcards (RFC 6125 6.4.3, as OpenSSL and Postfix): only a whole leftmost `*`
/// label, standing for exactly one label, so `*.example.com` matches
/// `mx.example.com` but neither `a.b.example.com` nor `example.com`; `*.com`-style
/// names with a single label after the star and partial wildcards (`mx*.example.com`)
/// match nothing. Against a [`NamePattern::Subdomains`] pattern a wildcard
/// certificate matches when every name it covers is such a subdomain.
pub fn name_matches(patterns: &[NamePattern], cert_names: &[String]) -> bool {
    cert_names.iter().any(|c| {
        let c = norm_name(c);
        patterns.iter().any(|p| pattern_matches(p, &c))
    })
}

fn norm_name(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()
}

fn pattern_matches(pattern: &NamePattern, cert: &str) -> bool {
    let (wild, base) = match cert.strip_prefix("*.") {
        Some(b) => (true, b),
        None => (false, cert),
    };
    if base.is_empty() || base.contains('*') || (wild && !base.contains('.')) {
        return false;
    }
    match pattern {
        NamePattern::Exact(n) => {
            let n = norm_name(n);
            if n.is_empty() || n.contains('*') {
                false
            } else if wild {
                n.split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
            } else {
                n == base
            }
        }
        NamePattern::Subdomains(d) => {
            let d = norm_name(d);
            if d.is_empty() || d.contains('*') {
                return false;
            }
            let suffix = format!(".{d}");
            if wild {
                // "*.x" covers one label under x: all subdomains of d iff x is d or
                // below it.
                base == d || base.ends_with(&suffix)
            } else {
                base.len() > suffix.len() && base.ends_with(&suffix)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A DANE reference name against one presented name, as `dane` asks.
    fn host_matches(reference: &str, presented: &str) -> bool {
        name_matches(&[NamePattern::parse(reference)], &names(&[presented]))
    }

    #[test]
    fn name_matching_and_wildcards() {
        use NamePattern::{Exact, Subdomains};
        let exact = [Exact("mx.example.com".into())];
        let m = |p: &[NamePattern], c: &[&str]| name_matches(p, &names(c));
        assert!(m(&exact, &["MX.Example.COM"]));
        assert!(m(&exact, &["mx.example.com."]));
        assert!(m(&exact, &["other.test", "mx.example.com"]));
        assert!(!m(&exact, &["mx2.example.com"]));
        assert!(!m(&exact, &[]));
        assert!(m(&exact, &["*.example.com"]));
        assert!(!m(&exact, &["*.com"]));
        assert!(!m(&exact, &["m*.example.com"]));
        assert!(!m(&exact, &["*x.example.com"]));
        assert!(!m(&exact, &["mx.*.com"]));
        assert!(!m(&exact, &["*"]));
        // One label only, and never the parent itself.
        let deep = [Exact("a.b.example.com".into())];
        assert!(!m(&deep, &["*.example.com"]));
        let apex = [Exact("example.com".into())];
        assert!(!m(&apex, &["*.example.com"]));
        assert!(m(&apex, &["example.com"]));

        let sub = [Subdomains("example.com".into())];
        assert!(m(&sub, &["mx.example.com"]));
        assert!(m(&sub, &["a.b.example.com"]));
        assert!(!m(&sub, &["example.com"]));
        assert!(!m(&sub, &["badexample.com"]));
        assert!(!m(&sub, &[".example.com"]));
        assert!(m(&sub, &["*.example.com"]));
        assert!(m(&sub, &["*.b.example.com"]));
        assert!(!m(&sub, &["*.com"]));
        // An empty pattern never matches.
        assert!(!m(&[Exact(String::new())], &[""]));
        assert!(!m(&[Subdomains(String::new())], &["a.b"]));
    }

    #[test]
    fn host_name_rules() {
        assert!(host_matches("mx.example.test", "mx.example.test"));
        assert!(host_matches("mx.example.test", "*.example.test"));
        assert!(!host_matches("a.mx.example.test", "*.example.test"));
        assert!(!host_matches("example.test", "*.example.test"));
        assert!(!host_matches("mx.test", "*.test"));
        assert!(!host_matches("mx.example.test", "mx*.example.test"));
        assert!(!host_matches("mx.example.test", "*.*.test"));
        assert!(!host_matches("*.example.test", "*.example.test"));
        assert!(host_matches(".example.test", "a.b.example.test"));
        assert!(host_matches(".example.test", "*.example.test"));
        assert!(!host_matches(".example.test", "example.test"));
        assert!(!host_matches(".example.test", "badexample.test"));
        assert!(!host_matches(".", "x"));
        assert!(!host_matches("", ""));
        assert!(!host_matches("mx.example.test", ""));
    }
}
