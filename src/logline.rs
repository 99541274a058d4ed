//! Log set-up and the log-line formats that other tools parse. The shapes follow
//! Postfix's so existing log tooling (pflogsumm, fail2ban filters) reads them; they
//! live here, in one place, so they stay the same wherever they are written.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use crate::mailauth::signing::{Signed, Unsigned};
use crate::tls::TlsInfo;

/// Logs to stderr, one line per event, no colours: `tinymta[PID]: warning: text`.
/// `TINYMTA_LOG` (or `RUST_LOG`) sets the level, default `info`.
pub fn init() {
    let env = env_logger::Env::new().filter_or(
        "TINYMTA_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    let pid = std::process::id();
    env_logger::Builder::from_env(env)
        .format(move |buf, record| {
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug | log::Level::Trace => "debug: ",
            };
            writeln!(buf, "tinymta[{pid}]: {level}{}", record.args())
        })
        .init();
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
    log::info!(
        "{id}: to=<{rcpt}>, relay={relay}, delay={:.2}, dsn={dsn}, status={status} ({detail})",
        delay.as_secs_f64()
    );
}

/// `ID: from=<sender>, size=N, nrcpt=N (queue active)` when a message is queued, with
/// `notes` (`name=value` fields such as [`dkim`]'s, or the `auth=` results of the
/// checks of mail from outside) before the parenthesis.
pub fn queued(id: &str, sender: &str, size: u64, nrcpt: usize, notes: &[String]) {
    let notes: String = notes.iter().map(|n| format!(", {n}")).collect();
    log::info!("{id}: from=<{sender}>, size={size}, nrcpt={nrcpt}{notes} (queue active)");
}

/// What signing at queueing came to: the `queued` note of a signed message,
/// `dkim=example.org/s1+s2` (`d=`, then the `s=` of each signature), or a warning
/// when a message we originate could not be signed (no key for its `From:` domain is
/// the common case, not worth a line).
pub fn dkim(id: &str, signing: &Result<Signed, Unsigned>) -> Option<String> {
    match signing {
        Ok(s) => Some(format!("dkim={}/{}", s.domain, s.selectors.join("+"))),
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
