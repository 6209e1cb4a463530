//! Crash and fault behaviour, for real: a runner process killed with SIGKILL mid-job, Redis
//! restarted under load, and 10,000 jobs of which a third fail, some panic, some time out.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{
    AckOutcome, Backend, BackendConfig, CancelOutcome, Completion, DueSchedules, FailOutcome,
    Failure, FetchRequest, Fetched, FireOutcome, Heartbeat, HeartbeatReply, Lease, ReapOptions,
    ReapReport, ScheduleEntry, ScheduleFire, StoredSchedule, ThroughputBucket, UpsertOutcome,
    WorkerEntry,
};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{
    EnqueueOutcome, Job, JobId, JobStatus, NewJob, QueueStats, Registry, RetryPolicy, State,
};
use jobs_test_support::{
    RedisServer, cluster_backend, redis_backend, unique_namespace, wait_for_job, wait_until,
};
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
            queues: Vec::new(),
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

// ---------------------------------------------------------------------------------------
// Self-fencing on a timer, and a handler that blocks its thread.
// ---------------------------------------------------------------------------------------

/// A backend that delegates to a real one, except that its heartbeat hangs while `hang` is
/// set (as a call stuck reconnecting, or waiting for a reply that never comes, does). It
/// notes when the last heartbeat that got an answer was sent.
struct HangingHeartbeat {
    inner: Arc<dyn Backend>,
    hang: tokio::sync::watch::Sender<bool>,
    last_answered_sent: std::sync::Mutex<Option<Instant>>,
}

impl HangingHeartbeat {
    fn new(inner: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(HangingHeartbeat {
            inner,
            hang: tokio::sync::watch::channel(false).0,
            last_answered_sent: std::sync::Mutex::new(None),
        })
    }

    fn set_hang(&self, hang: bool) {
        self.hang.send_replace(hang);
    }

