//! [`Scheduler`]: interval, cron and one-time schedules, turned into enqueued jobs exactly
//! once per tick, however many processes run a scheduler.
//!
//! # How it works
//!
//! Schedules live in the backend (Redis: the `cron` HASH and the `cron_due` ZSET of the
//! namespace), so a schedule registered, disabled or enabled through one process holds for
//! every process and survives restarts. Each schedule has a *next run*. Every process may
//! run the scheduler loop:
//!
//! 1. read the schedules due now on the backend's clock (one script call, which also
//!    returns the server's now and the earliest next run of all);
//! 2. for each, compute the run after this tick (a pure function of the definition, the
//!    tick and now; see [`MisfirePolicy`]) and *fire*: one atomic step that checks the
//!    schedule's next run is still this tick (compare-and-set), moves it, and enqueues the
//!    tick's job with the id `JobId::derived("cron:<name>:<tick ms>")`. Of any number of
//!    schedulers racing for a tick, exactly one wins; the others get "stale". Nothing is
//!    locked, so a crashed scheduler holds nothing up;
//! 3. sleep until the earliest next run, estimated on the server's clock from the last
//!    reply (plus a few milliseconds of jitter, at most [`SchedulerConfig::max_sleep`]),
//!    or until a schedule is changed through this [`Scheduler`]. There is no fixed polling:
//!    an idle scheduler makes one call per `max_sleep`. Changes made by another process are
//!    seen within `max_sleep`.
//!
//! Schedules declared with `#[every_seconds]`, `#[every_minutes]`, `#[daily_at]` and
//! `#[cron]` are upserted when the loop starts. A declared schedule whose definition is
//! unchanged keeps its state, including an operator's enable/disable and its next run;
//! a changed one takes the new definition and keeps its flag and counters. Schedules are
//! never deleted because a process does not declare them (an older or newer build may).
//!
//! ```
//! use jobs_core::{JobQueue, Registry, ScheduleSpec, Scheduler, SchedulerConfig};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jobs_core::Result<()> {
//! let queue = JobQueue::memory();
//! let registry = Arc::new(Registry::default()); // no handlers known: any job name goes
//! let scheduler = Scheduler::new(queue, registry, SchedulerConfig::default());
//! let daily = ScheduleSpec::cron("daily_report", "send_daily_summary_emails", "0 8 * * *");
//! scheduler.register(daily).await?;
//! let sync = ScheduleSpec::interval("portfolio_sync", "sync_all_portfolios", 300);
//! scheduler.register(sync).await?;
//! scheduler.disable("daily_report").await?;
//! let stats = scheduler.stats().await?;
//! assert_eq!((stats.total_tasks, stats.enabled_tasks, stats.disabled_tasks), (2, 1, 1));
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    Backend, FireOutcome, ScheduleEntry, ScheduleFire, StoredSchedule, TickClaim,
};
use crate::cron::Trigger;
use crate::error::{Error, Result};
use crate::job::{JobId, JobPriority, NewJob, RunAt, ms_to_time};
use crate::queue::JobQueue;
use crate::registry::{Registry, ScheduleDef, ScheduleKind};

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ScheduleType {
    /// Every `seconds`, at a fixed rate counted from the first run (which is one interval
    /// after the schedule is registered or enabled).
    Interval {
        /// The period, at least 1.
        seconds: u64,
    },
    /// On a 5-field cron expression (see [`CronExpr`](crate::CronExpr)).
    Cron {
        /// `minute hour day-of-month month day-of-week`.
        expression: String,
        /// IANA time zone the expression is read in (`None`: UTC).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Once, at `at` (an instant already past fires at once).
    Once {
        /// When.
        at: DateTime<Utc>,
    },
}

impl ScheduleType {
    /// `"interval"`, `"cron"` or `"once"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScheduleType::Interval { .. } => "interval",
            ScheduleType::Cron { .. } => "cron",
            ScheduleType::Once { .. } => "once",
        }
    }
}

/// What happens to ticks that were due while no scheduler was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Fire once for all the missed ticks, then resume on schedule: the next run is the
    /// first occurrence after now. The default: a scheduler that was down for an hour does
    /// not flood the queue with sixty copies of a one-minute job.
    #[default]
    Coalesce,
    /// Fire every missed tick, one after the other, then resume.
    CatchUp,
}

