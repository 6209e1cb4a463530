//! The backend conformance suite: every behaviour of the [`Backend`] contract (see the
//! module docs of `jobs_core::backend`), written once and run against both backends.
//!
//! This file is the harness: the backend [`Kind`]s, the [`Env`] fixture and the helpers
//! the cases share, and [`conformance!`], which turns a module's list of cases (each an
//! `async fn(Kind) -> TestResult`) into `<module>::memory::<case>`,
//! `<module>::redis::<case>` and `<module>::cluster::<case>` tests (the last on a
//! three-master Redis Cluster). The cases live in one module per capability of the
//! contract. Redis tests share one private `redis-server` per test binary, each test in
//! its own namespace.
//!
//! Timing: backends decide due times and leases on their own clock, which is this machine's
//! clock for both (Redis `TIME` on loopback), so times are checked against windows read
//! with `Utc::now()` around each call, with a small tolerance for millisecond rounding.
//! Every wait is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{
    AckOutcome, Backend, BackendConfig, Completion, FailOutcome, Failure, FetchRequest, Fetched,
    Lease, LeasedJob, ReapOptions, ReapReport,
};
use jobs_core::{
    EnqueueOutcome, Error, Job, JobId, JobPriority, JobQueue, JobStatus, NewJob, PendingByPriority,
    QueueStats, RetryPolicy,
};
use jobs_test_support::{cluster_backend, redis_backend, unique_namespace};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// Generates one `#[tokio::test]` per case and backend, in the module that invokes it:
/// `memory::`, `redis::`, `cluster::<case>`, each calling the module's `<case>(Kind)`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> $crate::TestResult {
                    super::$case($crate::Kind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> $crate::TestResult {
                    super::$case($crate::Kind::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> $crate::TestResult {
                    super::$case($crate::Kind::Cluster).await
                }
            )*
        }
    };
}

// The cases, by capability (declared after the macro, which they use).
mod cancel;
mod complete_fail;
mod dead_letter;
mod delete;
mod enqueue;
mod fetch;
mod give_back;
mod leases;
mod limits;
mod listing;
mod progress;
mod queues;
mod retention;
mod retry_after;
mod retry_now;
mod schedules;
mod stats;
mod unique;

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
    FetchRequest {
        queues: Vec::new(),
        max,
        worker_id: "worker-1".into(),
        lease,
        grace: Duration::ZERO,
    }
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
    Failure { lease, error: error.into(), retryable, retry, retry_after: None }
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
