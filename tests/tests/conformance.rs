//! The backend conformance suite: every behaviour of the [`Backend`] contract (see the
//! module docs of `jobs_core::backend`), written once and run against both backends.
//!
//! Each case is an `async fn(Kind) -> TestResult` below; [`conformance!`] turns the list of
//! cases into `memory::<case>`, `redis::<case>` and `cluster::<case>` tests (the last on a
//! three-master Redis Cluster). Redis tests share one private
//! `redis-server` per test binary, each test in its own namespace.
//!
//! Timing: backends decide due times and leases on their own clock, which is this machine's
//! clock for both (Redis `TIME` on loopback), so times are checked against windows read
//! with `Utc::now()` around each call, with a small tolerance for millisecond rounding.
//! Every wait is bounded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{
    AckOutcome, Backend, BackendConfig, CancelOutcome, Completion, ERR_TIMEOUT, ERR_WORKER_LOST,
    FailOutcome, Failure, FetchRequest, Fetched, Heartbeat, Lease, LeasedJob, MAX_ERROR_LEN,
    ReapOptions, ReapReport, truncate_error,
};
use jobs_core::{
    EnqueueOutcome, Error, Job, JobId, JobPriority, JobQueue, JobStatus, NewJob, PendingByPriority,
    QueueCounters, QueueStats, RetryPolicy, RunAt,
};
use jobs_test_support::{cluster_backend, redis_backend, unique_namespace};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// Generates one `#[tokio::test]` per case and backend: `memory::`, `redis::`, `cluster::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    super::$case(super::Kind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    super::$case(super::Kind::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    super::$case(super::Kind::Cluster).await
                }
            )*
        }
    };
}

conformance!(
    throughput_counts_completions_and_failures_per_minute,
    enqueue_writes_every_field,
    fetch_serves_priorities_strictly_and_fifo_within_each,
    fetch_batches_keep_the_same_order,
    list_pending_follows_fetch_order_and_limit,
    run_at_in_the_past_or_zero_delay_is_ready_at_once,
    delayed_job_is_not_fetched_before_it_is_due,
    wait_for_work_wakes_for_new_and_due_work,
    promoted_jobs_join_the_tail_delayed_before_retrying,
    cancel_removes_waiting_jobs_for_good,
    cancel_running_job_is_requested_then_cancelled_by_fail,
    complete_wins_over_a_cancel_request,
    cancel_finished_or_unknown_jobs_is_an_error,
    retry_backoff_follows_the_policy_then_dead_letters,
    error_messages_are_cut_to_the_limit,
    dead_letter_retry_and_clear,
    dead_letter_queue_keeps_the_newest_dead_max,
    dead_letter_entries_expire_after_dead_ttl,
    expired_lease_is_reaped_to_the_head_and_the_old_ack_is_stale,
    late_fail_from_an_old_lease_is_stale,
    reaped_jobs_go_to_the_head_latest_deadline_first,
    reap_cancels_a_lost_job_that_was_asked_to_cancel,
    reap_runs_at_most_once_per_interval,
    heartbeat_extends_the_lease_and_reports_lost_leases,
    poison_pill_takes_the_fail_path_after_max_stalls,
    timeout_reap_fails_a_job_past_its_timeout,
    release_puts_jobs_back_at_the_head_in_the_given_order,
    stats_stay_exact_through_a_mixed_sequence,
    enqueue_many_is_all_or_nothing,
    enqueue_reports_duplicates_and_writes_one_record,
    enqueue_many_handles_two_thousand_jobs,
    completed_job_keeps_its_result_and_drops_its_args,
    finished_records_are_purged_after_result_ttl,
    complete_purges_expired_records_in_passing,
    unknown_ids_are_none_not_found_or_stale,
    two_fetchers_never_get_the_same_job,
    workers_are_listed_after_heartbeat_and_forgotten_after_ttl,
);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Which backend a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Redis,
    /// The Redis backend on a three-master Redis Cluster.
    Cluster,
}

/// A fresh backend (an empty in-memory one, or a new Redis namespace) and a queue over it.
struct Env {
    kind: Kind,
    ns: String,
    cfg: BackendConfig,
    b: Arc<dyn Backend>,
    q: JobQueue,
}

/// A long lease, for tests that do not exercise expiry.
const LEASE: Duration = Duration::from_secs(60);
/// Tolerance for comparing a backend's (millisecond) timestamps with local clock windows.
const TOL: TimeDelta = TimeDelta::milliseconds(10);
/// Retry policy for failures whose retry must not come back during the test.
const HOUR: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn late_retry() -> RetryPolicy {
    RetryPolicy::exponential(HOUR, HOUR)
}

fn pending(critical: u64, high: u64, normal: u64, low: u64) -> PendingByPriority {
    PendingByPriority { critical, high, normal, low }
}

/// Asserts `t` lies in `[lo - TOL, hi + TOL]`.
#[track_caller]
fn assert_within(what: &str, t: DateTime<Utc>, lo: DateTime<Utc>, hi: DateTime<Utc>) {
    assert!(
        t >= lo - TOL && t <= hi + TOL,
        "{what}: {t} is not within [{lo}, {hi}] (± {} ms)",
        TOL.num_milliseconds()
    );
}

#[track_caller]
fn assert_stale(err: Error, id: JobId, attempt: u32) {
    assert!(
        matches!(err, Error::StaleLease { id: i, attempt: a } if i == id && a == attempt),
        "expected StaleLease {{ {id}, {attempt} }}, got {err:?}"
    );
}

#[track_caller]
fn assert_invalid_state(err: Error, id: JobId, status: JobStatus, op: &str) {
    assert!(
        matches!(&err, Error::InvalidState { id: i, status: s, op: o } if *i == id && *s == status && *o == op),
        "expected InvalidState {{ {id}, {status}, {op} }}, got {err:?}"
    );
}

#[track_caller]
fn assert_not_found(err: Error, id: JobId) {
    assert!(
        matches!(err, Error::NotFound { id: i } if i == id),
        "expected NotFound {{ {id} }}, got {err:?}"
    );
}

fn new_job(name: &str, priority: JobPriority) -> NewJob {
    NewJob { priority, ..NewJob::new(name, json!({ "job": name })) }
}

fn fetch_req(max: usize, lease: Duration) -> FetchRequest {
    FetchRequest { max, worker_id: "worker-1".into(), lease, grace: Duration::ZERO }
}

fn reap_now() -> ReapOptions {
    ReapOptions {
        interval: Duration::ZERO,
        grace: Duration::ZERO,
        limit: 100,
        max_stalls: 2,
        retry: late_retry(),
        worker_ttl: HOUR,
    }
}

