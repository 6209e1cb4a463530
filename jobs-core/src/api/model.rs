//! Request and response bodies of the API.
//!
//! Responses are the crate's own types wherever their serde output is the wire format
//! ([`Job`], [`QueueStats`], [`WorkerStats`], [`ScheduleInfo`], …: they derive
//! [`ToSchema`] with the `api` feature). The types here are the envelopes around them, the
//! requests (but the register body, in `register.rs`), and the few views whose JSON must
//! differ from the core type's (each says why).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::backend::{CancelOutcome, ThroughputBucket};
use crate::bulk::BulkAction;
use crate::flow::LimitsInfo;
use crate::job::{Job, JobId, JobPriority, JobStatus};
use crate::schedule::ScheduleInfo;
use crate::stats::{
    HandlerInfo, PendingByPriority, QueueInfo, QueueStats, SchedulerStats, WorkerStats,
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

/// Queue statistics as `GET
/// /api/v1/jobs/queue/stats` answers them: the five counts per state.
///
/// Not [`QueueStats`] itself: that one also carries `retrying` and the backend's `counters`
/// (it is what `GET /api/v1/jobs/stats` answers as `queue`), where this endpoint answers the
/// five counts and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"pending": {"critical": 0, "high": 2, "normal": 5, "low": 10},
    "scheduled": 3, "processing": 1, "dead_letter": 0, "total_pending": 17}))]
pub struct QueueStatsView {
    /// Jobs ready to run, per priority.
    pub pending: PendingByPriority,
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
            pending: s.pending,
            scheduled: s.scheduled,
            processing: s.processing,
            dead_letter: s.dead_letter,
            total_pending: s.total_pending,
        }
    }
}

/// Every live worker of the deployment (from their heartbeats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkersResponse {
    /// How many.
    pub total_workers: u64,
    /// Each, sorted by id.
    pub workers: Vec<WorkerStats>,
}

/// A handler linked into the serving process, with its defaults.
///
/// Not [`HandlerInfo`] itself: the API adds what the registry knows about the argument type
/// (`args_schema`, `takes_args`), and writes the timeout as a whole number of seconds when
/// it is one (`300`, where `HandlerInfo`'s `f64` serialises as `300.0`).
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
    pub priority: JobPriority,
    /// Default retries.
    pub max_retries: u32,
    /// Default timeout, seconds (an integer when whole).
    #[schema(value_type = f64)]
    pub timeout: serde_json::Number,
    /// The named queue its jobs go to (`default` unless its attribute names one).
    pub queue: String,
    /// The uniqueness, rate and concurrency limits its attribute declares (enforced for
    /// the jobs enqueued by a process that links the handler).
    pub limits: LimitsInfo,
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
            priority: h.priority,
            max_retries: h.max_retries,
            timeout: seconds(h.timeout),
            queue: h.queue,
            limits: h.limits,
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
///
/// [`FullStats`](crate::FullStats) field for field, but with each handler as a
/// [`HandlerView`] (argument schema, whole-second timeout) rather than a `HandlerInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FullStatsResponse {
    /// Queue statistics with counters.
    pub queue: QueueStats,
    /// Every live worker of the deployment.
    pub workers: Vec<WorkerStats>,
    /// Handlers linked into this process.
    pub handlers: Vec<HandlerView>,
    /// Whether this process's workers are running.
    pub running: bool,
    /// Scheduler statistics.
    pub scheduler: SchedulerStats,
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
    pub priority: Option<JobPriority>,
    /// Run after this many seconds (not with `scheduled_at`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub delay_seconds: Option<f64>,
    /// Run at this time (RFC 3339; not with `delay_seconds`; within ten years of now,
    /// before or after: one already past runs at once).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Retries allowed before the job is dead-lettered.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub max_retries: Option<u32>,
    /// How long one attempt may run, in seconds (at least a millisecond, at most a week).
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 604_800)]
    pub timeout: Option<f64>,
    /// The user the job acts for.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub user_id: Option<String>,
    /// A uniqueness key within the handler's jobs: while a job enqueued with the same key is
    /// queued, running or waiting for a retry, this enqueue creates no job and answers that
    /// job's id with `"duplicate": true` (200). Overrides the key of the handler's
    /// `unique(...)` declaration.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub unique_key: Option<String>,
    /// The named queue (default: the handler's `queue = ..`, else `default`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub queue: Option<String>,
    /// How long at most the uniqueness lock holds, in seconds (default: the handler's
    /// `unique(for = ..)`, else a day). Needs a `unique_key` or a handler that declares
    /// `unique(...)`.
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 315_360_000)]
    pub unique_for: Option<f64>,
}

/// The job the enqueue stands for: the one created (201), or the one already holding the
/// uniqueness key (200, `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    /// The new job's id, or the existing job's.
    pub job_id: JobId,
    /// `true` when no job was created: a job with the same uniqueness key holds its lock,
    /// and `job_id` is that job (answered 200).
    #[serde(default)]
    pub duplicate: bool,
    /// `true` when that existing job (not started yet) took this enqueue's arguments (the
    /// handler's `unique(on_conflict = "replace")`).
    #[serde(default)]
    pub replaced: bool,
}

