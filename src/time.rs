//! Instants and durations as shadowcast passes them around: plain `i64`
//! microseconds since the Unix epoch (UTC), parsed and printed only at the
//! edges (CLI flags, file names, messages).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

pub const SECOND_US: i64 = 1_000_000;
pub const MINUTE_US: i64 = 60 * SECOND_US;
pub const HOUR_US: i64 = 60 * MINUTE_US;
pub const DAY_US: i64 = 24 * HOUR_US;

/// Parses an instant: RFC 3339 (`2026-11-20T13:00:00Z`, any offset), or a
/// naive UTC `2026-11-20T13:00[:00]` / `2026-11-20 13:00[:00]`, or a bare date
/// (midnight UTC).
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc().timestamp_micros());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros());
    }
    Err(format!(
        "`{text}` is not a time: use RFC 3339 like 2026-11-20T13:00:00Z, or 2026-11-20 13:00, or 2026-11-20"
    ))
}

/// Formats an instant as RFC 3339 in UTC with the precision it needs.
pub fn format_instant(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(instant) if micros % SECOND_US == 0 => {
            instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        }
        Some(instant) => instant.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{micros}µs since epoch (out of calendar range)"),
    }
}

/// Parses a duration such as `250ms`, `90s`, `15m`, `6h`, `7d`, `2w` into microseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. 30m, 6h or 7d"))?;
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let unit_us = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => SECOND_US,
        "m" => MINUTE_US,
        "h" => HOUR_US,
        "d" => DAY_US,
        "w" => 7 * DAY_US,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use us, ms, s, m, h, d or w)"
            ));
        }
    };
    amount
        .checked_mul(unit_us)
        .filter(|us| *us > 0)
        .ok_or_else(|| format!("`{text}` is not a positive duration that fits"))
}

/// A duration for people: whole seconds under a minute, whole minutes
/// under an hour, hours with one decimal after that (`24s`, `10m`, `6.0h`).
pub fn format_duration(micros: i64) -> String {
    let seconds = micros as f64 / SECOND_US as f64;
    if seconds < 60.0 {
        format!("{seconds:.0}s")
    } else if seconds < 3600.0 {
        format!("{:.0}m", seconds / 60.0)
    } else {
        format!("{:.1}h", seconds / 3600.0)
    }
}

/// [`parse_duration`] as a [`std::time::Duration`] (for timers and timeouts).
pub fn parse_std_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map(|us| std::time::Duration::from_micros(us.unsigned_abs()))
}

/// Whether `micros` (since 1970) falls in the years 1 to 9999: what an
/// access log's time may be (beyond, the arithmetic on times would
/// overflow, and no real log has such a time).
pub fn is_calendar_time(micros: i64) -> bool {
    const YEAR_1_US: i64 = -62_135_596_800_000_000;
    const YEAR_10000_US: i64 = 253_402_300_800_000_000;
    (YEAR_1_US..YEAR_10000_US).contains(&micros)
}

/// Start of the UTC hour that contains `micros`.
pub fn hour_floor(micros: i64) -> i64 {
    micros.div_euclid(HOUR_US) * HOUR_US
}

/// The wall clock, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

/// A running total of durations and how many there were, shared between
/// threads (for the service's metrics).
#[derive(Default)]
pub struct DurationTotal {
    nanos: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl DurationTotal {
    /// Adds the time from `started` until now, once.
    pub fn since(&self, started: std::time::Instant) {
        self.add(started.elapsed(), 1);
    }

    /// Adds `elapsed` `times` times (calls that each waited for all of it).
    pub fn add(&self, elapsed: std::time::Duration, times: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let nanos: u64 = elapsed.as_nanos().try_into().unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos.saturating_mul(times), Relaxed);
        self.count.fetch_add(times, Relaxed);
    }

    pub fn seconds(&self) -> f64 {
        self.nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }

    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_spellings_to_the_same_instant() {
        let expected = 1_763_643_600 * SECOND_US; // 2025-11-20T13:00:00Z
        for text in [
            "2025-11-20T13:00:00Z",
            "2025-11-20T14:00:00+01:00",
            "2025-11-20T13:00:00",
            "2025-11-20 13:00",
        ] {
            assert_eq!(parse_instant(text), Ok(expected), "{text}");
        }
        assert_eq!(parse_instant("2025-11-20"), Ok(expected - 13 * HOUR_US));
        assert!(
            parse_instant("yesterday")
                .unwrap_err()
                .contains("yesterday")
        );
    }

    #[test]
    fn formats_whole_seconds_without_fraction() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_instant(1), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn durations_print_in_the_largest_unit_that_keeps_them_readable() {
        assert_eq!(format_duration(24 * SECOND_US), "24s");
        assert_eq!(format_duration(10 * 60 * SECOND_US), "10m");
        assert_eq!(format_duration(90 * 60 * SECOND_US), "1.5h");
        assert_eq!(format_duration(6 * HOUR_US), "6.0h");
        assert_eq!(format_duration(0), "0s");
    }

    #[test]
    fn durations_need_a_unit_and_a_positive_amount() {
        assert_eq!(parse_duration("6h"), Ok(6 * HOUR_US));
        assert_eq!(parse_duration("7d"), Ok(7 * DAY_US));
        assert!(parse_duration("6").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("3y").unwrap_err().contains("unknown unit"));
    }
}
