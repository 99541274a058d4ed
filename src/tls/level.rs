//! The TLS security levels, one ordered table as Postfix's `tls_level_table`
//! (none < may < encrypt < fingerprint < dane < dane-only < verify < secure), what each
//! level demands of a connection, and how DNSSEC-validated TLSA state turns a DANE level
//! into the level actually enforced (RFC 7672).
//!
//! Pure decisions: no DNS, no sockets, no OpenSSL. Which level applies to a destination
//! is the outbound policy table's business (`outbound::policy`); the TLS code that
//! builds contexts and checks certificates asks the level's predicates what to enforce.

use std::fmt;

/// A TLS security level. Ordered as Postfix's `tls_level_table`; what a level demands
/// is a comparison on this order (see the predicates), never a list of cases, so a
/// level added in its place gets the right behaviour everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No TLS, even if the server offers STARTTLS.
    None,
    /// Opportunistic TLS: no verification; plaintext if STARTTLS is missing or fails.
    May,
    /// Mandatory TLS without authentication.
    Encrypt,
    /// Mandatory TLS; the certificate or public-key digest must be listed in `match=`.
    Fingerprint,
    /// Opportunistic DANE (RFC 7672): see [`Level::effective_for_dane`].
    Dane,
    /// Mandatory DANE: no usable DNSSEC-validated TLSA records, no delivery.
    DaneOnly,
    /// Mandatory TLS, CA chain verified, name checked (default: the MX host name).
    Verify,
    /// Like verify, but the default names come from the next hop, not from (forgeable)
    /// MX records.
    Secure,
}

impl Level {
    /// Every level, weakest first.
    pub const ALL: [Level; 8] = [
        Level::None,
        Level::May,
        Level::Encrypt,
        Level::Fingerprint,
        Level::Dane,
        Level::DaneOnly,
        Level::Verify,
        Level::Secure,
    ];

