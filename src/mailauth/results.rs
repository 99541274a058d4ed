//! The `Authentication-Results:` field (RFC 8601) of a received message: the SPF,
//! DKIM and DMARC results in one field under our authserv-id, folded for the 78
//! columns of RFC 5322 §2.1.1; the recognition of a field that claims our
//! authserv-id (§5: a forgery when it arrives with the message); and the same
//! results as one log field.

use super::dkim;
use super::dmarc::DmarcVerdict;
use super::quoted;
use super::spf::{Identity, SpfResult};
use crate::headers::Field;
use crate::text::Joined;

/// The name of the field.
pub const FIELD: &str = "Authentication-Results";

/// Where lines are folded (RFC 5322 §2.1.1 "SHOULD be no more than 78 characters").
const WIDTH: usize = 78;

/// The whole field, CRLF-terminated: our authserv-id, then one result a line —
/// `spf`, each DKIM signature (`dkim=none` for none), `dmarc`.
pub fn authentication_results(
    authserv_id: &str,
    spf: &SpfResult,
    dkim: &[dkim::Verdict],
    dmarc: &DmarcVerdict,
) -> String {
    let mut results = vec![spf_resinfo(spf)];
    if dkim.is_empty() {
        results.push("dkim=none".to_string());
    } else {
        results.extend(dkim.iter().map(dkim::Verdict::resinfo));
    }
    results.push(dmarc.resinfo());
    let mut field = format!("{FIELD}: {authserv_id};");
    let last = results.len() - 1;
    for (i, r) in results.iter().enumerate() {
        field.push_str("\r\n");
        let sep = if i == last { "" } else { ";" };
        fold(&mut field, &format!("\t{r}{sep}"));
    }
    field.push_str("\r\n");
    field
}

/// `spf=RESULT [reason="..."] smtp.mailfrom=ADDRESS` (or `smtp.helo=NAME` for the
/// HELO identity, RFC 8601 §2.7.2).
fn spf_resinfo(spf: &SpfResult) -> String {
    let mut s = format!("spf={}", spf.result.as_str());
    if let Some(p) = &spf.problem {
        s.push_str(" reason=");
        s.push_str(&quoted(p));
    }
    match spf.identity {
        Identity::MailFrom => s.push_str(" smtp.mailfrom="),
        Identity::Helo => s.push_str(" smtp.helo="),
    }
    let value = match spf.identity {
        Identity::MailFrom => &spf.sender,
        Identity::Helo => &spf.domain,
    };
    s.push_str(&pvalue(value));
    s
}

/// Appends `line` to `out`, folded before a space wherever it would pass [`WIDTH`];
/// the space stays, so unfolding gives `line` back. A word longer than the width
/// stays whole, and no line is left with only white space.
fn fold(out: &mut String, line: &str) {
    let mut width = 0;
    for (i, word) in line.split(' ').enumerate() {
        if i == 0 {
            out.push_str(word);
            width = word.len();
        } else if !word.is_empty() && width + 1 + word.len() > WIDTH {
            out.push_str("\r\n ");
            out.push_str(word);
            width = 1 + word.len();
        } else {
            out.push(' ');
            out.push_str(word);
            width += 1 + word.len();
        }
    }
}

/// A property value as written (an address or a name), or as a quoted-string when it
/// holds what would end or confuse the field's syntax.
fn pvalue(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "();\"\\".contains(c));
    if plain {
        value.to_string()
    } else {
        quoted(value)
    }
}