fn failure(lease: Lease, error: &str, retryable: bool, retry: RetryPolicy) -> Failure {
    Failure { lease, error: error.into(), retryable, retry }
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

fn leased_ids(f: &Fetched) -> Vec<JobId> {
    f.jobs.iter().map(|l| l.job.id).collect()
}

impl Env {
    async fn open(kind: Kind) -> Env {
        Self::with_config(kind, BackendConfig::default()).await
    }

    async fn with_config(kind: Kind, cfg: BackendConfig) -> Env {
        let ns = unique_namespace("conformance");
        let b: Arc<dyn Backend> = match kind {
            Kind::Memory => Arc::new(MemoryBackend::new(cfg)),
            Kind::Redis => Arc::new(redis_backend(&ns, cfg).await),
            Kind::Cluster => Arc::new(cluster_backend(&ns, cfg).await),
        };
        let q = JobQueue::from_backend(b.clone());
        Env { kind, ns, cfg, b, q }
    }

    /// Another client of the same jobs: for Redis a second connection on the namespace,
    /// for memory the same backend.
    async fn peer(&self) -> Arc<dyn Backend> {
        match self.kind {
            Kind::Memory => self.b.clone(),
            Kind::Redis => Arc::new(redis_backend(&self.ns, self.cfg).await),
            Kind::Cluster => Arc::new(cluster_backend(&self.ns, self.cfg).await),
        }
    }

    /// Enqueues one job (through the queue) and returns its id.
    async fn add(&self, name: &str, priority: JobPriority) -> jobs_core::Result<JobId> {
        self.q.enqueue(name, json!({ "job": name })).priority(priority).await
    }

    async fn add_job(&self, job: NewJob) -> jobs_core::Result<JobId> {
        let id = job.id;
        let out = self.b.enqueue(std::slice::from_ref(&job)).await?;
        assert_eq!(out, [EnqueueOutcome::Created], "enqueue of {}", job.name);
        Ok(id)
    }

    async fn fetch(&self, max: usize) -> jobs_core::Result<Fetched> {
        self.b.fetch(&fetch_req(max, LEASE)).await
    }

    /// Fetches exactly one job, which must be `id`.
    async fn take(&self, id: JobId, lease: Duration) -> Result<LeasedJob, String> {
        let f = self.b.fetch(&fetch_req(1, lease)).await.map_err(|e| e.to_string())?;
        match f.jobs.as_slice() {
            [one] if one.job.id == id => Ok(one.clone()),
            other => Err(format!(
                "expected to fetch {id}, got {:?}",
                other.iter().map(|l| l.job.id).collect::<Vec<_>>()
            )),
        }
    }

    async fn job(&self, id: JobId) -> Result<Job, String> {
        match self.b.get_job(id).await {
            Ok(Some(j)) => Ok(j),
            Ok(None) => Err(format!("job {id} not found")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn stats(&self) -> jobs_core::Result<QueueStats> {
        self.b.stats().await
    }

    async fn fail(&self, f: Failure) -> jobs_core::Result<FailOutcome> {
        self.b.fail(&f).await
    }

    async fn complete(&self, lease: Lease, result: Value) -> jobs_core::Result<AckOutcome> {
        let out = self.b.complete(&[Completion { lease, result }]).await?;
        assert_eq!(out.len(), 1, "one outcome per completion");
        Ok(out[0])
    }

    async fn reap(&self, opts: ReapOptions) -> jobs_core::Result<ReapReport> {
        self.b.reap(&opts).await
    }

    /// Fetches until `id` comes (bounded by `within`), sleeping with `wait_for_work` and
    /// `next_due_in` in between. Returns the delivery and the local time right after the
    /// fetch that returned it. Asserts that a job with a due time is not fetched before it.
    async fn fetch_when_due(
        &self,
        id: JobId,
        within: Duration,
    ) -> Result<(LeasedJob, DateTime<Utc>), BoxError> {
        let deadline = Instant::now() + within;
        for _ in 0..10_000 {
            let f = self.fetch(1).await?;
            let fetched_at = Utc::now();
            if let Some(l) = f.jobs.first() {
                if l.job.id != id {
                    return Err(format!("fetched {} while waiting for {id}", l.job.id).into());
                }
                if let Some(due) = l.job.scheduled_at {
                    assert!(
                        fetched_at >= due - TOL,
                        "job fetched at {fetched_at}, before it was due at {due}"
                    );
                }
                return Ok((l.clone(), fetched_at));
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = f.next_due_in.unwrap_or(ms(50)).min(ms(200)).min(deadline - now);
            let started = Instant::now();
            self.b.wait_for_work(wait).await?;
            // Spurious wake-ups are allowed; don't spin on them.
            if started.elapsed() < ms(1) {
                tokio::time::sleep(ms(2)).await;
            }
        }
        Err(format!("job {id} was not fetched within {within:?}").into())
    }
}

// ---------------------------------------------------------------------------------------
// Enqueue and fetch order
// ---------------------------------------------------------------------------------------

async fn enqueue_writes_every_field(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let new = NewJob {
        priority: JobPriority::High,
        max_retries: 7,
        timeout: Duration::from_secs(45),
        user_id: Some("user-123".into()),
        ..NewJob::new("sync_portfolio", json!({ "user_id": "user-123", "n": [1, 2] }))
    };
    let before = Utc::now();
    env.add_job(new.clone()).await?;
    let after = Utc::now();
    let job = env.job(new.id).await?;
    assert_within("created_at", job.created_at, before, after);
    let expected = Job {
        id: new.id,
        name: "sync_portfolio".into(),
        args: new.args.clone(),
        status: JobStatus::Pending,
        priority: JobPriority::High,
        created_at: job.created_at,
        scheduled_at: None,
        started_at: None,
        completed_at: None,
        error: None,
        result: None,
        retry_count: 0,
        max_retries: 7,
        timeout: Duration::from_secs(45),
        user_id: Some("user-123".into()),
        attempt: 0,
    };
    assert_eq!(job, expected);

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 1, 0, 0));
    assert_eq!(stats.counters, QueueCounters { enqueued: 1, ..Default::default() });

    // The fetched copy is the same job, running, with its args and a first lease.
    let before = Utc::now();
    let l = env.take(new.id, LEASE).await?;
    let after = Utc::now();
    assert_eq!(l.lease, Lease { id: new.id, attempt: 1 });
    let started = l.job.started_at.ok_or("started_at not set")?;
    assert_within("started_at", started, before, after);
    assert_eq!(
        l.job,
        Job { status: JobStatus::Running, started_at: Some(started), attempt: 1, ..expected }
    );
    assert_eq!(env.job(new.id).await?.status, JobStatus::Running);
    Ok(())
}

/// Critical, high, normal, low jobs in an interleaved enqueue order, and the order in
/// which they must be fetched.
async fn enqueue_mixed(env: &Env, tag: &str) -> Result<Vec<JobId>, Error> {
    use JobPriority::*;
    let plan =
        [Low, Normal, Critical, High, Low, Critical, Normal, High, Critical, Low, Normal, High];
    let mut enqueued = Vec::new();
    // The first half one call at a time, the second half in one batch (batch order counts).
    for (i, p) in plan[..6].iter().enumerate() {
        enqueued.push((*p, env.add(&format!("{tag}-{i}"), *p).await?));
    }
    let batch: Vec<NewJob> = plan[6..]
        .iter()
        .enumerate()
        .map(|(i, p)| new_job(&format!("{tag}-{}", i + 6), *p))
        .collect();
    let out = env.q.enqueue_many(&batch).await?;
    assert_eq!(out, vec![EnqueueOutcome::Created; batch.len()]);
    enqueued.extend(batch.iter().map(|j| (j.priority, j.id)));
    // A stable sort by priority keeps enqueue order within each priority.
    enqueued.sort_by_key(|(p, _)| *p);
    Ok(enqueued.into_iter().map(|(_, id)| id).collect())
}

async fn fetch_serves_priorities_strictly_and_fifo_within_each(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "order").await?;
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let f = env.fetch(1).await?;
        assert_eq!(f.jobs.len(), 1, "one job per fetch of max 1");
        let l = &f.jobs[0];
        assert_eq!(l.job.status, JobStatus::Running);
        assert_eq!((l.lease.id, l.lease.attempt, l.job.attempt), (l.job.id, 1, 1));
        assert_eq!(l.job.args, json!({ "job": l.job.name }), "fetched jobs carry their args");
        got.push(l.job.id);
    }
    assert_eq!(got, expected);
    let empty = env.fetch(1).await?;
    assert!(empty.jobs.is_empty());
    assert_eq!(empty.next_due_in, None, "nothing delayed: next_due_in is None");
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.processing), (0, 12));
    Ok(())
}

async fn fetch_batches_keep_the_same_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "batch").await?;
    let mut got = Vec::new();
    for _ in 0..10 {
        let f = env.fetch(5).await?;
        if f.jobs.is_empty() {
            break;
        }
        assert!(f.jobs.len() <= 5, "fetch returned more than max");
        got.extend(leased_ids(&f));
    }
    assert_eq!(got, expected);
    Ok(())
}

async fn list_pending_follows_fetch_order_and_limit(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "list").await?;
    let all = env.b.list_pending(None, 100).await?;
    assert_eq!(ids(&all), expected);
    assert!(all.iter().all(|j| j.status == JobStatus::Pending && j.args != Value::Null));
    assert_eq!(ids(&env.b.list_pending(None, 3).await?), expected[..3]);

    let high = env.b.list_pending(Some(JobPriority::High), 100).await?;
    assert_eq!(ids(&high), expected[3..6]);
    assert!(high.iter().all(|j| j.priority == JobPriority::High));
    assert_eq!(ids(&env.b.list_pending(Some(JobPriority::Low), 2).await?), expected[9..11]);

    // Cancelled jobs are not pending; a delayed job is not listed until it is ready.
    env.q.cancel_job(expected[4]).await?;
    env.q.enqueue("later", json!({})).priority(JobPriority::Critical).delay(HOUR).await?;
    let mut rest = expected.clone();
    rest.remove(4);
    assert_eq!(ids(&env.b.list_pending(None, 100).await?), rest);
    assert_eq!(
        ids(&env.q.pending_jobs(Some(JobPriority::High), 100).await?),
        [expected[3], expected[5]]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Delays and waiting
// ---------------------------------------------------------------------------------------

async fn run_at_in_the_past_or_zero_delay_is_ready_at_once(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let past =
        env.q.enqueue("past", json!({})).scheduled_at(Utc::now() - TimeDelta::hours(1)).await?;
    let zero = env.q.enqueue("zero", json!({})).delay(Duration::ZERO).await?;
    let at = DateTime::from_timestamp_millis((Utc::now() + TimeDelta::hours(1)).timestamp_millis())
        .ok_or("timestamp")?;
    let future = env.q.enqueue("future", json!({})).scheduled_at(at).await?;

    assert_eq!(env.job(past).await?.scheduled_at, None);
    assert_eq!(env.job(zero).await?.scheduled_at, None);
    assert_eq!(env.job(future).await?.scheduled_at, Some(at));
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [past, zero]);
    let next = f.next_due_in.ok_or("a delayed job exists: next_due_in must be set")?;
    assert!(next > HOUR - Duration::from_secs(60) && next <= HOUR, "next_due_in {next:?}");
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.processing), (0, 1, 2));
    Ok(())
}

async fn delayed_job_is_not_fetched_before_it_is_due(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let delay = ms(300);
    let t0 = Utc::now();
    let id = env.q.enqueue("delayed", json!({ "x": 1 })).delay(delay).await?;
    let t1 = Utc::now();

    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Pending);
    let due = job.scheduled_at.ok_or("a delayed job has scheduled_at")?;
    assert_within("scheduled_at", due, t0 + td(delay), t1 + td(delay));
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.retrying), (0, 1, 0));
    assert!(env.b.list_pending(None, 10).await?.is_empty(), "a delayed job is not ready");

    let f = env.fetch(1).await?;
    let t2 = Utc::now();
    if t2 < due - TOL {
        assert!(f.jobs.is_empty(), "a delayed job was fetched before it was due");
        let next = f.next_due_in.ok_or("next_due_in must report the delayed job")?;
        let lo = (due - t2 - TOL).to_std().unwrap_or_default();
        assert!(next >= lo && next <= delay, "next_due_in {next:?} not in [{lo:?}, {delay:?}]");
    }

    let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
    assert_eq!(l.job.status, JobStatus::Running);
    assert_eq!(l.job.attempt, 1);
    assert_eq!(l.job.scheduled_at, Some(due), "scheduled_at keeps the due time");
    assert_eq!(l.job.args, json!({ "x": 1 }));
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.processing), (0, 0, 1));
    Ok(())
}

async fn wait_for_work_wakes_for_new_and_due_work(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    assert!(env.fetch(1).await?.jobs.is_empty());

    // Work that became ready after the last fetch ends the wait at once.
    let id = env.add("ready", JobPriority::Normal).await?;
    let started = Instant::now();
    env.b.wait_for_work(Duration::from_secs(5)).await?;
    assert!(started.elapsed() < Duration::from_secs(2), "missed wake-up: work was ready");
    env.take(id, LEASE).await?;

    // An enqueue by another client during the wait ends it.
    let peer = env.peer().await;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(ms(150)).await;
        peer.enqueue(&[NewJob::new("later", json!({}))]).await
    });
    let started = Instant::now();
    env.b.wait_for_work(Duration::from_secs(5)).await?;
    let waited = started.elapsed();
    assert_eq!(producer.await??, [EnqueueOutcome::Created]);
    assert!(waited < Duration::from_secs(2), "an enqueue did not wake the waiter ({waited:?})");
    assert_eq!(env.fetch(10).await?.jobs.len(), 1);

    // A delayed job ends the wait when it is due.
    let delayed = env.q.enqueue("delayed", json!({})).delay(ms(200)).await?;
    let f = env.fetch(1).await?;
    if f.jobs.is_empty() {
        let started = Instant::now();
        env.b.wait_for_work(Duration::from_secs(5)).await?;
        assert!(started.elapsed() < Duration::from_secs(2), "a due job did not wake the waiter");
    }
    env.fetch_when_due(delayed, Duration::from_secs(5)).await?;
    Ok(())
}

