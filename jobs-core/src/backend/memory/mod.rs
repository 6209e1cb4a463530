//! The in-process backend: the [`Backend`] contract without Redis, for embedded use and for
//! applications' unit tests.
//!
//! All state sits in one `State` behind a `std::sync::Mutex`, and every trait method is one
//! critical section: that is this backend's equivalent of the Redis backend's one Lua script
//! per call, so the two are atomic in the same places. The lock is never held across an
//! `.await`. Timestamps are kept as Unix milliseconds, as in Redis, and turned into
//! `DateTime`s only when a [`Job`] is handed out.
//!
//! The backend is split by concern: `state` holds the `State` struct, its indexes and the
//! helpers that file a job into them; `jobs` the job transitions (enqueue, fetch, complete,
//! fail, release, reap, cancel, heartbeat); `limits` the rate and concurrency limiters
//! (parking, unparking, throttle); `admin` the DLQ, listings, stats and retention;
//! `schedules` the schedule calls. This file only forwards each trait call into the state
//! under the lock.

mod admin;
mod give_back;
mod jobs;
mod limiters;
mod limits;
mod listing;
mod schedules;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use self::state::SchedRecord;
use self::state::State;
use super::{
    AckOutcome, Backend, BackendConfig, CancelCursor, CancelNotices, CancelOutcome, Completion,
    DueSchedules, FailOutcome, Failure, FetchRequest, Fetched, FireOutcome, GiveBack,
    GiveBackOutcome, Heartbeat, HeartbeatReply, JobPage, Lease, ListRequest, ProgressUpdate,
    ReapOptions, ReapReport, ScheduleEntry, ScheduleFire, StoredSchedule, ThroughputBucket,
    UpsertOutcome, WorkerEntry, throughput_buckets,
};
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, JobStatus, NewJob};
use crate::stats::QueueStats;
use crate::time::ms_to_time;

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
    /// Signalled (likewise) when a cancel notice is logged, for `watch_cancels`.
    cancels: Notify,
}

impl MemoryBackend {
    /// An empty backend applying `config` to every job.
    pub fn new(config: BackendConfig) -> Self {
        MemoryBackend {
            state: Mutex::new(State::new(config)),
            work: Notify::new(),
            cancels: Notify::new(),
        }
    }

    /// An empty backend whose clock is `clock` instead of the system's: time stands still
    /// until the clock is advanced, so a delayed job or a retry's backoff comes due when a
    /// test says so ([`testing`](crate::testing) does this).
    pub fn with_clock(config: BackendConfig, clock: ManualClock) -> Self {
        let backend = Self::new(config);
        backend.with_state(|st| st.source = Some(clock));
        backend
    }

    /// Turns on the journal of enqueued jobs (for [`testing`]).
    ///
    /// [`testing`]: crate::testing
    pub(crate) fn keep_journal(&self) {
        self.with_state(|st| st.journal = Some(Vec::new()));
    }

    /// Every job enqueued since [`keep_journal`](Self::keep_journal), oldest first, with
    /// the arguments it was enqueued with and its status now (`None`: purged).
    pub(crate) fn journal(&self) -> Vec<(JobId, String, serde_json::Value, Option<JobStatus>)> {
        self.with_state(|st| {
            let Some(journal) = &st.journal else { return Vec::new() };
            journal
                .iter()
                .map(|(id, name, args)| {
                    (*id, name.clone(), args.clone(), st.jobs.get(id).map(|r| r.status))
                })
                .collect()
        })
    }

    /// Runs one atomic operation. The notification is sent after the lock is released, and
    /// only after the state change is visible, which is what `wait_for_work` relies on.
    fn with_state<R>(&self, op: impl FnOnce(&mut State) -> R) -> R {
        let (out, wake, cancel_wake) = {
            // No code path panics while holding the lock, so a poisoned lock can only come
            // from a bug elsewhere; the state itself is still consistent.
            let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let state = &mut *guard;
            let out = op(state);
            (out, std::mem::take(&mut state.wake), std::mem::take(&mut state.cancel_wake))
        };
        if wake {
            self.work.notify_waiters();
        }
        if cancel_wake {
            self.cancels.notify_waiters();
        }
        out
    }
}

