//! A testing mode for handlers: jobs go to an in-memory queue, a test asserts what was
//! enqueued and runs everything queued to completion when it chooses, on a virtual clock.
//!
//! [`TestQueue`] is a [`JobQueue`] on a [`MemoryBackend`] whose clock is a [`ManualClock`]:
//! time stands still until the test (or [`TestQueue::drain`]) moves it. Code under test
//! enqueues through the normal API ([`TestQueue::queue`]); the test then
//!
//! - asserts what was enqueued, typed by the handler's [`JobDefinition`]
//!   ([`TestQueue::assert_enqueued`], [`TestQueue::enqueued`]);
//! - runs every queued job with [`TestQueue::drain`]: one at a time, through the worker's
//!   own way of running a handler (its context, application state, timeout and panic
//!   handling, then the backend's complete/fail transitions with the retry policy). When
//!   nothing is ready the clock jumps to the next due time, so a delayed job or a retry's
//!   2-minute backoff takes no real time. Jobs enqueued by handlers run too, up to a bound
//!   ([`TestQueue::with_max_runs`], 10,000 attempts by default), beyond which `drain`
//!   returns an error instead of running forever;
//! - fires schedules by hand ([`TestQueue::tick_schedules`], [`TestQueue::advance`])
//!   through the scheduler's normal fire path. `drain` never fires schedules itself (a
//!   recurring schedule would never let it finish).
//!
//! ```rust,standalone_crate
//! use jobs_core::prelude::*;
//! use jobs_core::testing::{self, RunOutcome};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SyncPortfolio { user_id: String }
//!
//! #[job_handler("sync_portfolio")]
//! async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<String, JobError> {
//!     if ctx.attempt() < 3 {
//!         return Err(JobError::msg("broker timed out"));
//!     }
//!     Ok(format!("synced {}", args.user_id))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let test = testing::queue();
//! let id = test.queue().enqueue_typed::<SyncPortfolioJob>(SyncPortfolio { user_id: "u1".into() })
//!     .await
//!     .unwrap();
//! test.assert_enqueued::<SyncPortfolioJob>(|args| args.user_id == "u1");
//!
//! // Two failures, two backoffs (2 and 4 minutes of virtual time), then success.
//! let drained = test.drain().await.unwrap();
//! assert_eq!(drained.runs.len(), 3);
//! assert_eq!(drained.outcome(id), Some(&RunOutcome::Completed(serde_json::json!("synced u1"))));
//! # }
//! ```
//!
//! [`MemoryBackend`]: crate::backend::memory::MemoryBackend

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use crate::backend::memory::ManualClock;
use crate::backend::memory::MemoryBackend;
use crate::backend::{
    Backend, BackendConfig, Completion, FailOutcome, Failure, FetchRequest, ThrottleOutcome,
};
use crate::context::State;
use crate::error::Error;
use crate::handler::JobDefinition;
use crate::job::{JobId, JobStatus};
use crate::queue::JobQueue;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::worker::dispatch::{Outcome, settle, start_handler};

/// The default bound on the attempts one [`TestQueue::drain`] runs.
pub const DEFAULT_MAX_RUNS: usize = 10_000;

/// Schedule fire passes one [`TestQueue::tick_schedules`] makes at most.
const MAX_FIRE_PASSES: usize = 1_000;

/// A [`TestQueue`] over the handlers linked into the test binary: [`TestQueue::new`].
pub fn queue() -> TestQueue {
    TestQueue::new()
}

/// An in-memory queue on a virtual clock, with the handlers of a registry, for tests.
/// See the [module documentation](self).
#[derive(Debug)]
pub struct TestQueue {
    backend: Arc<MemoryBackend>,
    queue: JobQueue,
    clock: ManualClock,
    registry: Arc<Registry>,
    state: Arc<State>,
    retry: RetryPolicy,
    max_runs: usize,
    scheduler: Scheduler,
}

