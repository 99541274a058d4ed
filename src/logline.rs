//! Log set-up and the log-line formats that other tools parse. The shapes follow
//! Postfix's so existing log tooling (pflogsumm, fail2ban filters) reads them; they
//! live here, in one place, so they stay the same wherever they are written.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use log::{Level, LevelFilter};

use crate::mailauth::signing::{Signed, Unsigned};
use crate::text::Joined;
use crate::tls::fingerprint::colon_hex;
use crate::tls::{ClientCert, TlsInfo, Trust};

/// Logs to stderr, one line per event, no colours: `tinymta[PID]: warning: text`.
/// `TINYMTA_LOG` (or `RUST_LOG`) sets the level, default `info`.
pub fn init() {
    let spec = std::env::var("TINYMTA_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = Filter::parse(&spec);
    log::set_max_level(filter.max());
    let logger = Box::leak(Box::new(StderrLog {
        pid: std::process::id(),
        filter,
    }));
    // Only fails if a logger is set already, which then stays.
    let _ = log::set_logger(logger);
}

/// The level filter of `TINYMTA_LOG`/`RUST_LOG`, read as env_logger reads it (without
/// its `/regex` part): comma-separated directives, each `LEVEL`, `TARGET=LEVEL` or a
/// bare `TARGET` (everything from it). A record gets the level of the longest `TARGET`
/// that prefixes its target (`tinymta::outbound=debug,warn`), else the bare `LEVEL`,
/// else `error`. Invalid directives are ignored with a warning, as env_logger does.
struct Filter {
    /// Longest target last; `None` is the default level.
    directives: Vec<(Option<String>, LevelFilter)>,
}

impl Filter {
    fn parse(spec: &str) -> Filter {
        let spec = match spec.split_once('/') {
            Some((directives, _)) => {
                eprintln!("warning: message filters ('/...') in logging specs are not supported, ignoring it");
                directives
            }
            None => spec,
        };
        let mut directives = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split('=');
            let (target, level) = (fields.next(), fields.next().map(str::trim));
            let directive = match (target, level, fields.next()) {
                (Some(t), None, None) => match t.parse::<LevelFilter>() {
                    Ok(level) => Ok((None, level)),
                    Err(_) => Ok((Some(t), LevelFilter::max())),
                },
                (Some(t), Some(""), None) => Ok((Some(t), LevelFilter::max())),
                (Some(t), Some(l), None) => l.parse().map(|level| (Some(t), level)).map_err(|_| l),
                _ => Err(part),
            };
            match directive {
                // An empty target prefixes every target: the same as none.
                Ok((t, level)) => {
                    directives.push((t.filter(|t| !t.is_empty()).map(String::from), level))
                }
                Err(bad) => eprintln!("warning: invalid logging spec '{bad}', ignoring it"),
            }
        }
        if directives.is_empty() {
            directives.push((None, LevelFilter::Error));
        }
        directives.sort_by_key(|(target, _)| target.as_ref().map_or(0, String::len));
        Filter { directives }
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.directives
            .iter()
            .rev()
            .find(|(t, _)| t.as_deref().is_none_or(|t| target.starts_with(t)))
            .map_or(LevelFilter::Off, |(_, level)| *level)
    }

    fn max(&self) -> LevelFilter {
        self.directives
            .iter()
            .map(|(_, level)| *level)
            .max()
            .unwrap_or(LevelFilter::Off)
    }
}

struct StderrLog {
    pid: u32,
    filter: Filter,
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.filter.level_for(metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        // One write per line, so lines from concurrent tasks and processes never mix.
        let line = format!("tinymta[{}]: {level}{}\n", self.pid, record.args());
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `host[ip]` as Postfix names a client; `unknown` when there is no reverse name.
pub fn client_name(host: Option<&str>, ip: IpAddr) -> String {
    format!("{}[{}]", host.unwrap_or("unknown"), ip)
}

pub fn tls_inbound_established(client: &str, info: &TlsInfo) {
    log::info!(
        "{} TLS connection established from {}: {}",
        info.trust,
        client,
        info
    );
    // Postfix's line for a client certificate (smtpd_tls_loglevel 1).
    if let Some(c) = &info.client_cert {
        log::info!(
            "{client}: {}: subject_CN={}, issuer={}, fingerprint={}, pkey_fingerprint={}",
            info.trust,
            c.subject_cn,
            c.issuer_cn,
            colon_hex(&c.fingerprint),
            colon_hex(&c.pkey_fingerprint)
        );
    }
}

/// The `Received:` comment on a client certificate, in Postfix's words (`Client CN
/// "...", Issuer "..." (verified OK)`), with the certificate's fingerprint folded onto
/// the next line.
pub fn client_cert_comment(c: &ClientCert, trust: Trust) -> String {
    let verified = match trust {
        Trust::Trusted | Trust::Verified => "verified OK",
        _ => "not verified",
    };
    format!(
        "Client CN \"{}\", Issuer \"{}\" ({verified})\r\n\t {} fingerprint {}",
        c.subject_cn,
        c.issuer_cn,
        c.digest,
        colon_hex(&c.fingerprint)
    )
}

/// How an outbound TLS session began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsStart {
    /// STARTTLS after EHLO.
    StartTls,
    /// TLS from the first byte (`smtps:`, port 465).
    Implicit,
}

/// `Verified TLS connection established to mx.example.com[192.0.2.1]:25: TLSv1.3 with
/// cipher ... (256/256 bits) via STARTTLS` (or `implicit TLS`): Postfix's line, with how
/// the session began at the end, where Postfix's log parsers do not look.
pub fn tls_outbound_established(server: &str, info: &TlsInfo, start: TlsStart) {
    let how = match start {
        TlsStart::StartTls => "via STARTTLS",
        TlsStart::Implicit => "implicit TLS",
    };
    log::info!(
        "{} TLS connection established to {}: {} {how}",
        info.trust,
        server,
        info
    );
}

pub fn tls_inbound_failed(client: &str, reason: &str) {
    log::warn!("TLS handshake failed from {client}: {reason}");
}

/// One line per recipient and attempt:
/// `ID: to=<rcpt>, relay=local, delay=0.1, dsn=2.0.0, status=sent (detail)`.
pub fn delivery(
    id: &str,
    rcpt: &str,
    relay: &str,
    delay: Duration,
    dsn: &str,
    status: &str,
    detail: &str,
) {
    let delay = Seconds2(delay);
    log::info!(
        "{id}: to=<{rcpt}>, relay={relay}, delay={delay}, dsn={dsn}, status={status} ({detail})"
    );
}

/// Seconds with two decimals (`12.35`), rounded half up, in integers: the float
/// formatting that `{:.2}` of an `f64` needs is 15 KB of code on a soft-float router.
struct Seconds2(Duration);

impl fmt::Display for Seconds2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let centis = (crate::clock::nanos(self.0) + 5_000_000) / 10_000_000;
        write!(f, "{}.{:02}", centis / 100, centis % 100)
    }
}

