//! [`JobQueue`]: the user-facing queue API, over any [`Backend`].

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::memory::MemoryBackend;
use crate::backend::redis::{RedisBackend, RedisConfig};
use crate::backend::{
    AckOutcome, Backend, BackendConfig, CancelOutcome, Completion, FailOutcome, Failure,
    FetchRequest, Fetched, Lease,
};
use crate::context::JobContext;
use crate::declared::{check_linked_args, declared_limits, declared_queue, declared_unique};
use crate::error::{Error, Result};
use crate::flow::UniqueLock;
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, JobStatus, NewJob, RunAt};
use crate::options::{JobDefaults, JobOptions, resolve};
use crate::registry::linked_handler;
use crate::stats::{QueueInfo, QueueStats};

/// The queue: enqueue jobs, look them up, cancel them, operate the dead-letter queue, read
/// statistics. Cheap to clone; every clone talks to the same backend.
///
/// ```
/// use jobs_core::{JobQueue, JobPriority, JobStatus};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let queue = JobQueue::memory();
///
/// // Enqueue an immediate job.
/// let id = queue
///     .enqueue("sync_portfolio", json!({"user_id": "user-123"}))
///     .priority(JobPriority::High)
///     .await?;
///
/// // Enqueue a job that runs in an hour.
/// queue.enqueue("send_report", json!({})).delay(std::time::Duration::from_secs(3600)).await?;
///
/// let job = queue.get_job(id).await?.expect("just enqueued");
/// assert_eq!(job.status, JobStatus::Pending);
///
/// queue.cancel_job(id).await?;
/// let stats = queue.stats().await?;
/// assert_eq!(stats.total_pending, 0);
/// assert_eq!(stats.scheduled, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JobQueue {
    backend: Arc<dyn Backend>,
    defaults: JobDefaults,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("backend", &self.backend.kind())
            .field("defaults", &self.defaults)
            .finish()
    }
}

impl JobQueue {
    /// A queue over the given backend.
    pub fn new(backend: impl Backend) -> Self {
        Self::from_backend(Arc::new(backend))
    }

