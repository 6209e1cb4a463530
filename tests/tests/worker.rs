//! Workers and pools against every backend (memory, Redis, Redis Cluster): results,
//! failures, panics, timeouts, cancel, graceful shutdown, and two pools racing on one queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{Backend, BackendConfig};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig, WorkerPool};
use jobs_core::{Job, JobId, JobStatus, Registry, RetryPolicy, State};
use jobs_test_support::{cluster_backend, redis_backend, unique_namespace, wait_for_job};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    n: u32,
}

#[job_handler("test_echo")]
async fn echo(args: Echo) -> Result<serde_json::Value, JobError> {
    Ok(json!({ "n": args.n }))
}

#[job_handler("test_fail")]
async fn always_fails() -> Result<(), JobError> {
    Err(JobError::msg("boom"))
}

#[job_handler("test_permanent")]
async fn fails_for_good() -> Result<(), JobError> {
    Err(JobError::permanent_msg("bad input"))
}

#[job_handler("test_panic")]
async fn panics() -> Result<(), JobError> {
    panic!("handler exploded")
}

#[derive(Debug, Serialize, Deserialize)]
struct Sleep {
    ms: u64,
}

/// Sleeps, but stops early (with an error) when the job is cancelled.
#[job_handler("test_sleep")]
async fn sleepy(args: Sleep, ctx: JobContext) -> Result<(), JobError> {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(args.ms)) => Ok(()),
        _ = ctx.cancelled() => Err(JobError::msg("cancelled")),
    }
}

/// Every start of every job, by id: what the race test counts.
static STARTS: Mutex<Option<HashMap<JobId, Vec<u32>>>> = Mutex::new(None);

#[job_handler("test_count")]
async fn counted(_args: serde_json::Value, ctx: JobContext) -> Result<(), JobError> {
    let mut g = STARTS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new).entry(ctx.job_id()).or_default().push(ctx.attempt());
    Ok(())
}

/// What the handlers of the cancel tests report, to the test that enqueued their job.
#[derive(Debug)]
enum Probe {
    /// The handler is running.
    Started,
    /// The handler saw its token cancelled and returned.
    Stopped(Instant),
    /// The handler's future was dropped before it finished (its task was aborted).
    Dropped(Instant),
}

type ProbeTx = tokio::sync::mpsc::UnboundedSender<Probe>;

/// Each cancel test's job id → where its handler reports.
static PROBES: Mutex<Option<HashMap<JobId, ProbeTx>>> = Mutex::new(None);

fn probe_of(id: JobId) -> Option<ProbeTx> {
    PROBES.lock().unwrap_or_else(|e| e.into_inner()).as_ref()?.get(&id).cloned()
}

fn report(tx: &Option<ProbeTx>, p: Probe) {
    if let Some(tx) = tx {
        let _ = tx.send(p);
    }
}

/// Reports `Dropped` unless disarmed: what an aborted handler leaves behind.
struct DropProbe(Option<ProbeTx>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Probe::Dropped(Instant::now()));
        }
    }
}

/// Waits for its token, then stops with an error, as a well-behaved handler does.
#[job_handler("test_cancel_watch")]
async fn cancel_watcher(_args: serde_json::Value, ctx: JobContext) -> Result<(), JobError> {
    let tx = probe_of(ctx.job_id());
    report(&tx, Probe::Started);
    ctx.cancelled().await;
    report(&tx, Probe::Stopped(Instant::now()));
    Err(JobError::msg("cancelled"))
}

/// Waits for its token, then returns Ok all the same.
#[job_handler("test_cancel_ok")]
async fn cancel_then_ok(_args: serde_json::Value, ctx: JobContext) -> Result<String, JobError> {
    let tx = probe_of(ctx.job_id());
    report(&tx, Probe::Started);
    ctx.cancelled().await;
    report(&tx, Probe::Stopped(Instant::now()));
    Ok("finished anyway".into())
}

/// Ignores its token: sleeps for a minute unless its task is aborted.
#[job_handler("test_cancel_ignore")]
async fn cancel_ignorer(_args: serde_json::Value, ctx: JobContext) -> Result<(), JobError> {
    let tx = probe_of(ctx.job_id());
    report(&tx, Probe::Started);
    let mut guard = DropProbe(tx);
    tokio::time::sleep(Duration::from_secs(60)).await;
    guard.0 = None;
    Ok(())
}