impl TestQueue {
    /// A queue running the handlers linked into this binary (the `#[job_handler]`s of the
    /// crates it links), with the default retry policy, on a clock set to the current time.
    ///
    /// # Panics
    ///
    /// If the linked handlers do not form a valid registry (two handlers of one name…):
    /// the panic names the problem.
    pub fn new() -> Self {
        match Registry::global() {
            Ok(r) => Self::with_registry(r.clone()),
            Err(e) => panic!("testing: the linked handlers do not form a registry: {e}"),
        }
    }

    /// A queue running the handlers of `registry` only.
    pub fn with_registry(registry: Registry) -> Self {
        let clock = ManualClock::new();
        let backend = Arc::new(MemoryBackend::with_clock(BackendConfig::default(), clock.clone()));
        backend.keep_journal();
        let queue = JobQueue::from_backend(backend.clone());
        let registry = Arc::new(registry);
        let scheduler = Scheduler::new(queue.clone(), registry.clone(), SchedulerConfig::default());
        TestQueue {
            backend,
            queue,
            clock,
            registry,
            state: Arc::new(State::new()),
            retry: RetryPolicy::default(),
            max_runs: DEFAULT_MAX_RUNS,
            scheduler,
        }
    }

    /// The application state handlers find with [`JobContext::state`](crate::JobContext::state).
    pub fn with_state(mut self, state: State) -> Self {
        self.state = Arc::new(state);
        self
    }

    /// The backoff applied to failed attempts (default: [`RetryPolicy::default`], as a
    /// worker's).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The most attempts one [`drain`](Self::drain) runs before it gives up with
    /// [`DrainError::Limit`] (default [`DEFAULT_MAX_RUNS`]).
    pub fn with_max_runs(mut self, max: usize) -> Self {
        self.max_runs = max;
        self
    }

    /// The queue to enqueue through (hand it to the code under test; clones share it).
    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// The virtual clock the queue reads.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// A scheduler on this queue, to register schedules by hand; they fire only through
    /// [`tick_schedules`](Self::tick_schedules) and [`advance`](Self::advance).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Every job enqueued on this queue (by the test, by handlers, by schedules), oldest
    /// first, with the arguments it was enqueued with and its status now.
    pub fn jobs(&self) -> Vec<EnqueuedJob> {
        self.backend
            .journal()
            .into_iter()
            .map(|(id, name, args, status)| EnqueuedJob { id, name, args, status })
            .collect()
    }

    /// The arguments of every job of handler `J` enqueued on this queue (whatever became of
    /// it since), oldest first.
    ///
    /// # Panics
    ///
    /// If a job of that name has arguments that are not a `J::Args`.
    pub fn enqueued<J: JobDefinition>(&self) -> Vec<J::Args> {
        self.jobs().iter().filter(|j| j.name == J::NAME).map(decode::<J>).collect()
    }

    /// The arguments of the first job of handler `J` enqueued on this queue (whatever
    /// became of it since) for which `matches` holds.
    ///
    /// # Panics
    ///
    /// If there is none: the message lists every job enqueued, with its arguments.
    pub fn assert_enqueued<J: JobDefinition>(&self, matches: impl Fn(&J::Args) -> bool) -> J::Args {
        let jobs = self.jobs();
        let found = jobs.iter().filter(|j| j.name == J::NAME).map(decode::<J>).find(|a| matches(a));
        match found {
            Some(args) => args,
            None => panic!(
                "no `{}` job matching the predicate was enqueued; {}",
                J::NAME,
                listing(&jobs)
            ),
        }
    }

