//! The one rule that resolves a job's options: what the enqueue call sets wins, else what
//! the handler's attribute sets, else the service's defaults.
//!
//! Every path that creates a job — [`JobQueue::enqueue`](crate::JobQueue::enqueue), typed
//! enqueue, the scheduler, the HTTP API, the runner's CLI — resolves its options with
//! [`resolve`], so a handler's `#[job_handler("x", priority = "high")]` means the same
//! wherever a job of `x` comes from.
//!
//! ```
//! use std::time::Duration;
//! use jobs_core::{JobDefaults, JobOptions, JobPriority};
//!
//! let handler = JobOptions { priority: Some(JobPriority::High), ..JobOptions::NONE };
//! let call = JobOptions { max_retries: Some(0), ..JobOptions::NONE };
//! let job = jobs_core::options::resolve(call, handler, JobDefaults::default());
//! assert_eq!(job.priority, JobPriority::High); // the handler's
//! assert_eq!(job.max_retries, 0); // the call's
//! assert_eq!(job.timeout, Duration::from_secs(300)); // the service default
//! ```
//!
//! The retry backoff follows the same rule (`retry_base`, `retry_cap`), with one
//! difference: the service's default is the [`RetryPolicy`](crate::RetryPolicy) of the
//! worker that fails the job (`WorkerConfig::retry`, the runner's `JOBS_RETRY_*`), applied
//! when the job fails rather than written on every job. A job carries a backoff of its own
//! only when its call or its handler sets one (or [`JobDefaults`] does), so a job without
//! one costs no byte more in the backend.

use std::time::Duration;

use crate::job::{DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, JobPriority};

/// Options set at one level (an enqueue call, or a handler's attribute); `None` leaves
/// the option to the level below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOptions {
    /// `max_retries = N`: retries a job may use.
    pub max_retries: Option<u32>,
    /// `timeout = "30s"`: how long one attempt may run.
    pub timeout: Option<Duration>,
    /// `priority = "high"`.
    pub priority: Option<JobPriority>,
    /// `retry_base = "10s"`: the delay before the first retry (doubling after each).
    pub retry_base: Option<Duration>,
    /// `retry_cap = "5m"`: the longest delay before a retry.
    pub retry_cap: Option<Duration>,
}

/// The options set on a handler's attribute (`#[job_handler("x", max_retries = 5)]`).
pub type HandlerDefaults = JobOptions;

impl JobOptions {
    /// No option set.
    pub const NONE: JobOptions = JobOptions {
        max_retries: None,
        timeout: None,
        priority: None,
        retry_base: None,
        retry_cap: None,
    };

    /// These options over `lower`'s: each option set here wins, the rest come from `lower`.
    pub const fn or(self, lower: JobOptions) -> JobOptions {
        JobOptions {
            max_retries: match self.max_retries {
                Some(n) => Some(n),
                None => lower.max_retries,
            },
            timeout: match self.timeout {
                Some(t) => Some(t),
                None => lower.timeout,
            },
            priority: match self.priority {
                Some(p) => Some(p),
                None => lower.priority,
            },
            retry_base: match self.retry_base {
                Some(d) => Some(d),
                None => lower.retry_base,
            },
            retry_cap: match self.retry_cap {
                Some(d) => Some(d),
                None => lower.retry_cap,
            },
        }
    }

    /// Every option, taking those not set here from `defaults`.
    pub fn or_defaults(self, defaults: JobDefaults) -> JobDefaults {
        JobDefaults {
            priority: self.priority.unwrap_or(defaults.priority),
            max_retries: self.max_retries.unwrap_or(defaults.max_retries),
            timeout: self.timeout.unwrap_or(defaults.timeout),
            retry_base: self.retry_base.or(defaults.retry_base),
            retry_cap: self.retry_cap.or(defaults.retry_cap),
        }
    }
}

/// The complete options of a job: the service's defaults, and what [`resolve`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDefaults {
    /// Priority (default normal).
    pub priority: JobPriority,
    /// Retries it may use (default 3).
    pub max_retries: u32,
    /// How long one attempt may run (default 300 s).
    pub timeout: Duration,
    /// The delay before the first retry (default `None`: the failing worker's policy).
    pub retry_base: Option<Duration>,
    /// The longest delay before a retry (default `None`: the failing worker's policy).
    pub retry_cap: Option<Duration>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            priority: JobPriority::Normal,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            retry_base: None,
            retry_cap: None,
        }
    }
}

/// The rule: the `call`'s options, else the `handler`'s, else the service's `defaults`.
pub fn resolve(call: JobOptions, handler: JobOptions, defaults: JobDefaults) -> JobDefaults {
    call.or(handler).or_defaults(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_wins_then_the_handler_then_the_defaults() {
        let d = JobDefaults {
            priority: JobPriority::Low,
            max_retries: 7,
            timeout: Duration::from_secs(9),
            ..JobDefaults::default()
        };
        let handler = JobOptions {
            priority: Some(JobPriority::High),
            max_retries: Some(5),
            ..JobOptions::NONE
        };
        let call = JobOptions { max_retries: Some(1), ..JobOptions::NONE };
        let r = resolve(call, handler, d);
        assert_eq!(
            (r.priority, r.max_retries, r.timeout),
            (JobPriority::High, 1, Duration::from_secs(9))
        );
        assert_eq!(resolve(JobOptions::NONE, JobOptions::NONE, d), d);
    }

    #[test]
    fn the_retry_backoff_follows_the_same_rule() {
        let s = Duration::from_secs;
        let handler =
            JobOptions { retry_base: Some(s(10)), retry_cap: Some(s(60)), ..JobOptions::NONE };
        let call = JobOptions { retry_cap: Some(s(30)), ..JobOptions::NONE };
        let r = resolve(call, handler, JobDefaults::default());
        assert_eq!((r.retry_base, r.retry_cap), (Some(s(10)), Some(s(30))));
        // Nothing set anywhere: no backoff of the job's own (the worker's policy applies).
        let r = resolve(JobOptions::NONE, JobOptions::NONE, JobDefaults::default());
        assert_eq!((r.retry_base, r.retry_cap), (None, None));
        let d = JobDefaults { retry_base: Some(s(1)), ..JobDefaults::default() };
        let r = resolve(JobOptions::NONE, handler, d);
        assert_eq!((r.retry_base, r.retry_cap), (Some(s(10)), Some(s(60))));
        assert_eq!(resolve(JobOptions::NONE, JobOptions::NONE, d).retry_base, Some(s(1)));
    }
}