/// A schedule to register: the spec's `register(name, job_name, schedule_type, …)`.
///
/// ```
/// use jobs_core::{JobPriority, MisfirePolicy, ScheduleSpec};
///
/// let spec = ScheduleSpec::cron("market_open", "fetch_market_data", "30 9 * * 1-5")
///     .timezone("America/New_York")
///     .args(serde_json::json!({"symbols": ["AAPL"]}))
///     .priority(JobPriority::High)
///     .misfire(MisfirePolicy::CatchUp);
/// assert!(spec.enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// The schedule's name, unique in the deployment (1-200 bytes, no control characters).
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleType,
    /// The arguments of its jobs (default `{}`).
    pub args: serde_json::Value,
    /// The priority of its jobs (default normal).
    pub priority: JobPriority,
    /// Whether it fires (default true).
    pub enabled: bool,
    /// What happens to ticks missed while no scheduler ran (default coalesce).
    #[serde(default)]
    pub misfire: MisfirePolicy,
}

impl ScheduleSpec {
    /// A schedule with default args, priority, flag and misfire policy.
    pub fn new(
        name: impl Into<String>,
        job_name: impl Into<String>,
        schedule: ScheduleType,
    ) -> Self {
        ScheduleSpec {
            name: name.into(),
            job_name: job_name.into(),
            schedule,
            args: serde_json::Value::Object(serde_json::Map::new()),
            priority: JobPriority::Normal,
            enabled: true,
            misfire: MisfirePolicy::Coalesce,
        }
    }

    /// Every `seconds`.
    pub fn interval(name: impl Into<String>, job_name: impl Into<String>, seconds: u64) -> Self {
        Self::new(name, job_name, ScheduleType::Interval { seconds })
    }

    /// On a cron expression, in UTC (see [`timezone`](Self::timezone)).
    pub fn cron(
        name: impl Into<String>,
        job_name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        Self::new(
            name,
            job_name,
            ScheduleType::Cron { expression: expression.into(), timezone: None },
        )
    }

    /// Once, at `at`.
    pub fn once(name: impl Into<String>, job_name: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self::new(name, job_name, ScheduleType::Once { at })
    }

    /// Reads a cron schedule's expression in this IANA zone (ignored by other types).
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        if let ScheduleType::Cron { timezone, .. } = &mut self.schedule {
            *timezone = Some(tz.into());
        }
        self
    }

    /// Sets the jobs' arguments.
    pub fn args(mut self, args: serde_json::Value) -> Self {
        self.args = args;
        self
    }

    /// Sets the jobs' priority.
    pub fn priority(mut self, p: JobPriority) -> Self {
        self.priority = p;
        self
    }

    /// Registers the schedule enabled or disabled.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Sets the misfire policy.
    pub fn misfire(mut self, m: MisfirePolicy) -> Self {
        self.misfire = m;
        self
    }
}

/// A schedule as the API and the stats show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// `"interval"`, `"cron"` or `"once"`.
    pub schedule_type: String,
    /// The period of an interval schedule.
    pub interval_seconds: Option<u64>,
    /// The expression of a cron schedule.
    pub cron_expression: Option<String>,
    /// The time zone of a cron schedule (`None`: UTC).
    pub timezone: Option<String>,
    /// The instant of a one-time schedule.
    pub run_at: Option<DateTime<Utc>>,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// The priority of its jobs.
    pub priority: JobPriority,
    /// Whether it fires.
    pub enabled: bool,
    /// When it last enqueued a job.
    pub last_run: Option<DateTime<Utc>>,
    /// Its next tick (`None` when disabled, or for a one-time schedule that has fired).
    pub next_run: Option<DateTime<Utc>>,
    /// How many jobs it has enqueued (ticks and run-now).
    pub run_count: u64,
    /// The last job it enqueued.
    pub last_job_id: Option<JobId>,
    /// What happens to missed ticks.
    pub misfire_policy: MisfirePolicy,
}

impl From<StoredSchedule> for ScheduleInfo {
    fn from(s: StoredSchedule) -> Self {
        let e = s.entry;
        let (interval_seconds, cron_expression, timezone, run_at) = match &e.schedule {
            ScheduleType::Interval { seconds } => (Some(*seconds), None, None, None),
            ScheduleType::Cron { expression, timezone } => {
                (None, Some(expression.clone()), timezone.clone(), None)
            }
            ScheduleType::Once { at } => (None, None, None, Some(*at)),
        };
        ScheduleInfo {
            schedule_type: e.schedule.as_str().to_owned(),
            name: e.name,
            job_name: e.job_name,
            interval_seconds,
            cron_expression,
            timezone,
            run_at,
            args: e.args,
            priority: e.priority,
            enabled: s.state.enabled,
            last_run: s.state.last_run,
            next_run: s.state.next_run,
            run_count: s.state.run_count,
            last_job_id: s.state.last_job_id,
            misfire_policy: e.misfire,
        }
    }
}

