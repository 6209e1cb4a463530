//! The in-process backend: the [`Backend`] contract without Redis, for embedded use and for
//! applications' unit tests.
//!
//! All state sits in one `State` behind a `std::sync::Mutex`, and every trait method is one
//! critical section: that is this backend's equivalent of the Redis backend's one Lua script
//! per call, so the two are atomic in the same places. The lock is never held across an
//! `.await`. Timestamps are kept as Unix milliseconds, as in Redis, and turned into
//! `DateTime`s only when a [`Job`] is handed out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;

use super::{
    AckOutcome, Backend, BackendConfig, CancelOutcome, Completion, DEAD_TRIM_LIMIT, DueSchedules,
    ERR_TIMEOUT, ERR_WORKER_LOST, FailOutcome, Failure, FetchRequest, Fetched, FireOutcome,
    Heartbeat, HeartbeatReply, Lease, LeasedJob, PROMOTE_LIMIT, PURGE_ON_COMPLETE, ReapOptions,
    ReapReport, ScheduleEntry, ScheduleFire, ScheduleState, StoredSchedule, THROUGHPUT_MINUTES,
    ThroughputBucket, UpsertOutcome, WorkerEntry, throughput_buckets, truncate_error,
};
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, JobStatus, NewJob, RunAt};
use crate::retry::RetryPolicy;
use crate::stats::{PendingByPriority, QueueCounters, QueueStats};
use crate::time::{duration_ms_i64, ms_duration, ms_to_time, wall_ms};

/// The in-memory [`Backend`], with the same observable behaviour as the Redis backend.
///
/// Jobs live as long as the value does; nothing is persisted.
///
/// ```
/// use jobs_core::backend::{Backend, BackendConfig, memory::MemoryBackend};
/// use jobs_core::{JobStatus, NewJob};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let backend = MemoryBackend::new(BackendConfig::default());
/// let job = NewJob::new("send_email", serde_json::json!({"to": "a@example.com"}));
/// backend.enqueue(std::slice::from_ref(&job)).await?;
/// let stored = backend.get_job(job.id).await?;
/// assert_eq!(stored.map(|j| j.status), Some(JobStatus::Pending));
/// # Ok(())
/// # }
/// ```
pub struct MemoryBackend {
    state: Mutex<State>,
    /// Signalled (after the lock is released) whenever work may have become ready, or the
    /// earliest due time moved earlier, so that `wait_for_work` callers re-check.
    work: Notify,
}

impl MemoryBackend {
    /// An empty backend applying `config` to every job.
    pub fn new(config: BackendConfig) -> Self {
        MemoryBackend { state: Mutex::new(State::new(config)), work: Notify::new() }
    }

