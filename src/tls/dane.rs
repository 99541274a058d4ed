//! DANE authentication of an SMTP server's certificate chain (RFC 7672, RFC 7671): which
//! TLSA records are usable for SMTP, matching them against the chain the server sent,
//! and the Postfix-style log line for the outcome.
//!
//! This module owns only the certificate side. Looking the records up, deciding whether
//! the RRset was DNSSEC-validated, and what "no usable records" means for a delivery
//! (`dane` falls back to `encrypt`, `dane-only` defers: `tls::level`) belong to the DNS
//! code and the outbound delivery; they hand us the validated records, the chain and the
//! reference names. Names are compared by `tls::names`, as for verify/secure.
//!
//! Supported: DANE-EE(3) and DANE-TA(2) with selectors 0/1 and matching types 0/1/2.
//! DANE-TA anchors may be a certificate the server sent (any digest), a full certificate
//! published in the record (`2 0 0`), or a bare public key published in the record
//! (`2 1 0`, the anchor then sits one above the topmost certificate it signed). Not
//! supported, by design or because nothing can be done:
//! - a TA record that digests (`2 x 1`, `2 x 2`) a certificate the server did not send:
//!   there is nothing to hash; RFC 7672 §3.1.2 requires servers to send it;
//! - a DANE-TA record matching the leaf itself (depth 0): as in OpenSSL's DANE code,
//!   TA records are only tried above the leaf;
//! - names other than DNS names (no IP addresses, no SRV-ID/URI-ID); reference names
//!   must already be A-labels, the certificate's names are compared as ASCII;
//! - PKIX-TA(0)/PKIX-EE(1), which RFC 7672 §3.1.3 makes unusable for SMTP.

use openssl::pkey::{PKey, Public};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509PurposeId, X509Ref, X509StoreContext, X509};

use super::fingerprint::{self, Digest};
use super::names::{self, NamePattern};

use crate::text::Joined;

/// DANE-TA(2): the record names a trust anchor the chain must verify up to.
pub const USAGE_DANE_TA: u8 = 2;
/// DANE-EE(3): the record names the server's own certificate or key.
pub const USAGE_DANE_EE: u8 = 3;
/// Selector 0: the whole certificate (DER).
pub const SELECTOR_CERT: u8 = 0;
/// Selector 1: the SubjectPublicKeyInfo (DER).
pub const SELECTOR_SPKI: u8 = 1;
/// Matching type 0: the selected bytes themselves.
pub const MATCH_FULL: u8 = 0;
/// Matching type 1: SHA2-256 of the selected bytes.
pub const MATCH_SHA256: u8 = 1;
/// Matching type 2: SHA2-512 of the selected bytes.
pub const MATCH_SHA512: u8 = 2;

/// Log lines show at most this many bytes of record data: a `x x 0` record holds a
/// whole certificate or key, which would swamp the log; digests fit whole.
const LOG_DATA_MAX: usize = 64;

/// At most this many anchor failures are spelled out in a `NoMatch` reason.
const MAX_REASONS: usize = 3;

/// One TLSA record as the TLS side sees it. The DNS module has its own type with the
/// same fields; keeping this one here means TLS code does not depend on the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// `2 0 1 abcd...`, the record in presentation form (lower-case hex).
    pub fn presentation(&self) -> String {
        format!(
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching,
            fingerprint::lower_hex(&self.data)
        )
    }

    /// Whether RFC 7672 lets an SMTP client use this record.
    fn is_usable(&self) -> bool {
        let usage_ok = matches!(self.usage, USAGE_DANE_TA | USAGE_DANE_EE);
        let selector_ok = matches!(self.selector, SELECTOR_CERT | SELECTOR_SPKI);
        // A digest of the wrong length can never match: RFC 7671 counts such records as
        // malformed, hence unusable, and so is an empty "full" value.
        let data_ok = match self.matching {
            MATCH_FULL => !self.data.is_empty(),
            MATCH_SHA256 => self.data.len() == 32,
            MATCH_SHA512 => self.data.len() == 64,
            _ => false,
        };
        usage_ok && selector_ok && data_ok
    }
}

