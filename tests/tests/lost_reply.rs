//! Lost replies: a script call that ran on the server but whose reply never reached the
//! client (a reset, a timeout). The client retries such a call (the cluster client by
//! itself, the backend for a single server) with the same request id, and the retry must
//! have the effect of one call and answer what the first call did: `fetch` the same leases,
//! `enqueue` `Created`, `cancel` `Cancelled`, `retry_dead` `Ok`, `fail` its
//! outcome (not `Stale`), `schedule_remove` true, run-now `Fired`.
//!
//! Each test puts a [`CutProxy`] between the backend and Redis and cuts the reply of the
//! one script call under test. Setup goes straight to Redis, without the proxy. A call that
//! still fails is retried once more by the test, as a caller would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{
    Backend, BackendConfig, CancelOutcome, FailOutcome, Failure, FetchRequest, Fetched,
    FireOutcome, ScheduleEntry, ScheduleFire, StoredJobOptions,
};
use jobs_core::{EnqueueOutcome, JobStatus, MisfirePolicy, NewJob, RetryPolicy, ScheduleType};
use jobs_test_support::{
    CutProxy, RedisCluster, redis_backend, shared, unique_namespace, use_functions,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What every script call sends (`FCALL`, or `EVALSHA` with `JOBS_TEST_SCRIPTS=1`); the
/// proxy cuts the reply of the next one once armed.
fn script_call() -> &'static [u8] {
    if use_functions() { b"FCALL" } else { b"EVALSHA" }
}

/// A backend straight to Redis and one through a proxy, in one namespace.
struct Pair {
    direct: RedisBackend,
    cut: RedisBackend,
    proxy: CutProxy,
    /// Keeps a private cluster alive for the pair's life.
    _cluster: Option<RedisCluster>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn connect(url: &str, ns: &str) -> RedisBackend {
    let cfg = RedisConfig {
        namespace: ns.to_owned(),
        backend: BackendConfig::default(),
        use_functions: use_functions(),
        ..RedisConfig::new(url)
    };
    match RedisBackend::connect(cfg).await {
        Ok(b) => b,
        Err(e) => panic!("connect to {url}: {e}"),
    }
}

impl Pair {
    /// On the shared single server.
    async fn single(prefix: &str) -> Pair {
        let ns = unique_namespace(prefix);
        let proxy = CutProxy::start(loopback(shared().port())).await;
        let cut = connect(&proxy.url(), &ns).await;
        let direct = redis_backend(&ns, BackendConfig::default()).await;
        Pair { direct, cut, proxy, _cluster: None }.warmed(&shared().url()).await
    }

    /// On a private one-master cluster that announces the proxy's port as its own, so that
    /// the cluster client's connections to it (found from the slot map) go through the
    /// proxy too.
    async fn cluster(prefix: &str) -> Pair {
        let ns = unique_namespace(prefix);
        let cluster = RedisCluster::start(1);
        let node = &cluster.nodes()[0];
        let proxy = CutProxy::start(loopback(node.port())).await;
        let mut c = node.connection().unwrap_or_else(|e| panic!("cluster node: {e}"));
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-announce-port")
            .arg(proxy.port())
            .exec(&mut c)
            .unwrap_or_else(|e| panic!("announce the proxy port: {e}"));
        let cut = connect(&proxy.url(), &ns).await;
        assert!(cut.is_cluster(), "the proxied backend must see a cluster");
        let url = node.url();
        let direct = connect(&url, &ns).await;
        Pair { direct, cut, proxy, _cluster: Some(cluster) }.warmed(&url).await
    }

