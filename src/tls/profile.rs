//! The compiled cipher profile: which TLS versions, cipher suites, key
//! exchange groups and DH parameters tinymta offers, chosen at compile time by
//! exactly one of the cargo features `profile-strict`, `profile-medium`
//! (default) and `profile-compat`.
//!
//! The suite lists are the Libraesva ESG "Strict", "Medium" and "High
//! Compatibility" lists, per protocol and in server preference order, kept
//! here by IANA name. This module owns the one IANA -> OpenSSL name table,
//! applies the profile to OpenSSL contexts (server and client side), and
//! finds out which listed suites the linked OpenSSL cannot offer, so that
//! none is ever dropped silently: start-up logs them and `tinymta tls-info`
//! prints them next to the effective per-protocol lists.
//!
//! The effective lists are not derived from our own tables: they are read
//! back from a ClientHello that OpenSSL builds with the profile for each
//! version, so they are what OpenSSL really puts on the wire.
//!
//! A destination may narrow the profile for the client side, never widen it:
//! the `protocols=` bounds ([`Protocols`]), the `ciphers=` grade ([`Grade`]) and
//! the cipher strings built from them and `exclude=` live here, next to the
//! lists they cut from. Which destination asks for what is the outbound policy
//! table's business.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use openssl::dh::Dh;
use openssl::error::ErrorStack;
use openssl::provider::Provider;
use openssl::ssl::{
    ClientHelloResponse, HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions,
    SslVersion,
};

use super::level::Level;

use crate::text::Joined;

/// How many profile features are on; exactly one must be (checked at compile time).
const PROFILES_ENABLED: usize = cfg!(feature = "profile-strict") as usize
    + cfg!(feature = "profile-medium") as usize
    + cfg!(feature = "profile-compat") as usize;
const _: () = assert!(
    PROFILES_ENABLED == 1,
    "enable exactly one cipher profile feature: profile-strict, profile-medium (default) or \
     profile-compat (use --no-default-features with strict or compat)"
);

/// A TLS protocol version a profile may enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tls13,
    Tls12,
    Tls11,
    Tls10,
}

impl Protocol {
    /// Every version tinymta knows, highest first (SSLv2/SSLv3 never).
    pub const ALL: [Protocol; 4] = [
        Protocol::Tls13,
        Protocol::Tls12,
        Protocol::Tls11,
        Protocol::Tls10,
    ];

    /// The OpenSSL constant for this version.
    pub fn ssl_version(self) -> SslVersion {
        match self {
            Protocol::Tls13 => SslVersion::TLS1_3,
            Protocol::Tls12 => SslVersion::TLS1_2,
            Protocol::Tls11 => SslVersion::TLS1_1,
            Protocol::Tls10 => SslVersion::TLS1,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tls13 => "TLSv1.3",
            Protocol::Tls12 => "TLSv1.2",
            Protocol::Tls11 => "TLSv1.1",
            Protocol::Tls10 => "TLSv1.0",
        })
    }
}

/// A TLS version bound or exclusion as written in `protocols=`: SSL versions are
/// accepted for Postfix compatibility but never enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtoName {
    Ssl,
    Tls(Protocol),
}

impl ProtoName {
    fn parse(s: &str) -> Option<ProtoName> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sslv2" | "sslv3" => ProtoName::Ssl,
            "tlsv1" | "tlsv1.0" => ProtoName::Tls(Protocol::Tls10),
            "tlsv1.1" => ProtoName::Tls(Protocol::Tls11),
            "tlsv1.2" => ProtoName::Tls(Protocol::Tls12),
            "tlsv1.3" => ProtoName::Tls(Protocol::Tls13),
            _ => return None,
        })
    }
}

/// Position of a version in age order (`Protocol` itself has no order: the profile
/// lists versions highest first, which would invert every comparison here).
fn rank(p: Protocol) -> u8 {
    match p {
        Protocol::Tls10 => 0,
        Protocol::Tls11 => 1,
        Protocol::Tls12 => 2,
        Protocol::Tls13 => 3,
    }
}

/// The `protocols=` attribute: bounds and exclusions on top of the compiled profile.
/// The default (no attribute) restricts nothing: the profile's own versions apply.
/// Fields are private so every value went through [`Protocols::parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protocols {
    /// `>=TLSvX` (Postfix 3.6+).
    min: Option<Protocol>,
    /// `<=TLSvX` (Postfix 3.6+).
    max: Option<Protocol>,
    /// `!TLSvX`, plus every TLS version not named when the inclusion form
    /// (`TLSv1.2:TLSv1.3`) is used.
    excluded: Vec<Protocol>,
}

impl Protocols {
    /// Parses Postfix syntax: items separated by `:` (or `,`/spaces outside a policy
    /// table), each `!NAME` (exclude), `NAME` (include only the named ones), `>=NAME`
    /// or `<=NAME`. Names: SSLv2, SSLv3, TLSv1 (or TLSv1.0), TLSv1.1, TLSv1.2, TLSv1.3,
    /// case-insensitive. An empty value restricts nothing, as in Postfix.
    pub fn parse(value: &str) -> Result<Protocols, String> {
        let mut out = Protocols::default();
        let mut included: Option<Vec<Protocol>> = None;
        let items = value
            .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty());
        for item in items {
            let (op, name) = if let Some(n) = item.strip_prefix(">=") {
                (">=", n)
            } else if let Some(n) = item.strip_prefix("<=") {
                ("<=", n)
            } else if let Some(n) = item.strip_prefix('!') {
                ("!", n)
            } else {
                ("", item)
            };
            let Some(proto) = ProtoName::parse(name) else {
                return Err(format!(
                    "unknown protocol '{name}' in protocols={value}; use SSLv2, SSLv3, \
                     TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3, each optionally prefixed by !, >= \
                     or <="
                ));
            };
            match (op, proto) {
                (">=", _) if out.min.is_some() => {
                    return Err(format!(
                        "protocols={value} has more than one '>=' bound; keep one"
                    ));
                }
                ("<=", _) if out.max.is_some() => {
                    return Err(format!(
                        "protocols={value} has more than one '<=' bound; keep one"
                    ));
                }
                // Every TLS version is above SSL: no bound at all.
                (">=", ProtoName::Ssl) => out.min = Some(Protocol::Tls10),
                (">=", ProtoName::Tls(p)) => out.min = Some(p),
                ("<=", ProtoName::Ssl) => {
                    return Err(format!(
                        "protocols={value}: '{item}' leaves no TLS version (tinymta never \
                         enables SSLv2 or SSLv3); use e.g. <=TLSv1.2"
                    ));
                }
                ("<=", ProtoName::Tls(p)) => out.max = Some(p),
                ("!", ProtoName::Ssl) => {}
                ("!", ProtoName::Tls(p)) => {
                    if !out.excluded.contains(&p) {
                        out.excluded.push(p);
                    }
                }
                (_, proto) => {
                    let inc = included.get_or_insert_with(Vec::new);
                    if let ProtoName::Tls(p) = proto {
                        inc.push(p);
                    }
                }
            }
        }
        // Postfix: naming versions enables those and disables every other one.
        if let Some(inc) = included {
            for p in Protocol::ALL {
                if !inc.contains(&p) && !out.excluded.contains(&p) {
                    out.excluded.push(p);
                }
            }
        }
        Ok(out)
    }

    /// The `>=` bound, if any.
    #[cfg(test)]
    pub fn min(&self) -> Option<Protocol> {
        self.min
    }

    /// The `<=` bound, if any.
    #[cfg(test)]
    pub fn max(&self) -> Option<Protocol> {
        self.max
    }

    /// Versions excluded by `!NAME` or by the inclusion form. Those inside the
    /// profile's range are already cut out of [`Protocols::range`]; setting the
    /// matching `NO_TLSv1_x` options as well is harmless.
    pub fn excluded(&self) -> &[Protocol] {
        &self.excluded
    }

    /// The (min, max) versions to set on a client context under the active profile.
    /// Table entries with an empty range are refused when the table is parsed, so
    /// falling back to the profile's own range is only a formality.
    pub fn range(&self) -> (Protocol, Protocol) {
        let p = active();
        self.effective(p.protocols)
            .unwrap_or((p.lowest(), p.highest()))
    }

    /// Whether `p` passes the bounds and exclusions (before the profile is applied).
    fn allows(&self, p: Protocol) -> bool {
        self.min.is_none_or(|m| rank(p) >= rank(m))
            && self.max.is_none_or(|m| rank(p) <= rank(m))
            && !self.excluded.contains(&p)
    }

    /// The (lowest, highest) versions to set on the context, within `supported` (a
    /// profile's versions), or `None` when nothing is left. OpenSSL only has a min and
    /// a max, so a hole (e.g. `!TLSv1.1` with TLS 1.0 enabled) keeps the highest
    /// contiguous run: versions below the hole are dropped, never the ones above.
    pub fn effective(&self, supported: &[Protocol]) -> Option<(Protocol, Protocol)> {
        let mut enabled: Vec<Protocol> = supported
            .iter()
            .copied()
            .filter(|p| self.allows(*p))
            .collect();
        enabled.sort_by_key(|p| std::cmp::Reverse(rank(*p)));
        enabled.dedup();
        let max = *enabled.first()?;
        let mut min = max;
        for p in &enabled[1..] {
            if rank(*p) + 1 != rank(min) {
                break;
            }
            min = *p;
        }
        Some((min, max))
    }
}

