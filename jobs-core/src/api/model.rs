//! Request and response bodies of the API.
//!
//! These mirror the crate's own types ([`Job`], [`QueueStats`], [`WorkerStats`], …) field
//! for field, with the spec's JSON names, and derive [`ToSchema`] so that the OpenAPI
//! document is generated from the same definitions that serialise the responses. Keeping
//! them apart from the domain types lets the wire format stay put when internals change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::backend::CancelOutcome;
use crate::job::{Job, JobPriority, JobStatus};
use crate::stats::{
    HandlerInfo, PendingByPriority, QueueCounters, QueueStats, WorkerStats, WorkerStatus,
};

/// Seconds as JSON: an integer when whole (`30`), a fraction otherwise (`0.25`), as the
/// crate serialises durations.
fn seconds(secs: f64) -> serde_json::Number {
    if secs.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&secs) {
        serde_json::Number::from(secs as u64)
    } else {
        serde_json::Number::from_f64(secs).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

/// A job's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Immediate execution required.
    Critical,
    /// Important operations.
    High,
    /// Standard operations.
    Normal,
    /// Background and batch operations.
    Low,
}

impl From<JobPriority> for Priority {
    fn from(p: JobPriority) -> Self {
        match p {
            JobPriority::Critical => Priority::Critical,
            JobPriority::High => Priority::High,
            JobPriority::Normal => Priority::Normal,
            JobPriority::Low => Priority::Low,
        }
    }
}

impl From<Priority> for JobPriority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Critical => JobPriority::Critical,
            Priority::High => JobPriority::High,
            Priority::Normal => JobPriority::Normal,
            Priority::Low => JobPriority::Low,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to run (now, or at `scheduled_at`).
    Pending,
    /// Leased to a worker and running.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed for the last time; in the dead-letter queue.
    Failed,
    /// Cancelled; it will not run.
    Cancelled,
    /// Failed, waiting for its next attempt at `scheduled_at`.
    Retrying,
}

impl From<JobStatus> for Status {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Pending => Status::Pending,
            JobStatus::Running => Status::Running,
            JobStatus::Completed => Status::Completed,
            JobStatus::Failed => Status::Failed,
            JobStatus::Cancelled => Status::Cancelled,
            JobStatus::Retrying => Status::Retrying,
        }
    }
}

/// A job: every field of the spec's `Job`, plus the delivery `attempt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id (a UUID).
    pub id: Uuid,
    /// The handler's name.
    pub name: String,
    /// The handler's arguments (`null` once the job has completed or been cancelled).
    pub args: serde_json::Value,
    /// Where the job is in its life.
    pub status: Status,
    /// Its priority.
    pub priority: Priority,
    /// When it was enqueued (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When it is (or was) due: set for delayed jobs and retries.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// The latest attempt's error.
    pub error: Option<String>,
    /// What the handler returned, once completed.
    pub result: Option<serde_json::Value>,
    /// Retries used.
    pub retry_count: u32,
    /// Retries allowed before the job is dead-lettered.
    pub max_retries: u32,
    /// How long one attempt may run, in seconds (an integer when whole).
    #[schema(value_type = f64)]
    pub timeout: serde_json::Number,
    /// The user the job acts for.
    pub user_id: Option<String>,
    /// How many times the job has been handed to a worker.
    pub attempt: u32,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        JobView {
            id: j.id.0,
            name: j.name,
            args: j.args,
            status: j.status.into(),
            priority: j.priority.into(),
            created_at: j.created_at,
            scheduled_at: j.scheduled_at,
            started_at: j.started_at,
            completed_at: j.completed_at,
            error: j.error,
            result: j.result,
            retry_count: j.retry_count,
            max_retries: j.max_retries,
            timeout: seconds(j.timeout.as_secs_f64()),
            user_id: j.user_id,
            attempt: j.attempt,
        }
    }
}

/// Jobs ready to run, per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingCounts {
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Normal.
    pub normal: u64,
    /// Low.
    pub low: u64,
}

impl From<PendingByPriority> for PendingCounts {
    fn from(p: PendingByPriority) -> Self {
        PendingCounts { critical: p.critical, high: p.high, normal: p.normal, low: p.low }
    }
}

/// Queue statistics, exactly the spec's "Queue Statistics" object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"pending": {"critical": 0, "high": 2, "normal": 5, "low": 10},
    "scheduled": 3, "processing": 1, "dead_letter": 0, "total_pending": 17}))]
pub struct QueueStatsView {
    /// Jobs ready to run, per priority.
    pub pending: PendingCounts,
    /// Jobs due later (delayed, and retries waiting).
    pub scheduled: u64,
    /// Jobs running.
    pub processing: u64,
    /// Jobs in the dead-letter queue.
    pub dead_letter: u64,
    /// Sum of `pending`.
    pub total_pending: u64,
}

impl From<QueueStats> for QueueStatsView {
    fn from(s: QueueStats) -> Self {
        QueueStatsView {
            pending: s.pending.into(),
            scheduled: s.scheduled,
            processing: s.processing,
            dead_letter: s.dead_letter,
            total_pending: s.total_pending,
        }
    }
}

