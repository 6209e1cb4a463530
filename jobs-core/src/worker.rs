//! [`JobWorker`] and [`WorkerPool`]: take jobs from the backend, run their handlers, report
//! the outcome, keep leases alive, and stop gracefully.
//!
//! One worker is one dispatcher loop:
//!
//! 1. fetch up to `free slots` (at most 64) jobs in one call;
//! 2. spawn each as its own task with the job's timeout (a panic is caught as the task's
//!    `JoinError`, a timeout aborts it);
//! 3. when nothing was fetched, block on the backend (`BZPOPMIN` on Redis) until work may
//!    be ready, for at most `poll_interval` or until the next delayed job is due: no sleep
//!    polling, so an idle worker starts a new job within a round trip of its enqueue.
//!
//! Beside it, a heartbeat task extends the leases of running jobs (and publishes the
//! worker's stats), and a reap task takes back jobs whose worker died. Acknowledgements of
//! finished jobs are coalesced: whatever completes while one `complete` call is in flight
//! goes out together in the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{
    AckOutcome, Completion, FailOutcome, Failure, FetchRequest, Heartbeat, Lease, LeasedJob,
    ReapOptions,
};
use crate::context::{JobContext, State};
use crate::error::{Error, Result};
use crate::handler::JobError;
use crate::job::JobId;
use crate::queue::JobQueue;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::stats::{WorkerStats, WorkerStatus};

/// The longest a busy worker waits for more free slots before it fetches anyway.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// How a worker behaves. Defaults: 1 job at a time (the spec's), leases of 30 s renewed
/// every 10 s, reaping every 5 s, 30 s of grace at shutdown.
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
        Ok(())
    }
}

/// A worker id unique enough to tell processes apart: host, pid and a random suffix.
pub fn default_worker_id() -> String {
    let host = Some(hostname()).filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

#[derive(Debug, Default)]
struct Counts {
    processed: u64,
    succeeded: u64,
    failed: u64,
    busy: Duration,
}

/// Why a running job's task was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Running,
    /// The backend says the lease is no longer ours: stop, and do not acknowledge.
    Lost,
    /// Released back to the queue at shutdown: do not acknowledge.
    Released,
}

struct InFlight {
    lease: Lease,
    token: CancellationToken,
    abort: Option<AbortHandle>,
    fate: Fate,
}

struct Inner {
    cfg: WorkerConfig,
    queue: JobQueue,
    registry: Arc<Registry>,
    state: Arc<State>,
    counts: Mutex<Counts>,
    status: Mutex<WorkerStatus>,
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    started_at: DateTime<Utc>,
    acks: mpsc::UnboundedSender<Ack>,
    ack_rx: Mutex<Option<mpsc::UnboundedReceiver<Ack>>>,
}

/// A completion waiting to be sent, and where to report what became of it.
type Ack = (Completion, oneshot::Sender<Result<AckOutcome>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated (every
    // critical section is a single insert/remove/add), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A worker: one dispatcher loop running up to `max_concurrent_jobs` jobs.
///
/// ```no_run
/// use jobs_core::{JobQueue, worker::{JobWorker, WorkerConfig}};
///
/// # async fn run() -> jobs_core::Result<()> {
/// let queue = JobQueue::memory();
/// let worker = JobWorker::new(queue, WorkerConfig { max_concurrent_jobs: 10, ..Default::default() })?;
/// let running = worker.start();
/// // ... later
/// running.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JobWorker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWorker").field("worker_id", &self.inner.cfg.worker_id).finish()
    }
}

impl JobWorker {
    /// A worker for every handler linked into this process ([`Registry::global`]).
    pub fn new(queue: JobQueue, cfg: WorkerConfig) -> Result<Self> {
        let registry = Registry::global()?.clone();
        Self::with_registry(queue, Arc::new(registry), Arc::new(State::new()), cfg)
    }

    /// A worker for the handlers of `registry`, giving handlers `state` through their
    /// [`JobContext`].
    pub fn with_registry(
        queue: JobQueue,
        registry: Arc<Registry>,
        state: Arc<State>,
        cfg: WorkerConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(JobWorker {
            inner: Arc::new(Inner {
                cfg,
                queue,
                registry,
                state,
                counts: Mutex::default(),
                status: Mutex::new(WorkerStatus::Starting),
                in_flight: Mutex::default(),
                started_at: Utc::now(),
                acks: tx,
                ack_rx: Mutex::new(Some(rx)),
            }),
        })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.inner.cfg.worker_id
    }

    /// Its statistics now.
    pub fn stats(&self) -> WorkerStats {
        self.inner.stats()
    }

