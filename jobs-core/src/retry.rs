//! Retry backoff: how long a failed job waits before its next attempt.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: `base · 2^(n-1)` before retry `n`, capped at `cap`, plus an optional
/// random jitter in `[0, jitter)`.
///
/// The default: 2, 4, 8, 16, 32 minutes, then one hour for every later retry.
///
/// ```
/// use std::time::Duration;
/// use jobs_core::RetryPolicy;
///
/// let p = RetryPolicy::default();
/// assert_eq!(p.delay(1), Duration::from_secs(120));
/// assert_eq!(p.delay(3), Duration::from_secs(480));
/// assert_eq!(p.delay(9), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// Upper bound of a random delay added to each retry (zero: none), so that jobs that
    /// failed together do not all come back at the same instant.
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(120),
            cap: Duration::from_secs(3600),
            jitter: Duration::ZERO,
        }
    }
}

impl RetryPolicy {
    /// A policy with the given base and cap and no jitter.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        RetryPolicy { base, cap, jitter: Duration::ZERO }
    }

    /// The same policy with a jitter bound.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry number `retry` (1 for the first retry), without jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(63);
        // 2^exp overflows u32 quickly; saturating keeps huge retry numbers at the cap.
        let factor = 1u32.checked_shl(exp).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry number `retry`, with jitter drawn from the thread's RNG.
    pub fn delay_with_jitter(&self, retry: u32) -> Duration {
        let d = self.delay(retry);
        if self.jitter.is_zero() {
            return d;
        }
        let j = rand::rng().random_range(0..self.jitter.as_millis().max(1) as u64);
        d + Duration::from_millis(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_2_4_8_minutes_capped_at_an_hour() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=9).map(|n| p.delay(n).as_secs() / 60).collect();
        assert_eq!(mins, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(3600));
        assert_eq!(p.delay(0), Duration::from_secs(120));
    }

    #[test]
    fn custom_base_and_cap() {
        let p = RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(100));
        let ms: Vec<u128> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(ms, [20, 40, 80, 100, 100]);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let p = RetryPolicy::default().with_jitter(Duration::from_secs(10));
        for _ in 0..200 {
            let d = p.delay_with_jitter(1);
            assert!(d >= Duration::from_secs(120) && d < Duration::from_secs(130), "{d:?}");
        }
    }
}
