//! The tag-list syntax of RFC 6376 §3.2, shared by the DKIM-Signature field and the key
//! record: `name=value` specs separated by `;`, a trailing `;` allowed, folding
//! whitespace around names and values ignored. Names are case-sensitive and may not
//! repeat; what the tags mean is the callers' business.

use std::ops::Range;

/// One `name=value` of a tag list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub name: &'a str,
    /// The value without the folding whitespace around it (inside it, FWS stays).
    pub value: &'a str,
    /// Where the value area lies in the input: from just after the `=` to the `;` or
    /// the end, whitespace included. The signature's own `b=` is removed over this
    /// span before hashing ("including all surrounding whitespace", §3.5).
    pub span: Range<usize>,
}

/// Folding whitespace: a header value keeps its CRLFs, a TXT record may hold anything.
fn is_fws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_fws(s: &[u8]) -> (usize, usize) {
    let start = s.iter().position(|&b| !is_fws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_fws(b)).map_or(start, |i| i + 1);
    (start, end)
}

/// `tag-name = ALPHA *ALNUMPUNC` (ALNUMPUNC: letters, digits, `_`).
fn is_tag_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => false,
    }
}

/// `VALCHAR = %x21-3A / %x3C-7E` with FWS between runs; octets above 0x7E are let
/// through as UTF-8 (RFC 8616 allows it in d= and i=).
fn is_value_octet(b: u8) -> bool {
    is_fws(b) || ((0x21..=0x7e).contains(&b) && b != b';') || b >= 0x80
}

/// Parses a tag list. Errors name the rule broken; an empty (or blank) list has no
/// tags.
pub fn parse_tags(input: &[u8]) -> Result<Vec<Tag<'_>>, &'static str> {
    let text = std::str::from_utf8(input).map_err(|_| "tag list is not UTF-8")?;
    let mut tags: Vec<Tag<'_>> = Vec::new();
    let mut start = 0;
    loop {
        let end = input[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(input.len(), |i| start + i);
        let spec = &input[start..end];
        let last = end == input.len();
        if spec.iter().all(|&b| is_fws(b)) {
            // Only the tail after a final `;` (or an empty list) may be empty.
            if last {
                return Ok(tags);
            }
            return Err("empty tag-spec");
        }
        let eq = spec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("tag-spec without '='")?;
        let (ns, ne) = trim_fws(&spec[..eq]);
        if !is_tag_name(&spec[ns..ne]) {
            return Err("invalid tag name");
        }
        let value_area = &spec[eq + 1..];
        if !value_area.iter().all(|&b| is_value_octet(b)) {
            return Err("invalid character in a tag value");
        }
        let (vs, ve) = trim_fws(value_area);
        let base = start + eq + 1;
        let name = &text[start + ns..start + ne];
        if tags.iter().any(|t| t.name == name) {
            return Err("duplicate tag");
        }
        tags.push(Tag {
            name,
            value: &text[base + vs..base + ve],
            span: base..end,
        });
        if last {
            return Ok(tags);
        }
        start = end + 1;
    }
}

/// The value of tag `name`, if present.
pub(crate) fn get<'a>(tags: &[Tag<'a>], name: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.name == name).map(|t| t.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Result<Vec<(&str, &str)>, &'static str> {
        parse_tags(input.as_bytes()).map(|t| t.iter().map(|t| (t.name, t.value)).collect())
    }

    #[test]
    fn specs_values_and_whitespace() {
        assert_eq!(
            pairs(" v=1; a = rsa-sha256 ;\r\n\tb=ab\r\n cd ;").unwrap(),
            [("v", "1"), ("a", "rsa-sha256"), ("b", "ab\r\n cd")]
        );
        assert_eq!(pairs("").unwrap(), []);
        assert_eq!(pairs("  ").unwrap(), []);
        assert_eq!(pairs("p=").unwrap(), [("p", "")]);
        assert_eq!(pairs("n=a=b").unwrap(), [("n", "a=b")]);
        assert_eq!(pairs("x_1=y").unwrap(), [("x_1", "y")]);
    }

    #[test]
    fn spans_cover_the_value_area() {
        let input = "a=1; b= xy z ;c=2";
        let tags = parse_tags(input.as_bytes()).unwrap();
        assert_eq!(&input[tags[1].span.clone()], " xy z ");
        assert_eq!(&input[tags[2].span.clone()], "2");
    }

    #[test]
    fn broken_lists() {
        assert_eq!(pairs("a=1;;b=2"), Err("empty tag-spec"));
        assert_eq!(pairs("a"), Err("tag-spec without '='"));
        assert_eq!(pairs("1a=x"), Err("invalid tag name"));
        assert_eq!(pairs("=x"), Err("invalid tag name"));
        assert_eq!(pairs("a b=x"), Err("invalid tag name"));
        assert_eq!(pairs("a=1; a=2"), Err("duplicate tag"));
        assert_eq!(pairs("a=\x01"), Err("invalid character in a tag value"));
        assert!(parse_tags(b"a=\xff").is_err());
        // Names are case-sensitive: `A` and `a` are two tags.
        assert_eq!(pairs("a=1; A=2").unwrap(), [("a", "1"), ("A", "2")]);
    }
}