/// A job's outcome so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResultResponse {
    /// The job.
    pub job_id: JobId,
    /// Its status: `result` is set once it is `completed`.
    pub status: JobStatus,
    /// What the handler returned.
    pub result: Option<serde_json::Value>,
    /// The latest attempt's error.
    pub error: Option<String>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The answer to a cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The job.
    pub job_id: JobId,
    /// What happened.
    pub outcome: CancelOutcome,
}

/// A list of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobListResponse {
    /// How many are listed.
    pub count: u64,
    /// The jobs.
    pub jobs: Vec<Job>,
}

/// A job put back in its queue (retried now, or out of the dead-letter queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryResponse {
    /// The job.
    pub job_id: JobId,
    /// Its status now (`pending`).
    pub status: JobStatus,
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
    pub priority: Option<JobPriority>,
    /// At most this many (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Which jobs `GET /api/v1/jobs/jobs` lists.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// The state (required): `pending`, `scheduled` (delayed), `retrying`, `running`,
    /// `completed`, `cancelled` or `failed` (the dead-letter queue).
    #[param(
        required = true,
        pattern = "^(pending|scheduled|retrying|running|completed|cancelled|failed)$"
    )]
    pub state: Option<String>,
    /// Only jobs of this handler.
    pub name: Option<String>,
    /// Only jobs of this user.
    pub user_id: Option<String>,
    /// The `next_cursor` of the previous page (not for `pending`).
    pub cursor: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One page of the jobs of one state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobPageResponse {
    /// The state listed.
    pub state: String,
    /// How many are listed.
    pub count: u64,
    /// The jobs, newest first (`pending`: in the order they will run). Without results
    /// (`GET /api/v1/jobs/job/{job_id}/result` has them).
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; `null` at the end. A page may hold fewer than
    /// `limit` jobs, even none, and still have one: at most 1,000 jobs are looked at per
    /// request, matching the filters or not.
    pub next_cursor: Option<String>,
    /// How many jobs each state holds now (not filtered).
    pub counts: StateCounts,
}

/// How many jobs each state holds now. Completed and cancelled jobs are not counted here:
/// one retention index holds both (the stats' `counters` count them since the start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateCounts {
    /// Ready to run.
    pub pending: u64,
    /// Delayed (due later).
    pub scheduled: u64,
    /// Waiting for a retry's backoff.
    pub retrying: u64,
    /// Running.
    pub running: u64,
    /// In the dead-letter queue.
    pub failed: u64,
}

impl From<&QueueStats> for StateCounts {
    fn from(s: &QueueStats) -> Self {
        StateCounts {
            pending: s.total_pending,
            scheduled: s.scheduled.saturating_sub(s.retrying),
            retrying: s.retrying,
            running: s.processing,
            failed: s.dead_letter,
        }
    }
}

/// How many dead-letter jobs to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Completions and failures per minute over the last hour, oldest first; the last bucket is
/// the current, partial minute.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputResponse {
    /// Width of a bucket, seconds (60).
    pub bucket_seconds: u64,
    /// 60 buckets, oldest first.
    pub buckets: Vec<ThroughputBucket>,
}

/// Every schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleListResponse {
    /// How many.
    pub count: u64,
    /// Each, by name.
    pub tasks: Vec<ScheduleInfo>,
}

/// The job a run-now enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// The schedule.
    pub name: String,
    /// The job enqueued.
    pub job_id: JobId,
}

/// A schedule removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnregisterResponse {
    /// The schedule.
    pub name: String,
    /// Always true.
    pub removed: bool,
}

/// Every named queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueuesResponse {
    /// How many.
    pub count: u64,
    /// Each, by name (`default` among them).
    pub queues: Vec<QueueInfo>,
}

/// The rate and concurrency limiters in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitsResponse {
    /// How many are listed.
    pub count: u64,
    /// Jobs parked on any limiter (`stats.parked`).
    pub parked: u64,
    /// Each limiter with a start in its window, a slot held, a job parked or a hold, by
    /// name (at most 1,000).
    pub limiters: Vec<crate::job::LimiterUsage>,
}

/// A queue paused or resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueuePauseResponse {
    /// The queue.
    pub name: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether this call changed it (`false`: it was so already).
    pub changed: bool,
}

/// A job deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    /// The job.
    pub job_id: JobId,
    /// Always true.
    pub deleted: bool,
}

/// One action on each job of one page of a state's jobs (`POST /api/v1/jobs/jobs/bulk`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `retry` (for `retrying` and `failed`), `cancel` (`pending`, `scheduled`, `retrying`,
    /// `running`) or `delete` (`completed`, `cancelled`, `failed`).
    pub action: BulkAction,
    /// The state whose jobs are acted on, as `GET /api/v1/jobs/jobs` lists them.
    #[schema(pattern = "^(pending|scheduled|retrying|running|completed|cancelled|failed)$")]
    pub state: String,
    /// Only jobs of this handler.
    #[serde(default)]
    pub name: Option<String>,
    /// Only jobs of this user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Where to start: the `next_cursor` of the previous call (not for `pending`).
    #[serde(default)]
    pub cursor: Option<String>,
    /// At most this many jobs (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}
