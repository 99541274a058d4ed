//! The two texts of MTA-STS (RFC 8461): the `_mta-sts` TXT record (§3.1) and the
//! policy file (§3.2), parsed into what delivery enforces, and the MX pattern match of
//! §4.1. Total functions of their input: every text gives a value or a message saying
//! what is wrong with it; nothing here does I/O.

use std::fmt;

use crate::domain::{canonical_host, check_name, NameRules};

/// The longest `max_age` honoured (RFC 8461 §3.2: about a year).
pub const MAX_AGE_CAP: u64 = 31_557_600;

/// What the policy asks of a sender (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only matching MX hosts, over PKIX-verified TLS; otherwise the mail waits.
    Enforce,
    /// Deliver as without a policy, and report what enforcing would have refused.
    Testing,
    /// The domain withdrew its policy: as if there were none.
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsPolicy {
    pub mode: Mode,
    /// `mx:` patterns in file order, lower case, without a trailing dot.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached, capped at [`MAX_AGE_CAP`].
    pub max_age: u64,
    /// The policy text as served (for the cache and for TLS-RPT's `policy-string`).
    pub text: String,
}

/// The `id=` of a valid `v=STSv1` TXT record at `_mta-sts.DOMAIN` (§3.1). Records that
/// do not start with `v=STSv1` are ignored; anything but exactly one that does means
/// the domain has no usable record (`Err` says why).
pub fn record_id(records: &[String]) -> Result<String, String> {
    let sts: Vec<&String> = records.iter().filter(|r| starts_with_version(r)).collect();
    let record = match sts.as_slice() {
        [] => return Err("no v=STSv1 TXT record".into()),
        [one] => one,
        _ => return Err(format!("{} v=STSv1 TXT records (one expected)", sts.len())),
    };
    let mut id = None;
    for (i, field) in record
        .split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .enumerate()
    {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("TXT record field '{field}' is not key=value"));
        };
        match (i, key) {
            (0, _) => {} // v=STSv1, checked above
            (_, "id") if id.is_some() => return Err("TXT record has two id= fields".into()),
            (_, "id") => {
                let ok = (1..=32).contains(&value.len())
                    && value.bytes().all(|b| b.is_ascii_alphanumeric());
                if !ok {
                    return Err(format!(
                        "TXT record id '{value}' is not 1 to 32 letters and digits"
                    ));
                }
                id = Some(value.to_string());
            }
            // Extension fields (RFC 8461 §3.1 sts-ext) are ignored.
            _ => {}
        }
    }
    id.ok_or_else(|| "TXT record has no id= field".into())
}

fn starts_with_version(record: &str) -> bool {
    let Some(rest) = record.strip_prefix("v=STSv1") else {
        return false;
    };
    let rest = rest.trim_start();
    rest.is_empty() || rest.starts_with(';')
}

