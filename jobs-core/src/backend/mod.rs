//! The storage seam: every state change of a job is one call on [`Backend`].
//!
//! Two implementations share one contract and one conformance suite
//! (`tests/tests/conformance/`, one module per capability):
//! [`RedisBackend`](redis::RedisBackend), where every call is one atomic Lua script, and
//! [`MemoryBackend`](memory::MemoryBackend), in process, for embedded use and unit tests.
//!
//! ## The contract
//!
//! * **Ready order.** `fetch` serves priorities strictly (critical before high before normal
//!   before low) and, within a priority, in the order jobs became ready (enqueue order; a
//!   delayed or retried job becomes ready when it is promoted). A job released by a graceful
//!   shutdown or taken back from a lost worker goes to the *head* of its priority.
//! * **Leases and fencing.** A fetched job is `running` with a lease until `now + lease`
//!   (never past `started + timeout + grace`). Every fetch increments the job's `attempt`,
//!   and every later call about that delivery carries it in a [`Lease`]: `complete`, `fail`,
//!   `heartbeat` and `release` from an older attempt change nothing (stale).
//! * **Time.** Due times, leases and retention are decided on the backend's clock (Redis
//!   `TIME` inside the scripts), never the caller's.
//! * **Lost replies.** A call the Redis backend sends again after losing its reply has the
//!   effect of one call and answers what the first did (a request id per call, see
//!   `redis/scripts.rs`); a retried `fetch` returns the leases the lost reply carried.
//! * **Delayed and retried jobs** are promoted by `fetch` once due; `fetch` reports how long
//!   until the next one is due so that an idle worker can sleep exactly that long.
//! * **Cancel** removes a pending, delayed or retrying job for good (`cancelled`, never
//!   fetched afterwards); a running job is only flagged, and whatever its delivery reports
//!   next (`complete`, `fail`, `release`, or the reap of its lapsed lease) ends it
//!   `cancelled`. Its worker learns of the flag at once through `watch_cancels`, and
//!   through `heartbeat` as a backstop. Cancelling a finished job is [`Error::InvalidState`](crate::Error::InvalidState).
//! * **Retention.** Completed and cancelled records are kept for `result_ttl`, then purged
//!   (a little at every `complete`, so no timer is needed). Payloads are kept with the record
//!   (a finished job's args for its retention period too). The dead-letter queue keeps at most `dead_max` entries for at
//!   most `dead_ttl`, oldest dropped first (counted as `dead_dropped`), trimmed at every
//!   dead-lettering and every `reap`.
//! * **Unreadable records** (Redis: a record written by hand or by another version, whose
//!   state the scripts cannot read — an unknown status, a priority outside 0..=3, a cancel
//!   flag other than 0/1, a counter beyond `u32`) are never lost and never stop the rest of
//!   a batch. Every field is checked before a script writes anything. Wherever a call meets
//!   such a record — promotion and leasing in `fetch`, `reap`, `release` of a job in the
//!   running index — it goes to the dead-letter queue with the reason as its error
//!   (`corrupt record: …`), counter `dead` += 1, and is counted in no reply; the other jobs
//!   of the call go on. A record the scripts can read but the client cannot (its meta or
//!   args are not JSON) is dead-lettered by `fetch` through `fail` (not retryable).
//!   `heartbeat` reports such a job lost, `complete` and `fail` stale, `get_job` fails
//!   with [`Error::CorruptRecord`](crate::Error::CorruptRecord), listings leave it out.
//!
//! * **Limits**: see [`limits`] for rate and concurrency limits.
//!
//! ## Exact semantics (what the conformance suite checks, field by field)
//!
//! * `enqueue`: a job whose id exists (or appears earlier in the same batch) is
//!   `Duplicate` and nothing of it is written. `RunAt::Time(t)` with `t` later than the
//!   backend's now, or `RunAt::Delay(d)` with `d > 0`, makes a *delayed* job: `pending`,
//!   `scheduled_at = Some(due)`, not fetchable before `due`. Otherwise the job is ready at
//!   once (`scheduled_at = None`) and goes to the tail of its priority. `created_at` is the
//!   backend's now; `attempt = 0`, `retry_count = 0`. Counter `enqueued` += jobs created.
//! * `fetch`: first promotes up to [`PROMOTE_LIMIT`] due jobs, delayed ones (by due time)
//!   then retrying ones (by due time), each to the tail of its priority as `pending`
//!   (`scheduled_at` keeps the due time). Then takes up to `max` ready jobs: `running`,
//!   `attempt += 1`, `started_at = now`, lease deadline `min(now + lease, now + timeout +
//!   grace)`. Returned jobs carry their args. `next_due_in` is the time from now until the
//!   earliest remaining delayed or retrying job (zero if already due), `None` if none.
//!   The entries cancels left in the ready queues are skipped as they come, at most
//!   [`FETCH_SKIP_LIMIT`] per call: a call that reaches the bound returns what it has taken
//!   (possibly nothing) although ready jobs may remain behind them, and the work left keeps
//!   `wait_for_work` from sleeping, so that the next call goes on at once.
//! * `progress`: for a job `running` with the lease's attempt: its `progress` becomes the one
//!   given (kept with the record, shown by `get_job` and listings, through later attempts and
//!   after it finishes, until the record is purged), and its lease deadline becomes
//!   `min(now + lease_for, started_at + timeout + grace)`, as a heartbeat would set it;
//!   `true`. Otherwise (another attempt, not running, unknown) nothing changes; `false`.
//! * `heartbeat`: for each lease whose job is `running` with the same attempt, the deadline
//!   becomes `min(now + lease, started_at + timeout + grace)`, and the id is listed in
//!   `cancel` if a cancel was requested; every other lease is listed in `lost`. Records the
//!   worker with `last_seen = now` and its `info`.
//! * `complete`: for a job `running` with the same attempt: if a cancel was requested,
//!   `Cancelled` (status `cancelled`, `completed_at = now`, no result, args kept, kept
//!   `result_ttl`; counter `cancelled` += 1: once a cancel is requested the job never ends
//!   `completed`); else `Completed` (status `completed`, `completed_at = now`, `result` set,
//!   args kept, kept `result_ttl`; counter `completed` += 1). `Already` if it is
//!   `completed` with the same attempt, `Cancelled` if it is `cancelled` with the same
//!   attempt (nothing changes); `Stale` otherwise (unknown id included). Then purges up to
//!   [`PURGE_ON_COMPLETE`] expired finished records.
//! * `fail` (only for a `running` job with the same attempt, else `Stale`): the error
//!   (cut by [`truncate_error`]) is stored. If a cancel was requested: `Cancelled`
//!   (status `cancelled`, `completed_at = now`, args kept, counter `cancelled`).
//!   Else if `retryable` and `retry_count < max_retries`: `retry_count += 1`, status
//!   `retrying`, due `now + retry.delay(retry_count)` (+ jitter) — or `now + retry_after`
//!   when the failure carries one (no jitter) — `scheduled_at = due`;
//!   counters `failed` and `retried` += 1. Else: status `failed`, `completed_at = now`,
//!   into the DLQ (args kept); counters `failed` and `dead` += 1; then the DLQ is trimmed:
//!   entries older than `dead_ttl`, then the oldest beyond `dead_max`, at most
//!   [`DEAD_TRIM_LIMIT`] per call, their records deleted, counter `dead_dropped`.
//! * `release`: each lease whose job is `running` with the same attempt goes back to the
//!   head of its priority as `pending` (`attempt` unchanged, so the old delivery is stale);
//!   given leases keep their order at the head (the first given is fetched first). A job
//!   with a cancel request is cancelled instead. Returns the number released or cancelled.
//! * `give_back` (only for a `running` job with the same attempt, else `Stale`; nothing is
//!   counted then): a cancel requested → `Cancelled` (as `release`). Otherwise the name's
//!   give-back count += 1 (names beyond [`UNHANDLED_NAMES_MAX`] count under
//!   [`UNHANDLED_OTHER`]). With `handled_elsewhere` the name's run of unhandled give-backs
//!   ends. Without it the run goes on (it starts now if there is none, or if the last
//!   give-back of the run is more than [`UNHANDLED_GAP`] ago), and if it started at least
//!   `dead_after` ago the job is dead-lettered as `fail` does with a permanent error
//!   ([`GiveBack::dead_error`], counters `failed` and `dead`, DLQ trim): `Dead`. Else the
//!   job is `pending` and delayed: due `now + delay`, `scheduled_at = due`, `attempt`,
//!   `retry_count` and its stall count unchanged, no counter but the give-back count:
//!   `Delayed { at: due }`. `stats().unhandled` shows each name's count, the start of its
//!   run (if one goes on) and its last give-back.
//! * `reap`: unless `interval > 0` and another reap ran within `interval` (then `ran =
//!   false`), takes up to `limit` jobs whose lease deadline is `<= now - grace`, earliest
//!   deadline first. Each: cancel requested → cancelled; `now >= started_at + timeout +
//!   grace` → the `fail` path (retryable) with [`ERR_TIMEOUT`]; otherwise counter
//!   `stalled` += 1 and the job's stall count += 1: beyond `max_stalls` → the `fail` path
//!   (retryable) with [`ERR_WORKER_LOST`], else back to the head of its priority as
//!   `pending` (processed in deadline order, each pushed to the head, so the last one
//!   processed is fetched first). Each job the reap fails draws its own jitter. Then trims
//!   the DLQ as a dead-lettering does (entries older than `dead_ttl`, then the oldest beyond
//!   `dead_max`, at most [`DEAD_TRIM_LIMIT`], counter `dead_dropped`), so that its limits
//!   hold on the reaper's timer even when no job dies. Finally forgets workers silent for
//!   `worker_ttl`.
//! * `cancel`: pending (ready or delayed) or retrying → `cancelled`, `completed_at = now`,
//!   args kept, kept `result_ttl`, counter `cancelled` += 1, never fetched (a ready
//!   job's queue entry stays behind, skipped by `fetch`, so that cancel is O(1); it never
//!   stands for a later job enqueued under the same id once the record is purged); running →
//!   flagged, `Requested`; finished → `InvalidState { op: "cancel" }`; unknown → `NotFound`.
//!   Every cancel of a running job (each time it is asked) also appends that delivery's
//!   [`Lease`] to the namespace's log of cancel notices.
//! * `watch_cancels(after, max)`: with `after = None`, at once: no leases, and the cursor
//!   of the log's end. Otherwise the notices logged after `after`, in order, at most
//!   [`CANCEL_READ_LIMIT`], with the cursor of the last one; if there are none yet, waits
//!   for the first for up to `max` (a notice logged during the wait ends it at once), then
//!   answers with none and the cursor unchanged. The log keeps about the last
//!   [`CANCEL_LOG_MAX`] notices (Redis trims approximately), so a reader that comes back
//!   with its cursor after a disconnection misses nothing logged in between.
//! * `retry_dead`: a `failed` job in the DLQ → `pending` at the tail of its priority,
//!   `completed_at = None`, its stall count reset to 0 (so that the poison-pill guard gives
//!   it `max_stalls` lost leases again), everything else kept. Unknown → `NotFound`; not
//!   failed → `InvalidState { op: "retry" }`.
//! * `retry_now`: a `retrying` job → `pending` at the tail of its priority, `scheduled_at =
//!   now`, history and args kept, no counter. Unknown → `NotFound`; not retrying (a dead
//!   job is `retry_dead`'s) → `InvalidState { op: "retry" }`.
//! * `clear_dead`: deletes every DLQ job's record.
//! * `delete`: deletes one finished job's record (completed, cancelled, dead), taking it
//!   out of its index, no counter. Unknown → `NotFound`; any other state →
//!   `InvalidState { op: "delete" }`.
//! * `list_pending`: ready jobs of every queue, priority by priority (critical first with
//!   `None`), within one queue by queue in name order, each in fetch order; at most
//!   `limit`, with args. `list_dead`: by death time, newest first (ties: larger id first).
//! * `list_jobs`: reads the index of `req.state` (delayed: `scheduled` by due time;
//!   retrying: `retry` by due time; running: `active` by lease deadline; failed: the DLQ by
//!   death time; completed and cancelled: `finished` by retention end, one index for both)
//!   from the highest score down, ties by larger id first, starting after the cursor's
//!   (score, id) — whether or not that entry is still there — or at the top without one.
//!   It examines entries one by one until `limit` (clamped to 1..=[`LIST_SCAN_LIMIT`]) jobs
//!   matched or [`LIST_SCAN_LIMIT`] entries were examined: an entry matches if its record
//!   exists and is readable, has the state's status (completed or cancelled: the retention
//!   index holds both; other indexes are not checked), and has the filter's handler name
//!   and user id when given. Returned jobs carry their args (if kept) and error, no result.
//!   The cursor is the position of the last entry examined if an entry follows it, else
//!   `None`. A running job's `started_at` is when its current attempt started; which worker
//!   holds it is not recorded (that would cost every fetch a write).
//! * `stats`: `pending` counts ready jobs per priority (cancelled ones excluded),
//!   `scheduled` = delayed + retrying, `retrying` = retrying, `processing` = running,
//!   `dead_letter` = DLQ size; `counters` as above, plus `purged` += records purged. All
//!   of it is read at one moment (Redis: one script), so that no call lands between the
//!   queue lengths and the counts of cancelled entries subtracted from them.
//! * `list_workers(ttl)`: workers seen within `ttl`, sorted by worker id.
//! * Unknown ids: `get_job` → `None`; `complete`/`fail`/`heartbeat`/`release` → stale.
//!
//! ## Schedules
//!
//! A schedule is a stored definition ([`ScheduleEntry`], with a definition hash) plus its
//! state ([`ScheduleState`]): enabled, run count, last run, last job, generation, and the
//! next run. The next run of every enabled schedule that still has one sits in a due index
//! (Redis: the `cron_due` ZSET); a disabled schedule, or a one-time schedule that has fired,
//! has none. Definitions, state and the index are shared by every process of the
//! deployment. The backend stores the definition as given and never reads its options:
//! they are the spec's and the handler's, unresolved, and each process that fires a tick
//! resolves them with its own defaults, so that processes with different defaults store
//! equal definitions (and equal hashes).
//!
//! The *generation* numbers the versions of a definition: 0 when created, one more at each
//! upsert that reports `Updated` and at each enable of a disabled schedule. A tick's job id
//! includes it, so a tick that comes back in a new generation (a one-time schedule edited or
//! re-enabled after it fired has its instant as next run again) fires again, once.
//!
//! * `schedule_upsert(entry, hash, enabled, first_next)`: unknown name → created, enabled
//!   as given (`None`: enabled), next run `first_next` if enabled, generation 0; `Created`.
//!   Known name with the same hash and the same enabled flag (or `enabled = None`) →
//!   nothing changes; `Kept` (every process upserts its declared schedules at start, and an
//!   operator's enable/disable survives that). Otherwise the definition is replaced, run
//!   count, last run and last job are kept, the flag is set (`None` keeps it), the
//!   generation goes up by one; if the hash changed or the schedule was just enabled, the
//!   next run becomes `first_next`; a disabled schedule has none; `Updated`.
//! * `schedule_set_enabled(name, enabled, first_next)`: enabling a disabled schedule sets
//!   the next run to `first_next` and the generation up by one; disabling removes the next
//!   run (the generation stays); setting the current flag changes nothing. Returns the
//!   schedule. Unknown → [`Error::ScheduleNotFound`](crate::Error::ScheduleNotFound).
//! * `schedule_remove`: deletes definition, state and next run; false if unknown.
//! * `schedule_due(limit)`: the backend's now, up to `limit` schedules whose next run is
//!   `<= now` (earliest first) with their definitions, and the earliest next run of all.
//! * `schedule_fire` with a [`TickClaim`] is the exactly-once step, one atomic operation:
//!   unknown schedule → `NotFound`; no next run, a next run other than `claim.expected`, a
//!   definition hash other than `claim.hash`, or a generation other than
//!   `claim.generation` → `Stale` (another scheduler fired it, or the definition changed or
//!   was re-enabled since the caller read it); `expected > now` → `NotDue`. Otherwise the
//!   next run becomes `claim.next` (none: removed), and the job is written as `enqueue`
//!   writes a ready job, except that `scheduled_at` = the tick time; run count += 1, last
//!   run = now, last job = the job's id; `Fired`. If a job with that id exists already the
//!   next run still moves but nothing else changes; `Duplicate`. Without a claim (run now)
//!   only the schedule's existence is checked, the job has no `scheduled_at`, and the next
//!   run and the generation are untouched.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, NewJob};
use crate::retry::RetryPolicy;
pub(crate) use crate::schedule::check_schedule_hash;
/// The schedule records of the contract's schedule calls (defined in [`schedule`](crate::schedule)).
pub use crate::schedule::{
    DueSchedules, FireOutcome, ScheduleEntry, ScheduleFire, ScheduleState, StoredJobOptions,
    StoredSchedule, TickClaim, UpsertOutcome,
};
pub(crate) use crate::stats::throughput_buckets;
use crate::stats::{QueueInfo, QueueStats};
pub use crate::stats::{THROUGHPUT_MINUTES, ThroughputBucket};

