//! High availability through Redis Sentinel: a master, a replica and three sentinels
//! (private processes); the master is SIGKILLed, the sentinels promote the replica, and the
//! same backend objects carry on by themselves.
//!
//! Figures go to stdout (`cargo test -p jobs-test-support --test sentinel -- --nocapture`).
//! `JOBS_HA_JOBS` sets the number of jobs of the load tests (default 2,000; the figures in
//! the README are of 20,000). The durable-writes load test runs its jobs in two runner
//! processes (the `test-worker` binary on the `redis+sentinel://` URL), the others in
//! worker pools of this process.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobs_core::backend::ReapOptions;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::prelude::*;
use jobs_core::worker::{RunningPool, WorkerConfig, WorkerPool};
use jobs_core::{Error, JobId, JobStatus, NewJob, Registry, State};
use jobs_test_support::{
    RedisSentinel, RedisServer, unique_namespace, wait_for_command, wait_until,
};
use serde_json::json;

/// How long the sentinels may take to promote the replica.
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);

/// Starts of each job by id: how many, and the Unix milliseconds of the first (the clock
/// the `test-worker` processes record by, so that both kinds of runners compare alike).
type Starts = HashMap<JobId, (u32, u64)>;

/// Unix milliseconds now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts of each job across every worker of this test process.
fn starts() -> &'static Mutex<Starts> {
    static STARTS: std::sync::OnceLock<Mutex<Starts>> = std::sync::OnceLock::new();
    STARTS.get_or_init(Mutex::default)
}

fn started(id: JobId) -> u32 {
    starts().lock().unwrap_or_else(|e| e.into_inner()).get(&id).map_or(0, |s| s.0)
}

#[derive(Debug, Serialize, Deserialize)]
struct Count {
    n: u64,
}

/// Counts its start; finishes at once.
#[job_handler("ha_count")]
async fn ha_count(args: Count, ctx: JobContext) -> Result<u64, JobError> {
    let mut starts = starts().lock().unwrap_or_else(|e| e.into_inner());
    starts.entry(ctx.job_id()).or_insert((0, now_ms())).0 += 1;
    Ok(args.n)
}

async fn connect(url: &str, ns: &str, durable: u32) -> RedisBackend {
    let cfg = RedisConfig { durable_writes: durable, ..RedisConfig::new(url).namespace(ns) };
    match RedisBackend::connect(cfg).await {
        Ok(b) => b,
        Err(e) => panic!("connect to {url}: {e}"),
    }
}

/// A pool of 2 workers × 8 jobs on a backend of its own, with short leases so that jobs
/// whose completion died with the old master are taken back soon.
async fn pool(url: &str, ns: &str, name: &str) -> RunningPool {
    let q = JobQueue::new(connect(url, ns, 0).await);
    let registry = Arc::new(Registry::global().expect("handlers register").clone());
    let lease = Duration::from_secs(2);
    let cfg = WorkerConfig {
        worker_id: format!("{name}-{ns}"),
        poll_interval: Duration::from_secs(1),
        lease,
        heartbeat_interval: lease / 4,
        grace: Duration::from_millis(500),
        reap_options: ReapOptions {
            interval: Duration::from_millis(500),
            grace: Duration::from_millis(500),
            ..ReapOptions::default()
        },
        ..WorkerConfig::default()
    };
    WorkerPool::new(q, registry, Arc::new(State::new()), 2, 8, cfg).expect("pool").start()
}

