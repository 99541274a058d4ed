//! RFC 5322 address lists as header fields carry them (`From:`, `Reply-To:`, `To:` ...):
//! where each address is, with display names, quoted strings, nested comments, groups
//! and folding told apart, so an address can be read or replaced without touching
//! anything around it.

use std::ops::Range;

use crate::smtp::address::{parse_mailbox, Mailbox};

/// Rewrites each address of an RFC 5322 address list (a field value, folding and all)
/// with `rewrite`, keeping display names, comments, groups and white space; `None` when
/// nothing changed. Comments inside an address (`alice(x)@example`, obsolete syntax) do
/// not survive a rewrite of that address; an address that is not valid RFC 5321 syntax
/// is left as it is.
pub fn rewrite(value: &str, rewrite: impl Fn(&Mailbox) -> Option<Mailbox>) -> Option<String> {
    let mut out = value.to_string();
    let mut changed = false;
    // From the end, so earlier spans stay valid.
    for span in addresses(value).into_iter().rev() {
        let Ok(Some(m)) = parse_mailbox(&span.address, true, false, false) else {
            continue;
        };
        if let Some(new) = rewrite(&m) {
            out.replace_range(span.range, &new.to_string());
            changed = true;
        }
    }
    changed.then_some(out)
}

/// What a character of a header value is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    /// A quoted string, quotes included.
    Quoted,
    /// A comment, parentheses included (nested comments too).
    Comment,
    Space,
}

/// Classifies every character of `s` (RFC 5322 §3.2: quoted strings, nested comments,
/// quoted pairs in both).
fn classify(s: &str) -> Vec<(usize, char, Class)> {
    let mut out = Vec::with_capacity(s.len());
    let (mut quoted, mut depth, mut escaped) = (false, 0u32, false);
    for (i, c) in s.char_indices() {
        let class = if escaped {
            escaped = false;
            if quoted {
                Class::Quoted
            } else {
                Class::Comment
            }
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            Class::Quoted
        } else if depth > 0 {
            match c {
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            Class::Comment
        } else {
            match c {
                '"' => {
                    quoted = true;
                    Class::Quoted
                }
                '(' => {
                    depth = 1;
                    Class::Comment
                }
                c if c.is_whitespace() => Class::Space,
                _ => Class::Plain,
            }
        };
        out.push((i, c, class));
    }
    out
}

/// Where an address is in a header value, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpan {
    /// Byte range in the value: the addr-spec, inside `<...>` if there are brackets.
    pub range: Range<usize>,
    /// The address as written, comments taken out: `local@domain`, a bare `local`, or
    /// whatever else stood there (a display name without an address, say); callers
    /// parse it.
    pub address: String,
}

/// The addresses of an address list, in order. Elements are separated by `,`, and a
/// group's `name:` and `;`, outside angle brackets, quotes and comments; an empty
/// element (or one of comments only) yields nothing.
pub fn addresses(value: &str) -> Vec<AddressSpan> {
    let cls = classify(value);
    let mut spans = Vec::new();
    let (mut start, mut angle) = (0, false);
    for j in 0..=cls.len() {
        let sep = match cls.get(j) {
            None => Some(','),
            Some(&(_, c, Class::Plain)) => match c {
                '<' => {
                    angle = true;
                    None
                }
                '>' => {
                    angle = false;
                    None
                }
                ',' | ':' | ';' if !angle => Some(c),
                _ => None,
            },
            Some(_) => None,
        };
        if let Some(c) = sep {
            // Text before a top-level ':' is a group's display name.
            if c != ':' {
                spans.extend(element(&cls[start..j]));
            }
            start = j + 1;
        }
    }
    spans
}

/// The address of one list element: inside `<...>` if there is one (a source route
/// `@a,@b:` before it is dropped), else the element without its surrounding comments.
fn element(cls: &[(usize, char, Class)]) -> Option<AddressSpan> {
    let is = |ch: char| move |&(_, c, k): &(usize, char, Class)| k == Class::Plain && c == ch;
    let inner = match cls.iter().position(is('<')) {
        Some(lt) => {
            let gt = lt + 1 + cls[lt + 1..].iter().position(is('>'))?;
            &cls[lt + 1..gt]
        }
        None => cls,
    };
    let significant = |&(_, _, k): &(usize, char, Class)| matches!(k, Class::Plain | Class::Quoted);
    let first = inner.iter().position(significant)?;
    let last = inner.iter().rposition(significant)?;
    let sig = &inner[first..=last];
    // Comments go, white space stays: `Name Only` must not read as an address.
    let text: String = sig
        .iter()
        .filter(|&&(_, _, k)| k != Class::Comment)
        .map(|&(_, c, _)| c)
        .collect();
    let text = match text.strip_prefix('@').and_then(|r| r.split_once(':')) {
        Some((_route, addr)) => addr.to_string(),
        None => text,
    };
    let (end, c, _) = sig[sig.len() - 1];
    Some(AddressSpan {
        range: sig[0].0..end + c.len_utf8(),
        address: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(value: &str) -> Vec<String> {
        addresses(value).into_iter().map(|s| s.address).collect()
    }

    #[test]
    fn names_quotes_comments_and_groups() {
        assert_eq!(
            list("\"Doe, J\" <j@x.example>, k@y.example (Kay), team: a@z.example, b@z.example;"),
            ["j@x.example", "k@y.example", "a@z.example", "b@z.example"]
        );
        assert_eq!(
            list(" (a (nested) comment, with <x@y>) alice@example.org"),
            ["alice@example.org"]
        );
        assert_eq!(
            list(" \"quoted \\\" local\"@example.org"),
            ["\"quoted \\\" local\"@example.org"]
        );
        assert_eq!(list(" alice(work)@example.org"), ["alice@example.org"]);
        assert_eq!(
            list(" Name Only, ;, (c), undisclosed-recipients:;"),
            ["Name Only"]
        );
        assert_eq!(list(""), Vec::<String>::new());
    }

    #[test]
    fn spans_point_into_the_value() {
        let v = " Bob\r\n <bob@example.net> (x),\r\n\tcarol@example.org\r\n";
        let spans = addresses(v);
        assert_eq!(&v[spans[0].range.clone()], "bob@example.net");
        assert_eq!(&v[spans[1].range.clone()], "carol@example.org");
    }

    #[test]
    fn rewrite_replaces_only_valid_addresses() {
        let upper = |m: &Mailbox| {
            Some(Mailbox {
                local: m.local.to_uppercase(),
                domain: m.domain.clone(),
            })
        };
        assert_eq!(
            rewrite(" A <a@x.example>, bad@@x, b@y.example (B)", upper).as_deref(),
            Some(" A <A@x.example>, bad@@x, B@y.example (B)")
        );
        assert_eq!(rewrite(" a@x.example", |_| None), None);
    }
}