mod cancel;
mod delivery;
pub mod limits;
mod listing;
pub mod memory;
pub mod redis;

pub use cancel::{CancelCursor, CancelNotices};
pub use delivery::{
    AckOutcome, Completion, FailOutcome, Failure, GiveBack, GiveBackOutcome, Heartbeat,
    HeartbeatReply, ProgressUpdate, UNHANDLED_GAP, UNHANDLED_NAMES_MAX, UNHANDLED_OTHER,
};
pub use limits::{LIMIT_RESERVATION, ThrottleOutcome};
pub use listing::{JobPage, LIST_SCAN_LIMIT, ListCursor, ListRequest, ListState};

/// Settings both backends apply to every job in their namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// How long completed and cancelled jobs, their results and args, are kept (24 h). In
    /// Redis ~160 bytes a job plus its args' JSON and its result (`tests/tests/args_memory.rs`).
    pub result_ttl: Duration,
    /// The most entries the dead-letter queue keeps. Default 10,000.
    pub dead_max: u64,
    /// How long a dead-letter entry is kept. Default 30 days.
    pub dead_ttl: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            result_ttl: Duration::from_secs(24 * 3600),
            dead_max: 10_000,
            dead_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One delivery of a job: its id and the attempt (fencing token) the fetch handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub id: JobId,
    /// The attempt number of this delivery (1 for the first).
    pub attempt: u32,
}

