//! Outbound TLS policy: the per-destination table (`--tls-policy FILE`, in Postfix
//! `smtp_tls_policy_maps` syntax so existing tables work), the security levels and
//! what each one demands, and the pure decisions that follow from a policy: the
//! protocol range, the client cipher string, and the names a server certificate must
//! carry.
//!
//! This module decides; it does not connect. It owns no sockets, no DNS and no
//! long-lived OpenSSL context, and knows nothing of queues. The outbound session:
//!
//! 1. looks up the [`Policy`] for its next hop with [`PolicyTable::lookup`];
//! 2. when [`Level::uses_dane`], fetches MX/TLSA state from DNS and folds it in with
//!    [`Level::effective_for_dane`], which yields the level to enforce or a deferral;
//! 3. asks that level's predicates ([`Level::requires_tls`], [`Level::must_match`],
//!    [`Level::must_verify_chain`]) what to enforce, and builds its context from
//!    [`Policy::protocol_range`], [`client_cipher_string`], [`client_ciphersuites`] and
//!    [`name_patterns`].
//!
//! Only [`PolicyTable::load`] touches the filesystem; [`PolicyTable::parse`] is a total
//! function of its text (every input gives a table or a `FILE:LINE: message` error),
//! so it can be fuzzed.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::profile::{self, Profile, Protocol};

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
        let p = profile::active();
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
    fn parse(s: &str) -> Result<Grade, String> {
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

/// The policy for one destination: a table entry, or the default level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub protocols: Protocols,
    /// `None`: the whole profile (Postfix's grade defaults are replaced by the
    /// profile, which already is the administrator's choice).
    pub ciphers: Option<Grade>,
    /// OpenSSL cipher names or families to drop (`exclude=3DES:CAMELLIA`).
    pub exclude: Vec<String>,
    /// For fingerprint: digests in upper-case colon-hex (`3D:7A:...`). For verify and
    /// secure: lower-case names, `.domain` patterns and the keywords `nexthop`,
    /// `dot-nexthop`, `hostname`. Empty otherwise.
    pub matches: Vec<String>,
    /// Trust anchors (PEM) used instead of the CA store; verify and secure only.
    pub tafile: Option<PathBuf>,
    /// Client certificate chain for this destination (PEM); always with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `FILE:LINE` of the table entry, or `default`, for logs.
    pub source: String,
}

impl Policy {
    /// The policy for destinations the table does not list.
    pub fn default_for(level: Level) -> Policy {
        Policy {
            level,
            protocols: Protocols::default(),
            ciphers: None,
            exclude: Vec::new(),
            matches: Vec::new(),
            tafile: None,
            cert: None,
            key: None,
            source: "default".to_string(),
        }
    }

    /// The (min, max) versions to set on the client context: [`Protocols::range`].
    pub fn protocol_range(&self) -> (Protocol, Protocol) {
        self.protocols.range()
    }
}

