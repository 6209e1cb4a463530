//! What a delivery reports: a completion, a failure, or a give-back (the job's handler is
//! not in this process), with what became of each.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Lease;
use crate::error::Result;
use crate::job::JobId;
use crate::retry::RetryPolicy;

/// One successful finish, for [`Backend::complete`](super::Backend::complete).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The delivery that finished.
    pub lease: Lease,
    /// What the handler returned.
    pub result: serde_json::Value,
}

/// What became of one [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckOutcome {
    /// The job is now completed.
    Completed,
    /// This delivery had already completed it (a retried acknowledgement): nothing changed.
    Already,
    /// The job had been asked to cancel while running: it is now `cancelled` and the result
    /// was not kept (or it already was, for a repeat of this delivery's acknowledgement).
    Cancelled,
    /// The lease is no longer this delivery's: nothing changed.
    Stale,
}

/// One failed attempt, for [`Backend::fail`](super::Backend::fail).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The delivery that failed.
    pub lease: Lease,
    /// Why (kept on the job; cut to 1 KiB).
    pub error: String,
    /// False for errors that retrying cannot fix: the job goes straight to the DLQ.
    pub retryable: bool,
    /// The backoff to apply if the job is retried.
    pub retry: RetryPolicy,
    /// The delay the handler asked for before the next attempt ([`JobError::retry_after`](crate::JobError::retry_after)),
    /// used instead of the backoff (and its jitter). The retry still counts. At most
    /// [`MAX_DELAY`](crate::MAX_DELAY): a longer one fails the call with
    /// [`Error::InvalidJob`](crate::Error::InvalidJob) and changes nothing.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// Checks what the backend cannot: the asked-for delay is within [`MAX_DELAY`](crate::MAX_DELAY).
    pub(crate) fn validate(&self) -> Result<()> {
        match self.retry_after {
            Some(d) if d > crate::job::MAX_DELAY => Err(crate::Error::InvalidJob {
                reason: format!(
                    "retry_after must be at most {} days, found {d:?}",
                    crate::job::MAX_DELAY.as_secs() / 86_400
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// What became of a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// The job will be retried at the given time (`retrying`).
    Retrying {
        /// When it becomes ready again.
        at: DateTime<Utc>,
    },
    /// No retry left (or not retryable): the job is `failed` and in the dead-letter queue.
    Dead,
    /// The job had been asked to cancel while running; it is now `cancelled`.
    Cancelled,
    /// The lease is no longer this delivery's: nothing changed.
    Stale,
}

/// A delivery given back because this process has no handler for its job, for
/// [`Backend::give_back`](super::Backend::give_back).
#[derive(Debug, Clone, PartialEq)]
pub struct GiveBack {
    /// The delivery given back.
    pub lease: Lease,
    /// The job's name (the handler this process lacks).
    pub name: String,
    /// The job is offered again after this long (so that the worker that gave it back does
    /// not take it again at once); `pending`, like a delayed job.
    pub delay: Duration,
    /// Whether some live worker of the deployment has the handler (from the worker
    /// registry; a worker that does not say which handlers it has counts as having it).
    pub handled_elsewhere: bool,
    /// How long no live worker may have the handler before the job is dead-lettered.
    pub dead_after: Duration,
}

/// What became of a [`GiveBack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBackOutcome {
    /// The job is `pending` again, offered from the given time; no retry was used.
    Delayed {
        /// When it is offered again.
        at: DateTime<Utc>,
    },
    /// No live worker has had the handler for `dead_after`: the job is `failed` and in the
    /// dead-letter queue, its error `no live worker has a handler for "<name>"`.
    Dead,
    /// The job had been asked to cancel while running; it is now `cancelled`.
    Cancelled,
    /// The lease is no longer this delivery's: nothing changed.
    Stale,
}

/// Give-backs of one name that found no live worker with its handler make one run, while
/// no two of them are further apart than this; a longer silence (no worker tried the job,
/// or one with the handler ran it) starts the run, and the time to the dead-letter queue,
/// again.
pub const UNHANDLED_GAP: Duration = Duration::from_secs(30);
/// The most job names whose give-backs are counted one by one; give-backs of further
/// names are counted (and timed) together under [`UNHANDLED_OTHER`], so that made-up
/// names cannot grow the stats without bound.
pub const UNHANDLED_NAMES_MAX: usize = 1000;
/// The name that stands for the names beyond [`UNHANDLED_NAMES_MAX`].
pub const UNHANDLED_OTHER: &str = "__other__";

impl GiveBack {
    /// The error a job dead-lettered by a give-back keeps.
    pub fn dead_error(&self) -> String {
        format!("no live worker has a handler for {:?}", self.name)
    }
}

/// A worker process's periodic sign of life, for [`Backend::heartbeat`](super::Backend::heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The worker.
    pub worker_id: String,
    /// What the worker tells the world about itself (shown by worker stats).
    pub info: serde_json::Value,
    /// The deliveries it holds, whose leases are to be extended.
    pub leases: Vec<Lease>,
    /// New lease length from now.
    pub lease: Duration,
    /// Grace past a job's timeout (leases never extend beyond `started + timeout + grace`).
    pub grace: Duration,
}

/// A running job's progress report, for [`Backend::progress`](super::Backend::progress).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// The delivery reporting.
    pub lease: Lease,
    /// What it reports.
    pub progress: crate::job::Progress,
    /// The lease is extended to this long from now, as a heartbeat extends it.
    pub lease_for: Duration,
    /// Grace past the job's timeout (the lease never goes past `started + timeout + grace`).
    pub grace: Duration,
}

/// The answer of [`Backend::heartbeat`](super::Backend::heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Deliveries the worker no longer holds (taken back, or finished elsewhere): stop them.
    pub lost: Vec<JobId>,
    /// Deliveries still held whose job has been asked to cancel.
    pub cancel: Vec<JobId>,
}