async fn promoted_jobs_join_the_tail_delayed_before_retrying(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let retried = env.add("retried", JobPriority::Normal).await?;
    let l = env.take(retried, LEASE).await?;
    let backoff = RetryPolicy::exponential(ms(100), ms(100));
    let out = env.fail(failure(l.lease, "boom", true, backoff)).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    let delayed = env.q.enqueue("delayed", json!({})).delay(ms(100)).await?;
    let ready = env.add("ready", JobPriority::Normal).await?;

    tokio::time::sleep(ms(250)).await;
    // max 0 only promotes.
    let f = env.b.fetch(&fetch_req(0, LEASE)).await?;
    assert!(f.jobs.is_empty(), "fetch with max 0 took jobs");
    assert_eq!(f.next_due_in, None, "nothing is left to promote");
    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 3, 0));
    assert_eq!((stats.scheduled, stats.retrying, stats.processing), (0, 0, 0));
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [ready, delayed, retried]);
    let r = env.job(retried).await?;
    assert_eq!((r.status, r.retry_count), (JobStatus::Pending, 1));
    assert!(r.scheduled_at.is_some(), "a promoted retry keeps its due time");

    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [ready, delayed, retried]);
    assert_eq!(f.jobs[2].lease.attempt, 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

async fn cancel_removes_waiting_jobs_for_good(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let retrying = env.add("retrying", JobPriority::High).await?;
    let l = env.take(retrying, LEASE).await?;
    assert!(matches!(
        env.fail(failure(l.lease, "boom", true, late_retry())).await?,
        FailOutcome::Retrying { .. }
    ));
    let ready = env.add("ready", JobPriority::Low).await?;
    let delayed = env.q.enqueue("delayed", json!({})).delay(HOUR).await?;

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 0, 1));
    assert_eq!((stats.scheduled, stats.retrying, stats.processing), (2, 1, 0));

    for id in [ready, delayed, retrying] {
        let before = Utc::now();
        assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Cancelled);
        let after = Utc::now();
        let job = env.job(id).await?;
        assert_eq!(job.status, JobStatus::Cancelled);
        assert_eq!(job.args, Value::Null, "a cancelled job's args are dropped");
        assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
    }
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            counters: QueueCounters {
                enqueued: 3,
                failed: 1,
                retried: 1,
                cancelled: 3,
                ..Default::default()
            },
            ..Default::default()
        }
    );
    let f = env.fetch(10).await?;
    assert!(f.jobs.is_empty(), "a cancelled job was fetched");
    assert_eq!(f.next_due_in, None, "cancelled delayed/retrying jobs are not due");
    assert!(env.b.list_pending(None, 10).await?.is_empty());
    Ok(())
}

async fn cancel_running_job_is_requested_then_cancelled_by_fail(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("long", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;

    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    assert_eq!(env.job(id).await?.status, JobStatus::Running, "a running job is only flagged");
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested, "asking twice is fine");
    let stats = env.stats().await?;
    assert_eq!((stats.processing, stats.counters.cancelled), (1, 0));

    let beat = Heartbeat {
        worker_id: "worker-1".into(),
        info: json!({}),
        leases: vec![l.lease],
        lease: LEASE,
        grace: Duration::ZERO,
    };
    let reply = env.b.heartbeat(&beat).await?;
    assert_eq!(reply.cancel, [id]);
    assert!(reply.lost.is_empty());

    let out = env.fail(failure(l.lease, "stopped: cancelled", true, late_retry())).await?;
    assert_eq!(out, FailOutcome::Cancelled);
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(job.args, Value::Null);
    assert_eq!(job.retry_count, 0, "a cancelled job is not retried");
    assert_eq!(job.error.as_deref(), Some("stopped: cancelled"));
    assert!(job.completed_at.is_some());
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            counters: QueueCounters { enqueued: 1, cancelled: 1, ..Default::default() },
            ..Default::default()
        }
    );
    assert!(env.fetch(1).await?.jobs.is_empty());
    let err = env.q.cancel_job(id).await.err().ok_or("cancelling a cancelled job must fail")?;
    assert_invalid_state(err, id, JobStatus::Cancelled, "cancel");
    Ok(())
}

async fn complete_wins_over_a_cancel_request(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("finishes", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    assert_eq!(env.complete(l.lease, json!("done")).await?, AckOutcome::Completed);
    let job = env.job(id).await?;
    assert_eq!((job.status, job.result), (JobStatus::Completed, Some(json!("done"))));
    let c = env.stats().await?.counters;
    assert_eq!(c, QueueCounters { enqueued: 1, completed: 1, ..Default::default() });
    Ok(())
}

async fn cancel_finished_or_unknown_jobs_is_an_error(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let done = env.add("done", JobPriority::Normal).await?;
    let l = env.take(done, LEASE).await?;
    env.q.complete(l.lease, json!(1)).await?;
    let err = env.q.cancel_job(done).await.err().ok_or("cancel of a completed job succeeded")?;
    assert_invalid_state(err, done, JobStatus::Completed, "cancel");

    let dead = env.q.enqueue("dead", json!({})).max_retries(0).await?;
    let l = env.take(dead, LEASE).await?;
    assert_eq!(env.fail(failure(l.lease, "x", true, late_retry())).await?, FailOutcome::Dead);
    let err = env.q.cancel_job(dead).await.err().ok_or("cancel of a dead job succeeded")?;
    assert_invalid_state(err, dead, JobStatus::Failed, "cancel");

    let unknown = JobId::new();
    let err = env.q.cancel_job(unknown).await.err().ok_or("cancel of an unknown job succeeded")?;
    assert_not_found(err, unknown);

    // Nothing changed.
    assert_eq!(env.job(done).await?.status, JobStatus::Completed);
    assert_eq!(env.job(dead).await?.status, JobStatus::Failed);
    assert_eq!(env.stats().await?.counters.cancelled, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Retries and the dead-letter queue
// ---------------------------------------------------------------------------------------

async fn retry_backoff_follows_the_policy_then_dead_letters(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let policy = RetryPolicy::exponential(ms(50), ms(200));
    let id = env.q.enqueue("flaky", json!({ "k": "v" })).max_retries(3).await?;
    let expected_delays = [ms(50), ms(100), ms(200)];

    for attempt in 1..=4u32 {
        let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
        assert_eq!((l.lease.attempt, l.job.attempt), (attempt, attempt));
        assert_eq!(l.job.retry_count, attempt - 1);
        let started = l.job.started_at.ok_or("started_at")?;

        let error = format!("failure {attempt}");
        let before = Utc::now();
        let out = env.q.fail(&failure(l.lease, &error, true, policy)).await?;
        let after = Utc::now();
        let job = env.job(id).await?;
        assert_eq!(job.error.as_deref(), Some(error.as_str()));

        if attempt <= 3 {
            let delay = expected_delays[attempt as usize - 1];
            let FailOutcome::Retrying { at } = out else {
                return Err(format!("attempt {attempt}: expected Retrying, got {out:?}").into());
            };
            assert_within(
                &format!("retry {attempt} due"),
                at,
                before + td(delay),
                after + td(delay),
            );
            // The same, measured from the start of the attempt (fail came right after it).
            let gap = (at - started).to_std().unwrap_or_default();
            assert!(
                gap >= delay - ms(10) && gap < delay + ms(250),
                "retry {attempt}: due {gap:?} after the start, expected about {delay:?}"
            );
            assert_eq!(job.status, JobStatus::Retrying);
            assert_eq!(job.retry_count, attempt);
            assert_eq!(job.scheduled_at, Some(at));
            assert_eq!(job.args, json!({ "k": "v" }));
            let stats = env.stats().await?;
            assert_eq!((stats.scheduled, stats.retrying, stats.processing), (1, 1, 0));
            assert_eq!(stats.total_pending, 0);
        } else {
            assert_eq!(out, FailOutcome::Dead);
            assert_eq!(job.status, JobStatus::Failed);
            assert_eq!(job.retry_count, 3);
            assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
            assert_eq!(job.args, json!({ "k": "v" }), "a dead job keeps its args");
        }
    }
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            dead_letter: 1,
            counters: QueueCounters {
                enqueued: 1,
                failed: 4,
                retried: 3,
                dead: 1,
                ..Default::default()
            },
            ..Default::default()
        }
    );
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [id]);
    let f = env.fetch(1).await?;
    assert!(f.jobs.is_empty());
    assert_eq!(f.next_due_in, None);
    Ok(())
}

