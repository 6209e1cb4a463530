//! Rate and concurrency limits as the backends enforce them (issue 18): the part of the
//! [`Backend`](super::Backend) contract about jobs with [`NewJob::limits`](crate::NewJob::limits).
//!
//! * **Starting.** `fetch` hands out a ready job with limits only if every one of them
//!   allows it at the backend's now: no rate limiter of it is held closed
//!   ([`Backend::throttle`](super::Backend::throttle)) past now, every rate limiter has had
//!   fewer than `max` starts in the window `(now - per, now]`, and its concurrency limiter
//!   has fewer than `max` jobs holding a slot, or a slot is reserved for this job. Then
//!   each rate limiter logs a start at now, and the job holds a slot of its concurrency
//!   limiter while it is `running` (until it leaves `running`, or until its lease deadline
//!   plus the fetch's `grace` passes, when `reap` would take it back).
//! * **Parking.** A job refused is *parked* on the first limiter that refuses it (its
//!   rate limiters in order, then its concurrency limiter): it stays `pending` to every
//!   reader, leaves its ready list, is counted in `stats().parked` and in the limiter's
//!   `parked`, and the fetch goes on with the next ready job (a parked job counts against
//!   [`FETCH_SKIP_LIMIT`](super::FETCH_SKIP_LIMIT)). Limited keys never block other keys.
//! * **Unparking.** A rate limiter's parked jobs become ready again when its next slot
//!   opens (the oldest start of the window plus `per`, or the end of its hold), as many as
//!   it has slots, in the order they were parked, to the head of their priority; the fetch
//!   promotes them as it does due jobs, and `next_due_in` counts that time. A concurrency
//!   limiter's first parked job becomes ready when a slot frees (a job holding one leaves
//!   `running`: `complete`, `fail`, `release`, `give_back`, `reap`, `throttle`), to the
//!   head of its priority, with the slot reserved for it: until it is fetched, cancelled, or
//!   [`LIMIT_RESERVATION`] plus the fetch's `grace` has passed, it holds the slot, so that
//!   with `max = 1` the jobs of a key run in the order they were parked.
//! * **Cancel** of a parked job cancels it as a pending one; of a ready job holding a
//!   reservation, frees the slot (the next parked job gets it).
//! * **Throttle** (`ctx.rate_limited`): only for a `running` job with the lease's attempt
//!   (else `Stale`, nothing changes). A cancel requested → `Cancelled`. Otherwise it frees
//!   its concurrency slot; with rate limits, each is held closed until `now + delay` (a
//!   later hold stays) and the job is parked at the head of its first rate limiter's jobs:
//!   `Parked { until }`; without, it is delayed as `give_back` delays: `Delayed { at }`.
//!   `attempt` and `retry_count` are unchanged; counter `throttled` += 1.
//! * **`limits(max)`**: the limiters in use (a start in the window, a slot held or
//!   reserved, a job parked, or a hold not over), by name, at most `max`.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// How long a slot freed for a parked concurrency-limited job stays reserved for it while
/// it waits in its ready list (beyond the fetch's `grace`).
pub const LIMIT_RESERVATION: Duration = Duration::from_secs(60);

/// The most limiters [`Backend::limits`](super::Backend::limits) lists.
pub const LIMITS_LIST_MAX: usize = 1_000;

/// What became of a [`Backend::throttle`](super::Backend::throttle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleOutcome {
    /// Parked on its first rate limiter, held closed until `until`.
    Parked {
        /// When the limiter opens again.
        until: DateTime<Utc>,
    },
    /// No rate limit: delayed until `at`, as `pending`.
    Delayed {
        /// When it becomes ready again.
        at: DateTime<Utc>,
    },
    /// The job had been asked to cancel while running; it is now `cancelled`.
    Cancelled,
    /// The lease is no longer this delivery's: nothing changed.
    Stale,
}

/// The longest delay a throttle may ask for (as a retry delay may).
pub const MAX_THROTTLE: Duration = crate::job::MAX_RETRY_DELAY;

/// Checks a throttle's delay (1 ms to [`MAX_THROTTLE`]).
pub(crate) fn check_throttle(delay: Duration) -> crate::Result<()> {
    if delay < Duration::from_millis(1) || delay > MAX_THROTTLE {
        return Err(crate::Error::InvalidJob {
            reason: format!(
                "a rate-limited delay must be between 1 ms and {} days, found {delay:?}",
                MAX_THROTTLE.as_secs() / 86_400
            ),
        });
    }
    Ok(())
}
