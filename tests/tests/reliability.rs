//! Crash and fault behaviour, for real: a runner process killed with SIGKILL mid-job, Redis
//! restarted under load, and 10,000 jobs of which a third fail, some panic, some time out.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{BackendConfig, FetchRequest};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{JobId, JobStatus, Registry, RetryPolicy, State};
use jobs_test_support::{RedisServer, wait_for_job, wait_until};
use serde_json::json;

fn spawn_runner(server: &RedisServer, ns: &str, starts_key: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_test-worker"))
        .args([
            "run",
            "--concurrency",
            "5",
            "--lease",
            "1",
            "--shutdown-grace",
            "5",
            "--no-scheduler",
            "--no-api",
        ])
        .env("REDIS_URL", server.url())
        .env("JOBS_NAMESPACE", ns)
        .env("TEST_STARTS_KEY", starts_key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the test-worker binary")
}

async fn queue_on(server: &RedisServer, ns: &str) -> JobQueue {
    let cfg = RedisConfig { namespace: ns.into(), ..RedisConfig::new(&server.url()) };
    JobQueue::new(RedisBackend::connect(cfg).await.expect("connect"))
}

async fn count_status(queue: &JobQueue, ids: &[JobId], status: JobStatus) -> Vec<JobId> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(j) = queue.get_job(*id).await.expect("get_job")
            && j.status == status
        {
            out.push(*id);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_loses_nothing_and_duplicates_only_in_flight_jobs() {
    let server = RedisServer::start();
    let ns = "sigkill";
    let starts_key = "test:starts";
    let queue = queue_on(&server, ns).await;
    let jobs: Vec<_> =
        (0..40).map(|_| queue.new_job("reliability_sleep", json!({ "ms": 300 }))).collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    queue.enqueue_many(&jobs).await.expect("enqueue");

    let mut first = spawn_runner(&server, ns, starts_key);
    wait_until("10 jobs completed", Duration::from_secs(30), || async {
        (count_status(&queue, &ids, JobStatus::Completed).await.len() >= 10).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    first.kill().expect("SIGKILL the runner");
    first.wait().expect("reap the killed runner");
    // What was running at the kill: only these may run twice.
    let in_flight: HashSet<JobId> =
        count_status(&queue, &ids, JobStatus::Running).await.into_iter().collect();
    assert!(!in_flight.is_empty(), "the kill should have caught jobs mid-flight");

    let mut second = spawn_runner(&server, ns, starts_key);
    wait_until("every job completed", Duration::from_secs(60), || async {
        (count_status(&queue, &ids, JobStatus::Completed).await.len() == ids.len()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Starts per job, as the handlers recorded them.
    let mut conn = server.connection().expect("connect");
    let starts: HashMap<String, u32> =
        redis::cmd("HGETALL").arg(starts_key).query(&mut conn).expect("starts");
    let mut duplicates = 0;
    for id in &ids {
        let n = starts.get(&id.to_string()).copied().unwrap_or(0);
        assert!(n >= 1, "job {id} never started");
        if n > 1 {
            duplicates += 1;
            assert_eq!(n, 2, "job {id} started {n} times");
            assert!(in_flight.contains(id), "job {id} ran twice but was not in flight at the kill");
        }
    }
    eprintln!(
        "sigkill: {} jobs, {} in flight at the kill, {duplicates} ran twice",
        ids.len(),
        in_flight.len()
    );
    let s = queue.stats().await.expect("stats");
    assert_eq!(s.counters.completed, ids.len() as u64);
    assert_eq!(s.counters.stalled, in_flight.len() as u64);

    // SIGTERM: a clean exit.
    jobs_test_support::sigterm(&second).expect("SIGTERM the runner");
    let status = second.wait().expect("wait");
    assert!(status.success(), "runner exited with {status}");
}

#[derive(Debug, Serialize, Deserialize)]
struct Ms {
    ms: u64,
}

#[job_handler("rel_work")]
async fn rel_work(args: Ms) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(args.ms)).await;
    Ok(())
}

fn test_worker(queue: &JobQueue, concurrency: usize) -> JobWorker {
    let cfg = WorkerConfig {
        max_concurrent_jobs: concurrency,
        poll_interval: Duration::from_millis(500),
        lease: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        grace: Duration::from_millis(500),
        retry: RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(40)),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let registry = Arc::new(Registry::global().expect("registry").clone());
    JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg).expect("worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_finishes_every_kept_job() {
    let mut server = RedisServer::builder().persistent(true).start();
    let queue = queue_on(&server, "restart").await;
    let jobs: Vec<_> = (0..200).map(|_| queue.new_job("rel_work", json!({ "ms": 20 }))).collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    queue.enqueue_many(&jobs).await.expect("enqueue");
    let worker = test_worker(&queue, 5);
    let running = worker.start();
    wait_until("some progress", Duration::from_secs(30), || async {
        queue.stats().await.ok().filter(|s| s.counters.completed >= 20)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    wait_until("every job completed after the restart", Duration::from_secs(60), || async {
        let s = queue.stats().await.ok()?;
        (s.counters.completed >= ids.len() as u64 && s.processing == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let done = count_status(&queue, &ids, JobStatus::Completed).await;
    assert_eq!(done.len(), ids.len(), "every job Redis kept is completed");
    assert!(worker.stats().jobs_processed >= ids.len() as u64);
    running.stop().await.expect("the worker survived the restart and stops cleanly");
    drop(server);
}

/// Where `rel_watch` reports the moment it saw its token cancelled.
static WATCHED: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<Instant>>> =
    std::sync::Mutex::new(None);

#[job_handler("rel_watch")]
async fn rel_watch(ctx: JobContext) -> Result<(), JobError> {
    ctx.cancelled().await;
    if let Some(tx) = WATCHED.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let _ = tx.send(Instant::now());
    }
    Err(JobError::msg("cancelled"))
}

// regression: reconnects must not lose a cancel. A job cancelled while its worker's
// connections are down (Redis restarting) is still stopped as soon as the worker is back,
// long before the next heartbeat would report it (pub/sub would have lost the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_redis_restart_still_stops_the_job_at_once() {
    let mut server = RedisServer::builder().persistent(true).start();
    let queue = queue_on(&server, "restart-cancel").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    *WATCHED.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    let cfg = WorkerConfig {
        lease: Duration::from_secs(90),
        heartbeat_interval: Duration::from_secs(30),
        poll_interval: Duration::from_millis(500),
        ..WorkerConfig::default()
    };
    let registry = Arc::new(Registry::global().expect("registry").clone());
    let running = JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)
        .expect("worker")
        .start();
    let id = queue.enqueue("rel_watch", json!(null)).await.expect("enqueue");
    wait_until("the job running", Duration::from_secs(10), || async {
        let job = queue.get_job(id).await.ok().flatten()?;
        (job.status == JobStatus::Running).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Down: the worker's blocking read fails and it backs off; back up, the cancel is
    // logged while the worker is still reconnecting (or just after: either way it counts).
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let t = Instant::now();
    let cancel =
        wait_until("the cancel accepted after the restart", Duration::from_secs(10), || {
            let queue = queue.clone();
            async move { queue.cancel_job(id).await.ok() }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cancel, jobs_core::backend::CancelOutcome::Requested);
    let stopped = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the handler was not told of the cancel within 10 s"))
        .expect("probe channel open");
    let took = stopped.saturating_duration_since(t);
    eprintln!(
        "a cancel right after a Redis restart reached the handler {took:?} after the restart"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let job =
        wait_for_job(&queue, id, Duration::from_secs(10), |j| j.status == JobStatus::Cancelled)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job.attempt, 1);
    running.stop().await.expect("the worker survived the restart and stops cleanly");
    drop(server);
}

#[derive(Debug, Serialize, Deserialize)]
struct Mixed {
    kind: String,
}

#[job_handler("rel_mixed")]
async fn rel_mixed(args: Mixed) -> Result<(), JobError> {
    match args.kind.as_str() {
        "fail" => Err(JobError::msg("deliberate failure")),
        "panic" => panic!("deliberate panic"),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn ten_thousand_mixed_jobs(queue: JobQueue) {
    let kinds = |i: usize| match i % 300 {
        0 => "panic",
        1 => "hang",
        n if n % 3 == 2 => "fail",
        _ => "ok",
    };
    let n = 10_000;
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let mut j = queue.new_job("rel_mixed", json!({ "kind": kinds(i) }));
            j.max_retries = 1;
            j.timeout = Duration::from_millis(200);
            j
        })
        .collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    for chunk in jobs.chunks(1000) {
        queue.enqueue_many(chunk).await.expect("enqueue");
    }
    let expect_ok = (0..n).filter(|i| kinds(*i) == "ok").count() as u64;
    let expect_dead = n as u64 - expect_ok;

    let worker = test_worker(&queue, 50);
    let running = worker.start();
    wait_until("every job finished", Duration::from_secs(240), || async {
        let s = queue.stats().await.ok()?;
        (s.counters.completed + s.dead_letter >= n as u64).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    running.stop().await.expect("stop");

    let s = queue.stats().await.expect("stats");
    assert_eq!(s.counters.completed, expect_ok);
    assert_eq!(s.dead_letter, expect_dead);
    assert_eq!(s.counters.dead, expect_dead);
    // Every failing job failed twice (one retry each).
    assert_eq!(s.counters.failed, 2 * expect_dead);
    assert_eq!(s.counters.retried, expect_dead);
    assert_eq!((s.total_pending, s.scheduled, s.processing), (0, 0, 0));
    let w = worker.stats();
    assert_eq!(w.jobs_processed, expect_ok + 2 * expect_dead);
    assert_eq!(w.jobs_succeeded, expect_ok);

    // Each dead job carries the error of its kind.
    let dead = queue.get_dead_letter_jobs(n).await.expect("dlq");
    assert_eq!(dead.len() as u64, expect_dead);
    let mut by_error: HashMap<&str, usize> = HashMap::new();
    for j in &dead {
        let e = j.error.as_deref().unwrap_or("");
        let key = if e.contains("deliberate failure") {
            "fail"
        } else if e.contains("deliberate panic") {
            "panic"
        } else if e.starts_with("timeout") {
            "hang"
        } else {
            panic!("unexpected error on {}: {e:?}", j.id)
        };
        *by_error.entry(key).or_default() += 1;
    }
    for kind in ["fail", "panic", "hang"] {
        let expected = (0..n).filter(|i| kinds(*i) == kind).count();
        assert_eq!(by_error.get(kind).copied().unwrap_or(0), expected, "{kind}");
    }
    // And nothing is left to fetch.
    let left = queue
        .fetch(&FetchRequest {
            max: 10,
            worker_id: "check".into(),
            lease: Duration::from_secs(1),
            grace: Duration::ZERO,
        })
        .await
        .expect("fetch");
    assert!(left.jobs.is_empty());
    assert_eq!(ids.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_jobs_on_memory() {
    ten_thousand_mixed_jobs(JobQueue::new(MemoryBackend::new(BackendConfig::default()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_jobs_on_redis() {
    let server = RedisServer::start();
    ten_thousand_mixed_jobs(queue_on(&server, "mixed").await).await;
}