    /// Runs one atomic operation. The notification is sent after the lock is released, and
    /// only after the state change is visible, which is what `wait_for_work` relies on.
    fn with_state<R>(&self, op: impl FnOnce(&mut State) -> R) -> R {
        let (out, wake) = {
            // No code path panics while holding the lock, so a poisoned lock can only come
            // from a bug elsewhere; the state itself is still consistent.
            let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let state = &mut *guard;
            let out = op(state);
            (out, std::mem::take(&mut state.wake))
        };
        if wake {
            self.work.notify_waiters();
        }
        out
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(BackendConfig::default())
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>> {
        Ok(self.with_state(|st| st.enqueue(jobs)))
    }

    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> {
        Ok(self.with_state(|st| st.fetch(req)))
    }

    async fn wait_for_work(&self, max: Duration) -> Result<()> {
        // Register interest before looking at the state: a change made after the look is
        // then followed by a `notify_waiters` that this future is already entitled to, and a
        // change made before it is seen by the look. Either way no wake-up is missed.
        let mut notified = std::pin::pin!(self.work.notified());
        notified.as_mut().enable();
        let wait = self.with_state(|st| st.time_until_work(max));
        if !wait.is_zero() {
            // Elapsing is as good an answer as a notification: the caller fetches either way.
            let _ = tokio::time::timeout(wait, notified).await;
        }
        Ok(())
    }

    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply> {
        Ok(self.with_state(|st| st.heartbeat(beat)))
    }

    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>> {
        Ok(self.with_state(|st| st.complete(items)))
    }

    async fn fail(&self, failure: &Failure) -> Result<FailOutcome> {
        Ok(self.with_state(|st| st.fail(failure)))
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        Ok(self.with_state(|st| st.release(leases)))
    }

    async fn reap(&self, opts: &ReapOptions) -> Result<ReapReport> {
        Ok(self.with_state(|st| st.reap(opts)))
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        self.with_state(|st| st.cancel(id))
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        Ok(self.with_state(|st| st.jobs.get(&id).map(|r| r.to_job(id))))
    }

    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>> {
        Ok(self.with_state(|st| st.list_pending(priority, limit)))
    }

    async fn list_dead(&self, offset: usize, limit: usize) -> Result<Vec<Job>> {
        Ok(self.with_state(|st| st.list_dead(offset, limit)))
    }

    async fn retry_dead(&self, id: JobId) -> Result<()> {
        self.with_state(|st| st.retry_dead(id))
    }

    async fn clear_dead(&self) -> Result<u64> {
        Ok(self.with_state(State::clear_dead))
    }

    async fn stats(&self) -> Result<QueueStats> {
        Ok(self.with_state(|st| st.stats()))
    }

    async fn purge(&self, limit: usize) -> Result<u64> {
        Ok(self.with_state(|st| {
            let now = st.now();
            st.purge(now, limit)
        }))
    }

    async fn list_workers(&self, ttl: Duration) -> Result<Vec<WorkerEntry>> {
        Ok(self.with_state(|st| st.list_workers(ttl)))
    }

    async fn throughput(&self) -> Result<Vec<ThroughputBucket>> {
        Ok(self.with_state(|st| {
            let now = st.now();
            throughput_buckets(now, &st.throughput)
        }))
    }

    async fn time(&self) -> Result<DateTime<Utc>> {
        Ok(ms_to_time(self.with_state(State::now)).unwrap_or_default())
    }

    async fn schedule_upsert(
        &self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<UpsertOutcome> {
        super::check_schedule_hash(hash)?;
        let first = first_next.map(|t| t.timestamp_millis());
        Ok(self.with_state(|st| st.schedule_upsert(entry, hash, enabled, first)))
    }

    async fn schedule_set_enabled(
        &self,
        name: &str,
        enabled: bool,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<StoredSchedule> {
        let first = first_next.map(|t| t.timestamp_millis());
        self.with_state(|st| st.schedule_set_enabled(name, enabled, first))
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool> {
        Ok(self.with_state(|st| st.schedule_remove(name)))
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>> {
        Ok(self.with_state(|st| st.schedules.get(name).map(SchedRecord::to_stored)))
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>> {
        Ok(self.with_state(|st| st.schedules.values().map(SchedRecord::to_stored).collect()))
    }

    async fn schedule_due(&self, limit: usize) -> Result<DueSchedules> {
        Ok(self.with_state(|st| st.schedule_due(limit)))
    }

    async fn schedule_fire(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        fire.check()?;
        Ok(self.with_state(|st| st.schedule_fire(fire)))
    }
}

/// A stored schedule, times in Unix milliseconds like everything else here.
#[derive(Debug, Clone)]
struct SchedRecord {
    entry: ScheduleEntry,
    hash: String,
    enabled: bool,
    /// Mirrors membership of `State::sched_due` (Redis: the `cron_due` ZSET).
    next: Option<i64>,
    last_run: Option<i64>,
    run_count: u64,
    last_job: Option<JobId>,
}

impl SchedRecord {
    fn to_stored(&self) -> StoredSchedule {
        StoredSchedule {
            entry: self.entry.clone(),
            hash: self.hash.clone(),
            state: ScheduleState {
                enabled: self.enabled,
                next_run: self.next.and_then(ms_to_time),
                last_run: self.last_run.and_then(ms_to_time),
                run_count: self.run_count,
                last_job_id: self.last_job,
            },
        }
    }
}

/// Schedules: the same steps as the `sched_*.lua` scripts, each one critical section.
impl State {
    /// Sets (or clears) a schedule's next run, keeping `sched_due` in step.
    fn set_next(&mut self, name: &str, next: Option<i64>) {
        let Some(rec) = self.schedules.get_mut(name) else {
            return;
        };
        if let Some(old) = rec.next.take() {
            self.sched_due.remove(&(old, name.to_owned()));
        }
        if let Some(n) = next {
            rec.next = Some(n);
            self.sched_due.insert((n, name.to_owned()));
        }
    }

    fn schedule_upsert(
        &mut self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first: Option<i64>,
    ) -> UpsertOutcome {
        let name = entry.name.as_str();
        let Some(rec) = self.schedules.get_mut(name) else {
            let on = enabled.unwrap_or(true);
            self.schedules.insert(
                name.to_owned(),
                SchedRecord {
                    entry: entry.clone(),
                    hash: hash.to_owned(),
                    enabled: on,
                    next: None,
                    last_run: None,
                    run_count: 0,
                    last_job: None,
                },
            );
            if on {
                self.set_next(name, first);
            }
            return UpsertOutcome::Created;
        };
        let was_on = rec.enabled;
        let on = enabled.unwrap_or(was_on);
        let same = rec.hash == hash;
        if same && on == was_on {
            return UpsertOutcome::Kept;
        }
        rec.entry = entry.clone();
        rec.hash = hash.to_owned();
        rec.enabled = on;
        if !on {
            self.set_next(name, None);
        } else if !same || !was_on {
            self.set_next(name, first);
        }
        UpsertOutcome::Updated
    }

    fn schedule_set_enabled(
        &mut self,
        name: &str,
        enabled: bool,
        first: Option<i64>,
    ) -> Result<StoredSchedule> {
        let rec = self
            .schedules
            .get_mut(name)
            .ok_or_else(|| Error::ScheduleNotFound { name: name.to_owned() })?;
        if rec.enabled != enabled {
            rec.enabled = enabled;
            self.set_next(name, if enabled { first } else { None });
        }
        self.schedules
            .get(name)
            .map(SchedRecord::to_stored)
            .ok_or_else(|| Error::ScheduleNotFound { name: name.to_owned() })
    }

    fn schedule_remove(&mut self, name: &str) -> bool {
        self.set_next(name, None);
        self.schedules.remove(name).is_some()
    }

    fn schedule_due(&mut self, limit: usize) -> DueSchedules {
        let now = self.now();
        let due = self
            .sched_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(at, name)| {
                let rec = self.schedules.get(name)?;
                Some((ms_to_time(*at).unwrap_or_default(), rec.to_stored()))
            })
            .collect();
        DueSchedules {
            now: ms_to_time(now).unwrap_or_default(),
            due,
            next_run: self.sched_due.first().and_then(|(at, _)| ms_to_time(*at)),
        }
    }

    fn schedule_fire(&mut self, fire: &ScheduleFire) -> FireOutcome {
        let now = self.now();
        let name = fire.name.as_str();
        let Some(rec) = self.schedules.get(name) else {
            return FireOutcome::NotFound;
        };
        let mut tick = None;
        if let Some(claim) = &fire.claim {
            let expected = claim.expected.timestamp_millis();
            let current = rec.next;
            if current != Some(expected) || rec.hash != claim.hash {
                return FireOutcome::Stale { current: current.and_then(ms_to_time) };
            }
            if expected > now {
                return FireOutcome::NotDue { now: ms_to_time(now).unwrap_or_default() };
            }
            // The claim: only one caller can see `next == expected` and move it.
            self.set_next(name, claim.next.map(|t| t.timestamp_millis()));
            tick = Some(expected);
        }
        // Written exactly as `enqueue` writes a ready job (counter, wake-up, duplicate check).
        let job = NewJob { run_at: RunAt::Now, ..fire.job.clone() };
        let created = self.enqueue(std::slice::from_ref(&job));
        if created.first() != Some(&EnqueueOutcome::Created) {
            return FireOutcome::Duplicate;
        }
        if let Some(r) = self.jobs.get_mut(&job.id) {
            r.scheduled = tick;
        }
        if let Some(rec) = self.schedules.get_mut(name) {
            rec.run_count += 1;
            rec.last_run = Some(now);
            rec.last_job = Some(job.id);
        }
        FireOutcome::Fired
    }
}

/// Which index holds a job, with the key it is filed under there, so that it can be
/// removed without a search (except from a ready queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In no index: only while a transition is under way.
    Unlinked,
    /// In `ready[priority]`.
    Ready,
    /// In `delayed` (status `pending`).
    Delayed { due: i64, seq: u64 },
    /// In `retrying` (status `retrying`).
    Retrying { due: i64, seq: u64 },
    /// In `active` (status `running`).
    Running { deadline: i64 },
    /// In `dead` (status `failed`).
    Dead { died: i64 },
    /// In `finished` (status `completed` or `cancelled`).
    Finished { expire: i64 },
}

/// A job as stored: the public fields in milliseconds, plus the bookkeeping that
/// [`Job`] does not show.
#[derive(Debug, Clone)]
struct Record {
    name: String,
    args: Value,
    status: JobStatus,
    priority: JobPriority,
    created: i64,
    scheduled: Option<i64>,
    started: Option<i64>,
    completed: Option<i64>,
    error: Option<String>,
    result: Option<Value>,
    retry_count: u32,
    max_retries: u32,
    timeout: Duration,
    user_id: Option<String>,
    attempt: u32,
    /// Times the job was taken back from a lost worker (never reset, as in Redis).
    stalls: u32,
    /// A cancel arrived while the job was running; its worker learns of it by heartbeat.
    cancel_requested: bool,
    place: Place,
}

impl Record {
    fn to_job(&self, id: JobId) -> Job {
        Job {
            id,
            name: self.name.clone(),
            args: self.args.clone(),
            status: self.status,
            priority: self.priority,
            created_at: ms_to_time(self.created).unwrap_or_default(),
            scheduled_at: self.scheduled.and_then(ms_to_time),
            started_at: self.started.and_then(ms_to_time),
            completed_at: self.completed.and_then(ms_to_time),
            error: self.error.clone(),
            result: self.result.clone(),
            retry_count: self.retry_count,
            max_retries: self.max_retries,
            timeout: self.timeout,
            user_id: self.user_id.clone(),
            attempt: self.attempt,
        }
    }

    /// Whether `lease` is the current delivery of this job.
    fn is_held_by(&self, lease: &Lease) -> bool {
        self.status == JobStatus::Running && self.attempt == lease.attempt
    }
}

struct State {
    config: BackendConfig,
    jobs: HashMap<JobId, Record>,
    /// Ready jobs per priority (index = `JobPriority::index`), in fetch order.
    ready: [VecDeque<JobId>; 4],
    /// Delayed jobs by (due, insertion seq): promotion order is due time, then insertion.
    delayed: BTreeMap<(i64, u64), JobId>,
    /// Jobs waiting for a retry, keyed like `delayed`.
    retrying: BTreeMap<(i64, u64), JobId>,
    /// Running jobs by lease deadline; ties by id, like a Redis ZSET's member order.
    active: BTreeSet<(i64, JobId)>,
    /// The DLQ by death time; ties by id (a UUID's byte order equals its text order, so this
    /// is the Redis ZSET's order too).
    dead: BTreeSet<(i64, JobId)>,
    /// Completed and cancelled jobs by the time their retention ends.
    finished: BTreeSet<(i64, JobId)>,
    /// worker id → (last seen ms, info).
    workers: BTreeMap<String, (i64, Value)>,
    counters: QueueCounters,
    /// slot → (minute, completed, failed): the same 60-minute ring as Redis's.
    throughput: HashMap<i64, (i64, u64, u64)>,
    seq: u64,
    /// Mirrors Redis's `SET reap_lock NX PX interval`: no reap with an interval runs before
    /// this time.
    reap_locked_until: i64,
    /// The latest time handed out, so that the backend's clock never runs backwards even if
    /// the system clock is stepped back (Redis `TIME` gives no such promise, but nothing
    /// here should depend on it either way).
    clock: i64,
    /// Set by an operation that made work ready (or due earlier); consumed by `with_state`.
    wake: bool,
    /// Schedules by name.
    schedules: BTreeMap<String, SchedRecord>,
    /// (next run ms, name) of every schedule that has a next run: the `cron_due` ZSET.
    sched_due: BTreeSet<(i64, String)>,
}

impl State {
    fn new(config: BackendConfig) -> Self {
        State {
            config,
            jobs: HashMap::new(),
            ready: Default::default(),
            delayed: BTreeMap::new(),
            retrying: BTreeMap::new(),
            active: BTreeSet::new(),
            dead: BTreeSet::new(),
            finished: BTreeSet::new(),
            workers: BTreeMap::new(),
            counters: QueueCounters::default(),
            throughput: HashMap::new(),
            seq: 0,
            reap_locked_until: i64::MIN,
            clock: i64::MIN,
            wake: false,
            schedules: BTreeMap::new(),
            sched_due: BTreeSet::new(),
        }
    }

    fn now(&mut self) -> i64 {
        self.clock = self.clock.max(wall_ms());
        self.clock
    }

    /// Counts a completion (`failed = false`) or a failed attempt in the current minute.
    fn bump_minute(&mut self, now: i64, failed: bool) {
        let minute = now.div_euclid(60_000);
        let slot = self.throughput.entry(minute.rem_euclid(THROUGHPUT_MINUTES)).or_default();
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        if failed {
            slot.2 += 1;
        } else {
            slot.1 += 1;
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn earliest_due(&self) -> Option<i64> {
        let d = self.delayed.keys().next().map(|k| k.0);
        let r = self.retrying.keys().next().map(|k| k.0);
        match (d, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn has_ready(&self) -> bool {
        self.ready.iter().any(|q| !q.is_empty())
    }

    /// Removes the job from whichever index holds it.
    fn unlink(&mut self, id: JobId) {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        let place = std::mem::replace(&mut rec.place, Place::Unlinked);
        match place {
            Place::Unlinked => {}
            Place::Ready => {
                // O(n), but only cancel of a ready job gets here: fetch pops from the front.
                let q = &mut self.ready[rec.priority.index()];
                if let Some(i) = q.iter().position(|x| *x == id) {
                    q.remove(i);
                }
            }
            Place::Delayed { due, seq } => {
                self.delayed.remove(&(due, seq));
            }
            Place::Retrying { due, seq } => {
                self.retrying.remove(&(due, seq));
            }
            Place::Running { deadline } => {
                self.active.remove(&(deadline, id));
            }
            Place::Dead { died } => {
                self.dead.remove(&(died, id));
            }
            Place::Finished { expire } => {
                self.finished.remove(&(expire, id));
            }
        }
    }

    /// Makes an unlinked job `pending` in its ready queue, without pushing it yet; returns
    /// the queue's index. Split from the push so that `release` can order a batch.
    fn mark_ready(&mut self, id: JobId) -> Option<usize> {
        let rec = self.jobs.get_mut(&id)?;
        rec.status = JobStatus::Pending;
        rec.place = Place::Ready;
        Some(rec.priority.index())
    }

    fn push_ready(&mut self, id: JobId, at_head: bool) {
        if let Some(q) = self.mark_ready(id) {
            if at_head {
                self.ready[q].push_front(id);
            } else {
                self.ready[q].push_back(id);
            }
        }
    }

    /// Files an unlinked job as delayed (`pending`) or retrying, due at `due`.
    fn schedule(&mut self, id: JobId, due: i64, retry: bool) {
        let earliest = self.earliest_due();
        let seq = self.next_seq();
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        rec.scheduled = Some(due);
        if retry {
            rec.status = JobStatus::Retrying;
            rec.place = Place::Retrying { due, seq };
            self.retrying.insert((due, seq), id);
        } else {
            rec.status = JobStatus::Pending;
            rec.place = Place::Delayed { due, seq };
            self.delayed.insert((due, seq), id);
        }
        // A waiter sleeps until the earliest due time it saw; an earlier one must wake it.
        if earliest.is_none_or(|e| due < e) {
            self.wake = true;
        }
    }

    fn finish_cancelled(&mut self, id: JobId, now: i64) {
        self.unlink(id);
        let expire = now.saturating_add(duration_ms_i64(self.config.result_ttl));
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        rec.status = JobStatus::Cancelled;
        rec.completed = Some(now);
        rec.args = Value::Null;
        rec.place = Place::Finished { expire };
        self.finished.insert((expire, id));
        self.counters.cancelled += 1;
    }

    /// The `fail` path of a running job whose lease has been checked (or that `reap` took
    /// back): cancelled, retrying, or dead.
    fn fail_running(
        &mut self,
        id: JobId,
        now: i64,
        error: &str,
        retryable: bool,
        retry: &RetryPolicy,
    ) -> FailOutcome {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return FailOutcome::Stale;
        };
        rec.error = Some(truncate_error(error).to_owned());
        if rec.cancel_requested {
            self.finish_cancelled(id, now);
            return FailOutcome::Cancelled;
        }
        if retryable && rec.retry_count < rec.max_retries {
            rec.retry_count += 1;
            let delay = retry.delay_with_jitter(rec.retry_count);
            let due = now.saturating_add(duration_ms_i64(delay));
            self.unlink(id);
            self.schedule(id, due, true);
            self.counters.failed += 1;
            self.bump_minute(now, true);
            self.counters.retried += 1;
            return FailOutcome::Retrying { at: ms_to_time(due).unwrap_or_default() };
        }
        rec.status = JobStatus::Failed;
        rec.completed = Some(now);
        self.unlink(id);
        if let Some(rec) = self.jobs.get_mut(&id) {
            rec.place = Place::Dead { died: now };
        }
        self.dead.insert((now, id));
        self.counters.failed += 1;
        self.bump_minute(now, true);
        self.counters.dead += 1;
        self.trim_dead(now);
        FailOutcome::Dead
    }

    /// Drops DLQ entries past `dead_ttl` or beyond `dead_max`, oldest first. Expired entries
    /// are necessarily the oldest, so one pass from the old end does both steps in the
    /// contract's order.
    fn trim_dead(&mut self, now: i64) {
        // "Kept for at most dead_ttl": an entry exactly dead_ttl old goes, as a finished
        // record exactly result_ttl old is purged (`expire <= now`).
        let cutoff = now.saturating_sub(duration_ms_i64(self.config.dead_ttl));
        let mut dropped = 0u64;
        while dropped < DEAD_TRIM_LIMIT as u64 {
            let Some(&(died, id)) = self.dead.first() else {
                break;
            };
            let too_many = self.dead.len() as u64 > self.config.dead_max;
            if died > cutoff && !too_many {
                break;
            }
            self.dead.pop_first();
            self.jobs.remove(&id);
            dropped += 1;
        }
        self.counters.dead_dropped += dropped;
    }

    fn purge(&mut self, now: i64, limit: usize) -> u64 {
        let mut n = 0u64;
        while (n as usize) < limit {
            match self.finished.first() {
                Some(&(expire, id)) if expire <= now => {
                    self.finished.pop_first();
                    self.jobs.remove(&id);
                    n += 1;
                }
                _ => break,
            }
        }
        self.counters.purged += n;
        n
    }

    fn enqueue(&mut self, jobs: &[NewJob]) -> Vec<EnqueueOutcome> {
        let now = self.now();
        let mut out = Vec::with_capacity(jobs.len());
        for new in jobs {
            // Checking as we insert also catches an id repeated within the batch.
            if self.jobs.contains_key(&new.id) {
                out.push(EnqueueOutcome::Duplicate);
                continue;
            }
            let due = match new.run_at {
                RunAt::Now => None,
                RunAt::Time(t) => Some(t.timestamp_millis()).filter(|&t| t > now),
                RunAt::Delay(d) if d.is_zero() => None,
                RunAt::Delay(d) => Some(now.saturating_add(duration_ms_i64(d))),
            };
            self.jobs.insert(
                new.id,
                Record {
                    name: new.name.clone(),
                    args: new.args.clone(),
                    status: JobStatus::Pending,
                    priority: new.priority,
                    created: now,
                    scheduled: None,
                    started: None,
                    completed: None,
                    error: None,
                    result: None,
                    retry_count: 0,
                    max_retries: new.max_retries,
                    timeout: new.timeout,
                    user_id: new.user_id.clone(),
                    attempt: 0,
                    stalls: 0,
                    cancel_requested: false,
                    place: Place::Unlinked,
                },
            );
            match due {
                Some(due) => self.schedule(new.id, due, false),
                None => {
                    self.push_ready(new.id, false);
                    self.wake = true;
                }
            }
            self.counters.enqueued += 1;
            out.push(EnqueueOutcome::Created);
        }
        out
    }

    /// Moves up to [`PROMOTE_LIMIT`] due jobs (delayed first, then retrying, each by due
    /// time) to the tail of their ready queue. The limit is shared by the two sets.
    fn promote(&mut self, now: i64) -> usize {
        let mut n = 0;
        for retry in [false, true] {
            while n < PROMOTE_LIMIT {
                let set = if retry { &mut self.retrying } else { &mut self.delayed };
                let Some(entry) = set.first_entry() else {
                    break;
                };
                if entry.key().0 > now {
                    break;
                }
                let id = entry.remove();
                // `scheduled` keeps the due time: the contract shows when the job was due.
                if let Some(rec) = self.jobs.get_mut(&id) {
                    rec.place = Place::Unlinked;
                }
                self.push_ready(id, false);
                n += 1;
            }
        }
        n
    }

    fn fetch(&mut self, req: &FetchRequest) -> Fetched {
        let now = self.now();
        let promoted = self.promote(now);
        let lease_ms = duration_ms_i64(req.lease);
        let grace_ms = duration_ms_i64(req.grace);
        let mut jobs = Vec::new();
        for q in 0..self.ready.len() {
            while jobs.len() < req.max {
                let Some(id) = self.ready[q].pop_front() else {
                    break;
                };
                // The indexes and the records change together under the lock, so a
                // non-pending entry cannot occur; skipping it keeps a bug from becoming a
                // double delivery.
                let Some(rec) = self.jobs.get_mut(&id) else {
                    continue;
                };
                if rec.status != JobStatus::Pending || rec.place != Place::Ready {
                    continue;
                }
                let deadline = now
                    .saturating_add(lease_ms)
                    .min(now.saturating_add(duration_ms_i64(rec.timeout)).saturating_add(grace_ms));
                rec.status = JobStatus::Running;
                rec.attempt = rec.attempt.saturating_add(1);
                rec.started = Some(now);
                rec.place = Place::Running { deadline };
                self.active.insert((deadline, id));
                jobs.push(LeasedJob {
                    job: rec.to_job(id),
                    lease: Lease { id, attempt: rec.attempt },
                });
            }
        }
        // Promoted work this caller did not take is new to every other waiter.
        if promoted > 0 && self.has_ready() {
            self.wake = true;
        }
        let next_due_in = self.earliest_due().map(|due| ms_duration(due.saturating_sub(now)));
        Fetched { jobs, next_due_in }
    }

    /// How long `wait_for_work` may sleep: zero if work is ready or due now.
    fn time_until_work(&mut self, max: Duration) -> Duration {
        let now = self.now();
        if self.has_ready() {
            return Duration::ZERO;
        }
        match self.earliest_due() {
            Some(due) => max.min(ms_duration(due.saturating_sub(now))),
            None => max,
        }
    }

    fn heartbeat(&mut self, beat: &Heartbeat) -> HeartbeatReply {
        let now = self.now();
        let lease_ms = duration_ms_i64(beat.lease);
        let grace_ms = duration_ms_i64(beat.grace);
        let mut reply = HeartbeatReply::default();
        for lease in &beat.leases {
            let Some(rec) = self.jobs.get_mut(&lease.id).filter(|r| r.is_held_by(lease)) else {
                reply.lost.push(lease.id);
                continue;
            };
            let cap = rec
                .started
                .unwrap_or(now)
                .saturating_add(duration_ms_i64(rec.timeout))
                .saturating_add(grace_ms);
            let deadline = now.saturating_add(lease_ms).min(cap);
            if let Place::Running { deadline: old } = rec.place {
                self.active.remove(&(old, lease.id));
            }
            rec.place = Place::Running { deadline };
            self.active.insert((deadline, lease.id));
            if rec.cancel_requested {
                reply.cancel.push(lease.id);
            }
        }
        self.workers.insert(beat.worker_id.clone(), (now, beat.info.clone()));
        reply
    }

    fn complete(&mut self, items: &[Completion]) -> Vec<AckOutcome> {
        let now = self.now();
        let expire = now.saturating_add(duration_ms_i64(self.config.result_ttl));
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let id = item.lease.id;
            let outcome = match self.jobs.get(&id) {
                Some(rec) if rec.is_held_by(&item.lease) => AckOutcome::Completed,
                Some(rec)
                    if rec.status == JobStatus::Completed && rec.attempt == item.lease.attempt =>
                {
                    AckOutcome::Already
                }
                _ => AckOutcome::Stale,
            };
            if outcome == AckOutcome::Completed {
                self.unlink(id);
                if let Some(rec) = self.jobs.get_mut(&id) {
                    rec.status = JobStatus::Completed;
                    rec.completed = Some(now);
                    rec.result = Some(item.result.clone());
                    rec.args = Value::Null;
                    rec.place = Place::Finished { expire };
                }
                self.finished.insert((expire, id));
                self.counters.completed += 1;
                self.bump_minute(now, false);
            }
            out.push(outcome);
        }
        self.purge(now, PURGE_ON_COMPLETE);
        out
    }

    fn fail(&mut self, failure: &Failure) -> FailOutcome {
        let now = self.now();
        let lease = &failure.lease;
        if !self.jobs.get(&lease.id).is_some_and(|r| r.is_held_by(lease)) {
            return FailOutcome::Stale;
        }
        self.fail_running(lease.id, now, &failure.error, failure.retryable, &failure.retry)
    }

    fn release(&mut self, leases: &[Lease]) -> u64 {
        let now = self.now();
        let mut heads: [Vec<JobId>; 4] = Default::default();
        let mut n = 0u64;
        for lease in leases {
            let Some(rec) = self.jobs.get(&lease.id).filter(|r| r.is_held_by(lease)) else {
                continue;
            };
            n += 1;
            if rec.cancel_requested {
                self.finish_cancelled(lease.id, now);
                continue;
            }
            // Marked pending at once so that a lease given twice is stale the second time.
            self.unlink(lease.id);
            if let Some(q) = self.mark_ready(lease.id) {
                heads[q].push(lease.id);
            }
        }
        for (q, ids) in heads.iter().enumerate() {
            // Pushing in reverse keeps the given order at the head: the first given is
            // fetched first.
            for &id in ids.iter().rev() {
                self.ready[q].push_front(id);
                self.wake = true;
            }
        }
        n
    }

    fn reap(&mut self, opts: &ReapOptions) -> ReapReport {
        let now = self.now();
        if !opts.interval.is_zero() {
            if now < self.reap_locked_until {
                return ReapReport::default();
            }
            self.reap_locked_until = now.saturating_add(duration_ms_i64(opts.interval));
        }
        let grace_ms = duration_ms_i64(opts.grace);
        let cutoff = now.saturating_sub(grace_ms);
        let lapsed: Vec<(i64, JobId)> = self
            .active
            .iter()
            .take_while(|(deadline, _)| *deadline <= cutoff)
            .take(opts.limit)
            .copied()
            .collect();
        let mut report = ReapReport { ran: true, ..ReapReport::default() };
        for (deadline, id) in lapsed {
            let Some(rec) = self.jobs.get_mut(&id) else {
                // An index entry without a record would otherwise be found by every reap.
                self.active.remove(&(deadline, id));
                continue;
            };
            if rec.cancel_requested {
                self.finish_cancelled(id, now);
                report.cancelled += 1;
                continue;
            }
            let hard_deadline = rec
                .started
                .unwrap_or(now)
                .saturating_add(duration_ms_i64(rec.timeout))
                .saturating_add(grace_ms);
            if now >= hard_deadline {
                self.fail_running(id, now, ERR_TIMEOUT, true, &opts.retry);
                report.failed += 1;
                continue;
            }
            self.counters.stalled += 1;
            rec.stalls = rec.stalls.saturating_add(1);
            if rec.stalls > opts.max_stalls {
                self.fail_running(id, now, ERR_WORKER_LOST, true, &opts.retry);
                report.failed += 1;
            } else {
                // Each to the head in deadline order, so the last processed is fetched first.
                self.unlink(id);
                self.push_ready(id, true);
                self.wake = true;
                report.requeued += 1;
            }
        }
        let seen_after = now.saturating_sub(duration_ms_i64(opts.worker_ttl));
        self.workers.retain(|_, (seen, _)| *seen >= seen_after);
        report
    }

    fn cancel(&mut self, id: JobId) -> Result<CancelOutcome> {
        let now = self.now();
        let Some(rec) = self.jobs.get_mut(&id) else {
            return Err(Error::NotFound { id });
        };
        let status = rec.status;
        match status {
            JobStatus::Pending | JobStatus::Retrying => {
                self.finish_cancelled(id, now);
                Ok(CancelOutcome::Cancelled)
            }
            JobStatus::Running => {
                rec.cancel_requested = true;
                Ok(CancelOutcome::Requested)
            }
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => {
                Err(Error::InvalidState { id, status, op: "cancel" })
            }
        }
    }

    fn retry_dead(&mut self, id: JobId) -> Result<()> {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return Err(Error::NotFound { id });
        };
        if rec.status != JobStatus::Failed {
            return Err(Error::InvalidState { id, status: rec.status, op: "retry" });
        }
        rec.completed = None;
        self.unlink(id);
        self.push_ready(id, false);
        self.wake = true;
        Ok(())
    }

    fn clear_dead(&mut self) -> u64 {
        let dead = std::mem::take(&mut self.dead);
        for (_, id) in &dead {
            self.jobs.remove(id);
        }
        dead.len() as u64
    }

    fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Vec<Job> {
        let queues: &[JobPriority] = match &priority {
            Some(p) => std::slice::from_ref(p),
            None => &JobPriority::ALL,
        };
        queues
            .iter()
            .flat_map(|p| self.ready[p.index()].iter())
            .filter_map(|id| self.jobs.get(id).map(|r| r.to_job(*id)))
            .take(limit)
            .collect()
    }

    fn list_dead(&self, offset: usize, limit: usize) -> Vec<Job> {
        self.dead
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|(_, id)| self.jobs.get(id).map(|r| r.to_job(*id)))
            .collect()
    }

    fn stats(&self) -> QueueStats {
        let mut pending = PendingByPriority::default();
        for p in JobPriority::ALL {
            pending.set(p, self.ready[p.index()].len() as u64);
        }
        QueueStats {
            pending,
            scheduled: (self.delayed.len() + self.retrying.len()) as u64,
            processing: self.active.len() as u64,
            dead_letter: self.dead.len() as u64,
            total_pending: pending.total(),
            retrying: self.retrying.len() as u64,
            counters: self.counters,
        }
    }

    fn list_workers(&mut self, ttl: Duration) -> Vec<WorkerEntry> {
        let seen_after = self.now().saturating_sub(duration_ms_i64(ttl));
        self.workers
            .iter()
            .filter(|(_, (seen, _))| *seen >= seen_after)
            .map(|(worker_id, (seen, info))| WorkerEntry {
                worker_id: worker_id.clone(),
                last_seen: ms_to_time(*seen).unwrap_or_default(),
                info: info.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn new_job(name: &str, priority: JobPriority) -> NewJob {
        NewJob { priority, ..NewJob::new(name, json!({"n": name})) }
    }

    fn req(max: usize, lease: Duration) -> FetchRequest {
        FetchRequest { max, worker_id: "w1".into(), lease, grace: Duration::ZERO }
    }

    fn names(jobs: &[LeasedJob]) -> Vec<&str> {
        jobs.iter().map(|j| j.job.name.as_str()).collect()
    }

    fn reap_now() -> ReapOptions {
        ReapOptions { interval: Duration::ZERO, grace: Duration::ZERO, ..ReapOptions::default() }
    }

    #[tokio::test]
    async fn priorities_are_strict_and_fifo_within_one() -> TestResult {
        let b = MemoryBackend::default();
        let jobs = [
            new_job("low1", JobPriority::Low),
            new_job("n1", JobPriority::Normal),
            new_job("crit1", JobPriority::Critical),
            new_job("n2", JobPriority::Normal),
            new_job("high1", JobPriority::High),
            new_job("crit2", JobPriority::Critical),
        ];
        let mut batch = jobs.to_vec();
        batch.push(jobs[1].clone());
        let out = b.enqueue(&batch).await?;
        assert_eq!(out.last(), Some(&EnqueueOutcome::Duplicate));
        assert_eq!(b.stats().await?.total_pending, 6);
        assert_eq!(b.stats().await?.counters.enqueued, 6);

        let pending = b.list_pending(None, 10).await?;
        let listed: Vec<&str> = pending.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(listed, ["crit1", "crit2", "high1", "n1", "n2", "low1"]);

        let got = b.fetch(&req(4, Duration::from_secs(30))).await?;
        assert_eq!(names(&got.jobs), ["crit1", "crit2", "high1", "n1"]);
        assert!(got.jobs.iter().all(|j| j.job.status == JobStatus::Running
            && j.job.attempt == 1
            && j.lease.attempt == 1
            && j.job.args != Value::Null));
        assert_eq!(got.next_due_in, None);
        let got = b.fetch(&req(4, Duration::from_secs(30))).await?;
        assert_eq!(names(&got.jobs), ["n2", "low1"]);
        assert_eq!(b.stats().await?.processing, 6);
        Ok(())
    }

    #[tokio::test]
    async fn delayed_job_is_not_fetched_before_it_is_due() -> TestResult {
        let b = MemoryBackend::default();
        let mut job = new_job("later", JobPriority::Normal);
        job.run_at = RunAt::Delay(Duration::from_millis(60));
        b.enqueue(std::slice::from_ref(&job)).await?;

        let stored = b.get_job(job.id).await?.ok_or("missing")?;
        assert_eq!(stored.status, JobStatus::Pending);
        let due = stored.scheduled_at.ok_or("no scheduled_at")?;
        assert_eq!(b.stats().await?.scheduled, 1);
        assert_eq!(b.stats().await?.total_pending, 0);

        let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
        assert!(got.jobs.is_empty());
        let wait = got.next_due_in.ok_or("no next_due_in")?;
        assert!(wait <= Duration::from_millis(60), "{wait:?}");

        let mut fetched = None;
        for _ in 0..50 {
            b.wait_for_work(Duration::from_millis(200)).await?;
            let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
            if let Some(j) = got.jobs.into_iter().next() {
                fetched = Some(j);
                break;
            }
        }
        let fetched = fetched.ok_or("never fetched")?;
        assert!(fetched.job.started_at.is_some_and(|s| s >= due));
        assert_eq!(fetched.job.scheduled_at, Some(due));
        Ok(())
    }

    #[tokio::test]
    async fn released_jobs_go_to_the_head_in_the_given_order() -> TestResult {
        let b = MemoryBackend::default();
        let jobs: Vec<NewJob> =
            ["a", "b", "c"].iter().map(|n| new_job(n, JobPriority::Normal)).collect();
        b.enqueue(&jobs).await?;
        let got = b.fetch(&req(2, Duration::from_secs(30))).await?;
        let leases: Vec<Lease> = got.jobs.iter().rev().map(|j| j.lease).collect(); // b, a
        assert_eq!(b.release(&leases).await?, 2);
        assert_eq!(b.release(&leases).await?, 0, "a second release is stale");

        let pending = b.list_pending(Some(JobPriority::Normal), 10).await?;
        let listed: Vec<&str> = pending.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(listed, ["b", "a", "c"]);
        assert!(pending.iter().all(|j| j.status == JobStatus::Pending));

        let again = b.fetch(&req(1, Duration::from_secs(30))).await?;
        assert_eq!(names(&again.jobs), ["b"]);
        assert_eq!(again.jobs[0].lease.attempt, 2);
        Ok(())
    }

    #[tokio::test]
    async fn an_expired_lease_is_reaped_and_the_old_delivery_is_stale() -> TestResult {
        let b = MemoryBackend::default();
        let job = new_job("slow", JobPriority::Normal);
        b.enqueue(std::slice::from_ref(&job)).await?;
        let first = b.fetch(&req(1, Duration::from_millis(100))).await?;
        let old = first.jobs.first().ok_or("not fetched")?.lease;

        let early = b.reap(&reap_now()).await?;
        assert_eq!((early.ran, early.requeued), (true, 0), "the lease has not lapsed yet");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let report = b.reap(&reap_now()).await?;
        assert_eq!((report.requeued, report.failed), (1, 0));
        assert_eq!(b.stats().await?.counters.stalled, 1);

        let second = b.fetch(&req(1, Duration::from_secs(30))).await?;
        let new = second.jobs.first().ok_or("not fetched again")?.lease;
        assert_eq!(new.attempt, 2);

        let done = |lease| Completion { lease, result: json!("ok") };
        assert_eq!(b.complete(&[done(old)]).await?, [AckOutcome::Stale]);
        assert_eq!(b.complete(&[done(new)]).await?, [AckOutcome::Completed]);
        assert_eq!(b.complete(&[done(new)]).await?, [AckOutcome::Already]);
        let stored = b.get_job(job.id).await?.ok_or("missing")?;
        assert_eq!(stored.status, JobStatus::Completed);
        assert_eq!(stored.args, Value::Null);
        assert_eq!(stored.result, Some(json!("ok")));
        assert_eq!(stored.attempt, 2);
        Ok(())
    }

    #[tokio::test]
    async fn reap_lock_and_worker_expiry() -> TestResult {
        let b = MemoryBackend::default();
        let beat = Heartbeat {
            worker_id: "w1".into(),
            info: json!({"pid": 1}),
            leases: vec![Lease { id: JobId::new(), attempt: 1 }],
            lease: Duration::from_secs(30),
            grace: Duration::ZERO,
        };
        let reply = b.heartbeat(&beat).await?;
        assert_eq!(reply.lost, [beat.leases[0].id]);
        assert_eq!(b.list_workers(Duration::from_secs(60)).await?.len(), 1);

        let opts = ReapOptions { interval: Duration::from_secs(60), ..ReapOptions::default() };
        assert!(b.reap(&opts).await?.ran);
        assert!(!b.reap(&opts).await?.ran, "another reap ran within the interval");

        tokio::time::sleep(Duration::from_millis(20)).await;
        let forget = ReapOptions { worker_ttl: Duration::from_millis(5), ..reap_now() };
        assert!(b.reap(&forget).await?.ran);
        assert!(b.list_workers(Duration::from_secs(60)).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn retries_then_dead_letter_then_retry_dead() -> TestResult {
        let b = MemoryBackend::default();
        let job = NewJob { max_retries: 1, ..new_job("flaky", JobPriority::High) };
        b.enqueue(std::slice::from_ref(&job)).await?;
        let retry = RetryPolicy::exponential(Duration::from_millis(20), Duration::from_secs(1));
        let fail = |lease| Failure { lease, error: "boom".into(), retryable: true, retry };

        let lease = b.fetch(&req(1, Duration::from_secs(30))).await?.jobs[0].lease;
        assert!(matches!(b.fail(&fail(lease)).await?, FailOutcome::Retrying { .. }));
        assert_eq!(b.fail(&fail(lease)).await?, FailOutcome::Stale);
        let stored = b.get_job(job.id).await?.ok_or("missing")?;
        assert_eq!((stored.status, stored.retry_count), (JobStatus::Retrying, 1));
        assert_eq!(b.stats().await?.retrying, 1);

        let mut second = None;
        for _ in 0..50 {
            b.wait_for_work(Duration::from_millis(200)).await?;
            let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
            if let Some(j) = got.jobs.into_iter().next() {
                second = Some(j.lease);
                break;
            }
        }
        let second = second.ok_or("retry never became ready")?;
        assert_eq!(second.attempt, 2);
        assert_eq!(b.fail(&fail(second)).await?, FailOutcome::Dead);

        let dead = b.list_dead(0, 10).await?;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].error.as_deref(), Some("boom"));
        assert_ne!(dead[0].args, Value::Null, "a dead job keeps its args");
        let c = b.stats().await?.counters;
        assert_eq!((c.failed, c.retried, c.dead), (2, 1, 1));

        b.retry_dead(job.id).await?;
        let back = b.get_job(job.id).await?.ok_or("missing")?;
        assert_eq!(
            (back.status, back.completed_at, back.retry_count),
            (JobStatus::Pending, None, 1)
        );
        assert!(matches!(b.retry_dead(job.id).await, Err(Error::InvalidState { op: "retry", .. })));
        Ok(())
    }

    #[tokio::test]
    async fn the_dead_letter_queue_keeps_at_most_dead_max() -> TestResult {
        let b = MemoryBackend::new(BackendConfig { dead_max: 2, ..BackendConfig::default() });
        let jobs: Vec<NewJob> = ["d1", "d2", "d3"]
            .iter()
            .map(|n| NewJob { max_retries: 0, ..new_job(n, JobPriority::Normal) })
            .collect();
        b.enqueue(&jobs).await?;
        let got = b.fetch(&req(3, Duration::from_secs(30))).await?;
        for j in &got.jobs {
            let failure = Failure {
                lease: j.lease,
                error: "fatal".into(),
                retryable: false,
                retry: RetryPolicy::default(),
            };
            assert_eq!(b.fail(&failure).await?, FailOutcome::Dead);
            // Distinct death times, so that "oldest" does not depend on id order.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let dead = b.list_dead(0, 10).await?;
        let listed: Vec<&str> = dead.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(listed, ["d3", "d2"]);
        assert!(b.get_job(jobs[0].id).await?.is_none(), "the dropped record is deleted");
        let s = b.stats().await?;
        assert_eq!((s.dead_letter, s.counters.dead, s.counters.dead_dropped), (2, 3, 1));

        assert_eq!(b.clear_dead().await?, 2);
        assert!(b.get_job(jobs[2].id).await?.is_none());
        assert_eq!(b.stats().await?.dead_letter, 0);
        Ok(())
    }

    #[tokio::test]
    async fn cancel_pending_and_running() -> TestResult {
        let b = MemoryBackend::default();
        let jobs: Vec<NewJob> =
            ["x", "y", "z"].iter().map(|n| new_job(n, JobPriority::Normal)).collect();
        b.enqueue(&jobs).await?;
        assert_eq!(b.cancel(jobs[1].id).await?, CancelOutcome::Cancelled);
        let y = b.get_job(jobs[1].id).await?.ok_or("missing")?;
        assert_eq!((y.status, y.args.clone()), (JobStatus::Cancelled, Value::Null));
        assert!(y.completed_at.is_some());
        assert!(matches!(
            b.cancel(jobs[1].id).await,
            Err(Error::InvalidState { op: "cancel", .. })
        ));
        assert!(matches!(b.cancel(JobId::new()).await, Err(Error::NotFound { .. })));
        assert_eq!(b.stats().await?.total_pending, 2);

        let got = b.fetch(&req(3, Duration::from_secs(30))).await?;
        assert_eq!(names(&got.jobs), ["x", "z"]);
        assert_eq!(b.cancel(jobs[0].id).await?, CancelOutcome::Requested);
        let beat = Heartbeat {
            worker_id: "w1".into(),
            info: Value::Null,
            leases: got.jobs.iter().map(|j| j.lease).collect(),
            lease: Duration::from_secs(30),
            grace: Duration::ZERO,
        };
        let reply = b.heartbeat(&beat).await?;
        assert_eq!((reply.cancel, reply.lost), (vec![jobs[0].id], vec![]));
        let failure = Failure {
            lease: got.jobs[0].lease,
            error: "cancelled".into(),
            retryable: true,
            retry: RetryPolicy::default(),
        };
        assert_eq!(b.fail(&failure).await?, FailOutcome::Cancelled);
        assert_eq!(b.stats().await?.counters.cancelled, 2);
        Ok(())
    }

    #[tokio::test]
    async fn wait_for_work_wakes_on_enqueue_and_never_misses_one() -> TestResult {
        let b = std::sync::Arc::new(MemoryBackend::default());
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                b.wait_for_work(Duration::from_secs(10)).await.map(|()| start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.enqueue(&[new_job("wake", JobPriority::Low)]).await?;
        let waited = tokio::time::timeout(Duration::from_secs(2), waiter).await???;
        assert!(waited < Duration::from_secs(2), "{waited:?}");

        // Work that is already there ends the wait at once.
        let start = std::time::Instant::now();
        b.wait_for_work(Duration::from_secs(10)).await?;
        assert!(start.elapsed() < Duration::from_secs(1));
        Ok(())
    }
}
