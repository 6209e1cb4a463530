//! The report types: queue, worker, handler and scheduler statistics, serialised as the
//! HTTP API answers them. Those who compute them (backends, workers, the scheduler, the
//! service) sit above this module; the API and the runner only read them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::flow::LimitsInfo;
use crate::job::JobPriority;
use crate::schedule::ScheduleInfo;

/// Pending jobs per priority (the `pending` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct PendingByPriority {
    /// Critical jobs ready to run.
    pub critical: u64,
    /// High-priority jobs ready to run.
    pub high: u64,
    /// Normal jobs ready to run.
    pub normal: u64,
    /// Low-priority jobs ready to run.
    pub low: u64,
}

impl PendingByPriority {
    /// The count for one priority.
    pub fn get(&self, p: JobPriority) -> u64 {
        match p {
            JobPriority::Critical => self.critical,
            JobPriority::High => self.high,
            JobPriority::Normal => self.normal,
            JobPriority::Low => self.low,
        }
    }

    /// Sets the count for one priority.
    pub fn set(&mut self, p: JobPriority, n: u64) {
        match p {
            JobPriority::Critical => self.critical = n,
            JobPriority::High => self.high = n,
            JobPriority::Normal => self.normal = n,
            JobPriority::Low => self.low = n,
        }
    }

    /// Sum over the four priorities.
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.normal + self.low
    }
}

/// One named queue ([`Backend::queues`](crate::backend::Backend::queues)): the
/// `GET /api/v1/jobs/queues` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Whether it is paused: its ready jobs wait, no worker takes them.
    pub paused: bool,
    /// Its jobs ready to run, per priority.
    pub pending: PendingByPriority,
    /// Sum of `pending`.
    pub total_pending: u64,
}

/// Monotonic counters since the namespace was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct QueueCounters {
    /// Jobs created.
    pub enqueued: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts (each retry and each dead-lettering counts once).
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Jobs moved to the dead-letter queue.
    pub dead: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Leases that expired and were taken back from a lost worker.
    pub stalled: u64,
    /// Dead-letter entries dropped by the DLQ's size or age cap.
    pub dead_dropped: u64,
    /// Finished records removed after their retention.
    pub purged: u64,
    /// Deliveries a handler sent back with `ctx.rate_limited` (no retry used).
    #[serde(default)]
    pub throttled: u64,
}

/// The give-backs of one job name whose handler a worker lacked
/// ([`Backend::give_back`](crate::backend::Backend::give_back)): jobs of a name that no
/// live worker runs pile up here instead of failing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct UnhandledStats {
    /// Deliveries given back by a worker without the handler (no retry used).
    pub given_back: u64,
    /// When the last give-back was.
    pub last_given_back_at: Option<DateTime<Utc>>,
    /// Set when the last give-back found no live worker with the handler: since when
    /// that has been so. Its jobs are dead-lettered once this is the worker's
    /// `unhandled_dead_after` ago.
    pub no_live_worker_since: Option<DateTime<Utc>>,
}

/// Queue statistics: the counts per state (the five fields of `GET /queue/stats`), plus
/// `retrying` and `counters`.
///
/// ```json
/// {"pending": {"critical": 0, "high": 2, "normal": 5, "low": 10},
///  "scheduled": 3, "processing": 1, "dead_letter": 0, "total_pending": 17, ...}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "api",
    schema(
        description = "Queue statistics: the counts per state, plus `retrying` and `counters`.",
        example = json!({"pending": {"critical": 0, "high": 2, "normal": 5, "low": 10},
            "scheduled": 3, "processing": 1, "dead_letter": 0, "total_pending": 17,
            "retrying": 1, "counters": {"enqueued": 120, "completed": 98, "failed": 6,
            "retried": 5, "dead": 1, "cancelled": 2, "stalled": 0, "dead_dropped": 0,
            "purged": 40}, "unhandled": {"resize_image": {"given_back": 12,
            "last_given_back_at": "2025-01-01T00:00:00Z",
            "no_live_worker_since": "2024-12-31T23:58:00Z"}}})
    )
)]
pub struct QueueStats {
    /// Jobs ready to run, per priority.
    pub pending: PendingByPriority,
    /// Jobs that will be ready at a later time (delayed jobs and retries waiting).
    pub scheduled: u64,
    /// Jobs currently leased to a worker.
    pub processing: u64,
    /// Jobs in the dead-letter queue.
    pub dead_letter: u64,
    /// Sum of `pending`.
    pub total_pending: u64,
    /// Of `scheduled`, the failed jobs waiting for their next attempt.
    pub retrying: u64,
    /// Uniqueness locks held (`unique(...)`, `unique_key`): one per key whose holder has
    /// not ended its window yet.
    #[serde(default)]
    pub unique_locks: u64,
    /// Jobs parked on a rate or concurrency limiter: ready, but waiting for one of its
    /// slots (not in `pending`).
    #[serde(default)]
    pub parked: u64,
    /// Monotonic counters.
    pub counters: QueueCounters,
    /// Per job name, the deliveries given back because their worker lacked the handler
    /// (names that were never given back are absent).
    #[serde(default)]
    pub unhandled: std::collections::BTreeMap<String, UnhandledStats>,
}

/// What a worker is doing (its `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub enum WorkerStatus {
    /// Not started yet.
    Starting,
    /// Running, no job in hand.
    Idle,
    /// Running at least one job.
    Processing,
    /// Shutting down: no new jobs are taken.
    Stopping,
    /// Stopped.
    Stopped,
}