/// Checks a `--tls-default-level` value: `fingerprint` needs `match=`, which only a
/// table entry can give.
pub fn check_default_level(level: Level) -> Result<(), String> {
    if level == Level::Fingerprint {
        return Err(
            "--tls-default-level fingerprint is not possible: fingerprints are \
                    per destination; list them with match= in the --tls-policy table"
                .to_string(),
        );
    }
    Ok(())
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

/// The parsed policy table.
#[derive(Clone, Debug, Default)]
pub struct PolicyTable {
    /// In file order, so checks report the first offending line first.
    entries: Vec<Policy>,
    /// Normalized key -> index into `entries`.
    index: HashMap<String, usize>,
}

/// Postfix attributes tinymta does not implement: named as such, so a copied table
/// gets a precise error rather than "unknown attribute".
const UNSUPPORTED_POSTFIX_ATTRIBUTES: &[&str] =
    &["connection_reuse", "servername", "enable_rpk", "sni"];

impl PolicyTable {
    /// Reads and parses a table file. Relative `tafile=`, `cert=` and `key=` paths
    /// are taken relative to the table's directory (a table and its certificates move
    /// together), and each must be readable now: a missing file is a start-up error,
    /// not a deferral at 3 a.m.
    pub fn load(path: &Path) -> Result<PolicyTable, String> {
        let origin = path.display().to_string();
        let bytes = fs::read(path).map_err(|e| {
            format!("{origin}: cannot read the TLS policy table: {e}; check --tls-policy")
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + good.iter().filter(|b| **b == b'\n').count();
            format!("{origin}:{line}: not valid UTF-8; save the table as UTF-8 or ASCII")
        })?;
        let mut table = PolicyTable::parse(&text, &origin)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in &mut table.entries {
            let source = p.source.clone();
            for (what, file) in [
                ("tafile", &mut p.tafile),
                ("cert", &mut p.cert),
                ("key", &mut p.key),
            ] {
                let Some(f) = file else { continue };
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
                File::open(&*f).map_err(|e| {
                    format!(
                        "{source}: {what}={} cannot be read: {e}; fix the path or the \
                         file's permissions",
                        f.display()
                    )
                })?;
            }
        }
        Ok(table)
    }

    /// Parses table text; `origin` names it in errors (`origin:LINE: message`).
    ///
    /// Syntax as Postfix tables: `key whitespace value`; blank lines and lines whose
    /// first non-blank character is `#` are ignored; a line starting with whitespace
    /// continues the previous entry. The value is the level, then `name=value`
    /// attributes separated by whitespace or commas (so list items inside a value are
    /// separated by `:`, and `|` between fingerprints).
    pub fn parse(text: &str, origin: &str) -> Result<PolicyTable, String> {
        struct Raw<'a> {
            key: &'a str,
            line: usize,
            words: Vec<(&'a str, usize)>,
        }
        let mut raws: Vec<Raw> = Vec::new();
        // A byte-order mark from a Windows editor is not part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, text_line) in text.lines().enumerate() {
            let n = i + 1;
            let body = text_line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if body.len() != text_line.len() {
                let Some(last) = raws.last_mut() else {
                    return Err(format!(
                        "{origin}:{n}: this line starts with whitespace, which continues \
                         the previous entry, but there is none; remove the indentation"
                    ));
                };
                last.words.extend(split_words(body).map(|w| (w, n)));
                continue;
            }
            let (key, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            raws.push(Raw {
                key,
                line: n,
                words: split_words(rest).map(|w| (w, n)).collect(),
            });
        }

        let mut table = PolicyTable::default();
        for raw in raws {
            let at = |line: usize| format!("{origin}:{line}");
            let key = normalize_key(raw.key).map_err(|m| format!("{}: {m}", at(raw.line)))?;
            if let Some(&first) = table.index.get(&key) {
                return Err(format!(
                    "{}: duplicate key '{}' (first defined at {}); keep one entry",
                    at(raw.line),
                    raw.key,
                    table.entries[first].source
                ));
            }
            let policy = parse_value(&raw.words, raw.line, &at)?;
            table.index.insert(key, table.entries.len());
            table.entries.push(Policy {
                source: at(raw.line),
                ..policy
            });
        }
        Ok(table)
    }

    /// The policy for a next hop. Lookup order, first hit wins:
    ///
    /// - `[host]`-style next hop: `[host]:port`, then `[host]`. Never domain entries:
    ///   as in Postfix, an explicit next hop matches only its own entry, so a
    ///   `.example.com` policy meant for recipient domains does not silently apply to
    ///   a relay host that happens to sit in that domain.
    /// - non-bracketed host (transport `host:port`, MX lookup of `host`): `host:port`,
    ///   then `host` and its parent domains as below.
    /// - recipient domain: the exact domain, then parent-domain keys: for
    ///   `a.b.example.com`, `.b.example.com`, `.example.com`, `.com` (a `.example.com`
    ///   key matches any subdomain at any depth, never `example.com` itself).
    ///
    /// Then `*` if the table has it, then `default`. Names compare case-insensitively
    /// and without a trailing dot; IP literals compare in canonical form.
    pub fn lookup(&self, nexthop: &NextHop, default: Level) -> Policy {
        let mut keys = Vec::new();
        match nexthop {
            NextHop::Domain(d) => domain_keys(&canonical_host(d), &mut keys),
            NextHop::Host {
                host,
                port,
                bracketed: true,
            } => {
                let h = canonical_host(host);
                keys.push(format!("[{h}]:{port}"));
                keys.push(format!("[{h}]"));
            }
            NextHop::Host {
                host,
                port,
                bracketed: false,
            } => {
                let h = canonical_host(host);
                keys.push(format!("{h}:{port}"));
                domain_keys(&h, &mut keys);
            }
        }
        keys.push("*".to_string());
        keys.iter()
            .find_map(|k| self.index.get(k))
            .map(|&i| self.entries[i].clone())
            .unwrap_or_else(|| Policy::default_for(default))
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    #[cfg(test)]
    #[allow(dead_code)] // clippy wants it beside len()
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every fingerprint against the digest chosen by
    /// `--tls-fingerprint-digest` (`digest` is its name, `len` its size in bytes): a
    /// SHA-1 fingerprint in a SHA-256 setup can never match, and would defer that
    /// destination's mail forever.
    pub fn check_fingerprint_length(&self, digest: &str, len: usize) -> Result<(), String> {
        for p in self
            .entries
            .iter()
            .filter(|p| p.level == Level::Fingerprint)
        {
            for m in &p.matches {
                let n = decode_fingerprint(m).map_or(0, |b| b.len());
                if n != len {
                    return Err(format!(
                        "{}: fingerprint {m} has {n} bytes, but --tls-fingerprint-digest \
                         {digest} gives {len}; recompute it with `tinymta cert fingerprint` \
                         or change the digest",
                        p.source
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Splits a value into level and attributes the way Postfix does (`\t\n\r ,`).
fn split_words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
}

/// The exact key, then parent-domain keys, for a domain.
fn domain_keys(d: &str, keys: &mut Vec<String>) {
    if d.is_empty() {
        return;
    }
    keys.push(d.to_string());
    for (i, _) in d.match_indices('.').filter(|(i, _)| *i > 0) {
        keys.push(d[i..].to_string());
    }
}

/// Lower case, no trailing dot, no `ipv6:` prefix, IP literals in canonical form.
fn canonical_host(h: &str) -> String {
    let h = h.to_ascii_lowercase();
    let h = h.strip_prefix("ipv6:").unwrap_or(&h);
    let h = h.strip_suffix('.').unwrap_or(h);
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h.to_string(),
    }
}

/// A DNS name as tables may write it (ASCII, underscores allowed as in SRV-style
/// names, no empty labels). Non-ASCII names must be given as A-labels.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_ip(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok()
}

fn parse_port(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(25),
        "lmtp" => Some(24),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        _ if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|n| *n != 0)
        }
        _ => None,
    }
}

/// The lookup form of a table key, or why it cannot be one.
fn normalize_key(raw: &str) -> Result<String, String> {
    if !raw.is_ascii() {
        return Err(format!(
            "key '{raw}' is not ASCII; write internationalized domains in their A-label \
             form (xn--...)"
        ));
    }
    let k = raw.to_ascii_lowercase();
    if k == "*" {
        return Ok(k);
    }
    if let Some(rest) = k.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!(
                "malformed key '{raw}': '[' without ']'; write [host] or [host]:port"
            ));
        };
        let host = canonical_host(inside);
        if !(is_ip(&host) || valid_domain(&host)) {
            return Err(format!(
                "malformed key '{raw}': '{inside}' is not a host name or IP address"
            ));
        }
        if after.is_empty() {
            return Ok(format!("[{host}]"));
        }
        let port = after
            .strip_prefix(':')
            .and_then(parse_port)
            .ok_or_else(|| {
                format!(
                    "malformed key '{raw}': after ']' expected ':port' with a port number \
                     from 1 to 65535, e.g. [{host}]:587"
                )
            })?;
        return Ok(format!("[{host}]:{port}"));
    }
    if k.contains(['[', ']']) {
        return Err(format!(
            "malformed key '{raw}': brackets must enclose the host, as in [host]:port"
        ));
    }
    if is_ip(&k) || k.rsplit_once(':').is_some_and(|(h, _)| is_ip(h)) {
        return Err(format!(
            "key '{raw}' is an IP address; IP next hops are written in brackets, e.g. \
             [192.0.2.7] or [192.0.2.7]:2525"
        ));
    }
    if k.starts_with("*.") {
        return Err(format!(
            "malformed key '{raw}': write subdomain wildcards as a parent domain, e.g. \
             .example.com (it matches every subdomain)"
        ));
    }
    if let Some(parent) = k.strip_prefix('.') {
        let d = parent.strip_suffix('.').unwrap_or(parent);
        if !valid_domain(d) {
            return Err(format!(
                "malformed key '{raw}': '.{d}' is not a parent domain pattern like .example.com"
            ));
        }
        return Ok(format!(".{d}"));
    }
    let (name, port) = match k.split_once(':') {
        Some((name, p)) => {
            let port = parse_port(p).ok_or_else(|| {
                format!("malformed key '{raw}': '{p}' is not a port number from 1 to 65535")
            })?;
            (name, Some(port))
        }
        None => (k.as_str(), None),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if !valid_domain(name) {
        return Err(format!(
            "malformed key '{raw}': expected a domain (example.com), a parent domain \
             (.example.com), a next hop ([host] or [host]:port) or *"
        ));
    }
    Ok(match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_string(),
    })
}