    fn last_answered_sent(&self) -> Option<Instant> {
        *self.last_answered_sent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Backend for HangingHeartbeat {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn enqueue(&self, jobs: &[NewJob]) -> jobs_core::Result<Vec<EnqueueOutcome>> {
        self.inner.enqueue(jobs).await
    }
    async fn fetch(&self, req: &FetchRequest) -> jobs_core::Result<Fetched> {
        self.inner.fetch(req).await
    }
    async fn wait_for(&self, max: Duration, queues: &[String]) -> jobs_core::Result<()> {
        self.inner.wait_for(max, queues).await
    }
    async fn progress(
        &self,
        update: &jobs_core::backend::ProgressUpdate,
    ) -> jobs_core::Result<bool> {
        self.inner.progress(update).await
    }
    async fn heartbeat(&self, beat: &Heartbeat) -> jobs_core::Result<HeartbeatReply> {
        let sent = Instant::now();
        let mut hang = self.hang.subscribe();
        // Hangs for as long as the flag is set (released at the end of the test so that
        // the worker's final heartbeat can go out).
        let _ = hang.wait_for(|h| !*h).await;
        let reply = self.inner.heartbeat(beat).await?;
        let mut last = self.last_answered_sent.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(last.map_or(sent, |l| l.max(sent)));
        Ok(reply)
    }
    async fn complete(&self, items: &[Completion]) -> jobs_core::Result<Vec<AckOutcome>> {
        self.inner.complete(items).await
    }
    async fn fail(&self, failure: &Failure) -> jobs_core::Result<FailOutcome> {
        self.inner.fail(failure).await
    }
    async fn give_back(
        &self,
        give: &jobs_core::backend::GiveBack,
    ) -> jobs_core::Result<jobs_core::backend::GiveBackOutcome> {
        self.inner.give_back(give).await
    }
    async fn release(&self, leases: &[Lease]) -> jobs_core::Result<u64> {
        self.inner.release(leases).await
    }
    async fn throttle(
        &self,
        lease: &Lease,
        delay: Duration,
    ) -> jobs_core::Result<jobs_core::backend::ThrottleOutcome> {
        self.inner.throttle(lease, delay).await
    }
    async fn limits(&self, max: usize) -> jobs_core::Result<Vec<jobs_core::LimiterUsage>> {
        self.inner.limits(max).await
    }
    async fn reap(&self, opts: &ReapOptions) -> jobs_core::Result<ReapReport> {
        self.inner.reap(opts).await
    }
    async fn cancel(&self, id: JobId) -> jobs_core::Result<CancelOutcome> {
        self.inner.cancel(id).await
    }
    async fn get_job(&self, id: JobId) -> jobs_core::Result<Option<Job>> {
        self.inner.get_job(id).await
    }
    async fn list_pending(
        &self,
        priority: Option<JobPriority>,
        limit: usize,
    ) -> jobs_core::Result<Vec<Job>> {
        self.inner.list_pending(priority, limit).await
    }
    async fn list_jobs(
        &self,
        req: &jobs_core::backend::ListRequest,
    ) -> jobs_core::Result<jobs_core::backend::JobPage> {
        self.inner.list_jobs(req).await
    }
    async fn list_dead(&self, offset: usize, limit: usize) -> jobs_core::Result<Vec<Job>> {
        self.inner.list_dead(offset, limit).await
    }
    async fn retry_now(&self, id: JobId) -> jobs_core::Result<()> {
        self.inner.retry_now(id).await
    }
    async fn retry_dead(&self, id: JobId) -> jobs_core::Result<()> {
        self.inner.retry_dead(id).await
    }
    async fn clear_dead(&self) -> jobs_core::Result<u64> {
        self.inner.clear_dead().await
    }
    async fn delete(&self, id: JobId) -> jobs_core::Result<()> {
        self.inner.delete(id).await
    }
    async fn stats(&self) -> jobs_core::Result<QueueStats> {
        self.inner.stats().await
    }
    async fn queues(&self) -> jobs_core::Result<Vec<jobs_core::QueueInfo>> {
        self.inner.queues().await
    }
    async fn pause_queue(&self, name: &str, paused: bool) -> jobs_core::Result<bool> {
        self.inner.pause_queue(name, paused).await
    }
    async fn purge(&self, limit: usize) -> jobs_core::Result<u64> {
        self.inner.purge(limit).await
    }
    async fn list_workers(&self, ttl: Duration) -> jobs_core::Result<Vec<WorkerEntry>> {
        self.inner.list_workers(ttl).await
    }
    async fn throughput(&self) -> jobs_core::Result<Vec<ThroughputBucket>> {
        self.inner.throughput().await
    }
    async fn time(&self) -> jobs_core::Result<DateTime<Utc>> {
        self.inner.time().await
    }
    async fn schedule_upsert(
        &self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first_next: Option<DateTime<Utc>>,
    ) -> jobs_core::Result<UpsertOutcome> {
        self.inner.schedule_upsert(entry, hash, enabled, first_next).await
    }
    async fn schedule_set_enabled(
        &self,
        name: &str,
        enabled: bool,
        first_next: Option<DateTime<Utc>>,
    ) -> jobs_core::Result<StoredSchedule> {
        self.inner.schedule_set_enabled(name, enabled, first_next).await
    }
    async fn schedule_remove(&self, name: &str) -> jobs_core::Result<bool> {
        self.inner.schedule_remove(name).await
    }
    async fn schedule_get(&self, name: &str) -> jobs_core::Result<Option<StoredSchedule>> {
        self.inner.schedule_get(name).await
    }
    async fn schedule_list(&self) -> jobs_core::Result<Vec<StoredSchedule>> {
        self.inner.schedule_list().await
    }
    async fn schedule_due(&self, limit: usize) -> jobs_core::Result<DueSchedules> {
        self.inner.schedule_due(limit).await
    }
    async fn schedule_fire(&self, fire: &ScheduleFire) -> jobs_core::Result<FireOutcome> {
        self.inner.schedule_fire(fire).await
    }
}

/// One run of a job's handler: when it started and when it stopped (returned, or was
/// aborted: recorded on drop).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: Instant,
    stop: Option<Instant>,
}

/// Every run of every `rel_fence_probe` job, by id.
static RUNS: std::sync::Mutex<Option<HashMap<JobId, Vec<Run>>>> = std::sync::Mutex::new(None);

fn runs_of(id: JobId) -> Vec<Run> {
    let g = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().and_then(|m| m.get(&id).cloned()).unwrap_or_default()
}

/// Marks the run stopped when dropped: on return, and when the task is aborted.
struct RunGuard {
    id: JobId,
    index: usize,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut g = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) =
            g.as_mut().and_then(|m| m.get_mut(&self.id)).and_then(|r| r.get_mut(self.index))
        {
            run.stop = Some(Instant::now());
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    ignore_cancel: bool,
}

/// The first attempt runs until it is stopped (at most 30 s): when its token is cancelled,
/// or, with `ignore_cancel`, only when its task is aborted. Later attempts return at once.
#[job_handler("rel_fence_probe")]
async fn fence_probe(args: Probe, ctx: JobContext) -> Result<(), JobError> {
    let index = {
        let mut g = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let runs = g.get_or_insert_with(HashMap::new).entry(ctx.job_id()).or_default();
        runs.push(Run { start: Instant::now(), stop: None });
        runs.len() - 1
    };
    let _guard = RunGuard { id: ctx.job_id(), index };
    if ctx.attempt() == 1 {
        let long = tokio::time::sleep(Duration::from_secs(30));
        if args.ignore_cancel {
            long.await;
        } else {
            tokio::select! {
                _ = long => {}
                _ = ctx.cancelled() => {}
            }
        }
    }
    Ok(())
}

fn short_lease_config(lease: Duration, reap: bool) -> WorkerConfig {
    WorkerConfig {
        max_concurrent_jobs: 4,
        poll_interval: Duration::from_millis(200),
        lease,
        heartbeat_interval: lease / 4,
        grace: Duration::from_millis(200),
        reap,
        reap_options: ReapOptions {
            interval: Duration::from_millis(100),
            ..ReapOptions::default()
        },
        retry: RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(40)),
        shutdown_grace: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

fn worker_on(queue: JobQueue, cfg: WorkerConfig) -> JobWorker {
    let registry = Arc::new(Registry::global().expect("registry").clone());
    JobWorker::with_registry(queue, registry, Arc::new(State::new()), cfg).expect("worker")
}

/// The backends of these tests: memory, a Redis server, a Redis Cluster (each run gets a
/// namespace of its own on the shared ones).
#[derive(Clone, Copy, Debug)]
enum On {
    Memory,
    Redis,
    Cluster,
}

impl On {
    async fn backend(self) -> Arc<dyn Backend> {
        self.backend_and_config().await.0
    }

    /// The backend, and on Redis its configuration (for a second connection).
    async fn backend_and_config(self) -> (Arc<dyn Backend>, Option<RedisConfig>) {
        let ns = unique_namespace("reliability");
        let redis = |b: RedisBackend| {
            let cfg = b.config().clone();
            (Arc::new(b) as Arc<dyn Backend>, Some(cfg))
        };
        match self {
            On::Memory => (Arc::new(MemoryBackend::new(BackendConfig::default())), None),
            On::Redis => redis(redis_backend(&ns, BackendConfig::default()).await),
            On::Cluster => redis(cluster_backend(&ns, BackendConfig::default()).await),
        }
    }
}

// regression: the worker fenced itself only when a heartbeat call *returned* an error, so a
// call that hung (reconnecting, waiting for a lost reply) let the handler run on past the
// moment another worker reaped the job and started it again: two runs at once.
async fn hung_heartbeat_fences_before_takeover(on: On) {
    let backend = on.backend().await;
    let hanging = HangingHeartbeat::new(backend.clone());
    let lease = Duration::from_secs(2);
    let first = worker_on(
        JobQueue::from_backend(hanging.clone()),
        WorkerConfig { worker_id: "fence-first".into(), ..short_lease_config(lease, false) },
    );
    let queue = JobQueue::from_backend(backend);
    let running_first = first.start();
    // One handler that watches its token, one that ignores it (stopped by the abort).
    let mut ids = Vec::new();
    for ignore_cancel in [false, true] {
        let args = json!({ "ignore_cancel": ignore_cancel });
        ids.push(queue.enqueue("rel_fence_probe", args).await.expect("enqueue"));
    }
    wait_until("the first runs to start", Duration::from_secs(10), || async {
        ids.iter().all(|id| !runs_of(*id).is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let started = ids.iter().map(|id| runs_of(*id)[0].start).max().expect("two jobs");
    wait_until("a heartbeat answered after the starts", Duration::from_secs(10), || async {
        hanging.last_answered_sent().filter(|t| *t > started)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    hanging.set_hang(true);
    let hung_at = Instant::now();
    // Another process, reaping with the same short lease.
    let second = worker_on(
        queue.clone(),
        WorkerConfig { worker_id: "fence-second".into(), ..short_lease_config(lease, true) },
    );
    let running_second = second.start();
    wait_until("the second runs to start", Duration::from_secs(20), || async {
        ids.iter().all(|id| runs_of(*id).len() >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let last_good = hanging.last_answered_sent().expect("an answered heartbeat");
    for (id, how) in ids.iter().zip(["watches its token", "ignores its token"]) {
        let runs = runs_of(*id);
        let (one, two) = (runs[0], runs[1]);
        let stopped = one.stop.unwrap_or_else(|| {
            panic!(
                "the first run (handler {how}) was still running when the second started \
                 ({:?} after the last answered heartbeat was sent): the hung heartbeat did not \
                 fence it",
                two.start - last_good
            )
        });
        assert!(
            stopped < two.start,
            "the first run (handler {how}) stopped {:?} after the second started",
            stopped - two.start
        );
        eprintln!(
            "fence ({on:?}, lease {lease:?}, handler {how}): first run stopped {:?} after the \
             last answered heartbeat was sent ({:?} after the heartbeat hung); the second run \
             started {:?} after it",
            stopped - last_good,
            stopped.saturating_duration_since(hung_at),
            two.start - last_good,
        );
        // The second delivery completes the job; the first, fenced, reported nothing.
        let job = wait_for_job(&queue, *id, Duration::from_secs(10), |j| {
            j.status == JobStatus::Completed
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((job.attempt, job.retry_count), (2, 0), "{job:?}");
    }
    // Either worker may have fetched the second deliveries; only those have outcomes.
    let processed = first.stats().jobs_processed + second.stats().jobs_processed;
    assert_eq!(processed, 2, "a fenced run records no outcome");
    hanging.set_hang(false);
    running_second.stop().await.expect("stop");
    running_first.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_heartbeat_fences_before_takeover_on_memory() {
    hung_heartbeat_fences_before_takeover(On::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_heartbeat_fences_before_takeover_on_redis() {
    hung_heartbeat_fences_before_takeover(On::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_heartbeat_fences_before_takeover_on_cluster() {
    hung_heartbeat_fences_before_takeover(On::Cluster).await;
}

/// Blocks its thread (as a CPU loop or blocking I/O does) for `ms`.
#[job_handler("rel_block_thread")]
async fn blocks_its_thread(args: Ms) -> Result<(), JobError> {
    std::thread::sleep(Duration::from_millis(args.ms));
    Ok(())
}

/// Another process reaping the backend from a thread (and a runtime) of its own, every
/// 50 ms, so that lapsed leases are taken back whatever the test's runtime is doing.
struct Reaper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reaper {
    /// `backend` is used as it is on memory; on Redis the reaper opens its own connection
    /// with the same configuration (`redis`), on its own runtime.
    fn start(backend: Arc<dyn Backend>, redis: Option<RedisConfig>, grace: Duration) -> Reaper {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("reaper runtime");
            rt.block_on(async move {
                let backend: Arc<dyn Backend> = match redis {
                    Some(cfg) => Arc::new(RedisBackend::connect(cfg).await.expect("connect")),
                    None => backend,
                };
                let opts =
                    ReapOptions { interval: Duration::ZERO, grace, ..ReapOptions::default() };
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = backend.reap(&opts).await {
                        eprintln!("reap failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        });
        Reaper { stop, thread: Some(thread) }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// regression: the heartbeat, acknowledgement and reap loops ran as tasks on the caller's
// runtime, so a handler that blocked its thread (here the runtime's only worker thread)
// stopped the heartbeats of every other job: their leases lapsed, another process took them
// back (counted as stalls) and ran them again.
async fn blocking_handler_does_not_starve_leases(on: On) {
    let (backend, redis) = on.backend_and_config().await;
    let lease = Duration::from_secs(1);
    let cfg = short_lease_config(lease, true);
    let _reaper = Reaper::start(backend.clone(), redis, cfg.grace);
    let queue = JobQueue::from_backend(backend);
    let worker = worker_on(queue.clone(), cfg);
    let running = worker.start();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(queue.enqueue("rel_work", json!({ "ms": 1000 })).await.expect("enqueue"));
    }
    for id in &ids {
        wait_for_job(&queue, *id, Duration::from_secs(10), |j| j.status == JobStatus::Running)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Two lease periods with the runtime's only worker thread blocked.
    let blocker = queue
        .enqueue("rel_block_thread", json!({ "ms": 2 * lease.as_millis() as u64 }))
        .await
        .expect("enqueue");
    ids.push(blocker);
    for id in &ids {
        let job = wait_for_job(&queue, *id, Duration::from_secs(30), |j| {
            j.status == JobStatus::Completed
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(job.attempt, 1, "job {id} was delivered again: {job:?}");
    }
    let s = queue.stats().await.expect("stats");
    assert_eq!(s.counters.stalled, 0, "leases lapsed while a handler blocked its thread");
    assert_eq!(s.counters.completed, 4);
    let w = worker.stats();
    assert_eq!((w.jobs_processed, w.jobs_succeeded), (4, 4));
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_handler_does_not_starve_leases_on_memory() {
    blocking_handler_does_not_starve_leases(On::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_handler_does_not_starve_leases_on_redis() {
    blocking_handler_does_not_starve_leases(On::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_handler_does_not_starve_leases_on_cluster() {
    blocking_handler_does_not_starve_leases(On::Cluster).await;
}
