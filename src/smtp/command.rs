//! SMTP command parsing (RFC 5321 §4.1.1) with the parameters of the extensions tinymta
//! advertises: SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN
//! (RFC 3461: RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT), and CHUNKING's `BDAT`
//! (RFC 3030).

use super::address::{self, AddressError, Mailbox};
use super::dsn::{self, MessageDsn, Notify, RcptDsn, Ret};
use super::reply::{canned, Reply};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: Option<Mailbox>,
        params: MailParams,
    },
    Rcpt {
        to: Mailbox,
        dsn: RcptDsn,
    },
    Data,
    /// `BDAT size [LAST]`: the next `size` octets are message content.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    Starttls,
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

/// The `BODY=` parameter of MAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Body,
    pub smtputf8: bool,
    /// RFC 4954 `AUTH=` (accepted and ignored: we never trust a client's claim).
    pub auth: Option<String>,
    /// RFC 8689 `REQUIRETLS`: every hop must be authenticated TLS. The session accepts
    /// it only inside TLS.
    pub requiretls: bool,
    /// RFC 3461 `RET=`, `ENVID=`.
    pub dsn: MessageDsn,
}

/// Parses one command line (without CRLF). `rcpt_utf8` says whether the current
/// transaction's MAIL carried SMTPUTF8, which allows UTF-8 in RCPT addresses.
/// An error is the reply to send.
pub fn parse(line: &[u8], rcpt_utf8: bool) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(canned::nul_in_input());
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "Error: invalid UTF-8 in command"))?;
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_end()),
        None => (line.trim_end(), ""),
    };
    let upper = verb.to_ascii_uppercase();
    let no_arg = |cmd: Command| {
        if arg.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(canned::syntax(&format!("Syntax: {upper}")))
        }
    };
    match upper.as_str() {
        "EHLO" | "HELO" => {
            let name = arg.trim();
            if name.is_empty() {
                return Err(canned::syntax(&format!("Syntax: {upper} hostname")));
            }
            // The name goes into the Received: header of the queue file, which holds
            // CRLF lines only (found by fuzz/command: "EHLO a\rb").
            if name.bytes().any(|b| b.is_ascii_control()) {
                return Err(Reply::new(
                    501,
                    "5.5.2",
                    format!("Syntax: {upper} hostname (control characters are not allowed)"),
                ));
            }
            let name = name.to_string();
            Ok(if upper == "EHLO" {
                Command::Ehlo(name)
            } else {
                Command::Helo(name)
            })
        }
        "MAIL" => parse_mail(arg),
        "RCPT" => parse_rcpt(arg, rcpt_utf8),
        "DATA" => no_arg(Command::Data),
        "BDAT" => parse_bdat(arg),
        "RSET" => no_arg(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_arg(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_arg(Command::Starttls),
        "AUTH" => {
            let mut words = arg.split_whitespace();
            let mechanism = words
                .next()
                .ok_or_else(|| canned::syntax("Syntax: AUTH mechanism"))?
                .to_ascii_uppercase();
            let initial_response = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(canned::syntax("Syntax: AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth {
                mechanism,
                initial_response,
            })
        }
        _ => Err(Reply::new(502, "5.5.2", "Error: command not recognized")),
    }
}

/// Whether `line` is a BDAT command, parsed or not: after a BDAT that cannot be
/// parsed, the session cannot know where its chunk ends.
pub fn is_bdat(line: &[u8]) -> bool {
    line.get(..4)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"BDAT"))
        && line.get(4).is_none_or(|&b| b == b' ')
}

/// `BDAT chunk-size [LAST]` (RFC 3030 §3): the size is 1*DIGIT, at most a `u64`.
fn parse_bdat(arg: &str) -> Result<Command, Reply> {
    let syntax = || Reply::new(501, "5.5.4", "Syntax: BDAT count [LAST]");
    let mut words = arg.split(' ');
    let size = words.next().unwrap_or_default();
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let size = size.parse::<u64>().map_err(|_| syntax())?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax()),
    };
    if words.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Bdat { size, last })
}

/// Strips `FROM:`/`TO:` case-insensitively, allowing the space after the colon that
/// many clients send (Postfix accepts it too).
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}

fn address_reply(e: AddressError, sender: bool) -> Reply {
    match e {
        AddressError::NeedsUtf8 => {
            Reply::new(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
        }
        e => Reply::new(
            501,
            if sender { "5.1.7" } else { "5.1.3" },
            format!(
                "Bad {} address syntax: {e}",
                if sender { "sender" } else { "recipient" }
            ),
        ),
    }
}

/// A `KEY=value` (or bare `KEY`) parameter of MAIL or RCPT.
struct Param<'a> {
    /// As sent, for the "Unsupported option" reply.
    text: &'a str,
    key: String,
    value: Option<&'a str>,
}

/// Splits the parameters after the path; keys upper-cased.
fn params(text: &str) -> impl Iterator<Item = Param<'_>> {
    text.split_whitespace().map(|p| {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        Param {
            text: p,
            key: key.to_ascii_uppercase(),
            value,
        }
    })
}