async fn error_messages_are_cut_to_the_limit(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("verbose", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    // Three-byte characters, so that the cut must respect a character boundary.
    let long = "é€".repeat(MAX_ERROR_LEN);
    env.fail(failure(l.lease, &long, true, late_retry())).await?;
    let error = env.job(id).await?.error.ok_or("error not stored")?;
    assert_eq!(error, truncate_error(&long));
    assert!(error.len() <= MAX_ERROR_LEN && error.len() > MAX_ERROR_LEN - 4);
    Ok(())
}

async fn dead_letter_retry_and_clear(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // No retries: the first failure dead-letters.
    let a = env.q.enqueue("no_retries", json!({ "a": 1 })).max_retries(0).await?;
    // Retries left, but the failure is not retryable.
    let b = env.q.enqueue("fatal", json!({ "b": 2 })).max_retries(5).await?;

    let la = env.take(a, LEASE).await?;
    assert_eq!(
        env.fail(failure(la.lease, "a failed", true, late_retry())).await?,
        FailOutcome::Dead
    );
    tokio::time::sleep(ms(5)).await;
    let lb = env.take(b, LEASE).await?;
    assert_eq!(
        env.fail(failure(lb.lease, "b failed", false, late_retry())).await?,
        FailOutcome::Dead
    );

    let dead = env.q.get_dead_letter_jobs(10).await?;
    assert_eq!(ids(&dead), [b, a], "newest first");
    assert!(dead.iter().all(|j| j.status == JobStatus::Failed));
    assert_eq!(dead[0].retry_count, 0, "a non-retryable failure uses no retry");
    assert_eq!(ids(&env.b.list_dead(1, 10).await?), [a]);
    assert_eq!(ids(&env.b.list_dead(0, 1).await?), [b]);
    assert!(env.b.list_dead(2, 10).await?.is_empty());
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.failed), (2, 2, 2));

    // Back to pending, with its history.
    env.q.retry_dead_letter_job(a).await?;
    let job = env.job(a).await?;
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.completed_at, None);
    assert_eq!((job.retry_count, job.attempt), (0, 1));
    assert_eq!(job.error.as_deref(), Some("a failed"));
    assert_eq!(job.args, json!({ "a": 1 }));
    let stats = env.stats().await?;
    assert_eq!((stats.pending.normal, stats.dead_letter), (1, 1));
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [b]);

    // Not in the DLQ (pending now) / unknown.
    let err = env.q.retry_dead_letter_job(a).await.err().ok_or("retry of a pending job")?;
    assert_invalid_state(err, a, JobStatus::Pending, "retry");
    let unknown = JobId::new();
    let err = env.q.retry_dead_letter_job(unknown).await.err().ok_or("retry of unknown")?;
    assert_not_found(err, unknown);

    // It runs again (attempt 2); without retries left, failing makes it dead again.
    let la = env.take(a, LEASE).await?;
    assert_eq!(la.lease.attempt, 2);
    assert_eq!(la.job.args, json!({ "a": 1 }));
    assert_eq!(env.fail(failure(la.lease, "again", true, late_retry())).await?, FailOutcome::Dead);

    // b had retries it never used: after a DLQ retry, a retryable failure retries.
    env.q.retry_dead_letter_job(b).await?;
    let lb = env.take(b, LEASE).await?;
    assert_eq!(lb.lease.attempt, 2);
    let out = env.fail(failure(lb.lease, "b again", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert_eq!(env.job(b).await?.retry_count, 1);
    let err = env.q.retry_dead_letter_job(b).await.err().ok_or("retry of a retrying job")?;
    assert_invalid_state(err, b, JobStatus::Retrying, "retry");

    assert_eq!(env.q.clear_dead_letter_queue().await?, 1);
    assert!(env.b.list_dead(0, 10).await?.is_empty());
    assert_eq!(env.b.get_job(a).await?, None, "cleared DLQ records are deleted");
    assert_eq!(env.job(b).await?.status, JobStatus::Retrying, "other jobs are untouched");
    assert_eq!(env.q.clear_dead_letter_queue().await?, 0);
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            scheduled: 1,
            retrying: 1,
            counters: QueueCounters {
                enqueued: 2,
                failed: 4,
                retried: 1,
                dead: 3,
                ..Default::default()
            },
            ..Default::default()
        }
    );
    Ok(())
}

/// Enqueues and dead-letters `n` jobs (max_retries 0), a few ms apart, oldest first.
async fn kill_jobs(env: &Env, n: usize) -> Result<Vec<JobId>, BoxError> {
    let mut dead = Vec::new();
    for i in 0..n {
        let id = env.q.enqueue(format!("doomed-{i}"), json!({})).max_retries(0).await?;
        let l = env.take(id, LEASE).await?;
        assert_eq!(env.fail(failure(l.lease, "x", true, late_retry())).await?, FailOutcome::Dead);
        dead.push(id);
        tokio::time::sleep(ms(3)).await;
    }
    Ok(dead)
}

async fn dead_letter_queue_keeps_the_newest_dead_max(kind: Kind) -> TestResult {
    let cfg = BackendConfig { dead_max: 3, ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let dead = kill_jobs(&env, 5).await?;
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [dead[4], dead[3], dead[2]]);
    for id in &dead[..2] {
        assert_eq!(env.b.get_job(*id).await?, None, "a dropped DLQ entry's record is deleted");
    }
    let stats = env.stats().await?;
    assert_eq!(stats.dead_letter, 3);
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 5, failed: 5, dead: 5, dead_dropped: 2, ..Default::default() }
    );
    Ok(())
}

async fn dead_letter_entries_expire_after_dead_ttl(kind: Kind) -> TestResult {
    let cfg = BackendConfig { dead_ttl: ms(150), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let old = kill_jobs(&env, 1).await?;
    tokio::time::sleep(ms(300)).await;
    let new = kill_jobs(&env, 1).await?;
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), new);
    assert_eq!(env.b.get_job(old[0]).await?, None);
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.dead_dropped), (1, 2, 1));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Leases: reap, fencing, heartbeat, release
// ---------------------------------------------------------------------------------------

async fn expired_lease_is_reaped_to_the_head_and_the_old_ack_is_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let x = env.add("x", JobPriority::Normal).await?;
    let y = env.add("y", JobPriority::Normal).await?;
    let first = env.take(x, ms(100)).await?;
    assert_eq!(first.lease.attempt, 1);

    // Not yet expired: nothing to reap.
    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, ..Default::default() });

    tokio::time::sleep(ms(250)).await;
    // Lapsed, but not for the grace period yet.
    let report = env.reap(ReapOptions { grace: HOUR, ..reap_now() }).await?;
    assert_eq!(report.requeued, 0, "reaped within the grace period");

    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, requeued: 1, failed: 0, cancelled: 0 });
    let job = env.job(x).await?;
    assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Pending, 1, 0));
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [x, y], "a reaped job goes to the head");
    let stats = env.stats().await?;
    assert_eq!((stats.pending.normal, stats.processing, stats.counters.stalled), (2, 0, 1));
    assert_eq!(stats.counters.failed, 0, "a lost worker is not a failed attempt");

    let second = env.take(x, LEASE).await?;
    assert_eq!(second.lease.attempt, 2);

    // The old holder's ack is fenced off and changes nothing.
    assert_eq!(env.complete(first.lease, json!("old")).await?, AckOutcome::Stale);
    let err = env.q.complete(first.lease, json!("old")).await.err().ok_or("stale ack accepted")?;
    assert_stale(err, x, 1);
    let job = env.job(x).await?;
    assert_eq!((job.status, job.attempt, job.result), (JobStatus::Running, 2, None));

    assert_eq!(env.complete(second.lease, json!("new")).await?, AckOutcome::Completed);
    assert_eq!(env.complete(second.lease, json!("new")).await?, AckOutcome::Already);
    env.q.complete(second.lease, json!("new")).await?;
    assert_eq!(env.complete(first.lease, json!("old")).await?, AckOutcome::Stale);
    let job = env.job(x).await?;
    assert_eq!((job.status, job.result), (JobStatus::Completed, Some(json!("new"))));
    let c = env.stats().await?.counters;
    assert_eq!(c, QueueCounters { enqueued: 2, completed: 1, stalled: 1, ..Default::default() });
    Ok(())
}

async fn throughput_counts_completions_and_failures_per_minute(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let empty = env.b.throughput().await?;
    assert_eq!(empty.len(), 60);
    assert!(empty.iter().all(|b| b.completed == 0 && b.failed == 0));
    assert!(empty.windows(2).all(|w| w[1].start - w[0].start == chrono::Duration::minutes(1)));
    let before = chrono::Utc::now();
    for i in 0..5 {
        let id = env.add(&format!("t{i}"), JobPriority::Normal).await?;
        let leased = env.take(id, LEASE).await?;
        if i < 3 {
            env.q.complete(leased.lease, serde_json::json!(i)).await?;
        } else {
            // One retry and one dead-lettering: two failed attempts.
            env.fail(failure(leased.lease, "boom", i == 3, late_retry())).await?;
        }
    }
    let after = chrono::Utc::now();
    let buckets = env.b.throughput().await?;
    assert_eq!(buckets.len(), 60);
    let last = buckets.last().ok_or("no buckets")?;
    assert!(last.start <= after && after - last.start < chrono::Duration::minutes(1));
    let (c, f): (u64, u64) =
        buckets.iter().fold((0, 0), |(c, f), b| (c + b.completed, f + b.failed));
    assert_eq!((c, f), (3, 2), "every event counted once, in the last hour");
    // All in the minute(s) the calls ran in.
    let first_minute = before.timestamp().div_euclid(60) * 60;
    for b in &buckets {
        if b.completed + b.failed > 0 {
            assert!(b.start.timestamp() >= first_minute, "{b:?}");
        }
    }
    Ok(())
}

async fn late_fail_from_an_old_lease_is_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("x", JobPriority::Normal).await?;
    let first = env.take(id, ms(50)).await?;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    let second = env.take(id, LEASE).await?;

    let old = failure(first.lease, "late", true, late_retry());
    assert_eq!(env.fail(old.clone()).await?, FailOutcome::Stale);
    let err = env.q.fail(&old).await.err().ok_or("stale fail accepted")?;
    assert_stale(err, id, 1);
    let job = env.job(id).await?;
    assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Running, 2, 0));
    assert_eq!(job.error, None);
    assert_eq!(env.b.release(&[first.lease]).await?, 0, "a stale release is skipped");
    assert_eq!(env.job(id).await?.status, JobStatus::Running);

    // A fail from the current delivery still works.
    let out = env.fail(failure(second.lease, "current", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert_eq!(
        env.fail(failure(second.lease, "twice", true, late_retry())).await?,
        FailOutcome::Stale
    );
    let job = env.job(id).await?;
    assert_eq!((job.retry_count, job.error.as_deref()), (1, Some("current")));
    let c = env.stats().await?.counters;
    assert_eq!((c.failed, c.retried, c.stalled), (1, 1, 1));
    Ok(())
}

async fn reaped_jobs_go_to_the_head_latest_deadline_first(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add("a", JobPriority::Normal).await?;
    let b = env.add("b", JobPriority::Normal).await?;
    let c = env.add("c", JobPriority::Normal).await?;
    env.take(a, ms(50)).await?; // earliest deadline
    env.take(b, ms(120)).await?;
    tokio::time::sleep(ms(300)).await;
    let report = env.reap(reap_now()).await?;
    assert_eq!(report.requeued, 2);
    // Processed a then b, each pushed to the head: b is fetched first.
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [b, a, c]);
    assert_eq!(leased_ids(&env.fetch(10).await?), [b, a, c]);

    // A reap takes at most `limit` jobs, earliest deadline first.
    let d = env.add("d", JobPriority::High).await?;
    let e = env.add("e", JobPriority::High).await?;
    env.take(d, ms(50)).await?;
    env.take(e, ms(120)).await?;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(env.reap(ReapOptions { limit: 1, ..reap_now() }).await?.requeued, 1);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [d]);
    assert_eq!(env.reap(ReapOptions { limit: 1, ..reap_now() }).await?.requeued, 1);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [e, d]);
    Ok(())
}