    /// Runs every ready job, then every delayed or retrying one (moving the clock to its
    /// due time), including the jobs they enqueue, until none is left waiting: one
    /// [`Run`] per attempt, in the order they ran.
    ///
    /// # Errors
    ///
    /// [`DrainError::Limit`] once [`with_max_runs`](Self::with_max_runs) attempts ran and
    /// more are waiting (the runs so far are in it), and [`DrainError::Backend`] if a
    /// backend call fails.
    pub async fn drain(&self) -> Result<Drained, DrainError> {
        let mut drained = Drained::default();
        let req = FetchRequest {
            queues: Vec::new(),
            max: 1,
            worker_id: "testing".into(),
            lease: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(60),
        };
        loop {
            let fetched = self.queue.fetch(&req).await?;
            let Some(lj) = fetched.jobs.into_iter().next() else {
                match fetched.next_due_in {
                    Some(d) => {
                        self.clock.advance(d.max(Duration::from_millis(1)));
                        continue;
                    }
                    None => return Ok(drained),
                }
            };
            if drained.runs.len() >= self.max_runs {
                self.backend.release(&[lj.lease]).await?;
                return Err(DrainError::Limit { limit: self.max_runs, drained });
            }
            let (mut job, lease) = (lj.job, lj.lease);
            let (id, name, timeout) = (job.id, job.name.clone(), job.timeout);
            let at = self.clock.now();
            let outcome = match start_handler(
                &self.registry,
                &mut job,
                self.queue.clone(),
                self.state.clone(),
                CancellationToken::new(),
                (Duration::from_secs(24 * 3600), Duration::from_secs(60)),
            ) {
                Err(outcome) => outcome,
                Ok(call) => {
                    let mut task = tokio::spawn(call);
                    let joined = tokio::time::timeout(timeout, &mut task).await;
                    if joined.is_err() {
                        task.abort();
                    }
                    settle(joined, timeout)
                }
            };
            let outcome = match outcome {
                Outcome::Success(result) => {
                    match self
                        .queue
                        .complete_many(&[Completion { lease, result: result.clone() }])
                        .await?
                        .pop()
                    {
                        Some(Err(Error::InvalidState { status: JobStatus::Cancelled, .. })) => {
                            RunOutcome::Cancelled
                        }
                        Some(Err(e)) => return Err(e.into()),
                        _ => RunOutcome::Completed(result),
                    }
                }
                Outcome::Failure { error, retryable, retry_after } => {
                    self.fail(lease, error, retryable, retry_after).await?
                }
                Outcome::CancelAborted { error } => self.fail(lease, error, true, None).await?,
                Outcome::Throttled { delay } => {
                    match self.queue.backend().throttle(&lease, delay).await? {
                        ThrottleOutcome::Parked { until } => RunOutcome::RateLimited { until },
                        ThrottleOutcome::Delayed { at } => RunOutcome::RateLimited { until: at },
                        ThrottleOutcome::Cancelled | ThrottleOutcome::Stale => {
                            RunOutcome::Cancelled
                        }
                    }
                }
                // No other process runs handlers here: the attempt fails, as it is.
                Outcome::Unhandled => {
                    let error = format!("no handler registered for job `{name}`");
                    self.fail(lease, error, true, None).await?
                }
                Outcome::Abandoned => {
                    self.fail(lease, "handler task was cancelled".into(), true, None).await?
                }
            };
            drained.runs.push(Run { id, name, attempt: lease.attempt, at, outcome });
        }
    }

    async fn fail(
        &self,
        lease: crate::backend::Lease,
        error: String,
        retryable: bool,
        retry_after: Option<std::time::Duration>,
    ) -> Result<RunOutcome, DrainError> {
        let failure =
            Failure { lease, error: error.clone(), retryable, retry: self.retry, retry_after };
        Ok(match self.queue.fail(&failure).await? {
            FailOutcome::Retrying { at } => RunOutcome::Failed { error, retry_at: at },
            FailOutcome::Dead => RunOutcome::DeadLettered { error },
            FailOutcome::Cancelled | FailOutcome::Stale => RunOutcome::Cancelled,
        })
    }

    /// Stores the schedules declared in the registry (as a scheduler does at start), then
    /// fires every schedule due at the clock's current time through the scheduler's fire
    /// path; returns how many jobs that enqueued. Run them with [`drain`](Self::drain).
    ///
    /// # Errors
    ///
    /// A backend call that fails, or a declared schedule that cannot be stored.
    pub async fn tick_schedules(&self) -> crate::Result<usize> {
        self.scheduler.sync_registry().await?;
        let before = self.jobs().len();
        for _ in 0..MAX_FIRE_PASSES {
            if !self.scheduler.fire_due_once().await?.is_zero() {
                break;
            }
        }
        Ok(self.jobs().len() - before)
    }