/// The backend's monotonic counters (for the whole deployment, since its namespace was
/// created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueCountersView {
    /// Jobs created.
    pub enqueued: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Leases taken back from lost workers.
    pub stalled: u64,
    /// Dead-letter entries dropped by the DLQ's caps.
    pub dead_dropped: u64,
    /// Finished records removed after their retention.
    pub purged: u64,
}

impl From<QueueCounters> for QueueCountersView {
    fn from(c: QueueCounters) -> Self {
        QueueCountersView {
            enqueued: c.enqueued,
            completed: c.completed,
            failed: c.failed,
            retried: c.retried,
            dead: c.dead,
            cancelled: c.cancelled,
            stalled: c.stalled,
            dead_dropped: c.dead_dropped,
            purged: c.purged,
        }
    }
}

/// Queue statistics with everything the backend knows: the spec's object plus `retrying`
/// and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FullQueueStats {
    /// Jobs ready to run, per priority.
    pub pending: PendingCounts,
    /// Jobs due later (delayed, and retries waiting).
    pub scheduled: u64,
    /// Jobs running.
    pub processing: u64,
    /// Jobs in the dead-letter queue.
    pub dead_letter: u64,
    /// Sum of `pending`.
    pub total_pending: u64,
    /// Of `scheduled`, retries waiting.
    pub retrying: u64,
    /// Monotonic counters.
    pub counters: QueueCountersView,
}

impl From<QueueStats> for FullQueueStats {
    fn from(s: QueueStats) -> Self {
        FullQueueStats {
            pending: s.pending.into(),
            scheduled: s.scheduled,
            processing: s.processing,
            dead_letter: s.dead_letter,
            total_pending: s.total_pending,
            retrying: s.retrying,
            counters: s.counters.into(),
        }
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Not started yet.
    Starting,
    /// No job in hand.
    Idle,
    /// Running at least one job.
    Processing,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
}

impl From<WorkerStatus> for WorkerState {
    fn from(s: WorkerStatus) -> Self {
        match s {
            WorkerStatus::Starting => WorkerState::Starting,
            WorkerStatus::Idle => WorkerState::Idle,
            WorkerStatus::Processing => WorkerState::Processing,
            WorkerStatus::Stopping => WorkerState::Stopping,
            WorkerStatus::Stopped => WorkerState::Stopped,
        }
    }
}

/// One worker: the spec's "Worker Statistics" object plus where to find it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"worker_id": "main-worker", "status": "processing",
    "jobs_processed": 150, "jobs_succeeded": 145, "jobs_failed": 5, "success_rate": 96.67,
    "average_processing_time": 2.5, "in_flight": 1, "concurrency": 10, "host": "app-1",
    "pid": 4242, "started_at": "2025-01-01T00:00:00Z"}))]
pub struct WorkerStatsView {
    /// The worker's id.
    pub worker_id: String,
    /// What it is doing.
    pub status: WorkerState,
    /// Jobs run to an outcome.
    pub jobs_processed: u64,
    /// Of those, successes.
    pub jobs_succeeded: u64,
    /// Of those, failures.
    pub jobs_failed: u64,
    /// Successes in percent of `jobs_processed` (100 when none).
    pub success_rate: f64,
    /// Mean handler run time, seconds.
    pub average_processing_time: f64,
    /// Jobs running now.
    pub in_flight: u64,
    /// Most jobs it runs at once.
    pub concurrency: u64,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl From<WorkerStats> for WorkerStatsView {
    fn from(w: WorkerStats) -> Self {
        WorkerStatsView {
            worker_id: w.worker_id,
            status: w.status.into(),
            jobs_processed: w.jobs_processed,
            jobs_succeeded: w.jobs_succeeded,
            jobs_failed: w.jobs_failed,
            success_rate: w.success_rate,
            average_processing_time: w.average_processing_time,
            in_flight: w.in_flight as u64,
            concurrency: w.concurrency as u64,
            host: w.host,
            pid: w.pid,
            started_at: w.started_at,
        }
    }
}

/// Every live worker of the deployment (from their heartbeats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkersResponse {
    /// How many.
    pub total_workers: u64,
    /// Each, sorted by id.
    pub workers: Vec<WorkerStatsView>,
}

/// A handler linked into the serving process, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandlerView {
    /// Its name: what jobs are enqueued under.
    pub name: String,
    /// The Rust type of its arguments (`()` when it takes none).
    pub args_type: String,
    /// A JSON Schema (draft 2020-12) of its arguments: derived from the argument type when
    /// it implements `schemars::JsonSchema`, otherwise `{}` (any JSON; the handler's type
    /// still checks it on enqueue, see `args_type`). Handlers without arguments accept
    /// `null` or `{}`.
    #[schema(value_type = Object)]
    pub args_schema: serde_json::Value,
    /// Whether it takes arguments.
    pub takes_args: bool,
    /// Default priority.
    pub priority: Priority,
    /// Default retries.
    pub max_retries: u32,
    /// Default timeout, seconds (an integer when whole).
    #[schema(value_type = f64)]
    pub timeout: serde_json::Number,
    /// Where it is defined (`file:line`).
    pub location: String,
}

