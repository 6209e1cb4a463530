//! An idle worker blocks on Redis with the fetch queued behind the wait in one pipeline
//! (`wait_then_fetch`): a wake-up leases the job without a second round trip. These tests
//! hold that path to what the separate wait and fetch did: every job is picked up, whether
//! the wait ends by a wake-up or by the worker's own timer, and a worker stopped while
//! blocked leaves no job leased to nobody.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::backend::BackendConfig;
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Job, JobStatus, Registry, State};
use jobs_test_support::{
    RedisServer, redis_backend, unique_namespace, use_functions, wait_for_command, wait_for_job,
};
use serde_json::json;

#[job_handler("wake_test_ok")]
async fn ok_job() -> Result<(), JobError> {
    Ok(())
}

fn worker(queue: &JobQueue, poll: Duration) -> JobWorker {
    let registry = Arc::new(Registry::global().expect("registry").clone());
    let cfg =
        WorkerConfig { max_concurrent_jobs: 4, poll_interval: poll, ..WorkerConfig::default() };
    JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg).expect("worker")
}

/// Enqueues `n` jobs one at a time, `gap(i)` after the previous one ran, with a worker of
/// poll interval `poll`: each must start within 2 s.
async fn one_at_a_time(queue: &JobQueue, poll: Duration, n: u64, gap: impl Fn(u64) -> Duration) {
    let running = worker(queue, poll).start();
    let completed = |j: &Job| j.status == JobStatus::Completed;
    for i in 0..n {
        tokio::time::sleep(gap(i)).await;
        let t = Instant::now();
        let id = queue.enqueue("wake_test_ok", json!(null)).await.expect("enqueue");
        wait_for_job(queue, id, Duration::from_secs(5), completed)
            .await
            .unwrap_or_else(|e| panic!("job {i} (poll {poll:?}) was not picked up: {e}"));
        assert!(t.elapsed() < Duration::from_secs(2), "job {i} took {:?}", t.elapsed());
    }
    running.stop().await.expect("stop");
}

/// A backend on `server` alone (as the shared test backends are configured).
async fn private_backend(server: &RedisServer) -> jobs_core::backend::redis::RedisBackend {
    use jobs_core::backend::redis::{RedisBackend, RedisConfig};
    let cfg = RedisConfig { use_functions: use_functions(), ..RedisConfig::new(&server.url()) };
    RedisBackend::connect(cfg).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_every_job_woken_or_timed_out() {
    let queue = JobQueue::new(
        redis_backend(&unique_namespace("wake-series"), BackendConfig::default()).await,
    );
    // A 40 ms poll interval: the waits between jobs end by the worker's timer (CLIENT
    // UNBLOCK, then the queued fetch runs) as often as by a wake-up.
    one_at_a_time(&queue, Duration::from_millis(40), 20, |i| {
        Duration::from_millis(10 + (i % 4) * 20)
    })
    .await;
    // With the default 5 s poll interval every pickup below 2 s is a wake-up's.
    one_at_a_time(&queue, Duration::from_secs(5), 5, |_| Duration::from_millis(30)).await;
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.total_pending, s.processing, s.counters.completed), (0, 0, 25), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_while_blocked_leaves_no_job_leased() {
    // A private server: each round waits for the worker's pop to block, seen in CLIENT LIST.
    let server = RedisServer::start();
    let queue = JobQueue::new(private_backend(&server).await);
    // Each round: a blocked worker is stopped while a job is enqueued. The stop ends its
    // wait, the queued fetch runs and may lease the job: it must go back, not sit leased
    // to a stopped worker until the reaper takes it (a stall).
    for round in 0..10u64 {
        let running = worker(&queue, Duration::from_secs(5)).start();
        wait_for_command(&server.url(), "bzpopmin", Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("round {round}: the worker never blocked: {e}"));
        let enqueue = queue.enqueue("wake_test_ok", json!(null));
        let (id, (stopped, took)) = tokio::join!(enqueue, async {
            tokio::time::sleep(Duration::from_micros(round * 150)).await;
            let t = Instant::now();
            (running.stop().await, t.elapsed())
        });
        let id = id.expect("enqueue");
        stopped.expect("stop");
        // The stop ends the wait at once (not when the server's blocking timeout runs out).
        assert!(took < Duration::from_secs(2), "round {round}: the stop took {took:?}");
        let job = queue.get_job(id).await.expect("get").expect("the job exists");
        assert!(
            matches!(job.status, JobStatus::Pending | JobStatus::Completed),
            "round {round}: the job is {:?} after the worker stopped",
            job.status
        );
        let s = queue.stats().await.expect("stats");
        assert_eq!(s.processing, 0, "round {round}: nothing leased: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_wait_returns_what_its_fetch_leased() {
    use jobs_core::backend::{Backend, FetchRequest};
    // A private server: the test waits for its pop to block, seen in CLIENT LIST.
    let server = RedisServer::start();
    let backend = private_backend(&server).await;
    let job = jobs_core::NewJob::new("wake_test_ok", json!(null));
    backend.enqueue(std::slice::from_ref(&job)).await.expect("enqueue");
    // The enqueue's wake-up is taken by a wait of its own: the job is ready, and the next
    // wait blocks.
    backend.wait_for_work(Duration::from_millis(200)).await.expect("wait");
    let stop = tokio_util::sync::CancellationToken::new();
    let req = FetchRequest {
        queues: Vec::new(),
        max: 4,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let t = Instant::now();
    let (fetched, ()) =
        tokio::join!(backend.wait_then_fetch(Duration::from_secs(5), &req, &stop), async {
            wait_for_command(&server.url(), "bzpopmin", Duration::from_secs(5))
                .await
                .expect("the pop blocks");
            stop.cancel();
        });
    let (fetched, _) = fetched.expect("wait then fetch");
    assert!(t.elapsed() < Duration::from_secs(2), "the stop ended the wait: {:?}", t.elapsed());
    // The fetch queued behind the wait ran when the stop ended it: its lease is handed to
    // the caller (the worker releases it), not left to the reaper.
    let got: Vec<_> = fetched.jobs.iter().map(|l| l.job.id).collect();
    assert_eq!(got, [job.id]);
}