/// A worker's statistics: what it has done and is doing, plus what operators need
/// to find the worker.
///
/// ```json
/// {"worker_id": "main-worker", "status": "processing", "jobs_processed": 150,
///  "jobs_succeeded": 145, "jobs_failed": 5, "success_rate": 96.67,
///  "average_processing_time": 2.5, ...}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "api",
    schema(
        description = "A worker's statistics: what it has done and is doing, plus what \
            operators need to find the worker.",
        example = json!({"worker_id": "main-worker", "status": "processing",
            "jobs_processed": 150, "jobs_succeeded": 145, "jobs_failed": 5,
            "success_rate": 96.67, "average_processing_time": 2.5, "in_flight": 1,
            "concurrency": 10, "host": "app-1", "pid": 4242,
            "started_at": "2025-01-01T00:00:00Z"})
    )
)]
pub struct WorkerStats {
    /// The worker's id.
    pub worker_id: String,
    /// What it is doing.
    pub status: WorkerStatus,
    /// Jobs whose handler ran to an outcome (success, error, panic or timeout).
    pub jobs_processed: u64,
    /// Of those, successes.
    pub jobs_succeeded: u64,
    /// Of those, failures.
    pub jobs_failed: u64,
    /// `jobs_succeeded / jobs_processed` in percent, two decimals (100 when none).
    pub success_rate: f64,
    /// Mean handler run time in seconds.
    pub average_processing_time: f64,
    /// Jobs running now.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub in_flight: usize,
    /// Most jobs run at once.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub concurrency: usize,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the worker started.
    pub started_at: DateTime<Utc>,
    /// The handlers it runs (absent from workers of versions that do not say, which are
    /// taken to run every handler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<Vec<String>>,
}

/// A registered handler as the stats and the API list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerInfo {
    /// Its name.
    pub name: String,
    /// Its argument type.
    pub args_type: String,
    /// Default priority.
    pub priority: JobPriority,
    /// Default max retries.
    pub max_retries: u32,
    /// Default timeout, seconds.
    pub timeout: f64,
    /// The named queue its jobs go to.
    pub queue: String,
    /// The limits it declares (uniqueness is enforced; rate and concurrency limits not yet).
    pub limits: LimitsInfo,
    /// Where it is defined.
    pub location: String,
}

/// Everything at once: queue, workers (of every live process), handlers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullStats {
    /// Queue statistics.
    pub queue: QueueStats,
    /// Every live worker of the deployment (from their heartbeats).
    pub workers: Vec<WorkerStats>,
    /// Handlers linked into this process.
    pub handlers: Vec<HandlerInfo>,
    /// Whether this process's workers are running.
    pub running: bool,
    /// The schedules of the deployment and this process's scheduler loop.
    pub scheduler: SchedulerStats,
}

/// The scheduler's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct SchedulerStats {
    /// Whether this process's scheduler loop is running.
    pub running: bool,
    /// Schedules in the deployment.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub total_tasks: usize,
    /// Enabled schedules.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub enabled_tasks: usize,
    /// Disabled schedules.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub disabled_tasks: usize,
    /// Enabled schedules whose next run has come (on the backend's clock) and not fired yet.
    #[cfg_attr(feature = "api", schema(value_type = u64))]
    pub due_tasks: usize,
    /// Every schedule, by name.
    pub tasks: Vec<ScheduleInfo>,
    /// Schedules registered through the API that this process's scheduler saw lost with
    /// the backend's data (a Redis restarted without persistence), by name: they cannot be
    /// recreated and stay listed until registered again. Always empty on the in-memory
    /// backend, which cannot lose them.
    #[serde(default)]
    pub lost_tasks: Vec<String>,
    /// Declared schedules this process's scheduler stored again after the backend lost
    /// them, since it started.
    #[serde(default)]
    pub restored_tasks: u64,
}

/// One minute of the throughput history ([`Backend::throughput`](crate::backend::Backend::throughput)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "api",
    schema(description = "One minute of the throughput history: jobs completed and failed \
        attempts, counted by every runner.")
)]
pub struct ThroughputBucket {
    /// The minute's start.
    pub start: DateTime<Utc>,
    /// Jobs completed in it.
    pub completed: u64,
    /// Failed attempts in it (retried or dead-lettered).
    pub failed: u64,
}

/// Minutes of history [`Backend::throughput`](crate::backend::Backend::throughput) keeps.
pub const THROUGHPUT_MINUTES: i64 = 60;

/// Builds the last [`THROUGHPUT_MINUTES`] buckets, oldest first (the last is the current,
/// partial minute), from a ring of `slot -> (minute, completed, failed)` read at `now_ms`.
/// A slot holding another minute than the one it stands for counts as empty.
pub(crate) fn throughput_buckets(
    now_ms: i64,
    ring: &std::collections::HashMap<i64, (i64, u64, u64)>,
) -> Vec<ThroughputBucket> {
    let current = now_ms.div_euclid(60_000);
    (current - THROUGHPUT_MINUTES + 1..=current)
        .map(|minute| {
            let (completed, failed) = match ring.get(&minute.rem_euclid(THROUGHPUT_MINUTES)) {
                Some(&(m, c, f)) if m == minute => (c, f),
                _ => (0, 0),
            };
            ThroughputBucket {
                start: DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
                completed,
                failed,
            }
        })
        .collect()
}