impl StsPolicy {
    /// Parses a policy file (§3.2): `key: value` lines ended by LF or CRLF; `version`
    /// (STSv1), `mode` and `max_age` exactly once, `mx` at least once unless the mode
    /// is `none`; unknown keys are ignored.
    pub fn parse(text: &str) -> Result<StsPolicy, String> {
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let at = n + 1;
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {at}: '{line}' is not 'key: value'"));
            };
            let value = value.trim();
            let once = |seen: bool| {
                if seen {
                    Err(format!("line {at}: '{key}' is given twice"))
                } else {
                    Ok(())
                }
            };
            match key {
                "version" => {
                    once(version.is_some())?;
                    version = Some(value.to_string());
                }
                "mode" => {
                    once(mode.is_some())?;
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        _ => {
                            return Err(format!(
                                "line {at}: mode '{value}' is not enforce, testing or none"
                            ))
                        }
                    });
                }
                "max_age" => {
                    once(max_age.is_some())?;
                    let ok = (1..=10).contains(&value.len())
                        && value.bytes().all(|b| b.is_ascii_digit());
                    let age: u64 =
                        value.parse().ok().filter(|_| ok).ok_or_else(|| {
                            format!("line {at}: max_age '{value}' is not a number")
                        })?;
                    max_age = Some(age.min(MAX_AGE_CAP));
                }
                "mx" => mx.push(mx_pattern(value).map_err(|e| format!("line {at}: {e}"))?),
                _ => {}
            }
        }
        match version.as_deref() {
            Some("STSv1") => {}
            Some(v) => return Err(format!("version '{v}' is not STSv1")),
            None => return Err("no version field".into()),
        }
        let mode = mode.ok_or("no mode field")?;
        let max_age = max_age.ok_or("no max_age field")?;
        if mx.is_empty() && mode != Mode::None {
            return Err(format!("mode {mode} without any mx field"));
        }
        Ok(StsPolicy {
            mode,
            mx,
            max_age,
            text: text.to_string(),
        })
    }

    /// Whether MX host `host` is allowed by the policy's patterns (§4.1).
    pub fn allows(&self, host: &str) -> bool {
        let host = canonical_host(host);
        self.mx.iter().any(|p| mx_matches(p, &host))
    }

    /// The policy's lines, for TLS-RPT's `policy-string` (RFC 8460 §4.4).
    pub fn lines(&self) -> Vec<String> {
        self.text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Checks one `mx:` value: a host name, or `*.` and a domain.
fn mx_pattern(value: &str) -> Result<String, String> {
    let v = canonical_host(value);
    let name = v.strip_prefix("*.").unwrap_or(&v);
    check_name(name, NameRules::DNS)
        .map_err(|_| format!("mx '{value}' is not a host name or *.domain pattern"))?;
    Ok(v)
}

/// RFC 8461 §4.1: a pattern is an exact host name, or `*.` and a domain, which
/// matches one more label on the left (`*.example.com` matches `mx.example.com`, not
/// `a.b.example.com` nor `example.com`). Both sides lower case, no trailing dot.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(records: &[&str]) -> Result<String, String> {
        record_id(&records.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn txt_record_rules() {
        assert_eq!(
            txt(&["v=STSv1; id=20160831085700Z;"]).unwrap(),
            "20160831085700Z"
        );
        assert_eq!(txt(&["v=STSv1;id=abc"]).unwrap(), "abc");
        assert_eq!(
            txt(&["v=spf1 -all", "v=STSv1; id=a1; ext=x"]).unwrap(),
            "a1"
        );
        assert!(txt(&[]).is_err());
        assert!(txt(&["v=STSv1; id=a", "v=STSv1; id=b"]).is_err());
        assert!(txt(&["v=STSv1"]).is_err());
        assert!(txt(&["v=STSv1; id="]).is_err());
        assert!(txt(&["v=STSv1; id=has-dash"]).is_err());
        assert!(txt(&[&format!("v=STSv1; id={}", "a".repeat(33))]).is_err());
        assert!(txt(&["v=STSv10; id=a"]).is_err());
        assert!(txt(&["id=a; v=STSv1"]).is_err());
    }

    #[test]
    fn policy_file_rules() {
        let p = StsPolicy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 86400\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 86400);
        assert_eq!(p.lines().len(), 5);
        let capped =
            StsPolicy::parse("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 9999999999\nx: y\n")
                .unwrap();
        assert_eq!(capped.max_age, MAX_AGE_CAP);
        assert_eq!(capped.mode, Mode::Testing);
        let none = StsPolicy::parse("version: STSv1\nmode: none\nmax_age: 1").unwrap();
        assert_eq!(none.mode, Mode::None);
        for bad in [
            "",
            "mode: enforce\nmx: a.b\nmax_age: 1",
            "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1",
            "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a.b",
            "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1",
            "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901",
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1",
            "version: STSv1\nnot a field\nmode: enforce\nmx: a.b\nmax_age: 1",
        ] {
            assert!(StsPolicy::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mx_wildcards_match_one_label() {
        assert!(mx_matches("*.example.com", "mx.example.com"));
        assert!(!mx_matches("*.example.com", "a.mx.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", "mxexample.com"));
        assert!(mx_matches("mx.example.com", "mx.example.com"));
        assert!(!mx_matches("mx.example.com", "mx2.example.com"));
        let p = StsPolicy::parse("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 1")
            .unwrap();
        assert!(p.allows("MX1.Example.com."));
        assert!(!p.allows("mx1.example.org"));
    }
}