/// Enqueues a `name` job whose handler reports to the returned receiver.
async fn probed(
    queue: &JobQueue,
    name: &str,
) -> (JobId, tokio::sync::mpsc::UnboundedReceiver<Probe>) {
    let job = queue.new_job(name, json!({}));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    PROBES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(job.id, tx);
    let id = queue.enqueue_job(job).await.expect("enqueue");
    (id, rx)
}

/// The next report of a probed handler, within `limit`.
async fn next_probe(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Probe>,
    limit: Duration,
    what: &str,
) -> Probe {
    match tokio::time::timeout(limit, rx.recv()).await {
        Ok(Some(p)) => p,
        Ok(None) => panic!("probe channel closed while waiting for {what}"),
        Err(_) => panic!("no {what} within {limit:?}"),
    }
}

/// Waits (bounded) until the job is finished; returns it.
async fn finished(queue: &JobQueue, id: JobId) -> Job {
    wait_for(queue, id, |j| {
        matches!(j.status, JobStatus::Completed | JobStatus::Cancelled | JobStatus::Failed)
    })
    .await
}

/// The cancel tests' `cancel_grace`.
const CANCEL_GRACE: Duration = Duration::from_millis(300);

/// Heartbeats far too slow to deliver a cancel within the cancel tests' bounds: what
/// stops the job there must be the backend's prompt notice.
fn slow_beats(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(10),
        cancel_grace: CANCEL_GRACE,
        ..config(concurrency)
    }
}

fn config(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        max_concurrent_jobs: concurrency,
        poll_interval: Duration::from_millis(500),
        lease: Duration::from_secs(5),
        grace: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(100),
        retry: RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(80)),
        shutdown_grace: Duration::from_millis(200),
        unhandled_dead_after: Duration::from_millis(300),
        unhandled_delay: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

fn registry() -> Arc<Registry> {
    Arc::new(Registry::global().expect("handlers register").clone())
}

fn worker(queue: &JobQueue, cfg: WorkerConfig) -> JobWorker {
    JobWorker::with_registry(queue.clone(), registry(), Arc::new(State::new()), cfg)
        .expect("valid worker config")
}

/// Waits (bounded) until the job satisfies `done`; returns it.
async fn wait_for(queue: &JobQueue, id: JobId, done: impl Fn(&Job) -> bool) -> Job {
    let waited = wait_for_job(queue, id, Duration::from_secs(10), done).await;
    waited.unwrap_or_else(|e| panic!("{e}"))
}

async fn memory() -> JobQueue {
    JobQueue::new(MemoryBackend::new(BackendConfig::default()))
}

async fn redis() -> JobQueue {
    JobQueue::new(redis_backend(&unique_namespace("worker"), BackendConfig::default()).await)
}

/// The Redis backend on the shared three-master Redis Cluster.
async fn cluster() -> JobQueue {
    JobQueue::new(cluster_backend(&unique_namespace("worker"), BackendConfig::default()).await)
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::memory().await).await } )* }
        mod on_redis { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::redis().await).await } )* }
        mod on_cluster { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::cluster().await).await } )* }
    };
}

both!(
    runs_jobs_and_records_results,
    failures_retry_then_dead_letter,
    panics_and_timeouts_are_failures,
    cancel_running_job_stops_it,
    graceful_stop_releases_running_jobs,
    two_pools_never_run_a_job_twice,
    cancel_reaches_a_watching_handler_at_once,
    cancel_aborts_a_handler_that_ignores_it,
    cancel_wins_over_a_handler_that_returns_ok,
    a_worker_serves_only_its_queues,
    a_rate_limited_job_comes_back_without_a_retry_and_holds_its_key,
);

#[derive(Debug, Serialize, Deserialize)]
struct Exchange {
    exchange: String,
    /// Told to slow down on its first attempt.
    slow_down: bool,
}

/// Told to slow down (`slow_down`) on its first attempt: sends the job back for 300 ms.
#[job_handler("test_rate_limited", rate_limit(max = 100, per = "1s", by = [exchange]))]
async fn rate_limited(args: Exchange, ctx: JobContext) -> Result<serde_json::Value, JobError> {
    if args.slow_down && ctx.attempt() == 1 {
        return Err(ctx.rate_limited(Duration::from_millis(300)));
    }
    Ok(json!({ "exchange": args.exchange, "attempt": ctx.attempt() }))
}