async fn reap_cancels_a_lost_job_that_was_asked_to_cancel(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("x", JobPriority::Normal).await?;
    env.take(id, ms(50)).await?;
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    tokio::time::sleep(ms(200)).await;
    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, requeued: 0, failed: 0, cancelled: 1 });
    let job = env.job(id).await?;
    assert_eq!((job.status, job.args), (JobStatus::Cancelled, Value::Null));
    assert!(env.fetch(1).await?.jobs.is_empty());
    let stats = env.stats().await?;
    assert_eq!(stats.counters, QueueCounters { enqueued: 1, cancelled: 1, ..Default::default() });
    assert_eq!(stats.processing, 0);
    Ok(())
}

async fn reap_runs_at_most_once_per_interval(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let opts = ReapOptions { interval: Duration::from_secs(30), ..reap_now() };
    assert!(env.reap(opts).await?.ran);
    let second = env.reap(opts).await?;
    assert_eq!(second, ReapReport { ran: false, ..Default::default() });
    // Another client of the same namespace shares the lock.
    let peer = env.peer().await;
    assert!(!peer.reap(&opts).await?.ran);
    Ok(())
}

async fn heartbeat_extends_the_lease_and_reports_lost_leases(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add("a", JobPriority::Normal).await?;
    let b = env.add("b", JobPriority::Normal).await?;
    let la = env.take(a, ms(500)).await?;
    let lb = env.take(b, LEASE).await?;
    let beat = |leases: Vec<Lease>| Heartbeat {
        worker_id: "worker-1".into(),
        info: json!({ "pid": 1 }),
        leases,
        lease: ms(500),
        grace: Duration::ZERO,
    };

    // Beating every 150 ms keeps a 500 ms lease alive well past its first deadline.
    let started = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(ms(150)).await;
        let reply = env.b.heartbeat(&beat(vec![la.lease])).await?;
        assert!(reply.lost.is_empty() && reply.cancel.is_empty(), "{reply:?}");
        assert_eq!(env.reap(reap_now()).await?.requeued, 0, "a renewed lease was reaped");
    }
    assert!(started.elapsed() > ms(1000));
    assert_eq!(env.job(a).await?.status, JobStatus::Running);

    // Without heartbeats it lapses.
    tokio::time::sleep(ms(700)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    let again = env.take(a, LEASE).await?;
    assert_eq!(again.lease.attempt, 2);

    let unknown = Lease { id: JobId::new(), attempt: 1 };
    let reply = env.b.heartbeat(&beat(vec![la.lease, lb.lease, unknown])).await?;
    let lost: HashSet<JobId> = reply.lost.iter().copied().collect();
    assert_eq!(lost, HashSet::from([a, unknown.id]));
    assert!(reply.cancel.is_empty());
    Ok(())
}

async fn poison_pill_takes_the_fail_path_after_max_stalls(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("poison", json!({})).max_retries(0).await?;
    let opts = ReapOptions { max_stalls: 1, ..reap_now() };

    env.take(id, ms(50)).await?;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(opts).await?, ReapReport { ran: true, requeued: 1, ..Default::default() });
    assert_eq!(env.job(id).await?.status, JobStatus::Pending);

    let l = env.take(id, ms(50)).await?;
    assert_eq!(l.lease.attempt, 2);
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(opts).await?, ReapReport { ran: true, failed: 1, ..Default::default() });

    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some(ERR_WORKER_LOST));
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [id]);
    let stats = env.stats().await?;
    assert_eq!(stats.dead_letter, 1);
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 1, failed: 1, dead: 1, stalled: 2, ..Default::default() }
    );
    Ok(())
}

async fn timeout_reap_fails_a_job_past_its_timeout(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // A lease never lasts past started + timeout + grace: not when fetched with a long
    // lease (a), and not when renewed with one (b).
    let a = env.q.enqueue("wedged_a", json!({})).timeout(ms(100)).await?;
    let la = env.take(a, Duration::from_secs(10)).await?;
    let b = env.q.enqueue("wedged_b", json!({})).timeout(ms(300)).await?;
    let lb = env.take(b, ms(50)).await?;
    let beat = Heartbeat {
        worker_id: "worker-1".into(),
        info: json!({}),
        leases: vec![lb.lease],
        lease: Duration::from_secs(10),
        grace: Duration::ZERO,
    };
    assert_eq!(env.b.heartbeat(&beat).await?.lost, Vec::<JobId>::new());
    assert_eq!(env.reap(reap_now()).await?.failed, 0, "reaped before its timeout");

    tokio::time::sleep(ms(500)).await;
    let backoff = RetryPolicy::exponential(HOUR, HOUR);
    let before = Utc::now();
    let report = env.reap(ReapOptions { retry: backoff, ..reap_now() }).await?;
    let after = Utc::now();
    assert_eq!(report, ReapReport { ran: true, failed: 2, ..Default::default() });

    for id in [a, b] {
        let job = env.job(id).await?;
        assert_eq!(job.status, JobStatus::Retrying);
        assert_eq!(job.error.as_deref(), Some(ERR_TIMEOUT));
        assert_eq!(job.retry_count, 1);
        let due = job.scheduled_at.ok_or("a retry has scheduled_at")?;
        assert_within("retry due", due, before + td(HOUR), after + td(HOUR));
    }
    let stats = env.stats().await?;
    assert_eq!((stats.processing, stats.scheduled, stats.retrying), (0, 2, 2));
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 2, failed: 2, retried: 2, ..Default::default() }
    );
    assert_eq!(env.complete(la.lease, json!(null)).await?, AckOutcome::Stale);
    assert_eq!(env.complete(lb.lease, json!(null)).await?, AckOutcome::Stale);
    Ok(())
}

async fn release_puts_jobs_back_at_the_head_in_the_given_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let mut n = Vec::new();
    for name in ["a", "b", "c", "d"] {
        n.push(env.add(name, JobPriority::Normal).await?);
    }
    let (a, b, c, d) = (n[0], n[1], n[2], n[3]);
    let f = env.fetch(3).await?;
    assert_eq!(leased_ids(&f), [a, b, c]);
    let lease = |i: usize| f.jobs[i].lease;
    let e = env.add("e", JobPriority::Normal).await?;
    let h = env.add("h", JobPriority::High).await?;

    let stale_b = Lease { id: b, attempt: 7 };
    let unknown = Lease { id: JobId::new(), attempt: 1 };
    assert_eq!(env.b.release(&[lease(2), stale_b, lease(0), unknown]).await?, 2);
    for id in [c, a] {
        let job = env.job(id).await?;
        assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Pending, 1, 0));
    }
    assert_eq!(env.job(b).await?.status, JobStatus::Running);
    // Head of their own priority: the high job still comes first.
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [h, c, a, d, e]);
    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 1, 4, 0));
    assert_eq!((stats.processing, stats.counters.stalled, stats.counters.failed), (1, 0, 0));

    // A released delivery is stale.
    assert_eq!(env.complete(lease(2), json!(1)).await?, AckOutcome::Stale);
    assert_eq!(env.b.release(&[lease(2)]).await?, 0);

    // A job asked to cancel is cancelled instead of released.
    assert_eq!(env.q.cancel_job(b).await?, CancelOutcome::Requested);
    assert_eq!(env.b.release(&[lease(1)]).await?, 1);
    assert_eq!(env.job(b).await?.status, JobStatus::Cancelled);
    assert_eq!(env.stats().await?.counters.cancelled, 1);

    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [h, c, a, d, e]);
    let attempts: Vec<u32> = f.jobs.iter().map(|l| l.lease.attempt).collect();
    assert_eq!(attempts, [1, 2, 2, 1, 1], "release keeps the attempt; the next fetch adds one");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

