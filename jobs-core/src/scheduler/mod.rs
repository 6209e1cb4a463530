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
//!    schedule's next run is still this tick and its definition and generation are still
//!    the ones read (compare-and-set), moves it, and enqueues the tick's job with the id
//!    `JobId::derived("cron:<name>:<tick ms>")` (`…:g<generation>` appended once the
//!    schedule has been edited or re-enabled: see below). Of any number of schedulers
//!    racing for a tick, exactly one wins; the others get "stale". Nothing is locked, so a
//!    crashed scheduler holds nothing up;
//! 3. sleep until the earliest next run, estimated on the server's clock from the last
//!    reply (plus a few milliseconds of jitter, at most [`SchedulerConfig::max_sleep`]),
//!    or until a schedule is changed through this [`Scheduler`]. There is no fixed polling:
//!    an idle scheduler makes one call per `max_sleep`. Changes made by another process are
//!    seen within `max_sleep`.
//!
//! # What is stored, and what each process decides
//!
//! The stored definition holds what the [`ScheduleSpec`](crate::ScheduleSpec) sets (name, handler,
//! when, args, priority, misfire policy) and a copy of the handler attribute's options, never this
//! process's defaults, and its hash covers the spec's part only. The options of a tick's job (and
//! of a run-now job) are resolved when it is enqueued, by the process that enqueues it, with the
//! rule of [`options`](crate::options): the spec's priority, else the handler's attribute as linked
//! in that process (the stored copy if it does not have the handler), else its queue's defaults. So
//! services with different defaults, or an old and a new build, store the same definition, and
//! their start-up upserts leave the next run alone. Schedules stored by builds that wrote resolved
//! retries and timeout still load (those values become the stored handler options); their hash
//! differs from the one computed now, so the first start-up upsert after the upgrade updates each
//! declared schedule once (its next run restarts from then).
//!
//! Every edit (an upsert that changes the definition or the flag) and every enable starts a
//! new *generation* of the definition, and a tick's job id includes it: a one-time schedule
//! edited or re-enabled after it fired (its instant, passed or not, is its next run again)
//! fires again, once. Deleting a schedule and registering it again starts over at
//! generation 0: a tick whose job still exists is then not fired twice.
//!
//! Schedules declared with `#[every_seconds]`, `#[every_minutes]`, `#[daily_at]` and
//! `#[cron]` are upserted when the loop starts. A declared schedule whose definition is
//! unchanged keeps its state, including an operator's enable/disable and its next run;
//! a changed one takes the new definition and keeps its flag and counters. Schedules are
//! never deleted because a process does not declare them (an older or newer build may).
//!
//! A backend that lost its data (a Redis restarted without persistence) is noticed: the
//! loop checks once per `max_sleep`, and at once when the backend answers again after
//! failing, that the declared schedules are stored, and stores the missing ones again with
//! a warning. Schedules registered through the API that were lost with them cannot be
//! recreated: they are logged as an error and listed in [`SchedulerStats::lost_tasks`]
//! (and the `jobs_schedules_lost` metric) until registered again.
//!
//! ```
//! use jobs_core::{JobQueue, Registry, ScheduleSpec, Scheduler, SchedulerConfig};
//! use std::sync::{Arc, Mutex};
mod presence;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::escape::Escaped;
use crate::job::{JobId, NewJob, check_horizon};
use crate::options::{JobDefaults, JobOptions, resolve};
use crate::queue::JobQueue;
use crate::registry::{Registry, ScheduleDef, ScheduleKind};
use crate::schedule::{
    FireOutcome, ScheduleEntry, ScheduleFire, ScheduleInfo, ScheduleSpec, ScheduleType,
    StoredSchedule, TickClaim, Trigger, UpsertOutcome, first_run, tick_job_id,
};
use crate::stats::SchedulerStats;
use crate::time::ms_to_time;

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