// `ctx.rate_limited`: the job goes back without using a retry, and while the hold lasts no
// job of its key starts (the other one waits too); both run once it is over.
async fn a_rate_limited_job_comes_back_without_a_retry_and_holds_its_key(queue: JobQueue) {
    let running = worker(&queue, config(2)).start();
    let args = |slow_down| json!({ "exchange": "xnys", "slow_down": slow_down });
    let first = queue.enqueue("test_rate_limited", args(true)).await.expect("enqueue");
    let held = wait_for(&queue, first, |j| j.attempt == 1 && j.status == JobStatus::Pending).await;
    let started = held.started_at.expect("it started");
    let second = queue.enqueue("test_rate_limited", args(false)).await.expect("enqueue");
    for id in [first, second] {
        let job = wait_for(&queue, id, |j| j.status == JobStatus::Completed).await;
        assert_eq!(job.retry_count, 0, "no retry used");
        assert!(job.error.is_none(), "a throttle is not a failure: {:?}", job.error);
        let at = job.started_at.expect("started");
        assert!(
            at >= started + chrono::TimeDelta::milliseconds(300),
            "{id} started at {at}, within the hold from {started}"
        );
    }
    assert_eq!(queue.get_job(first).await.expect("get").expect("exists").attempt, 2);
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.counters.throttled, s.counters.failed, s.parked), (1, 0, 0));
    running.stop().await.expect("stop");
}

#[job_handler("test_settle", queue = "payments")]
async fn settle(args: Echo) -> Result<serde_json::Value, JobError> {
    Ok(json!({ "settled": args.n }))
}

// A worker of `payments` alone runs the jobs of the handler that names it (the queue comes
// from its declaration) and of an enqueue that names it, and leaves the default queue's
// jobs where they are; a worker with the default selection serves every linked queue.
async fn a_worker_serves_only_its_queues(queue: JobQueue) {
    let only = WorkerConfig {
        queues: Some(jobs_core::QueueSelection::strict(["payments"]).expect("valid")),
        ..config(2)
    };
    let running = worker(&queue, only).start();
    // Ready before the payments jobs: a fetch that ran them passed this one by.
    let plain = queue.enqueue("test_echo", json!({ "n": 3 })).await.expect("enqueue");
    let settled = queue.enqueue("test_settle", json!({ "n": 1 })).await.expect("enqueue");
    let named =
        queue.enqueue("test_echo", json!({ "n": 2 })).queue("payments").await.expect("enqueue");
    for id in [settled, named] {
        let job = wait_for(&queue, id, |j| j.status == JobStatus::Completed).await;
        assert_eq!(job.queue, "payments");
    }
    let job = queue.get_job(plain).await.expect("get").expect("exists");
    assert_eq!((job.status, job.queue.as_str()), (JobStatus::Pending, "default"));
    running.stop().await.expect("stop");
    // The default selection: every queue the registry's handlers name (here both).
    let all = worker(&queue, config(2)).start();
    wait_for(&queue, plain, |j| j.status == JobStatus::Completed).await;
    all.stop().await.expect("stop");
}

async fn runs_jobs_and_records_results(queue: JobQueue) {
    let w = worker(&queue, config(4));
    let running = w.start();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(queue.enqueue("test_echo", json!({ "n": n })).await.expect("enqueue"));
    }
    for (n, id) in ids.iter().enumerate() {
        let job = wait_for(&queue, *id, |j| j.status == JobStatus::Completed).await;
        assert_eq!(job.result, Some(json!({ "n": n })));
        assert_eq!(job.attempt, 1);
        assert!(job.started_at.is_some() && job.completed_at.is_some());
    }
    let stats = w.stats();
    assert_eq!((stats.jobs_processed, stats.jobs_succeeded, stats.jobs_failed), (20, 20, 0));
    assert_eq!(stats.success_rate, 100.0);
    running.stop().await.expect("stop");
    let q = queue.stats().await.expect("stats");
    assert_eq!(q.counters.completed, 20);
    assert_eq!(q.total_pending + q.processing, 0);
}

async fn failures_retry_then_dead_letter(queue: JobQueue) {
    let running = worker(&queue, config(2)).start();
    let id = queue.enqueue("test_fail", json!(null)).max_retries(2).await.expect("enqueue");
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Failed).await;
    assert_eq!(job.retry_count, 2);
    assert_eq!(job.attempt, 3);
    assert_eq!(job.error.as_deref(), Some("boom"));
    let dead = queue.get_dead_letter_jobs(10).await.expect("dlq");
    assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);

    // A permanent error skips the retries.
    let id = queue.enqueue("test_permanent", json!(null)).max_retries(5).await.expect("enqueue");
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Failed).await;
    assert_eq!((job.retry_count, job.attempt), (0, 1));

    // A job no live worker handles is dead-lettered with a clear error (after
    // `unhandled_dead_after`, without using its retries) instead of disappearing.
    let id = queue.enqueue("no_such_handler", json!({})).max_retries(2).await.expect("enqueue");
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Failed).await;
    let error = r#"no live worker has a handler for "no_such_handler""#;
    assert_eq!((job.error.as_deref(), job.retry_count), (Some(error), 0), "{job:?}");
    running.stop().await.expect("stop");
    let s = queue.stats().await.expect("stats");
    assert_eq!(s.dead_letter, 3);
    assert_eq!(s.counters.retried, 2);
    assert_eq!(s.counters.failed, 5);
}