/// The `ciphers=` grade, as Postfix's `high`/`medium`/`low` cipher lists. `export`
/// and `null` exist in Postfix but are refused: they are never acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grade {
    High,
    Medium,
    Low,
}

impl Grade {
    /// The grade named in `ciphers=`, or why it is refused.
    pub fn parse(s: &str) -> Result<Grade, String> {
        match s.to_ascii_lowercase().as_str() {
            "high" => Ok(Grade::High),
            "medium" => Ok(Grade::Medium),
            "low" => Ok(Grade::Low),
            "export" | "null" => Err(format!(
                "ciphers={s} is refused: export and null grades offer no real protection; \
                 use ciphers=medium or ciphers=high"
            )),
            "" => Err("ciphers= has an empty value; use high, medium or low".to_string()),
            _ => Err(format!(
                "unknown cipher grade ciphers={s}; use high, medium or low"
            )),
        }
    }

    /// The name used in tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Grade::High => "high",
            Grade::Medium => "medium",
            Grade::Low => "low",
        }
    }

    /// OpenSSL exclusions that narrow a list to this grade. OpenSSL's own
    /// classification decides (3DES and SEED are MEDIUM since OpenSSL 1.1.0): no
    /// second table here to drift from it.
    fn exclusions(self) -> &'static [&'static str] {
        match self {
            Grade::High => &["!MEDIUM", "!LOW"],
            Grade::Medium => &["!LOW"],
            // Everything a profile lists is at least LOW.
            Grade::Low => &[],
        }
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One cipher profile: protocols and per-protocol suite lists (IANA names,
/// server preference order) plus the policy bits that go with them.
#[derive(Debug)]
pub struct Profile {
    /// Short name, as in the cargo feature: "strict", "medium" or "compat".
    pub name: &'static str,
    /// Human title, as in the Libraesva manual.
    pub title: &'static str,
    /// Enabled versions, highest first, without gaps.
    pub protocols: &'static [Protocol],
    pub tls13: &'static [&'static str],
    pub tls12: &'static [&'static str],
    /// Empty unless the profile enables TLS 1.1.
    pub tls11: &'static [&'static str],
    /// Empty unless the profile enables TLS 1.0.
    pub tls10: &'static [&'static str],
    /// Whether (secure) TLS <= 1.2 renegotiation stays possible.
    pub renegotiation: bool,
    /// Whether SMTP AUTH is offered only after STARTTLS / on implicit TLS.
    pub auth_requires_tls: bool,
}

impl Profile {
    /// The listed suites for one version (empty when the profile disables it).
    pub fn suites(&self, protocol: Protocol) -> &'static [&'static str] {
        if !self.protocols.contains(&protocol) {
            return &[];
        }
        match protocol {
            Protocol::Tls13 => self.tls13,
            Protocol::Tls12 => self.tls12,
            Protocol::Tls11 => self.tls11,
            Protocol::Tls10 => self.tls10,
        }
    }

    /// Highest enabled version.
    pub fn highest(&self) -> Protocol {
        self.protocols.first().copied().unwrap_or(Protocol::Tls13)
    }

    /// Lowest enabled version.
    pub fn lowest(&self) -> Protocol {
        self.protocols.last().copied().unwrap_or(Protocol::Tls13)
    }

    /// OpenSSL security level the profile runs at. OpenSSL 3 rates the
    /// MD5/SHA1 handshake signatures of TLS 1.0/1.1 below level 1, so those
    /// versions need level 0; otherwise level 2 (112 bits: RSA/DH >= 2048,
    /// which every listed suite meets, 3DES included). Set explicitly so the
    /// system openssl.cnf cannot change what the profile offers.
    pub fn security_level(&self) -> u32 {
        if self.protocols.contains(&Protocol::Tls10) || self.protocols.contains(&Protocol::Tls11) {
            0
        } else {
            2
        }
    }

    /// Whether any listed suite needs OpenSSL 3's legacy provider (SEED).
    fn needs_legacy(&self) -> bool {
        Protocol::ALL
            .iter()
            .flat_map(|p| self.suites(*p))
            .any(|s| s.contains("_SEED_"))
    }
}

/// TLS 1.3 suites, identical in all profiles. CCM must be listed explicitly:
/// OpenSSL's default TLS 1.3 list leaves it out.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_128_CCM_SHA256",
];

/// "Strict (PCI DSS)" TLS 1.2: AES/CHACHA20/ARIA only.
const STRICT_TLS12: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    "TLS_DHE_RSA_WITH_AES_256_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CCM_8",
    "TLS_RSA_WITH_AES_256_CCM",
    "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    "TLS_DHE_RSA_WITH_AES_128_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CCM_8",
    "TLS_RSA_WITH_AES_128_CCM",
    "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
];

/// "Medium" TLS 1.2, also the "High Compatibility" TLS 1.2 list (the manual
/// prints the same 49 suites for both): Strict plus CAMELLIA, SEED and 3DES.
const MEDIUM_TLS12: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    "TLS_DHE_RSA_WITH_AES_256_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CCM_8",
    "TLS_RSA_WITH_AES_256_CCM",
    "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    "TLS_DHE_RSA_WITH_AES_128_CCM",
    "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CCM_8",
    "TLS_RSA_WITH_AES_128_CCM",
    "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// "High Compatibility" TLS 1.1: the SHA-1 CBC suites of the 1.2 list, plus
/// IDEA (which the manual lists for 1.1/1.0 only).
const COMPAT_TLS11: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_IDEA_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// "High Compatibility" TLS 1.0: as printed in the manual, the 1.1 list
/// without TLS_RSA_WITH_3DES_EDE_CBC_SHA. OpenSSL has one cipher list for
/// all versions, so should that suite ever be available it would be offered
/// on TLS 1.0 too; `report()` then shows it as offered but not listed.
const COMPAT_TLS10: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_SEED_CBC_SHA",
    "TLS_RSA_WITH_IDEA_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// All three profiles; the build picks one (see `ACTIVE`). Kept together so
/// the tests can check every profile whatever feature is enabled.
static PROFILES: [Profile; 3] = [
    Profile {
        name: "strict",
        title: "Strict (PCI DSS)",
        protocols: &[Protocol::Tls13, Protocol::Tls12],
        tls13: TLS13_SUITES,
        tls12: STRICT_TLS12,
        tls11: &[],
        tls10: &[],
        renegotiation: false,
        auth_requires_tls: true,
    },
    Profile {
        name: "medium",
        title: "Medium",
        protocols: &[Protocol::Tls13, Protocol::Tls12],
        tls13: TLS13_SUITES,
        tls12: MEDIUM_TLS12,
        tls11: &[],
        tls10: &[],
        renegotiation: true,
        auth_requires_tls: true,
    },
    Profile {
        name: "compat",
        title: "High Compatibility",
        protocols: &[
            Protocol::Tls13,
            Protocol::Tls12,
            Protocol::Tls11,
            Protocol::Tls10,
        ],
        tls13: TLS13_SUITES,
        tls12: MEDIUM_TLS12,
        tls11: COMPAT_TLS11,
        tls10: COMPAT_TLS10,
        renegotiation: true,
        auth_requires_tls: false,
    },
];

