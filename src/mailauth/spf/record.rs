//! SPF records (RFC 7208 §4.5, §4.6, §5, §6; the grammar of §12): which TXT string is
//! an SPF record, and its terms parsed into directives and the two modifiers that
//! matter. Pure, and fuzzed (`fuzz/fuzz_targets/spf_record.rs`): the record is data
//! from anyone's DNS. The whole record is parsed before any of it is evaluated, so a
//! syntax error anywhere is a `permerror` (§4.6), even after a matching mechanism.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::macros::{MacroString, Place};

/// The result a directive gives when its mechanism matches (§4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+`, the default.
    Pass,
    /// `-`
    Fail,
    /// `~`
    SoftFail,
    /// `?`
    Neutral,
}

/// The prefix lengths of `a` and `mx` (§5.6 `dual-cidr-length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub v4: u8,
    pub v6: u8,
}

impl Cidr {
    /// No prefix given: the whole address must match.
    pub const EXACT: Cidr = Cidr { v4: 32, v6: 128 };
}

/// A mechanism (§5) with its arguments; a missing `domain-spec` means the current
/// domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    A(Option<MacroString>, Cidr),
    Mx(Option<MacroString>, Cidr),
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

impl Mechanism {
    /// Whether evaluating it queries DNS and so counts against the limit of 10
    /// (§4.6.4; the `redirect` modifier counts too).
    pub fn queries_dns(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..)
        )
    }
}

/// A qualifier and a mechanism, with the term as written (for logs and headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
    pub text: String,
}

/// A parsed SPF record. Unknown modifiers are checked for syntax and dropped (§6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub directives: Vec<Directive>,
    /// `redirect=` (§6.1).
    pub redirect: Option<MacroString>,
    /// `exp=` (§6.2).
    pub explanation: Option<MacroString>,
}

/// Why a record does not parse: the term and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub term: String,
    pub why: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug-quoted: the term is anyone's DNS data, control characters included.
        write!(f, "{}: {:?}", self.why, self.term)
    }
}

/// Whether a TXT string is an SPF record: `v=spf1`, in any case, alone or followed
/// by a space (§4.5). `v=spf10` is not one.
pub fn is_spf(txt: &str) -> bool {
    let b = txt.as_bytes();
    b.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"v=spf1"))
        && matches!(b.get(6), None | Some(b' '))
}

impl Record {
    /// Parses an SPF record (a TXT string for which [`is_spf`] holds).
    pub fn parse(txt: &str) -> Result<Record, SyntaxError> {
        if !is_spf(txt) {
            return Err(SyntaxError {
                term: txt.chars().take(16).collect(),
                why: "not an SPF record",
            });
        }
        let mut record = Record::default();
        // `terms = *( 1*SP ( directive / modifier ) )` and trailing `*SP`: only the
        // space separates terms; a tab or CR inside one is a syntax error.
        for term in txt[6..].split(' ').filter(|t| !t.is_empty()) {
            record.add_term(term).map_err(|why| SyntaxError {
                term: term.to_string(),
                why,
            })?;
        }
        Ok(record)
    }