    /// Loads the scripts the tests cut (a cut `NOSCRIPT` answer would cut a call that did
    /// not run), by running each once straight to Redis in a namespace of its own (scripts
    /// are loaded per server, for every namespace; the function library is loaded at
    /// connect).
    async fn warmed(self, direct_url: &str) -> Pair {
        let b = connect(direct_url, &unique_namespace("warm")).await;
        let job = NewJob { max_retries: 0, ..NewJob::new("warm", json!({})) };
        b.enqueue(std::slice::from_ref(&job)).await.unwrap_or_else(|e| panic!("warm-up: {e}"));
        let got = b.fetch(&req(1)).await.unwrap_or_else(|e| panic!("warm-up fetch: {e}"));
        let lease = got.jobs.first().map(|j| j.lease).unwrap_or_else(|| panic!("warm-up fetch"));
        let failure = Failure {
            lease,
            error: "x".into(),
            retryable: false,
            retry: RetryPolicy::default(),
            retry_after: None,
        };
        b.fail(&failure).await.unwrap_or_else(|e| panic!("warm-up fail: {e}"));
        let _ = b.retry_dead(job.id).await;
        let _ = b.cancel(job.id).await;
        let _ = b.schedule_fire(&run_now("none", NewJob::new("x", json!({})))).await;
        let _ = b.schedule_remove("none").await;
        self
    }

    /// Arms the proxy for the next script call.
    fn cut_next_call(&self) {
        self.proxy.cut_reply_to(script_call());
    }

    fn assert_cut(&self, cuts_before: u64) {
        assert_eq!(self.proxy.cuts(), cuts_before + 1, "the proxy must have cut one reply");
    }
}

fn req(max: usize) -> FetchRequest {
    FetchRequest {
        queues: Vec::new(),
        max,
        worker_id: "w".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    }
}

fn run_now(name: &str, job: NewJob) -> ScheduleFire {
    ScheduleFire { name: name.into(), claim: None, job }
}

fn schedule_entry() -> ScheduleEntry {
    ScheduleEntry {
        name: "s".into(),
        job_name: "lost".into(),
        schedule: ScheduleType::Interval { seconds: 3600 },
        args: json!({}),
        priority: None,
        handler_options: StoredJobOptions::default(),
        misfire: MisfirePolicy::Coalesce,
    }
}

fn jobs(n: usize) -> Vec<NewJob> {
    (0..n).map(|i| NewJob::new("lost", json!({ "i": i }))).collect()
}

/// `call`, and once more if it fails (as a caller would retry an error).
macro_rules! with_one_caller_retry {
    ($call:expr) => {
        match $call.await {
            Ok(v) => Ok(v),
            Err(e) => {
                eprintln!("the call failed ({e}); the caller retries it");
                $call.await
            }
        }
    };
}

// ---- item 3: fetch ----------------------------------------------------------------------

async fn lost_fetch_reply(pair: Pair) -> TestResult {
    let created = pair.direct.enqueue(&jobs(3)).await?;
    assert!(created.iter().all(|o| *o == EnqueueOutcome::Created));
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let started = Instant::now();
    let got: Fetched = with_one_caller_retry!(pair.cut.fetch(&req(10)))?;
    let recovered = started.elapsed();
    pair.assert_cut(cuts);
    eprintln!("fetch recovery time after a cut reply: {recovered:?}");
    // The retried call hands out the leases the lost reply carried: every job, first
    // attempt, and nothing is left leased to nobody.
    assert_eq!(got.jobs.len(), 3, "the retried fetch must return the leases of the lost reply");
    assert!(got.jobs.iter().all(|j| j.lease.attempt == 1 && j.job.status == JobStatus::Running));
    assert!(got.jobs.iter().all(|j| j.job.args.get("i").is_some()), "leased jobs carry args");
    let stats = pair.direct.stats().await?;
    assert_eq!(stats.processing, 3);
    // The next, new call leases nothing more.
    assert!(pair.cut.fetch(&req(10)).await?.jobs.is_empty());
    assert_replies_expire(&pair).await
}

/// Every stored reply of the namespace expires, within 4 response timeouts and a second.
async fn assert_replies_expire(pair: &Pair) -> TestResult {
    let mut c = pair.direct.connection();
    let pattern = pair.direct.keys().request("*");
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut c).await?;
    assert!(!keys.is_empty(), "the calls stored their replies under {pattern}");
    let limit = pair.direct.config().response_timeout.as_millis() * 4 + 1000;
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut c).await?;
        assert!(ttl > 0 && i128::from(ttl) <= limit as i128, "{k} expires in {ttl} ms");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fetch_reply_returns_same_leases() -> TestResult {
    lost_fetch_reply(Pair::single("lostfetch").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fetch_reply_returns_same_leases_on_a_cluster() -> TestResult {
    lost_fetch_reply(Pair::cluster("lostfetch").await).await
}

// ---- item 4: every state-changing call --------------------------------------------------

async fn retried_enqueue_many(pair: &Pair) -> TestResult {
    // Ids drawn by `NewJob::new`: a job found under one is this call's own, so the resent
    // call answers `Created` with no stored reply.
    let before = request_keys(pair).await?;
    let batch = jobs(3);
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.enqueue(&batch))?;
    pair.assert_cut(cuts);
    assert_eq!(out, vec![EnqueueOutcome::Created; 3], "jobs this call created are Created");
    assert_eq!(pair.direct.stats().await?.counters.enqueued, 3, "created once");
    assert_eq!(request_keys(pair).await?, before, "drawn ids keep no reply");
    // The same jobs sent again by a new call are still the same three jobs.
    assert_eq!(pair.cut.enqueue(&batch).await?, vec![EnqueueOutcome::Created; 3]);
    assert_eq!(pair.direct.stats().await?.counters.enqueued, 3, "created once");

    // Ids the caller chose are idempotency keys: the call keeps its reply for a resend.
    let chosen: Vec<NewJob> =
        jobs(2).into_iter().map(|j| NewJob { id: jobs_core::JobId::new(), ..j }).collect();
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.enqueue(&chosen))?;
    pair.assert_cut(cuts);
    assert_eq!(out, vec![EnqueueOutcome::Created; 2], "jobs this call created are Created");
    assert_eq!(pair.direct.stats().await?.counters.enqueued, 5, "created once");
    // A real repeat, a new call, finds them.
    assert_eq!(pair.cut.enqueue(&chosen).await?, vec![EnqueueOutcome::Duplicate; 2]);
    assert_replies_expire(pair).await
}

