//! The outbound TLS policy table (`--tls-policy FILE`, in Postfix
//! `smtp_tls_policy_maps` syntax so existing tables work): which [`Policy`] applies to a
//! next hop, and the names a server certificate must carry under it. Kept with the SMTP
//! client, as Postfix keeps its policy table in `smtp`, not in its TLS library.
//!
//! This module decides; it does not connect. It owns no sockets, no DNS and no
//! long-lived OpenSSL context, and knows nothing of queues. The outbound session:
//!
//! 1. looks up the [`Policy`] for its next hop with [`PolicyTable::lookup`];
//! 2. when [`Level::uses_dane`], fetches MX/TLSA state from DNS and folds it in with
//!    [`Level::effective_for_dane`], which yields the level to enforce or a deferral;
//! 3. asks that level's predicates ([`Level::requires_tls`], [`Level::must_match`],
//!    [`Level::must_verify_chain`]) what to enforce, and builds its context from
//!    [`Policy::tls`] and the names from [`name_patterns`].
//!
//! What the words mean lives in `tls/`: the levels in `tls::level`, `protocols=` and
//! `ciphers=` with the cipher profile (`tls::profile`), fingerprints in
//! `tls::fingerprint`, name matching in `tls::names`. Here is the table's syntax and
//! lookup order.
//!
//! Only [`PolicyTable::load`] touches the filesystem; [`PolicyTable::parse`] is a total
//! function of its text (every input gives a table or a `FILE:LINE: message` error),
//! so it can be fuzzed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::route::NextHop;
use crate::domain::{canonical_host, check_name, is_ip, parse_port, NameRules};
use crate::text::Joined;
use crate::tls::client::ContextPolicy;
use crate::tls::fingerprint;
use crate::tls::level::Level;
use crate::tls::names::NamePattern;
use crate::tls::profile::{self, Grade, Profile, Protocol, Protocols};

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

    /// Whether it comes from a table entry (not the default level for unlisted
    /// destinations).
    pub fn is_table_entry(&self) -> bool {
        self.source != "default"
    }

    /// The (min, max) versions to set on the client context: [`Protocols::range`].
    pub fn protocol_range(&self) -> (Protocol, Protocol) {
        self.protocols.range()
    }

    /// What the client context for this destination is built from.
    pub fn tls(&self) -> ContextPolicy<'_> {
        ContextPolicy {
            level: self.level,
            protocols: &self.protocols,
            ciphers: self.ciphers,
            exclude: &self.exclude,
            tafile: self.tafile.as_deref(),
            cert: self.cert.as_deref().zip(self.key.as_deref()),
            source: &self.source,
        }
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
                ..
            } => {
                let h = canonical_host(host);
                keys.push(format!("[{h}]:{port}"));
                keys.push(format!("[{h}]"));
            }
            NextHop::Host {
                host,
                port,
                bracketed: false,
                ..
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
                let n = fingerprint::parse_fingerprint(m).map_or(0, |b| b.len());
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
        if !(is_ip(&host) || check_name(&host, NameRules::DNS).is_ok()) {
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
        if check_name(d, NameRules::DNS).is_err() {
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
    if check_name(name, NameRules::DNS).is_err() {
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

/// The digest bytes of a `match=` fingerprint, if it has a digest's size (MD5, SHA-1
/// or SHA-256): a value of another length can never match, so it is a typo.
fn sized_fingerprint(s: &str) -> Option<Vec<u8>> {
    fingerprint::parse_fingerprint(s).filter(|b| matches!(b.len(), 16 | 20 | 32))
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
        .joined(", ")
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
                let bytes = sized_fingerprint(fp).ok_or_else(|| {
                    format!(
                        "'{fp}' is not a fingerprint: expected 16 (md5), 20 (sha1) or 32 \
                         (sha256) hex bytes such as 3D:7A:..., several separated by '|'; \
                         `tinymta cert fingerprint` prints them"
                    )
                })?;
                p.matches.push(fingerprint::colon_hex(&bytes));
            }
        }
        Level::Verify | Level::Secure => {
            for name in value.split(':').filter(|n| !n.is_empty()) {
                let n = name.to_ascii_lowercase();
                let n = n.strip_suffix('.').unwrap_or(&n);
                let ok = matches!(n, "nexthop" | "dot-nexthop" | "hostname")
                    || check_name(n.strip_prefix('.').unwrap_or(n), NameRules::DNS).is_ok();
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
    let list = profile::client_cipher_string(p.level, p.ciphers, &p.exclude);
    // TLS 1.3 is the highest version: anything else as the minimum is below it.
    let below_13 = min != Protocol::Tls13;
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
    if profile::client_ciphersuites(&p.exclude).is_empty() && !below_13 {
        return Err(
            "exclude= removes every TLS 1.3 suite, and protocols= allows only TLS 1.3; \
             relax one of them"
                .to_string(),
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::names::name_matches;

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
            implicit_tls: false,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
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
    fn protocols_in_a_table() {
        use Protocol::*;
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
        assert_eq!(sized_fingerprint("3D:7"), None);
        assert_eq!(sized_fingerprint("zz"), None);
        assert!(check_default_level(Level::Fingerprint).is_err());
        assert!(check_default_level(Level::Dane).is_ok());
    }

    #[test]
    fn cipher_attributes_reach_the_policy() {
        // tls::profile tests the cipher strings built from these fields.
        let t = table("[192.0.2.7]:2525 encrypt ciphers=high exclude=3DES:CAMELLIA256\n");
        let p = t.lookup(&host("192.0.2.7", 2525, true), Level::May);
        assert_eq!(p.level, Level::Encrypt);
        assert_eq!(p.ciphers, Some(Grade::High));
        assert_eq!(p.exclude, names(&["3DES", "CAMELLIA256"]));
        let t = table("a.example encrypt exclude=TLS_AES_128_CCM_SHA256:SEED\n");
        let p = t.lookup(&dom("a.example"), Level::May);
        assert_eq!(p.exclude, names(&["TLS_AES_128_CCM_SHA256", "SEED"]));
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
                implicit_tls: false,
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
                        let _ = profile::client_cipher_string(p.level, p.ciphers, &p.exclude);
                        let _ = p.protocol_range();
                    }
                    let _ = t.check_fingerprint_length("sha256", 32);
                }
                Err(e) => assert!(e.starts_with("fuzz:"), "{e}"),
            }
            let _ = Protocols::parse(&text);
            let _ = sized_fingerprint(&text);
        }
        assert!(
            ok > 100,
            "only {ok} inputs parsed: the generator misses the deep paths"
        );
    }
}