/// Index of the compiled profile in `PROFILES` (the assertion above guarantees one).
const ACTIVE: usize = if cfg!(feature = "profile-strict") {
    0
} else if cfg!(feature = "profile-compat") {
    2
} else {
    1
};

/// The profile this binary was built with.
pub fn active() -> &'static Profile {
    &PROFILES[ACTIVE]
}

/// The one IANA -> OpenSSL name table, covering every suite of every list.
/// 3DES and IDEA keep their historical OpenSSL names although OpenSSL 3
/// builds do not know them (3DES needs `enable-weak-ssl-ciphers`, IDEA
/// suites are gone since 1.1.0): the name test then reports them.
#[rustfmt::skip]
const NAMES: &[(&str, &str)] = &[
    // TLS 1.3: OpenSSL uses the IANA names.
    ("TLS_AES_256_GCM_SHA384",                      "TLS_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256",                "TLS_CHACHA20_POLY1305_SHA256"),
    ("TLS_AES_128_GCM_SHA256",                      "TLS_AES_128_GCM_SHA256"),
    ("TLS_AES_128_CCM_SHA256",                      "TLS_AES_128_CCM_SHA256"),
    // ECDHE-RSA
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",       "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",       "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",      "ECDHE-ARIA256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",      "ECDHE-ARIA128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",       "ECDHE-RSA-AES256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",       "ECDHE-RSA-AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",  "ECDHE-RSA-CAMELLIA256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",  "ECDHE-RSA-CAMELLIA128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",          "ECDHE-RSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",          "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",         "ECDHE-RSA-DES-CBC3-SHA"),
    // DHE-RSA
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",         "DHE-RSA-AES256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",         "DHE-RSA-AES128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",   "DHE-RSA-CHACHA20-POLY1305"),
    ("TLS_DHE_RSA_WITH_AES_256_CCM_8",              "DHE-RSA-AES256-CCM8"),
    ("TLS_DHE_RSA_WITH_AES_256_CCM",                "DHE-RSA-AES256-CCM"),
    ("TLS_DHE_RSA_WITH_AES_128_CCM_8",              "DHE-RSA-AES128-CCM8"),
    ("TLS_DHE_RSA_WITH_AES_128_CCM",                "DHE-RSA-AES128-CCM"),
    ("TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",        "DHE-RSA-ARIA256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",        "DHE-RSA-ARIA128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",         "DHE-RSA-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",         "DHE-RSA-AES128-SHA256"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",    "DHE-RSA-CAMELLIA256-SHA256"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",    "DHE-RSA-CAMELLIA128-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA",            "DHE-RSA-AES256-SHA"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA",            "DHE-RSA-AES128-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",       "DHE-RSA-CAMELLIA256-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",       "DHE-RSA-CAMELLIA128-SHA"),
    ("TLS_DHE_RSA_WITH_SEED_CBC_SHA",               "DHE-RSA-SEED-SHA"),
    ("TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",           "DHE-RSA-DES-CBC3-SHA"),
    // RSA key exchange
    ("TLS_RSA_WITH_AES_256_GCM_SHA384",             "AES256-GCM-SHA384"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256",             "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_AES_256_CCM_8",                  "AES256-CCM8"),
    ("TLS_RSA_WITH_AES_256_CCM",                    "AES256-CCM"),
    ("TLS_RSA_WITH_AES_128_CCM_8",                  "AES128-CCM8"),
    ("TLS_RSA_WITH_AES_128_CCM",                    "AES128-CCM"),
    ("TLS_RSA_WITH_ARIA_256_GCM_SHA384",            "ARIA256-GCM-SHA384"),
    ("TLS_RSA_WITH_ARIA_128_GCM_SHA256",            "ARIA128-GCM-SHA256"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA256",             "AES256-SHA256"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256",             "AES128-SHA256"),
    ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",        "CAMELLIA256-SHA256"),
    ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",        "CAMELLIA128-SHA256"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA",                "AES256-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA",                "AES128-SHA"),
    ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",           "CAMELLIA256-SHA"),
    ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",           "CAMELLIA128-SHA"),
    ("TLS_RSA_WITH_SEED_CBC_SHA",                   "SEED-SHA"),
    ("TLS_RSA_WITH_IDEA_CBC_SHA",                   "IDEA-CBC-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA",               "DES-CBC3-SHA"),
];

/// OpenSSL's name for an IANA suite name listed by any profile.
pub fn openssl_name(iana: &str) -> Option<&'static str> {
    NAMES.iter().find(|(i, _)| *i == iana).map(|(_, o)| *o)
}

/// Key exchange groups, in preference order (TLS 1.3 key shares and
/// TLS 1.2 ECDHE).
const GROUPS: &str = "X25519:P-256";

/// RFC 7919 ffdhe2048, the standard PKCS#3 encoding (same bytes as
/// `openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048`).
/// Fixed, well-known parameters: nothing to generate on a slow router, and
/// OpenSSL 3.0 does not use negotiated FFDHE groups for TLS 1.2 DHE.
const FFDHE2048_PEM: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// OpenSSL 3 `SSL_OP_ALLOW_CLIENT_RENEGOTIATION`, missing from the openssl
/// crate. Client-initiated renegotiation is a cheap CPU DoS on a router and
/// is off by default in OpenSSL 3; we clear it in case openssl.cnf set it.
const ALLOW_CLIENT_RENEGOTIATION: u64 = 1 << 8;

/// The legacy provider, loaded once and never unloaded: every SSL_CTX
/// created afterwards can fetch SEED from it. `None` when it cannot load.
static LEGACY: OnceLock<Option<(Provider, Provider)>> = OnceLock::new();

/// Loads the legacy provider on first use, with the default provider loaded
/// explicitly first; returns whether both are loaded. Loading only the legacy one
/// leaves it without a random generator: SEED handshakes then complete, but every
/// record without Encrypt-then-MAC fails to decrypt ("unable to fetch drbg"), which
/// is what old peers, the ones SEED is for, send.
fn legacy_provider() -> bool {
    LEGACY
        .get_or_init(|| {
            let default = Provider::load(None, "default").ok()?;
            let legacy = Provider::try_load(None, "legacy", true).ok()?;
            Some((default, legacy))
        })
        .is_some()
}

/// Set when a context was created before the legacy provider was loaded:
/// such a context cannot offer SEED, whatever its cipher string says.
static EARLY_CONTEXT: AtomicBool = AtomicBool::new(false);

/// State of the legacy provider for one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Legacy {
    NotNeeded,
    Loaded,
    Missing,
}

/// What a profile turns into for the linked OpenSSL; computed once.
#[derive(Debug)]
struct Plan {
    /// TLS <= 1.2 cipher string in server order, with the security level.
    cipher_list: String,
    /// TLS 1.3 suites for `set_ciphersuites`.
    ciphersuites: String,
    /// Listed suites (IANA) OpenSSL rejected by name.
    refused: Vec<&'static str>,
    legacy: Legacy,
}

/// Cache slot of a profile (per profile, so tests can use all three).
fn slot(p: &Profile) -> usize {
    PROFILES
        .iter()
        .position(|q| q.name == p.name)
        .unwrap_or(ACTIVE)
}

static PLANS: [OnceLock<Plan>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];

fn plan(p: &Profile) -> &'static Plan {
    PLANS[slot(p)].get_or_init(|| make_plan(p))
}

fn make_plan(p: &Profile) -> Plan {
    // First: each SSL_CTX fetches its ciphers once, when it is created.
    let legacy = if !p.needs_legacy() {
        Legacy::NotNeeded
    } else if legacy_provider() {
        Legacy::Loaded
    } else {
        Legacy::Missing
    };
    let mut refused = Vec::new();
    let mut usable = |proto: Protocol, iana: &'static str| -> Option<&'static str> {
        if refused.contains(&iana) {
            return None;
        }
        let name = openssl_name(iana).filter(|n| accepts_name(p, proto, n));
        if name.is_none() {
            refused.push(iana);
        }
        name
    };
    let tls12: Vec<&str> = server_order(p)
        .into_iter()
        .filter_map(|s| usable(Protocol::Tls12, s))
        .collect();
    let tls13: Vec<&str> = p
        .suites(Protocol::Tls13)
        .iter()
        .filter_map(|s| usable(Protocol::Tls13, s))
        .collect();
    let mut cipher_list = tls12.joined(":");
    if !cipher_list.is_empty() {
        cipher_list.push(':');
    }
    // In the string too, so it reads complete in logs and tls-info.
    cipher_list.push_str(&format!("@SECLEVEL={}", p.security_level()));
    Plan {
        cipher_list,
        ciphersuites: tls13.joined(":"),
        refused,
        legacy,
    }
}

