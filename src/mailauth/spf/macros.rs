//! SPF macro strings (RFC 7208 §7): the `domain-spec` of mechanisms and modifiers and
//! the text of an explanation record. This file owns their grammar (§7.1, with the
//! letters each place allows, §7.2) and their expansion (§7.3, §7.4) from the values of
//! one check. Pure: no DNS here — the evaluator looks up the validated name for `%{p}`
//! before it expands a string that uses it ([`MacroString::uses_ptr`]).

use std::fmt::Write;
use std::net::IpAddr;

use crate::text::Joined;

/// Where a macro string stands, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A `domain-spec` (`macro-string domain-end`): no spaces, no `c`, `r` or `t`
    /// (§7.2: those are for explanations only), and it ends in a macro or in
    /// `"." toplabel ["."]`.
    Domain,
    /// The value of an unknown modifier: only its `macro-string` syntax is checked
    /// (RFC 7208 §6: unknown modifiers are ignored, but must parse).
    Modifier,
    /// The text of an explanation TXT record (§6.2 `explain-string`): spaces and all
    /// letters.
    Explanation,
}

/// A macro letter (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    /// `s`: the sender, `local-part@domain`.
    Sender,
    /// `l`: the local-part of the sender.
    Local,
    /// `o`: the domain of the sender.
    SenderDomain,
    /// `d`: the domain whose record is being evaluated.
    Domain,
    /// `i`: the client IP, dotted quad or 32 dotted nibbles.
    Ip,
    /// `p`: the validated domain name of the client IP (§5.5).
    Ptr,
    /// `h`: the HELO/EHLO domain.
    Helo,
    /// `c`: the client IP in its usual text form (explanations only).
    Client,
    /// `r`: the receiving host's domain (explanations only).
    Receiver,
    /// `t`: the current time in seconds since the epoch (explanations only).
    Time,
    /// `v`: `in-addr` or `ip6`.
    Version,
}

impl Letter {
    fn from_byte(b: u8) -> Option<Letter> {
        Some(match b.to_ascii_lowercase() {
            b's' => Letter::Sender,
            b'l' => Letter::Local,
            b'o' => Letter::SenderDomain,
            b'd' => Letter::Domain,
            b'i' => Letter::Ip,
            b'p' => Letter::Ptr,
            b'h' => Letter::Helo,
            b'c' => Letter::Client,
            b'r' => Letter::Receiver,
            b't' => Letter::Time,
            b'v' => Letter::Version,
            _ => return None,
        })
    }

    fn explanation_only(self) -> bool {
        matches!(self, Letter::Client | Letter::Receiver | Letter::Time)
    }
}

/// One `%{...}` (§7.1 `macro-expand`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    pub letter: Letter,
    /// How many right-hand parts to keep, after the reversal; 0 keeps them all.
    pub keep: u32,
    /// The `r` transformer: reverse the parts.
    pub reverse: bool,
    /// The characters that split the value into parts (`.` when none is written).
    pub delimiters: String,
    /// The letter was written in upper case: URL-escape the expansion (§7.3).
    pub escape: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text, with `%%`, `%_` and `%-` already replaced.
    Text(String),
    Macro(Macro),
}

/// A parsed macro string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MacroString {
    pieces: Vec<Piece>,
}

/// Why a macro string does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacroError(pub &'static str);

/// The values the letters stand for in one check.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub sender: &'a str,
    pub local: &'a str,
    pub sender_domain: &'a str,
    pub domain: &'a str,
    /// IPv4-mapped IPv6 addresses already turned into IPv4 (§5, RFC 4291 §2.5.5.2).
    pub ip: IpAddr,
    /// The validated name, or `unknown` (§7.3); empty when the string has no `%{p}`.
    pub ptr: &'a str,
    pub helo: &'a str,
    pub receiver: &'a str,
    pub time: u64,
}

/// Longest name in text form (RFC 1035 §2.3.4 less the root); §7.3 truncates to it.
const MAX_NAME: usize = 253;