async fn stats_stay_exact_through_a_mixed_sequence(kind: Kind) -> TestResult {
    use JobPriority::*;
    let env = Env::open(kind).await;
    let mut expected = QueueStats::default();
    let check = |expected: QueueStats, step: &'static str| {
        let b = env.b.clone();
        async move {
            let got = b.stats().await?;
            assert_eq!(got, expected, "stats after: {step}");
            Ok::<_, Error>(())
        }
    };
    check(expected, "nothing").await?;

    let mut batch = Vec::new();
    for (p, n) in [(Critical, 2), (High, 3), (Normal, 4), (Low, 5)] {
        for i in 0..n {
            batch.push(new_job(&format!("{p}-{i}"), p));
        }
    }
    let delayed: Vec<NewJob> = (0..2)
        .map(|i| NewJob { run_at: RunAt::Delay(HOUR), ..new_job(&format!("delayed-{i}"), Normal) })
        .collect();
    batch.extend(delayed.iter().cloned());
    env.b.enqueue(&batch).await?;
    // A duplicate is not counted.
    assert_eq!(env.b.enqueue(&batch[..1]).await?, [EnqueueOutcome::Duplicate]);
    expected.pending = pending(2, 3, 4, 5);
    expected.total_pending = 14;
    expected.scheduled = 2;
    expected.counters.enqueued = 16;
    check(expected, "enqueue").await?;

    let f = env.fetch(4).await?;
    let got: Vec<JobPriority> = f.jobs.iter().map(|l| l.job.priority).collect();
    assert_eq!(got, [Critical, Critical, High, High]);
    expected.pending = pending(0, 1, 4, 5);
    expected.total_pending = 10;
    expected.processing = 4;
    check(expected, "fetch 4").await?;

    assert_eq!(env.complete(f.jobs[0].lease, json!(1)).await?, AckOutcome::Completed);
    expected.processing = 3;
    expected.counters.completed = 1;
    check(expected, "complete").await?;

    let retrying = f.jobs[1].lease;
    let out = env.fail(failure(retrying, "again", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }));
    expected.processing = 2;
    expected.scheduled = 3;
    expected.retrying = 1;
    expected.counters.failed = 1;
    expected.counters.retried = 1;
    check(expected, "fail → retrying").await?;

    let out = env.fail(failure(f.jobs[2].lease, "fatal", false, late_retry())).await?;
    assert_eq!(out, FailOutcome::Dead);
    expected.processing = 1;
    expected.dead_letter = 1;
    expected.counters.failed = 2;
    expected.counters.dead = 1;
    check(expected, "fail → dead").await?;

    let low = env.b.list_pending(Some(Low), 1).await?;
    assert_eq!(env.b.cancel(low[0].id).await?, CancelOutcome::Cancelled);
    expected.pending = pending(0, 1, 4, 4);
    expected.total_pending = 9;
    expected.counters.cancelled = 1;
    check(expected, "cancel pending").await?;

    assert_eq!(env.b.cancel(delayed[0].id).await?, CancelOutcome::Cancelled);
    expected.scheduled = 2;
    expected.counters.cancelled = 2;
    check(expected, "cancel delayed").await?;

    assert_eq!(env.b.cancel(retrying.id).await?, CancelOutcome::Cancelled);
    expected.scheduled = 1;
    expected.retrying = 0;
    expected.counters.cancelled = 3;
    check(expected, "cancel retrying").await?;

    let running = f.jobs[3].lease;
    assert_eq!(env.b.cancel(running.id).await?, CancelOutcome::Requested);
    check(expected, "cancel requested").await?;
    assert_eq!(
        env.fail(failure(running, "stopped", true, late_retry())).await?,
        FailOutcome::Cancelled
    );
    expected.processing = 0;
    expected.counters.cancelled = 4;
    check(expected, "fail → cancelled").await?;

    assert_eq!(
        expected,
        QueueStats {
            pending: pending(0, 1, 4, 4),
            scheduled: 1,
            processing: 0,
            dead_letter: 1,
            total_pending: 9,
            retrying: 0,
            counters: QueueCounters {
                enqueued: 16,
                completed: 1,
                failed: 2,
                retried: 1,
                dead: 1,
                cancelled: 4,
                stalled: 0,
                dead_dropped: 0,
                purged: 0,
            },
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Enqueue batches
// ---------------------------------------------------------------------------------------

async fn enqueue_many_is_all_or_nothing(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let good = NewJob::new("good", json!({}));
    let bad = NewJob::new("", json!({}));
    let also_good = NewJob::new("also_good", json!({}));
    let err = env
        .q
        .enqueue_many(&[good.clone(), bad, also_good.clone()])
        .await
        .err()
        .ok_or("a batch with an invalid job was accepted")?;
    assert!(matches!(err, Error::InvalidJob { .. }), "{err:?}");
    assert_eq!(env.b.get_job(good.id).await?, None, "part of a refused batch was written");
    assert_eq!(env.b.get_job(also_good.id).await?, None);
    assert_eq!(env.stats().await?, QueueStats::default());
    assert!(env.fetch(10).await?.jobs.is_empty());

    assert_eq!(env.q.enqueue_many(&[]).await?, Vec::<EnqueueOutcome>::new());
    let out = env.q.enqueue_many(&[good.clone(), also_good.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Created, EnqueueOutcome::Created]);
    assert_eq!(env.stats().await?.counters.enqueued, 2);
    Ok(())
}

async fn enqueue_reports_duplicates_and_writes_one_record(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = new_job("a", JobPriority::Normal);
    let b = new_job("b", JobPriority::Normal);
    let a_again = NewJob { id: a.id, ..new_job("a_again", JobPriority::Critical) };
    let out = env.q.enqueue_many(&[a.clone(), b.clone(), a_again.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Created, EnqueueOutcome::Created, EnqueueOutcome::Duplicate]);
    let job = env.job(a.id).await?;
    assert_eq!((job.name.as_str(), job.priority), ("a", JobPriority::Normal), "the first one wins");

    let c = new_job("c", JobPriority::Normal);
    let out = env.q.enqueue_many(&[a_again.clone(), c.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Duplicate, EnqueueOutcome::Created]);
    // The builder is idempotent by id too.
    let id = env.q.enqueue("other", json!({})).id(b.id).await?;
    assert_eq!(id, b.id);

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 3, 0));
    assert_eq!(stats.counters.enqueued, 3);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [a.id, b.id, c.id]);
    assert_eq!(leased_ids(&env.fetch(10).await?), [a.id, b.id, c.id]);

    // A job that exists in any state is a duplicate: running now.
    assert_eq!(env.b.enqueue(std::slice::from_ref(&a)).await?, [EnqueueOutcome::Duplicate]);
    assert_eq!(env.job(a.id).await?.status, JobStatus::Running);
    assert_eq!(env.stats().await?.counters.enqueued, 3);
    Ok(())
}

async fn enqueue_many_handles_two_thousand_jobs(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let jobs: Vec<NewJob> = (0..2000).map(|i| NewJob::new("bulk", json!({ "i": i }))).collect();
    let out = env.q.enqueue_many(&jobs).await?;
    assert_eq!(out.len(), 2000);
    assert!(out.iter().all(|o| *o == EnqueueOutcome::Created));
    let stats = env.stats().await?;
    assert_eq!(
        (stats.pending.normal, stats.total_pending, stats.counters.enqueued),
        (2000, 2000, 2000)
    );

    let mut got = Vec::new();
    for _ in 0..10 {
        let f = env.fetch(500).await?;
        if f.jobs.is_empty() {
            break;
        }
        got.extend(f.jobs.into_iter().map(|l| l.job.args["i"].as_u64().unwrap_or(u64::MAX)));
    }
    let expected: Vec<u64> = (0..2000).collect();
    assert_eq!(got, expected, "a batch keeps its order");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Completion and retention
// ---------------------------------------------------------------------------------------

async fn completed_job_keeps_its_result_and_drops_its_args(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("report", json!({ "big": "payload" })).await?;
    let l = env.take(id, LEASE).await?;
    let result = json!({ "rows": 3, "ok": true });
    let before = Utc::now();
    env.q.complete(l.lease, result.clone()).await?;
    let after = Utc::now();
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.result, Some(result));
    assert_eq!(job.args, Value::Null);
    assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
    assert_eq!(job.started_at, l.job.started_at);
    assert_eq!((job.attempt, job.retry_count, job.error), (1, 0, None));
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            counters: QueueCounters { enqueued: 1, completed: 1, ..Default::default() },
            ..Default::default()
        }
    );
    Ok(())
}