/// `3D:7A:...` or `3d7a...` -> bytes, if it is a plausible digest (MD5, SHA-1 or
/// SHA-256 size).
pub fn decode_fingerprint(s: &str) -> Option<Vec<u8>> {
    let hex: Vec<u8> = if s.contains(':') {
        let mut v = Vec::new();
        for pair in s.split(':') {
            if pair.len() != 2 {
                return None;
            }
            v.extend_from_slice(pair.as_bytes());
        }
        v
    } else {
        s.as_bytes().to_vec()
    };
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = hex
        .chunks(2)
        .map(|c| Some((nibble(c[0])? << 4) | nibble(c[1])?))
        .collect::<Option<Vec<u8>>>()?;
    matches!(bytes.len(), 16 | 20 | 32).then_some(bytes)
}

/// Parses the value part of one entry (level and attributes).
fn parse_value(
    words: &[(&str, usize)],
    key_line: usize,
    at: &dyn Fn(usize) -> String,
) -> Result<Policy, String> {
    let Some(&(level_word, level_line)) = words.first() else {
        return Err(format!(
            "{}: entry has no security level; write e.g. 'example.com may'",
            at(key_line)
        ));
    };
    let level = Level::parse(level_word).ok_or_else(|| {
        let hint = match level_word.to_ascii_lowercase().as_str() {
            "must" => "; smtp_tls_per_site MUST is 'verify' here",
            "must_nopeermatch" => "; smtp_tls_per_site MUST_NOPEERMATCH is 'encrypt' here",
            _ => "",
        };
        format!(
            "{}: unknown TLS level '{level_word}'; use none, may, encrypt, dane, dane-only, \
             fingerprint, verify or secure{hint}",
            at(level_line)
        )
    })?;
    let mut p = Policy::default_for(level);
    let mut seen: Vec<&str> = Vec::new();
    for &(word, line) in &words[1..] {
        let err = |m: String| format!("{}: {m}", at(line));
        let Some((name_raw, value)) = word.split_once('=') else {
            return Err(err(format!(
                "'{word}' is not an attribute (expected name=value); inside a value, \
                 separate list items with ':' (',' and spaces separate attributes)"
            )));
        };
        let name = name_raw.to_ascii_lowercase();
        let known = [
            "protocols",
            "ciphers",
            "exclude",
            "match",
            "tafile",
            "cert",
            "key",
        ];
        let Some(name) = known.into_iter().find(|k| *k == name) else {
            if UNSUPPORTED_POSTFIX_ATTRIBUTES.contains(&name.as_str()) {
                return Err(err(format!(
                    "attribute '{name_raw}' is a Postfix feature tinymta does not \
                     implement; remove it"
                )));
            }
            return Err(err(format!(
                "unknown attribute '{name_raw}'; valid attributes are protocols, \
                 ciphers, exclude, match, tafile, cert and key"
            )));
        };
        if level == Level::None {
            return Err(err(format!(
                "attribute '{name}' is not valid at level 'none' (no TLS is used); \
                 remove it or choose a level that uses TLS"
            )));
        }
        // Only match= may repeat (its lists append), as in Postfix.
        if name != "match" && seen.contains(&name) {
            return Err(err(format!(
                "attribute '{name}' is given twice; keep one (list items go in one value, \
                 separated by ':')"
            )));
        }
        seen.push(name);
        match name {
            "protocols" => {
                p.protocols = Protocols::parse(value).map_err(&err)?;
                let prof = profile::active();
                if p.protocols.effective(prof.protocols).is_none() {
                    return Err(err(format!(
                        "protocols={value} leaves no TLS version this build offers (the \
                         '{}' profile enables {}); relax it",
                        prof.name,
                        list_versions(prof)
                    )));
                }
            }
            "ciphers" => p.ciphers = Some(Grade::parse(value).map_err(&err)?),
            "exclude" => {
                for item in value.split(':').filter(|i| !i.is_empty()) {
                    let ok = !item.starts_with(['!', '+', '-', '@'])
                        && item.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+')
                        });
                    if !ok {
                        return Err(err(format!(
                            "exclude= item '{item}' is not an OpenSSL cipher name or family; \
                             write bare names separated by ':', e.g. exclude=3DES:CAMELLIA \
                             (no '!')"
                        )));
                    }
                    p.exclude.push(item.to_string());
                }
            }
            "match" => parse_match(&mut p, value).map_err(&err)?,
            "tafile" => {
                if !level.must_verify_chain() {
                    return Err(err(format!(
                        "attribute 'tafile' is not valid at level '{level}'; trust anchors \
                         apply to verify and secure"
                    )));
                }
                p.tafile = Some(nonempty_path(name, value).map_err(&err)?);
            }
            "cert" => p.cert = Some(nonempty_path(name, value).map_err(&err)?),
            _ => p.key = Some(nonempty_path(name, value).map_err(&err)?),
        }
    }
    let here = at(key_line);
    if level == Level::Fingerprint && p.matches.is_empty() {
        return Err(format!(
            "{here}: level 'fingerprint' needs match= with the server's certificate or \
             public-key fingerprints, e.g. match=3D:7A:...|51:0F:... (see `tinymta cert \
             fingerprint --remote`)"
        ));
    }
    if p.cert.is_some() != p.key.is_some() {
        return Err(format!(
            "{here}: cert= and key= go together (a client certificate needs its private \
             key); give both or neither"
        ));
    }
    if p.ciphers.is_some() || !p.exclude.is_empty() {
        check_narrowing(&p).map_err(|m| format!("{here}: {m}"))?;
    }
    Ok(p)
}

fn list_versions(p: &Profile) -> String {
    p.protocols
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn nonempty_path(name: &str, value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!(
            "attribute '{name}' has an empty value; give a file path"
        ));
    }
    Ok(PathBuf::from(value))
}

