//! Milliseconds, the unit the backends keep time in: conversions to and from `DateTime`
//! and `Duration`, in one place so that both backends round the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// A millisecond Unix timestamp (as the backends keep them) as a `DateTime`; `None` for
/// zero or negative (the backends' "unset").
pub(crate) fn ms_to_time(ms: i64) -> Option<DateTime<Utc>> {
    if ms <= 0 { None } else { DateTime::from_timestamp_millis(ms) }
}

/// A duration in whole milliseconds, rounded up so that a positive duration never becomes
/// zero (a 0.5 ms delay still makes a delayed job), saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// [`duration_ms`] as a signed count, for arithmetic on timestamps (saturating).
pub(crate) fn duration_ms_i64(d: Duration) -> i64 {
    i64::try_from(duration_ms(d)).unwrap_or(i64::MAX)
}

/// A millisecond difference as a `Duration`, zero if negative.
pub(crate) fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The system clock in Unix milliseconds (0 before 1970). Only the in-memory backend reads
/// it, as its "server clock"; everything else takes time from the backend.
pub(crate) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_and_saturate() {
        assert_eq!(duration_ms(Duration::ZERO), 0);
        assert_eq!(duration_ms(Duration::from_micros(500)), 1);
        assert_eq!(duration_ms(Duration::from_millis(7)), 7);
        assert_eq!(duration_ms(Duration::from_micros(7_001)), 8);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
        assert_eq!(duration_ms_i64(Duration::MAX), i64::MAX);
        assert_eq!(ms_duration(-5), Duration::ZERO);
        assert_eq!(ms_to_time(0), None);
        assert_eq!(ms_to_time(1_000).map(|t| t.timestamp()), Some(1));
    }
}
