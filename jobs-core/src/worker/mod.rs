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
//! Beside it, on a thread of the worker's own (a current-thread tokio runtime, started and
//! stopped with the worker, with its own backend connection), a heartbeat loop extends the
//! leases of running jobs (and publishes the worker's stats), a fence loop stops any job
//! whose lease it can no longer be sure of before another process may take it back, and a
//! reap loop takes back jobs whose worker died. Acknowledgements of finished jobs go out from
//! there too, coalesced: whatever completes while one `complete` call is in flight goes out
//! together in the next. A cancel task blocks on the backend's cancel notices and tells a
//! cancelled job's handler at once (through its token; after `cancel_grace` its task is
//! aborted, and the job ends `cancelled` either way); heartbeats report a cancel it missed.
//! Handlers run on the caller's runtime; one that blocks its thread delays other jobs
//! queued behind it on that runtime, but not their heartbeats (see
//! [`job_handler`](crate::job_handler) for `spawn_blocking`).

mod cancel;
mod config;
pub(crate) mod dispatch;
mod fence;
mod loops;
mod machinery;
mod pool;
mod queues;
mod unhandled;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::backend::{Completion, Lease};
use crate::context::State;
use crate::error::{Error, Result};
use crate::job::JobId;
use crate::queue::JobQueue;
use crate::registry::Registry;
use crate::stats::{WorkerStats, WorkerStatus};

pub use config::{TraceParent, WorkerConfig, default_worker_id};
pub use pool::{RunningPool, WorkerPool};
pub use queues::{MAX_QUEUE_WEIGHT, QueueSelection};

use cancel::cancel_loop;
use config::hostname;
use loops::retry_until;
use machinery::Machinery;

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
    /// When the last call that extended this lease was sent (the fetch, then each answered
    /// heartbeat): what the fence times the job's stop from.
    renewed: Instant,
}

struct Inner {
    cfg: WorkerConfig,
    queue: JobQueue,
    /// The queue over the machinery thread's own backend handle, once it is open: what
    /// heartbeats, acknowledgements, failures, releases and reaps go through (see
    /// `machinery.rs`).
    machinery_queue: OnceLock<JobQueue>,
    registry: Arc<Registry>,
    state: Arc<State>,
    counts: Mutex<Counts>,
    status: Mutex<WorkerStatus>,
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// Woken when jobs are added to `in_flight`, so that the fence loop sees their times.
    fence_wake: Notify,
    /// The handlers of the deployment's live workers, as last read, and when.
    live_handlers: Mutex<Option<(Instant, Arc<unhandled::LiveHandlers>)>>,
    started_at: DateTime<Utc>,
    acks: mpsc::UnboundedSender<Ack>,
    ack_rx: Mutex<Option<mpsc::UnboundedReceiver<Ack>>>,
}

/// A completion waiting to be sent, and where to report what became of it (as
/// [`JobQueue::complete`] would: a stale lease is [`Error::StaleLease`]).
type Ack = (Completion, oneshot::Sender<Result<()>>);

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
    /// [`JobContext`](crate::JobContext).
    pub fn with_registry(
        queue: JobQueue,
        registry: Arc<Registry>,
        state: Arc<State>,
        cfg: WorkerConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        // Listed on `/metrics` at 0 from the start, so that `rate()` sees the first event.
        crate::metrics::declare(registry.handlers().map(|h| (h.name(), h.queue())));
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(JobWorker {
            inner: Arc::new(Inner {
                cfg,
                queue,
                machinery_queue: OnceLock::new(),
                registry,
                state,
                counts: Mutex::default(),
                live_handlers: Mutex::default(),
                status: Mutex::new(WorkerStatus::Starting),
                in_flight: Mutex::default(),
                fence_wake: Notify::new(),
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

        // Where the cancel notices stand before the first job is taken, so that none about
        // our jobs is missed. Should this fail, the loop reads it again (heartbeats report
        // a cancel missed in between).
        let cursor = match inner.queue.backend().watch_cancels(None, Duration::ZERO).await {
            Ok(n) => Some(n.cursor),
            Err(e) => {
                tracing::warn!(error = %crate::escape::Escaped(&e), "cannot read the cancel notices yet");
                None
            }
        };

        // Heartbeats, acknowledgements, fencing and reaping, on a thread of their own; cancel
        // notices here (a cancel the task misses is reported by the next heartbeat).
        let machinery = Machinery::start(self.inner.clone(), ack_rx)?;
        let background = CancellationToken::new();
        let mut side = JoinSet::new();
        side.spawn(cancel_loop(self.inner.clone(), cursor, background.clone()));

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

        // The machinery sends a last heartbeat (the final stats) and stops.
        background.cancel();
        side.abort_all();
        while side.join_next().await.is_some() {}
        *lock(&inner.status) = WorkerStatus::Stopped;
        machinery.stop().await;
        tracing::info!(worker.id = %inner.cfg.worker_id, "worker stopped");
        Ok(())
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
        let backend = self.inner.side_queue().backend().clone();
        let released =
            retry_until(self.inner.cfg.lease, "release", || backend.release(&leases)).await;
        match released {
            Ok(n) => tracing::info!(released = n, "released running jobs back to the queue"),
            Err(e) => tracing::error!(error = %crate::escape::Escaped(&e), jobs = leases.len(),
                "could not release running jobs; they return when their lease expires"),
        }
    }
}

impl Inner {
    /// The queue for heartbeats, acknowledgements and the other calls about held leases:
    /// the machinery thread's own once it is open, else the caller's.
    fn side_queue(&self) -> &JobQueue {
        self.machinery_queue.get().unwrap_or(&self.queue)
    }

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
            handlers: Some(self.registry.handlers().map(|h| h.name().to_owned()).collect()),
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