/// `match=` for the entry's level: fingerprints (`|`) or names (`:`); repeated
/// attributes append, as in Postfix.
fn parse_match(p: &mut Policy, value: &str) -> Result<(), String> {
    if value.split(['|', ':']).all(str::is_empty) {
        return Err("attribute 'match' has an empty value".to_string());
    }
    match p.level {
        Level::Fingerprint => {
            for fp in value.split('|').filter(|f| !f.is_empty()) {
                let bytes = decode_fingerprint(fp).ok_or_else(|| {
                    format!(
                        "'{fp}' is not a fingerprint: expected 16 (md5), 20 (sha1) or 32 \
                         (sha256) hex bytes such as 3D:7A:..., several separated by '|'; \
                         `tinymta cert fingerprint` prints them"
                    )
                })?;
                let colon_hex = bytes
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":");
                p.matches.push(colon_hex);
            }
        }
        Level::Verify | Level::Secure => {
            for name in value.split(':').filter(|n| !n.is_empty()) {
                let n = name.to_ascii_lowercase();
                let n = n.strip_suffix('.').unwrap_or(&n);
                let ok = matches!(n, "nexthop" | "dot-nexthop" | "hostname")
                    || valid_domain(n.strip_prefix('.').unwrap_or(n));
                if !ok {
                    return Err(format!(
                        "match= name '{name}' is not a host name; use names like \
                         mx.example.com, .example.com for any subdomain, or the keywords \
                         nexthop, dot-nexthop, hostname, separated by ':'"
                    ));
                }
                p.matches.push(n.to_string());
            }
        }
        level => {
            let why = if level.uses_dane() {
                "DANE takes the names from the TLSA records and the MX host"
            } else {
                "match= applies to fingerprint, verify and secure"
            };
            return Err(format!(
                "attribute 'match' is not valid at level '{level}'; {why}"
            ));
        }
    }
    Ok(())
}

/// Refuses grade/exclusions that leave OpenSSL nothing to offer, at start-up rather
/// than as a failed handshake per delivery.
fn check_narrowing(p: &Policy) -> Result<(), String> {
    let prof = profile::active();
    let (min, _) = p.protocol_range();
    let list = client_cipher_string(p);
    let below_13 = rank(min) < rank(Protocol::Tls13);
    // A context that cannot be created says nothing about the table.
    // The profile's builder, so SEED counts when the legacy provider has it.
    if let Ok(mut b) = profile::client_builder() {
        if below_13 && b.set_cipher_list(&list).is_err() {
            return Err(format!(
                "ciphers=/exclude= leave no TLS 1.2-or-older cipher suite in the '{}' \
                 profile; relax them or add protocols=>=TLSv1.3",
                prof.name
            ));
        }
    }
    if client_ciphersuites(p).is_empty() && !below_13 {
        return Err(
            "exclude= removes every TLS 1.3 suite, and protocols= allows only TLS 1.3; \
             relax one of them"
                .to_string(),
        );
    }
    Ok(())
}

/// A name the peer certificate may carry, already expanded from `match=`.
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

