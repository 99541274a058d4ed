//! Log set-up and the log-line formats that other tools parse. The shapes follow
//! Postfix's so existing log tooling (pflogsumm, fail2ban filters) reads them; they
//! live here, in one place, so they stay the same wherever they are written.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

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

/// `Verified TLS connection established to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher ...`
pub fn tls_outbound_established(server: &str, info: &TlsInfo) {
    log::info!(
        "{} TLS connection established to {}: {}",
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

/// `ID: from=<sender>, size=N, nrcpt=N (queue active)` when a message is queued.
pub fn queued(id: &str, sender: &str, size: u64, nrcpt: usize) {
    log::info!("{id}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)");
}

/// `ID: removed` when a message leaves the queue.
pub fn removed(id: &str) {
    log::info!("{id}: removed");
}

/// UTC calendar date of a Unix time: (year, month 1-12, day 1-31, seconds of the day).
/// Our own arithmetic, not the C library's: `time_t` differs between Rust's libc view
/// and musl 1.2 on 32-bit targets.
pub fn civil(unix: u64) -> (i64, u32, u32, u64) {
    let days = unix / 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32, unix % 86_400)
}

/// RFC 5322 date-time in UTC (`Mon, 23 Nov 2026 06:32:13 +0000`) for headers.
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, secs) = civil(unix);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(unix / 86_400 % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_415_533),
            "Mon, 23 Nov 2026 06:32:13 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