impl MacroString {
    /// Parses `text` for `place`. A `domain-spec` must not be empty.
    pub fn parse(text: &str, place: Place) -> Result<MacroString, MacroError> {
        let bytes = text.as_bytes();
        fn push_text(pieces: &mut Vec<Piece>, s: &str) {
            match pieces.last_mut() {
                Some(Piece::Text(t)) => t.push_str(s),
                _ => pieces.push(Piece::Text(s.to_string())),
            }
        }
        let mut pieces: Vec<Piece> = Vec::new();
        // Where the literal run after the last macro-expand begins (for domain-end).
        let mut tail = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                // macro-literal is %x21-24 / %x26-7E; explain-string adds SP.
                let space_ok = place == Place::Explanation && b == b' ';
                if !(b'!'..=b'~').contains(&b) && !space_ok {
                    return Err(MacroError(if b == b' ' {
                        "space in a domain-spec"
                    } else {
                        "control or non-ASCII character"
                    }));
                }
                push_text(&mut pieces, &text[i..i + 1]);
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'%') => push_text(&mut pieces, "%"),
                Some(b'_') => push_text(&mut pieces, " "),
                Some(b'-') => push_text(&mut pieces, "%20"),
                Some(b'{') => {
                    let close = text[i + 2..]
                        .find('}')
                        .ok_or(MacroError("'%{' without '}'"))?;
                    let body = &text[i + 2..i + 2 + close];
                    let m = parse_macro(body)?;
                    if m.letter.explanation_only() && place == Place::Domain {
                        return Err(MacroError(
                            "%{c}, %{r} and %{t} are allowed in explanations only",
                        ));
                    }
                    pieces.push(Piece::Macro(m));
                    i += 2 + close + 1;
                    tail = i;
                    continue;
                }
                _ => return Err(MacroError("'%' not followed by '{', '%', '_' or '-'")),
            }
            i += 2;
            tail = i;
        }
        if place == Place::Domain {
            check_domain_end(text, tail)?;
        }
        Ok(MacroString { pieces })
    }

    /// Whether expanding needs the validated name of the client (`%{p}`).
    pub fn uses_ptr(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Macro(m) if m.letter == Letter::Ptr))
    }

    /// The expansion, as explanations use it.
    pub fn expand(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Macro(m) => expand_macro(m, v, &mut out),
            }
        }
        out
    }

    /// The expansion as a name to look up: without a trailing dot, and, if longer
    /// than 253 characters, with labels removed from the left until it fits (§7.3).
    pub fn expand_domain(&self, v: &Values<'_>) -> String {
        let mut name = self.expand(v);
        if name.ends_with('.') {
            name.pop();
        }
        while name.len() > MAX_NAME {
            match name.find('.') {
                Some(dot) => {
                    name.drain(..=dot);
                }
                None => break,
            }
        }
        name
    }
}

/// `letter *DIGIT [ "r" ] *delimiter`, the inside of `%{...}`.
fn parse_macro(body: &str) -> Result<Macro, MacroError> {
    let bytes = body.as_bytes();
    let first = *bytes.first().ok_or(MacroError("empty '%{}'"))?;
    let letter = Letter::from_byte(first).ok_or(MacroError("unknown macro letter"))?;
    let mut i = 1;
    let digits_start = i;
    let mut keep: u32 = 0;
    while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        keep = keep.saturating_mul(10).saturating_add(u32::from(d - b'0'));
        i += 1;
    }
    if i > digits_start && keep == 0 {
        return Err(MacroError("a macro's digit transformer must not be zero"));
    }
    let reverse = matches!(bytes.get(i), Some(b'r' | b'R'));
    if reverse {
        i += 1;
    }
    let delimiters = &body[i..];
    if !delimiters.bytes().all(|b| b".-+,/_=".contains(&b)) {
        return Err(MacroError("invalid macro transformer or delimiter"));
    }
    Ok(Macro {
        letter,
        keep,
        reverse,
        delimiters: delimiters.to_string(),
        escape: first.is_ascii_uppercase(),
    })
}

