//! [`WorkerPool`] and [`RunningPool`]: several workers in one process, started and stopped
//! together.

use std::sync::Arc;

use super::{JobWorker, RunningWorker, WorkerConfig};
use crate::context::State;
use crate::error::{Error, Result};
use crate::queue::JobQueue;
use crate::registry::Registry;
use crate::stats::WorkerStats;

/// Several workers in one process (a worker pool), sharing one reap loop.
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