/// A clock that moves only when told to, for [`MemoryBackend::with_clock`]. Clones share
/// the same time.
///
/// ```
/// use std::time::Duration;
/// use jobs_core::backend::memory::ManualClock;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(120));
/// assert_eq!((clock.now() - t0).num_seconds(), 120);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock set to the current system time.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock set to `t`.
    pub fn starting_at(t: DateTime<Utc>) -> Self {
        ManualClock { ms: Arc::new(AtomicI64::new(t.timestamp_millis())) }
    }

    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        ms_to_time(self.now_ms()).unwrap_or_default()
    }

    /// Moves it forward by `d` (rounded up to a whole millisecond).
    pub fn advance(&self, d: Duration) {
        let ms = crate::time::duration_ms_i64(d);
        let _ = self
            .ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(ms)));
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
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
        // As Redis: a bad queue name or bad limits fail the call before anything is written.
        for j in jobs {
            if let Some(q) = &j.queue {
                crate::flow::check_queue_name(q)?;
            }
            if let Some(limits) = &j.limits {
                limits.validate()?;
            }
        }
        Ok(self.with_state(|st| st.enqueue(jobs)))
    }

    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> {
        for q in &req.queues {
            crate::flow::check_queue_name(q)?;
        }
        Ok(self.with_state(|st| st.fetch(req)))
    }

    async fn wait_for(&self, max: Duration, queues: &[String]) -> Result<()> {
        for q in queues {
            crate::flow::check_queue_name(q)?;
        }
        // Register interest before looking at the state: a change made after the look is
        // then followed by a `notify_waiters` that this future is already entitled to, and a
        // change made before it is seen by the look. Either way no wake-up is missed.
        let mut notified = std::pin::pin!(self.work.notified());
        notified.as_mut().enable();
        let wait = self.with_state(|st| st.time_until_work(max, queues));
        if !wait.is_zero() {
            // Elapsing is as good an answer as a notification: the caller fetches either way.
            let _ = tokio::time::timeout(wait, notified).await;
        }
        Ok(())
    }

    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply> {
        Ok(self.with_state(|st| st.heartbeat(beat)))
    }

    async fn progress(&self, update: &ProgressUpdate) -> Result<bool> {
        Ok(self.with_state(|st| st.progress(update)))
    }

    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>> {
        Ok(self.with_state(|st| st.complete(items)))
    }

    async fn fail(&self, failure: &Failure) -> Result<FailOutcome> {
        failure.validate()?;
        Ok(self.with_state(|st| st.fail(failure)))
    }

    async fn give_back(&self, give: &GiveBack) -> Result<GiveBackOutcome> {
        Ok(self.with_state(|st| st.give_back(give)))
    }

    async fn throttle(
        &self,
        lease: &Lease,
        delay: Duration,
    ) -> Result<crate::backend::ThrottleOutcome> {
        crate::backend::limits::check_throttle(delay)?;
        Ok(self.with_state(|st| st.throttle(lease, delay)))
    }

    async fn limits(&self, max: usize) -> Result<Vec<crate::job::LimiterUsage>> {
        Ok(self.with_state(|st| st.limits_usage(max)))
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

    async fn watch_cancels(
        &self,
        after: Option<&CancelCursor>,
        max: Duration,
    ) -> Result<CancelNotices> {
        let Some(after) = after else {
            let end = self.with_state(|st| st.cancel_seq);
            return Ok(CancelNotices {
                leases: Vec::new(),
                cursor: CancelCursor::new(end.to_string()),
            });
        };
        let seq: u64 = after.as_str().parse().map_err(|_| {
            Error::Backend(format!("`{}` is not a cursor of the memory backend", after.as_str()))
        })?;
        // Interest first, then the look: as in `wait_for_work`, no notice is missed.
        let mut notified = std::pin::pin!(self.cancels.notified());
        notified.as_mut().enable();
        let (mut leases, mut cursor) = self.with_state(|st| st.cancels_after(seq));
        if leases.is_empty() && !max.is_zero() {
            let _ = tokio::time::timeout(max, notified).await;
            (leases, cursor) = self.with_state(|st| st.cancels_after(seq));
        }
        Ok(CancelNotices { leases, cursor: CancelCursor::new(cursor.to_string()) })
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        Ok(self.with_state(|st| st.jobs.get(&id).map(|r| r.to_job(id))))
    }

    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>> {
        Ok(self.with_state(|st| st.list_pending(priority, limit)))
    }

    async fn retry_now(&self, id: JobId) -> Result<()> {
        self.with_state(|st| st.retry_now(id))
    }

    async fn list_jobs(&self, req: &ListRequest) -> Result<JobPage> {
        self.with_state(|s| s.list_jobs(req))
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

    async fn delete(&self, id: JobId) -> Result<()> {
        self.with_state(|st| st.delete(id))
    }

    async fn stats(&self) -> Result<QueueStats> {
        Ok(self.with_state(|st| st.stats()))
    }

    async fn queues(&self) -> Result<Vec<crate::stats::QueueInfo>> {
        Ok(self.with_state(|st| st.queues()))
    }

    async fn pause_queue(&self, name: &str, paused: bool) -> Result<bool> {
        crate::flow::check_queue_name(name)?;
        Ok(self.with_state(|st| st.pause_queue(name, paused)))
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