async fn panics_and_timeouts_are_failures(queue: JobQueue) {
    let w = worker(&queue, config(2));
    let running = w.start();
    let p = queue.enqueue("test_panic", json!(null)).max_retries(0).await.expect("enqueue");
    let t = queue
        .enqueue("test_sleep", json!({ "ms": 10_000 }))
        .timeout(Duration::from_millis(100))
        .max_retries(0)
        .await
        .expect("enqueue");
    let job = wait_for(&queue, p, |j| j.status == JobStatus::Failed).await;
    assert!(job.error.as_deref().unwrap_or("").contains("handler exploded"), "{job:?}");
    let job = wait_for(&queue, t, |j| j.status == JobStatus::Failed).await;
    assert!(job.error.as_deref().unwrap_or("").starts_with("timeout"), "{job:?}");
    // The worker survived both and still runs jobs.
    let ok = queue.enqueue("test_echo", json!({ "n": 7 })).await.expect("enqueue");
    wait_for(&queue, ok, |j| j.status == JobStatus::Completed).await;
    let s = w.stats();
    assert_eq!((s.jobs_processed, s.jobs_failed), (3, 2));
    running.stop().await.expect("stop");
}

async fn cancel_running_job_stops_it(queue: JobQueue) {
    let running = worker(&queue, config(1)).start();
    let id = queue.enqueue("test_sleep", json!({ "ms": 30_000 })).await.expect("enqueue");
    wait_for(&queue, id, |j| j.status == JobStatus::Running).await;
    let out = queue.cancel_job(id).await.expect("cancel");
    assert_eq!(out, jobs_core::backend::CancelOutcome::Requested);
    // The backend's cancel notice (or the heartbeat) tells the worker; the handler stops;
    // the job is cancelled.
    let job = wait_for(&queue, id, |j| j.status == JobStatus::Cancelled).await;
    assert_eq!(job.attempt, 1, "a cancelled job is not retried");
    running.stop().await.expect("stop");
}

async fn graceful_stop_releases_running_jobs(queue: JobQueue) {
    let running = worker(&queue, config(2)).start();
    let a = queue.enqueue("test_sleep", json!({ "ms": 60_000 })).await.expect("enqueue");
    let b = queue.enqueue("test_sleep", json!({ "ms": 60_000 })).await.expect("enqueue");
    wait_for(&queue, a, |j| j.status == JobStatus::Running).await;
    wait_for(&queue, b, |j| j.status == JobStatus::Running).await;
    let t = Instant::now();
    running.stop().await.expect("stop");
    // Released at once (shutdown grace 200 ms), not after the 5 s lease.
    assert!(t.elapsed() < Duration::from_secs(4), "stop took {:?}", t.elapsed());
    for id in [a, b] {
        let job = queue.get_job(id).await.expect("get").expect("exists");
        assert_eq!(job.status, JobStatus::Pending, "{job:?}");
        assert_eq!(job.retry_count, 0, "a release does not use a retry");
    }
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.total_pending, s.processing), (2, 0));
}

async fn two_pools_never_run_a_job_twice(queue: JobQueue) {
    // Two pools in two "processes" (separate worker sets on one backend).
    let backend: Arc<dyn Backend> = queue.backend().clone();
    let other = JobQueue::from_backend(backend);
    let mk = |q: &JobQueue, name: &str| {
        WorkerPool::new(
            q.clone(),
            registry(),
            Arc::new(State::new()),
            2,
            8,
            WorkerConfig { worker_id: name.into(), ..config(8) },
        )
        .expect("pool")
    };
    let p1 = mk(&queue, "pool-a").start();
    let p2 = mk(&other, "pool-b").start();
    let jobs: Vec<_> = (0..500).map(|i| queue.new_job("test_count", json!({ "i": i }))).collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    queue.enqueue_many(&jobs).await.expect("enqueue");
    for id in &ids {
        wait_for(&queue, *id, |j| j.status == JobStatus::Completed).await;
    }
    p1.stop().await.expect("stop");
    p2.stop().await.expect("stop");
    let starts = STARTS.lock().unwrap_or_else(|e| e.into_inner());
    let starts = starts.as_ref().expect("some starts");
    for id in &ids {
        assert_eq!(starts.get(id).map(Vec::as_slice), Some(&[1u32][..]), "job {id}");
    }
}