/// What a worker asks of [`Backend::fetch`].
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The most jobs to take (the worker's free slots). Zero only promotes due jobs.
    pub max: usize,
    /// Who takes them (recorded on the job, shown in worker stats).
    pub worker_id: String,
    /// How long the lease lasts unless renewed.
    pub lease: Duration,
    /// Extra time past a job's timeout before its lease is allowed to lapse.
    pub grace: Duration,
    /// The queues to take jobs from, in order, paused ones skipped (empty: the default
    /// queue; [`QueueSelection`](crate::QueueSelection)). Due jobs go to their own queue.
    pub queues: Vec<String>,
}

/// A job handed to a worker, with the lease that fences every later call about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    /// The job, `running`, with its args.
    pub job: Job,
    /// The delivery.
    pub lease: Lease,
}

/// [`Backend::wait_then_fetch`] as two calls, the wait and then the fetch: the default,
/// and the Redis backend's on a cluster. The leases are timed from the fetch's send.
pub(crate) async fn wait_then_fetch_apart<B: Backend + ?Sized>(
    backend: &B,
    max: Duration,
    req: &FetchRequest,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(Fetched, std::time::Instant)> {
    tokio::select! {
        r = backend.wait_for(max, &req.queues) => r?,
        _ = stop.cancelled() => return Ok((Fetched::default(), std::time::Instant::now())),
    }
    let sent = std::time::Instant::now();
    Ok((backend.fetch(req).await?, sent))
}

/// The answer of [`Backend::fetch`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// The jobs taken, in the order they are to be started.
    pub jobs: Vec<LeasedJob>,
    /// How long until the earliest delayed or retrying job is due (`None`: there is none).
    pub next_due_in: Option<Duration>,
}

