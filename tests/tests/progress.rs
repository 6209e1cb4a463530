//! A handler's `ctx.progress(..)` as a user sees it: the running job shows it, and it is
//! still there once the job has completed.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Error, JobStatus, Progress, Registry, State};
use jobs_test_support::wait_for_job;
use tokio::sync::Notify;

static GATE: Notify = Notify::const_new();

/// Reports half-way, waits for the test, then reports done.
#[job_handler("progress_two_steps")]
async fn two_steps(ctx: JobContext) -> Result<(), JobError> {
    ctx.progress(50.0, "first half").await?;
    GATE.notified().await;
    ctx.progress(100.0, "done").await?;
    Ok(())
}

/// Reports a percentage out of range: the handler sees the error.
#[job_handler("progress_bad", max_retries = 0)]
async fn bad(ctx: JobContext) -> Result<(), JobError> {
    ctx.progress(150.0, "too far").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_shows_its_progress() -> Result<(), Error> {
    let queue = JobQueue::memory();
    let registry = Arc::new(Registry::global()?.clone());
    let cfg = WorkerConfig { max_concurrent_jobs: 2, ..WorkerConfig::default() };
    let running =
        JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)?.start();
    let id = queue.enqueue("progress_two_steps", ()).await?;
    let half = Some(Progress { percent: 50.0, message: "first half".into() });
    let job = wait_for_job(&queue, id, Duration::from_secs(10), |j| j.progress == half)
        .await
        .map_err(|e| Error::Backend(e.to_string()))?;
    assert_eq!(job.status, JobStatus::Running);
    GATE.notify_one();
    let job =
        wait_for_job(&queue, id, Duration::from_secs(10), |j| j.status == JobStatus::Completed)
            .await
            .map_err(|e| Error::Backend(e.to_string()))?;
    assert_eq!(job.progress, Some(Progress { percent: 100.0, message: "done".into() }));

    let bad = queue.enqueue("progress_bad", ()).await?;
    let job = wait_for_job(&queue, bad, Duration::from_secs(10), |j| j.status == JobStatus::Failed)
        .await
        .map_err(|e| Error::Backend(e.to_string()))?;
    assert!(job.error.as_deref().is_some_and(|e| e.contains("from 0 to 100")), "{job:?}");
    assert_eq!(job.progress, None, "nothing stored");
    running.stop().await
}