/// A uniqueness lock's answer depends on other jobs (the holder may start or end between two
/// sends), so an enqueue with one keeps its reply even under drawn ids: the resend answers
/// what the first send did.
async fn retried_unique_enqueue(pair: &Pair) -> TestResult {
    let lock = jobs_core::UniqueLock {
        key: "k".into(),
        window: Duration::from_secs(3600),
        until: jobs_core::UniqueUntil::Done,
        on_conflict: jobs_core::OnConflict::Replace,
    };
    let locked =
        |i: i64| NewJob { unique: Some(lock.clone()), ..NewJob::new("lost", json!({ "i": i })) };
    let holder = locked(0);
    pair.direct.enqueue(std::slice::from_ref(&holder)).await?;
    let before = request_keys(pair).await?;
    let dup = locked(1);
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.enqueue(std::slice::from_ref(&dup)))?;
    pair.assert_cut(cuts);
    assert_eq!(out, [EnqueueOutcome::Unique { existing: holder.id, replaced: true }]);
    assert_eq!(request_keys(pair).await?, before + 1, "the call kept its reply");
    assert!(pair.direct.get_job(dup.id).await?.is_none(), "no second job");
    assert_eq!(pair.direct.stats().await?.unique_locks, 1);
    assert_replies_expire(pair).await
}

/// How many stored replies the namespace holds.
async fn request_keys(pair: &Pair) -> Result<usize, redis::RedisError> {
    let mut c = pair.direct.connection();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(pair.direct.keys().request("*")).query_async(&mut c).await?;
    Ok(keys.len())
}

async fn retried_cancel(pair: &Pair) -> TestResult {
    let job = NewJob::new("lost", json!({}));
    pair.direct.enqueue(std::slice::from_ref(&job)).await?;
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.cancel(job.id))?;
    pair.assert_cut(cuts);
    assert_eq!(out, CancelOutcome::Cancelled);
    let j = pair.direct.get_job(job.id).await?.ok_or("the job is gone")?;
    assert_eq!(j.status, JobStatus::Cancelled);
    Ok(())
}