async fn finished_records_are_purged_after_result_ttl(kind: Kind) -> TestResult {
    // Long enough for the set-up to finish well within it, even on a slow machine.
    let cfg = BackendConfig { result_ttl: ms(400), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let done = env.add("done", JobPriority::Normal).await?;
    let l = env.take(done, LEASE).await?;
    env.q.complete(l.lease, json!(1)).await?;
    let cancelled = env.add("cancelled", JobPriority::Normal).await?;
    env.q.cancel_job(cancelled).await?;
    let dead = kill_jobs(&env, 1).await?[0];
    let waiting = env.q.enqueue("waiting", json!({})).delay(HOUR).await?;
    let extra = env.add("extra", JobPriority::Low).await?;
    let l = env.take(extra, LEASE).await?;
    env.q.complete(l.lease, json!(2)).await?;

    assert_eq!(env.b.purge(100).await?, 0, "purged before result_ttl");
    assert!(env.b.get_job(done).await?.is_some());

    tokio::time::sleep(ms(600)).await;
    assert_eq!(env.b.purge(2).await?, 2, "purge respects its limit");
    assert_eq!(env.b.purge(100).await?, 1);
    assert_eq!(env.b.purge(100).await?, 0);
    for id in [done, cancelled, extra] {
        assert_eq!(env.b.get_job(id).await?, None, "{id} was not purged");
    }
    // Dead and waiting jobs are not subject to result_ttl.
    assert_eq!(env.job(dead).await?.status, JobStatus::Failed);
    assert_eq!(env.job(waiting).await?.status, JobStatus::Pending);
    let stats = env.stats().await?;
    assert_eq!(stats.counters.purged, 3);
    assert_eq!((stats.dead_letter, stats.scheduled), (1, 1));
    Ok(())
}

async fn complete_purges_expired_records_in_passing(kind: Kind) -> TestResult {
    let cfg = BackendConfig { result_ttl: ms(100), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let old = env.add("old", JobPriority::Normal).await?;
    let new = env.add("new", JobPriority::Normal).await?;
    let f = env.fetch(2).await?;
    assert_eq!(leased_ids(&f), [old, new]);
    env.q.complete(f.jobs[0].lease, json!("old")).await?;
    tokio::time::sleep(ms(250)).await;
    env.q.complete(f.jobs[1].lease, json!("new")).await?;
    assert_eq!(env.b.get_job(old).await?, None, "complete did not purge an expired record");
    assert_eq!(env.job(new).await?.result, Some(json!("new")));
    assert_eq!(env.stats().await?.counters.purged, 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Unknown ids, concurrency, workers
// ---------------------------------------------------------------------------------------

async fn unknown_ids_are_none_not_found_or_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = JobId::new();
    let lease = Lease { id, attempt: 1 };
    assert_eq!(env.b.get_job(id).await?, None);
    assert_not_found(env.b.cancel(id).await.err().ok_or("cancel")?, id);
    assert_not_found(env.b.retry_dead(id).await.err().ok_or("retry_dead")?, id);
    assert_eq!(env.complete(lease, json!(1)).await?, AckOutcome::Stale);
    assert_eq!(env.fail(failure(lease, "x", true, late_retry())).await?, FailOutcome::Stale);
    assert_eq!(env.b.release(&[lease]).await?, 0);
    let reply = env
        .b
        .heartbeat(&Heartbeat {
            worker_id: "w".into(),
            info: json!({}),
            leases: vec![lease],
            lease: LEASE,
            grace: Duration::ZERO,
        })
        .await?;
    assert_eq!((reply.lost, reply.cancel), (vec![id], vec![]));
    assert_eq!(env.b.get_job(id).await?, None, "a call about an unknown id created it");
    assert_eq!(env.stats().await?, QueueStats::default());
    Ok(())
}

async fn two_fetchers_never_get_the_same_job(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let jobs: Vec<NewJob> = (0..1000).map(|i| NewJob::new("race", json!({ "i": i }))).collect();
    env.q.enqueue_many(&jobs).await?;

    let mut tasks = Vec::new();
    for w in 0..2 {
        let backend = env.peer().await;
        tasks.push(tokio::spawn(async move {
            let req = FetchRequest { worker_id: format!("racer-{w}"), ..fetch_req(25, LEASE) };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut got = Vec::new();
            for _ in 0..2000 {
                let f = backend.fetch(&req).await?;
                if f.jobs.is_empty() || Instant::now() > deadline {
                    break;
                }
                got.extend(f.jobs.into_iter().map(|l| (l.job.id, l.lease.attempt)));
                tokio::task::yield_now().await;
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut seen = HashSet::new();
    let mut per_task = Vec::new();
    for t in tasks {
        let got = t.await??;
        per_task.push(got.len());
        for (id, attempt) in got {
            assert_eq!(attempt, 1);
            assert!(seen.insert(id), "job {id} was delivered twice");
        }
    }
    let all: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(seen.len(), 1000, "fetched {per_task:?}");
    assert_eq!(seen, all);
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.processing), (0, 1000));
    Ok(())
}

async fn workers_are_listed_after_heartbeat_and_forgotten_after_ttl(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let beat = |w: &str| Heartbeat {
        worker_id: w.into(),
        info: json!({ "host": w, "concurrency": 4 }),
        leases: vec![],
        lease: LEASE,
        grace: Duration::ZERO,
    };
    assert!(env.b.list_workers(HOUR).await?.is_empty());
    let before = Utc::now();
    env.b.heartbeat(&beat("w-b")).await?;
    env.b.heartbeat(&beat("w-a")).await?;
    let after = Utc::now();
    let workers = env.b.list_workers(Duration::from_secs(10)).await?;
    let names: Vec<&str> = workers.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(names, ["w-a", "w-b"], "sorted by worker id");
    for w in &workers {
        assert_within("last_seen", w.last_seen, before, after);
        assert_eq!(w.info, json!({ "host": w.worker_id, "concurrency": 4 }));
    }

    tokio::time::sleep(ms(300)).await;
    env.b.heartbeat(&beat("w-a")).await?;
    let recent = env.b.list_workers(ms(200)).await?;
    assert_eq!(recent.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["w-a"]);
    assert_eq!(env.b.list_workers(HOUR).await?.len(), 2, "listing does not forget anyone");

    // A reap forgets workers silent for worker_ttl.
    tokio::time::sleep(ms(300)).await;
    env.b.heartbeat(&beat("w-c")).await?;
    env.reap(ReapOptions { worker_ttl: ms(200), ..reap_now() }).await?;
    let left = env.b.list_workers(HOUR).await?;
    assert_eq!(left.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["w-c"]);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Schedules (the "Schedules" section of the contract in `jobs_core::backend`)
// ---------------------------------------------------------------------------------------

/// The schedule cases, as `schedules::{memory,redis,cluster}::<case>`.
mod schedules {
    use super::*;
    use jobs_core::backend::{
        FireOutcome, ScheduleEntry, ScheduleFire, StoredSchedule, TickClaim, UpsertOutcome,
    };
    use jobs_core::{MisfirePolicy, ScheduleType};

    conformance!(
        schedule_upsert_creates_keeps_and_updates,
        schedule_enable_disable_and_remove,
        schedule_due_lists_due_schedules_earliest_first,
        schedule_fire_claims_a_tick_once_and_writes_its_job,
        schedule_fire_is_stale_not_due_or_not_found,
        schedule_fire_races_have_one_winner,
        schedule_fire_of_an_existing_job_is_a_duplicate,
        schedule_run_now_leaves_the_next_run_alone,
        one_time_schedule_has_no_next_run_after_firing,
        schedule_arguments_that_no_backend_accepts,
    );

    const HASH_A: &str = "00000000000000aa";
    const HASH_B: &str = "00000000000000bb";

    fn entry(name: &str) -> ScheduleEntry {
        ScheduleEntry {
            name: name.into(),
            job_name: "tick_job".into(),
            schedule: ScheduleType::Interval { seconds: 60 },
            args: json!({ "schedule": name }),
            priority: JobPriority::High,
            max_retries: 2,
            timeout_ms: 45_000,
            misfire: MisfirePolicy::Coalesce,
        }
    }

    fn at(t: DateTime<Utc>, offset_ms: i64) -> DateTime<Utc> {
        t + TimeDelta::milliseconds(offset_ms)
    }

    /// Backend times are whole milliseconds.
    fn whole_ms(t: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    fn tick_job(name: &str, tick: DateTime<Utc>) -> NewJob {
        NewJob {
            id: JobId::derived(&format!("cron:{name}:{}", tick.timestamp_millis())),
            priority: JobPriority::High,
            max_retries: 2,
            timeout: Duration::from_secs(45),
            ..NewJob::new("tick_job", json!({ "schedule": name }))
        }
    }

    fn claim(
        name: &str,
        tick: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        hash: &str,
    ) -> ScheduleFire {
        ScheduleFire {
            name: name.into(),
            claim: Some(TickClaim { expected: tick, next, hash: hash.into() }),
            job: tick_job(name, tick),
        }
    }

    async fn get(env: &Env, name: &str) -> Result<StoredSchedule, String> {
        match env.b.schedule_get(name).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(format!("schedule {name} not found")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A schedule due `ago_ms` before the backend's now; returns its tick.
    async fn due_schedule(env: &Env, name: &str, ago_ms: i64) -> Result<DateTime<Utc>, BoxError> {
        let tick = whole_ms(at(env.b.time().await?, -ago_ms));
        let out = env.b.schedule_upsert(&entry(name), HASH_A, None, Some(tick)).await?;
        assert_eq!(out, UpsertOutcome::Created);
        Ok(tick)
    }

    async fn schedule_upsert_creates_keeps_and_updates(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let now = whole_ms(env.b.time().await?);
        let first = at(now, 60_000);
        let e = entry("s");
        assert_eq!(
            env.b.schedule_upsert(&e, HASH_A, None, Some(first)).await?,
            UpsertOutcome::Created
        );
        let s = get(&env, "s").await?;
        assert_eq!(s.entry, e);
        assert_eq!(s.hash, HASH_A);
        assert!(s.state.enabled, "new schedules are enabled unless told otherwise");
        assert_eq!(s.state.next_run, Some(first));
        assert_eq!((s.state.run_count, s.state.last_run, s.state.last_job_id), (0, None, None));

        // Same definition (every process upserts at start): nothing moves, not even the next run.
        let later = at(now, 120_000);
        assert_eq!(
            env.b.schedule_upsert(&e, HASH_A, None, Some(later)).await?,
            UpsertOutcome::Kept
        );
        assert_eq!(
            env.b.schedule_upsert(&e, HASH_A, Some(true), Some(later)).await?,
            UpsertOutcome::Kept
        );
        assert_eq!(get(&env, "s").await?.state.next_run, Some(first));

        // An operator disables it; a restart's upsert (flag `None`) keeps it disabled.
        env.b.schedule_set_enabled("s", false, None).await?;
        assert_eq!(
            env.b.schedule_upsert(&e, HASH_A, None, Some(later)).await?,
            UpsertOutcome::Kept
        );
        let s = get(&env, "s").await?;
        assert_eq!((s.state.enabled, s.state.next_run), (false, None));

        // A changed definition replaces the old one and still keeps the flag.
        let mut e2 = entry("s");
        e2.schedule = ScheduleType::Interval { seconds: 30 };
        assert_eq!(
            env.b.schedule_upsert(&e2, HASH_B, None, Some(later)).await?,
            UpsertOutcome::Updated
        );
        let s = get(&env, "s").await?;
        assert_eq!(
            (s.entry.clone(), s.hash.as_str(), s.state.enabled, s.state.next_run),
            (e2.clone(), HASH_B, false, None)
        );

        // An explicit flag wins: enabled with the given first run.
        assert_eq!(
            env.b.schedule_upsert(&e2, HASH_B, Some(true), Some(later)).await?,
            UpsertOutcome::Updated
        );
        let s = get(&env, "s").await?;
        assert_eq!((s.state.enabled, s.state.next_run), (true, Some(later)));

        // Changing the definition of an enabled schedule resets its next run; counters stay.
        let tick = due_schedule(&env, "counted", 5).await?;
        assert_eq!(
            env.b.schedule_fire(&claim("counted", tick, Some(at(now, 600_000)), HASH_A)).await?,
            FireOutcome::Fired
        );
        assert_eq!(
            env.b.schedule_upsert(&e2_named("counted"), HASH_B, None, Some(later)).await?,
            UpsertOutcome::Updated
        );
        let s = get(&env, "counted").await?;
        assert_eq!((s.state.run_count, s.state.next_run), (1, Some(later)));
        assert!(s.state.last_job_id.is_some() && s.state.last_run.is_some());

        // Created disabled: no next run.
        assert_eq!(
            env.b.schedule_upsert(&entry("off"), HASH_A, Some(false), Some(later)).await?,
            UpsertOutcome::Created
        );
        let s = get(&env, "off").await?;
        assert_eq!((s.state.enabled, s.state.next_run), (false, None));
        Ok(())
    }

    fn e2_named(name: &str) -> ScheduleEntry {
        ScheduleEntry { schedule: ScheduleType::Interval { seconds: 30 }, ..entry(name) }
    }

    async fn schedule_enable_disable_and_remove(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let now = whole_ms(env.b.time().await?);
        let first = at(now, 60_000);
        env.b.schedule_upsert(&entry("b"), HASH_A, None, Some(first)).await?;
        env.b.schedule_upsert(&entry("a"), HASH_A, None, Some(first)).await?;

        let s = env.b.schedule_set_enabled("a", false, None).await?;
        assert_eq!((s.state.enabled, s.state.next_run), (false, None));
        // Disabling twice changes nothing; enabling sets the given next run.
        let s = env.b.schedule_set_enabled("a", false, None).await?;
        assert!(!s.state.enabled);
        let second = at(now, 90_000);
        let s = env.b.schedule_set_enabled("a", true, Some(second)).await?;
        assert_eq!((s.state.enabled, s.state.next_run), (true, Some(second)));
        // Enabling an enabled schedule keeps its next run.
        let s = env.b.schedule_set_enabled("a", true, Some(at(now, 1))).await?;
        assert_eq!(s.state.next_run, Some(second));

        let names: Vec<String> =
            env.b.schedule_list().await?.into_iter().map(|s| s.entry.name).collect();
        assert_eq!(names, ["a", "b"], "listed by name");

        // A peer (another process) sees the same.
        let peer = env.peer().await;
        assert_eq!(peer.schedule_get("a").await?.map(|s| s.state.next_run), Some(Some(second)));

        assert!(env.b.schedule_remove("a").await?);
        assert!(!env.b.schedule_remove("a").await?);
        assert!(env.b.schedule_get("a").await?.is_none());
        let err = env.b.schedule_set_enabled("a", true, Some(second)).await.err();
        assert!(
            matches!(&err, Some(Error::ScheduleNotFound { name }) if name == "a"),
            "expected ScheduleNotFound, got {err:?}"
        );
        assert_eq!(env.b.schedule_list().await?.len(), 1);
        assert!(env.b.schedule_due(10).await?.next_run.is_some_and(|t| t == first), "b is left");
        Ok(())
    }

    async fn schedule_due_lists_due_schedules_earliest_first(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let due = env.b.schedule_due(10).await?;
        assert!(due.due.is_empty() && due.next_run.is_none());

        let now = whole_ms(env.b.time().await?);
        for (name, offset) in [("late", -50), ("later", -500), ("future", 60_000), ("off", -900)] {
            env.b.schedule_upsert(&entry(name), HASH_A, None, Some(at(now, offset))).await?;
        }
        env.b.schedule_set_enabled("off", false, None).await?;

        let before = Utc::now();
        let due = env.b.schedule_due(10).await?;
        let after = Utc::now();
        assert_within("now", due.now, before, after);
        let got: Vec<(&str, DateTime<Utc>)> =
            due.due.iter().map(|(t, s)| (s.entry.name.as_str(), *t)).collect();
        assert_eq!(got, [("later", at(now, -500)), ("late", at(now, -50))], "disabled never due");
        assert_eq!(due.next_run, Some(at(now, -500)));
        assert_eq!(due.due[0].1.hash, HASH_A);

        let one = env.b.schedule_due(1).await?;
        assert_eq!(one.due.len(), 1, "limit");
        assert_eq!(one.due[0].1.entry.name, "later");
        Ok(())
    }

    async fn schedule_fire_claims_a_tick_once_and_writes_its_job(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "s", 20).await?;
        let next = at(tick, 60_000);
        let before = Utc::now();
        assert_eq!(
            env.b.schedule_fire(&claim("s", tick, Some(next), HASH_A)).await?,
            FireOutcome::Fired
        );
        let after = Utc::now();

        // The job: a ready job like enqueue writes, plus the tick as scheduled_at.
        let id = tick_job("s", tick).id;
        let job = env.job(id).await?;
        assert_eq!(job.name, "tick_job");
        assert_eq!(job.args, json!({ "schedule": "s" }));
        assert_eq!(job.status, JobStatus::Pending);
        assert_eq!(job.priority, JobPriority::High);
        assert_eq!((job.max_retries, job.timeout), (2, Duration::from_secs(45)));
        assert_eq!((job.attempt, job.retry_count), (0, 0));
        assert_eq!(job.scheduled_at, Some(tick));
        assert_within("created_at", job.created_at, before, after);
        let stats = env.stats().await?;
        assert_eq!(stats.pending, pending(0, 1, 0, 0));
        assert_eq!(stats.counters.enqueued, 1);
        assert_eq!(leased_ids(&env.fetch(10).await?), [id], "fetchable at once");

        let s = get(&env, "s").await?;
        assert_eq!(s.state.next_run, Some(next));
        assert_eq!((s.state.run_count, s.state.last_job_id), (1, Some(id)));
        let last = s.state.last_run.ok_or("last_run")?;
        assert_within("last_run", last, before, after);

        // The same claim again (a retry after a lost reply, or another scheduler): stale.
        assert_eq!(
            env.b.schedule_fire(&claim("s", tick, Some(next), HASH_A)).await?,
            FireOutcome::Stale { current: Some(next) }
        );
        assert_eq!(get(&env, "s").await?.state.run_count, 1);
        assert_eq!(env.stats().await?.counters.enqueued, 1);
        Ok(())
    }

    async fn schedule_fire_is_stale_not_due_or_not_found(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "s", 20).await?;
        let next = Some(at(tick, 60_000));
        // Another tick than the stored one.
        assert_eq!(
            env.b.schedule_fire(&claim("s", at(tick, -1000), Some(tick), HASH_A)).await?,
            FireOutcome::Stale { current: Some(tick) }
        );
        // A definition changed under the caller.
        assert_eq!(
            env.b.schedule_fire(&claim("s", tick, next, HASH_B)).await?,
            FireOutcome::Stale { current: Some(tick) }
        );
        // Not due on the backend's clock.
        let future = whole_ms(at(env.b.time().await?, 60_000));
        env.b.schedule_upsert(&entry("f"), HASH_A, None, Some(future)).await?;
        let before = Utc::now();
        let out =
            env.b.schedule_fire(&claim("f", future, Some(at(future, 60_000)), HASH_A)).await?;
        let after = Utc::now();
        match out {
            FireOutcome::NotDue { now } => assert_within("now", now, before, after),
            other => return Err(format!("expected NotDue, got {other:?}").into()),
        }
        // Disabled: no next run, stale.
        env.b.schedule_set_enabled("s", false, None).await?;
        assert_eq!(
            env.b.schedule_fire(&claim("s", tick, next, HASH_A)).await?,
            FireOutcome::Stale { current: None }
        );
        assert_eq!(
            env.b.schedule_fire(&claim("nope", tick, next, HASH_A)).await?,
            FireOutcome::NotFound
        );
        assert_eq!(env.stats().await?.counters.enqueued, 0, "nothing was written");
        assert_eq!(get(&env, "f").await?.state.next_run, Some(future));
        Ok(())
    }

    async fn schedule_fire_races_have_one_winner(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "s", 5).await?;
        let next = Some(at(tick, 1000));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let b = env.peer().await;
            let fire = claim("s", tick, next, HASH_A);
            tasks.spawn(async move { b.schedule_fire(&fire).await });
        }
        let mut fired = 0;
        let mut stale = 0;
        while let Some(r) = tasks.join_next().await {
            match r?? {
                FireOutcome::Fired => fired += 1,
                FireOutcome::Stale { current } => {
                    assert_eq!(current, next);
                    stale += 1;
                }
                other => return Err(format!("unexpected {other:?}").into()),
            }
        }
        assert_eq!((fired, stale), (1, 7));
        assert_eq!(env.stats().await?.counters.enqueued, 1);
        assert_eq!(get(&env, "s").await?.state.run_count, 1);
        Ok(())
    }

    async fn schedule_fire_of_an_existing_job_is_a_duplicate(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "s", 5).await?;
        // The tick's job exists already (e.g. the schedule was deleted and re-created with
        // the same first run after it had fired).
        env.add_job(tick_job("s", tick)).await?;
        let next = Some(at(tick, 60_000));
        assert_eq!(
            env.b.schedule_fire(&claim("s", tick, next, HASH_A)).await?,
            FireOutcome::Duplicate
        );
        let s = get(&env, "s").await?;
        assert_eq!((s.state.next_run, s.state.run_count, s.state.last_job_id), (next, 0, None));
        assert_eq!(env.stats().await?.counters.enqueued, 1);
        Ok(())
    }

    async fn schedule_run_now_leaves_the_next_run_alone(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let first = whole_ms(at(env.b.time().await?, 60_000));
        env.b.schedule_upsert(&entry("s"), HASH_A, Some(false), Some(first)).await?;
        let job = NewJob { priority: JobPriority::High, ..NewJob::new("tick_job", json!({})) };
        let fire = ScheduleFire { name: "s".into(), claim: None, job: job.clone() };
        // Disabled schedules run too: run-now is an operator's explicit request.
        assert_eq!(env.b.schedule_fire(&fire).await?, FireOutcome::Fired);
        let s = get(&env, "s").await?;
        assert_eq!((s.state.enabled, s.state.next_run), (false, None));
        assert_eq!((s.state.run_count, s.state.last_job_id), (1, Some(job.id)));
        let j = env.job(job.id).await?;
        assert_eq!((j.status, j.scheduled_at), (JobStatus::Pending, None));

        env.b.schedule_set_enabled("s", true, Some(first)).await?;
        let job2 = NewJob::new("tick_job", json!({}));
        let fire = ScheduleFire { name: "s".into(), claim: None, job: job2.clone() };
        assert_eq!(env.b.schedule_fire(&fire).await?, FireOutcome::Fired);
        let s = get(&env, "s").await?;
        assert_eq!(
            (s.state.next_run, s.state.run_count, s.state.last_job_id),
            (Some(first), 2, Some(job2.id))
        );

        let fire =
            ScheduleFire { name: "nope".into(), claim: None, job: NewJob::new("x", json!({})) };
        assert_eq!(env.b.schedule_fire(&fire).await?, FireOutcome::NotFound);
        assert!(env.b.get_job(fire.job.id).await?.is_none());
        Ok(())
    }

    async fn one_time_schedule_has_no_next_run_after_firing(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "once", 5).await?;
        assert_eq!(
            env.b.schedule_fire(&claim("once", tick, None, HASH_A)).await?,
            FireOutcome::Fired
        );
        let s = get(&env, "once").await?;
        assert_eq!((s.state.enabled, s.state.next_run, s.state.run_count), (true, None, 1));
        assert!(env.b.schedule_due(10).await?.due.is_empty());
        assert_eq!(
            env.b.schedule_fire(&claim("once", tick, None, HASH_A)).await?,
            FireOutcome::Stale { current: None }
        );
        // Re-upserting the same definition does not bring it back.
        env.b.schedule_upsert(&entry("once"), HASH_A, None, Some(tick)).await?;
        assert_eq!(get(&env, "once").await?.state.next_run, None);
        Ok(())
    }

    async fn schedule_arguments_that_no_backend_accepts(kind: Kind) -> TestResult {
        let env = Env::open(kind).await;
        let tick = due_schedule(&env, "s", 5).await?;
        // A next run that is not later than its tick would let the tick fire twice.
        for next in [tick, at(tick, -1)] {
            let err = env.b.schedule_fire(&claim("s", tick, Some(next), HASH_A)).await.err();
            assert!(matches!(err, Some(Error::InvalidSchedule { .. })), "got {err:?}");
        }
        for hash in ["", "not-hex", &"a".repeat(65)] {
            let err = env.b.schedule_upsert(&entry("h"), hash, None, Some(tick)).await.err();
            assert!(matches!(err, Some(Error::InvalidSchedule { .. })), "hash {hash:?}: {err:?}");
        }
        assert_eq!(get(&env, "s").await?.state.next_run, Some(tick), "nothing changed");
        assert!(env.b.schedule_get("h").await?.is_none());
        Ok(())
    }
}