/// The records an SMTP client may use: DANE-TA(2) and DANE-EE(3), selectors 0 and 1,
/// matching types 0, 1 and 2 with data of a consistent length. The rest are skipped, as
/// RFC 7672 §3.1.3 requires; when nothing is left the caller treats the destination as
/// having TLSA records but none usable (mandatory unauthenticated TLS).
pub fn usable(records: &[Tlsa]) -> Vec<&Tlsa> {
    records.iter().filter(|r| r.is_usable()).collect()
}

/// What checking a chain against the TLSA records found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneOutcome {
    /// A record authenticated the chain. `depth` is the position in the verified chain
    /// of the matched certificate (0 = leaf) or, for a bare-key trust anchor, the
    /// position the anchor takes above the topmost certificate it signed. `hex` is the
    /// record data in lower-case hex.
    Matched {
        usage: u8,
        selector: u8,
        matching: u8,
        depth: usize,
        hex: String,
    },
    /// No record authenticated the chain; the reason is for the log.
    NoMatch(String),
}

/// One sent certificate's bytes under both selectors, extracted once per chain rather
/// than once per record.
struct Selected {
    cert: Vec<u8>,
    spki: Option<Vec<u8>>,
}

impl Selected {
    fn of(cert: &X509Ref) -> Selected {
        Selected {
            cert: cert.to_der().unwrap_or_default(),
            spki: fingerprint::spki_der(cert),
        }
    }

    fn matches(&self, r: &Tlsa) -> bool {
        let bytes = match r.selector {
            SELECTOR_CERT => self.cert.as_slice(),
            SELECTOR_SPKI => match &self.spki {
                Some(s) => s.as_slice(),
                None => return false,
            },
            _ => return false,
        };
        // Empty only after an internal failure; it must never equal anything.
        if bytes.is_empty() {
            return false;
        }
        match r.matching {
            MATCH_FULL => bytes == r.data.as_slice(),
            MATCH_SHA256 => fingerprint::digest(Digest::Sha256, bytes) == r.data,
            MATCH_SHA512 => fingerprint::sha512(bytes) == r.data,
            _ => false,
        }
    }
}

