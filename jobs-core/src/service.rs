//! [`JobService`]: one place that owns the queue, the workers and the scheduler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::backend::memory::MemoryBackend;
use crate::backend::redis::{RedisBackend, RedisConfig};
use crate::backend::{Backend, BackendConfig};
use crate::context::State;
use crate::error::{Error, Result};
use crate::flow::LimitsInfo;
use crate::options::{JobDefaults, JobOptions, resolve};
use crate::queue::{Enqueue, JobQueue};
use crate::registry::Registry;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::stats::{FullStats, HandlerInfo, WorkerStats};
use crate::worker::{JobWorker, RunningPool, RunningWorker, WorkerConfig, WorkerPool};

/// Where jobs are stored.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per service; boxing would only burden callers
pub enum BackendChoice {
    /// In this process only (lost on exit): the embedded default, and for tests.
    Memory,
    /// Redis (shared by every process of the deployment).
    Redis(RedisConfig),
}

/// The service's configuration: `use_worker_pool`, `num_workers` and
/// `enable_scheduler`, plus the backend and the worker settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where jobs are stored (default: in memory).
    pub backend: BackendChoice,
    /// Retention and dead-letter caps (Redis: also set in its `RedisConfig`).
    pub retention: BackendConfig,
    /// Run a pool of `num_workers` workers instead of a single one (default false).
    pub use_worker_pool: bool,
    /// Workers in the pool (default 3).
    pub num_workers: usize,
    /// Jobs each worker runs at once (default 10).
    pub concurrency: usize,
    /// Run the scheduler loop in this process (default true). Any number of processes
    /// may run it: each tick still enqueues exactly one job.
    pub enable_scheduler: bool,
    /// How the scheduler loop sleeps and batches.
    pub scheduler: SchedulerConfig,
    /// Run workers at all (default true; false makes an enqueue-only or API-only process).
    pub enable_workers: bool,
    /// Lease, grace, retry policy, shutdown grace… (`max_concurrent_jobs` is taken from
    /// `concurrency`).
    pub worker: WorkerConfig,
    /// Defaults for jobs that do not say otherwise.
    pub defaults: JobDefaults,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            backend: BackendChoice::Memory,
            retention: BackendConfig::default(),
            use_worker_pool: false,
            num_workers: 3,
            concurrency: 10,
            enable_scheduler: true,
            scheduler: SchedulerConfig::default(),
            enable_workers: true,
            worker: WorkerConfig::default(),
            defaults: JobDefaults::default(),
        }
    }
}

enum Running {
    Worker(RunningWorker),
    Pool(RunningPool),
}

/// Workers built but not started yet.
enum Built {
    Worker(JobWorker),
    Pool(WorkerPool),
}

/// The job service: owns the queue, the workers (or pool) and the scheduler.
///
/// ```
/// use jobs_core::service::{JobService, ServiceConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let service = JobService::connect(ServiceConfig::default()).await?;
/// service.start()?;
/// let id = service.enqueue("sync_portfolio", serde_json::json!({"user_id": "123"})).await?;
/// let stats = service.get_full_stats().await?;
/// assert_eq!(stats.queue.counters.enqueued, 1);
/// service.stop().await?;
/// # let _ = id;
/// # Ok(())
/// # }
/// ```
pub struct JobService {
    cfg: ServiceConfig,
    queue: JobQueue,
    registry: Arc<Registry>,
    state: Arc<State>,
    running: Mutex<Option<Running>>,
    scheduler: Scheduler,
}

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService").field("queue", &self.queue).finish()
    }
}

impl JobService {
    /// Connects to the configured backend (an unreachable Redis is an error here) and
    /// builds the registry of every handler linked into this process.
    pub async fn connect(cfg: ServiceConfig) -> Result<Self> {
        let backend: Arc<dyn Backend> = match &cfg.backend {
            BackendChoice::Memory => Arc::new(MemoryBackend::new(cfg.retention)),
            BackendChoice::Redis(r) => {
                let r = RedisConfig { backend: cfg.retention, ..r.clone() };
                Arc::new(RedisBackend::connect(r).await?)
            }
        };
        let queue = JobQueue::from_backend(backend).with_defaults(cfg.defaults);
        let registry = Arc::new(Registry::global()?.clone());
        Ok(Self::with_parts(cfg, queue, registry, State::new()))
    }