/// The names the peer certificate must match, for the policy's level:
///
/// - verify / secure: `match=` entries, or the Postfix defaults (verify: `hostname`;
///   secure: `nexthop:dot-nexthop`). `hostname` is the MX host name (or the relay
///   host), `nexthop` the recipient domain (or the relay host for `[host]` next
///   hops), `dot-nexthop` any subdomain of it, `.domain` any subdomain of domain.
/// - dane / dane-only: the MX host name and the next-hop domain, the reference
///   identifiers of RFC 7672 section 3.2.2; used only with DANE-TA(2) records
///   (DANE-EE(3) matches the key, not a name).
/// - other levels: none (fingerprint trusts the digest, not names).
pub fn name_patterns(policy: &Policy, nexthop_domain: &str, mx_hostname: &str) -> Vec<NamePattern> {
    let nexthop = canonical_host(nexthop_domain);
    let hostname = canonical_host(mx_hostname);
    let entries: Vec<&str> = match policy.level {
        Level::Verify | Level::Secure if !policy.matches.is_empty() => {
            policy.matches.iter().map(String::as_str).collect()
        }
        Level::Verify => vec!["hostname"],
        Level::Secure => vec!["nexthop", "dot-nexthop"],
        Level::Dane | Level::DaneOnly => vec!["hostname", "nexthop"],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for e in entries {
        let pat = match e {
            "hostname" => NamePattern::Exact(hostname.clone()),
            "nexthop" => NamePattern::Exact(nexthop.clone()),
            "dot-nexthop" => NamePattern::Subdomains(nexthop.clone()),
            _ => match e.strip_prefix('.') {
                Some(d) => NamePattern::Subdomains(canonical_host(d)),
                None => NamePattern::Exact(canonical_host(e)),
            },
        };
        let empty = match &pat {
            NamePattern::Exact(n) | NamePattern::Subdomains(n) => n.is_empty(),
        };
        if !empty && !out.contains(&pat) {
            out.push(pat);
        }
    }
    out
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

/// The client's TLS <= 1.2 cipher string for a policy (for `set_cipher_list`):
/// every suite the active profile lists for TLS 1.2/1.1/1.0, in profile order, then
/// the grade's exclusions (`!MEDIUM:!LOW` for high), `!X` for each `exclude=` item,
/// `!eNULL` from encrypt up and `!aNULL` from fingerprint up (as Postfix), and the
/// profile's `@SECLEVEL`. With no `ciphers=`/`exclude=` this is the whole profile at
/// every level: for opportunistic TLS weak encryption beats plaintext, and for
/// mandatory levels the profile already is the administrator's choice.
///
/// Names this OpenSSL does not know (3DES or IDEA on OpenSSL 3) are skipped by
/// OpenSSL inside a list; table parsing checked that something remains.
pub fn client_cipher_string(policy: &Policy) -> String {
    client_cipher_string_for(profile::active(), policy)
}

fn client_cipher_string_for(p: &Profile, policy: &Policy) -> String {
    let mut items: Vec<String> = Vec::new();
    for proto in [Protocol::Tls12, Protocol::Tls11, Protocol::Tls10] {
        for name in p
            .suites(proto)
            .iter()
            .filter_map(|s| profile::openssl_name(s))
        {
            if !items.iter().any(|i| i == name) {
                items.push(name.to_string());
            }
        }
    }
    if let Some(g) = policy.ciphers {
        items.extend(g.exclusions().iter().map(|s| s.to_string()));
    }
    items.extend(policy.exclude.iter().map(|x| format!("!{x}")));
    if policy.level >= Level::Encrypt {
        items.push("!eNULL".to_string());
    }
    if policy.level.must_match() {
        items.push("!aNULL".to_string());
    }
    items.push(format!("@SECLEVEL={}", p.security_level()));
    items.join(":")
}

/// The client's TLS 1.3 suites (for `set_ciphersuites`): the profile's list minus
/// `exclude=` items that name a TLS 1.3 suite exactly. OpenSSL configures TLS 1.3
/// separately and its cipher-string families (`AES128`, `MEDIUM`) do not apply
/// there; every TLS 1.3 suite is high grade anyway. An empty result disables TLS 1.3.
pub fn client_ciphersuites(policy: &Policy) -> String {
    profile::active()
        .suites(Protocol::Tls13)
        .iter()
        .filter(|s| !policy.exclude.iter().any(|x| x.eq_ignore_ascii_case(s)))
        .copied()
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ssl::{ClientHelloResponse, HandshakeError, Ssl, SslContext, SslMethod};
    use std::io::{self, Read, Write};
    use std::sync::{Arc, Mutex};

    const SPEC_TABLE: &str = "\
example.com        secure match=.example.com:example.net
[mx.example.org]   fingerprint match=3D:7A:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD|51:0F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD
[192.0.2.7]:2525   encrypt protocols=>=TLSv1.2 ciphers=high exclude=3DES
.gov               verify
*                  dane
";

    fn table(text: &str) -> PolicyTable {
        match PolicyTable::parse(text, "t") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match PolicyTable::parse(text, "pol") {
            Ok(t) => panic!("accepted {text:?}: {t:?}"),
            Err(e) => e,
        }
    }

    fn dom(d: &str) -> NextHop {
        NextHop::Domain(d.to_string())
    }

    fn host(h: &str, port: u16, bracketed: bool) -> NextHop {
        NextHop::Host {
            host: h.to_string(),
            port,
            bracketed,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

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

    #[test]
    fn spec_example_table() {
        let t = table(SPEC_TABLE);
        assert_eq!(t.len(), 5);
        let p = t.lookup(&dom("example.com"), Level::May);
        assert_eq!(p.level, Level::Secure);
        assert_eq!(p.matches, names(&[".example.com", "example.net"]));
        assert_eq!(p.source, "t:1");
        let p = t.lookup(&host("MX.Example.org", 25, true), Level::May);
        assert_eq!(p.level, Level::Fingerprint);
        assert_eq!(p.matches.len(), 2);
        assert!(p.matches[1].starts_with("51:0F:00"));
        let p = t.lookup(&host("192.0.2.7", 2525, true), Level::May);
        assert_eq!(p.level, Level::Encrypt);
        assert_eq!(p.protocols.min(), Some(Protocol::Tls12));
        assert_eq!(p.protocols.max(), None);
        assert_eq!(p.ciphers, Some(Grade::High));
        assert_eq!(p.exclude, names(&["3DES"]));
        assert_eq!(p.source, "t:3");
        assert_eq!(
            t.lookup(&dom("www.nasa.gov"), Level::May).level,
            Level::Verify
        );
        assert_eq!(t.lookup(&dom("gov"), Level::May).level, Level::Dane);
        assert_eq!(
            t.lookup(&dom("elsewhere.net"), Level::May).level,
            Level::Dane
        );
        // The same IP on another port is not the entry; "*" catches it.
        assert_eq!(
            t.lookup(&host("192.0.2.7", 25, true), Level::May).level,
            Level::Dane
        );
    }

    #[test]
    fn syntax_comments_continuations_case_commas() {
        let t = table(
            "# comment\n\
             \n   \t\n\
             Example.COM.   secure\n\
             \t  match=mx.example.com\n\
             \x20  # an indented comment is a comment\n\
             \x20  match=.example.com, protocols=!TLSv1.1\r\n\
             [MX.Example.NET]:smtp Encrypt,Ciphers=MEDIUM\n\
             bare.example\n\
             \x20 may\n",
        );
        let p = t.lookup(&dom("EXAMPLE.com."), Level::None);
        assert_eq!(p.level, Level::Secure);
        assert_eq!(p.matches, names(&["mx.example.com", ".example.com"]));
        assert_eq!(p.protocols.excluded(), &[Protocol::Tls11]);
        let p = t.lookup(&host("mx.example.net", 25, true), Level::None);
        assert_eq!(p.level, Level::Encrypt);
        assert_eq!(p.ciphers, Some(Grade::Medium));
        assert_eq!(
            t.lookup(&dom("bare.example"), Level::None).level,
            Level::May
        );
        assert_eq!(t.lookup(&dom("bare.example"), Level::None).source, "t:9");
    }

    #[test]
    fn error_messages_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("a.com bogus\n", "pol:1: unknown TLS level 'bogus'; use none, may, encrypt, dane, dane-only, fingerprint, verify or secure"),
            ("a.com must\n", "pol:1: unknown TLS level 'must'; use none, may, encrypt, dane, dane-only, fingerprint, verify or secure; smtp_tls_per_site MUST is 'verify' here"),
            ("# c\na.com may\nb.com may foo=1\n", "pol:3: unknown attribute 'foo'; valid attributes are protocols, ciphers, exclude, match, tafile, cert and key"),
            ("a.com may\n  servername=x\n", "pol:2: attribute 'servername' is a Postfix feature tinymta does not implement; remove it"),
            ("a.com may junk\n", "pol:1: 'junk' is not an attribute (expected name=value); inside a value, separate list items with ':' (',' and spaces separate attributes)"),
            ("a.com\n", "pol:1: entry has no security level; write e.g. 'example.com may'"),
            ("  may\n", "pol:1: this line starts with whitespace, which continues the previous entry, but there is none; remove the indentation"),
            ("a.com encrypt match=a.com\n", "pol:1: attribute 'match' is not valid at level 'encrypt'; match= applies to fingerprint, verify and secure"),
            ("a.com may match=a.com\n", "pol:1: attribute 'match' is not valid at level 'may'; match= applies to fingerprint, verify and secure"),
            ("a.com dane match=a.com\n", "pol:1: attribute 'match' is not valid at level 'dane'; DANE takes the names from the TLSA records and the MX host"),
            ("a.com none protocols=>=TLSv1.2\n", "pol:1: attribute 'protocols' is not valid at level 'none' (no TLS is used); remove it or choose a level that uses TLS"),
            ("a.com encrypt tafile=/x.pem\n", "pol:1: attribute 'tafile' is not valid at level 'encrypt'; trust anchors apply to verify and secure"),
            ("[mx.a.com] fingerprint\n", "pol:1: level 'fingerprint' needs match= with the server's certificate or public-key fingerprints, e.g. match=3D:7A:...|51:0F:... (see `tinymta cert fingerprint --remote`)"),
            ("[mx.a.com] fingerprint match=3D:7A:...\n", "pol:1: '3D:7A:...' is not a fingerprint: expected 16 (md5), 20 (sha1) or 32 (sha256) hex bytes such as 3D:7A:..., several separated by '|'; `tinymta cert fingerprint` prints them"),
            ("a.com verify match=\n", "pol:1: attribute 'match' has an empty value"),
            ("a.com verify match=*.a.com\n", "pol:1: match= name '*.a.com' is not a host name; use names like mx.example.com, .example.com for any subdomain, or the keywords nexthop, dot-nexthop, hostname, separated by ':'"),
            ("a.com may ciphers=export\n", "pol:1: ciphers=export is refused: export and null grades offer no real protection; use ciphers=medium or ciphers=high"),
            ("a.com may ciphers=NULL\n", "pol:1: ciphers=NULL is refused: export and null grades offer no real protection; use ciphers=medium or ciphers=high"),
            ("a.com may ciphers=super\n", "pol:1: unknown cipher grade ciphers=super; use high, medium or low"),
            ("a.com may ciphers=high ciphers=low\n", "pol:1: attribute 'ciphers' is given twice; keep one (list items go in one value, separated by ':')"),
            ("a.com may exclude=!3DES\n", "pol:1: exclude= item '!3DES' is not an OpenSSL cipher name or family; write bare names separated by ':', e.g. exclude=3DES:CAMELLIA (no '!')"),
            ("a.com may protocols=TLSv1.4\n", "pol:1: unknown protocol 'TLSv1.4' in protocols=TLSv1.4; use SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3, each optionally prefixed by !, >= or <="),
            ("a.com may protocols=<=SSLv3\n", "pol:1: protocols=<=SSLv3: '<=SSLv3' leaves no TLS version (tinymta never enables SSLv2 or SSLv3); use e.g. <=TLSv1.2"),
            ("a.com may cert=/c.pem\n", "pol:1: cert= and key= go together (a client certificate needs its private key); give both or neither"),
            ("a.com may key=\n", "pol:1: attribute 'key' has an empty value; give a file path"),
            ("[mx.a.com:25 may\n", "pol:1: malformed key '[mx.a.com:25': '[' without ']'; write [host] or [host]:port"),
            ("[mx.a.com]:0 may\n", "pol:1: malformed key '[mx.a.com]:0': after ']' expected ':port' with a port number from 1 to 65535, e.g. [mx.a.com]:587"),
            ("[mx.a.com]25 may\n", "pol:1: malformed key '[mx.a.com]25': after ']' expected ':port' with a port number from 1 to 65535, e.g. [mx.a.com]:587"),
            ("[mx..a.com] may\n", "pol:1: malformed key '[mx..a.com]': 'mx..a.com' is not a host name or IP address"),
            ("[] may\n", "pol:1: malformed key '[]': '' is not a host name or IP address"),
            ("192.0.2.7 may\n", "pol:1: key '192.0.2.7' is an IP address; IP next hops are written in brackets, e.g. [192.0.2.7] or [192.0.2.7]:2525"),
            ("a.com:x may\n", "pol:1: malformed key 'a.com:x': 'x' is not a port number from 1 to 65535"),
            ("é.com may\n", "pol:1: key 'é.com' is not ASCII; write internationalized domains in their A-label form (xn--...)"),
            ("a_com! may\n", "pol:1: malformed key 'a_com!': expected a domain (example.com), a parent domain (.example.com), a next hop ([host] or [host]:port) or *"),
            ("a.com may\nb.com may\nA.COM. encrypt\n", "pol:3: duplicate key 'A.COM.' (first defined at pol:1); keep one entry"),
            ("[MX.a.com]:25 may\n[mx.a.com]:smtp may\n", "pol:2: duplicate key '[mx.a.com]:smtp' (first defined at pol:1); keep one entry"),
            ("a.com may ciphers=high\n exclude=AES:AESGCM:AESCCM:CHACHA20:ARIA:CAMELLIA\n", "pol:1: ciphers=/exclude= leave no TLS 1.2-or-older cipher suite in the 'medium' profile; relax them or add protocols=>=TLSv1.3"),
        ];
        for (text, want) in cases {
            let got = parse_err(text);
            // The profile name in the last case follows the build's profile.
            let want = want.replace(
                "'medium' profile",
                &format!("'{}' profile", profile::active().name),
            );
            assert_eq!(got, want, "for {text:?}");
        }
    }

    #[test]
    fn lookup_precedence() {
        let full = "\
[mx.example.com]:587 secure
[mx.example.com]     verify
mx.example.com:587   fingerprint match=00112233445566778899AABBCCDDEEFF
mx.example.com       encrypt
.example.com         dane
*                    none
";
        // Remove the winning line each round: the next key in order must win.
        let bracketed = host("mx.example.com", 587, true);
        let plain = host("MX.example.com.", 587, false);
        let mut lines: Vec<&str> = full.lines().collect();
        let want_b = [
            Level::Secure,
            Level::Verify,
            Level::None,
            Level::None,
            Level::None,
            Level::None,
        ];
        let want_p = [
            Level::Fingerprint,
            Level::Fingerprint,
            Level::Fingerprint,
            Level::Encrypt,
            Level::Dane,
            Level::None,
        ];
        for round in 0..6 {
            let t = table(&lines.join("\n"));
            assert_eq!(
                t.lookup(&bracketed, Level::May).level,
                want_b[round],
                "round {round}"
            );
            assert_eq!(
                t.lookup(&plain, Level::May).level,
                want_p[round],
                "round {round}"
            );
            lines.remove(0);
        }
        let t = table("");
        assert_eq!(t.lookup(&bracketed, Level::May).level, Level::May);
        assert_eq!(t.lookup(&bracketed, Level::May).source, "default");

        // Domains: exact beats parent beats * beats default.
        let mut lines = vec![
            "sub.example.com secure",
            ".example.com verify",
            ".com encrypt",
            "* may",
        ];
        let want = [
            Level::Secure,
            Level::Verify,
            Level::Encrypt,
            Level::May,
            Level::Dane,
        ];
        for w in want {
            let t = table(&lines.join("\n"));
            assert_eq!(t.lookup(&dom("sub.example.com"), Level::Dane).level, w);
            if !lines.is_empty() {
                lines.remove(0);
            }
        }
        // A parent key matches any depth, never the domain itself.
        let t = table(".example.com verify\n");
        assert_eq!(
            t.lookup(&dom("a.b.example.com"), Level::May).level,
            Level::Verify
        );
        assert_eq!(t.lookup(&dom("example.com"), Level::May).level, Level::May);
        assert_eq!(
            t.lookup(&dom("badexample.com"), Level::May).level,
            Level::May
        );
        // Bracketed next hops never take domain entries (Postfix).
        let t = table("example.com secure\n.example.com secure\n");
        assert_eq!(
            t.lookup(&host("mx.example.com", 25, true), Level::May)
                .level,
            Level::May
        );
        // Port 25 has no special case: [h] is tried after [h]:25.
        let t = table("[h.example]:25 encrypt\n[h.example] verify\n");
        assert_eq!(
            t.lookup(&host("h.example", 25, true), Level::May).level,
            Level::Encrypt
        );
        assert_eq!(
            t.lookup(&host("h.example", 26, true), Level::May).level,
            Level::Verify
        );
    }

    #[test]
    fn ip_literals_compare_canonically() {
        let t = table("[IPv6:2001:DB8:0::1]:25 encrypt\n[192.0.2.1] verify\n");
        assert_eq!(
            t.lookup(&host("2001:db8::1", 25, true), Level::May).level,
            Level::Encrypt
        );
        assert_eq!(
            t.lookup(&host("192.0.2.1", 2525, true), Level::May).level,
            Level::Verify
        );
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

        // In a table, against the compiled profile.
        let prof = profile::active();
        let t = table("a.com encrypt protocols=>=TLSv1.2\n");
        let got = t.lookup(&dom("a.com"), Level::May).protocol_range();
        assert_eq!(got, (Tls12, prof.highest()));
        let d = Policy::default_for(Level::May).protocol_range();
        assert_eq!(d, (prof.lowest(), prof.highest()));
        if !prof.protocols.contains(&Tls11) {
            let e = parse_err("a.com encrypt protocols=TLSv1.1\n");
            assert!(
                e.starts_with("pol:1: protocols=TLSv1.1 leaves no TLS version this build offers"),
                "{e}"
            );
        }
    }

    #[test]
    fn name_pattern_defaults_and_expansion() {
        use NamePattern::{Exact, Subdomains};
        let verify = Policy::default_for(Level::Verify);
        assert_eq!(
            name_patterns(&verify, "example.com", "MX1.Example.NET."),
            vec![Exact("mx1.example.net".into())]
        );
        let secure = Policy::default_for(Level::Secure);
        assert_eq!(
            name_patterns(&secure, "Example.com", "mx1.example.net"),
            vec![
                Exact("example.com".into()),
                Subdomains("example.com".into())
            ]
        );
        let t = table(
            "a.example secure match=nexthop:dot-nexthop:hostname:.Example.NET:mx.other.org\n",
        );
        let p = t.lookup(&dom("a.example"), Level::May);
        assert_eq!(
            name_patterns(&p, "a.example", "mx.a.example"),
            vec![
                Exact("a.example".into()),
                Subdomains("a.example".into()),
                Exact("mx.a.example".into()),
                Subdomains("example.net".into()),
                Exact("mx.other.org".into()),
            ]
        );
        let shown: Vec<String> = name_patterns(&p, "a.example", "mx.a.example")
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown[..2], ["a.example", ".a.example"]);
        let dane = Policy::default_for(Level::Dane);
        assert_eq!(
            name_patterns(&dane, "a.example", "mx.a.example"),
            vec![Exact("mx.a.example".into()), Exact("a.example".into())]
        );
        for l in [Level::None, Level::May, Level::Encrypt] {
            assert!(name_patterns(&Policy::default_for(l), "a", "b").is_empty());
        }
        // No MX host name (e.g. unknown): no empty pattern that could match anything.
        assert!(name_patterns(&verify, "a.example", "").is_empty());
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
    fn fingerprints_normalize_and_check_digest() {
        let t = table(
            "[a.example] fingerprint match=3d7a0011223344556677889900aabbccddeeff00\n\
             \x20 match=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\n",
        );
        let p = t.lookup(&host("a.example", 25, true), Level::May);
        assert_eq!(
            p.matches,
            names(&[
                "3D:7A:00:11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF:00",
                "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
            ])
        );
        assert_eq!(
            t.check_fingerprint_length("sha256", 32).unwrap_err(),
            "t:1: fingerprint 3D:7A:00:11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF:00 has \
             20 bytes, but --tls-fingerprint-digest sha256 gives 32; recompute it with \
             `tinymta cert fingerprint` or change the digest"
        );
        assert!(table(SPEC_TABLE)
            .check_fingerprint_length("sha256", 32)
            .is_ok());
        assert_eq!(decode_fingerprint("3D:7"), None);
        assert_eq!(decode_fingerprint("zz"), None);
        assert!(check_default_level(Level::Fingerprint).is_err());
        assert!(check_default_level(Level::Dane).is_ok());
    }

    /// Client side of a half handshake: records the ClientHello, then blocks.
    #[derive(Default)]
    struct Capture(Vec<u8>);
    impl Read for Capture {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    /// Server side: replays the ClientHello.
    struct Replay(io::Cursor<Vec<u8>>);
    impl Read for Replay {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            match self.0.read(b)? {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        }
    }
    impl Write for Replay {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The TLS 1.2 suites a client with the profile and `list` really offers, by
    /// OpenSSL name: what the expansion of the string is on the wire. `None` when
    /// OpenSSL refuses the string.
    fn offered(list: &str) -> Option<Vec<String>> {
        let mut cb = profile::client_builder().unwrap();
        cb.set_cipher_list(list).ok()?;
        let v = Some(Protocol::Tls12.ssl_version());
        cb.set_min_proto_version(v).unwrap();
        cb.set_max_proto_version(v).unwrap();
        let hello = match Ssl::new(&cb.build()).unwrap().connect(Capture::default()) {
            Err(HandshakeError::WouldBlock(mid)) => mid.get_ref().0.clone(),
            _ => panic!("no ClientHello"),
        };
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let mut sb = SslContext::builder(SslMethod::tls_server()).unwrap();
        sb.set_client_hello_callback(move |ssl, _| {
            let bytes = ssl.client_hello_ciphers().unwrap_or_default().to_vec();
            if let Ok(l) = ssl.bytes_to_cipher_list(&bytes, false) {
                *sink.lock().unwrap() = l.suites.iter().map(|c| c.name().to_string()).collect();
            }
            Ok(ClientHelloResponse::RETRY)
        });
        let _ = Ssl::new(&sb.build())
            .unwrap()
            .accept(Replay(io::Cursor::new(hello)));
        let v = seen.lock().unwrap().clone();
        Some(v)
    }

    #[test]
    fn cipher_string_high_grade_without_3des() {
        let t = table("[192.0.2.7]:2525 encrypt ciphers=high exclude=3DES:CAMELLIA256\n");
        let p = t.lookup(&host("192.0.2.7", 2525, true), Level::May);
        let s = client_cipher_string(&p);
        assert!(s.ends_with(&format!(
            "!MEDIUM:!LOW:!3DES:!CAMELLIA256:!eNULL:@SECLEVEL={}",
            profile::active().security_level()
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
        let whole = offered(&client_cipher_string(&Policy::default_for(Level::May))).unwrap();
        if profile::active().name != "strict" {
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
        let may = client_cipher_string(&Policy::default_for(Level::May));
        assert!(!may.contains('!'), "opportunistic TLS narrowed: {may}");
        let verify = client_cipher_string(&Policy::default_for(Level::Verify));
        assert!(verify.contains("!eNULL:!aNULL"));
        let t = table("a.example encrypt exclude=TLS_AES_128_CCM_SHA256:SEED\n");
        let p = t.lookup(&dom("a.example"), Level::May);
        let s13 = client_ciphersuites(&p);
        assert!(
            !s13.contains("CCM") && s13.contains("TLS_AES_256_GCM_SHA384"),
            "{s13}"
        );
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_ciphersuites(&s13).unwrap();
        b.set_cipher_list(&client_cipher_string(&p)).unwrap();
        let e = parse_err(
            "a.example encrypt protocols=TLSv1.3 exclude=TLS_AES_256_GCM_SHA384:\
             TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256\n",
        );
        assert_eq!(
            e,
            "pol:1: exclude= removes every TLS 1.3 suite, and protocols= allows only TLS \
             1.3; relax one of them"
        );
    }

    #[test]
    fn load_resolves_and_checks_files() {
        let dir = std::env::temp_dir().join(format!("tinymta-policy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("c.pem"), "x").unwrap();
        fs::write(dir.join("k.pem"), "x").unwrap();
        let path = dir.join("policy");
        fs::write(&path, "[relay.example] encrypt cert=c.pem key=k.pem\n").unwrap();
        let t = PolicyTable::load(&path).unwrap();
        let p = t.lookup(&host("relay.example", 25, true), Level::May);
        assert_eq!(p.cert, Some(dir.join("c.pem")));
        assert_eq!(p.key, Some(dir.join("k.pem")));
        assert_eq!(p.source, format!("{}:1", path.display()));

        fs::write(
            &path,
            "a.example may\n\n[r.example] encrypt cert=c.pem key=nope.pem\n",
        )
        .unwrap();
        let e = PolicyTable::load(&path).unwrap_err();
        let want = format!(
            "{}:3: key={} cannot be read: ",
            path.display(),
            dir.join("nope.pem").display()
        );
        assert!(e.starts_with(&want), "{e}");

        fs::write(&path, b"a.example may\nb.example \xff may\n").unwrap();
        let e = PolicyTable::load(&path).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}:2: not valid UTF-8; save the table as UTF-8 or ASCII",
                path.display()
            )
        );
        let e = PolicyTable::load(&dir.join("missing")).unwrap_err();
        assert!(e.contains("cannot read the TLS policy table"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// xorshift64*: a deterministic stream, no extra dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn parser_is_total() {
        const WORDS: &[&str] = &[
            "example.com",
            "[mx.example.org]",
            "[192.0.2.7]:2525",
            ".gov",
            "*",
            "[",
            "]",
            ":",
            "=",
            "|",
            ",",
            " ",
            "\t",
            "\n",
            "\r\n",
            "#",
            "may",
            "none",
            "encrypt",
            "dane",
            "dane-only",
            "fingerprint",
            "verify",
            "secure",
            "match=",
            "match=a:b",
            "match=.x.y",
            "match=3D:7A",
            "match=00112233445566778899aabbccddeeff|",
            "protocols=",
            "protocols=>=TLSv1.2",
            "protocols=<=",
            "protocols=!TLSv1:TLSv1.3",
            "ciphers=high",
            "ciphers=",
            "exclude=3DES",
            "exclude=",
            "tafile=x",
            "cert=c",
            "key=k",
            "é",
            "\u{0}",
            "\u{feff}",
            "[::1]",
            "[ipv6:",
            ":65536",
            ":0",
            "..",
            "*.",
            "xn--",
            "\u{2028}",
            "=>",
            "<=SSLv3",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let nexthops = |rng: &mut Rng, s: &str| match rng.below(3) {
            0 => NextHop::Domain(s.to_string()),
            n => NextHop::Host {
                host: s.to_string(),
                port: rng.next() as u16,
                bracketed: n == 1,
            },
        };
        const KEYS: &[&str] = &[
            "example.com",
            "[mx.example.org]",
            "[192.0.2.7]:2525",
            ".gov",
            "*",
            "a.b.c",
            "[ipv6:2001:db8::1]",
            "h.example:587",
            ".example.com",
        ];
        const ATTRS: &[&str] = &[
            "match=a.example:.b.example",
            "match=hostname",
            "match=00112233445566778899aabbccddeeff",
            "protocols=>=TLSv1.2",
            "protocols=!TLSv1.2",
            "ciphers=high",
            "ciphers=low",
            "exclude=3DES:SEED",
            "tafile=ta.pem",
            "cert=c.pem",
            "key=k.pem",
        ];
        let mut ok = 0;
        for round in 0..3000 {
            let text = if round % 3 == 0 {
                let n = rng.below(200);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else if round % 3 == 1 {
                let n = rng.below(40);
                (0..n).map(|_| WORDS[rng.below(WORDS.len())]).collect()
            } else {
                // Mostly well-formed lines, so lookups run on real tables too.
                let mut t = String::new();
                for _ in 0..rng.below(6) {
                    t.push_str(KEYS[rng.below(KEYS.len())]);
                    t.push(' ');
                    t.push_str(Level::ALL[rng.below(8)].name());
                    for _ in 0..rng.below(3) {
                        t.push(' ');
                        t.push_str(ATTRS[rng.below(ATTRS.len())]);
                    }
                    t.push('\n');
                }
                t
            };
            let parsed = PolicyTable::parse(&text, "fuzz");
            if parsed.is_ok() {
                ok += 1;
            }
            match parsed {
                Ok(t) => {
                    for _ in 0..4 {
                        let probe: String = (0..rng.below(4))
                            .map(|_| WORDS[rng.below(WORDS.len())])
                            .collect();
                        let p = t.lookup(&nexthops(&mut rng, &probe), Level::May);
                        let pats = name_patterns(&p, &probe, &text);
                        let _ = name_matches(&pats, &[probe.clone(), text.clone()]);
                        let _ = client_cipher_string(&p);
                        let _ = p.protocol_range();
                    }
                    let _ = t.check_fingerprint_length("sha256", 32);
                }
                Err(e) => assert!(e.starts_with("fuzz:"), "{e}"),
            }
            let _ = Protocols::parse(&text);
            let _ = decode_fingerprint(&text);
        }
        assert!(
            ok > 100,
            "only {ok} inputs parsed: the generator misses the deep paths"
        );
    }
}