/// Whether OpenSSL takes one suite name on a throwaway context at the
/// profile's security level. For TLS 1.3 OpenSSL ignores unknown names
/// instead of failing; the ClientHello probe catches those.
fn accepts_name(p: &Profile, proto: Protocol, name: &str) -> bool {
    let Ok(mut b) = SslContext::builder(SslMethod::tls()) else {
        return false;
    };
    b.set_security_level(p.security_level());
    if proto == Protocol::Tls13 {
        b.set_ciphersuites(name).is_ok()
    } else {
        b.set_cipher_list(name).is_ok()
    }
}

/// TLS <= 1.2 suites of all versions merged into one server order: the 1.2
/// list, with suites listed only for 1.1/1.0 (IDEA) inserted after their
/// predecessor there, so each per-version list stays a subsequence.
fn server_order(p: &Profile) -> Vec<&'static str> {
    let mut order: Vec<&'static str> = p.suites(Protocol::Tls12).to_vec();
    for list in [p.suites(Protocol::Tls11), p.suites(Protocol::Tls10)] {
        for (i, s) in list.iter().enumerate() {
            if order.contains(s) {
                continue;
            }
            let after = i
                .checked_sub(1)
                .and_then(|j| list.get(j))
                .and_then(|prev| order.iter().position(|x| x == prev))
                .map_or(0, |k| k + 1);
            order.insert(after, s);
        }
    }
    order
}

/// Settings shared by both sides.
fn apply_common(p: &Profile, b: &mut SslContextBuilder) -> Result<&'static Plan, ErrorStack> {
    let plan = plan(p);
    if plan.legacy == Legacy::Loaded && !builder_has_seed(p, plan, b) {
        EARLY_CONTEXT.store(true, Ordering::Relaxed);
        log::warn!(
            "SSL context created before the legacy provider was loaded: it cannot offer SEED; \
             call tls::profile::availability() before creating SSL contexts"
        );
    }
    b.set_security_level(p.security_level());
    // Versions come from min/max only; e.g. SslAcceptor's presets set NO_TLSV1.
    b.clear_options(
        SslOptions::NO_TLSV1
            | SslOptions::NO_TLSV1_1
            | SslOptions::NO_TLSV1_2
            | SslOptions::NO_TLSV1_3,
    );
    b.set_min_proto_version(Some(p.lowest().ssl_version()))?;
    b.set_max_proto_version(Some(p.highest().ssl_version()))?;
    b.set_cipher_list(&plan.cipher_list)?;
    b.set_ciphersuites(&plan.ciphersuites)?;
    b.set_groups_list(GROUPS)?;
    b.set_options(SslOptions::NO_COMPRESSION | SslOptions::NO_SSLV2 | SslOptions::NO_SSLV3);
    if p.renegotiation {
        b.clear_options(SslOptions::NO_RENEGOTIATION);
    } else {
        b.set_options(SslOptions::NO_RENEGOTIATION);
    }
    Ok(plan)
}

/// Whether this very context can use SEED (it fetched its ciphers when it
/// was created, maybe before the legacy provider was loaded). The probe
/// name is overwritten by the real cipher list right after.
fn builder_has_seed(p: &Profile, plan: &Plan, b: &mut SslContextBuilder) -> bool {
    server_order(p)
        .into_iter()
        .filter(|s| s.contains("_SEED_") && !plan.refused.contains(s))
        .find_map(openssl_name)
        .is_none_or(|name| b.set_cipher_list(name).is_ok())
}

/// Listed suites not offered, in list order: what the probe found, plus
/// SEED when some context of this process cannot offer it.
fn unavailable_now(p: &Profile) -> Vec<(Protocol, &'static str)> {
    let probe = probe(p);
    let early = EARLY_CONTEXT.load(Ordering::Relaxed);
    let mut v = Vec::new();
    for &protocol in p.protocols {
        for &s in p.suites(protocol) {
            if probe.unavailable.contains(&(protocol, s)) || (early && s.contains("_SEED_")) {
                v.push((protocol, s));
            }
        }
    }
    v
}

fn apply_server_to(p: &Profile, b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    apply_common(p, b)?;
    // The seed's order is the server's preference, CHACHA20 included.
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    b.clear_options(SslOptions::PRIORITIZE_CHACHA);
    if openssl::version::number() >= 0x3000_0000 {
        b.clear_options(SslOptions::from_bits_retain(ALLOW_CLIENT_RENEGOTIATION));
    }
    let dh = Dh::params_from_pem(FFDHE2048_PEM.as_bytes())?;
    b.set_tmp_dh(&dh)?;
    Ok(())
}

fn apply_client_to(p: &Profile, b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    apply_common(p, b).map(|_| ())
}

/// Applies the active profile to a server (inbound) context: versions,
/// suites in server preference, groups, ffdhe2048, no compression, no
/// renegotiation where the profile says so. Call [`availability`] (start-up
/// does) before creating the builder, so SEED can be fetched when listed.
pub fn apply_server(b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    apply_server_to(active(), b)
}

/// Applies the active profile to a client (outbound) context: the whole
/// profile, since for opportunistic TLS bad encryption beats plaintext.
/// Same ordering caveat as [`apply_server`].
pub fn apply_client(b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    apply_client_to(active(), b)
}

/// A new server context builder with the profile applied, created after
/// the providers the profile needs are loaded.
pub fn server_builder() -> Result<SslContextBuilder, ErrorStack> {
    plan(active());
    let mut b = SslContext::builder(SslMethod::tls_server())?;
    apply_server(&mut b)?;
    Ok(b)
}

/// A new client context builder with the profile applied, created after
/// the providers the profile needs are loaded.
pub fn client_builder() -> Result<SslContextBuilder, ErrorStack> {
    plan(active());
    let mut b = SslContext::builder(SslMethod::tls_client())?;
    apply_client(&mut b)?;
    Ok(b)
}

/// The client's TLS <= 1.2 cipher string for a destination's level, `ciphers=` grade
/// and `exclude=` list (for `set_cipher_list`):
/// every suite the active profile lists for TLS 1.2/1.1/1.0, in profile order, then
/// the grade's exclusions (`!MEDIUM:!LOW` for high), `!X` for each `exclude=` item,
/// `!eNULL` from encrypt up and `!aNULL` from fingerprint up (as Postfix), and the
/// profile's `@SECLEVEL`. With no `ciphers=`/`exclude=` this is the whole profile at
/// every level: for opportunistic TLS weak encryption beats plaintext, and for
/// mandatory levels the profile already is the administrator's choice.
///
/// Names this OpenSSL does not know (3DES or IDEA on OpenSSL 3) are skipped by
/// OpenSSL inside a list; table parsing checked that something remains.
pub fn client_cipher_string(level: Level, grade: Option<Grade>, exclude: &[String]) -> String {
    client_cipher_string_for(active(), level, grade, exclude)
}

fn client_cipher_string_for(
    p: &Profile,
    level: Level,
    grade: Option<Grade>,
    exclude: &[String],
) -> String {
    let mut items: Vec<String> = Vec::new();
    for proto in [Protocol::Tls12, Protocol::Tls11, Protocol::Tls10] {
        for name in p.suites(proto).iter().filter_map(|s| openssl_name(s)) {
            if !items.iter().any(|i| i == name) {
                items.push(name.to_string());
            }
        }
    }
    if let Some(g) = grade {
        items.extend(g.exclusions().iter().map(|s| s.to_string()));
    }
    items.extend(exclude.iter().map(|x| format!("!{x}")));
    if level >= Level::Encrypt {
        items.push("!eNULL".to_string());
    }
    if level.must_match() {
        items.push("!aNULL".to_string());
    }
    items.push(format!("@SECLEVEL={}", p.security_level()));
    items.joined(":")
}