    /// A service over an existing queue and registry (tests, embedding).
    pub fn with_parts(
        cfg: ServiceConfig,
        queue: JobQueue,
        registry: Arc<Registry>,
        state: State,
    ) -> Self {
        let scheduler = Scheduler::new(queue.clone(), registry.clone(), cfg.scheduler.clone());
        JobService {
            cfg,
            queue,
            registry,
            state: Arc::new(state),
            running: Mutex::new(None),
            scheduler,
        }
    }

    /// Application state handed to every handler through `ctx.state::<T>()`. Call before
    /// [`start`](Self::start).
    pub fn with_state(mut self, state: State) -> Self {
        self.state = Arc::new(state);
        self
    }

    /// The queue.
    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// The handlers and schedules this process knows.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Starts the scheduler loop (if `enable_scheduler`) and the workers (if
    /// `enable_workers`). Must be called inside a tokio runtime. Starting twice is an error.
    pub fn start(&self) -> Result<()> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() || self.scheduler.is_running() {
            return Err(Error::Config("the service is already running".into()));
        }
        // Build the workers first: that is what can fail, and nothing is started then.
        let workers = if !self.cfg.enable_workers {
            None
        } else {
            let wc = WorkerConfig {
                max_concurrent_jobs: self.cfg.concurrency,
                ..self.cfg.worker.clone()
            };
            Some(if self.cfg.use_worker_pool {
                Built::Pool(WorkerPool::new(
                    self.queue.clone(),
                    self.registry.clone(),
                    self.state.clone(),
                    self.cfg.num_workers,
                    self.cfg.concurrency,
                    wc,
                )?)
            } else {
                Built::Worker(JobWorker::with_registry(
                    self.queue.clone(),
                    self.registry.clone(),
                    self.state.clone(),
                    wc,
                )?)
            })
        };
        if self.cfg.enable_scheduler {
            self.scheduler.start()?;
        }
        *running = match workers {
            None => None,
            Some(Built::Worker(w)) => Some(Running::Worker(w.start())),
            Some(Built::Pool(p)) => Some(Running::Pool(p.start())),
        };
        Ok(())
    }

    /// Stops gracefully: the scheduler loop first (no new ticks), then the workers: no new
    /// jobs; running ones get the shutdown grace, then are released back to the queue.
    /// Stopping a stopped service does nothing.
    pub async fn stop(&self) -> Result<()> {
        self.scheduler.stop().await;
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        match running {
            None => Ok(()),
            Some(Running::Worker(w)) => w.stop().await,
            Some(Running::Pool(p)) => p.stop().await,
        }
    }

    /// The scheduler: register, enable, disable, run and list schedules (shared by every
    /// process of the deployment, whether or not this one runs the scheduler loop).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Whether the workers are running.
    pub fn is_running(&self) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Starts an enqueue (see [`JobQueue::enqueue`]).
    pub fn enqueue<A: Serialize>(&self, name: impl Into<String>, args: A) -> Enqueue<'_> {
        self.queue.enqueue(name, args)
    }

    /// Every live worker of the deployment, from the heartbeats in the backend.
    pub async fn worker_stats(&self) -> Result<Vec<WorkerStats>> {
        let ttl = self.cfg.worker.heartbeat_interval * 3;
        let entries = self.queue.backend().list_workers(ttl.max(Duration::from_secs(1))).await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| serde_json::from_value::<WorkerStats>(e.info).ok())
            .collect())
    }

    /// The handlers linked into this process.
    pub fn handlers(&self) -> Vec<HandlerInfo> {
        self.registry
            .handlers()
            .map(|h| {
                let d = resolve(JobOptions::NONE, h.defaults(), self.cfg.defaults);
                HandlerInfo {
                    name: h.name().to_owned(),
                    args_type: h.args_type().to_owned(),
                    priority: d.priority,
                    max_retries: d.max_retries,
                    timeout: d.timeout.as_secs_f64(),
                    queue: h.queue().to_owned(),
                    limits: LimitsInfo::from(&h.flow()),
                    location: h.location().to_string(),
                }
            })
            .collect()
    }

    /// Queue, workers, handlers and scheduler in one object.
    pub async fn get_full_stats(&self) -> Result<FullStats> {
        Ok(FullStats {
            queue: self.queue.stats().await?,
            workers: self.worker_stats().await?,
            handlers: self.handlers(),
            running: self.is_running(),
            scheduler: self.scheduler.stats().await?,
        })
    }
}