    /// Moves the clock forward by `d`, then [`tick_schedules`](Self::tick_schedules).
    ///
    /// # Errors
    ///
    /// As `tick_schedules`.
    pub async fn advance(&self, d: Duration) -> crate::Result<usize> {
        self.clock.advance(d);
        self.tick_schedules().await
    }
}

impl Default for TestQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// A job as it was enqueued on a [`TestQueue`].
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueuedJob {
    /// Its id.
    pub id: JobId,
    /// Its handler's name.
    pub name: String,
    /// The arguments it was enqueued with.
    pub args: serde_json::Value,
    /// Its status now (`None`: its record was purged).
    pub status: Option<JobStatus>,
}

fn decode<J: JobDefinition>(job: &EnqueuedJob) -> J::Args {
    match serde_json::from_value(job.args.clone()) {
        Ok(args) => args,
        Err(e) => panic!(
            "job {} (`{}`) has arguments that are not a `{}`: {e}; they are {}",
            job.id,
            job.name,
            std::any::type_name::<J::Args>(),
            job.args
        ),
    }
}

fn listing(jobs: &[EnqueuedJob]) -> String {
    if jobs.is_empty() {
        return "no job at all was enqueued".into();
    }
    let mut out = format!("{} job(s) were:", jobs.len());
    for j in jobs {
        let status = j.status.map_or_else(|| "purged".to_owned(), |s| s.to_string());
        let _ = write!(out, "\n  - `{}` ({status}) args {}", j.name, j.args);
    }
    out
}

/// What one [`TestQueue::drain`] ran.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    /// Every attempt, in the order they ran.
    pub runs: Vec<Run>,
}

impl Drained {
    /// The outcome of the last attempt of job `id` (`None`: it did not run).
    pub fn outcome(&self, id: JobId) -> Option<&RunOutcome> {
        self.runs.iter().rev().find(|r| r.id == id).map(|r| &r.outcome)
    }

    /// The attempts of handler `J`'s jobs.
    pub fn of<J: JobDefinition>(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.name == J::NAME)
    }

    /// How many attempts completed their job.
    pub fn completed(&self) -> usize {
        self.runs.iter().filter(|r| matches!(r.outcome, RunOutcome::Completed(_))).count()
    }

    /// How many attempts ended their job in the dead-letter queue.
    pub fn dead_lettered(&self) -> usize {
        self.runs.iter().filter(|r| matches!(r.outcome, RunOutcome::DeadLettered { .. })).count()
    }
}

/// One attempt of one job during a [`TestQueue::drain`].
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The job.
    pub id: JobId,
    /// Its handler's name.
    pub name: String,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// The virtual time it ran at.
    pub at: DateTime<Utc>,
    /// What it came to.
    pub outcome: RunOutcome,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The job completed with this result.
    Completed(serde_json::Value),
    /// The attempt failed; the job is retried at `retry_at` (a later run of the same drain).
    Failed {
        /// The error, as stored on the job.
        error: String,
        /// When the retry is due (virtual time).
        retry_at: DateTime<Utc>,
    },
    /// The attempt failed and the job went to the dead-letter queue (no retry left, or a
    /// permanent error).
    DeadLettered {
        /// The error, as stored on the job.
        error: String,
    },
    /// The job was cancelled while it ran.
    Cancelled,
    /// The handler sent it back with `ctx.rate_limited`: it runs again from `until`
    /// (virtual time), without having used a retry.
    RateLimited {
        /// When it (and its rate limiters) may start again.
        until: DateTime<Utc>,
    },
}

/// Why a [`TestQueue::drain`] stopped before the queue was empty.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The bound on attempts was reached with jobs still waiting (handlers enqueueing
    /// jobs without end, or more work than the bound).
    #[error("drain stopped after {limit} attempts with jobs still queued")]
    Limit {
        /// The bound.
        limit: usize,
        /// What ran until then.
        drained: Drained,
    },
    /// A backend call failed.
    #[error(transparent)]
    Backend(#[from] Error),
}
