//! Time as the agent and the CLI write it, read it and wait on it: wall-clock milliseconds for records,
//! `YYYY-MM-DD HH:MM:SS` for people, and durations as people type them (`30s`, `2m`).

use std::time::Duration;

/// Milliseconds since the Unix epoch (wall clock: for timestamps that are stored or shown).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds on a monotonic clock (since this process first asked): what a `Connection`'s
/// timers run on. Wall-clock time can jump (NTP, a suspended laptop) and would fire keep-alives
/// and idle timeouts early or never.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// Sleep until `at` on the monotonic clock the connection runs on; for ever without one.
pub async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(at) => tokio::time::sleep(std::time::Duration::from_millis(at.saturating_sub(monotonic_ms()))).await,
        None => std::future::pending().await,
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.find(|c: char| c.is_ascii_alphabetic()).map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.trim().parse().map_err(|_| format!("bad duration {text:?}: try 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?}: use ms, s, m or h")),
    };
    if !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration as a person would write it: `30m`, `2h`, `45s`.
pub fn describe(duration: Duration) -> String {
    match duration.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The time of day, UTC, `HH:MM:SS`.
pub fn clock() -> String {
    format_time(now_ms())[11..].to_owned()
}

/// `YYYY-MM-DD HH:MM:SS` UTC, without a date crate.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_timers_run_on_a_monotonic_clock() {
        let first = monotonic_ms();
        std::thread::sleep(Duration::from_millis(2));
        let second = monotonic_ms();
        assert!(second > first, "{second} after {first}");
        // Counted from this process's start, not the Unix epoch: a wall-clock jump moves nothing.
        assert!(second < 3_600_000, "{second} ms is wall-clock time, not a monotonic count");
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(describe(Duration::from_secs(1800)), "30m");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