/// Authenticates `chain` (leaf first, as the peer sent it) with `records`.
///
/// DANE-EE(3) records are compared with the leaf only, with neither name nor expiry
/// checks (RFC 7672 §3.1.1): they pin the key, whatever else the certificate says.
///
/// DANE-TA(2) records name an anchor; the chain from the leaf up to it must verify
/// (signatures, CA constraints, the TLS server purpose as OpenSSL checks it for a client,
/// and validity dates when `now_check_expiry_for_ta`), and the leaf must carry one of
/// `reference_names` (RFC 7672 §3.2.2: the next-hop domain and/or MX hostname; a name
/// starting with `.` accepts any subdomain, as Postfix's `match=.example.com`). Names
/// are taken from DNS subjectAltNames, or from the subject CN only when there are none;
/// a wildcard is honoured only as the whole left-most label.
pub fn verify_chain(
    records: &[Tlsa],
    chain: &[X509],
    reference_names: &[String],
    now_check_expiry_for_ta: bool,
) -> DaneOutcome {
    let usable = usable(records);
    if usable.is_empty() {
        return DaneOutcome::NoMatch(format!(
            "no usable TLSA records ({} given, none usable for SMTP)",
            records.len()
        ));
    }
    let Some(leaf) = chain.first() else {
        return DaneOutcome::NoMatch("server presented no certificate".to_string());
    };
    let selected: Vec<Selected> = chain.iter().map(|c| Selected::of(c)).collect();

    if let Some(leaf_selected) = selected.first() {
        for r in usable.iter().filter(|r| r.usage == USAGE_DANE_EE) {
            if leaf_selected.matches(r) {
                return matched(r, 0);
            }
        }
    }

    let ta: Vec<&Tlsa> = usable
        .iter()
        .copied()
        .filter(|r| r.usage == USAGE_DANE_TA)
        .collect();
    if ta.is_empty() {
        return DaneOutcome::NoMatch(format!(
            "no DANE-EE record matched the server certificate ({} usable records)",
            usable.len()
        ));
    }

    // Why each anchor that matched did not work, reported when nothing succeeds.
    let mut failures: Vec<String> = Vec::new();
    for r in ta {
        let mut in_chain = false;
        for (i, (cert, sel)) in chain.iter().zip(&selected).enumerate().skip(1) {
            if !sel.matches(r) {
                continue;
            }
            in_chain = true;
            match verify_to_anchor(chain, cert, now_check_expiry_for_ta) {
                Ok(depth) => return after_name_check(r, depth, leaf, reference_names),
                Err(e) => failures.push(format!(
                    "{} matched the certificate sent at depth {i} but the chain does not \
                     verify: {e}",
                    short(r)
                )),
            }
        }
        if in_chain || r.matching != MATCH_FULL {
            continue;
        }
        // A full anchor published in DNS but not sent by the server.
        let attempt = match r.selector {
            SELECTOR_CERT => full_cert_anchor(chain, &r.data, now_check_expiry_for_ta),
            SELECTOR_SPKI => full_key_anchor(chain, &r.data, now_check_expiry_for_ta),
            _ => continue,
        };
        match attempt {
            Ok(depth) => return after_name_check(r, depth, leaf, reference_names),
            Err(Some(e)) => failures.push(format!("{}: {e}", short(r))),
            Err(None) => {}
        }
    }

    let mut why = format!(
        "no TLSA record matched the certificate chain ({} usable records, {} certificates)",
        usable.len(),
        chain.len()
    );
    // A few reasons say what is wrong; a peer sending a long chain must not make the log
    // line grow without bound.
    for f in failures.iter().take(MAX_REASONS) {
        why.push_str("; ");
        why.push_str(f);
    }
    if failures.len() > MAX_REASONS {
        why.push_str(&format!("; and {} more", failures.len() - MAX_REASONS));
    }
    DaneOutcome::NoMatch(why)
}

fn matched(r: &Tlsa, depth: usize) -> DaneOutcome {
    DaneOutcome::Matched {
        usage: r.usage,
        selector: r.selector,
        matching: r.matching,
        depth,
        hex: fingerprint::lower_hex(&r.data),
    }
}

/// The chain verified up to a TA record's anchor; the name check decides. Another TA
/// record cannot help a failed name check (the leaf's names are the same whichever
/// anchor vouches for them), so the failure is final.
fn after_name_check(
    r: &Tlsa,
    depth: usize,
    leaf: &X509Ref,
    reference_names: &[String],
) -> DaneOutcome {
    if reference_names.is_empty() {
        // RFC 7672 §3.2 requires the name check for DANE-TA; without names it cannot
        // pass, and passing silently would let any certificate from that CA through.
        return DaneOutcome::NoMatch(format!(
            "{} matched at depth {depth} but no reference names were given for the \
             DANE-TA name check",
            short(r)
        ));
    }
    if name_check(leaf, reference_names) {
        return matched(r, depth);
    }
    let presented = presented_names(leaf);
    DaneOutcome::NoMatch(format!(
        "{} matched at depth {depth} but the name check failed: certificate names [{}] \
         match none of [{}]",
        short(r),
        presented.joined(", "),
        reference_names.joined(", ")
    ))
}

/// `2 0 1 abcd1234...`: a record in a reason string, digest cut short.
fn short(r: &Tlsa) -> String {
    let shown = &r.data[..r.data.len().min(8)];
    let more = if r.data.len() > shown.len() {
        "..."
    } else {
        ""
    };
    format!(
        "TLSA {} {} {} {}{more}",
        r.usage,
        r.selector,
        r.matching,
        fingerprint::lower_hex(shown)
    )
}

