//! The scheduler end to end: several schedulers on one Redis fire each tick exactly once;
//! register/enable/disable/run-now/unregister hold across processes; declared schedules keep
//! an operator's flag across restarts; missed ticks follow the misfire policy; bad input is a
//! clear error.
//!
//! Timings (tick lateness) are printed with `eprintln!`, never asserted beyond generous
//! bounds. Every wait is bounded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{Backend, BackendConfig};
use jobs_core::prelude::*;
use jobs_core::service::{BackendChoice, JobService, ServiceConfig};
use jobs_core::{
    Error, Job, JobDefaults, JobQueue, Location, MisfirePolicy, Registry, ScheduleKind,
    ScheduleRegistration, ScheduleSpec, Scheduler, SchedulerConfig,
};
use jobs_test_support::{RedisServer, redis_config, try_wait_until, unique_namespace};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// A handler, so that the global registry knows handlers (and refuses unknown ones).
#[job_handler]
async fn scheduler_test_job() -> Result<(), JobError> {
    Ok(())
}

/// A declared schedule (and its handler): upserted when a service's scheduler starts.
#[every_seconds(3600)]
async fn declared_hourly() -> Result<(), JobError> {
    Ok(())
}

/// Every pending job of the namespace named `name` (nothing fetches them in these tests).
async fn jobs_named(backend: &dyn Backend, name: &str) -> Result<Vec<Job>, BoxError> {
    let all = backend.list_pending(None, 10_000).await?;
    Ok(all.into_iter().filter(|j| j.name == name).collect())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A scheduler over its own connection to `cfg`'s namespace, with no handlers known.
async fn scheduler_on(cfg: &RedisConfig) -> Result<Scheduler, BoxError> {
    let backend = RedisBackend::connect(cfg.clone()).await?;
    Ok(Scheduler::new(
        JobQueue::new(backend),
        Arc::new(Registry::default()),
        SchedulerConfig::default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_schedulers_fire_every_tick_exactly_once() -> TestResult {
    // A private server: other tests' load must not colour the lateness figures.
    let server = RedisServer::start();
    let cfg = RedisConfig::new(&server.url()).namespace(unique_namespace("three-schedulers"));
    let schedulers =
        [scheduler_on(&cfg).await?, scheduler_on(&cfg).await?, scheduler_on(&cfg).await?];
    let inspect = RedisBackend::connect(cfg.clone()).await?;

    let info = schedulers[0].register(ScheduleSpec::interval("every_second", "tick", 1)).await?;
    let first = info.next_run.ok_or("an enabled interval schedule has a next run")?;
    for s in &schedulers {
        s.start()?;
    }
    // The test window: ticks first, first + 1 s, …; stop half a second after the 20th.
    let window_end = first + chrono::TimeDelta::milliseconds(19_500);
    let wait = (window_end - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    for s in &schedulers {
        s.stop().await;
    }

    let jobs = jobs_named(&inspect, "tick").await?;
    let ticks: Vec<DateTime<Utc>> = jobs.iter().filter_map(|j| j.scheduled_at).collect();
    let distinct: HashSet<DateTime<Utc>> = ticks.iter().copied().collect();
    let duplicates = jobs.len() - distinct.len();
    let mut lateness: Vec<i64> = jobs
        .iter()
        .filter_map(|j| j.scheduled_at.map(|t| (j.created_at - t).num_milliseconds()))
        .collect();
    lateness.sort_unstable();
    eprintln!(
        "three schedulers, every 1 s for 20 s: {} jobs, {} distinct ticks, {} duplicates; \
         tick lateness p50 = {} ms, p99 = {} ms, max = {} ms",
        jobs.len(),
        distinct.len(),
        duplicates,
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0),
    );

    assert_eq!(duplicates, 0, "no tick fired twice");
    assert_eq!(ticks.len(), jobs.len(), "every tick's job records its tick");
    assert!((19..=21).contains(&jobs.len()), "expected 20 ± 1 jobs, got {}", jobs.len());
    // Ticks are the schedule's grid, without gaps: first, first + 1 s, …
    let mut sorted: Vec<DateTime<Utc>> = distinct.into_iter().collect();
    sorted.sort();
    for (k, t) in sorted.iter().enumerate() {
        assert_eq!(*t, first + chrono::TimeDelta::seconds(k as i64), "tick {k}");
    }
    // Job ids are the derived tick ids.
    let ids: HashSet<_> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), jobs.len());
    for j in &jobs {
        let t = j.scheduled_at.ok_or("tick")?.timestamp_millis();
        assert_eq!(j.id, jobs_core::JobId::derived(&format!("cron:every_second:{t}")));
    }
    // Generous bound only: on an idle machine the figure printed above is far lower.
    assert!(lateness.iter().all(|l| *l >= 0), "no tick fires early");
    assert!(percentile(&lateness, 0.5) < 1000, "ticks fire within a second");

    let info = schedulers[1].get("every_second").await?;
    assert_eq!(info.run_count, jobs.len() as u64);
    assert_eq!(info.last_job_id, jobs.iter().max_by_key(|j| j.scheduled_at).map(|j| j.id));
    Ok(())
}

async fn service_on(ns: &str) -> Result<JobService, BoxError> {
    let cfg = ServiceConfig {
        backend: BackendChoice::Redis(redis_config(ns, Default::default())),
        enable_workers: false,
        enable_scheduler: false,
        ..ServiceConfig::default()
    };
    Ok(JobService::connect(cfg).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_run_now_and_unregister_hold_across_processes() -> TestResult {
    let ns = unique_namespace("sched-two-processes");
    let a = service_on(&ns).await?;
    let b = service_on(&ns).await?;

    let spec = ScheduleSpec::interval("sync", "scheduler_test_job", 3600)
        .priority(JobPriority::High)
        .args(json!({}));
    let created = a.scheduler().register(spec.clone()).await?;
    assert!(created.enabled);
    assert_eq!(created.schedule_type, "interval");
    assert_eq!(created.interval_seconds, Some(3600));
    assert_eq!(created.misfire_policy, MisfirePolicy::Coalesce);
    let next = created.next_run.ok_or("next run")?;

    // B sees A's schedule.
    let seen = b.scheduler().get("sync").await?;
    assert_eq!(seen, created);
    // Registering the same definition again (a second process at start) keeps the next run.
    assert_eq!(b.scheduler().register(spec).await?.next_run, Some(next));

    // B disables; A sees it disabled, without a next run.
    let off = b.scheduler().disable("sync").await?;
    assert!(!off.enabled && off.next_run.is_none());
    let seen = a.scheduler().get("sync").await?;
    assert!(!seen.enabled && seen.next_run.is_none());
    let stats = a.scheduler().stats().await?;
    assert_eq!((stats.total_tasks, stats.enabled_tasks, stats.disabled_tasks), (1, 0, 1));

    // A enables; B sees the new next run, an hour from now.
    let before = Utc::now();
    let on = a.scheduler().enable("sync").await?;
    assert!(on.enabled);
    let next = b.scheduler().get("sync").await?.next_run.ok_or("next run after enable")?;
    assert!(next >= before + chrono::TimeDelta::seconds(3599), "next run {next}");

    // B runs it now: a job is enqueued and counted; the next run does not move.
    let id = b.scheduler().run_now("sync").await?;
    let job = a.queue().get_job(id).await?.ok_or("run-now job")?;
    assert_eq!((job.name.as_str(), job.priority), ("scheduler_test_job", JobPriority::High));
    let seen = a.scheduler().get("sync").await?;
    assert_eq!((seen.run_count, seen.last_job_id, seen.next_run), (1, Some(id), Some(next)));
    assert!(seen.last_run.is_some());

    // The stats JSON has the documented keys, and the two of a backend that lost its data
    // (always present: the API document declares them).
    let v = serde_json::to_value(a.scheduler().stats().await?)?;
    let keys: HashSet<&str> = v.as_object().ok_or("object")?.keys().map(String::as_str).collect();
    let want: HashSet<&str> = [
        "running",
        "total_tasks",
        "enabled_tasks",
        "disabled_tasks",
        "due_tasks",
        "tasks",
        "lost_tasks",
        "restored_tasks",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!((v["lost_tasks"].clone(), v["restored_tasks"].clone()), (json!([]), json!(0)));
    assert_eq!(v["tasks"][0]["name"], "sync");
    assert_eq!(v["tasks"][0]["last_job_id"], id.to_string());

    // A unregisters; B finds nothing.
    a.scheduler().unregister("sync").await?;
    for r in [b.scheduler().get("sync").await.err(), b.scheduler().unregister("sync").await.err()] {
        assert!(matches!(&r, Some(Error::ScheduleNotFound { name }) if name == "sync"), "{r:?}");
    }
    let r = b.scheduler().run_now("sync").await.err();
    assert!(matches!(r, Some(Error::ScheduleNotFound { .. })), "{r:?}");
    assert_eq!(b.scheduler().stats().await?.total_tasks, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_handlers_and_bad_schedules_are_clear_errors() -> TestResult {
    let svc = service_on(&unique_namespace("sched-errors")).await?;
    let s = svc.scheduler();

    let err = s.register(ScheduleSpec::interval("x", "no_such_handler", 60)).await.err();
    assert!(matches!(&err, Some(Error::UnknownHandler { name, .. }) if name == "no_such_handler"));
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        "no handler registered for job `no_such_handler`"
    );

    let cases = [
        ScheduleSpec::cron("bad_cron", "scheduler_test_job", "61 * * * *"),
        ScheduleSpec::cron("six_fields", "scheduler_test_job", "0 0 * * * *"),
        ScheduleSpec::cron("never", "scheduler_test_job", "0 0 30 2 *"),
        ScheduleSpec::cron("bad_zone", "scheduler_test_job", "0 8 * * *").timezone("Mars/Olympus"),
        ScheduleSpec::interval("zero", "scheduler_test_job", 0),
        ScheduleSpec::interval("", "scheduler_test_job", 60),
    ];
    for spec in cases {
        let name = spec.name.clone();
        let err = s.register(spec).await.err();
        let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(matches!(err, Some(Error::InvalidSchedule { .. })), "{name}: {err:?}");
        eprintln!("{name:>10}: {msg}");
    }
    let err = s.register(ScheduleSpec::cron("bad_cron", "scheduler_test_job", "61 * * * *")).await;
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with(
            "invalid schedule: schedule `bad_cron`: invalid cron expression `61 * * * *`"
        ),
        "{msg}"
    );
    let msg = s
        .register(
            ScheduleSpec::cron("z", "scheduler_test_job", "0 8 * * *").timezone("Mars/Olympus"),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("unknown time zone `Mars/Olympus`"), "{msg}");

    // Arguments that do not fit the handler.
    let err = s
        .register(ScheduleSpec::interval("args", "scheduler_test_job", 60).args(json!([1, 2])))
        .await
        .err();
    assert!(matches!(err, Some(Error::InvalidArgs { .. })), "{err:?}");

    // Nothing was stored; a valid cron in a zone is fine.
    assert_eq!(s.list().await?.len(), 0);
    let ok = s
        .register(
            ScheduleSpec::cron("berlin", "scheduler_test_job", "30 2 * * *")
                .timezone("Europe/Berlin"),
        )
        .await?;
    assert_eq!(ok.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(ok.cron_expression.as_deref(), Some("30 2 * * *"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_schedules_are_upserted_and_keep_an_operators_flag() -> TestResult {
    let ns = unique_namespace("sched-declared");
    let cfg = || ServiceConfig {
        backend: BackendChoice::Redis(redis_config(&ns, Default::default())),
        enable_workers: false,
        ..ServiceConfig::default()
    };
    let first = JobService::connect(cfg()).await?;
    first.start()?;
    let info = try_wait_until("the declared schedule", Duration::from_secs(5), || async {
        Ok::<_, BoxError>(first.scheduler().get("declared_hourly").await.ok())
    })
    .await?;
    assert!(info.enabled);
    assert_eq!((info.job_name.as_str(), info.interval_seconds), ("declared_hourly", Some(3600)));
    let stats = first.get_full_stats().await?;
    assert!(stats.scheduler.running);
    assert!(stats.scheduler.tasks.iter().any(|t| t.name == "declared_hourly"));

    // An operator disables it; the process restarts (and so does another one).
    first.scheduler().disable("declared_hourly").await?;
    first.stop().await?;
    assert!(!first.scheduler().is_running());
    let second = JobService::connect(cfg()).await?;
    second.start()?;
    // The start-up upsert is what the loop does first; doing it here too shows it changes
    // nothing (same definition) and leaves the flag alone.
    assert_eq!(second.scheduler().sync_registry().await?, 0);
    let info = second.scheduler().get("declared_hourly").await?;
    assert!(!info.enabled && info.next_run.is_none(), "still disabled: {info:?}");
    second.stop().await?;
    Ok(())
}

/// Registers an every-`secs` schedule with no scheduler running, waits past `missed` ticks,
/// then starts a scheduler and returns (the first fire's time, the ticks of the jobs whose
/// tick was already missed at that moment).
async fn down_then_up(
    ns: &str,
    policy: MisfirePolicy,
    secs: u64,
    missed: u32,
) -> Result<(DateTime<Utc>, Vec<DateTime<Utc>>), BoxError> {
    let cfg = redis_config(ns, Default::default());
    let s = scheduler_on(&cfg).await?;
    let inspect = RedisBackend::connect(cfg).await?;
    let info =
        s.register(ScheduleSpec::interval("catchy", "late_job", secs).misfire(policy)).await?;
    let first = info.next_run.ok_or("next run")?;
    // Every scheduler is down while these ticks pass (this wait is the scenario itself).
    let last_missed = first + chrono::TimeDelta::seconds((secs * u64::from(missed - 1)) as i64);
    let wait = (last_missed - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;

    let up = Utc::now();
    s.start()?;
    let jobs = try_wait_until("the first fire", Duration::from_secs(5), || async {
        let j = jobs_named(&inspect, "late_job").await?;
        Ok::<_, BoxError>((!j.is_empty()).then_some(j))
    })
    .await?;
    // Give a catching-up scheduler time to fire the rest of its backlog, which takes a few
    // round trips, well within this (the next regular tick is seconds away).
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await;
    let first_created = jobs.iter().map(|j| j.created_at).min().ok_or("a job")?;
    let all = jobs_named(&inspect, "late_job").await?;
    let backlog: Vec<DateTime<Utc>> =
        all.iter().filter_map(|j| j.scheduled_at).filter(|t| *t < up).collect();
    let late = (first_created - last_missed).num_milliseconds();
    eprintln!(
        "{policy:?}: {missed} missed ticks fired as {} job(s), \
         first {late} ms after the last missed tick",
        backlog.len()
    );
    let info = s.get("catchy").await?;
    let next = info.next_run.ok_or("next run")?;
    assert!(next > first_created, "the next run ({next}) is after the catch-up fire");
    Ok((first_created, backlog))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_down_over_missed_ticks_fires_once_with_coalesce() -> TestResult {
    let (_, backlog) =
        down_then_up(&unique_namespace("sched-coalesce"), MisfirePolicy::Coalesce, 1, 3).await?;
    assert_eq!(backlog.len(), 1, "three missed ticks fire as one: {backlog:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_down_over_missed_ticks_fires_each_with_catch_up() -> TestResult {
    let (_, backlog) =
        down_then_up(&unique_namespace("sched-catch-up"), MisfirePolicy::CatchUp, 1, 3).await?;
    // Ticks first, first+1 s, first+2 s were missed; the one after may or may not have come
    // due by the time the scheduler started.
    assert!((3..=4).contains(&backlog.len()), "each missed tick fires: {backlog:?}");
    Ok(())
}

// ------------------------------------------------ definitions independent of the process

/// A handler whose attribute sets no option: the jobs of its schedule take the retries and
/// timeout of whichever process fires them.
#[job_handler]
async fn postponable_job() -> Result<(), JobError> {
    Ok(())
}

fn null_args() -> Result<serde_json::Value, String> {
    Ok(serde_json::Value::Null)
}

/// A registry declaring `postponable`, every `secs`, on `postponable_job` (what a service
/// with `#[every_seconds(secs)]` on that handler would link).
fn declaring_postponable(secs: u64) -> Result<Registry, BoxError> {
    let handler = *jobs_core::registry::linked_handler("postponable_job").ok_or("linked")?;
    let schedule = ScheduleRegistration::new(
        "postponable",
        "postponable_job",
        ScheduleKind::Interval { secs },
        None,
        null_args,
        Location { file: file!(), line: line!(), module_path: module_path!() },
    );
    Ok(Registry::from_parts([handler], [schedule])?)
}

/// Two services on `a` and `b` (one deployment) declare the same 1-second schedule but have
/// different default retries and timeouts; they restart in turn every half interval.
async fn restarts_of_services_with_other_defaults(
    a: Arc<dyn Backend>,
    b: Arc<dyn Backend>,
) -> TestResult {
    let registry = Arc::new(declaring_postponable(1)?);
    let defaults = [
        JobDefaults { max_retries: 1, timeout: Duration::from_secs(11), ..JobDefaults::default() },
        JobDefaults { max_retries: 6, timeout: Duration::from_secs(22), ..JobDefaults::default() },
    ];
    let services = [
        Scheduler::new(
            JobQueue::from_backend(Arc::clone(&a)).with_defaults(defaults[0]),
            Arc::clone(&registry),
            SchedulerConfig::default(),
        ),
        Scheduler::new(
            JobQueue::from_backend(b).with_defaults(defaults[1]),
            Arc::clone(&registry),
            SchedulerConfig::default(),
        ),
    ];
    // Ten restarts, one every half interval (these sleeps are the scenario: five seconds of
    // a rolling restart), each re-running the declared-schedule sync.
    let started = Utc::now();
    for k in 0..10 {
        let s = &services[k % 2];
        s.stop().await;
        s.start()?;
        s.sync_registry().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stopped = Utc::now();
    for s in &services {
        s.stop().await;
    }

    let jobs = jobs_named(a.as_ref(), "postponable_job").await?;
    let mut ticks: Vec<DateTime<Utc>> = jobs.iter().filter_map(|j| j.scheduled_at).collect();
    ticks.sort();
    eprintln!(
        "two services restarting every 0.5 s for {} ms: {} ticks of a 1 s schedule fired",
        (stopped - started).num_milliseconds(),
        ticks.len()
    );
    // Ticks at 1 s, 2 s, … after the first sync; 5 s of restarts leave room for 4 at least.
    assert!(ticks.len() >= 4, "the schedule fires every interval, got {} ticks", ticks.len());
    // On the schedule's grid (a tick fired more than an interval late on a loaded machine
    // coalesces, which leaves a gap of whole intervals, never a shift).
    for w in ticks.windows(2) {
        let gap = (w[1] - w[0]).num_milliseconds();
        assert!(gap > 0 && gap % 1000 == 0, "ticks on the grid: {ticks:?}");
    }
    // Each job has the defaults of the process that fired it.
    for j in &jobs {
        let fired_with = (j.max_retries, j.timeout);
        assert!(
            defaults.iter().any(|d| (d.max_retries, d.timeout) == fired_with),
            "job {} has {fired_with:?}",
            j.id
        );
    }
    let info = services[0].get("postponable").await?;
    assert_eq!(info.run_count, jobs.len() as u64);
    Ok(())
}

// regression: the stored definition (and its hash) took max_retries/timeout from the
// storing process's defaults, so two services with different defaults rewrote it at every
// start, each time moving the next run to now + interval: it never fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_schedule_is_not_postponed_by_services_with_other_defaults_memory() -> TestResult {
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new(BackendConfig::default()));
    restarts_of_services_with_other_defaults(Arc::clone(&memory), memory).await
}

// regression: as above, on one private Redis with a connection per service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_schedule_is_not_postponed_by_services_with_other_defaults_redis() -> TestResult {
    let server = RedisServer::start();
    let cfg = RedisConfig::new(&server.url()).namespace(unique_namespace("sched-postponed"));
    let a: Arc<dyn Backend> = Arc::new(RedisBackend::connect(cfg.clone()).await?);
    let b: Arc<dyn Backend> = Arc::new(RedisBackend::connect(cfg).await?);
    restarts_of_services_with_other_defaults(a, b).await
}

// ------------------------------------------------ one-time schedules, re-enabled or edited

/// Waits until `name` has enqueued `runs` jobs and has no next run (a one-time schedule
/// that fired: nothing more can fire), and returns it.
async fn fired_times(
    s: &Scheduler,
    name: &str,
    runs: u64,
) -> Result<jobs_core::ScheduleInfo, BoxError> {
    try_wait_until(&format!("`{name}` fired {runs} time(s)"), Duration::from_secs(5), || async {
        let info = s.get(name).await?;
        Ok::<_, BoxError>((info.run_count >= runs && info.next_run.is_none()).then_some(info))
    })
    .await
}

/// Two schedulers fire a one-time schedule whose instant has passed; it is then re-enabled,
/// then edited (other args, the same instant), then re-enabled again: each time it fires
/// again, exactly once.
async fn once_fires_again_after_re_enable_and_edit(backends: [Arc<dyn Backend>; 2]) -> TestResult {
    let registry = Arc::new(Registry::default());
    let [a, b] = backends;
    let inspect = Arc::clone(&a);
    let schedulers = [
        Scheduler::new(
            JobQueue::from_backend(a),
            Arc::clone(&registry),
            SchedulerConfig::default(),
        ),
        Scheduler::new(JobQueue::from_backend(b), registry, SchedulerConfig::default()),
    ];
    for s in &schedulers {
        s.start()?;
    }
    let at = Utc::now() - chrono::TimeDelta::seconds(1);
    let spec = ScheduleSpec::once("reminder", "once_job", at).args(json!({"v": 1}));
    schedulers[0].register(spec.clone()).await?;
    fired_times(&schedulers[1], "reminder", 1).await?;

    // Re-enabled after it fired: its (passed) instant is its next run again.
    schedulers[1].disable("reminder").await?;
    let on = schedulers[1].enable("reminder").await?;
    assert_eq!(
        on.next_run,
        Some(DateTime::from_timestamp_millis(at.timestamp_millis()).ok_or("ms")?)
    );
    let info = fired_times(&schedulers[0], "reminder", 2).await?;
    assert_eq!(info.run_count, 2, "re-enabled: fired once more");

    // Edited (other args, the same instant): a new definition, so it fires again.
    schedulers[0].register(spec.clone().args(json!({"v": 2}))).await?;
    let info = fired_times(&schedulers[1], "reminder", 3).await?;
    assert_eq!(info.run_count, 3, "edited: fired once more");

    // Re-registered unchanged: the same definition, nothing fires.
    schedulers[1].register(spec.clone().args(json!({"v": 2}))).await?;
    // And re-enabled once more, from the other process.
    schedulers[1].disable("reminder").await?;
    schedulers[0].enable("reminder").await?;
    let info = fired_times(&schedulers[1], "reminder", 4).await?;
    for s in &schedulers {
        s.stop().await;
    }

    let jobs = jobs_named(inspect.as_ref(), "once_job").await?;
    let ids: HashSet<_> = jobs.iter().map(|j| j.id).collect();
    assert_eq!((jobs.len(), ids.len()), (4, 4), "one job per generation: {jobs:?}");
    assert_eq!(info.run_count, 4);
    let args: Vec<i64> = {
        let mut v: Vec<i64> = jobs.iter().filter_map(|j| j.args["v"].as_i64()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(args, [1, 1, 2, 2]);
    assert!(
        jobs.iter()
            .all(|j| j.scheduled_at.map(|t| t.timestamp_millis()) == Some(at.timestamp_millis()))
    );
    Ok(())
}

// regression: a one-time schedule re-enabled or edited after it fired got the tick id it
// had already used, found the job there, and fired nothing (a warning in the log only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_schedule_fires_again_when_re_enabled_or_edited_memory() -> TestResult {
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new(BackendConfig::default()));
    once_fires_again_after_re_enable_and_edit([Arc::clone(&memory), memory]).await
}

// regression: as above, on one private Redis with a connection per scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_schedule_fires_again_when_re_enabled_or_edited_redis() -> TestResult {
    let server = RedisServer::start();
    let cfg = RedisConfig::new(&server.url()).namespace(unique_namespace("sched-once-again"));
    let a: Arc<dyn Backend> = Arc::new(RedisBackend::connect(cfg.clone()).await?);
    let b: Arc<dyn Backend> = Arc::new(RedisBackend::connect(cfg).await?);
    once_fires_again_after_re_enable_and_edit([a, b]).await
}

// ------------------------------------------------ records of the previous build

// guards: a schedule stored by the build before generations and unresolved options (state
// without `:<gen>`, definition with the resolved `max_retries`/`timeout_ms`) still loads and
// fires, under the tick id that build would have used; the first upsert after the upgrade
// updates it once (its hash is computed differently now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_stored_by_the_previous_build_loads_and_fires() -> TestResult {
    let server = RedisServer::start();
    let cfg = RedisConfig::new(&server.url()).namespace(unique_namespace("sched-legacy"));
    let backend = Arc::new(RedisBackend::connect(cfg.clone()).await?);
    let keys = backend.keys().clone();
    let tick = backend.time().await?.timestamp_millis() - 50;
    let last_job = jobs_core::JobId::new();
    let def = json!({
        "name": "legacy", "job_name": "legacy_job",
        "schedule": {"type": "interval", "seconds": 3600},
        "args": {"from": "before"}, "priority": "high", "max_retries": 4,
        "timeout_ms": 40_000, "misfire": "coalesce"
    });
    let mut c = server.connection()?;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.cron())
        .arg("legacy")
        .arg(format!("1:7:1700000000000:00000000deadbeef:{last_job}|{def}"))
        .cmd("ZADD")
        .arg(keys.cron_due())
        .arg(tick)
        .arg("legacy")
        .query(&mut c)?;

    let stored = backend.schedule_get("legacy").await?.ok_or("loads")?;
    assert_eq!((stored.state.run_count, stored.state.generation), (7, 0));
    assert_eq!(stored.state.last_job_id, Some(last_job));
    assert_eq!(stored.entry.priority, Some(JobPriority::High));

    // A process without the handler and with other defaults fires it: the stored options
    // stand in for the handler's.
    let queue = JobQueue::from_backend(backend.clone()).with_defaults(JobDefaults {
        max_retries: 1,
        timeout: Duration::from_secs(11),
        ..JobDefaults::default()
    });
    let s = Scheduler::new(queue, Arc::new(Registry::default()), SchedulerConfig::default());
    s.start()?;
    let id = jobs_core::JobId::derived(&format!("cron:legacy:{tick}"));
    let job = try_wait_until("the legacy tick's job", Duration::from_secs(5), || async {
        Ok::<_, BoxError>(backend.get_job(id).await?)
    })
    .await?;
    s.stop().await;
    assert_eq!(
        (job.priority, job.max_retries, job.timeout, job.args.clone()),
        (JobPriority::High, 4, Duration::from_secs(40), json!({"from": "before"}))
    );
    let info = s.get("legacy").await?;
    assert_eq!((info.run_count, info.last_job_id), (8, Some(id)));

    // The same spec registered by the new build: updated once, a new generation.
    let spec = ScheduleSpec::interval("legacy", "legacy_job", 3600)
        .args(json!({"from": "before"}))
        .priority(JobPriority::High);
    s.register(spec.clone()).await?;
    let after = backend.schedule_get("legacy").await?.ok_or("still there")?;
    assert_eq!((after.state.run_count, after.state.generation), (8, 1));
    s.register(spec).await?;
    let again = backend.schedule_get("legacy").await?.ok_or("still there")?;
    assert_eq!(
        (again.state.generation, again.state.next_run),
        (1, after.state.next_run),
        "then kept"
    );
    Ok(())
}

/// A handler with a retry backoff of its own (1 s before the first retry).
#[job_handler("scheduler_quick_retry", retry_base = "1s")]
async fn scheduler_quick_retry() -> Result<(), JobError> {
    Ok(())
}

// regression: a schedule's jobs (a tick's, a run-now's) did not carry their handler's
// `retry_base`: they came back after the failing worker's backoff instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedules_jobs_carry_their_handlers_retry_backoff() -> TestResult {
    use jobs_core::RetryPolicy;
    use jobs_core::backend::{FailOutcome, Failure, FetchRequest};

    let ns = unique_namespace("sched-retry-backoff");
    let svc = service_on(&ns).await?;
    let past = Utc::now() - chrono::TimeDelta::seconds(1);
    let once = ScheduleSpec::once("quick_once", "scheduler_quick_retry", past);
    svc.scheduler().register(once).await?;
    let hourly = ScheduleSpec::interval("quick_hourly", "scheduler_quick_retry", 3600);
    svc.scheduler().register(hourly).await?;
    let by_run_now = svc.scheduler().run_now("quick_hourly").await?;
    svc.scheduler().start()?;
    let by_tick =
        try_wait_until("the one-time schedule's tick", Duration::from_secs(5), || async {
            Ok::<_, BoxError>(svc.scheduler().get("quick_once").await?.last_job_id)
        })
        .await;
    svc.scheduler().stop().await;
    let by_tick = by_tick?;

    let q = svc.queue();
    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let fetched = q.fetch(&req).await?;
    let got: HashSet<_> = fetched.jobs.iter().map(|l| l.job.id).collect();
    assert_eq!(got, HashSet::from([by_run_now, by_tick]));
    let hour = Duration::from_secs(3600);
    for l in fetched.jobs {
        let failure = Failure {
            lease: l.lease,
            error: "boom".into(),
            retryable: true,
            retry: RetryPolicy::exponential(hour, hour),
            retry_after: None,
        };
        let before = Utc::now();
        let out = q.fail(&failure).await?;
        let after = Utc::now();
        let FailOutcome::Retrying { at } = out else {
            return Err(format!("{}: expected Retrying, got {out:?}", l.job.id).into());
        };
        let (lo, hi) = (
            before + chrono::TimeDelta::milliseconds(990),
            after + chrono::TimeDelta::milliseconds(1010),
        );
        assert!(at >= lo && at <= hi, "{}: retry due {at}, expected within [{lo}, {hi}]", l.job.id);
    }
    Ok(())
}

// regression: after a Redis restart without persistence, the scheduler kept running with 0
// schedules (4.8 minutes in the probe, until the runner was restarted): periodic jobs
// stopped silently. Declared schedules come back at once; the operator's, which cannot be
// recreated, are reported lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_come_back_after_redis_loses_its_data() -> TestResult {
    let mut server = RedisServer::start();
    let cfg = ServiceConfig {
        backend: BackendChoice::Redis(
            RedisConfig::new(&server.url()).namespace(unique_namespace("sched-lost")),
        ),
        enable_workers: false,
        ..ServiceConfig::default()
    };
    let service = JobService::connect(cfg).await?;
    let scheduler = service.scheduler().clone();
    scheduler
        .register(ScheduleSpec::interval("operator_hourly", "scheduler_test_job", 3600))
        .await?;
    service.start()?;
    try_wait_until("the declared schedule", Duration::from_secs(5), || async {
        Ok::<_, BoxError>(scheduler.get("declared_hourly").await.ok())
    })
    .await?;

    // Redis restarts with nothing: every schedule is gone.
    let restarted = tokio::task::block_in_place(|| {
        server.restart();
        std::time::Instant::now()
    });
    let back = try_wait_until(
        "the declared schedule to be stored again",
        Duration::from_secs(20),
        || async { Ok::<_, BoxError>(scheduler.get("declared_hourly").await.ok()) },
    )
    .await?;
    eprintln!("declared schedules came back {:?} after the Redis restart", restarted.elapsed());
    assert!(back.enabled && back.next_run.is_some(), "{back:?}");
    assert!(matches!(scheduler.get("operator_hourly").await, Err(Error::ScheduleNotFound { .. })));
    // LOST-REPORT: the operator's schedule is reported (API statistics, metrics).
    let stats = try_wait_until("the lost schedule reported", Duration::from_secs(10), || async {
        let st = scheduler.stats().await.ok();
        Ok::<_, BoxError>(st.filter(|st| st.lost_tasks.iter().any(|n| n == "operator_hourly")))
    })
    .await?;
    assert!(stats.restored_tasks >= 1, "{stats:?}");
    assert!(!stats.lost_tasks.iter().any(|n| n == "declared_hourly"), "{stats:?}");
    // Registered again, it is no longer lost.
    scheduler
        .register(ScheduleSpec::interval("operator_hourly", "scheduler_test_job", 3600))
        .await?;
    assert!(scheduler.stats().await?.lost_tasks.is_empty());
    service.stop().await?;
    Ok(())
}

// The in-memory backend cannot lose its schedules: the same statistics, always empty.
#[tokio::test]
async fn memory_schedules_are_never_reported_lost() -> TestResult {
    let service = JobService::connect(ServiceConfig {
        backend: BackendChoice::Memory,
        enable_workers: false,
        ..ServiceConfig::default()
    })
    .await?;
    service
        .scheduler()
        .register(ScheduleSpec::interval("mem_hourly", "scheduler_test_job", 3600))
        .await?;
    service.start()?;
    try_wait_until("the declared schedule", Duration::from_secs(5), || async {
        Ok::<_, BoxError>(service.scheduler().get("declared_hourly").await.ok())
    })
    .await?;
    assert_eq!(service.scheduler().check_presence().await?, 0);
    let st = service.scheduler().stats().await?;
    assert!(st.lost_tasks.is_empty() && st.restored_tasks == 0, "{st:?}");
    service.stop().await?;
    Ok(())
}
