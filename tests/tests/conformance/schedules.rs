//! Schedules: upsert, enable/disable/remove, due listings and tick claims (the
//! "Schedules" section of the contract in `jobs_core::backend`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jobs_core::backend::{
    FireOutcome, ScheduleEntry, ScheduleFire, StoredJobOptions, StoredSchedule, TickClaim,
    UpsertOutcome,
};
use jobs_core::{Error, JobId, JobPriority, JobStatus, MisfirePolicy, NewJob, ScheduleType};
use serde_json::json;

use crate::{BoxError, Env, Kind, TestResult, assert_within, leased_ids, pending};

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
    schedule_generation_moves_on_each_edit_and_enable,
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
        priority: Some(JobPriority::High),
        handler_options: StoredJobOptions {
            max_retries: Some(2),
            timeout_ms: Some(45_000),
            priority: None,
        },
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

/// The job of a tick of generation 0 (as the scheduler derives its id).
fn tick_job(name: &str, tick: DateTime<Utc>) -> NewJob {
    NewJob {
        id: JobId::derived(&format!("cron:{name}:{}", tick.timestamp_millis())),
        priority: JobPriority::High,
        max_retries: 2,
        timeout: Duration::from_secs(45),
        ..NewJob::new("tick_job", json!({ "schedule": name }))
    }
}

/// The claim of a tick of generation 0.
fn claim(name: &str, tick: DateTime<Utc>, next: Option<DateTime<Utc>>, hash: &str) -> ScheduleFire {
    claim_of(name, 0, tick, next, hash)
}

