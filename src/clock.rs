//! Wall-clock time and calendar dates, computed here rather than by the C library:
//! `time_t` differs between Rust's libc view and musl 1.2 on 32-bit targets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `d.as_nanos()` in u64 (the same number for any duration under 584 years; more
/// saturates). Durations become whole units (milliseconds, hundredths of a second,
/// tenths of a µs) from this: `Duration`'s own `as_millis` and `as_nanos` are u128,
/// whose division and formatting are 3 KB of code on 32-bit MIPS.
pub fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// `d.as_millis()` in u64 (see [`nanos`]).
pub fn millis(d: Duration) -> u64 {
    nanos(d) / 1_000_000
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// UTC calendar date of a Unix time: (year, month 1-12, day 1-31, seconds of the day).
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
    fn millis_as_duration_says() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_micros(1_500),
            Duration::new(86_400 * 365 * 100, 999_999_999),
        ] {
            assert_eq!(u128::from(millis(d)), d.as_millis(), "{d:?}");
            assert_eq!(u128::from(nanos(d)), d.as_nanos(), "{d:?}");
        }
    }

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