    fn add_term(&mut self, term: &str) -> Result<(), &'static str> {
        if let Some((name, value)) = modifier(term) {
            let slot = if name.eq_ignore_ascii_case("redirect") {
                &mut self.redirect
            } else if name.eq_ignore_ascii_case("exp") {
                &mut self.explanation
            } else {
                macro_string(value, Place::Modifier)?;
                return Ok(());
            };
            if slot.is_some() {
                return Err("redirect= and exp= may each appear only once (RFC 7208 §6)");
            }
            *slot = Some(macro_string(value, Place::Domain)?);
            return Ok(());
        }
        let (qualifier, rest) = match term.as_bytes()[0] {
            b'+' => (Qualifier::Pass, &term[1..]),
            b'-' => (Qualifier::Fail, &term[1..]),
            b'~' => (Qualifier::SoftFail, &term[1..]),
            b'?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let split = rest.find([':', '/']).unwrap_or(rest.len());
        let (name, arg) = rest.split_at(split);
        let mechanism = match name.to_ascii_lowercase().as_str() {
            "all" if arg.is_empty() => Mechanism::All,
            "all" => return Err("all takes no argument"),
            "include" => Mechanism::Include(domain_arg(arg)?),
            "exists" => Mechanism::Exists(domain_arg(arg)?),
            "a" => {
                let (spec, cidr) = spec_and_cidr(arg)?;
                Mechanism::A(spec, cidr)
            }
            "mx" => {
                let (spec, cidr) = spec_and_cidr(arg)?;
                Mechanism::Mx(spec, cidr)
            }
            "ptr" if arg.is_empty() => Mechanism::Ptr(None),
            "ptr" => Mechanism::Ptr(Some(domain_arg(arg)?)),
            "ip4" => {
                let (addr, len) = network(arg, 32)?;
                Mechanism::Ip4(parse_ip4(addr).ok_or("invalid IPv4 address")?, len)
            }
            "ip6" => {
                let (addr, len) = network(arg, 128)?;
                Mechanism::Ip6(addr.parse().map_err(|_| "invalid IPv6 address")?, len)
            }
            _ => return Err("unknown mechanism"),
        };
        self.directives.push(Directive {
            qualifier,
            mechanism,
            text: term.to_string(),
        });
        Ok(())
    }
}

/// `name "=" value` with `name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )` (§6,
/// §12): the `=` must come before any `:` or `/`, so `a:x=y` stays a mechanism.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let b = term.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || b"-_.".contains(c)))?;
    (b[end] == b'=').then(|| (&term[..end], &term[end + 1..]))
}

/// `":" domain-spec`, required.
fn domain_arg(arg: &str) -> Result<MacroString, &'static str> {
    let spec = arg
        .strip_prefix(':')
        .ok_or("a domain is required after ':'")?;
    macro_string(spec, Place::Domain)
}

fn macro_string(text: &str, place: Place) -> Result<MacroString, &'static str> {
    MacroString::parse(text, place).map_err(|e| e.0)
}

/// `[ ":" domain-spec ] [ dual-cidr-length ]` of `a` and `mx`. A domain-spec may
/// hold `/` itself (`a:foo:bar/baz.example.com`), so the prefix lengths are taken
/// from the end, and only when they are digits.
fn spec_and_cidr(arg: &str) -> Result<(Option<MacroString>, Cidr), &'static str> {
    let mut cidr = Cidr::EXACT;
    let mut rest = arg;
    // The last `//`, as `rsplit_once("//")` finds it, by a byte scan: a reverse
    // substring search is 700 B of two-way searcher code for this one call.
    let last_slashes = rest.as_bytes().windows(2).rposition(|w| w == b"//");
    let v6 = last_slashes.map(|i| (&rest[..i], &rest[i + 2..]));
    if let Some((head, n)) = v6.filter(|(_, n)| is_digits(n)) {
        cidr.v6 = prefix_len(n, 128)?;
        rest = head;
    }
    if let Some((head, n)) = rest.rsplit_once('/').filter(|(_, n)| is_digits(n)) {
        cidr.v4 = prefix_len(n, 32)?;
        rest = head;
    }
    match rest.strip_prefix(':') {
        Some(spec) => Ok((Some(macro_string(spec, Place::Domain)?), cidr)),
        None if rest.is_empty() => Ok((None, cidr)),
        None => Err("invalid prefix length"),
    }
}

/// `":" address [ "/" length ]` of `ip4` and `ip6`.
fn network(arg: &str, max: u8) -> Result<(&str, u8), &'static str> {
    let net = arg
        .strip_prefix(':')
        .ok_or("an address is required after ':'")?;
    match net.split_once('/') {
        Some((addr, n)) => Ok((addr, prefix_len(n, max)?)),
        None => Ok((net, max)),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `"0" / %x31-39 0*2DIGIT`, at most `max`: no leading zeros (`/032` is an error).
fn prefix_len(n: &str, max: u8) -> Result<u8, &'static str> {
    if !is_digits(n) || (n.len() > 1 && n.starts_with('0')) {
        return Err("invalid prefix length");
    }
    n.parse::<u8>()
        .ok()
        .filter(|len| *len <= max)
        .ok_or("prefix length out of range")
}