async fn retried_retry_dead(pair: &Pair) -> TestResult {
    // Whatever job is fetched (on a cluster, earlier cases left jobs in the namespace).
    pair.direct.enqueue(&[NewJob::new("lost", json!({}))]).await?;
    let got = pair.direct.fetch(&req(1)).await?;
    let lease = got.jobs.first().ok_or("nothing fetched")?.lease;
    let id = lease.id;
    let failure = Failure {
        lease,
        error: "boom".into(),
        retryable: false,
        retry: RetryPolicy::default(),
        retry_after: None,
    };
    assert_eq!(pair.direct.fail(&failure).await?, FailOutcome::Dead);
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    with_one_caller_retry!(pair.cut.retry_dead(id))?;
    pair.assert_cut(cuts);
    let j = pair.direct.get_job(id).await?.ok_or("the job is gone")?;
    assert_eq!(j.status, JobStatus::Pending);
    assert_eq!(pair.direct.stats().await?.dead_letter, 0);
    Ok(())
}

async fn retried_run_now(pair: &Pair) -> TestResult {
    let entry = schedule_entry();
    pair.direct.schedule_upsert(&entry, "00000000000000aa", Some(false), None).await?;
    let job = NewJob::new("lost", json!({}));
    let fire = run_now("s", job.clone());
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.schedule_fire(&fire))?;
    pair.assert_cut(cuts);
    assert_eq!(out, FireOutcome::Fired, "the run-now call that enqueued answers Fired");
    let s = pair.direct.schedule_get("s").await?.ok_or("the schedule is gone")?;
    assert_eq!((s.state.run_count, s.state.last_job_id), (1, Some(job.id)));
    Ok(())
}

async fn retried_fail(pair: &Pair) -> TestResult {
    pair.direct.enqueue(&[NewJob::new("lost", json!({}))]).await?;
    let got = pair.direct.fetch(&req(1)).await?;
    let lease = got.jobs.first().ok_or("nothing fetched")?.lease;
    let failure = Failure {
        lease,
        error: "boom".into(),
        retryable: true,
        retry: RetryPolicy::default(),
        retry_after: None,
    };
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let out = with_one_caller_retry!(pair.cut.fail(&failure))?;
    pair.assert_cut(cuts);
    assert!(matches!(out, FailOutcome::Retrying { .. }), "the first outcome, not Stale: {out:?}");
    let j = pair.direct.get_job(lease.id).await?.ok_or("the job is gone")?;
    assert_eq!((j.status, j.retry_count), (JobStatus::Retrying, 1), "one failed attempt");
    Ok(())
}

async fn retried_schedule_remove(pair: &Pair) -> TestResult {
    let entry = ScheduleEntry { name: "gone".into(), ..schedule_entry() };
    pair.direct.schedule_upsert(&entry, "00000000000000aa", Some(false), None).await?;
    let cuts = pair.proxy.cuts();
    pair.cut_next_call();
    let removed = with_one_caller_retry!(pair.cut.schedule_remove("gone"))?;
    pair.assert_cut(cuts);
    assert!(removed, "the call that removed the schedule says so");
    assert!(pair.direct.schedule_get("gone").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_fail_reports_the_first_outcome() -> TestResult {
    retried_fail(&Pair::single("retryfail").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_schedule_remove_reports_removed() -> TestResult {
    retried_schedule_remove(&Pair::single("retryremove").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_enqueue_many_reports_created() -> TestResult {
    retried_enqueue_many(&Pair::single("retryenq").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_unique_enqueue_reports_the_first_answer() -> TestResult {
    retried_unique_enqueue(&Pair::single("retryuniq").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_cancel_reports_cancelled() -> TestResult {
    retried_cancel(&Pair::single("retrycancel").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_retry_dead_reports_ok() -> TestResult {
    retried_retry_dead(&Pair::single("retrydead").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_run_now_fires_once() -> TestResult {
    retried_run_now(&Pair::single("retryrunnow").await).await
}

/// The same on a cluster, whose client retries by itself, on one private cluster
/// (each in its own namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_calls_on_a_cluster_report_the_first_outcome() -> TestResult {
    let pair = Pair::cluster("retrycluster").await;
    retried_enqueue_many(&pair).await?;
    retried_cancel(&pair).await?;
    retried_retry_dead(&pair).await?;
    retried_fail(&pair).await?;
    retried_schedule_remove(&pair).await?;
    retried_run_now(&pair).await
}