/// Verifies the leaf up to `anchor`, the only trusted certificate, with the rest of
/// the sent chain as untrusted intermediates. Returns the anchor's depth in the chain
/// OpenSSL built, or the verification error.
///
/// `PARTIAL_CHAIN` lets a non-self-signed anchor (an intermediate named by the record)
/// end the chain, as DANE-TA requires; the TLS-server purpose matches what OpenSSL
/// checks for a client handshake, so a DANE-TA chain is held to the same rules as
/// Postfix's.
fn verify_to_anchor(chain: &[X509], anchor: &X509Ref, check_time: bool) -> Result<usize, String> {
    let leaf = chain.first().ok_or("no certificate")?;
    let err = |e: openssl::error::ErrorStack| format!("OpenSSL error: {e}");
    let mut store = X509StoreBuilder::new().map_err(err)?;
    store.add_cert(anchor.to_owned()).map_err(err)?;
    let mut flags = X509VerifyFlags::PARTIAL_CHAIN;
    if !check_time {
        flags |= X509VerifyFlags::NO_CHECK_TIME;
    }
    store.set_flags(flags).map_err(err)?;
    store.set_purpose(X509PurposeId::SSL_SERVER).map_err(err)?;
    let store = store.build();
    let mut untrusted = Stack::new().map_err(err)?;
    for c in chain.iter().skip(1) {
        untrusted.push(c.clone()).map_err(err)?;
    }
    let mut ctx = X509StoreContext::new().map_err(err)?;
    ctx.init(&store, leaf, &untrusted, |ctx| {
        if ctx.verify_cert()? {
            // The anchor is the only trusted certificate, so it tops the built chain.
            let top = ctx.chain().map(|c| c.len()).unwrap_or(1);
            Ok(Ok(top.saturating_sub(1)))
        } else {
            Ok(Err(format!(
                "{} at depth {}",
                ctx.error().error_string(),
                ctx.error_depth()
            )))
        }
    })
    .map_err(err)?
}

/// `2 0 0`: the anchor certificate comes from the record. `Err(None)` when the data is
/// not a certificate (nothing to report beyond "no match").
fn full_cert_anchor(
    chain: &[X509],
    data: &[u8],
    check_time: bool,
) -> Result<usize, Option<String>> {
    let anchor = X509::from_der(data).map_err(|_| None)?;
    verify_to_anchor(chain, &anchor, check_time).map_err(|e| {
        Some(format!(
            "chain does not verify to the published certificate: {e}"
        ))
    })
}

/// `2 1 0`: the anchor is a bare public key. The topmost sent certificate whose signature
/// that key verifies is trusted as the end of the chain (its own validity is still
/// checked), and the key stands one level above it.
fn full_key_anchor(chain: &[X509], data: &[u8], check_time: bool) -> Result<usize, Option<String>> {
    let key: PKey<Public> = PKey::public_key_from_der(data).map_err(|_| None)?;
    let mut last_err = None;
    // Highest first: the longest verified path is the one the server meant.
    for cert in chain.iter().rev() {
        if !cert.verify(&key).unwrap_or(false) {
            continue;
        }
        match verify_to_anchor(chain, cert, check_time) {
            Ok(depth) => return Ok(depth + 1),
            Err(e) => {
                last_err = Some(format!(
                    "chain does not verify to the certificate signed by the published key: {e}"
                ))
            }
        }
    }
    Err(last_err)
}

/// The DNS names the leaf presents: DNS subjectAltNames, or the subject CNs only when it
/// has none (RFC 7672 §3.2.3, after RFC 6125 §6.4.4).
pub fn presented_names(leaf: &X509Ref) -> Vec<String> {
    let sans: Vec<String> = leaf
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    leaf.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        // Raw bytes, not a NUL-terminated conversion: a CN like "mx.example.test\0.evil"
        // must stay whole so it cannot pass as its prefix. Names are ASCII (A-labels), so
        // a CN that is not UTF-8 as stored (e.g. a BMPString) is not a DNS name here.
        .filter_map(|e| {
            std::str::from_utf8(e.data().as_slice())
                .ok()
                .map(str::to_string)
        })
        .collect()
}