/// What [`Backend::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "api",
    schema(description = "What a cancel did: `cancelled`, the job was waiting and will never \
        run; `requested`, the job is running and its worker has been asked to stop it.")
)]
pub enum CancelOutcome {
    /// The job was pending, delayed or retrying and is now `cancelled`; it will never run.
    Cancelled,
    /// The job is running: it has been flagged and its worker told; the handler's token is
    /// cancelled at once, it has the worker's `cancel_grace` to return before its task is
    /// aborted, and the job ends `cancelled` whatever the handler returns.
    Requested,
}

/// A live worker as seen through the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEntry {
    /// The worker's id.
    pub worker_id: String,
    /// When it last sent a heartbeat.
    pub last_seen: DateTime<Utc>,
    /// What it said about itself.
    pub info: serde_json::Value,
}

/// What [`Backend::reap`] is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReapOptions {
    /// At most one reap per this interval runs across all processes (zero: no such lock).
    pub interval: Duration,
    /// A lease must have lapsed this long before it is taken back.
    pub grace: Duration,
    /// The most jobs taken back in one call.
    pub limit: usize,
    /// How many times a job may be taken back from a lost worker before that counts as a
    /// failed attempt ("worker lost"), so that a job that kills its worker cannot loop.
    pub max_stalls: u32,
    /// Backoff for jobs that the reap fails (timed out, or lost too often).
    pub retry: RetryPolicy,
    /// Workers silent this long are dropped from the worker list.
    pub worker_ttl: Duration,
}