fn percentile_ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
}

// regression: a running job's cancel reached its handler only at the next heartbeat (up to
// 10 s with the defaults); it must arrive at once, whatever the heartbeat interval.
async fn cancel_reaches_a_watching_handler_at_once(queue: JobQueue) {
    let running = worker(&queue, slow_beats(1)).start();
    let mut latency = Vec::new();
    for _ in 0..50 {
        let (id, mut rx) = probed(&queue, "test_cancel_watch").await;
        let p = next_probe(&mut rx, Duration::from_secs(10), "start").await;
        assert!(matches!(p, Probe::Started), "{p:?}");
        let t = Instant::now();
        let out = queue.cancel_job(id).await.expect("cancel");
        assert_eq!(out, jobs_core::backend::CancelOutcome::Requested);
        match next_probe(&mut rx, Duration::from_secs(2), "stop after the cancel").await {
            Probe::Stopped(at) => latency.push(at.saturating_duration_since(t)),
            other => panic!("expected the handler to stop, got {other:?}"),
        }
        let job = finished(&queue, id).await;
        assert_eq!((job.status, job.attempt), (JobStatus::Cancelled, 1), "{job:?}");
    }
    let (p50, p99) = (percentile_ms(&mut latency, 0.5), percentile_ms(&mut latency, 0.99));
    // The test thread is named after the test, backend included (`on_cluster::…`).
    let on =
        std::thread::current().name().unwrap_or("?").split("::").next().unwrap_or("?").to_owned();
    eprintln!(
        "cancel-to-stopped {on}: p50 {p50:.2} ms, p99 {p99:.2} ms over {} cancels",
        latency.len()
    );
    running.stop().await.expect("stop");
}

// regression: a handler that ignored its token ran to its end (or its timeout), and the
// job then ended `completed`; it must be aborted after `cancel_grace` and end `cancelled`.
async fn cancel_aborts_a_handler_that_ignores_it(queue: JobQueue) {
    let running = worker(&queue, slow_beats(1)).start();
    let (id, mut rx) = probed(&queue, "test_cancel_ignore").await;
    let p = next_probe(&mut rx, Duration::from_secs(10), "start").await;
    assert!(matches!(p, Probe::Started), "{p:?}");
    let t = Instant::now();
    queue.cancel_job(id).await.expect("cancel");
    let aborted_after =
        match next_probe(&mut rx, Duration::from_secs(10), "abort after the cancel").await {
            Probe::Dropped(at) => at.saturating_duration_since(t),
            other => panic!("expected the handler to be aborted, got {other:?}"),
        };
    let job = finished(&queue, id).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert!(
        aborted_after >= CANCEL_GRACE && aborted_after < CANCEL_GRACE + Duration::from_secs(2),
        "aborted {aborted_after:?} after the cancel; the grace is {CANCEL_GRACE:?}"
    );
    assert!(job.error.as_deref().unwrap_or("").contains("did not stop"), "{job:?}");
    // The slot is free again.
    let ok = queue.enqueue("test_echo", json!({ "n": 1 })).await.expect("enqueue");
    wait_for(&queue, ok, |j| j.status == JobStatus::Completed).await;
    running.stop().await.expect("stop");
}

// regression: a handler that returned Ok after its job's cancel was requested made the job
// `completed`; the backend must refuse to complete it and mark it `cancelled`.
async fn cancel_wins_over_a_handler_that_returns_ok(queue: JobQueue) {
    let running = worker(&queue, slow_beats(1)).start();
    let (id, mut rx) = probed(&queue, "test_cancel_ok").await;
    let p = next_probe(&mut rx, Duration::from_secs(10), "start").await;
    assert!(matches!(p, Probe::Started), "{p:?}");
    queue.cancel_job(id).await.expect("cancel");
    // Bounded by the slow heartbeat (10 s) on code that delivers cancels only there.
    let p = next_probe(&mut rx, Duration::from_secs(15), "stop after the cancel").await;
    assert!(matches!(p, Probe::Stopped(_)), "{p:?}");
    let job = finished(&queue, id).await;
    assert_eq!((job.status, &job.result), (JobStatus::Cancelled, &None), "{job:?}");
    let c = queue.stats().await.expect("stats").counters;
    assert_eq!((c.completed, c.cancelled), (0, 1));
    running.stop().await.expect("stop");
}
