//! [`WorkerConfig`]: how a worker behaves, and the checks its settings must pass; the
//! default worker id and the host name it is built from.

use std::time::Duration;

use crate::backend::ReapOptions;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

use super::queues::QueueSelection;

/// How a worker behaves. Defaults: 1 job at a time, leases of 30 s renewed
/// every 10 s, reaping every 5 s, 30 s of grace at shutdown, 5 s for a cancelled handler
/// to return.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's id, shown in stats (default: `<host>-<pid>-<random>`).
    pub worker_id: String,
    /// The longest single wait for new work. Idle workers do not poll: they are woken as
    /// soon as work is enqueued; this only bounds one wait (default 5 s).
    pub poll_interval: Duration,
    /// How many jobs run at once (default 1).
    pub max_concurrent_jobs: usize,
    /// Lease length; a worker that stops renewing loses its jobs after it (default 30 s).
    /// A worker whose renewals do not get through stops those jobs itself a little before
    /// (a fifth of the lease before, or less when heartbeats are far apart), whatever its
    /// calls in flight are doing, so that they never run in two places at once.
    pub lease: Duration,
    /// Extra time past a job's timeout, and past a lease, before it is taken back (5 s).
    pub grace: Duration,
    /// How often leases are renewed and stats published (default lease / 3).
    pub heartbeat_interval: Duration,
    /// Whether this worker runs the reap loop (a pool runs one per process).
    pub reap: bool,
    /// Reap settings (interval, max stalls, …); `retry` is overridden by [`Self::retry`].
    pub reap_options: ReapOptions,
    /// Backoff for failed jobs (default 2, 4, 8 … minutes, capped at 1 h).
    pub retry: RetryPolicy,
    /// At shutdown, how long running jobs may take to finish before they are released back
    /// to the queue (default 30 s).
    pub shutdown_grace: Duration,
    /// When a running job is cancelled, how long its handler has to return after its
    /// token is cancelled before its task is aborted (default 5 s). Either way the job
    /// ends `cancelled`.
    pub cancel_grace: Duration,
    /// A job whose handler this worker lacks is given back to the queue without using a
    /// retry; it is dead-lettered once no live worker of the deployment has had the handler
    /// for this long (default 10 min).
    pub unhandled_dead_after: Duration,
    /// How long a job given back (no handler here) waits before it is offered again, so
    /// that this worker does not take it straight back (default 1 s).
    pub unhandled_delay: Duration,
    /// With the `otel` feature: how an attempt's span is tied to the span that enqueued the
    /// job (default [`TraceParent::Link`]). Without the feature, nothing reads it.
    pub trace_parent: TraceParent,
    /// The named queues it takes jobs from (`JOBS_QUEUES`, `--queues`). `None` (the
    /// default): every queue a handler of its registry names, each weighing 1, so that
    /// none starves (just the default queue when no handler names one).
    pub queues: Option<QueueSelection>,
}

/// How the span of a job's attempt is tied to the span that enqueued the job (the `otel`
/// feature; see [`TraceContext`](crate::TraceContext)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceParent {
    /// The attempt's span starts a trace of its own and links to the enqueuing span (the
    /// default, as the messaging conventions advise for work that may run long after it
    /// was sent: each attempt, a retry too, is one trace linked to the same enqueue).
    #[default]
    Link,
    /// The attempt's span is a child of the enqueuing span: one trace from the request to
    /// every attempt (which makes traces as long as the job's life, retries included).
    Child,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        WorkerConfig {
            worker_id: default_worker_id(),
            poll_interval: Duration::from_secs(5),
            max_concurrent_jobs: 1,
            lease,
            grace: Duration::from_secs(5),
            heartbeat_interval: lease / 3,
            reap: true,
            reap_options: ReapOptions::default(),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            unhandled_dead_after: Duration::from_secs(600),
            unhandled_delay: Duration::from_secs(1),
            trace_parent: TraceParent::Link,
            queues: None,
        }
    }
}

impl WorkerConfig {
    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.worker_id.is_empty() {
            return bad("worker_id must not be empty");
        }
        if self.max_concurrent_jobs == 0 {
            return bad("max_concurrent_jobs must be at least 1");
        }
        if self.lease.is_zero() || self.heartbeat_interval.is_zero() {
            return bad("lease and heartbeat_interval must be positive");
        }
        if self.heartbeat_interval >= self.lease {
            return bad("heartbeat_interval must be shorter than the lease");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval must be positive");
        }
        if self.unhandled_delay.is_zero() || self.unhandled_delay > crate::job::MAX_DELAY {
            return bad("unhandled_delay must be positive and at most MAX_DELAY");
        }
        Ok(())
    }
}

/// A worker id unique enough to tell processes apart: host, pid and a random suffix.
pub fn default_worker_id() -> String {
    let host = Some(hostname()).filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

pub(super) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