/// The authserv-id of an `Authentication-Results:` field: its first word, after any
/// white space and comments (RFC 8601 §2.2).
pub fn authserv_id(field: &Field<'_>) -> Option<String> {
    let value = String::from_utf8_lossy(&field.raw[field.name.len() + 1..]).into_owned();
    let mut chars = value.chars().peekable();
    let mut depth = 0usize;
    while let Some(&c) = chars.peek() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            '\\' if depth > 0 => {
                chars.next();
            }
            c if depth > 0 || c.is_whitespace() => {}
            _ => break,
        }
        chars.next();
    }
    let id: String = chars
        .take_while(|c| !c.is_whitespace() && !"();".contains(*c))
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Whether `field` is an `Authentication-Results:` field under `authserv_id` (host
/// names compare without regard to case or a final dot).
pub fn is_ours(field: &Field<'_>, authserv_id: &str) -> bool {
    let bare = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    field.is(FIELD) && self::authserv_id(field).is_some_and(|id| bare(&id) == bare(authserv_id))
}

/// The results as one log field value: `spf:pass,dkim:pass+fail,dmarc:none`.
pub fn summary(spf: &SpfResult, dkim: &[dkim::Verdict], dmarc: &DmarcVerdict) -> String {
    let dkim = if dkim.is_empty() {
        "none".to_string()
    } else {
        let words: Vec<&str> = dkim.iter().map(|v| v.result.as_str()).collect();
        words.joined("+")
    };
    format!(
        "spf:{},dkim:{dkim},dmarc:{}",
        spf.result.as_str(),
        dmarc.result.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Header;
    use crate::mailauth::dkim::{DkimResult, Verdict};
    use crate::mailauth::dmarc::{DmarcResult, Policy};
    use crate::mailauth::spf::Verdict as Spf;

    fn spf(result: Spf, identity: Identity, sender: &str, problem: Option<&str>) -> SpfResult {
        SpfResult {
            result,
            identity,
            sender: sender.to_string(),
            domain: sender.rsplit('@').next().unwrap().to_string(),
            mechanism: None,
            explanation: None,
            problem: problem.map(str::to_string),
        }
    }

    fn dkim(result: DkimResult, domain: &str, reason: Option<&str>) -> Verdict {
        Verdict {
            result,
            reason: reason.map(str::to_string),
            domain: domain.to_string(),
            selector: "sel".to_string(),
            b: "AbCdEfGhIjKl".to_string(),
            algorithm: None,
            testing: false,
        }
    }

    fn dmarc(result: DmarcResult, domain: &str) -> DmarcVerdict {
        DmarcVerdict {
            result,
            policy: Some(Policy::None),
            from_domain: domain.to_string(),
            ..DmarcVerdict::permerror("")
        }
    }

    /// The field unfolded (RFC 5322 §2.2.3: CRLF before white space removed).
    fn unfold(field: &str) -> String {
        field.trim_end_matches("\r\n").replace("\r\n", "")
    }

    #[test]
    fn one_result_a_line_with_every_signature() {
        let field = authentication_results(
            "mx.example.org",
            &spf(Spf::Pass, Identity::MailFrom, "alice@example.com", None),
            &[
                dkim(DkimResult::Pass, "example.com", None),
                dkim(
                    DkimResult::Fail,
                    "lists.example.net",
                    Some("body hash did not verify"),
                ),
            ],
            &dmarc(DmarcResult::Pass, "example.com"),
        );
        let dmarc_info = dmarc(DmarcResult::Pass, "example.com").resinfo();
        assert_eq!(
            field,
            format!(
                "Authentication-Results: mx.example.org;\r\n\
                 \tspf=pass smtp.mailfrom=alice@example.com;\r\n\
                 \tdkim=pass header.d=example.com header.s=sel header.b=AbCdEfGh;\r\n\
                 \tdkim=fail reason=\"body hash did not verify\" header.d=lists.example.net\r\n\
                 \x20header.s=sel header.b=AbCdEfGh;\r\n\
                 \t{dmarc_info}\r\n"
            )
        );
        for line in field.split("\r\n") {
            assert!(line.len() <= WIDTH, "{line:?}");
        }
        // It is one field to the header scanner, and unfolds to the results.
        let parsed = Header::parse(field.as_bytes());
        assert_eq!(parsed.fields.len(), 1);
        assert_eq!(parsed.fields[0].raw, field.as_bytes());
        assert!(unfold(&field).contains(
            "dkim=fail reason=\"body hash did not verify\" header.d=lists.example.net header.s=sel"
        ));
    }

    #[test]
    fn unsigned_helo_identity_and_problems() {
        let field = authentication_results(
            "mx.example.org",
            &spf(
                Spf::TempError,
                Identity::Helo,
                "postmaster@mail.example.net",
                Some("TXT mail.example.net: timed out"),
            ),
            &[],
            &DmarcVerdict::permerror("no From field"),
        );
        let lines: Vec<&str> = field.split("\r\n").collect();
        assert_eq!(
            lines[..4],
            [
                "Authentication-Results: mx.example.org;",
                "\tspf=temperror reason=\"TXT mail.example.net: timed out\"",
                " smtp.helo=mail.example.net;",
                "\tdkim=none;",
            ]
        );
        assert!(lines[4].starts_with("\tdmarc=permerror"), "{field}");
        // An address that is not a plain word is quoted; a long word is not broken.
        let odd = spf(Spf::None, Identity::MailFrom, "\"a b;c\"@example.com", None);
        assert!(spf_resinfo(&odd).ends_with(r#"smtp.mailfrom="\"a b;c\"@example.com""#));
        let mut out = String::new();
        let long = "x".repeat(100);
        fold(&mut out, &format!("\tdkim=fail reason=\"{long}  a\""));
        assert_eq!(out, format!("\tdkim=fail\r\n reason=\"{long} \r\n a\""));
        assert_eq!(
            out.replace("\r\n", ""),
            format!("\tdkim=fail reason=\"{long}  a\"")
        );
    }

    #[test]
    fn our_authserv_id_is_recognised_whatever_the_comments_or_case() {
        let msg = b"Authentication-Results: MX.Example.Org; spf=pass\r\n\
            Authentication-Results: (forged?) mx.example.org. 1; dkim=pass\r\n\
            Authentication-Results: mx.example.org.evil; dkim=pass\r\n\
            authentication-results:\r\n mx.example.org;\r\n dmarc=pass\r\n\
            Authentication-Results: other.example; spf=pass\r\n\
            X-Authentication-Results: mx.example.org; spf=pass\r\n\
            Authentication-Results: ;\r\n\r\n";
        let h = Header::parse(msg);
        let ours: Vec<bool> = h
            .fields
            .iter()
            .map(|f| is_ours(f, "mx.example.org"))
            .collect();
        assert_eq!(ours, [true, true, false, true, false, false, false]);
        assert_eq!(
            authserv_id(&h.fields[1]).as_deref(),
            Some("mx.example.org.")
        );
        assert_eq!(authserv_id(&h.fields[6]), None);
    }

    #[test]
    fn log_summary() {
        let s = spf(Spf::Fail, Identity::MailFrom, "a@example.com", None);
        let d = dmarc(DmarcResult::Fail, "example.com");
        assert_eq!(summary(&s, &[], &d), "spf:fail,dkim:none,dmarc:fail");
        let two = [
            dkim(DkimResult::Pass, "a.example", None),
            dkim(DkimResult::TempError, "b.example", None),
        ];
        assert_eq!(
            summary(&s, &two, &d),
            "spf:fail,dkim:pass+temperror,dmarc:fail"
        );
    }
}