    /// Starts the worker on the current tokio runtime.
    pub fn start(&self) -> RunningWorker {
        let shutdown = CancellationToken::new();
        let me = self.clone();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { me.run(token).await });
        RunningWorker { worker: self.clone(), shutdown, task }
    }

    /// Runs until `shutdown` is cancelled, then stops gracefully: no new jobs, running
    /// jobs get `shutdown_grace` to finish, the rest are released back to the queue.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let inner = &self.inner;
        let ack_rx = lock(&inner.ack_rx)
            .take()
            .ok_or_else(|| Error::Config("a worker can only be run once".into()))?;
        *lock(&inner.status) = WorkerStatus::Idle;
        tracing::info!(worker.id = %inner.cfg.worker_id, backend = inner.queue.backend().kind(),
            concurrency = inner.cfg.max_concurrent_jobs, "worker started");

        let background = CancellationToken::new();
        let mut side = JoinSet::new();
        side.spawn(ack_loop(self.inner.clone(), ack_rx));
        side.spawn(heartbeat_loop(self.inner.clone(), background.clone()));
        if inner.cfg.reap {
            side.spawn(reap_loop(self.inner.clone(), background.clone()));
        }

        let mut jobs = JoinSet::new();
        self.dispatch(&mut jobs, &shutdown).await;

        // Graceful stop.
        *lock(&inner.status) = WorkerStatus::Stopping;
        let deadline = tokio::time::sleep(inner.cfg.shutdown_grace);
        tokio::pin!(deadline);
        while !jobs.is_empty() {
            tokio::select! {
                _ = jobs.join_next() => {}
                _ = &mut deadline => break,
            }
        }
        self.release_in_flight().await;
        while jobs.join_next().await.is_some() {}

        // Last heartbeat so that other processes see the final stats, then stop the rest.
        *lock(&inner.status) = WorkerStatus::Stopped;
        background.cancel();
        if let Err(e) = send_heartbeat(inner).await {
            tracing::debug!(error = %e, "final heartbeat failed");
        }
        // The ack loop ends once every sender is gone; the worker keeps one, so end it by
        // aborting after the job tasks (the only producers) are done and it has drained.
        side.abort_all();
        while side.join_next().await.is_some() {}
        tracing::info!(worker.id = %inner.cfg.worker_id, "worker stopped");
        Ok(())
    }

    async fn dispatch(&self, jobs: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let inner = &self.inner;
        let backend = inner.queue.backend().clone();
        let mut backoff = Backoff::default();
        let mut batch_wait_over = false;
        loop {
            while jobs.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                return;
            }
            let free = inner.cfg.max_concurrent_jobs.saturating_sub(jobs.len());
            if free == 0 {
                tokio::select! {
                    _ = jobs.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            // Batching: while busy, fetch when a quarter of the slots are free, or after
            // a short moment, rather than one job per call as each one finishes. A fetch
            // costs Redis about the same for one job as for a dozen (REDIS.md §9).
            let low_water = (inner.cfg.max_concurrent_jobs / 4).max(1);
            if free < low_water && !jobs.is_empty() && !batch_wait_over {
                tokio::select! {
                    _ = jobs.join_next() => {}
                    _ = tokio::time::sleep(BATCH_WAIT) => batch_wait_over = true,
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            batch_wait_over = false;
            let req = FetchRequest {
                max: free.min(64),
                worker_id: inner.cfg.worker_id.clone(),
                lease: inner.cfg.lease,
                grace: inner.cfg.grace,
            };
            let fetched = match backend.fetch(&req).await {
                Ok(f) => {
                    backoff.reset();
                    f
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "fetch failed");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            if !fetched.jobs.is_empty() {
                *lock(&inner.status) = WorkerStatus::Processing;
                for lj in fetched.jobs {
                    jobs.spawn(run_job(inner.clone(), lj));
                }
                continue;
            }
            if jobs.is_empty() {
                *lock(&inner.status) = WorkerStatus::Idle;
            }
            let wait = fetched
                .next_due_in
                .map_or(inner.cfg.poll_interval, |d| d.min(inner.cfg.poll_interval));
            tokio::select! {
                r = backend.wait_for_work(wait) => {
                    if let Err(e) = r {
                        let wait = backoff.next();
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "waiting for work failed");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.cancelled() => {}
                        }
                    }
                }
                // A job finishing frees a slot but does not make work ready; no need to wake.
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Aborts what is still running and gives it back to the queue at once.
    async fn release_in_flight(&self) {
        let leases: Vec<Lease> = {
            let mut map = lock(&self.inner.in_flight);
            map.values_mut()
                .filter(|f| f.fate == Fate::Running)
                .map(|f| {
                    f.fate = Fate::Released;
                    f.token.cancel();
                    if let Some(a) = &f.abort {
                        a.abort();
                    }
                    f.lease
                })
                .collect()
        };
        if leases.is_empty() {
            return;
        }
        let backend = self.inner.queue.backend().clone();
        let released =
            retry_until(self.inner.cfg.lease, "release", || backend.release(&leases)).await;
        match released {
            Ok(n) => tracing::info!(released = n, "released running jobs back to the queue"),
            Err(e) => tracing::error!(error = %e, jobs = leases.len(),
                "could not release running jobs; they return when their lease expires"),
        }
    }
}

impl Inner {
    fn stats(&self) -> WorkerStats {
        let c = lock(&self.counts);
        let in_flight = lock(&self.in_flight).len();
        let success_rate = if c.processed == 0 {
            100.0
        } else {
            (c.succeeded as f64 * 10_000.0 / c.processed as f64).round() / 100.0
        };
        let avg = if c.processed == 0 {
            0.0
        } else {
            (c.busy.as_secs_f64() / c.processed as f64 * 1000.0).round() / 1000.0
        };
        WorkerStats {
            worker_id: self.cfg.worker_id.clone(),
            // While running, what matters is whether a job is in hand now.
            status: match *lock(&self.status) {
                WorkerStatus::Idle | WorkerStatus::Processing if in_flight > 0 => {
                    WorkerStatus::Processing
                }
                WorkerStatus::Idle | WorkerStatus::Processing => WorkerStatus::Idle,
                other => other,
            },
            jobs_processed: c.processed,
            jobs_succeeded: c.succeeded,
            jobs_failed: c.failed,
            success_rate,
            average_processing_time: avg,
            in_flight,
            concurrency: self.cfg.max_concurrent_jobs,
            host: hostname(),
            pid: std::process::id(),
            started_at: self.started_at,
        }
    }

    fn record(&self, ok: bool, took: Duration) {
        let mut c = lock(&self.counts);
        c.processed += 1;
        if ok {
            c.succeeded += 1;
        } else {
            c.failed += 1;
        }
        c.busy += took;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// A started worker.
#[derive(Debug)]
pub struct RunningWorker {
    worker: JobWorker,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RunningWorker {
    /// The worker.
    pub fn worker(&self) -> &JobWorker {
        &self.worker
    }

    /// Asks the worker to stop without waiting.
    pub fn signal_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops gracefully and waits until it has.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await.map_err(|e| Error::Backend(format!("worker task failed: {e}")))?
    }
}

enum Outcome {
    Success(serde_json::Value),
    Failure {
        error: String,
        retryable: bool,
    },
    /// Stopped from outside (lease lost, or released at shutdown): no acknowledgement.
    Abandoned,
}

async fn run_job(inner: Arc<Inner>, lj: LeasedJob) {
    let LeasedJob { job, lease } = lj;
    let name = job.name.clone();
    let span = tracing::info_span!("job", job.id = %job.id, job.name = %job.name,
        job.attempt = lease.attempt, job.priority = %job.priority);
    async move {
        tracing::debug!("job started");
        let started = Instant::now();
        let outcome = execute(&inner, job, lease).await;
        let fate = lock(&inner.in_flight).remove(&lease.id).map_or(Fate::Running, |f| f.fate);
        let outcome = if fate == Fate::Running { outcome } else { Outcome::Abandoned };
        let took = started.elapsed();
        match outcome {
            Outcome::Success(result) => {
                inner.record(true, took);
                crate::metrics::observe(&name, took);
                let (tx, rx) = oneshot::channel();
                if inner.acks.send((Completion { lease, result }, tx)).is_err() {
                    tracing::error!("acknowledgement channel closed; the job will be redelivered");
                    return;
                }
                match rx.await {
                    Ok(Ok(AckOutcome::Completed | AckOutcome::Already)) => {
                        crate::metrics::record(&name, crate::metrics::Event::Completed);
                        tracing::debug!(elapsed_ms = took.as_millis() as u64, "job completed")
                    }
                    Ok(Ok(AckOutcome::Stale)) => tracing::warn!(
                        "job finished after its lease was taken back; its result was not recorded"),
                    Ok(Err(e)) => tracing::error!(error = %e,
                        "could not record completion; the job will be redelivered"),
                    Err(_) => tracing::error!("acknowledgement dropped; the job will be redelivered"),
                }
            }
            Outcome::Failure { error, retryable } => {
                inner.record(false, took);
                crate::metrics::observe(&name, took);
                crate::metrics::record(&name, crate::metrics::Event::Failed);
                let failure = Failure { lease, error: error.clone(), retryable, retry: inner.cfg.retry };
                let backend = inner.queue.backend().clone();
                match retry_until(inner.cfg.lease, "fail", || backend.fail(&failure)).await {
                    Ok(FailOutcome::Retrying { at }) => {
                        crate::metrics::record(&name, crate::metrics::Event::Retried);
                        tracing::warn!(error = %error, retry_at = %at, "job failed; will retry")
                    }
                    Ok(FailOutcome::Dead) => {
                        crate::metrics::record(&name, crate::metrics::Event::DeadLettered);
                        tracing::error!(error = %error, "job failed; moved to the dead-letter queue")
                    }
                    Ok(FailOutcome::Cancelled) => tracing::info!("job cancelled"),
                    Ok(FailOutcome::Stale) => tracing::warn!(error = %error,
                        "job failed after its lease was taken back; not recorded"),
                    Err(e) => tracing::error!(error = %e,
                        "could not record failure; the job will be redelivered"),
                }
            }
            Outcome::Abandoned => {
                tracing::info!(?fate, "job stopped without acknowledgement")
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs the handler in its own task (so a panic is contained and a timeout can abort it).
async fn execute(inner: &Arc<Inner>, mut job: crate::job::Job, lease: Lease) -> Outcome {
    let token = CancellationToken::new();
    lock(&inner.in_flight).insert(
        lease.id,
        InFlight { lease, token: token.clone(), abort: None, fate: Fate::Running },
    );
    let Some(handler) = inner.registry.handler(&job.name).copied() else {
        // Retryable: a newer deployment may have the handler.
        return Outcome::Failure {
            error: format!("no handler registered for job `{}` in this process", job.name),
            retryable: true,
        };
    };
    let args = std::mem::take(&mut job.args);
    let ctx = JobContext::for_job(&job, inner.queue.clone())
        .with_cancellation(token)
        .with_state(inner.state.clone());
    // Its own task: a panic ends only that task (reported as a JoinError), and the
    // timeout below can abort it.
    let mut task = tokio::spawn(handler.call(args, ctx));
    {
        let mut map = lock(&inner.in_flight);
        match map.get_mut(&lease.id) {
            Some(f) if f.fate == Fate::Running => f.abort = Some(task.abort_handle()),
            // Released or lost before the handler even started.
            _ => task.abort(),
        }
    }
    match tokio::time::timeout(job.timeout, &mut task).await {
        Ok(Ok(Ok(value))) => Outcome::Success(value),
        Ok(Ok(Err(e))) => failure_of(e),
        Ok(Err(join)) if join.is_panic() => Outcome::Failure {
            error: format!("handler panicked: {}", panic_message(join.into_panic().as_ref())),
            retryable: true,
        },
        Ok(Err(join)) if join.is_cancelled() => Outcome::Abandoned,
        Ok(Err(join)) => {
            Outcome::Failure { error: format!("handler task failed: {join}"), retryable: true }
        }
        Err(_) => {
            task.abort();
            Outcome::Failure {
                error: format!("timeout: the job ran longer than {:?}", job.timeout),
                retryable: true,
            }
        }
    }
}

fn failure_of(e: JobError) -> Outcome {
    Outcome::Failure { error: e.to_string(), retryable: e.is_retryable() }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Sends completions in batches: whatever is queued while one call is in flight goes out in
/// the next, so acknowledgements cost one round trip per batch, not per job, without a
/// timer adding latency.
async fn ack_loop(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Ack>) {
    const MAX_BATCH: usize = 128;
    let backend = inner.queue.backend().clone();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<Completion>, Vec<_>) = batch.drain(..).unzip();
        let r = retry_until(inner.cfg.lease, "complete", || backend.complete(&items)).await;
        match r {
            Ok(outs) => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(Error::Backend(msg.clone())));
                }
            }
        }
    }
}

async fn send_heartbeat(inner: &Inner) -> Result<crate::backend::HeartbeatReply> {
    let leases: Vec<Lease> = lock(&inner.in_flight)
        .values()
        .filter(|f| f.fate == Fate::Running)
        .map(|f| f.lease)
        .collect();
    let info = serde_json::to_value(inner.stats())?;
    let beat = Heartbeat {
        worker_id: inner.cfg.worker_id.clone(),
        info,
        leases,
        lease: inner.cfg.lease,
        grace: inner.cfg.grace,
    };
    inner.queue.backend().heartbeat(&beat).await
}

async fn heartbeat_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let mut last_ok = Instant::now();
    loop {
        match send_heartbeat(&inner).await {
            Ok(reply) => {
                last_ok = Instant::now();
                let map = &mut *lock(&inner.in_flight);
                for id in reply.lost {
                    if let Some(f) = map.get_mut(&id) {
                        tracing::warn!(job.id = %id, "lease lost; stopping the job");
                        f.fate = Fate::Lost;
                        f.token.cancel();
                        if let Some(a) = &f.abort {
                            a.abort();
                        }
                    }
                }
                for id in reply.cancel {
                    if let Some(f) = map.get_mut(&id) {
                        if !f.token.is_cancelled() {
                            tracing::info!(job.id = %id, "cancel requested");
                        }
                        f.token.cancel();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                // Self-fencing: past our lease, other processes may already run our jobs.
                if last_ok.elapsed() > inner.cfg.lease {
                    let map = &mut *lock(&inner.in_flight);
                    for f in map.values_mut().filter(|f| f.fate == Fate::Running) {
                        tracing::warn!(job.id = %f.lease.id, "no heartbeat for a whole lease; stopping the job");
                        f.fate = Fate::Lost;
                        f.token.cancel();
                        if let Some(a) = &f.abort {
                            a.abort();
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.cfg.heartbeat_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn reap_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let opts =
        ReapOptions { retry: inner.cfg.retry, grace: inner.cfg.grace, ..inner.cfg.reap_options };
    let backend = inner.queue.backend().clone();
    loop {
        // Jitter spreads the processes' attempts; the backend's lock keeps one run per interval.
        let jitter = Duration::from_millis(rand::random::<u64>() % 250);
        tokio::select! {
            _ = tokio::time::sleep(opts.interval.max(Duration::from_millis(50)) + jitter) => {}
            _ = stop.cancelled() => return,
        }
        match backend.reap(&opts).await {
            Ok(r) if r.requeued + r.failed + r.cancelled > 0 => tracing::info!(
                requeued = r.requeued,
                failed = r.failed,
                cancelled = r.cancelled,
                "took back jobs from lost workers"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reap failed"),
        }
    }
}

/// Exponential backoff for reconnects: 50 ms doubling to 5 s.
#[derive(Debug, Default)]
struct Backoff {
    n: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = Duration::from_millis(50).saturating_mul(1 << self.n.min(7));
        self.n += 1;
        d.min(Duration::from_secs(5))
    }
    fn reset(&mut self) {
        self.n = 0;
    }
}

/// Retries a backend call on infrastructure errors until `budget` has passed (the lease:
/// after that another process will have taken the job back anyway). Client errors (bad
/// state, unknown id) are returned at once.
async fn retry_until<T, F, Fut>(budget: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e @ (Error::Redis(_) | Error::Backend(_))) if start.elapsed() < budget => {
                let wait = backoff.next();
                tracing::warn!(error = %e, op = what, retry_in_ms = wait.as_millis() as u64, "backend call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Several workers in one process (the spec's `WorkerPool`), sharing one reap loop.
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<JobWorker>,
}

impl WorkerPool {
    /// `num_workers` workers, each running up to `max_concurrent_per_worker` jobs, with ids
    /// `<base.worker_id>-<n>`. Only the first runs the reap loop.
    pub fn new(
        queue: JobQueue,
        registry: Arc<Registry>,
        state: Arc<State>,
        num_workers: usize,
        max_concurrent_per_worker: usize,
        base: WorkerConfig,
    ) -> Result<Self> {
        if num_workers == 0 {
            return Err(Error::Config("num_workers must be at least 1".into()));
        }
        let workers = (0..num_workers)
            .map(|i| {
                let cfg = WorkerConfig {
                    worker_id: format!("{}-{}", base.worker_id, i + 1),
                    max_concurrent_jobs: max_concurrent_per_worker,
                    reap: base.reap && i == 0,
                    ..base.clone()
                };
                JobWorker::with_registry(queue.clone(), registry.clone(), state.clone(), cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WorkerPool { workers })
    }

    /// The workers.
    pub fn workers(&self) -> &[JobWorker] {
        &self.workers
    }

    /// Stats of every worker.
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.workers.iter().map(JobWorker::stats).collect()
    }

    /// Starts every worker.
    pub fn start(&self) -> RunningPool {
        RunningPool { running: self.workers.iter().map(JobWorker::start).collect() }
    }
}

/// A started pool.
#[derive(Debug)]
pub struct RunningPool {
    running: Vec<RunningWorker>,
}

impl RunningPool {
    /// Stops every worker gracefully (all at once) and waits.
    pub async fn stop(self) -> Result<()> {
        for r in &self.running {
            r.signal_stop();
        }
        let mut first_err = None;
        for r in self.running {
            if let Err(e) = r.stop().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