/// The spec's "Scheduler Statistics".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerStats {
    /// Whether this process's scheduler loop is running.
    pub running: bool,
    /// Schedules in the deployment.
    pub total_tasks: usize,
    /// Enabled schedules.
    pub enabled_tasks: usize,
    /// Disabled schedules.
    pub disabled_tasks: usize,
    /// Enabled schedules whose next run has come (on the backend's clock) and not fired yet.
    pub due_tasks: usize,
    /// Every schedule, by name.
    pub tasks: Vec<ScheduleInfo>,
}

/// How the scheduler loop behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The longest single sleep (default 5 s): bounds how late a change made by another
    /// process is noticed, and how long a lost wake-up can last.
    pub max_sleep: Duration,
    /// Up to this much random delay is added to each wake-up (default 10 ms), so that the
    /// schedulers of many processes do not all hit the backend in the same millisecond.
    pub jitter: Duration,
    /// Most due schedules handled per backend read (default 100).
    pub batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_sleep: Duration::from_secs(5),
            jitter: Duration::from_millis(10),
            batch: 100,
        }
    }
}

/// The scheduler: the spec's `job_scheduler`. Cheap to clone; clones share the loop.
///
/// The management calls (`register`, `enable`, …) work whether or not the loop runs in
/// this process: they change the shared backend, and whichever processes run a loop fire
/// the schedules.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    queue: JobQueue,
    registry: Arc<Registry>,
    cfg: SchedulerConfig,
    /// Signalled when a schedule is changed through this scheduler, so that the loop
    /// re-reads at once (`notify_one` keeps a permit if the loop is busy, so no change is
    /// missed between its read and its sleep).
    changed: Notify,
    running: Mutex<Option<Running>>,
}

struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("backend", &self.inner.queue.backend().kind())
            .field("running", &self.is_running())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler over `queue`'s backend. Jobs take their defaults (retries, timeout)
    /// from their handler in `registry`, then from the queue. The loop is not started.
    pub fn new(queue: JobQueue, registry: Arc<Registry>, cfg: SchedulerConfig) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                queue,
                registry,
                cfg,
                changed: Notify::new(),
                running: Mutex::new(None),
            }),
        }
    }

    fn backend(&self) -> &Arc<dyn Backend> {
        self.inner.queue.backend()
    }

    /// Starts the loop on the current tokio runtime: it first upserts the schedules
    /// declared with the macros, then fires due ticks until [`stop`](Self::stop).
    /// Starting a running scheduler is an error.
    pub fn start(&self) -> Result<()> {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return Err(Error::Config("the scheduler is already running".into()));
        }
        let token = CancellationToken::new();
        let task = tokio::spawn(run_loop(self.clone(), token.clone()));
        *running = Some(Running { token, task });
        Ok(())
    }

    /// Stops the loop and waits for it (a tick being fired completes first; the fire is
    /// atomic either way). Stopping a stopped scheduler does nothing.
    pub async fn stop(&self) {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(r) = running {
            r.token.cancel();
            if let Err(e) = r.task.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "scheduler loop panicked");
            }
        }
    }

    /// Whether this scheduler's loop is running.
    pub fn is_running(&self) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }

    /// Registers a schedule, or replaces the one with this name. Re-registering the same
    /// definition with the same flag changes nothing (the next run is kept).
    ///
    /// Errors: [`Error::UnknownHandler`] if `job_name` is not a handler this process knows
    /// (checked only when it knows any: an API-only process may have none linked);
    /// [`Error::InvalidArgs`] if the args do not fit that handler; [`Error::InvalidSchedule`]
    /// for a bad name, cron expression or time zone, an interval of 0, or a cron expression
    /// with no future occurrence.
    pub async fn register(&self, spec: ScheduleSpec) -> Result<ScheduleInfo> {
        let (entry, hash, trigger) = self.entry_for(&spec)?;
        let now = self.backend().time().await?;
        let first = first_run(&spec.name, &trigger, now)?;
        self.backend().schedule_upsert(&entry, &hash, Some(spec.enabled), first).await?;
        self.inner.changed.notify_one();
        self.get(&spec.name).await
    }

    /// Deletes a schedule. Jobs it already enqueued are not touched.
    /// Errors: [`Error::ScheduleNotFound`].
    pub async fn unregister(&self, name: &str) -> Result<()> {
        if !self.backend().schedule_remove(name).await? {
            return Err(not_found(name));
        }
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Enables a schedule: its next run is the first occurrence after now (one interval
    /// from now; a one-time schedule whose instant has passed fires at once). Enabling an
    /// enabled schedule changes nothing. Errors: [`Error::ScheduleNotFound`].
    pub async fn enable(&self, name: &str) -> Result<ScheduleInfo> {
        let stored = self.backend().schedule_get(name).await?.ok_or_else(|| not_found(name))?;
        let trigger = Trigger::new(&stored.entry.schedule)?;
        let now = self.backend().time().await?;
        let first = first_run(name, &trigger, now)?;
        let s = self.backend().schedule_set_enabled(name, true, first).await?;
        self.inner.changed.notify_one();
        Ok(s.into())
    }

    /// Disables a schedule: it keeps its definition and counters but does not fire.
    /// Errors: [`Error::ScheduleNotFound`].
    pub async fn disable(&self, name: &str) -> Result<ScheduleInfo> {
        let s = self.backend().schedule_set_enabled(name, false, None).await?;
        self.inner.changed.notify_one();
        Ok(s.into())
    }

    /// Enqueues one job of the schedule now, enabled or not. It counts in `run_count` and
    /// `last_job_id`; the next run does not move. Errors: [`Error::ScheduleNotFound`].
    pub async fn run_now(&self, name: &str) -> Result<JobId> {
        let stored = self.backend().schedule_get(name).await?.ok_or_else(|| not_found(name))?;
        let id = JobId::new();
        let fire =
            ScheduleFire { name: name.to_owned(), claim: None, job: job_for(&stored.entry, id) };
        match self.backend().schedule_fire(&fire).await? {
            FireOutcome::Fired => Ok(id),
            FireOutcome::NotFound => Err(not_found(name)),
            other => Err(Error::Backend(format!("unexpected outcome of run-now: {other:?}"))),
        }
    }

    /// Every schedule, by name.
    pub async fn list(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.backend().schedule_list().await?.into_iter().map(Into::into).collect())
    }

    /// One schedule. Errors: [`Error::ScheduleNotFound`].
    pub async fn get(&self, name: &str) -> Result<ScheduleInfo> {
        self.backend().schedule_get(name).await?.map(Into::into).ok_or_else(|| not_found(name))
    }

    /// The spec's "Scheduler Statistics".
    pub async fn stats(&self) -> Result<SchedulerStats> {
        let tasks = self.list().await?;
        let now = self.backend().time().await?;
        let enabled_tasks = tasks.iter().filter(|t| t.enabled).count();
        Ok(SchedulerStats {
            running: self.is_running(),
            total_tasks: tasks.len(),
            enabled_tasks,
            disabled_tasks: tasks.len() - enabled_tasks,
            due_tasks: tasks
                .iter()
                .filter(|t| t.enabled && t.next_run.is_some_and(|n| n <= now))
                .count(),
            tasks,
        })
    }

    /// Upserts every schedule declared with the macros (the loop does this when it
    /// starts). An unchanged declaration keeps its state, including an operator's
    /// enable/disable. Returns how many were created or updated.
    pub async fn sync_registry(&self) -> Result<usize> {
        let defs: Vec<ScheduleDef> = self.inner.registry.schedules().cloned().collect();
        if defs.is_empty() {
            return Ok(0);
        }
        let now = self.backend().time().await?;
        let mut changed = 0;
        for def in &defs {
            let spec = self.spec_from_def(def);
            let (entry, hash, trigger) = self.entry_for(&spec)?;
            let first = first_run(&spec.name, &trigger, now)?;
            let out = self.backend().schedule_upsert(&entry, &hash, None, first).await?;
            if out != crate::backend::UpsertOutcome::Kept {
                tracing::info!(schedule = %spec.name, outcome = ?out, "declared schedule stored");
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The spec of a declared schedule: its priority, else its handler's, else the queue's.
    fn spec_from_def(&self, def: &ScheduleDef) -> ScheduleSpec {
        let schedule = match def.kind {
            ScheduleKind::Interval { secs } => ScheduleType::Interval { seconds: secs },
            ScheduleKind::Cron { expr } => {
                ScheduleType::Cron { expression: expr.to_owned(), timezone: None }
            }
        };
        let handler_prio =
            self.inner.registry.handler(def.handler).and_then(|h| h.defaults().priority);
        let priority =
            def.priority.or(handler_prio).unwrap_or(self.inner.queue.defaults().priority);
        ScheduleSpec::new(def.name, def.handler, schedule).args(def.args.clone()).priority(priority)
    }

    /// Checks a spec and builds what the backend stores: the entry (with the handler's
    /// retries and timeout resolved), its hash, and the parsed trigger.
    fn entry_for(&self, spec: &ScheduleSpec) -> Result<(ScheduleEntry, String, Trigger)> {
        let invalid = |reason: String| Error::InvalidSchedule { reason };
        if spec.name.is_empty() || spec.name.len() > 200 || spec.name.chars().any(char::is_control)
        {
            return Err(invalid(
                "schedule name must be 1 to 200 bytes long, without control characters".into(),
            ));
        }
        let trigger = Trigger::new(&spec.schedule)
            .map_err(|e| invalid(format!("schedule `{}`: {}", spec.name, strip(&e))))?;
        let registry = &self.inner.registry;
        let handler = registry.handler(&spec.job_name);
        if handler.is_none() && registry.handlers().len() > 0 {
            return Err(Error::UnknownHandler { name: spec.job_name.clone() });
        }
        if handler.is_some() {
            registry.validate_args(&spec.job_name, &spec.args)?;
        }
        let d = self.inner.queue.defaults();
        let hd = handler.map(|h| h.defaults()).unwrap_or_default();
        let timeout = hd.timeout.unwrap_or(d.timeout);
        let entry = ScheduleEntry {
            name: spec.name.clone(),
            job_name: spec.job_name.clone(),
            schedule: spec.schedule.clone(),
            args: spec.args.clone(),
            priority: spec.priority,
            max_retries: hd.max_retries.unwrap_or(d.max_retries),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            misfire: spec.misfire,
        };
        // The job it will enqueue must be valid (job name, timeout, retries) now, not at
        // its first tick.
        job_for(&entry, JobId::new()).validate()?;
        let hash = definition_hash(&entry)?;
        Ok((entry, hash, trigger))
    }
}

/// The job a schedule enqueues, under `id`.
fn job_for(e: &ScheduleEntry, id: JobId) -> NewJob {
    NewJob {
        id,
        name: e.job_name.clone(),
        args: e.args.clone(),
        priority: e.priority,
        max_retries: e.max_retries,
        timeout: Duration::from_millis(e.timeout_ms),
        run_at: RunAt::Now,
        user_id: None,
    }
}

/// The id of a tick's job: the same in every process, so the job exists at most once.
pub(crate) fn tick_job_id(name: &str, tick_ms: i64) -> JobId {
    JobId::derived(&format!("cron:{name}:{tick_ms}"))
}

/// 64-bit FNV-1a of the entry's JSON, in hex: stable across processes, builds and Rust
/// versions (unlike `DefaultHasher`), which is what comparing definitions stored by other
/// processes needs. `serde_json` writes struct fields in declaration order and object keys
/// sorted, so equal definitions give equal text.
fn definition_hash(e: &ScheduleEntry) -> Result<String> {
    let bytes = serde_json::to_vec(e)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// The first run of a schedule registered or enabled at `now`.
fn first_run(name: &str, trigger: &Trigger, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    match trigger.first(now.timestamp_millis()) {
        Some(ms) => Ok(ms_to_time(ms).or(Some(now))),
        None => Err(Error::InvalidSchedule {
            reason: format!("schedule `{name}` has no occurrence after {now}"),
        }),
    }
}

fn not_found(name: &str) -> Error {
    Error::ScheduleNotFound { name: name.to_owned() }
}

/// The reason of an [`Error::InvalidSchedule`], without its "invalid schedule: " prefix
/// (for wrapping it with the schedule's name).
fn strip(e: &Error) -> String {
    match e {
        Error::InvalidSchedule { reason } => reason.clone(),
        other => other.to_string(),
    }
}

/// The loop: sync declared schedules, then fire due ticks and sleep until the next one.
async fn run_loop(s: Scheduler, token: CancellationToken) {
    let max = s.inner.cfg.max_sleep.max(Duration::from_millis(1));
    let mut backoff = Duration::from_millis(100);
    // Declared schedules first; a backend that is down is retried, not fatal.
    loop {
        match s.sync_registry().await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot store the declared schedules; retrying");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
    backoff = Duration::from_millis(100);
    tracing::debug!("scheduler loop started");
    while !token.is_cancelled() {
        let wait = match fire_due(&s).await {
            Ok(w) => {
                backoff = Duration::from_millis(100);
                w
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: backend call failed; retrying");
                let w = backoff;
                backoff = (backoff * 2).min(max);
                w
            }
        };
        if wait.is_zero() {
            continue;
        }
        let jitter = s.inner.cfg.jitter;
        let wait = wait.min(max) + jitter.mul_f64(rand::random::<f64>());
        tokio::select! {
            () = token.cancelled() => break,
            () = s.inner.changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::debug!("scheduler loop stopped");
}

/// Fires what is due; returns how long to sleep (zero: look again at once).
async fn fire_due(s: &Scheduler) -> Result<Duration> {
    let backend = s.backend();
    let sent = Instant::now();
    let due = backend.schedule_due(s.inner.cfg.batch).await?;
    let received = Instant::now();
    // The server read its clock somewhere inside the round trip: take the middle.
    let server_now_at_receipt = due.now + (received - sent) / 2;
    let now_ms = due.now.timestamp_millis();

    if due.due.is_empty() {
        return Ok(match due.next_run {
            None => s.inner.cfg.max_sleep,
            // Something is due but none came back: only records the backend could not
            // read (logged there). Back off instead of spinning on them.
            Some(next) if next <= due.now => Duration::from_secs(1),
            Some(next) => {
                let until = (next - server_now_at_receipt).to_std().unwrap_or_default();
                // At least 1 ms, so that a next run a hair away does not spin.
                until.saturating_sub(received.elapsed()).max(Duration::from_millis(1))
            }
        });
    }

    let mut progressed = false;
    let mut retry_in: Option<Duration> = None;
    for (tick, stored) in due.due {
        match fire_tick(s, tick, &stored, now_ms).await {
            Ok(FireOutcome::Fired | FireOutcome::Duplicate | FireOutcome::Stale { .. }) => {
                progressed = true;
            }
            Ok(FireOutcome::NotFound) => progressed = true,
            Ok(FireOutcome::NotDue { now }) => {
                let d = (tick - now).to_std().unwrap_or_default().max(Duration::from_millis(1));
                retry_in = Some(retry_in.map_or(d, |r| r.min(d)));
            }
            Err(e) => {
                // An unusable definition (e.g. a zone this build does not know) stays due;
                // back off rather than spin on it.
                tracing::error!(schedule = %stored.entry.name, error = %e, "cannot fire schedule");
                retry_in = Some(
                    retry_in.map_or(Duration::from_secs(1), |r| r.min(Duration::from_secs(1))),
                );
            }
        }
    }
    // After any progress, read again at once: the reply has the exact next run.
    Ok(if progressed { Duration::ZERO } else { retry_in.unwrap_or(s.inner.cfg.max_sleep) })
}

/// Claims one tick and enqueues its job, in one atomic backend call.
async fn fire_tick(
    s: &Scheduler,
    tick: DateTime<Utc>,
    stored: &StoredSchedule,
    now_ms: i64,
) -> Result<FireOutcome> {
    let e = &stored.entry;
    let tick_ms = tick.timestamp_millis();
    let trigger = Trigger::new(&e.schedule)?;
    let next = trigger.after(tick_ms, now_ms, e.misfire).and_then(ms_to_time);
    let id = tick_job_id(&e.name, tick_ms);
    let fire = ScheduleFire {
        name: e.name.clone(),
        claim: Some(TickClaim { expected: tick, next, hash: stored.hash.clone() }),
        job: job_for(e, id),
    };
    let out = s.backend().schedule_fire(&fire).await?;
    match out {
        FireOutcome::Fired => tracing::debug!(
            schedule = %e.name,
            job.id = %id,
            late_ms = now_ms - tick_ms,
            next = ?next,
            "schedule fired"
        ),
        FireOutcome::Duplicate => {
            tracing::warn!(schedule = %e.name, job.id = %id, "tick's job existed already")
        }
        _ => tracing::trace!(schedule = %e.name, outcome = ?out, "tick not fired here"),
    }
    Ok(out)
}