/// The client's TLS 1.3 suites (for `set_ciphersuites`): the profile's list minus
/// `exclude=` items that name a TLS 1.3 suite exactly. OpenSSL configures TLS 1.3
/// separately and its cipher-string families (`AES128`, `MEDIUM`) do not apply
/// there; every TLS 1.3 suite is high grade anyway. An empty result disables TLS 1.3.
pub fn client_ciphersuites(exclude: &[String]) -> String {
    active()
        .suites(Protocol::Tls13)
        .iter()
        .filter(|s| !exclude.iter().any(|x| x.eq_ignore_ascii_case(s)))
        .copied()
        .collect::<Vec<_>>()
        .joined(":")
}

/// Listed suites the linked OpenSSL cannot offer, per version, in list order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// (version, IANA name) of each listed suite missing on the wire.
    pub unavailable: Vec<(Protocol, &'static str)>,
}

/// A suite as OpenSSL offers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offered {
    openssl: &'static str,
    iana: &'static str,
}

/// What OpenSSL offers for one enabled version.
#[derive(Debug)]
struct VersionProbe {
    protocol: Protocol,
    /// In server preference order.
    offered: Vec<Offered>,
    /// Why nothing could be offered, if the ClientHello failed.
    failure: Option<String>,
}

/// The profile measured against the linked OpenSSL; computed once.
#[derive(Debug)]
struct Probe {
    versions: Vec<VersionProbe>,
    unavailable: Vec<(Protocol, &'static str)>,
    /// Offered although the profile does not list it for that version.
    unlisted: Vec<(Protocol, Offered)>,
}

static PROBES: [OnceLock<Probe>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];

fn probe(p: &Profile) -> &'static Probe {
    PROBES[slot(p)].get_or_init(|| make_probe(p))
}