    /// A queue over a shared backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Self {
        JobQueue { backend, defaults: JobDefaults::default() }
    }

    /// A queue on a fresh in-memory backend with default settings.
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new(BackendConfig::default()))
    }

    /// A queue on Redis at `url` (e.g. `redis://127.0.0.1:6379`), in the default namespace.
    pub async fn redis(url: &str) -> Result<Self> {
        Ok(Self::new(RedisBackend::connect(RedisConfig::new(url)).await?))
    }

    /// The same queue with other defaults for jobs that do not say otherwise.
    pub fn with_defaults(mut self, defaults: JobDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// The defaults applied to new jobs.
    pub fn defaults(&self) -> JobDefaults {
        self.defaults
    }

    /// The backend, for workers and tools that need the lower-level calls.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// A new job with this queue's defaults, to be adjusted and passed to
    /// [`enqueue_many`](Self::enqueue_many).
    ///
    /// Options come from the handler's attributes when a handler of that name is linked
    /// into this process (`#[job_handler("x", priority = "high")]`), else from the queue's
    /// defaults (the rule of [`options`](crate::options)).
    pub fn new_job(&self, name: impl Into<String>, args: serde_json::Value) -> NewJob {
        let name = name.into();
        let handler = linked_handler(&name).map(|h| h.defaults()).unwrap_or_default();
        self.job_with(name, args, handler)
    }

    /// A job of a handler whose attribute sets `handler`, with nothing set by the call.
    pub(crate) fn job_with(
        &self,
        name: String,
        args: serde_json::Value,
        handler: JobOptions,
    ) -> NewJob {
        let mut job = NewJob::new(name, args);
        apply(&mut job, resolve(JobOptions::NONE, handler, self.defaults));
        job
    }

    /// Starts an enqueue of the job `name` with `args`; set options on the returned builder
    /// and `.await` it to get the job's id.
    ///
    /// Arguments that cannot be serialised to JSON make the `.await` fail with
    /// [`Error::Json`] before anything is written.
    pub fn enqueue<A: Serialize>(&self, name: impl Into<String>, args: A) -> Enqueue<'_> {
        let name = name.into();
        let handler = linked_handler(&name).map(|h| h.defaults()).unwrap_or_default();
        self.enqueue_with(name, args, handler)
    }

    /// [`enqueue`](Self::enqueue) for a handler whose attribute sets `handler`.
    pub(crate) fn enqueue_with<A: Serialize>(
        &self,
        name: String,
        args: A,
        handler: JobOptions,
    ) -> Enqueue<'_> {
        let (args, err) = match serde_json::to_value(args) {
            Ok(a) => (a, None),
            Err(e) => (serde_json::Value::Null, Some(Error::from(e))),
        };
        let job = self.job_with(name, args, handler);
        Enqueue {
            queue: self,
            job,
            handler,
            call: JobOptions::NONE,
            unique_key: None,
            unique_for: None,
            err,
        }
    }

    /// Enqueues a prepared job. A job whose id already exists is not written again
    /// (the call succeeds: enqueue is idempotent by id). Returns the job's id, or, when a
    /// job with its uniqueness key holds the lock ([`NewJob::unique`]), that job's id:
    /// [`enqueue_reported`](Self::enqueue_reported) tells which.
    pub async fn enqueue_job(&self, job: NewJob) -> Result<JobId> {
        Ok(self.enqueue_reported(job).await?.id)
    }

    /// [`enqueue_job`](Self::enqueue_job), answering what became of the job.
    pub async fn enqueue_reported(&self, mut job: NewJob) -> Result<Enqueued> {
        #[cfg(feature = "otel")]
        crate::otel::fill(&mut job.trace);
        job.validate()?;
        check_linked_args(&job)?;
        if let Some(lock) = declared_unique(&job)? {
            lock.validate()?;
            job.unique = Some(lock);
        }
        if job.queue.is_none() {
            job.queue = declared_queue(&job);
        }
        if job.limits.is_none() {
            job.limits = declared_limits(&job)?;
        }
        let out = self.backend.enqueue(std::slice::from_ref(&job)).await?;
        let outcome = out
            .first()
            .copied()
            .ok_or_else(|| Error::Backend("enqueue returned no outcome".into()))?;
        if outcome == EnqueueOutcome::Created {
            crate::metrics::record(&job.name, crate::metrics::Event::Enqueued);
        }
        Ok(Enqueued { id: outcome.job_id(job.id), outcome })
    }

    /// Enqueues many jobs in one atomic write: all of them or, on any error, none.
    /// Every job is validated before anything is written. Jobs of one batch with one
    /// uniqueness key are deduplicated within the batch too (the first one created takes
    /// the lock).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>> {
        let mut locked: Option<Vec<NewJob>> = None;
        #[cfg(feature = "otel")]
        if let Some(trace) = crate::otel::current()
            && jobs.iter().any(|j| j.trace.is_none())
        {
            let all = locked.get_or_insert_with(|| jobs.to_vec());
            for j in all.iter_mut().filter(|j| j.trace.is_none()) {
                j.trace = Some(trace.clone());
            }
        }
        for (i, j) in jobs.iter().enumerate() {
            j.validate()?;
            check_linked_args(j)?;
            if let Some(lock) = declared_unique(j)? {
                lock.validate()?;
                let all = locked.get_or_insert_with(|| jobs.to_vec());
                all[i].unique = Some(lock);
            }
            if j.queue.is_none()
                && let Some(q) = declared_queue(j)
            {
                let all = locked.get_or_insert_with(|| jobs.to_vec());
                all[i].queue = Some(q);
            }
            if j.limits.is_none()
                && let Some(limits) = declared_limits(j)?
            {
                let all = locked.get_or_insert_with(|| jobs.to_vec());
                all[i].limits = Some(limits);
            }
        }
        let jobs = locked.as_deref().unwrap_or(jobs);
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.backend.enqueue(jobs).await?;
        for (j, o) in jobs.iter().zip(&out) {
            if *o == EnqueueOutcome::Created {
                crate::metrics::record(&j.name, crate::metrics::Event::Enqueued);
            }
        }
        Ok(out)
    }

    /// The job with this id, if it exists (finished jobs are kept for the retention period).
    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.backend.get_job(id).await
    }

    /// Cancels a pending, delayed or retrying job (it will never run), or asks a running
    /// job to stop. Cancelling a finished job is [`Error::InvalidState`]; an unknown id is
    /// [`Error::NotFound`].
    pub async fn cancel_job(&self, id: JobId) -> Result<CancelOutcome> {
        self.backend.cancel(id).await
    }

    /// Jobs ready to run, of one priority or (with `None`) of all, in the order they will
    /// be fetched; at most `limit`.
    pub async fn pending_jobs(
        &self,
        priority: Option<JobPriority>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        self.backend.list_pending(priority, limit).await
    }

    /// One page of the jobs of one state, newest first, optionally of one handler and one
    /// user (see [`Backend::list_jobs`]).
    pub async fn list_jobs(
        &self,
        req: &crate::backend::ListRequest,
    ) -> Result<crate::backend::JobPage> {
        self.backend.list_jobs(req).await
    }

    /// The most recent `limit` jobs of the dead-letter queue, newest first.
    pub async fn get_dead_letter_jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.backend.list_dead(0, limit).await
    }

    /// Puts a dead-letter job back in its queue, keeping its history.
    /// [`Error::NotFound`] if no such job exists, [`Error::InvalidState`] if it is not in the
    /// dead-letter queue.
    pub async fn retry_dead_letter_job(&self, id: JobId) -> Result<()> {
        self.backend.retry_dead(id).await
    }

    /// Runs a retrying job (waiting for its backoff) or a dead-letter job again now,
    /// keeping its history: the first goes to the tail of its queue at once
    /// ([`Backend::retry_now`]), the second as [`retry_dead_letter_job`](Self::retry_dead_letter_job)
    /// puts it back. [`Error::NotFound`] if no such job exists, [`Error::InvalidState`]
    /// for any other status.
    pub async fn retry_job(&self, id: JobId) -> Result<()> {
        match self.backend.retry_now(id).await {
            Err(Error::InvalidState { status: JobStatus::Failed, .. }) => {
                self.backend.retry_dead(id).await
            }
            other => other,
        }
    }

    /// Deletes a finished job (completed, cancelled or dead) for good: its record, result
    /// and error. [`Error::NotFound`] for an unknown id, [`Error::InvalidState`] for a job
    /// that may still run (cancel it first).
    pub async fn delete_job(&self, id: JobId) -> Result<()> {
        self.backend.delete(id).await
    }

    /// Deletes every job in the dead-letter queue. Returns how many.
    pub async fn clear_dead_letter_queue(&self) -> Result<u64> {
        self.backend.clear_dead().await
    }

    /// Queue statistics: the counts per state and the counters.
    pub async fn stats(&self) -> Result<QueueStats> {
        self.backend.stats().await
    }

    /// Every named queue: its ready jobs per priority and whether it is paused (see
    /// [`Backend::queues`]).
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        self.backend.queues().await
    }

    /// Pauses queue `name` for every process: its jobs stay, in order, until it is resumed;
    /// enqueues into it go on. Whether this call changed it (`false`: it was paused
    /// already). A queue no job has used yet is created paused.
    /// [`Error::InvalidQueue`] for a bad name.
    pub async fn pause_queue(&self, name: &str) -> Result<bool> {
        self.backend.pause_queue(name, true).await
    }

    /// Resumes queue `name`: its workers take its jobs again (they are woken at once).
    /// Whether this call changed it. [`Error::InvalidQueue`] for a bad name.
    pub async fn resume_queue(&self, name: &str) -> Result<bool> {
        self.backend.pause_queue(name, false).await
    }

    /// Leases up to `req.max` ready jobs (see [`Backend::fetch`]).
    pub async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> {
        self.backend.fetch(req).await
    }

    /// Completes one delivery. [`Error::StaleLease`] if the lease is no longer the caller's;
    /// a repeated acknowledgement of the same delivery succeeds. A job whose cancel was
    /// requested while it ran is not completed: it becomes `cancelled`, and the answer is
    /// [`Error::InvalidState`] (status `cancelled`, op `"complete"`).
    pub async fn complete(&self, lease: Lease, result: serde_json::Value) -> Result<()> {
        let out = self.complete_many(&[Completion { lease, result }]).await?;
        out.into_iter()
            .next()
            .unwrap_or_else(|| Err(Error::Backend("complete returned no outcome".into())))
    }

    /// Completes several deliveries in one backend call (the worker's ack loop batches
    /// through here): one result per completion, in order, each as [`complete`](Self::complete)
    /// gives it. The outer error is the call's own (connection, …); a backend that returns
    /// fewer outcomes than completions gives fewer results.
    pub(crate) async fn complete_many(&self, items: &[Completion]) -> Result<Vec<Result<()>>> {
        let out = self.backend.complete(items).await?;
        Ok(items.iter().zip(out).map(|(c, o)| ack_result(c.lease, o)).collect())
    }

    /// Records a failed attempt. [`Error::StaleLease`] if the lease is no longer the caller's.
    /// The worker records its failures through here too.
    pub async fn fail(&self, failure: &Failure) -> Result<FailOutcome> {
        match self.backend.fail(failure).await? {
            FailOutcome::Stale => Err(stale(failure.lease)),
            other => Ok(other),
        }
    }
}

