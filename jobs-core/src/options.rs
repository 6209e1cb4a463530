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
}

/// The options set on a handler's attribute (`#[job_handler("x", max_retries = 5)]`).
pub type HandlerDefaults = JobOptions;

impl JobOptions {
    /// No option set.
    pub const NONE: JobOptions = JobOptions { max_retries: None, timeout: None, priority: None };

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
        }
    }

    /// Every option, taking those not set here from `defaults`.
    pub fn or_defaults(self, defaults: JobDefaults) -> JobDefaults {
        JobDefaults {
            priority: self.priority.unwrap_or(defaults.priority),
            max_retries: self.max_retries.unwrap_or(defaults.max_retries),
            timeout: self.timeout.unwrap_or(defaults.timeout),
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
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            priority: JobPriority::Normal,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout: DEFAULT_TIMEOUT,
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
        };
        let handler =
            JobOptions { priority: Some(JobPriority::High), max_retries: Some(5), timeout: None };
        let call = JobOptions { max_retries: Some(1), ..JobOptions::NONE };
        let r = resolve(call, handler, d);
        assert_eq!(
            (r.priority, r.max_retries, r.timeout),
            (JobPriority::High, 1, Duration::from_secs(9))
        );
        assert_eq!(resolve(JobOptions::NONE, JobOptions::NONE, d), d);
    }
}