/// `qnum "." qnum "." qnum "." qnum`: four decimal numbers 0-255 without leading
/// zeros.
fn parse_ip4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let p = parts.next()?;
        if !is_digits(p) || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        *octet = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(txt: &str) -> Result<Record, SyntaxError> {
        Record::parse(txt)
    }

    fn mechanisms(txt: &str) -> Vec<Mechanism> {
        parse(txt)
            .unwrap_or_else(|e| panic!("{txt}: {e}"))
            .directives
            .into_iter()
            .map(|d| d.mechanism)
            .collect()
    }

    fn spec(s: &str) -> MacroString {
        MacroString::parse(s, Place::Domain).unwrap()
    }

    #[test]
    fn selection() {
        assert!(is_spf("v=spf1"));
        assert!(is_spf("V=SpF1 -all"));
        assert!(!is_spf("v=spf10"));
        assert!(!is_spf("v=spf1mx"));
        assert!(!is_spf("v=spf2.0/pra"));
        assert!(!is_spf(" v=spf1"));
        assert!(!is_spf("v=sp"));
        assert!(!is_spf("v=spf\u{e9}"));
        assert!(parse("v=spf1x").is_err());
    }

    #[test]
    fn every_mechanism() {
        assert_eq!(
            mechanisms(
                "v=spf1 all include:_spf.example.com a A:x.example.com/24 a/24//64 a//64 \
                 mx mx:%{d}/0 ptr ptr:example.com ip4:192.0.2.0/24 ip4:192.0.2.1 \
                 ip6:2001:db8::/32 ip6:::1.1.1.1 exists:%{ir}.bl.example.com"
            ),
            vec![
                Mechanism::All,
                Mechanism::Include(spec("_spf.example.com")),
                Mechanism::A(None, Cidr::EXACT),
                Mechanism::A(Some(spec("x.example.com")), Cidr { v4: 24, v6: 128 }),
                Mechanism::A(None, Cidr { v4: 24, v6: 64 }),
                Mechanism::A(None, Cidr { v4: 32, v6: 64 }),
                Mechanism::Mx(None, Cidr::EXACT),
                Mechanism::Mx(Some(spec("%{d}")), Cidr { v4: 0, v6: 128 }),
                Mechanism::Ptr(None),
                Mechanism::Ptr(Some(spec("example.com"))),
                Mechanism::Ip4([192, 0, 2, 0].into(), 24),
                Mechanism::Ip4([192, 0, 2, 1].into(), 32),
                Mechanism::Ip6("2001:db8::".parse().unwrap(), 32),
                Mechanism::Ip6("::1.1.1.1".parse().unwrap(), 128),
                Mechanism::Exists(spec("%{ir}.bl.example.com")),
            ]
        );
    }

    #[test]
    fn qualifiers_modifiers_and_spaces() {
        let r =
            parse("v=spf1  +a -mx ~ptr ?all   exp=why.%{d} redirect=_spf.example.com x-y.z=%{l} ")
                .unwrap();
        let q: Vec<Qualifier> = r.directives.iter().map(|d| d.qualifier).collect();
        assert_eq!(
            q,
            [
                Qualifier::Pass,
                Qualifier::Fail,
                Qualifier::SoftFail,
                Qualifier::Neutral
            ]
        );
        assert_eq!(r.directives[3].text, "?all");
        assert_eq!(r.redirect, Some(spec("_spf.example.com")));
        assert_eq!(r.explanation, Some(spec("why.%{d}")));
        assert_eq!(parse("v=spf1").unwrap(), Record::default());
        assert!(parse("v=spf1 default=pass default=+")
            .unwrap()
            .directives
            .is_empty());
    }

    #[test]
    fn syntax_errors_name_the_term() {
        for (txt, term) in [
            ("v=spf1 ip4:1.2.3.4 -all moo", "moo"),
            ("v=spf1 -all.", "-all."),
            ("v=spf1 -all:foobar", "-all:foobar"),
            ("v=spf1 -all/8", "-all/8"),
            ("v=spf1 ptr/0 -all", "ptr/0"),
            ("v=spf1 ptr:", "ptr:"),
            ("v=spf1 a:", "a:"),
            ("v=spf1 a/33", "a/33"),
            ("v=spf1 a//129", "a//129"),
            ("v=spf1 a/24/64", "a/24/64"),
            ("v=spf1 a/024", "a/024"),
            ("v=spf1 a:example.com:8080", "a:example.com:8080"),
            ("v=spf1 a:museum", "a:museum"),
            ("v=spf1 mx:abc.123", "mx:abc.123"),
            ("v=spf1 a:foo.example.com\0", "a:foo.example.com\0"),
            (
                "v=spf1 a:ctrl.example.com\rptr -all",
                "a:ctrl.example.com\rptr",
            ),
            ("v=spf1 include", "include"),
            ("v=spf1 include:", "include:"),
            (
                "v=spf1 include:ip5.example.com/24",
                "include:ip5.example.com/24",
            ),
            ("v=spf1 exists", "exists"),
            (
                "v=spf1 exists:mail.example.com/24",
                "exists:mail.example.com/24",
            ),
            ("v=spf1 ip4", "ip4"),
            ("v=spf1 ip4:1.2.3", "ip4:1.2.3"),
            ("v=spf1 ip4:1.2.03.4", "ip4:1.2.03.4"),
            ("v=spf1 ip4:1.2.3.256", "ip4:1.2.3.256"),
            ("v=spf1 ip4:1.2.3.4:8080", "ip4:1.2.3.4:8080"),
            ("v=spf1 ip4:1.2.3.4/33", "ip4:1.2.3.4/33"),
            ("v=spf1 ip4:1.2.3.4/032", "ip4:1.2.3.4/032"),
            ("v=spf1 ip4:1.2.3.4//32", "ip4:1.2.3.4//32"),
            ("v=spf1 ip4:192.0.2.5\n", "ip4:192.0.2.5\n"),
            ("v=spf1 ip6", "ip6"),
            ("v=spf1 ip6::CAFE::BABE", "ip6::CAFE::BABE"),
            ("v=spf1 ip6:::1.1.1.1/129", "ip6:::1.1.1.1/129"),
            ("v=spf1 ip6:::1.1.1.1//33", "ip6:::1.1.1.1//33"),
            ("v=spf1 ip6:fe80::1%eth0", "ip6:fe80::1%eth0"),
            ("v=spf1 redirect:t2.example.com", "redirect:t2.example.com"),
            ("v=spf1 redirect=", "redirect="),
            ("v=spf1 redirect=-all", "redirect=-all"),
            ("v=spf1 exp=", "exp="),
            (
                "v=spf1 exp=a.example.com exp=b.example.com",
                "exp=b.example.com",
            ),
            (
                "v=spf1 redirect=a.example.com redirect=a.example.com",
                "redirect=a.example.com",
            ),
            ("v=spf1 1up=foo", "1up=foo"),
            ("v=spf1 =all", "=all"),
            ("v=spf1 foo=%abc", "foo=%abc"),
            (
                "v=spf1 moo.cow/far_out=man:dog/cat",
                "moo.cow/far_out=man:dog/cat",
            ),
            (
                "v=spf1 moo.cow:far_out=man:dog/cat",
                "moo.cow:far_out=man:dog/cat",
            ),
            ("v=spf1 \u{80}a:example.net", "\u{80}a:example.net"),
            ("v=spf1 ++all", "++all"),
            ("v=spf1 a:%{a}.example.com", "a:%{a}.example.com"),
        ] {
            let e = parse(txt).expect_err(txt);
            assert_eq!(e.term, term, "{txt:?}: {e}");
        }
        assert!(parse("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4").is_ok());
    }

    #[test]
    fn error_messages_quote_the_term() {
        let e = parse("v=spf1 a:x\u{7}.com").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"control or non-ASCII character: "a:x\u{7}.com""#
        );
    }

    #[test]
    fn lookup_counting_mechanisms() {
        let counted: Vec<bool> =
            parse("v=spf1 all include:a.example a mx ptr ip4:1.2.3.4 ip6:::1 exists:b.example")
                .unwrap()
                .directives
                .iter()
                .map(|d| d.mechanism.queries_dns())
                .collect();
        assert_eq!(counted, [false, true, true, true, true, false, false, true]);
    }
}
