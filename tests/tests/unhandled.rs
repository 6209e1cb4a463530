//! A job whose handler a worker lacks (a fleet mid-deploy): the worker gives it back without
//! using a retry and it is counted for its name; another worker with the handler runs it;
//! only when no live worker has the handler for `unhandled_dead_after` does it go to the
//! dead-letter queue, with that reason. On every backend (memory, Redis, Redis Cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{BackendConfig, Heartbeat, ReapOptions};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Job, JobStatus, Registry, RetryPolicy, State};
use jobs_test_support::{
    cluster_backend, redis_backend, unique_namespace, wait_for_job, wait_until,
};
use serde_json::json;

const NAME: &str = "unhandled_resize";

#[job_handler("unhandled_resize")]
async fn resize() -> Result<&'static str, JobError> {
    Ok("resized")
}

/// This binary's handlers but `unhandled_resize`: an older build.
fn old_build() -> Arc<Registry> {
    let all = Registry::global().expect("handlers register");
    let handlers: Vec<_> = all.handlers().filter(|h| h.name() != NAME).copied().collect();
    Arc::new(Registry::from_parts(handlers, []).expect("a registry"))
}

fn new_build() -> Arc<Registry> {
    Arc::new(Registry::global().expect("handlers register").clone())
}

fn config(id: &str, dead_after: Duration) -> WorkerConfig {
    WorkerConfig {
        worker_id: id.into(),
        max_concurrent_jobs: 2,
        poll_interval: Duration::from_millis(500),
        lease: Duration::from_secs(5),
        grace: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(100),
        retry: RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(40)),
        shutdown_grace: Duration::from_millis(200),
        unhandled_delay: Duration::from_millis(50),
        unhandled_dead_after: dead_after,
        // Workers silent for a second are no longer live.
        reap_options: ReapOptions { worker_ttl: Duration::from_secs(1), ..ReapOptions::default() },
        ..WorkerConfig::default()
    }
}

fn worker(queue: &JobQueue, registry: Arc<Registry>, cfg: WorkerConfig) -> JobWorker {
    JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)
        .expect("valid worker config")
}

async fn wait_for(queue: &JobQueue, id: jobs_core::JobId, done: impl Fn(&Job) -> bool) -> Job {
    let waited = wait_for_job(queue, id, Duration::from_secs(10), done).await;
    waited.unwrap_or_else(|e| panic!("{e}"))
}

/// Waits (bounded) until `NAME` has been given back at least `n` times; returns the count.
async fn given_back(queue: &JobQueue, n: u64) -> u64 {
    let waited = wait_until("give-backs", Duration::from_secs(10), || async {
        let s = queue.stats().await.ok()?;
        s.unhandled.get(NAME).map(|u| u.given_back).filter(|&g| g >= n)
    })
    .await;
    waited.unwrap_or_else(|e| panic!("{e}"))
}

async fn job_without_local_handler_is_given_back_without_a_retry(queue: JobQueue) {
    let old = worker(&queue, old_build(), config("old-build", Duration::from_secs(600))).start();
    let id = queue.enqueue(NAME, json!(null)).max_retries(1).await.expect("enqueue");
    given_back(&queue, 3).await;
    let job = queue.get_job(id).await.expect("get").expect("the job");
    assert_eq!((job.retry_count, job.error.as_deref()), (0, None), "{job:?}");
    assert!(matches!(job.status, JobStatus::Pending | JobStatus::Running), "{job:?}");
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.counters.failed, s.counters.retried, s.dead_letter), (0, 0, 0));
    assert_eq!(old.worker().stats().jobs_processed, 0, "a give-back is not a processed job");

    // The new build comes up: it runs the job, which has all its retries.
    let new = worker(&queue, new_build(), config("new-build", Duration::from_secs(600))).start();
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Completed).await;
    assert_eq!((job.retry_count, job.result), (0, Some(json!("resized"))));
    old.stop().await.expect("stop");
    new.stop().await.expect("stop");
}

async fn job_no_live_worker_handles_goes_dead_after_configured_time(queue: JobQueue) {
    let dead_after = Duration::from_millis(400);
    let old = worker(&queue, old_build(), config("old-build", dead_after)).start();
    let started = Instant::now();
    let id = queue.enqueue(NAME, json!(null)).max_retries(3).await.expect("enqueue");
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Failed).await;
    let took = started.elapsed();
    assert!(took >= dead_after, "dead after {took:?}, before {dead_after:?}");
    assert_eq!(
        job.error.as_deref(),
        Some(r#"no live worker has a handler for "unhandled_resize""#)
    );
    assert_eq!(job.retry_count, 0);
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.counters.retried), (1, 0));
    let u = s.unhandled.get(NAME).expect("counted");
    assert!(u.given_back >= 2 && u.no_live_worker_since.is_some(), "{u:?}");
    old.stop().await.expect("stop");
}

async fn a_live_worker_with_the_handler_keeps_the_job_from_the_dead_letter_queue(queue: JobQueue) {
    // A worker of the new build is live (it heartbeats, listing the handler) but takes no
    // jobs yet: the old build keeps giving the job back, well past `dead_after`.
    let backend = queue.backend().clone();
    let beat = Heartbeat {
        worker_id: "new-build-starting".into(),
        info: json!({ "handlers": [NAME] }),
        leases: Vec::new(),
        lease: Duration::from_secs(5),
        grace: Duration::ZERO,
    };
    let beats = tokio::spawn(async move {
        loop {
            let _ = backend.heartbeat(&beat).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dead_after = Duration::from_millis(300);
    let old = worker(&queue, old_build(), config("old-build", dead_after)).start();
    let id = queue.enqueue(NAME, json!(null)).await.expect("enqueue");
    given_back(&queue, 2).await;
    tokio::time::sleep(dead_after * 2).await;
    let job = queue.get_job(id).await.expect("get").expect("the job");
    assert_ne!(job.status, JobStatus::Failed, "{job:?}");
    let s = queue.stats().await.expect("stats");
    assert_eq!(s.unhandled.get(NAME).and_then(|u| u.no_live_worker_since), None);

    // It never comes up: once its entry is no longer live, the job dies `dead_after` later.
    beats.abort();
    let gone = Instant::now();
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Failed).await;
    assert!(gone.elapsed() >= dead_after, "dead {:?} after the last heartbeat", gone.elapsed());
    assert_eq!(job.retry_count, 0);
    old.stop().await.expect("stop");
}

async fn memory() -> JobQueue {
    JobQueue::new(MemoryBackend::new(BackendConfig::default()))
}

async fn redis() -> JobQueue {
    JobQueue::new(redis_backend(&unique_namespace("unhandled"), BackendConfig::default()).await)
}

async fn cluster() -> JobQueue {
    JobQueue::new(cluster_backend(&unique_namespace("unhandled"), BackendConfig::default()).await)
}

macro_rules! every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::memory().await).await } )* }
        mod on_redis { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::redis().await).await } )* }
        mod on_cluster { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::cluster().await).await } )* }
    };
}

every_backend!(
    job_without_local_handler_is_given_back_without_a_retry,
    job_no_live_worker_handles_goes_dead_after_configured_time,
    a_live_worker_with_the_handler_keeps_the_job_from_the_dead_letter_queue,
);