/// What one completion's outcome means to whoever acknowledged it: the one place a stale
/// lease becomes [`Error::StaleLease`] (for [`JobQueue::complete`] and the worker alike).
fn ack_result(lease: Lease, out: AckOutcome) -> Result<()> {
    match out {
        AckOutcome::Completed | AckOutcome::Already => Ok(()),
        AckOutcome::Cancelled => {
            Err(Error::InvalidState { id: lease.id, status: JobStatus::Cancelled, op: "complete" })
        }
        AckOutcome::Stale => Err(stale(lease)),
    }
}

fn stale(lease: Lease) -> Error {
    Error::StaleLease { id: lease.id, attempt: lease.attempt }
}

/// The context's constructors and its queue: here rather than in `context.rs`, because the
/// context sits below the queue (the queue's registry holds handlers, whose functions take
/// a context) and so cannot name it.
impl JobContext {
    /// A context for attempt `attempt` of job `id` named `name`, with a fresh cancellation
    /// token and empty state. The worker adds its token and the service's state with
    /// [`with_cancellation`](Self::with_cancellation) and [`with_state`](Self::with_state);
    /// unit tests can use it as it is.
    pub fn new(id: JobId, name: impl Into<Arc<str>>, attempt: u32, queue: JobQueue) -> Self {
        JobContext::from_parts(id, name.into(), attempt, None, queue.backend, queue.defaults)
    }