    /// The level named `s` (case-insensitive, as Postfix), or `None` if unknown.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
    }

    /// The name used in tables, flags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::May => "may",
            Level::Encrypt => "encrypt",
            Level::Fingerprint => "fingerprint",
            Level::Dane => "dane",
            Level::DaneOnly => "dane-only",
            Level::Verify => "verify",
            Level::Secure => "secure",
        }
    }

    /// Postfix `TLS_REQUIRED`: no STARTTLS or a failed handshake defers the message
    /// instead of falling back to plaintext. `Dane` answers true because it means
    /// "DANE in force"; ask this of the level returned by
    /// [`Level::effective_for_dane`], which turns `Dane` into `May` or `Encrypt` when
    /// DNS does not back it.
    pub fn requires_tls(self) -> bool {
        self > Level::May
    }

    /// Postfix `TLS_MUST_MATCH`: the peer must be authenticated (fingerprint, DANE
    /// or name), not merely encrypted.
    pub fn must_match(self) -> bool {
        self > Level::Encrypt
    }

    /// Postfix `TLS_MUST_PKIX`: the chain must verify against the CA store (or the
    /// `tafile=` trust anchors). Fingerprint and DANE levels bring their own trust.
    pub fn must_verify_chain(self) -> bool {
        self >= Level::Verify
    }

    /// Whether the caller must look up TLSA records before connecting.
    pub fn uses_dane(self) -> bool {
        matches!(self, Level::Dane | Level::DaneOnly)
    }

    /// The level to enforce once the DNSSEC state of the MX host is known (RFC 7672
    /// section 2.2, Postfix `dane_init`). Non-DANE levels come back unchanged, so a
    /// caller may pass every level through here; it only needs a real DNS answer when
    /// [`Level::uses_dane`].
    ///
    /// | table level | `Secure` | `SecureUnusable` | `Insecure` | `Failed` |
    /// |-------------|----------|------------------|------------|----------|
    /// | `dane`      | `dane`   | `encrypt`        | `may`      | defer    |
    /// | `dane-only` | `dane`   | defer            | defer      | defer    |
    ///
    /// `dane-only` becomes `dane` once usable records are in hand, as in Postfix: from
    /// then on the two demand the same, and logs say which authentication happened.
    pub fn effective_for_dane(self, state: DaneState) -> DaneDecision {
        match (self, state) {
            (Level::Dane | Level::DaneOnly, DaneState::Secure) => {
                DaneDecision::Proceed(Level::Dane)
            }
            (Level::Dane, DaneState::SecureUnusable) => DaneDecision::Proceed(Level::Encrypt),
            (Level::Dane, DaneState::Insecure) => DaneDecision::Proceed(Level::May),
            (Level::Dane | Level::DaneOnly, DaneState::Failed) => DaneDecision::Defer(
                "DNSSEC validation of the MX or TLSA records failed (SERVFAIL or bogus)",
            ),
            (Level::DaneOnly, DaneState::SecureUnusable) => {
                DaneDecision::Defer("dane-only: TLSA records exist but none is usable")
            }
            (Level::DaneOnly, DaneState::Insecure) => {
                DaneDecision::Defer("dane-only: no DNSSEC-validated TLSA records for the MX host")
            }
            (level, _) => DaneDecision::Proceed(level),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What DNS said about the MX host's TLSA records, as the resolver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaneState {
    /// The MX host name and its TLSA RRset are DNSSEC-validated (AD bit) and at least
    /// one record is usable (known usage, selector and matching type). The caller
    /// keeps the records; this module only needs to know they exist.
    Secure,
    /// Validated TLSA records exist, but none is usable (RFC 7672: TLS still
    /// mandatory, no authentication).
    SecureUnusable,
    /// No DNSSEC: the MX or TLSA answer is unsigned, or a validated denial says there
    /// are no TLSA records. DANE is not in force.
    Insecure,
    /// The DNSSEC lookup failed (SERVFAIL, bogus, timeout): the state is unknown and
    /// plaintext could be an attack, so delivery waits.
    Failed,
}

/// The outcome of [`Level::effective_for_dane`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaneDecision {
    /// Connect and enforce this level.
    Proceed(Level),
    /// Do not connect; defer the message (4.7.5) with this reason.
    Defer(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_order_and_predicates() {
        let expect = [
            // name, requires_tls, must_match, must_verify_chain
            ("none", false, false, false),
            ("may", false, false, false),
            ("encrypt", true, false, false),
            ("fingerprint", true, true, false),
            ("dane", true, true, false),
            ("dane-only", true, true, false),
            ("verify", true, true, true),
            ("secure", true, true, true),
        ];
        for (i, (name, tls, matches, pkix)) in expect.into_iter().enumerate() {
            let l = Level::parse(name).unwrap();
            assert_eq!(l, Level::ALL[i]);
            assert_eq!(l.name(), name);
            assert_eq!(Level::parse(&name.to_uppercase()), Some(l));
            assert_eq!(l.requires_tls(), tls, "{name}");
            assert_eq!(l.must_match(), matches, "{name}");
            assert_eq!(l.must_verify_chain(), pkix, "{name}");
        }
        assert!(Level::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Level::parse("dane_only"), None);
        assert_eq!(Level::parse(""), None);
        assert_eq!(Level::parse("must"), None);
    }

    #[test]
    fn dane_state_decides_the_effective_level() {
        use DaneDecision::{Defer, Proceed};
        use DaneState::*;
        let d = Level::Dane;
        assert_eq!(d.effective_for_dane(Secure), Proceed(Level::Dane));
        assert_eq!(
            d.effective_for_dane(SecureUnusable),
            Proceed(Level::Encrypt)
        );
        assert_eq!(d.effective_for_dane(Insecure), Proceed(Level::May));
        assert!(matches!(d.effective_for_dane(Failed), Defer(_)));
        let o = Level::DaneOnly;
        assert_eq!(o.effective_for_dane(Secure), Proceed(Level::Dane));
        for s in [SecureUnusable, Insecure, Failed] {
            assert!(matches!(o.effective_for_dane(s), Defer(_)), "{s:?}");
        }
        for l in Level::ALL.into_iter().filter(|l| !l.uses_dane()) {
            for s in [Secure, SecureUnusable, Insecure, Failed] {
                assert_eq!(l.effective_for_dane(s), Proceed(l));
            }
        }
    }
}