/// The claim of a tick of `generation`, with its job under the id the scheduler derives.
fn claim_of(
    name: &str,
    generation: u64,
    tick: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    hash: &str,
) -> ScheduleFire {
    let mut job = tick_job(name, tick);
    if generation > 0 {
        let id = format!("cron:{name}:{}:g{generation}", tick.timestamp_millis());
        job.id = JobId::derived(&id);
    }
    ScheduleFire {
        name: name.into(),
        claim: Some(TickClaim { expected: tick, next, hash: hash.into(), generation }),
        job,
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
    assert_eq!(env.b.schedule_upsert(&e, HASH_A, None, Some(first)).await?, UpsertOutcome::Created);
    let s = get(&env, "s").await?;
    assert_eq!(s.entry, e);
    assert_eq!(s.hash, HASH_A);
    assert!(s.state.enabled, "new schedules are enabled unless told otherwise");
    assert_eq!(s.state.next_run, Some(first));
    assert_eq!((s.state.run_count, s.state.last_run, s.state.last_job_id), (0, None, None));

    // Same definition (every process upserts at start): nothing moves, not even the next run.
    let later = at(now, 120_000);
    assert_eq!(env.b.schedule_upsert(&e, HASH_A, None, Some(later)).await?, UpsertOutcome::Kept);
    assert_eq!(
        env.b.schedule_upsert(&e, HASH_A, Some(true), Some(later)).await?,
        UpsertOutcome::Kept
    );
    assert_eq!(get(&env, "s").await?.state.next_run, Some(first));

    // An operator disables it; a restart's upsert (flag `None`) keeps it disabled.
    env.b.schedule_set_enabled("s", false, None).await?;
    assert_eq!(env.b.schedule_upsert(&e, HASH_A, None, Some(later)).await?, UpsertOutcome::Kept);
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
    let out = env.b.schedule_fire(&claim("f", future, Some(at(future, 60_000)), HASH_A)).await?;
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
    assert_eq!(env.b.schedule_fire(&claim("s", tick, next, HASH_A)).await?, FireOutcome::Duplicate);
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

    let fire = ScheduleFire { name: "nope".into(), claim: None, job: NewJob::new("x", json!({})) };
    assert_eq!(env.b.schedule_fire(&fire).await?, FireOutcome::NotFound);
    assert!(env.b.get_job(fire.job.id).await?.is_none());
    Ok(())
}

async fn one_time_schedule_has_no_next_run_after_firing(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let tick = due_schedule(&env, "once", 5).await?;
    assert_eq!(env.b.schedule_fire(&claim("once", tick, None, HASH_A)).await?, FireOutcome::Fired);
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

// regression: a one-time schedule re-enabled or edited after it fired had the same tick,
// the same tick job id, and fired nothing; each edit and enable is a new generation, which
// the claim names and the tick's job id includes.
async fn schedule_generation_moves_on_each_edit_and_enable(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let generation = |s: &StoredSchedule| s.state.generation;
    let tick = due_schedule(&env, "once", 5).await?;
    assert_eq!(generation(&get(&env, "once").await?), 0, "created: generation 0");
    assert_eq!(env.b.schedule_fire(&claim("once", tick, None, HASH_A)).await?, FireOutcome::Fired);

    // Disabling keeps the generation; enabling (the same instant as next run) starts one.
    let s = env.b.schedule_set_enabled("once", false, None).await?;
    assert_eq!(generation(&s), 0);
    let s = env.b.schedule_set_enabled("once", true, Some(tick)).await?;
    assert_eq!((generation(&s), s.state.next_run), (1, Some(tick)));
    // Enabling an enabled schedule changes nothing.
    assert_eq!(generation(&env.b.schedule_set_enabled("once", true, Some(tick)).await?), 1);
    // A claim read before the enable (generation 0) is stale, and writes nothing.
    assert_eq!(
        env.b.schedule_fire(&claim("once", tick, None, HASH_A)).await?,
        FireOutcome::Stale { current: Some(tick) }
    );
    assert_eq!(env.stats().await?.counters.enqueued, 1);
    // The claim of the new generation fires the same tick again, under a new job id.
    let again = claim_of("once", 1, tick, None, HASH_A);
    assert_eq!(env.b.schedule_fire(&again).await?, FireOutcome::Fired);
    assert_eq!(env.b.schedule_fire(&again).await?, FireOutcome::Stale { current: None });
    let s = get(&env, "once").await?;
    assert_eq!((s.state.run_count, s.state.last_job_id), (2, Some(again.job.id)));
    assert_eq!(env.job(again.job.id).await?.scheduled_at, Some(tick));

    // The same definition and flag: kept, same generation (and still no next run).
    assert_eq!(
        env.b.schedule_upsert(&entry("once"), HASH_A, None, Some(tick)).await?,
        UpsertOutcome::Kept
    );
    assert_eq!(
        (generation(&get(&env, "once").await?), get(&env, "once").await?.state.next_run),
        (1, None)
    );
    // An edit (another hash) with the same instant: a new generation, due again.
    assert_eq!(
        env.b.schedule_upsert(&entry("once"), HASH_B, None, Some(tick)).await?,
        UpsertOutcome::Updated
    );
    let s = get(&env, "once").await?;
    assert_eq!((generation(&s), s.state.next_run), (2, Some(tick)));
    assert_eq!(
        env.b.schedule_fire(&claim_of("once", 1, tick, None, HASH_B)).await?,
        FireOutcome::Stale { current: Some(tick) }
    );
    assert_eq!(
        env.b.schedule_fire(&claim_of("once", 2, tick, None, HASH_B)).await?,
        FireOutcome::Fired
    );
    // A flag change through an upsert is a new generation too.
    assert_eq!(
        env.b.schedule_upsert(&entry("once"), HASH_B, Some(false), Some(tick)).await?,
        UpsertOutcome::Updated
    );
    assert_eq!(generation(&get(&env, "once").await?), 3);
    assert_eq!(env.stats().await?.counters.enqueued, 3);
    assert_eq!(get(&env, "once").await?.state.run_count, 3);

    // Run-now does not depend on, nor move, the generation.
    let job = NewJob::new("tick_job", json!({}));
    let fire = ScheduleFire { name: "once".into(), claim: None, job };
    assert_eq!(env.b.schedule_fire(&fire).await?, FireOutcome::Fired);
    assert_eq!(generation(&get(&env, "once").await?), 3);
    // Seen the same by another process.
    let peer = env.peer().await;
    assert_eq!(peer.schedule_get("once").await?.map(|s| s.state.generation), Some(3));
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