    /// A context for a fetched job: its id, name, attempt and user.
    pub fn for_job(job: &Job, queue: JobQueue) -> Self {
        JobContext::from_parts(
            job.id,
            job.name.as_str().into(),
            job.attempt,
            job.user_id.as_deref().map(Arc::from),
            queue.backend,
            queue.defaults,
        )
        .with_started_at(job.started_at)
    }

    /// The queue, to enqueue follow-up jobs (a cheap handle on the worker's backend, with
    /// its defaults).
    pub fn queue(&self) -> JobQueue {
        JobQueue { backend: Arc::clone(&self.backend), defaults: self.defaults }
    }
}

/// An enqueue being prepared: set options, then `.await` it.
///
/// Options given here override the handler's and the queue's defaults.
#[must_use = "an enqueue does nothing until it is awaited"]
#[derive(Debug)]
pub struct Enqueue<'q> {
    queue: &'q JobQueue,
    /// The job as it will be written: `call` over `handler` over the queue's defaults.
    job: NewJob,
    handler: JobOptions,
    call: JobOptions,
    /// `unique_key` and `unique_for` as the call gives them (resolved when it is sent).
    unique_key: Option<String>,
    unique_for: Option<Duration>,
    err: Option<Error>,
}

impl Enqueue<'_> {
    /// Sets the priority.
    pub fn priority(mut self, p: JobPriority) -> Self {
        self.call.priority = Some(p);
        self.resolve()
    }

    /// Sets how many retries the job may use.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.call.max_retries = Some(n);
        self.resolve()
    }

    /// Sets how long one attempt may run.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self.resolve()
    }

    /// Sets the delay before the job's first retry (each later one doubles it, up to the
    /// cap), over the handler's `retry_base` and the failing worker's policy.
    pub fn retry_base(mut self, d: Duration) -> Self {
        self.call.retry_base = Some(d);
        self.resolve()
    }

    /// Sets the job's longest retry delay, over the handler's `retry_cap` and the failing
    /// worker's policy.
    pub fn retry_cap(mut self, d: Duration) -> Self {
        self.call.retry_cap = Some(d);
        self.resolve()
    }

    /// Sets every option the call gives at once (`None` fields leave the handler's).
    pub fn options(mut self, call: JobOptions) -> Self {
        self.call = call.or(self.call);
        self.resolve()
    }

    fn resolve(mut self) -> Self {
        apply(&mut self.job, resolve(self.call, self.handler, self.queue.defaults));
        self
    }

    /// Runs the job no earlier than `at` (its `scheduled_at`).
    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.job.run_at = RunAt::Time(at);
        self
    }

    /// Runs the job after `d` (measured on the backend's clock from when the job is written).
    pub fn delay(mut self, d: Duration) -> Self {
        self.job.run_at = RunAt::Delay(d);
        self
    }

    /// Sets the user the job acts for.
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.job.user_id = Some(user.into());
        self
    }

    /// Creates the job under this id instead of a fresh one: enqueueing twice with one id
    /// creates one job (an idempotency key).
    pub fn id(mut self, id: JobId) -> Self {
        self.job.id = id;
        self
    }

    /// Puts the job in the named queue `name` instead of its handler's (`queue = ..`, or
    /// [`DEFAULT_QUEUE`](crate::flow::DEFAULT_QUEUE)). A name that is not 1 to 64 ASCII
    /// letters, digits, `_`, `.` or `-` is refused when the job is enqueued.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.job.queue = Some(name.into());
        self
    }

    /// Makes the job unique under `key` within its handler's jobs: while a job enqueued
    /// with the same key is queued, running or waiting for a retry (for at most
    /// [`unique_for`](Self::unique_for), by default the handler's `unique(for = ..)` or
    /// [`DEFAULT_UNIQUE_WINDOW`]), this enqueue creates no job and answers that job's id.
    /// Overrides the key a handler's `unique(...)` declaration would give (its `until` and
    /// `on_conflict` still apply).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets how long at most the job's uniqueness lock holds (its upper bound), for a
    /// [`unique_key`](Self::unique_key) or a handler's `unique(...)`. On a job with neither,
    /// the `.await` fails with [`Error::InvalidJob`].
    pub fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// Sets the job's uniqueness lock as it is, overriding everything above.
    pub fn unique(mut self, lock: UniqueLock) -> Self {
        self.job.unique = Some(lock);
        self
    }

    /// The job as it would be written (without the lock a handler's declaration gives it
    /// when it is sent).
    pub fn job(&self) -> &NewJob {
        &self.job
    }

    /// Sends the enqueue and answers what became of the job: created, or not, because a
    /// job with its id or its uniqueness key is there ([`Enqueued::outcome`]). Awaiting the
    /// builder itself answers only the id.
    pub async fn report(self) -> Result<Enqueued> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let mut job = self.job;
        if job.unique.is_none() && (self.unique_key.is_some() || self.unique_for.is_some()) {
            let declared = linked_handler(&job.name).and_then(|h| h.flow().unique);
            let mut lock = match (&self.unique_key, declared) {
                (Some(key), spec) => {
                    let window = spec.map_or(DEFAULT_UNIQUE_WINDOW, |s| s.window);
                    let mut lock = UniqueLock::named(&job.name, key, window);
                    if let Some(s) = spec {
                        lock.until = s.until;
                        lock.on_conflict = s.on_conflict;
                    }
                    lock
                }
                (None, Some(spec)) => UniqueLock::declared(&spec, &job.name, &job.args)?,
                (None, None) => {
                    return Err(Error::InvalidJob {
                        reason: format!(
                            "unique_for is given but job `{}` has no uniqueness key: give a \
                             unique_key, or declare `unique(...)` on its handler",
                            job.name
                        ),
                    });
                }
            };
            if let Some(window) = self.unique_for {
                lock.window = window;
            }
            job.unique = Some(lock);
        }
        self.queue.enqueue_reported(job).await
    }
}

/// How long a uniqueness lock holds at most when neither the call
/// ([`Enqueue::unique_for`], the API's `unique_for`) nor the handler says: a day.
pub const DEFAULT_UNIQUE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What an enqueue did ([`Enqueue::report`], [`JobQueue::enqueue_reported`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id: the new job's, or the one already there (same id, or holding the
    /// uniqueness lock).
    pub id: JobId,
    /// Whether the job was created.
    pub outcome: EnqueueOutcome,
}

impl Enqueued {
    /// Whether no new job was created.
    pub fn is_duplicate(&self) -> bool {
        self.outcome.is_duplicate()
    }
}

impl<'q> IntoFuture for Enqueue<'q> {
    type Output = Result<JobId>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<JobId>> + Send + 'q>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { Ok(self.report().await?.id) })
    }
}

/// Writes resolved options into a job.
fn apply(job: &mut NewJob, o: JobDefaults) {
    job.priority = o.priority;
    job.max_retries = o.max_retries;
    job.timeout = o.timeout;
    job.retry_base = o.retry_base;
    job.retry_cap = o.retry_cap;
}