fn make_probe(p: &Profile) -> Probe {
    // Loads the legacy provider before the probe creates contexts.
    plan(p);
    let mut versions = Vec::new();
    let mut unavailable = Vec::new();
    let mut unlisted = Vec::new();
    for &protocol in p.protocols {
        let (offered, failure) = match client_hello_suites(p, protocol) {
            Ok(list) => (list, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let listed = p.suites(protocol);
        for &s in listed {
            if !offered.iter().any(|o| o.iana == s) {
                unavailable.push((protocol, s));
            }
        }
        for o in &offered {
            if !listed.contains(&o.iana) {
                unlisted.push((protocol, *o));
            }
        }
        versions.push(VersionProbe {
            protocol,
            offered,
            failure,
        });
    }
    Probe {
        versions,
        unavailable,
        unlisted,
    }
}

/// Client side of the probe: keeps what is written, never has data to read,
/// so the handshake stops right after the ClientHello.
#[derive(Debug, Default)]
struct Capture(Vec<u8>);

impl Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Server side of the probe: replays the captured ClientHello, drops writes.
#[derive(Debug)]
struct Replay(io::Cursor<Vec<u8>>);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The suites a client with the profile, pinned to one version, puts in its
/// ClientHello, in order. OpenSSL filters the cipher string by version and
/// security level the same way for both sides, and our server lists them in
/// the same order, so this is the server's effective list for that version:
/// what a scanner finds. No sockets, no keys: two in-memory half handshakes.
fn client_hello_suites(p: &Profile, protocol: Protocol) -> Result<Vec<Offered>, String> {
    let err = |e: ErrorStack| e.to_string();
    let mut cb = SslContext::builder(SslMethod::tls_client()).map_err(err)?;
    apply_client_to(p, &mut cb).map_err(err)?;
    let v = Some(protocol.ssl_version());
    cb.set_min_proto_version(v).map_err(err)?;
    cb.set_max_proto_version(v).map_err(err)?;
    hello_suites(cb)
}

/// The suites a client built from `cb` offers in its ClientHello, in order.
fn hello_suites(cb: SslContextBuilder) -> Result<Vec<Offered>, String> {
    let err = |e: ErrorStack| e.to_string();
    let client = Ssl::new(&cb.build()).map_err(err)?;
    let hello = match client.connect(Capture::default()) {
        Err(HandshakeError::WouldBlock(mid)) => mid.get_ref().0.clone(),
        Err(HandshakeError::Failure(mid)) => return Err(mid.error().to_string()),
        Err(HandshakeError::SetupFailure(e)) => return Err(e.to_string()),
        Ok(_) => return Err("handshake completed without a peer".into()),
    };

    let seen: Arc<Mutex<Option<Vec<Offered>>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let mut sb = SslContext::builder(SslMethod::tls_server()).map_err(err)?;
    sb.set_client_hello_callback(move |ssl, _alert| {
        let suites = ssl
            .client_hello_ciphers()
            .and_then(|bytes| ssl.bytes_to_cipher_list(bytes, false).ok())
            .map(|lists| {
                lists
                    .suites
                    .iter()
                    .map(|c| Offered {
                        openssl: c.name(),
                        iana: c.standard_name().unwrap_or("(no IANA name)"),
                    })
                    .collect()
            });
        if let Ok(mut slot) = sink.lock() {
            *slot = suites;
        }
        // Stop here: the ClientHello is all we wanted.
        Ok(ClientHelloResponse::RETRY)
    });
    let server = Ssl::new(&sb.build()).map_err(err)?;
    // Ends in the callback's RETRY (or an error); the result is in `seen`.
    let _ = server.accept(Replay(io::Cursor::new(hello)));
    let offered = seen.lock().map_err(|_| "probe lock poisoned".to_string())?;
    offered
        .clone()
        .ok_or_else(|| "ClientHello could not be parsed".to_string())
}

/// Which listed suites the linked OpenSSL cannot offer with the active
/// profile. Loads the legacy provider first when the profile lists SEED;
/// call it at start-up, before creating SSL contexts, and log the result.
pub fn availability() -> Availability {
    Availability {
        unavailable: unavailable_now(active()),
    }
}

/// What `tinymta tls-info` prints: the profile, the OpenSSL version, the
/// effective suites per version in server order (OpenSSL and IANA names),
/// then the listed suites that are not offered.
pub fn report() -> String {
    report_for(active())
}

fn report_for(p: &Profile) -> String {
    let plan = plan(p);
    let probe = probe(p);
    let unavailable = unavailable_now(p);
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("Cipher profile: {} ({})", p.title, p.name));
    line(format!("OpenSSL: {}", openssl::version::version()));
    line(format!(
        "Security level: {}; groups: {}; DHE: ffdhe2048 (RFC 7919)",
        p.security_level(),
        GROUPS
    ));
    line(format!(
        "Legacy provider (SEED): {}",
        match plan.legacy {
            Legacy::NotNeeded => "not needed",
            Legacy::Loaded => "loaded",
            Legacy::Missing => "not available",
        }
    ));
    line(format!(
        "Renegotiation: {}; AUTH without TLS: {}",
        if p.renegotiation {
            "RFC 5746 only, never client-initiated"
        } else {
            "disabled"
        },
        if p.auth_requires_tls {
            "refused"
        } else {
            "allowed"
        }
    ));
    line(format!("TLS <= 1.2 cipher string: {}", plan.cipher_list));
    line(format!("TLS 1.3 ciphersuites: {}", plan.ciphersuites));
    for protocol in Protocol::ALL {
        line(String::new());
        let Some(v) = probe.versions.iter().find(|v| v.protocol == protocol) else {
            line(format!("{protocol}: disabled by the profile"));
            continue;
        };
        let offered: Vec<&Offered> = v
            .offered
            .iter()
            .filter(|o| !unavailable.contains(&(protocol, o.iana)))
            .collect();
        line(format!(
            "{protocol}: {} of {} listed suites offered, server order",
            offered.len(),
            p.suites(protocol).len()
        ));
        if let Some(why) = &v.failure {
            line(format!("  (nothing offered: {why})"));
        }
        for (i, o) in offered.iter().enumerate() {
            line(format!("  {:>2}. {:<30} {}", i + 1, o.openssl, o.iana));
        }
    }
    line(String::new());
    if unavailable.is_empty() {
        line("Unavailable: none, every listed suite is offered".to_string());
    } else {
        line("Unavailable (listed by the profile, not offered by this OpenSSL):".to_string());
        for protocol in Protocol::ALL {
            for (_, iana) in unavailable.iter().filter(|(p, _)| *p == protocol) {
                let seed = iana.contains("_SEED_");
                let why = if seed && plan.legacy == Legacy::Missing {
                    "needs the legacy provider"
                } else if seed && EARLY_CONTEXT.load(Ordering::Relaxed) {
                    "SSL context created before the legacy provider"
                } else if plan.refused.contains(iana) {
                    "not in this OpenSSL build"
                } else {
                    "not offered for this version"
                };
                line(format!(
                    "  {protocol}: {:<30} {:<44} {why}",
                    openssl_name(iana).unwrap_or("?"),
                    iana
                ));
            }
        }
    }
    if !probe.unlisted.is_empty() {
        line("Offered but not listed for that version:".to_string());
        for (protocol, o) in &probe.unlisted {
            line(format!("  {protocol}: {:<30} {}", o.openssl, o.iana));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Name, X509};
    use std::collections::HashSet;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn all_listed() -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for p in &PROFILES {
            for proto in Protocol::ALL {
                for s in p.suites(proto) {
                    if !v.contains(s) {
                        v.push(s);
                    }
                }
            }
        }
        v
    }

    fn is_3des_or_idea(s: &str) -> bool {
        s.contains("_3DES_") || s.contains("_IDEA_")
    }

    #[test]
    fn every_listed_name_maps() {
        for s in all_listed() {
            assert!(s.starts_with("TLS_"), "{s}");
            assert!(openssl_name(s).is_some(), "no OpenSSL name for {s}");
        }
        // Every table row is used by some list and appears once.
        let listed = all_listed();
        let mut seen = HashSet::new();
        for (iana, _) in NAMES {
            assert!(listed.contains(iana), "unused table row {iana}");
            assert!(seen.insert(*iana), "duplicate row {iana}");
        }
        for s in TLS13_SUITES {
            assert_eq!(openssl_name(s), Some(*s));
        }
    }

    #[test]
    fn names_agree_with_openssl() {
        // OpenSSL's own mapping, for the suites it knows.
        for (iana, ours) in NAMES {
            let theirs = openssl::ssl::cipher_name(iana);
            if theirs == "(NONE)" {
                assert!(is_3des_or_idea(iana), "OpenSSL does not know {iana}");
            } else {
                assert_eq!(theirs, *ours, "{iana}");
            }
        }
    }

    #[test]
    fn list_lengths_match_the_seed() {
        let [strict, medium, compat] = &PROFILES;
        let counts = |p: &Profile| Protocol::ALL.map(|proto| p.suites(proto).len());
        assert_eq!(counts(strict), [4, 34, 0, 0]);
        assert_eq!(counts(medium), [4, 49, 0, 0]);
        assert_eq!(counts(compat), [4, 49, 16, 15]);
        assert_eq!(compat.tls12, medium.tls12);
        // Strict is Medium without CAMELLIA, SEED and 3DES, same order.
        let cut: Vec<&str> = medium
            .tls12
            .iter()
            .copied()
            .filter(|s| !s.contains("CAMELLIA") && !s.contains("SEED") && !s.contains("3DES"))
            .collect();
        assert_eq!(cut, strict.tls12);
        // 1.1 = the 1.2 suites valid before 1.2 (SHA-1 CBC) + IDEA, same order.
        let old: Vec<&str> = compat
            .tls12
            .iter()
            .copied()
            .filter(|s| s.ends_with("_CBC_SHA"))
            .collect();
        let no_idea: Vec<&str> = compat
            .tls11
            .iter()
            .copied()
            .filter(|s| !s.contains("IDEA"))
            .collect();
        assert_eq!(old, no_idea);
        assert_eq!(&compat.tls11[..15], compat.tls10);
        for p in &PROFILES {
            for proto in Protocol::ALL {
                let l = p.suites(proto);
                let set: HashSet<_> = l.iter().collect();
                assert_eq!(set.len(), l.len(), "duplicates in {} {proto}", p.name);
            }
        }
    }

    #[test]
    fn profile_properties() {
        let [strict, medium, compat] = &PROFILES;
        assert!(!strict.renegotiation && strict.auth_requires_tls);
        assert!(medium.renegotiation && medium.auth_requires_tls);
        assert!(compat.renegotiation && !compat.auth_requires_tls);
        assert_eq!(strict.security_level(), 2);
        assert_eq!(medium.security_level(), 2);
        assert_eq!(compat.security_level(), 0);
        for p in &PROFILES {
            // Highest first and without gaps: min/max express them exactly.
            let first = Protocol::ALL.iter().position(|x| *x == p.protocols[0]);
            assert_eq!(first, Some(0));
            assert_eq!(p.protocols, &Protocol::ALL[..p.protocols.len()]);
        }
        assert_eq!(Protocol::Tls13.to_string(), "TLSv1.3");
        assert_eq!(Protocol::Tls10.to_string(), "TLSv1.0");
    }

    #[test]
    fn active_profile_matches_feature() {
        let expected = if cfg!(feature = "profile-strict") {
            "strict"
        } else if cfg!(feature = "profile-compat") {
            "compat"
        } else {
            "medium"
        };
        assert_eq!(active().name, expected);
    }

    #[test]
    fn server_order_keeps_every_list_in_order() {
        for p in &PROFILES {
            let order = server_order(p);
            for proto in [Protocol::Tls12, Protocol::Tls11, Protocol::Tls10] {
                let sub: Vec<&str> = order
                    .iter()
                    .copied()
                    .filter(|s| p.suites(proto).contains(s))
                    .collect();
                assert_eq!(sub, p.suites(proto), "{} {proto}", p.name);
            }
        }
        let compat = server_order(&PROFILES[2]);
        let at = |s: &str| compat.iter().position(|x| *x == s);
        assert_eq!(at("TLS_RSA_WITH_IDEA_CBC_SHA"), Some(46));
        assert_eq!(compat.len(), 50);
    }

    #[test]
    fn ffdhe2048_is_rfc7919() {
        let dh = Dh::params_from_pem(FFDHE2048_PEM.as_bytes()).expect("PEM parses");
        let p = dh.prime_p().to_hex_str().expect("hex").to_string();
        // RFC 7919 appendix A.1.
        let rfc = "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F619172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF";
        assert_eq!(p, rfc);
        assert_eq!(dh.generator(), &*BigNum::from_u32(2).expect("bn"));
    }

    /// The expected unavailable suites on an OpenSSL 3 build: 3DES and IDEA
    /// always, SEED unless the legacy provider loads.
    fn expected_unavailable(p: &Profile) -> Vec<(Protocol, &'static str)> {
        let seed_missing = p.needs_legacy() && !legacy_provider();
        let mut v = Vec::new();
        for &proto in p.protocols {
            for &s in p.suites(proto) {
                if is_3des_or_idea(s) || (seed_missing && s.contains("_SEED_")) {
                    v.push((proto, s));
                }
            }
        }
        v
    }

    #[test]
    fn unavailable_suites_on_this_openssl() {
        assert!(
            openssl::version::number() >= 0x3000_0000,
            "tests expect OpenSSL 3"
        );
        for p in &PROFILES {
            let probe = probe(p);
            let expected = expected_unavailable(p);
            // Which optional suites a build has depends on how OpenSSL was configured:
            // Debian's 3.0 lacks exactly 3DES and IDEA (SEED via the legacy provider);
            // the slimmed vendored 3.6 of the cross builds has IDEA but rates CCM_8
            // below security level 2. tls-info reports whichever is true; nothing
            // outside these families may ever go missing.
            let optional =
                |s: &str| is_3des_or_idea(s) || s.contains("_SEED_") || s.contains("_CCM_8");
            assert!(
                probe.unavailable.iter().all(|(_, s)| optional(s)),
                "{}: {:?}",
                p.name,
                probe.unavailable
            );
            if openssl::version::number() < 0x3010_0000 {
                assert_eq!(probe.unavailable, expected, "{}", p.name);
            }
            assert!(
                probe.unlisted.is_empty(),
                "{}: {:?}",
                p.name,
                probe.unlisted
            );
            // Effective list = listed minus unavailable, in the seed's order.
            for v in &probe.versions {
                let want: Vec<&str> = p
                    .suites(v.protocol)
                    .iter()
                    .copied()
                    .filter(|s| !probe.unavailable.contains(&(v.protocol, s)))
                    .collect();
                let got: Vec<&str> = v.offered.iter().map(|o| o.iana).collect();
                assert_eq!(got, want, "{} {}", p.name, v.protocol);
                for o in &v.offered {
                    assert_eq!(openssl_name(o.iana), Some(o.openssl));
                }
            }
        }
        assert_eq!(availability().unavailable, probe(active()).unavailable);
        eprintln!(
            "legacy provider loaded: {} (SEED {})",
            legacy_provider(),
            if legacy_provider() {
                "available"
            } else {
                "unavailable"
            }
        );
    }

    #[test]
    fn report_lists_everything() {
        let r = report();
        let p = active();
        assert!(r.contains(p.title));
        assert!(r.contains(openssl::version::version()));
        for v in &probe(p).versions {
            for o in &v.offered {
                assert!(r.contains(o.iana) && r.contains(o.openssl), "{o:?}");
            }
        }
        for (_, s) in &availability().unavailable {
            assert!(r.contains(s), "{s}");
        }
        for proto in Protocol::ALL {
            assert!(r.contains(&proto.to_string()));
        }
    }

    #[test]
    fn options_follow_the_profile() {
        for p in &PROFILES {
            plan(p);
            let mut b = SslContext::builder(SslMethod::tls_server()).expect("ctx");
            b.set_options(SslOptions::NO_TLSV1 | SslOptions::PRIORITIZE_CHACHA);
            apply_server_to(p, &mut b).expect("apply_server");
            let o = b.options();
            assert!(o.contains(SslOptions::NO_COMPRESSION | SslOptions::CIPHER_SERVER_PREFERENCE));
            assert!(o.contains(SslOptions::NO_SSLV3));
            assert!(!o.intersects(SslOptions::NO_TLSV1 | SslOptions::PRIORITIZE_CHACHA));
            assert!(!o.contains(SslOptions::from_bits_retain(ALLOW_CLIENT_RENEGOTIATION)));
            assert_eq!(o.contains(SslOptions::NO_RENEGOTIATION), !p.renegotiation);
            assert_eq!(b.min_proto_version(), Some(p.lowest().ssl_version()));
            assert_eq!(b.max_proto_version(), Some(SslVersion::TLS1_3));

            let mut c = SslContext::builder(SslMethod::tls_client()).expect("ctx");
            apply_client_to(p, &mut c).expect("apply_client");
            assert!(!c.options().contains(SslOptions::CIPHER_SERVER_PREFERENCE));
            assert_eq!(
                c.options().contains(SslOptions::NO_RENEGOTIATION),
                !p.renegotiation
            );
        }
        assert!(server_builder().is_ok() && client_builder().is_ok());
    }

    // ---- real handshakes over a socket pair ----

    fn identity() -> &'static (PKey<Private>, X509) {
        static ID: OnceLock<(PKey<Private>, X509)> = OnceLock::new();
        ID.get_or_init(|| {
            let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
            let mut name = X509Name::builder().expect("name");
            name.append_entry_by_text("CN", "localhost").expect("cn");
            let name = name.build();
            let mut x = X509::builder().expect("x509");
            x.set_version(2).expect("version");
            let serial = BigNum::from_u32(1)
                .expect("bn")
                .to_asn1_integer()
                .expect("serial");
            x.set_serial_number(&serial).expect("serial");
            x.set_subject_name(&name).expect("subject");
            x.set_issuer_name(&name).expect("issuer");
            x.set_pubkey(&key).expect("pubkey");
            x.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
                .expect("nb");
            x.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
                .expect("na");
            x.sign(&key, MessageDigest::sha256()).expect("sign");
            (key, x.build())
        })
    }

    fn server_ctx(p: &Profile) -> SslContext {
        plan(p);
        let (key, cert) = identity();
        let mut b = SslContext::builder(SslMethod::tls_server()).expect("ctx");
        apply_server_to(p, &mut b).expect("apply_server");
        b.set_private_key(key).expect("key");
        b.set_certificate(cert).expect("cert");
        b.build()
    }

    fn profile_client_ctx(p: &Profile) -> SslContext {
        plan(p);
        let mut b = SslContext::builder(SslMethod::tls_client()).expect("ctx");
        apply_client_to(p, &mut b).expect("apply_client");
        b.build()
    }

    /// A client pinned to one version offering only the given OpenSSL suite
    /// names, at level 0 so any refusal is the server's. None when the
    /// linked OpenSSL cannot even offer them.
    fn forced_client(proto: Protocol, suites: &str) -> Option<SslContext> {
        legacy_provider();
        let mut b = SslContext::builder(SslMethod::tls_client()).expect("ctx");
        b.set_security_level(0);
        let v = Some(proto.ssl_version());
        b.set_min_proto_version(v).expect("min");
        b.set_max_proto_version(v).expect("max");
        let ok = if proto == Protocol::Tls13 {
            b.set_ciphersuites(suites).is_ok()
        } else {
            b.set_cipher_list(&format!("{suites}:@SECLEVEL=0")).is_ok()
        };
        ok.then(|| b.build())
    }

    /// Runs one handshake; returns (version, OpenSSL suite name) on success.
    fn handshake(server: &SslContext, client: &SslContext) -> Result<(String, String), String> {
        let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
        }
        let server = Ssl::new(server).map_err(|e| e.to_string())?;
        let t = std::thread::spawn(move || {
            server
                .accept(b)
                .map(|s| s.ssl().current_cipher().map(|c| c.name()).unwrap_or("?"))
                .map_err(|e| e.to_string())
        });
        let client = Ssl::new(client).map_err(|e| e.to_string())?;
        let res = client
            .connect(a)
            .map(|s| {
                let ssl = s.ssl();
                let cipher = ssl.current_cipher().map(|c| c.name()).unwrap_or("?");
                (ssl.version_str().to_string(), cipher.to_string())
            })
            .map_err(|e| e.to_string());
        let server_side = t.join().map_err(|_| "server thread panicked".to_string())?;
        let (version, cipher) = res?;
        let server_cipher = server_side?;
        assert_eq!(server_cipher, cipher);
        Ok((version, cipher))
    }

    #[test]
    fn tls13_handshake_with_the_profile() {
        let p = active();
        let r = handshake(&server_ctx(p), &profile_client_ctx(p));
        assert_eq!(
            r,
            Ok(("TLSv1.3".to_string(), "TLS_AES_256_GCM_SHA384".to_string()))
        );
        // Public entry points give the same result.
        let (key, cert) = identity();
        let mut s = server_builder().expect("server_builder");
        s.set_private_key(key).expect("key");
        s.set_certificate(cert).expect("cert");
        let c = client_builder().expect("client_builder");
        let r = handshake(&s.build(), &c.build()).expect("handshake");
        assert_eq!(r.0, "TLSv1.3");
    }

    #[test]
    fn server_preference_wins() {
        for p in &PROFILES {
            let server = server_ctx(p);
            let c = forced_client(
                Protocol::Tls12,
                "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
            )
            .expect("client");
            let r = handshake(&server, &c).expect("tls1.2");
            assert_eq!(r.1, "ECDHE-RSA-AES256-GCM-SHA384", "{}", p.name);
            let c = forced_client(
                Protocol::Tls13,
                "TLS_AES_128_CCM_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
            )
            .expect("client");
            let r = handshake(&server, &c).expect("tls1.3");
            assert_eq!(r.1, "TLS_AES_256_GCM_SHA384", "{}", p.name);
        }
    }

    #[test]
    fn suites_outside_the_lists_fail() {
        for p in &PROFILES {
            let server = server_ctx(p);
            // The one OpenSSL TLS 1.3 suite no profile lists.
            let c = forced_client(Protocol::Tls13, "TLS_AES_128_CCM_8_SHA256").expect("client");
            assert!(handshake(&server, &c).is_err(), "{}", p.name);
            // A TLS 1.2-only suite cannot be negotiated on TLS 1.1.
            if let Some(c) = forced_client(Protocol::Tls11, "AES128-GCM-SHA256") {
                assert!(handshake(&server, &c).is_err(), "{}", p.name);
            }
        }
        let strict = server_ctx(&PROFILES[0]);
        let c = forced_client(Protocol::Tls12, "ECDHE-RSA-CAMELLIA128-SHA256").expect("client");
        assert!(handshake(&strict, &c).is_err());
        // The same suite is listed by Medium.
        let medium = server_ctx(&PROFILES[1]);
        assert!(handshake(&medium, &c).is_ok());
    }

    #[test]
    fn old_versions_only_in_compat() {
        for p in &PROFILES {
            let server = server_ctx(p);
            for proto in [Protocol::Tls11, Protocol::Tls10] {
                let c = forced_client(proto, "ECDHE-RSA-AES256-SHA:AES128-SHA").expect("client");
                let r = handshake(&server, &c);
                if p.protocols.contains(&proto) {
                    // OpenSSL spells TLS 1.0 "TLSv1".
                    let version = if proto == Protocol::Tls10 {
                        "TLSv1"
                    } else {
                        "TLSv1.1"
                    };
                    let want = (version.to_string(), "ECDHE-RSA-AES256-SHA".to_string());
                    assert_eq!(r, Ok(want), "{} {proto}", p.name);
                } else {
                    assert!(r.is_err(), "{} {proto}: {r:?}", p.name);
                }
            }
        }
    }

    /// Like a scanner: per version, try every suite any profile lists (and
    /// every OpenSSL TLS 1.3 suite) alone; what the server accepts must be
    /// exactly the effective list that report() prints.
    #[test]
    fn wire_matches_effective_lists() {
        let mut candidates = all_listed();
        candidates.retain(|s| !TLS13_SUITES.contains(s));
        for p in &PROFILES {
            let server = server_ctx(p);
            let probe = probe(p);
            for proto in Protocol::ALL {
                let names: Vec<&str> = if proto == Protocol::Tls13 {
                    vec![
                        "TLS_AES_256_GCM_SHA384",
                        "TLS_CHACHA20_POLY1305_SHA256",
                        "TLS_AES_128_GCM_SHA256",
                        "TLS_AES_128_CCM_SHA256",
                        "TLS_AES_128_CCM_8_SHA256",
                    ]
                } else {
                    candidates.iter().filter_map(|s| openssl_name(s)).collect()
                };
                let mut accepted = HashSet::new();
                for name in names {
                    let Some(c) = forced_client(proto, name) else {
                        continue;
                    };
                    if let Ok((_, cipher)) = handshake(&server, &c) {
                        assert_eq!(cipher, name);
                        accepted.insert(name);
                    }
                }
                let effective: HashSet<&str> = probe
                    .versions
                    .iter()
                    .filter(|v| v.protocol == proto)
                    .flat_map(|v| v.offered.iter().map(|o| o.openssl))
                    .collect();
                assert_eq!(accepted, effective, "{} {proto}", p.name);
            }
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn protocols_parse_and_intersect() {
        use Protocol::*;
        let all = [Tls13, Tls12, Tls11, Tls10];
        let two = [Tls13, Tls12];
        let p = |s: &str| Protocols::parse(s).unwrap();
        let eff = |s: &str, sup: &[Protocol]| p(s).effective(sup);

        assert_eq!(p(""), Protocols::default());
        assert_eq!(eff("", &all), Some((Tls10, Tls13)));
        assert_eq!(
            eff("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", &all),
            Some((Tls12, Tls13))
        );
        assert_eq!(eff(">=TLSv1.2", &all), Some((Tls12, Tls13)));
        assert_eq!(eff(">=tlsv1.1", &two), Some((Tls12, Tls13)));
        assert_eq!(eff("<=TLSv1.2", &all), Some((Tls10, Tls12)));
        assert_eq!(eff("<=TLSv1.2", &two), Some((Tls12, Tls12)));
        assert_eq!(eff("TLSv1.2:TLSv1.3", &all), Some((Tls12, Tls13)));
        assert_eq!(eff("TLSv1.3", &all), Some((Tls13, Tls13)));
        assert_eq!(eff("SSLv3:TLSv1", &all), Some((Tls10, Tls10)));
        assert_eq!(eff("SSLv3:TLSv1", &two), None);
        assert_eq!(eff("SSLv3", &all), None);
        assert_eq!(eff(">=SSLv3", &all), Some((Tls10, Tls13)));
        assert_eq!(eff(">=TLSv1.3:<=TLSv1.2", &all), None);
        assert_eq!(eff("<=TLSv1.1", &two), None);
        // A hole keeps the highest contiguous run.
        assert_eq!(eff("!TLSv1.1", &all), Some((Tls12, Tls13)));
        assert_eq!(eff("!TLSv1.2", &all), Some((Tls13, Tls13)));
        assert_eq!(eff("!TLSv1.3", &all), Some((Tls10, Tls12)));
        // Postfix separators outside tables.
        assert_eq!(eff("!SSLv2, !SSLv3 !TLSv1", &all), Some((Tls11, Tls13)));
        assert!(Protocols::parse(">=TLSv1:>=TLSv1.2").is_err());
        assert!(Protocols::parse("<=TLSv1.3:<=TLSv1.2").is_err());
        assert!(Protocols::parse("!TLSv2").is_err());
        assert!(Protocols::parse("=>TLSv1.2").is_err());

        // No restriction: the compiled profile's own range.
        let prof = active();
        let d = Protocols::default().range();
        assert_eq!(d, (prof.lowest(), prof.highest()));
    }

    /// The TLS 1.2 suites a client with the profile and `list` really offers, by
    /// OpenSSL name: what the expansion of the string is on the wire. `None` when
    /// OpenSSL refuses the string.
    fn offered(list: &str) -> Option<Vec<String>> {
        let mut cb = client_builder().unwrap();
        cb.set_cipher_list(list).ok()?;
        let v = Some(Protocol::Tls12.ssl_version());
        cb.set_min_proto_version(v).unwrap();
        cb.set_max_proto_version(v).unwrap();
        let suites = hello_suites(cb).expect("no ClientHello");
        Some(suites.iter().map(|o| o.openssl.to_string()).collect())
    }

    #[test]
    fn cipher_string_high_grade_without_3des() {
        // As `encrypt ciphers=high exclude=3DES:CAMELLIA256` in a policy table.
        let exclude = strings(&["3DES", "CAMELLIA256"]);
        let s = client_cipher_string(Level::Encrypt, Some(Grade::High), &exclude);
        assert!(s.ends_with(&format!(
            "!MEDIUM:!LOW:!3DES:!CAMELLIA256:!eNULL:@SECLEVEL={}",
            active().security_level()
        )));
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_cipher_list(&s)
            .expect("OpenSSL refuses the policy string");

        let high = offered(&s).unwrap();
        assert!(!high.is_empty());
        // OpenSSL's own MEDIUM/LOW sets, under the same profile (legacy provider on).
        let weak: Vec<String> = offered("MEDIUM:LOW:@SECLEVEL=0").unwrap_or_default();
        for c in &high {
            assert!(
                !weak.contains(c),
                "{c} is MEDIUM/LOW but offered at grade high"
            );
            assert!(!c.contains("DES-CBC3") && !c.contains("CAMELLIA256"), "{c}");
        }
        // Without a grade the whole profile is offered, weak suites included.
        let whole = offered(&client_cipher_string(Level::May, None, &[])).unwrap();
        if active().name != "strict" {
            assert!(whole.len() > high.len());
            assert!(whole.iter().any(|c| c.contains("CAMELLIA256")));
            // With the legacy provider SEED is offered, and it is MEDIUM: the grade
            // really removed something OpenSSL classes below HIGH.
            if !weak.is_empty() {
                assert!(whole.iter().any(|c| weak.contains(c)), "{whole:?}");
            }
        }
        assert!(high.iter().all(|c| whole.contains(c)));
    }

    #[test]
    fn cipher_string_levels_and_tls13() {
        let may = client_cipher_string(Level::May, None, &[]);
        assert!(!may.contains('!'), "opportunistic TLS narrowed: {may}");
        let verify = client_cipher_string(Level::Verify, None, &[]);
        assert!(verify.contains("!eNULL:!aNULL"));
        // As `encrypt exclude=TLS_AES_128_CCM_SHA256:SEED` in a policy table.
        let exclude = strings(&["TLS_AES_128_CCM_SHA256", "SEED"]);
        let s13 = client_ciphersuites(&exclude);
        assert!(
            !s13.contains("CCM") && s13.contains("TLS_AES_256_GCM_SHA384"),
            "{s13}"
        );
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_ciphersuites(&s13).unwrap();
        b.set_cipher_list(&client_cipher_string(Level::Encrypt, None, &exclude))
            .unwrap();
    }
}