/// Runs blocking fixture work (process control, synchronous Redis) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_follows_the_master_through_a_failover() {
    let group = Arc::new(Mutex::new(blocking(RedisSentinel::start).await));
    let url = group.lock().expect("group").url();
    let ns = unique_namespace("sentinel");
    let queue = JobQueue::new(connect(&url, &ns, 0).await);
    let running = pool(&url, &ns, "follow").await;

    let before: Vec<NewJob> =
        (0..20).map(|n| queue.new_job("ha_count", json!({ "n": n }))).collect();
    queue.enqueue_many(&before).await.expect("enqueue before the failover");
    let done = wait_until("the first jobs ran", Duration::from_secs(10), || async {
        before.iter().all(|j| started(j.id) > 0).then_some(())
    })
    .await;
    done.expect("jobs run through the sentinels' master");

    let g = group.clone();
    let (old, killed_at) =
        blocking(move || (g.lock().expect("group").kill_master(), Instant::now())).await;
    let g = group.clone();
    let failover =
        blocking(move || g.lock().expect("group").wait_for_failover(old, FAILOVER_LIMIT))
            .await
            .expect("the sentinels promote the replica");

    // The same queue object, no restart: the first enqueue that gets through after the
    // promotion, within a bounded number of tries.
    let mut resumed = None;
    let mut last_err = String::new();
    for _ in 0..100 {
        match queue.enqueue("ha_count", json!({ "n": 100 })).await {
            Ok(id) => {
                resumed = Some((id, killed_at.elapsed()));
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (first, resumed_after) =
        resumed.unwrap_or_else(|| panic!("no enqueue got through after the failover: {last_err}"));
    let after: Vec<NewJob> =
        (0..20).map(|n| queue.new_job("ha_count", json!({ "n": 200 + n }))).collect();
    queue.enqueue_many(&after).await.expect("enqueue after the failover");
    let all_ran =
        wait_until("the jobs after the failover ran", Duration::from_secs(15), || async {
            (started(first) > 0 && after.iter().all(|j| started(j.id) > 0)).then_some(())
        })
        .await;
    all_ran.expect("the same workers run jobs on the new master");
    // Started is not yet completed: the acknowledgement follows the handler's return.
    let completed =
        wait_until("the jobs after the failover completed", Duration::from_secs(15), || async {
            for j in &after {
                let job = queue.get_job(j.id).await.ok().flatten()?;
                if job.status != JobStatus::Completed {
                    return None;
                }
            }
            Some(())
        })
        .await;
    completed.expect("the same workers complete jobs on the new master");
    let new_master = group.lock().expect("group").master_index();
    assert!(new_master.is_some_and(|i| i != old), "master now {new_master:?}, was {old}");
    println!(
        "sentinel failover: promoted {:?} after the kill, enqueues resumed {:?} after it",
        failover, resumed_after
    );
    running.stop().await.expect("stop the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sentinel_urls_and_unknown_masters_are_clear_errors() {
    let err = RedisBackend::connect(RedisConfig::new("redis+sentinel://u:hunter2@127.0.0.1:1"))
        .await
        .expect_err("no master name");
    let msg = err.to_string();
    assert!(matches!(err, Error::Config(_)) && msg.contains("master-name"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    let group = blocking(RedisSentinel::start).await;
    let unknown = group.url().replace(jobs_test_support::MASTER_NAME, "nosuchmaster");
    let started = Instant::now();
    let err = RedisBackend::connect(RedisConfig::new(&unknown)).await.expect_err("unknown master");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_in_the_url_are_the_masters() {
    let group = blocking(|| RedisSentinel::start_with_password("s3cret")).await;
    let ns = unique_namespace("sentinel-auth");
    let queue = JobQueue::new(connect(&group.url(), &ns, 0).await);
    let id = queue.enqueue("ha_count", json!({ "n": 1 })).await.expect("enqueue");
    assert!(queue.get_job(id).await.expect("get_job").is_some());
    let wrong = group.url().replace("s3cret", "wrong");
    let err = RedisBackend::connect(RedisConfig::new(&wrong).namespace(&ns))
        .await
        .expect_err("a wrong password is refused");
    assert!(matches!(err, Error::Connect { .. }) && !err.to_string().contains("wrong"), "{err:?}");
}

/// The number of jobs of the load tests (`JOBS_HA_JOBS`, default 2,000).
fn ha_jobs() -> usize {
    std::env::var("JOBS_HA_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

/// Who runs the jobs of a load test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunnersKind {
    /// Two worker pools in this test process.
    Pools,
    /// Two `test-worker` runner processes.
    Processes,
}

/// The runners of a load test.
enum Runners {
    /// Two pools, each on a backend of its own; starts counted in this process.
    Pools(Vec<RunningPool>),
    /// Two runner processes on the deployment URL; they count starts on a plain server of
    /// their own (`starts`), which the failover does not touch.
    Processes(Processes),
}

/// Runner processes, killed (SIGKILL, by pid) if the test ends before it stops them.
struct Processes {
    children: Vec<Child>,
    starts: RedisServer,
    key: String,
}

impl Processes {
    /// A connection to the starts server, patient enough for a hash of every job of the
    /// test on a busy machine.
    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.starts.url()).expect("the starts server's url");
        let cfg =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .expect("connect to the starts server")
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Runners {
    async fn start(kind: RunnersKind, url: &str, ns: &str, durable: u32) -> Runners {
        match kind {
            RunnersKind::Pools => {
                Runners::Pools(vec![pool(url, ns, "a").await, pool(url, ns, "b").await])
            }
            RunnersKind::Processes => {
                let starts = blocking(RedisServer::start).await;
                let key = format!("{ns}:starts");
                let children = (0..2)
                    .map(|i| {
                        Command::new(env!("CARGO_BIN_EXE_test-worker"))
                            .args(["run", "--concurrency", "8", "--lease", "2"])
                            .args(["--shutdown-grace", "1", "--no-api", "--no-scheduler"])
                            .env("REDIS_URL", url)
                            .env("JOBS_NAMESPACE", ns)
                            .env("JOBS_DURABLE_WRITES", durable.to_string())
                            .env("TEST_STARTS_URL", starts.url())
                            .env("TEST_STARTS_KEY", &key)
                            .env("JOBS_RUNNER_INDEX", i.to_string())
                            .env("RUST_LOG", "error")
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .expect("start the test-worker binary")
                    })
                    .collect();
                Runners::Processes(Processes { children, starts, key })
            }
        }
    }

    /// A job these runners have a handler for.
    fn new_job(&self, q: &JobQueue, n: usize) -> NewJob {
        match self {
            Runners::Pools(_) => q.new_job("ha_count", json!({ "n": n })),
            Runners::Processes(_) => q.new_job("reliability_sleep", json!({ "ms": 0 })),
        }
    }

    /// How many of `acked` have started (a cheap count, read while the jobs run: the
    /// processes' starts server holds only this test's jobs).
    async fn ran(&self, acked: &[JobId]) -> usize {
        match self {
            Runners::Pools(_) => {
                let all = starts().lock().unwrap_or_else(|e| e.into_inner());
                acked.iter().filter(|id| all.contains_key(*id)).count()
            }
            Runners::Processes(p) => {
                let mut c = p.connection().await;
                let n: usize = redis::cmd("HLEN")
                    .arg(&p.key)
                    .query_async(&mut c)
                    .await
                    .expect("count the starts");
                n
            }
        }
    }

    /// Every start so far.
    async fn starts(&self) -> Starts {
        let p = match self {
            Runners::Pools(_) => return starts().lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Runners::Processes(p) => p,
        };
        let mut c = p.connection().await;
        let (counts, firsts): (HashMap<String, u32>, HashMap<String, u64>) = redis::pipe()
            .hgetall(&p.key)
            .hgetall(format!("{}:first", p.key))
            .query_async(&mut c)
            .await
            .expect("read the starts");
        counts
            .into_iter()
            .filter_map(|(id, n)| {
                let first = firsts.get(&id).copied().unwrap_or(0);
                Some((id.parse().ok()?, (n, first)))
            })
            .collect()
    }

    async fn stop(self) {
        match self {
            Runners::Pools(pools) => {
                for p in pools {
                    p.stop().await.expect("stop a pool");
                }
            }
            Runners::Processes(mut p) => {
                let children = std::mem::take(&mut p.children);
                let statuses = blocking(move || {
                    children
                        .into_iter()
                        .map(|mut c| {
                            jobs_test_support::sigterm(&c).expect("SIGTERM a runner");
                            c.wait().expect("wait for a runner")
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                for s in statuses {
                    assert!(s.success(), "a runner process did not stop cleanly: {s}");
                }
            }
        }
    }
}

/// What one run of [`failover_under_load`] saw.
struct LoadReport {
    runners: RunnersKind,
    acknowledged: usize,
    /// Acknowledged jobs that never completed.
    lost: Vec<JobId>,
    /// Jobs that started more than once.
    duplicates: usize,
    /// Of those, the ones that first started outside the switch: more than 2 s (and the
    /// lag) before the kill, or over 1 s after enqueues resumed.
    duplicates_outside: usize,
    /// From the kill to the promotion (as the sentinels report it).
    failover: Duration,
    /// From the kill to the first enqueue acknowledged after it.
    resumed: Duration,
    /// From the kill to the first job that started after the promotion.
    processing_resumed: Duration,
    /// Enqueue calls that failed (and were repeated with the same job ids).
    failed_calls: usize,
    /// From the first enqueue to the queue idle again.
    took: Duration,
}

/// Two runners (see [`RunnersKind`]) run `ha_jobs()` jobs that a producer enqueues in
/// batches of 20, with `durable` replicas confirming each batch; the master is SIGKILLed
/// once half are acknowledged and started again (it comes back as a replica) after the
/// promotion. A failed batch is enqueued again with the same ids (an idempotent retry).
///
/// With `lag`, the replication stream is held back at half-way for that long while
/// enqueues go on, then cut (dropping what was held) and the master killed: a replica that
/// lags that much behind (a slow link, a busy replica) and a master whose machine dies, so
/// that the replication window is wide enough to see.
async fn failover_under_load(durable: u32, lag: Option<Duration>, kind: RunnersKind) -> LoadReport {
    let group = Arc::new(Mutex::new(blocking(RedisSentinel::start).await));
    let url = group.lock().expect("group").url();
    let ns = unique_namespace(if durable > 0 { "ha-durable" } else { "ha-async" });
    let producer = JobQueue::new(connect(&url, &ns, durable).await);
    let runners = Runners::start(kind, &url, &ns, durable).await;
    let n = ha_jobs();
    let mut acked: Vec<JobId> = Vec::with_capacity(n);
    let mut retry: Option<Vec<NewJob>> = None;
    let mut failed_calls = 0;
    let mut killed: Option<(Instant, u64)> = None;
    let mut resumed = None;
    let mut failover_wait = None;
    let mut held_until: Option<Instant> = None;
    let began = Instant::now();
    let deadline = began + Duration::from_secs(60);
    // Until `n` are acknowledged and one enqueue after the kill was (enqueues go on).
    while acked.len() < n || resumed.is_none() {
        assert!(
            Instant::now() < deadline,
            "enqueueing took over 60 s ({} acknowledged)",
            acked.len()
        );
        let batch = retry.take().unwrap_or_else(|| {
            (0..20).map(|i| runners.new_job(&producer, acked.len() + i)).collect()
        });
        match producer.enqueue_many(&batch).await {
            Ok(_) => {
                if let (Some((k, _)), None) = (killed, resumed) {
                    resumed = Some(k.elapsed());
                }
                acked.extend(batch.iter().map(|j| j.id));
            }
            Err(_) => {
                failed_calls += 1;
                retry = Some(batch);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let (Some(lag), None, None) = (lag, held_until, killed)
            && acked.len() >= n / 2
        {
            group.lock().expect("group").hold_replication(true);
            held_until = Some(Instant::now() + lag);
        }
        let lagged = match (lag, held_until) {
            (None, _) => true,
            (Some(_), Some(until)) => Instant::now() >= until,
            (Some(_), None) => false,
        };
        if killed.is_none() && acked.len() >= n / 2 && lagged {
            let g = group.clone();
            let old = blocking(move || {
                let mut g = g.lock().expect("group");
                // What the replica has not got yet dies with the master.
                g.cut_replication();
                g.kill_master()
            })
            .await;
            killed = Some((Instant::now(), now_ms()));
            let g = group.clone();
            // Promotion, then the old master back (the sentinels make it a replica, so that
            // durable writes find their replica again).
            failover_wait = Some(tokio::task::spawn_blocking(move || {
                let took = g.lock().expect("group").wait_for_failover(old, FAILOVER_LIMIT);
                if took.is_ok() {
                    g.lock().expect("group").restart_as_replica(old);
                }
                took
            }));
        }
    }
    let failover = match failover_wait {
        Some(w) => w.await.expect("failover task").expect("the sentinels promote the replica"),
        None => panic!("the master was never killed"),
    };
    let resumed = resumed.unwrap_or_default();

    // Everything acknowledged has run, or nothing more happens for 5 s (a lost job never
    // runs; a job whose completion died with the old master runs again after its lease).
    let limit = Instant::now() + Duration::from_secs(30);
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let ran = runners.ran(&acked).await;
        if ran == acked.len() || since.elapsed() > Duration::from_secs(5) || Instant::now() > limit
        {
            break;
        }
        if ran != seen {
            (seen, since) = (ran, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then until the queue is idle: pending and running jobs settle.
    let idle = wait_until("the queue is idle", Duration::from_secs(15), || async {
        let s = producer.stats().await.ok()?;
        (s.total_pending == 0 && s.processing == 0 && s.retrying == 0).then_some(())
    })
    .await;
    idle.expect("the queue settles after the failover");
    let took = began.elapsed();
    let mut lost = Vec::new();
    for id in &acked {
        let job = producer.get_job(*id).await.expect("get_job");
        if job.is_none_or(|j| j.status != JobStatus::Completed) {
            lost.push(*id);
        }
    }
    let unique: HashSet<JobId> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "every job acknowledged once");
    let all = runners.starts().await;
    let (_, killed_ms) = killed.expect("the master was killed");
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let from = killed_ms.saturating_sub(2_000 + ms(lag.unwrap_or_default()));
    let to = killed_ms + ms(resumed) + 1_000;
    let twice: Vec<u64> =
        acked.iter().filter_map(|id| all.get(id)).filter(|s| s.0 > 1).map(|s| s.1).collect();
    let duplicates_outside = twice.iter().filter(|t| **t < from || **t > to).count();
    // Jobs fetched before the kill start at once; a first start after the promotion is
    // one the runners fetched from the new master.
    let promoted_ms = killed_ms + ms(failover);
    let processing_resumed = all
        .values()
        .map(|s| s.1)
        .filter(|t| *t >= promoted_ms)
        .min()
        .map_or(Duration::MAX, |t| Duration::from_millis(t - killed_ms));
    runners.stop().await;
    LoadReport {
        runners: kind,
        acknowledged: acked.len(),
        lost,
        duplicates: twice.len(),
        duplicates_outside,
        failover,
        resumed,
        processing_resumed,
        failed_calls,
        took,
    }
}

impl std::fmt::Debug for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: {} acknowledged, {} lost, {} run twice ({} of them outside the switch); promoted \
             {:?} after the kill, enqueues acknowledged again {:?} and jobs started again {:?} \
             after it; {} enqueue calls failed and were repeated; {:?} from the first enqueue \
             to an idle queue",
            self.runners,
            self.acknowledged,
            self.lost.len(),
            self.duplicates,
            self.duplicates_outside,
            self.failover,
            self.resumed,
            self.processing_resumed,
            self.failed_calls,
            self.took
        )
    }
}

/// The test: two runner processes (the `test-worker` binary, on the
/// `redis+sentinel://` URL with `JOBS_DURABLE_WRITES=1`), `JOBS_HA_JOBS` jobs (20,000 for
/// the figures in the README), the master SIGKILLed half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durable_writes_two_runner_processes_lose_no_acknowledged_job_in_a_failover() {
    let r = failover_under_load(1, None, RunnersKind::Processes).await;
    println!("durable writes (1 replica): {r:?}");
    assert!(r.lost.is_empty(), "{} acknowledged jobs lost: {r:?}", r.lost.len());
    // Jobs run twice only if they were in flight at the kill (fetched, or completed but
    // not yet acknowledged by the old master): their first start is close to the kill.
    assert_eq!(r.duplicates_outside, 0, "{r:?}");
    // The runners carry on by themselves, without a restart, soon after the promotion.
    assert!(r.processing_resumed <= r.failover + Duration::from_secs(2), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_writes_the_replication_window_can_lose_jobs() {
    let r = failover_under_load(0, None, RunnersKind::Pools).await;
    println!("asynchronous replication: {r:?}");
    assert_eq!(r.duplicates_outside, 0, "{r:?}");
}

/// How long the replica is held behind in the lagging-replica tests.
const LAG: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_loses_acknowledged_jobs_unless_writes_are_durable() {
    let window = failover_under_load(0, Some(LAG), RunnersKind::Pools).await;
    println!("asynchronous replication, replica {LAG:?} behind: {window:?}");
    // What was acknowledged while the replica was frozen is not on the promoted master.
    assert!(!window.lost.is_empty(), "{window:?}");
    assert_eq!(window.duplicates_outside, 0, "{window:?}");

    let durable = failover_under_load(1, Some(LAG), RunnersKind::Pools).await;
    println!("durable writes (1 replica), replica {LAG:?} behind: {durable:?}");
    assert!(durable.lost.is_empty(), "{durable:?}");
    assert_eq!(durable.duplicates_outside, 0, "{durable:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_fail_clearly_without_replicas_and_keep_the_job() {
    let group = blocking(RedisSentinel::start).await;
    let ns = unique_namespace("ha-noreplica");
    // Two replicas asked for, one exists: WAIT times out.
    let cfg = RedisConfig {
        durable_writes: 2,
        durable_timeout: Duration::from_millis(200),
        ..RedisConfig::new(&group.url()).namespace(&ns)
    };
    let queue = JobQueue::new(RedisBackend::connect(cfg).await.expect("connect"));
    let job = queue.new_job("ha_count", json!({ "n": 7 }));
    let err = queue.enqueue_job(job.clone()).await.expect_err("two replicas are not there");
    assert!(
        matches!(err, Error::NotReplicated { wanted: 2, acked: 1, timeout_ms: 200 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("the job is enqueued"), "{err}");
    let stored = queue.get_job(job.id).await.expect("get_job").expect("the job is on the master");
    assert_eq!(stored.status, JobStatus::Pending);

    // The cost of a durable write: one enqueue at a time, with and without WAIT 1.
    let one = RedisConfig { durable_writes: 1, ..RedisConfig::new(&group.url()).namespace(&ns) };
    let durable = JobQueue::new(RedisBackend::connect(one).await.expect("connect"));
    let plain = JobQueue::new(connect(&group.url(), &ns, 0).await);
    let mut per_enqueue = Vec::new();
    for q in [&plain, &durable] {
        let started = Instant::now();
        for n in 0..200 {
            q.enqueue("ha_count", json!({ "n": n })).await.expect("enqueue");
        }
        per_enqueue.push(started.elapsed() / 200);
    }
    println!(
        "enqueue one job: {:?} without, {:?} with durable writes (WAIT 1, loopback)",
        per_enqueue[0], per_enqueue[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_each_tick_once_across_a_failover() {
    use jobs_core::backend::Backend;
    use jobs_core::{ScheduleSpec, Scheduler, SchedulerConfig};

    let group = Arc::new(Mutex::new(blocking(RedisSentinel::start).await));
    let url = group.lock().expect("group").url();
    let ns = unique_namespace("ha-schedule");
    // Two schedulers, ticks confirmed by the replica (durable writes), nothing runs them.
    let mut schedulers = Vec::new();
    for _ in 0..2 {
        schedulers.push(Scheduler::new(
            JobQueue::new(connect(&url, &ns, 1).await),
            Arc::new(Registry::default()),
            SchedulerConfig::default(),
        ));
    }
    let inspect = connect(&url, &ns, 0).await;
    let info = schedulers[0]
        .register(ScheduleSpec::interval("ha_every_second", "ha_tick", 1))
        .await
        .expect("register");
    let first = info.next_run.expect("an interval schedule has a next run");
    for s in &schedulers {
        s.start().expect("start a scheduler");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let g = group.clone();
    let failover = blocking(move || {
        let mut g = g.lock().expect("group");
        let old = g.kill_master();
        let took = g.wait_for_failover(old, FAILOVER_LIMIT);
        if took.is_ok() {
            g.restart_as_replica(old);
        }
        took
    })
    .await
    .expect("the sentinels promote the replica");
    tokio::time::sleep(Duration::from_secs(4)).await;
    for s in &schedulers {
        s.stop().await;
    }
    let end = chrono::Utc::now();

    // The inspecting backend's connection went idle into the failover: its first call
    // fails (the connection is dropped then) and the next goes to the new master.
    let listed = wait_until("the pending ticks are listed", Duration::from_secs(5), || async {
        inspect.list_pending(None, 10_000).await.ok()
    })
    .await;
    let jobs: Vec<_> = listed.expect("list").into_iter().filter(|j| j.name == "ha_tick").collect();
    let mut ticks: Vec<_> = jobs.iter().filter_map(|j| j.scheduled_at).collect();
    ticks.sort();
    let distinct: HashSet<_> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), jobs.len(), "no tick fired twice: {ticks:?}");
    // Ticks are on the schedule's grid; the switch leaves at most one gap, no longer than
    // the failover and the scheduler's next wake-up.
    let span = (end - first).num_seconds();
    let gaps: Vec<i64> = ticks.windows(2).map(|w| (w[1] - w[0]).num_seconds()).collect();
    let long: Vec<_> = gaps.iter().filter(|g| **g > 1).collect();
    assert!(ticks.first().is_some_and(|t| *t == first), "the first tick fired: {ticks:?}");
    assert!(long.len() <= 1, "one gap at most: {gaps:?}");
    let allowance = failover.as_secs() as i64 + 3;
    assert!(long.iter().all(|g| **g <= allowance), "gap within {allowance} s: {gaps:?}");
    println!(
        "1 s schedule across a failover ({failover:?}): {} ticks over {span} s, gaps {gaps:?}",
        ticks.len()
    );
}

/// A durable write's `WAIT` holds the connection it is sent on until the replicas answer or
/// `durable_timeout` passes. On a server without the replicas asked for, every durable
/// enqueue waits the whole timeout; the process's other calls (here `stats`, in a worker
/// its fetches and heartbeats) must not wait behind it on the shared connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_durable_write_does_not_hold_up_the_other_calls() {
    let server = RedisServer::start();
    let ns = unique_namespace("durable-wait");
    let cfg = RedisConfig {
        durable_writes: 1,
        durable_timeout: Duration::from_millis(1500),
        ..RedisConfig::new(&server.url()).namespace(&ns)
    };
    let queue = JobQueue::new(RedisBackend::connect(cfg).await.expect("connect"));
    let q = queue.clone();
    let durable = tokio::spawn(async move {
        let started = Instant::now();
        let r = q.enqueue_job(q.new_job("ha_count", json!({ "n": 1 }))).await;
        (r, started.elapsed())
    });
    // Until the durable enqueue's WAIT is blocked on the server.
    wait_for_command(&server.url(), "wait", Duration::from_secs(5)).await.expect("WAIT in flight");
    let started = Instant::now();
    let stats = queue.stats().await.expect("stats");
    let took = started.elapsed();
    let (r, durable_took) = durable.await.expect("the durable enqueue's task");
    assert!(matches!(r, Err(Error::NotReplicated { wanted: 1, acked: 0, .. })), "{r:?}");
    assert!(durable_took >= Duration::from_millis(1400), "WAIT waited {durable_took:?}");
    assert_eq!(stats.total_pending, 1, "the durable write is on the master");
    println!("stats during a waiting durable write: {took:?} (the write waited {durable_took:?})");
    assert!(took < Duration::from_millis(800), "stats waited {took:?} behind the WAIT");
}