impl HandlerView {
    /// The view of `h`, which takes arguments if `takes_args`, described by `schema`.
    pub(crate) fn new(h: HandlerInfo, takes_args: bool, schema: Option<serde_json::Value>) -> Self {
        let args_schema = if takes_args {
            schema.unwrap_or_else(|| serde_json::json!({}))
        } else {
            serde_json::json!({
                "type": ["object", "null"],
                "properties": {},
                "additionalProperties": false
            })
        };
        HandlerView {
            name: h.name,
            args_type: h.args_type,
            args_schema,
            takes_args,
            priority: h.priority.into(),
            max_retries: h.max_retries,
            timeout: seconds(h.timeout),
            location: h.location,
        }
    }
}

/// The handlers linked into the serving process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandlersResponse {
    /// Each, by name.
    pub handlers: Vec<HandlerView>,
}

/// Whether the service can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The backend answers.
    Healthy,
    /// The backend does not answer.
    Unhealthy,
}

/// The service's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy` when the backend answers.
    pub status: Health,
    /// `redis` or `memory`.
    pub backend: String,
    /// Whether this process's workers are running.
    pub workers_running: bool,
    /// Whether this process's scheduler loop is running.
    pub scheduler_running: bool,
    /// The crate's version.
    pub version: String,
}

/// Everything at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FullStatsResponse {
    /// Queue statistics with counters.
    pub queue: FullQueueStats,
    /// Every live worker of the deployment.
    pub workers: Vec<WorkerStatsView>,
    /// Handlers linked into this process.
    pub handlers: Vec<HandlerView>,
    /// Whether this process's workers are running.
    pub running: bool,
    /// Scheduler statistics.
    pub scheduler: super::schedules::SchedulerStatsView,
}

/// What to enqueue. Options not given come from the handler's attribute, then from the
/// service's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "sync_portfolio", "args": {"user_id": "user-123"}, "priority": "high"}))]
pub struct EnqueueRequest {
    /// The handler's name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Its arguments (default `{}`); they must fit the handler's argument type (else 422).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Run after this many seconds (not with `scheduled_at`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub delay_seconds: Option<f64>,
    /// Run at this time (RFC 3339; not with `delay_seconds`).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Retries allowed before the job is dead-lettered.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub max_retries: Option<u32>,
    /// How long one attempt may run, in seconds (more than 0, at most a week).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 604_800)]
    pub timeout: Option<f64>,
    /// The user the job acts for.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub user_id: Option<String>,
}

/// The id of the job created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    /// The new job's id.
    pub job_id: Uuid,
}

/// A job's outcome so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResultResponse {
    /// The job.
    pub job_id: Uuid,
    /// Its status: `result` is set once it is `completed`.
    pub status: Status,
    /// What the handler returned.
    pub result: Option<serde_json::Value>,
    /// The latest attempt's error.
    pub error: Option<String>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelResult {
    /// The job was waiting and is now cancelled; it will never run.
    Cancelled,
    /// The job is running; its worker has been asked to stop it.
    Requested,
}

impl From<CancelOutcome> for CancelResult {
    fn from(o: CancelOutcome) -> Self {
        match o {
            CancelOutcome::Cancelled => CancelResult::Cancelled,
            CancelOutcome::Requested => CancelResult::Requested,
        }
    }
}

/// The answer to a cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The job.
    pub job_id: Uuid,
    /// What happened.
    pub outcome: CancelResult,
}

/// A list of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobListResponse {
    /// How many are listed.
    pub count: u64,
    /// The jobs.
    pub jobs: Vec<JobView>,
}

/// A dead-letter job put back in its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryResponse {
    /// The job.
    pub job_id: Uuid,
    /// Its status now (`pending`).
    pub status: Status,
}

/// How many dead-letter jobs were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClearResponse {
    /// Jobs deleted.
    pub cleared: u64,
}

/// The largest `limit` a list accepts.
pub const MAX_LIMIT: u32 = 1000;
/// The `limit` of a list when none is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Which pending jobs to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PendingQuery {
    /// Only jobs of this priority (default: all, highest first).
    pub priority: Option<Priority>,
    /// At most this many (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// How many dead-letter jobs to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One minute of history (`GET /api/v1/jobs/stats/throughput`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputBucketView {
    /// The minute's start (RFC 3339 UTC).
    pub start: DateTime<Utc>,
    /// Jobs completed in it, by every runner.
    pub completed: u64,
    /// Failed attempts in it (retried or dead-lettered).
    pub failed: u64,
}

/// Completions and failures per minute over the last hour, oldest first; the last bucket is
/// the current, partial minute.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputResponse {
    /// Width of a bucket, seconds (60).
    pub bucket_seconds: u64,
    /// 60 buckets, oldest first.
    pub buckets: Vec<ThroughputBucketView>,
}