/// The scheduler. Cheap to clone; clones share the loop.
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
    /// What the loop knows of the stored schedules, to notice a backend that lost them.
    presence: Mutex<presence::Presence>,
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
    /// A scheduler over `queue`'s backend. The jobs it enqueues take their options from the
    /// schedule's spec, then from their handler in `registry` (the options stored with the
    /// schedule if `registry` lacks it), then from the queue's defaults, resolved when each
    /// job is enqueued. The loop is not started.
    pub fn new(queue: JobQueue, registry: Arc<Registry>, cfg: SchedulerConfig) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                queue,
                registry,
                cfg,
                changed: Notify::new(),
                running: Mutex::new(None),
                presence: Mutex::new(presence::Presence::default()),
            }),
        }
    }

    fn backend(&self) -> &Arc<dyn Backend> {
        self.inner.queue.backend()
    }

    /// Fires through the backend (which writes the job itself, not through the queue's
    /// enqueue) and counts a written job in `jobs_enqueued_total`, as the queue counts its
    /// own.
    async fn fire(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        let out = self.backend().schedule_fire(fire).await?;
        if out == FireOutcome::Fired {
            crate::metrics::record(&fire.job.name, crate::metrics::Event::Enqueued);
        }
        Ok(out)
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
                tracing::error!(error = %Escaped(&e), "scheduler loop panicked");
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
    /// definition with the same flag changes nothing (the next run is kept); a changed one
    /// starts a new generation (a one-time schedule whose instant has passed fires again).
    ///
    /// Errors: [`Error::UnknownHandler`] if `job_name` is not a handler this process knows
    /// (checked only when it knows any: an API-only process may have none linked);
    /// [`Error::InvalidArgs`] if the args do not fit that handler; [`Error::InvalidSchedule`]
    /// for a bad name, cron expression or time zone, an interval of 0, or a cron expression
    /// with no future occurrence.
    pub async fn register(&self, mut spec: ScheduleSpec) -> Result<ScheduleInfo> {
        // What `get`/`list` show can be registered back as a no-op: they show an unset
        // priority resolved (the handler's, else the default), so that value given back
        // for a schedule that sets none keeps it unset rather than pinning it (which
        // would change the definition and restart its next run).
        if let Some(p) = spec.priority
            && let Some(old) = self.backend().schedule_get(&spec.name).await?
            && old.entry.priority.is_none()
            && self.options(&old.entry).priority == p
        {
            spec.priority = None;
        }
        let (entry, hash, trigger) = self.entry_for(&spec)?;
        let now = self.backend().time().await?;
        // The horizon of enqueue, on the backend's clock.
        if let ScheduleType::Once { at } = spec.schedule {
            check_horizon(at, now).map_err(|why| Error::InvalidSchedule {
                reason: format!("schedule `{}`: its instant {why}", spec.name),
            })?;
        }
        let first = first_run(&spec.name, &trigger, now)?;
        self.backend().schedule_upsert(&entry, &hash, Some(spec.enabled), first).await?;
        let declared = self.inner.registry.schedules().any(|d| d.name == spec.name);
        self.presence().registered(&spec.name, declared);
        self.inner.changed.notify_one();
        self.get(&spec.name).await
    }

    /// Deletes a schedule. Jobs it already enqueued are not touched.
    /// Errors: [`Error::ScheduleNotFound`].
    pub async fn unregister(&self, name: &str) -> Result<()> {
        if !self.backend().schedule_remove(name).await? {
            return Err(not_found(name));
        }
        self.presence().removed(name);
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Enables a schedule: its next run is the first occurrence after now (one interval
    /// from now; a one-time schedule whose instant has passed fires at once, again if it
    /// fired before). Enabling an enabled schedule changes nothing.
    /// Errors: [`Error::ScheduleNotFound`].
    pub async fn enable(&self, name: &str) -> Result<ScheduleInfo> {
        let stored = self.backend().schedule_get(name).await?.ok_or_else(|| not_found(name))?;
        let trigger = Trigger::new(&stored.entry.schedule)?;
        let now = self.backend().time().await?;
        let first = first_run(name, &trigger, now)?;
        let s = self.backend().schedule_set_enabled(name, true, first).await?;
        self.inner.changed.notify_one();
        Ok(self.info(s))
    }

    /// Disables a schedule: it keeps its definition and counters but does not fire.
    /// Errors: [`Error::ScheduleNotFound`].
    pub async fn disable(&self, name: &str) -> Result<ScheduleInfo> {
        let s = self.backend().schedule_set_enabled(name, false, None).await?;
        self.inner.changed.notify_one();
        Ok(self.info(s))
    }

    /// Enqueues one job of the schedule now, enabled or not. It counts in `run_count` and
    /// `last_job_id`; the next run does not move. Errors: [`Error::ScheduleNotFound`].
    pub async fn run_now(&self, name: &str) -> Result<JobId> {
        let stored = self.backend().schedule_get(name).await?.ok_or_else(|| not_found(name))?;
        let id = JobId::new();
        let fire =
            ScheduleFire { name: name.to_owned(), claim: None, job: self.job(&stored.entry, id)? };
        match self.fire(&fire).await? {
            FireOutcome::Fired => Ok(id),
            FireOutcome::NotFound => Err(not_found(name)),
            other => Err(Error::Backend(format!("unexpected outcome of run-now: {other:?}"))),
        }
    }

    /// Every schedule, by name.
    pub async fn list(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.backend().schedule_list().await?.into_iter().map(|s| self.info(s)).collect())
    }

    /// One schedule. Errors: [`Error::ScheduleNotFound`].
    pub async fn get(&self, name: &str) -> Result<ScheduleInfo> {
        self.backend()
            .schedule_get(name)
            .await?
            .map(|s| self.info(s))
            .ok_or_else(|| not_found(name))
    }

    /// The scheduler's statistics.
    pub async fn stats(&self) -> Result<SchedulerStats> {
        let tasks = self.list().await?;
        let now = self.backend().time().await?;
        let enabled_tasks = tasks.iter().filter(|t| t.enabled).count();
        let (lost_tasks, restored_tasks) = {
            let p = self.presence();
            (p.lost(), p.restored())
        };
        Ok(SchedulerStats {
            lost_tasks,
            restored_tasks,
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
            let spec = Self::spec_from_def(def);
            let (entry, hash, trigger) = self.entry_for(&spec)?;
            let first = first_run(&spec.name, &trigger, now)?;
            let out = self.backend().schedule_upsert(&entry, &hash, None, first).await?;
            if out != UpsertOutcome::Kept {
                tracing::info!(schedule = %Escaped(&spec.name), outcome = ?out, "declared schedule stored");
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The spec of a declared schedule (its job's options resolve when a job is enqueued).
    fn spec_from_def(def: &ScheduleDef) -> ScheduleSpec {
        let schedule = match def.kind {
            ScheduleKind::Interval { secs } => ScheduleType::Interval { seconds: secs },
            ScheduleKind::Cron { expr } => {
                ScheduleType::Cron { expression: expr.to_owned(), timezone: None }
            }
        };
        let mut spec = ScheduleSpec::new(def.name, def.handler, schedule).args(def.args.clone());
        spec.priority = def.priority;
        spec
    }

    /// Checks a spec and builds what the backend stores: the entry (what the spec and the
    /// handler's attribute set, nothing of this process's defaults), its hash, and the
    /// parsed trigger.
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
            let known = registry.handlers().map(|h| h.name());
            return Err(Error::unknown_handler(spec.job_name.clone(), known));
        }
        if let Some(h) = handler {
            h.check_args(&spec.args)?;
        }
        // Options stay unresolved: every process that fires a tick resolves them with its
        // own defaults (see `job`), so the definition is the same whoever stores it.
        let entry = ScheduleEntry {
            name: spec.name.clone(),
            job_name: spec.job_name.clone(),
            schedule: spec.schedule.clone(),
            args: spec.args.clone(),
            priority: spec.priority,
            handler_options: handler.map(|h| h.defaults()).unwrap_or_default().into(),
            misfire: spec.misfire,
        };
        // The job it will enqueue must be valid (job name, timeout, retries) now, not at
        // its first tick.
        self.job(&entry, JobId::new())?;
        let hash = entry.definition_hash()?;
        Ok((entry, hash, trigger))
    }

    /// The options of the schedule's jobs when this process enqueues one, by the one
    /// option rule: the spec's, else the handler's attribute (as linked here; the stored
    /// copy if this process does not have the handler), else this queue's defaults.
    fn options(&self, e: &ScheduleEntry) -> JobDefaults {
        let call = JobOptions { priority: e.priority, ..JobOptions::NONE };
        let handler = match self.inner.registry.handler(&e.job_name) {
            Some(h) => h.defaults(),
            None => e.handler_options.into(),
        };
        resolve(call, handler, self.inner.queue.defaults())
    }

    /// The job this process enqueues for the schedule, under `id`, checked.
    fn job(&self, e: &ScheduleEntry, id: JobId) -> Result<NewJob> {
        let mut job = e.job(id, self.options(e));
        // Into the queue its handler names, when this process links it.
        if let Some(h) = self.inner.registry.handler(&e.job_name)
            && h.flow().queue != crate::flow::DEFAULT_QUEUE
        {
            job.queue = Some(h.flow().queue.to_owned());
        }
        job.validate()?;
        Ok(job)
    }

    /// A stored schedule as this process shows it (its priority resolved as when it fires).
    fn info(&self, s: StoredSchedule) -> ScheduleInfo {
        let priority = self.options(&s.entry).priority;
        ScheduleInfo { priority, ..s.into() }
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
                tracing::warn!(error = %Escaped(&e), "cannot store the declared schedules; retrying");
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
    // The presence check (see `presence`): now, to learn what is stored, then once per
    // `max_sleep`, and at once when the backend answers again after failing (a restart).
    let mut check_at = Instant::now();
    let mut failed = false;
    while !token.is_cancelled() {
        if Instant::now() >= check_at {
            check_at = Instant::now() + max;
            if let Err(e) = s.check_presence().await {
                // Again soon (the backend may be restarting), backing off.
                check_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(max);
                tracing::warn!(error = %Escaped(&e), "scheduler: cannot check the stored schedules");
            }
        }
        let wait = match fire_due(&s).await {
            // The backend answers again: it may have restarted empty. Check at once.
            Ok(_) if failed => {
                backoff = Duration::from_millis(100);
                failed = false;
                check_at = Instant::now();
                Duration::ZERO
            }
            Ok(w) => {
                backoff = Duration::from_millis(100);
                w
            }
            Err(e) => {
                failed = true;
                tracing::warn!(error = %Escaped(&e), "scheduler: backend call failed; retrying");
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

impl Scheduler {
    /// One pass of the loop's fire path, for [`testing`](crate::testing): fires what is
    /// due now; returns how long until more may be (zero: look again at once).
    pub(crate) async fn fire_due_once(&self) -> Result<Duration> {
        fire_due(self).await
    }
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
                tracing::error!(schedule = %Escaped(&stored.entry.name), error = %Escaped(&e), "cannot fire schedule");
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
    let generation = stored.state.generation;
    let id = tick_job_id(&e.name, generation, tick_ms);
    let fire = ScheduleFire {
        name: e.name.clone(),
        claim: Some(TickClaim { expected: tick, next, hash: stored.hash.clone(), generation }),
        job: s.job(e, id)?,
    };
    let out = s.fire(&fire).await?;
    match out {
        FireOutcome::Fired => tracing::debug!(
            schedule = %Escaped(&e.name),
            job.id = %id,
            late_ms = now_ms - tick_ms,
            next = ?next,
            "schedule fired"
        ),
        FireOutcome::Duplicate => {
            tracing::warn!(schedule = %Escaped(&e.name), job.id = %id, "tick's job existed already")
        }
        _ => tracing::trace!(schedule = %Escaped(&e.name), outcome = ?out, "tick not fired here"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Event, count};

    #[tokio::test]
    async fn jobs_the_scheduler_enqueues_are_counted_as_enqueued_by_this_process() {
        // Ticks and run-now go through `Backend::schedule_fire`, not the queue's enqueue.
        let job = "scheduler_metrics_unit_test_job";
        let sched = Scheduler::new(JobQueue::memory(), Arc::default(), SchedulerConfig::default());
        sched.register(ScheduleSpec::interval("every_second", job, 1)).await.expect("registers");
        let before = count(job, Event::Enqueued);
        sched.run_now("every_second").await.expect("runs now");
        assert_eq!(count(job, Event::Enqueued), before + 1, "run-now is counted");

        sched.start().expect("starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(job, Event::Enqueued) < before + 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sched.stop().await;
        let fired = sched.get("every_second").await.expect("exists").run_count;
        assert!(fired >= 2, "a tick fired: run_count {fired}");
        assert_eq!(count(job, Event::Enqueued), before + fired, "every fired job is counted");
    }
}