fn unsupported(p: &Param) -> Reply {
    Reply::new(555, "5.5.4", format!("Unsupported option: {}", p.text))
}

/// The 501 for a parameter whose value is wrong (RFC 3461 §5: 501 5.5.4).
fn bad_value(reason: impl std::fmt::Display) -> Reply {
    Reply::new(501, "5.5.4", format!("Error: {reason}"))
}

/// A parameter given twice is an error, not a silent override.
fn once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), Reply> {
    if slot.is_some() {
        return Err(bad_value(format!("{key} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// One MAIL parameter into `params`: the table of what MAIL accepts. A new extension
/// adds its keyword here.
fn mail_param(params: &mut MailParams, p: &Param) -> Result<(), Reply> {
    match (p.key.as_str(), p.value) {
        ("SIZE", Some(v)) => {
            let n = v
                .parse::<u64>()
                .map_err(|_| canned::syntax("Bad SIZE parameter"))?;
            params.size = Some(n);
        }
        ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.body = Body::SevenBit,
        ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => params.body = Body::EightBitMime,
        ("SMTPUTF8", None) => params.smtputf8 = true,
        ("AUTH", Some(v)) => params.auth = Some(v.to_string()),
        ("REQUIRETLS", None) => params.requiretls = true,
        ("RET", Some(v)) => {
            let ret = Ret::parse(v).ok_or_else(|| bad_value("RET takes FULL or HDRS"))?;
            once(&mut params.dsn.ret, ret, "RET")?;
        }
        ("ENVID", Some(v)) => {
            let envid = dsn::parse_envid(v).map_err(bad_value)?;
            once(&mut params.dsn.envid, envid, "ENVID")?;
        }
        _ => return Err(unsupported(p)),
    }
    Ok(())
}

/// One RCPT parameter into `dsn`: the table of what RCPT accepts.
fn rcpt_param(dsn: &mut RcptDsn, p: &Param) -> Result<(), Reply> {
    match (p.key.as_str(), p.value) {
        ("NOTIFY", Some(v)) => {
            let notify = Notify::parse(v).map_err(bad_value)?;
            once(&mut dsn.notify, notify, "NOTIFY")?;
        }
        ("ORCPT", Some(v)) => {
            let orcpt = dsn::parse_orcpt(v).map_err(bad_value)?;
            once(&mut dsn.orcpt, orcpt, "ORCPT")?;
        }
        _ => return Err(unsupported(p)),
    }
    Ok(())
}

fn parse_mail(arg: &str) -> Result<Command, Reply> {
    let rest =
        strip_keyword(arg, "FROM:").ok_or_else(|| canned::syntax("Syntax: MAIL FROM:<address>"))?;
    let (path, params_text) = address::split_path(rest).map_err(|e| address_reply(e, true))?;
    let mut params = MailParams::default();
    for p in self::params(params_text) {
        mail_param(&mut params, &p)?;
    }
    let from = address::parse_mailbox(path, params.smtputf8, true, false)
        .map_err(|e| address_reply(e, true))?;
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(arg: &str, utf8: bool) -> Result<Command, Reply> {
    let rest =
        strip_keyword(arg, "TO:").ok_or_else(|| canned::syntax("Syntax: RCPT TO:<address>"))?;
    let (path, params_text) = address::split_path(rest).map_err(|e| address_reply(e, false))?;
    let mut dsn = RcptDsn::default();
    for p in params(params_text) {
        rcpt_param(&mut dsn, &p)?;
    }
    match address::parse_mailbox(path, utf8, false, true) {
        Ok(Some(to)) => Ok(Command::Rcpt { to, dsn }),
        Ok(None) => Err(address_reply(AddressError::Syntax("empty address"), false)),
        Err(e) => Err(address_reply(e, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, Reply> {
        parse(s.as_bytes(), false)
    }

    #[test]
    fn verbs_case_insensitive() {
        assert_eq!(
            p("ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(p("QUIT"), Ok(Command::Quit));
        assert_eq!(p("StartTLS"), Ok(Command::Starttls));
        assert_eq!(p("BOGUS").unwrap_err().code, 502);
        assert_eq!(p("EHLO").unwrap_err().code, 501);
        assert_eq!(p("DATA x").unwrap_err().code, 501);
    }

    #[test]
    fn mail_with_params() {
        match p("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME") {
            Ok(Command::Mail { from, params }) => {
                assert_eq!(from.unwrap().to_string(), "a@b.example");
                assert_eq!(params.size, Some(1000));
                assert_eq!(params.body, Body::EightBitMime);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p("MAIL FROM:<>"),
            Ok(Command::Mail { from: None, .. })
        ));
        assert!(matches!(p("mail from: <a@b>"), Ok(Command::Mail { .. })));
        assert_eq!(p("MAIL FROM:<a@b> MT-PRIORITY=3").unwrap_err().code, 555);
        assert_eq!(p("MAIL FROM:<a@b> SIZE=x").unwrap_err().code, 501);
        assert_eq!(p("MAIL TO:<a@b>").unwrap_err().code, 501);
        assert_eq!(p("MAIL FROM:<a@@b>").unwrap_err().lines[0][..5], *"5.1.7");
    }

    #[test]
    fn requiretls_is_a_bare_mail_parameter() {
        match p("MAIL FROM:<a@b.example> requiretls SIZE=10") {
            Ok(Command::Mail { params, .. }) => assert!(params.requiretls),
            other => panic!("{other:?}"),
        }
        match p("MAIL FROM:<a@b.example>") {
            Ok(Command::Mail { params, .. }) => assert!(!params.requiretls),
            other => panic!("{other:?}"),
        }
        // RFC 8689 §2: the keyword takes no value.
        assert_eq!(p("MAIL FROM:<a@b> REQUIRETLS=YES").unwrap_err().code, 555);
    }

    #[test]
    fn smtputf8_governs_utf8_addresses() {
        assert_eq!(p("MAIL FROM:<jörg@b.example>").unwrap_err().code, 553);
        assert!(p("MAIL FROM:<jörg@b.example> SMTPUTF8").is_ok());
        assert_eq!(p("RCPT TO:<ü@b.example>").unwrap_err().code, 553);
        assert!(parse("RCPT TO:<ü@b.example>".as_bytes(), true).is_ok());
    }

    #[test]
    fn rcpt_and_postmaster() {
        assert!(
            matches!(p("RCPT TO:<Postmaster>"), Ok(Command::Rcpt { to, .. }) if to.is_bare_postmaster())
        );
        assert_eq!(p("RCPT TO:<>").unwrap_err().code, 501);
        assert_eq!(p("RCPT TO:<a@b> XFORWARD=1").unwrap_err().code, 555);
    }

    #[test]
    fn dsn_parameters() {
        match p("MAIL FROM:<a@b> ret=hdrs ENVID=QQ+2B1") {
            Ok(Command::Mail { params, .. }) => {
                assert_eq!(params.dsn.ret, Some(Ret::Hdrs));
                assert_eq!(params.dsn.envid.as_deref(), Some("QQ+2B1"));
            }
            other => panic!("{other:?}"),
        }
        match p("RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d") {
            Ok(Command::Rcpt { dsn, .. }) => {
                assert_eq!(dsn.notify.unwrap().to_string(), "SUCCESS,FAILURE");
                assert_eq!(dsn.orcpt.as_deref(), Some("rfc822;c+2Bx@d"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "MAIL FROM:<a@b> RET=ALL",
            "MAIL FROM:<a@b> RET=FULL RET=HDRS",
            "MAIL FROM:<a@b> ENVID=a=b",
            "MAIL FROM:<a@b> ENVID=a+zz",
            "RCPT TO:<c@d> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<c@d> NOTIFY=SOMETIMES",
            "RCPT TO:<c@d> ORCPT=c@d",
            "RCPT TO:<c@d> ORCPT=rfc822;c=d",
            "RCPT TO:<c@d> NOTIFY=NEVER NOTIFY=NEVER",
        ] {
            let r = p(bad).unwrap_err();
            assert_eq!((r.code, &r.lines[0][..5]), (501, "5.5.4"), "{bad}");
        }
    }

    #[test]
    fn nul_and_bad_utf8_rejected() {
        assert_eq!(parse(b"NOOP\0", false).unwrap_err().code, 500);
        assert_eq!(parse(b"EHLO \xff", false).unwrap_err().code, 500);
    }

    #[test]
    fn helo_name_with_control_characters_refused() {
        // Found by fuzz/command: the name is written into the Received: header of the
        // queue file, which must hold CRLF lines only.
        for line in [
            &b"EHLO a\rb"[..],
            b"HELO a\rb",
            b"EHLO a\x02",
            b"EHLO a\tb.example",
            b"HELO x\x7f",
        ] {
            assert_eq!(parse(line, false).unwrap_err().code, 501, "{line:?}");
        }
        assert_eq!(
            p("EHLO [192.0.2.1]"),
            Ok(Command::Ehlo("[192.0.2.1]".into()))
        );
    }

    #[test]
    fn bdat_size_and_last() {
        assert_eq!(
            p("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            p("bdat 1024"),
            Ok(Command::Bdat {
                size: 1024,
                last: false
            })
        );
        assert_eq!(
            p("BDAT 7 last"),
            Ok(Command::Bdat {
                size: 7,
                last: true
            })
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT +5",
            "BDAT 5 FIRST",
            "BDAT 5 LAST x",
            "BDAT 99999999999999999999999",
            "BDAT  5",
        ] {
            assert_eq!(p(bad).unwrap_err().code, 501, "{bad}");
            assert!(is_bdat(bad.as_bytes()), "{bad}");
        }
        assert!(!is_bdat(b"BDATX 5") && !is_bdat(b"DATA"));
    }

    #[test]
    fn auth_initial_response() {
        assert_eq!(
            p("AUTH plain AHVAcA=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some("AHVAcA==".into())
            })
        );
    }
}