/// Whether the leaf carries one of the reference names, by the same RFC 6125 rules as
/// the verify/secure name check (`.example.com` accepts any subdomain).
fn name_check(leaf: &X509Ref, reference_names: &[String]) -> bool {
    let patterns: Vec<NamePattern> = reference_names
        .iter()
        .map(|r| NamePattern::parse(r))
        .collect();
    names::name_matches(&patterns, &presented_names(leaf))
}

/// The Postfix-style log line for an outcome:
/// `Matched DANE TA certificate at depth 1: 2 0 1 ...` or
/// `Matched DANE EE public key at depth 0: 3 1 1 ...`. Full-value records (matching type
/// 0) are shown cut to their first bytes.
pub fn log_line(outcome: &DaneOutcome) -> String {
    match outcome {
        DaneOutcome::Matched {
            usage,
            selector,
            matching,
            depth,
            hex,
        } => {
            let role = if *usage == USAGE_DANE_TA { "TA" } else { "EE" };
            let what = if *selector == SELECTOR_SPKI {
                "public key"
            } else {
                "certificate"
            };
            let limit = LOG_DATA_MAX * 2;
            let shown = if hex.len() > limit {
                format!("{}...", hex.get(..limit).unwrap_or(hex))
            } else {
                hex.clone()
            };
            format!("Matched DANE {role} {what} at depth {depth}: {usage} {selector} {matching} {shown}")
        }
        DaneOutcome::NoMatch(why) => format!("DANE TLSA authentication failed: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::OnceLock;

    use openssl::pkey::Private;

    use crate::tls::fingerprint::tests::{key, make_cert, Spec};

    struct Pki {
        ca: X509,
        int: X509,
        leaf: X509,
        self_signed: X509,
        expired_self: X509,
        expired_leaf: X509,
        wildcard_leaf: X509,
        cn_only_leaf: X509,
        other: X509,
    }

    /// One PKI for all tests: root CA → intermediate → leaves for mx.example.test.
    fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let past = Some((978_307_200, 1_009_843_200)); // 2001-01-01 .. 2002-01-01
            let leaf_spec = |serial| Spec {
                cn: "mx.example.test",
                sans: &["mx.example.test"],
                ca: false,
                validity: None,
                serial,
            };
            let ca_key = key();
            let ca = make_cert(
                &Spec {
                    cn: "Test Root CA",
                    sans: &[],
                    ca: true,
                    validity: None,
                    serial: 1,
                },
                &ca_key,
                None,
            );
            let int_key = key();
            let int = make_cert(
                &Spec {
                    cn: "Test Intermediate CA",
                    sans: &[],
                    ca: true,
                    validity: None,
                    serial: 2,
                },
                &int_key,
                Some((&ca, &ca_key)),
            );
            let by_int: Option<(&X509, &PKey<Private>)> = Some((&int, &int_key));
            let leaf = make_cert(&leaf_spec(3), &key(), by_int);
            let self_signed = make_cert(&leaf_spec(4), &key(), None);
            let expired_self = make_cert(
                &Spec {
                    validity: past,
                    ..leaf_spec(5)
                },
                &key(),
                None,
            );
            let expired_leaf = make_cert(
                &Spec {
                    validity: past,
                    ..leaf_spec(6)
                },
                &key(),
                by_int,
            );
            let wildcard_leaf = make_cert(
                &Spec {
                    cn: "wildcard",
                    sans: &["*.example.test"],
                    ..leaf_spec(7)
                },
                &key(),
                by_int,
            );
            let cn_only_leaf = make_cert(
                &Spec {
                    sans: &[],
                    ..leaf_spec(8)
                },
                &key(),
                by_int,
            );
            let other = make_cert(&leaf_spec(9), &key(), None);
            Pki {
                ca,
                int,
                leaf,
                self_signed,
                expired_self,
                expired_leaf,
                wildcard_leaf,
                cn_only_leaf,
                other,
            }
        })
    }

    /// The TLSA record for `cert` with the given parameters, computed independently of
    /// the matching code (through the fingerprint module and OpenSSL's key encoder).
    fn tlsa(usage: u8, selector: u8, matching: u8, cert: &X509) -> Tlsa {
        let bytes = match selector {
            0 => cert.to_der().expect("der"),
            _ => cert
                .public_key()
                .and_then(|k| k.public_key_to_der())
                .expect("spki"),
        };
        let data = match matching {
            0 => bytes,
            1 => fingerprint::digest(Digest::Sha256, &bytes),
            _ => fingerprint::sha512(&bytes),
        };
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn mx() -> Vec<String> {
        names(&["mx.example.test", "example.test"])
    }

    fn full_chain() -> Vec<X509> {
        let p = pki();
        vec![p.leaf.clone(), p.int.clone(), p.ca.clone()]
    }

    fn depth_of(o: &DaneOutcome) -> Option<(u8, usize)> {
        match o {
            DaneOutcome::Matched { usage, depth, .. } => Some((*usage, *depth)),
            DaneOutcome::NoMatch(_) => None,
        }
    }

    fn why(o: &DaneOutcome) -> &str {
        match o {
            DaneOutcome::NoMatch(w) => w,
            DaneOutcome::Matched { .. } => panic!("expected NoMatch, got {o:?}"),
        }
    }

    #[test]
    fn dane_ee_matches_every_form() {
        let p = pki();
        for (s, m) in [(1, 1), (0, 1), (1, 2), (0, 0), (1, 0), (0, 2)] {
            let r = tlsa(3, s, m, &p.leaf);
            let o = verify_chain(std::slice::from_ref(&r), &full_chain(), &mx(), true);
            assert_eq!(
                o,
                DaneOutcome::Matched {
                    usage: 3,
                    selector: s,
                    matching: m,
                    depth: 0,
                    hex: fingerprint::lower_hex(&r.data)
                },
                "3 {s} {m}"
            );
        }
        let o = verify_chain(&[tlsa(3, 1, 1, &p.leaf)], &full_chain(), &mx(), true);
        let line = log_line(&o);
        assert!(
            line.starts_with("Matched DANE EE public key at depth 0: 3 1 1 "),
            "{line}"
        );
        assert_eq!(
            line.len(),
            "Matched DANE EE public key at depth 0: 3 1 1 ".len() + 64
        );
        let o = verify_chain(&[tlsa(3, 0, 1, &p.leaf)], &full_chain(), &mx(), true);
        assert!(log_line(&o).starts_with("Matched DANE EE certificate at depth 0: 3 0 1 "));
        // A full certificate is cut in the log line.
        let o = verify_chain(&[tlsa(3, 0, 0, &p.leaf)], &full_chain(), &mx(), true);
        assert!(log_line(&o).ends_with("..."));
    }

    #[test]
    fn dane_ee_ignores_expiry_and_names() {
        // RFC 7672 §3.1.1: the key is pinned; dates and names do not matter.
        let p = pki();
        let chain = vec![p.expired_self.clone()];
        let o = verify_chain(&[tlsa(3, 1, 1, &p.expired_self)], &chain, &[], true);
        assert_eq!(depth_of(&o), Some((3, 0)));
        let o = verify_chain(
            &[tlsa(3, 0, 1, &p.expired_self)],
            &chain,
            &names(&["elsewhere.test"]),
            true,
        );
        assert_eq!(depth_of(&o), Some((3, 0)));
    }

    #[test]
    fn wrong_digest_does_not_match() {
        let p = pki();
        let mut r = tlsa(3, 1, 1, &p.leaf);
        r.data[0] ^= 1;
        let o = verify_chain(&[r, tlsa(3, 1, 1, &p.other)], &full_chain(), &mx(), true);
        assert!(why(&o).contains("no DANE-EE record matched"), "{o:?}");
        assert!(log_line(&o).starts_with("DANE TLSA authentication failed: "));
        // An EE record for an intermediate does not match: EE is the leaf only.
        let o = verify_chain(&[tlsa(3, 1, 1, &p.int)], &full_chain(), &mx(), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
    }

    #[test]
    fn dane_ta_on_root_and_intermediate() {
        let p = pki();
        let o = verify_chain(&[tlsa(2, 0, 1, &p.ca)], &full_chain(), &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
        assert!(
            log_line(&o).starts_with("Matched DANE TA certificate at depth 2: 2 0 1 "),
            "{o:?}"
        );
        let o = verify_chain(&[tlsa(2, 1, 1, &p.int)], &full_chain(), &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 1)));
        assert!(log_line(&o).starts_with("Matched DANE TA public key at depth 1: 2 1 1 "));
        let o = verify_chain(&[tlsa(2, 1, 2, &p.ca)], &full_chain(), &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
        // The intermediate as anchor needs no root sent at all.
        let short_chain = vec![p.leaf.clone(), p.int.clone()];
        let o = verify_chain(&[tlsa(2, 0, 1, &p.int)], &short_chain, &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 1)));
        // An EE record that fails and a TA record that works: the TA one decides.
        let mut bad = tlsa(3, 1, 1, &p.leaf);
        bad.data[5] ^= 0x80;
        let o = verify_chain(&[bad, tlsa(2, 0, 1, &p.ca)], &full_chain(), &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
    }

    #[test]
    fn dane_ta_anchor_published_in_full() {
        // The server sends leaf + intermediate only; the record carries the root.
        let p = pki();
        let chain = vec![p.leaf.clone(), p.int.clone()];
        let o = verify_chain(&[tlsa(2, 0, 0, &p.ca)], &chain, &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 2)), "{o:?}");
        let o = verify_chain(&[tlsa(2, 1, 0, &p.ca)], &chain, &mx(), true);
        assert_eq!(depth_of(&o), Some((2, 2)), "{o:?}");
        assert!(log_line(&o).starts_with("Matched DANE TA public key at depth 2: 2 1 0 "));
        // Only the leaf sent, the intermediate's key published: anchor above the leaf.
        let o = verify_chain(
            &[tlsa(2, 1, 0, &p.int)],
            std::slice::from_ref(&p.leaf),
            &mx(),
            true,
        );
        assert_eq!(depth_of(&o), Some((2, 1)), "{o:?}");
        // A digest of a certificate that was not sent cannot be checked.
        let o = verify_chain(&[tlsa(2, 0, 1, &p.ca)], &chain, &mx(), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
        // A published key that signed nothing in the chain.
        let o = verify_chain(&[tlsa(2, 1, 0, &p.other)], &chain, &mx(), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
        // Garbage where a certificate or key should be: no match, no panic.
        for s in [0, 1] {
            let r = Tlsa {
                usage: 2,
                selector: s,
                matching: 0,
                data: vec![0x30, 0x82, 0xff],
            };
            assert!(matches!(
                verify_chain(&[r], &chain, &mx(), true),
                DaneOutcome::NoMatch(_)
            ));
        }
    }

    #[test]
    fn dane_ta_name_check() {
        let p = pki();
        let ta = [tlsa(2, 0, 1, &p.ca)];
        let o = verify_chain(&ta, &full_chain(), &names(&["mx.other.test"]), true);
        let w = why(&o);
        assert!(w.contains("name check failed"), "{w}");
        assert!(
            w.contains("mx.example.test") && w.contains("mx.other.test"),
            "{w}"
        );
        let o = verify_chain(&ta, &full_chain(), &[], true);
        assert!(why(&o).contains("no reference names"));
        // Next-hop domain alone does not match mx.example.test; its subdomain form does.
        let o = verify_chain(&ta, &full_chain(), &names(&["example.test"]), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
        let o = verify_chain(&ta, &full_chain(), &names(&[".example.test"]), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
        // Case and a trailing dot do not matter.
        let o = verify_chain(&ta, &full_chain(), &names(&["MX.Example.Test."]), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
        // Wildcard SAN, and CN used when there is no DNS SAN.
        let chain = vec![p.wildcard_leaf.clone(), p.int.clone(), p.ca.clone()];
        let o = verify_chain(&ta, &chain, &names(&["mx.example.test"]), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
        let o = verify_chain(&ta, &chain, &names(&["example.test"]), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
        let chain = vec![p.cn_only_leaf.clone(), p.int.clone(), p.ca.clone()];
        let o = verify_chain(&ta, &chain, &names(&["mx.example.test"]), true);
        assert_eq!(depth_of(&o), Some((2, 2)));
    }

    #[test]
    fn dane_ta_expiry_follows_the_flag() {
        let p = pki();
        let chain = vec![p.expired_leaf.clone(), p.int.clone(), p.ca.clone()];
        let ta = [tlsa(2, 0, 1, &p.ca)];
        let o = verify_chain(&ta, &chain, &mx(), true);
        assert!(why(&o).contains("expired"), "{o:?}");
        let o = verify_chain(&ta, &chain, &mx(), false);
        assert_eq!(depth_of(&o), Some((2, 2)));
    }

    #[test]
    fn dane_ta_requires_a_real_chain() {
        let p = pki();
        // The root is sent and matches, but did not issue this self-signed leaf.
        let chain = vec![p.self_signed.clone(), p.int.clone(), p.ca.clone()];
        let o = verify_chain(&[tlsa(2, 0, 1, &p.ca)], &chain, &mx(), true);
        assert!(why(&o).contains("does not verify"), "{o:?}");
        // A TA record for the leaf itself is not tried at depth 0.
        let chain = vec![p.self_signed.clone()];
        let o = verify_chain(&[tlsa(2, 0, 1, &p.self_signed)], &chain, &mx(), true);
        assert!(matches!(o, DaneOutcome::NoMatch(_)));
        let o = verify_chain(&[tlsa(3, 1, 1, &p.leaf)], &[], &mx(), true);
        assert!(why(&o).contains("no certificate"));
    }

    #[test]
    fn pkix_usages_are_unusable() {
        let p = pki();
        let records = [
            tlsa(0, 0, 1, &p.ca),
            tlsa(1, 1, 1, &p.leaf),
            tlsa(1, 0, 1, &p.leaf),
        ];
        assert!(usable(&records).is_empty());
        let o = verify_chain(&records, &full_chain(), &mx(), true);
        assert!(why(&o).contains("no usable TLSA records"), "{o:?}");
    }

    #[test]
    fn malformed_records_are_skipped() {
        let p = pki();
        let good = tlsa(3, 1, 1, &p.leaf);
        let with = |u, s, m, data: Vec<u8>| Tlsa {
            usage: u,
            selector: s,
            matching: m,
            data,
        };
        let d = good.data.clone();
        let bad = vec![
            with(3, 1, 1, d[..31].to_vec()),
            with(3, 1, 1, [d.as_slice(), &[0]].concat()),
            with(3, 1, 2, d.clone()),
            with(3, 1, 0, Vec::new()),
            with(3, 2, 1, d.clone()),
            with(3, 1, 3, d.clone()),
            with(4, 1, 1, d.clone()),
            with(255, 255, 255, d.clone()),
        ];
        assert!(usable(&bad).is_empty());
        let o = verify_chain(&bad, &full_chain(), &mx(), true);
        assert!(why(&o).contains("no usable"));
        let mut all = bad.clone();
        all.push(good.clone());
        assert_eq!(usable(&all), vec![&good]);
        assert_eq!(
            depth_of(&verify_chain(&all, &full_chain(), &mx(), true)),
            Some((3, 0))
        );
    }

    #[test]
    fn presentation_form() {
        let r = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab, 0x01],
        };
        assert_eq!(r.presentation(), "3 1 1 ab01");
        assert_eq!(
            fingerprint::tlsa_311(&pki().leaf),
            tlsa(3, 1, 1, &pki().leaf).presentation()
        );
    }
}