/// §7.1 `domain-end = ( "." toplabel [ "." ] ) / macro-expand`: the literal text
/// from `tail` on (what follows the last macro) must end in a dot and a toplabel,
/// unless it is empty after a macro.
fn check_domain_end(text: &str, tail: usize) -> Result<(), MacroError> {
    if text.is_empty() {
        return Err(MacroError("empty domain-spec"));
    }
    let literal = &text[tail..];
    if literal.is_empty() {
        return Ok(());
    }
    let literal = literal.strip_suffix('.').unwrap_or(literal);
    match literal.rsplit_once('.') {
        Some((_, top)) if is_toplabel(top) => Ok(()),
        _ => Err(MacroError(
            "a domain-spec must end in a macro or a dot and a top-level label",
        )),
    }
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) /
///             ( 1*alphanum "-" *( alphanum / "-" ) alphanum )`
/// — letters, digits and inner hyphens, and not all digits unless hyphenated.
fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if b.contains(&b'-') {
        first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    } else {
        b.iter().any(u8::is_ascii_alphabetic)
    }
}

fn expand_macro(m: &Macro, v: &Values<'_>, out: &mut String) {
    let value = letter_value(m.letter, v);
    let delimiters = if m.delimiters.is_empty() {
        "."
    } else {
        m.delimiters.as_str()
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if m.reverse {
        parts.reverse();
    }
    let keep = usize::try_from(m.keep).unwrap_or(usize::MAX);
    if keep != 0 && keep < parts.len() {
        parts.drain(..parts.len() - keep);
    }
    let joined = parts.joined(".");
    if m.escape {
        url_escape(&joined, out);
    } else {
        out.push_str(&joined);
    }
}

fn letter_value(letter: Letter, v: &Values<'_>) -> String {
    match letter {
        Letter::Sender => v.sender.to_string(),
        Letter::Local => v.local.to_string(),
        Letter::SenderDomain => v.sender_domain.to_string(),
        Letter::Domain => v.domain.to_string(),
        Letter::Ip => dotted(v.ip),
        Letter::Ptr => v.ptr.to_string(),
        Letter::Helo => v.helo.to_string(),
        Letter::Client => v.ip.to_string(),
        Letter::Receiver => v.receiver.to_string(),
        Letter::Time => v.time.to_string(),
        Letter::Version => match v.ip {
            IpAddr::V4(_) => "in-addr".to_string(),
            IpAddr::V6(_) => "ip6".to_string(),
        },
    }
}

/// `%{i}` (§7.3): the dotted quad, or for IPv6 the 32 nibbles separated by dots.
/// Nibbles are written in upper case, as the RFC 7208 test suite expects them in
/// explanations; names built from them are looked up case-blind all the same.
fn dotted(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    let _ = write!(s, "{nibble:X}");
                }
            }
            s
        }
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (§7.3).
fn url_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ip: &str) -> Values<'static> {
        Values {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            ptr: "mx.example.org",
            helo: "mx.example.org",
            receiver: "receiver.example.net",
            time: 1_700_000_000,
        }
    }

    fn expand(spec: &str, ip: &str) -> String {
        MacroString::parse(spec, Place::Explanation)
            .unwrap_or_else(|e| panic!("{spec}: {e:?}"))
            .expand(&values(ip))
    }

    #[test]
    fn rfc_7208_section_7_4_examples() {
        let v4 = "192.0.2.3";
        for (spec, want) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
            ("%{p}", "mx.example.org"),
            ("%{p2}", "example.org"),
            ("%{c}", "192.0.2.3"),
            ("%{r}", "receiver.example.net"),
            ("%{t}", "1700000000"),
        ] {
            assert_eq!(expand(spec, v4), want, "{spec}");
        }
        let v6 = "2001:db8::cb01";
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v6),
            "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(expand("%{c}", v6), "2001:db8::cb01");
    }

    #[test]
    fn escapes_and_url_encoding() {
        assert_eq!(expand("%%%_%-", "192.0.2.3"), "% %20");
        // Upper case: the same expansion, then URL-escaped.
        let mut v = values("192.0.2.3");
        v.local = "~jack&jill=up-a_b3.c";
        let m = MacroString::parse("l=%{L}", Place::Explanation).unwrap();
        assert_eq!(m.expand(&v), "l=~jack%26jill%3Dup-a_b3.c");
        v.helo = "JUMPIN' JUPITER";
        let m = MacroString::parse("%{H}", Place::Domain).unwrap();
        assert_eq!(m.expand(&v), "JUMPIN%27%20JUPITER");
    }

    #[test]
    fn several_delimiters_and_large_digits() {
        let mut v = values("192.0.2.3");
        v.local = "foo-bar+zip+quux";
        let m = MacroString::parse("%{l2r+-}.user.%{d2}", Place::Domain).unwrap();
        assert_eq!(m.expand(&v), "bar.foo.user.example.com");
        let m = MacroString::parse("%{d99999999999999999999}", Place::Domain).unwrap();
        assert_eq!(m.expand(&v), "email.example.com");
        let m = MacroString::parse("%{d=}", Place::Domain).unwrap();
        assert_eq!(m.expand(&v), "email.example.com", "no '=' to split on");
    }

    #[test]
    fn syntax_errors() {
        for (spec, place) in [
            ("%(ir).example.com", Place::Domain),
            ("foo%.example.com", Place::Domain),
            ("example.com%", Place::Domain),
            ("%{x}.example.com", Place::Domain),
            ("%{d0}.example.com", Place::Domain),
            ("%{d2rr}.example.com", Place::Domain),
            ("%{d2!}.example.com", Place::Domain),
            ("%{d.example.com", Place::Domain),
            ("%{}.example.com", Place::Domain),
            ("%{r}.example.com", Place::Domain),
            ("%{c}.example.com", Place::Domain),
            ("%{t}.example.com", Place::Domain),
            ("a b.example.com", Place::Domain),
            ("a b", Place::Modifier),
            ("caf\u{e9}.example.com", Place::Domain),
            ("tab\there", Place::Explanation),
            ("The %{x}-files.", Place::Explanation),
        ] {
            assert!(
                MacroString::parse(spec, place).is_err(),
                "{spec:?} in {place:?}"
            );
        }
        assert!(MacroString::parse("%{r} says no", Place::Explanation).is_ok());
        assert!(MacroString::parse("%{r}", Place::Modifier).is_ok());
    }

    #[test]
    fn domain_end() {
        for ok in [
            "example.com",
            "example.com.",
            "%{d}",
            "%{d}.com",
            "foo:bar/baz.example.com",
            "foo.example.xn--zckzah",
            "a.1-2",
            "x%%",
            "mail.example...com",
        ] {
            assert!(MacroString::parse(ok, Place::Domain).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "museum",
            "museum.",
            "abc.123",
            "111.222.33.44",
            "example.-com",
            "example.com-",
            "example.com:8080",
            "foo-bar",
            "%{d}com",
            "%{d}.",
            "-all",
            "mail.example.com/24",
            "example.com..",
        ] {
            assert!(MacroString::parse(bad, Place::Domain).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domain_expansion_drops_the_trailing_dot_and_truncates_on_the_left() {
        let v = values("192.0.2.3");
        let m = MacroString::parse("%{d}.d.spf.example.com.", Place::Domain).unwrap();
        assert_eq!(m.expand_domain(&v), "email.example.com.d.spf.example.com");
        // The dot stays in an explanation.
        let m = MacroString::parse("This is a test.", Place::Explanation).unwrap();
        assert_eq!(m.expand(&v), "This is a test.");

        let long = format!("foobar.{}example.com", "%{o}.".repeat(16));
        let m = MacroString::parse(&long, Place::Domain).unwrap();
        let (full, name) = (m.expand(&v), m.expand_domain(&v));
        assert!(full.len() > 253);
        assert!(name.len() <= 253, "{}", name.len());
        // Whole labels went, and no more than needed.
        let cut = &full[..full.len() - name.len()];
        assert!(full.ends_with(&name) && cut.ends_with('.'), "{name}");
        let one_more = &full[cut[..cut.len() - 1].rfind('.').map_or(0, |i| i + 1)..];
        assert!(one_more.len() > 253, "{one_more}");
    }

    #[test]
    fn uses_ptr_only_with_p() {
        assert!(MacroString::parse("%{p}.ok.example.com", Place::Domain)
            .unwrap()
            .uses_ptr());
        assert!(MacroString::parse("%{P2}.ok.example.com", Place::Domain)
            .unwrap()
            .uses_ptr());
        assert!(!MacroString::parse("p.%{d}", Place::Domain)
            .unwrap()
            .uses_ptr());
    }
}