impl Default for ReapOptions {
    fn default() -> Self {
        ReapOptions {
            interval: Duration::from_secs(5),
            grace: Duration::from_secs(5),
            limit: 100,
            max_stalls: 2,
            retry: RetryPolicy::default(),
            worker_ttl: Duration::from_secs(30),
        }
    }
}

/// What one [`Backend::reap`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapReport {
    /// False when another process held the reap lock and nothing was done.
    pub ran: bool,
    /// Jobs put back at the head of their priority (lost worker).
    pub requeued: u64,
    /// Jobs failed because they ran past their timeout, or were lost too often.
    pub failed: u64,
    /// Running jobs that had been asked to cancel, now `cancelled`.
    pub cancelled: u64,
}

/// The storage of jobs. Every method is one atomic state change (or one consistent read).
///
/// See the [module docs](self) for the contract both implementations keep.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs (`"redis"`, `"memory"`).
    fn kind(&self) -> &'static str;

    /// Another handle on the same store, for use from the tokio runtime of the caller when
    /// this handle was made on another one: whatever it needs to run (connections and the
    /// tasks that drive them) is opened now, on the caller's runtime, so that its calls do
    /// not depend on the runtime this handle was made on. The worker runs its heartbeats,
    /// acknowledgements, fencing and reaping through one, on a runtime of its own, so that
    /// handlers that block their threads cannot stall them.
    ///
    /// `None` (the default): this handle depends on no runtime (the memory backend) and
    /// serves as it is. The Redis backend opens new connections with its configuration. A
    /// backend that wraps another should forward this call (and wrap what it returns).
    async fn for_current_runtime(&self) -> Result<Option<std::sync::Arc<dyn Backend>>> {
        Ok(None)
    }

    /// Creates the jobs, all or none: either every job is written (or found to exist
    /// already, [`EnqueueOutcome::Duplicate`]) or the call fails and nothing is written.
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>>;

    /// Promotes due delayed and retrying jobs, then leases up to `req.max` ready jobs.
    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched>;

    /// [`wait_for`](Self::wait_for) work in the default queue.
    async fn wait_for_work(&self, max: Duration) -> Result<()> {
        self.wait_for(max, &[]).await
    }

    /// Waits until work may be ready in one of `queues` (empty: the default queue), a job of
    /// any queue is due, or `max` has passed. Spurious wake-ups are allowed, missed ones not.
    async fn wait_for(&self, max: Duration, queues: &[String]) -> Result<()>;

    /// [`wait_for_work`](Self::wait_for_work), then [`fetch`](Self::fetch) — or the wait
    /// ended early by `stop`, then nothing. A backend may send the two at once, so that the
    /// fetch runs on the server the moment the wait ends (a wake-up costs one round trip,
    /// not two); stopped then, what that fetch leased is returned, for the caller to
    /// release. With the jobs comes an instant no later than the start of their leases:
    /// what the worker's fence times them from.
    async fn wait_then_fetch(
        &self,
        max: Duration,
        req: &FetchRequest,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(Fetched, std::time::Instant)> {
        wait_then_fetch_apart(self, max, req, stop).await
    }

    /// Extends the leases a worker holds and records the worker as alive.
    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply>;

    /// Stores a running job's progress and extends its lease (see the module docs);
    /// `false` when the lease is no longer the caller's (nothing changes then).
    async fn progress(&self, update: &ProgressUpdate) -> Result<bool>;

    /// Marks deliveries completed with their results, one outcome per item. A job that was
    /// asked to cancel while running is not completed, even if its handler finished: it
    /// becomes `cancelled` ([`AckOutcome::Cancelled`]). Also purges a few expired finished
    /// records, so that retention needs no timer.
    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>>;

    /// Records a failed attempt: retry with backoff, or dead-letter.
    async fn fail(&self, failure: &Failure) -> Result<FailOutcome>;

    /// Gives running jobs back (graceful shutdown): each goes to the head of its priority
    /// as `pending`, without using a retry. Returns how many were released; stale leases
    /// are skipped.
    async fn release(&self, leases: &[Lease]) -> Result<u64>;

    /// Gives back a delivery whose handler this process lacks, without using a retry, and
    /// counts it for its name; dead-letters it once no live worker has had the handler for
    /// `dead_after` (see the [module docs](self)).
    async fn give_back(&self, give: &GiveBack) -> Result<GiveBackOutcome>;

    /// A handler's [`rate_limited`](crate::JobContext::rate_limited): the delivery goes
    /// back without using a retry and its rate limiters close for `delay` ([`limits`]).
    async fn throttle(&self, lease: &Lease, delay: Duration) -> Result<ThrottleOutcome>;

    /// The limiters in use, by name, at most `max` ([`limits`]).
    async fn limits(&self, max: usize) -> Result<Vec<crate::job::LimiterUsage>>;

    /// Takes back jobs whose lease lapsed (their worker died or hung).
    async fn reap(&self, opts: &ReapOptions) -> Result<ReapReport>;

    /// Cancels a job. Errors: [`Error::NotFound`](crate::Error::NotFound), and
    /// [`Error::InvalidState`](crate::Error::InvalidState) for a finished job. A running job
    /// is flagged and its delivery logged for [`watch_cancels`](Self::watch_cancels).
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome>;

    /// Waits for cancel requests of running jobs, so that a worker stops a cancelled job at
    /// once instead of at its next heartbeat. `None` answers at once with the cursor of the
    /// log's end (read it before taking jobs); a cursor answers the requests logged after
    /// it, waiting up to `max` for one (see the [module docs](self)).
    ///
    /// The default, for backends without such a log, answers nothing after `max`: their
    /// workers learn of cancels through [`heartbeat`](Self::heartbeat) alone.
    async fn watch_cancels(
        &self,
        after: Option<&CancelCursor>,
        max: Duration,
    ) -> Result<CancelNotices> {
        if let Some(after) = after {
            tokio::time::sleep(max).await;
            return Ok(CancelNotices { leases: Vec::new(), cursor: after.clone() });
        }
        Ok(CancelNotices::default())
    }

    /// Reads one job, with its result.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;

    /// Ready jobs of one priority (or of all, highest first), every queue's: within a
    /// priority, queue by queue in name order, each in the order its workers take them.
    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>>;

    /// One page of one state's jobs, newest first, filtered, at most [`LIST_SCAN_LIMIT`]
    /// entries examined ([module docs](self)); a cursor of another state is
    /// [`Error::InvalidCursor`](crate::Error::InvalidCursor).
    async fn list_jobs(&self, req: &ListRequest) -> Result<JobPage>;

    /// Dead-letter jobs, most recently failed first.
    async fn list_dead(&self, offset: usize, limit: usize) -> Result<Vec<Job>>;

    /// Puts a dead-letter job back as `pending` at the tail of its priority, keeping its
    /// history (`retry_count`, `error`, `attempt`); its count of lost leases starts again.
    /// It gets one more attempt, plus whatever retries it had not used; if that fails it is
    /// dead again.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) for an unknown id,
    /// [`Error::InvalidState`](crate::Error::InvalidState) for a job not in the DLQ.
    async fn retry_dead(&self, id: JobId) -> Result<()>;

    /// Makes a retrying job (waiting for its backoff) ready at once, keeping its history.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) for an unknown id,
    /// [`Error::InvalidState`](crate::Error::InvalidState) for a job that is not retrying.
    async fn retry_now(&self, id: JobId) -> Result<()>;

    /// Empties the dead-letter queue, deleting those jobs. Returns how many.
    async fn clear_dead(&self) -> Result<u64>;

    /// Deletes a finished job (completed, cancelled or dead) for good: its record, result
    /// and error; its id is free again.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) for an unknown id,
    /// [`Error::InvalidState`](crate::Error::InvalidState) for a job that may still run
    /// (cancel it first).
    async fn delete(&self, id: JobId) -> Result<()>;

    /// Counts, in O(priorities × queues); `pending` sums every queue's.
    async fn stats(&self) -> Result<QueueStats>;

    /// Every queue by name (the default one, each a job went to or was paused): its ready jobs.
    async fn queues(&self) -> Result<Vec<QueueInfo>>;

    /// Pauses or resumes queue `name` for every process: no fetch takes a paused queue's
    /// jobs; enqueues into it go on. Whether this call changed it; a bad name is an error.
    async fn pause_queue(&self, name: &str, paused: bool) -> Result<bool>;

    /// Removes up to `limit` finished records past their retention. Returns how many.
    async fn purge(&self, limit: usize) -> Result<u64>;

    /// Workers whose last heartbeat is younger than `ttl`.
    async fn list_workers(&self, ttl: Duration) -> Result<Vec<WorkerEntry>>;

    /// Completions and failed attempts per minute over the last hour, oldest first, counted
    /// by every process of the deployment.
    async fn throughput(&self) -> Result<Vec<ThroughputBucket>>;

    /// The backend's clock (Redis `TIME`): what due times and schedules are measured on.
    async fn time(&self) -> Result<DateTime<Utc>>;

    /// Creates or updates a schedule (see the [module docs](self#schedules)).
    async fn schedule_upsert(
        &self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<UpsertOutcome>;

    /// Enables or disables a schedule and returns it.
    /// Errors: [`Error::ScheduleNotFound`](crate::Error::ScheduleNotFound).
    async fn schedule_set_enabled(
        &self,
        name: &str,
        enabled: bool,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<StoredSchedule>;

    /// Deletes a schedule. False if there was none.
    async fn schedule_remove(&self, name: &str) -> Result<bool>;

    /// One schedule.
    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>>;

    /// Every schedule, by name.
    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>>;

    /// Up to `limit` schedules due now, and the earliest next run.
    async fn schedule_due(&self, limit: usize) -> Result<DueSchedules>;

    /// Enqueues a schedule's job: with a claim, atomically claims the tick first (exactly
    /// once across any number of schedulers); without one, runs it now.
    async fn schedule_fire(&self, fire: &ScheduleFire) -> Result<FireOutcome>;
}

/// The longest error message kept on a job, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;
/// Most expired finished records that [`Backend::complete`] purges in passing.
pub const PURGE_ON_COMPLETE: usize = 10;
/// Most due delayed/retrying jobs one [`Backend::fetch`] promotes: small enough that a
/// fetch promoting a full batch stays around a millisecond of Redis time (1,000 took
/// 5-10 ms a call with a million jobs falling due at once, stalling every other client of
/// the server); a busy worker fetches often, and one that fetched a full batch fetches
/// again at once, so a burst is still promoted at tens of thousands a second.
pub const PROMOTE_LIMIT: usize = 200;
/// About how many cancel notices the backend keeps for [`Backend::watch_cancels`].
pub const CANCEL_LOG_MAX: usize = 10_000;
/// Most cancel notices one [`Backend::watch_cancels`] returns.
pub const CANCEL_READ_LIMIT: usize = 1_000;
/// Most dead ready-queue entries (left behind by cancels, or unreadable) one
/// [`Backend::fetch`] takes out before it returns what it has.
pub const FETCH_SKIP_LIMIT: usize = 1000;
/// Most dead-letter entries one dead-lettering (or one reap) drops to keep the DLQ within
/// its caps.
pub const DEAD_TRIM_LIMIT: usize = 100;
/// The error recorded when [`Backend::reap`] finds a job that ran past its timeout.
pub const ERR_TIMEOUT: &str = "timeout: the job ran past its timeout and its worker did not report";
/// The error recorded when a job's worker was lost more than `max_stalls` times.
pub const ERR_WORKER_LOST: &str = "worker lost: the job's lease expired too many times";

/// Cuts an error message to [`MAX_ERROR_LEN`] bytes on a character boundary.
pub fn truncate_error(msg: &str) -> &str {
    if msg.len() <= MAX_ERROR_LEN {
        return msg;
    }
    let mut end = MAX_ERROR_LEN;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg[..end]
}