/// `ID: from=<sender>, size=N, nrcpt=N (queue active)` when a message is queued, with
/// `notes` (`name=value` fields such as [`dkim`]'s, or the `auth=` results of the
/// checks of mail from outside) before the parenthesis.
pub fn queued(id: &str, sender: &str, size: u64, nrcpt: usize, notes: &[String]) {
    let notes: String = notes.iter().map(|n| format!(", {n}")).collect();
    log::info!("{id}: from=<{sender}>, size={size}, nrcpt={nrcpt}{notes} (queue active)");
}

/// The `queued` note of a REQUIRETLS message (RFC 8689): `requiretls`, so a grep
/// finds every message whose sender demanded authenticated TLS on every hop.
pub fn requiretls(on: bool) -> Option<String> {
    on.then(|| "requiretls".to_string())
}

/// What signing at queueing came to: the `queued` note of a signed message,
/// `dkim=example.org/s1+s2` (`d=`, then the `s=` of each signature), or a warning
/// when a message we originate could not be signed (no key for its `From:` domain is
/// the common case, not worth a line).
pub fn dkim(id: &str, signing: &Result<Signed, Unsigned>) -> Option<String> {
    match signing {
        Ok(s) => Some(format!("dkim={}/{}", s.domain, s.selectors.joined("+"))),
        Err(Unsigned::NoKey) => None,
        Err(why) => {
            log::warn!("{id}: not DKIM-signed: {why}");
            None
        }
    }
}

/// `ID: removed` when a message leaves the queue.
pub fn removed(id: &str) {
    log::info!("{id}: removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(spec: &str, targets: &[&str]) -> Vec<LevelFilter> {
        let f = Filter::parse(spec);
        targets.iter().map(|t| f.level_for(t)).collect()
    }

    #[test]
    fn delays_have_two_decimals() {
        let s = |ms: u64| Seconds2(Duration::from_millis(ms)).to_string();
        assert_eq!(s(0), "0.00");
        assert_eq!(s(4), "0.00");
        assert_eq!(s(5), "0.01");
        assert_eq!(s(1234), "1.23");
        assert_eq!(s(1235), "1.24");
        assert_eq!(s(99_999), "100.00");
        assert_eq!(s(86_400_000 * 5), "432000.00");
        // The same as the u128 formula it replaced, at the rounding edges too.
        for nanos in [
            0,
            4_999_999,
            5_000_000,
            994_999_999,
            995_000_000,
            999_999_999,
        ] {
            for secs in [0, 1, 59, 86_400 * 365 * 100] {
                let d = Duration::new(secs, nanos);
                let centis = (d.as_nanos() + 5_000_000) / 10_000_000;
                let old = format!("{}.{:02}", centis / 100, centis % 100);
                assert_eq!(Seconds2(d).to_string(), old, "{d:?}");
            }
        }
    }

    #[test]
    fn filter_reads_levels_and_targets_as_env_logger() {
        use LevelFilter::*;
        let t = ["tinymta::outbound::client", "tinymta::inbound", "other"];
        assert_eq!(levels("info", &t), [Info, Info, Info]);
        assert_eq!(levels("DEBUG", &t), [Debug, Debug, Debug]);
        assert_eq!(levels("off", &t), [Off, Off, Off]);
        assert_eq!(levels("", &t), [Error, Error, Error]);
        assert_eq!(
            levels("tinymta::outbound=debug,warn", &t),
            [Debug, Warn, Warn]
        );
        assert_eq!(
            levels("tinymta=info,tinymta::outbound=trace", &t),
            [Trace, Info, Off]
        );
        // A bare target: everything from it; invalid directives are skipped.
        assert_eq!(levels("tinymta::inbound", &t), [Off, Trace, Off]);
        assert_eq!(levels("loud, warn", &t), [Warn, Warn, Warn]);
        assert_eq!(levels("x=y=z,tinymta=nonsense", &t), [Error, Error, Error]);
        assert_eq!(levels("debug/some text", &t), [Debug, Debug, Debug]);
        assert_eq!(levels("=debug", &t), [Debug, Debug, Debug]);
        assert_eq!(levels("tinymta=, error", &t), [Trace, Trace, Error]);
        assert_eq!(levels("tinymta::inbound= debug", &t), [Off, Debug, Off]);
        assert_eq!(Filter::parse("warn,tinymta::queue=debug").max(), Debug);
    }
}
