//! Unique jobs (`NewJob::unique`): while the job holding a key's lock is in its window, an
//! enqueue with that key creates no job and is answered with the holder; every transition
//! that ends the window releases the lock in the same step (one case per exit path), the
//! window's bound (`for`) ends it too, and `replace` gives a queued holder the new args.

use std::time::Duration;

use jobs_core::backend::{AckOutcome, CancelOutcome, FailOutcome, GiveBack, GiveBackOutcome};
use jobs_core::{
    EnqueueOutcome, Error, JobId, JobPriority, JobStatus, NewJob, OnConflict, UniqueLock,
    UniqueUntil,
};
use serde_json::{Value, json};

use crate::{Env, HOUR, Kind, LEASE, TestResult, failure, late_retry, ms, reap_now};

conformance!(
    a_duplicate_is_kept_out_while_the_holder_waits_runs_or_retries,
    completing_the_holder_releases_its_lock,
    dead_lettering_by_fail_releases_the_lock,
    dead_lettering_by_reap_releases_the_lock_and_a_requeue_keeps_it,
    dead_lettering_by_give_back_releases_the_lock,
    cancelling_a_waiting_holder_releases_its_lock,
    a_cancelled_running_holder_releases_its_lock_when_it_ends,
    until_started_releases_the_lock_when_the_job_starts,
    the_window_bounds_the_lock,
    replace_gives_a_queued_holder_the_new_args,
    a_batch_is_deduplicated_within_itself,
    a_lock_with_a_bad_window_is_refused_before_anything_is_written,
);

/// A job `name` (args `{"v": v}`) taking the lock of `key` for an hour.
fn locked(name: &str, key: &str, v: i64, until: UniqueUntil, on: OnConflict) -> NewJob {
    let lock = UniqueLock { key: key.into(), window: HOUR, until, on_conflict: on };
    NewJob { unique: Some(lock), ..NewJob::new(name, json!({ "v": v })) }
}

fn keep(key: &str, v: i64) -> NewJob {
    locked("sync", key, v, UniqueUntil::Done, OnConflict::Keep)
}

fn kept_out(existing: JobId) -> EnqueueOutcome {
    EnqueueOutcome::Unique { existing, replaced: false }
}

impl Env {
    /// Enqueues one job through the backend; its outcome.
    async fn put(&self, job: &NewJob) -> jobs_core::Result<EnqueueOutcome> {
        let out = self.b.enqueue(std::slice::from_ref(job)).await?;
        Ok(out[0])
    }

    /// Enqueues `job`, which must be created; its id.
    async fn put_new(&self, job: NewJob) -> Result<JobId, String> {
        match self.put(&job).await.map_err(|e| e.to_string())? {
            EnqueueOutcome::Created => Ok(job.id),
            other => Err(format!("expected {} to be created, got {other:?}", job.id)),
        }
    }

    /// How many uniqueness locks are held (`QueueStats::unique_locks`).
    async fn locks(&self) -> jobs_core::Result<u64> {
        Ok(self.stats().await?.unique_locks)
    }

    /// Whether a duplicate of `key` is kept out by `holder` now, and its record not written.
    async fn assert_held(&self, key: &str, holder: JobId) -> TestResult {
        let dup = keep(key, 99);
        assert_eq!(self.put(&dup).await?, kept_out(holder), "the lock of {key} is held");
        assert!(self.b.get_job(dup.id).await?.is_none(), "a kept-out job is not written");
        Ok(())
    }
}

async fn a_duplicate_is_kept_out_while_the_holder_waits_runs_or_retries(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(keep("k1", 1)).await?;
    env.assert_held("k1", a).await?;
    // Another key, another job; the same key under a delay is kept out too.
    let other = env.put_new(keep("k2", 2)).await?;
    assert_ne!(other, a);
    let delayed = NewJob { run_at: jobs_core::RunAt::Delay(HOUR), ..keep("k1", 3) };
    assert_eq!(env.put(&delayed).await?, kept_out(a));

    let l = env.take(a, LEASE).await?;
    assert_eq!(l.job.args, json!({ "v": 1 }), "the holder keeps its own args");
    env.assert_held("k1", a).await?;
    let out = env.fail(failure(l.lease, "boom", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    env.assert_held("k1", a).await?;

    let stats = env.stats().await?;
    assert_eq!(stats.counters.enqueued, 2, "only created jobs are counted: {stats:?}");
    Ok(())
}

async fn completing_the_holder_releases_its_lock(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(keep("k", 1)).await?;
    let l = env.take(a, LEASE).await?;
    assert_eq!(env.locks().await?, 1);
    assert_eq!(env.complete(l.lease, json!("ok")).await?, AckOutcome::Completed);
    assert_eq!(env.locks().await?, 0, "completing released the lock");
    let b = env.put_new(keep("k", 2)).await?;
    env.assert_held("k", b).await?;
    // The first holder's record, kept for its retention, does not hold anything any more.
    assert_eq!(env.job(a).await?.status, JobStatus::Completed);
    Ok(())
}

async fn dead_lettering_by_fail_releases_the_lock(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(NewJob { max_retries: 0, ..keep("k", 1) }).await?;
    let l = env.take(a, LEASE).await?;
    assert_eq!(env.fail(failure(l.lease, "boom", true, late_retry())).await?, FailOutcome::Dead);
    assert_eq!(env.locks().await?, 0, "dead-lettering released the lock");
    let b = env.put_new(keep("k", 2)).await?;
    // Retrying the dead job does not take the lock back: the new job holds it.
    env.b.retry_dead(a).await?;
    env.assert_held("k", b).await?;
    Ok(())
}

async fn dead_lettering_by_reap_releases_the_lock_and_a_requeue_keeps_it(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(NewJob { max_retries: 0, ..keep("k", 1) }).await?;
    // A lost lease taken back: pending again, still holding.
    env.take(a, ms(1)).await?;
    tokio::time::sleep(ms(5)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    env.assert_held("k", a).await?;
    // Lost again past max_stalls: the fail path, dead (no retries left), released.
    env.take(a, ms(1)).await?;
    tokio::time::sleep(ms(5)).await;
    let report = env.reap(jobs_core::backend::ReapOptions { max_stalls: 0, ..reap_now() }).await?;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(env.job(a).await?.status, JobStatus::Failed);
    assert_eq!(env.locks().await?, 0, "the reap's dead-lettering released the lock");
    env.put_new(keep("k", 2)).await?;
    Ok(())
}

async fn dead_lettering_by_give_back_releases_the_lock(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(keep("k", 1)).await?;
    let give = |lease| GiveBack {
        lease,
        name: "sync".into(),
        delay: ms(1),
        handled_elsewhere: true,
        dead_after: HOUR,
    };
    // Given back (delayed): still holding.
    let l = env.take(a, LEASE).await?;
    assert!(matches!(env.b.give_back(&give(l.lease)).await?, GiveBackOutcome::Delayed { .. }));
    env.assert_held("k", a).await?;
    // No worker has the handler any more: dead, released.
    let (l, _) = env.fetch_when_due(a, Duration::from_secs(5)).await?;
    let dead = GiveBack { handled_elsewhere: false, dead_after: Duration::ZERO, ..give(l.lease) };
    assert_eq!(env.b.give_back(&dead).await?, GiveBackOutcome::Dead);
    assert_eq!(env.locks().await?, 0, "the give-back's dead-lettering released the lock");
    env.put_new(keep("k", 2)).await?;
    Ok(())
}

async fn cancelling_a_waiting_holder_releases_its_lock(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let delayed = NewJob { run_at: jobs_core::RunAt::Delay(HOUR), ..keep("later", 2) };
    for (key, job) in [("ready", keep("ready", 1)), ("later", delayed)] {
        let a = env.put_new(job).await?;
        env.assert_held(key, a).await?;
        let held = env.locks().await?;
        assert_eq!(env.q.cancel_job(a).await?, CancelOutcome::Cancelled);
        assert_eq!(env.locks().await?, held - 1, "cancelling released the lock of {key}");
        let b = env.put_new(keep(key, 3)).await?;
        env.assert_held(key, b).await?;
    }
    Ok(())
}

async fn a_cancelled_running_holder_releases_its_lock_when_it_ends(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.put_new(keep("k", 1)).await?;
    let l = env.take(a, LEASE).await?;
    assert_eq!(env.q.cancel_job(a).await?, CancelOutcome::Requested);
    // Only flagged: the job still runs, and holds.
    env.assert_held("k", a).await?;
    assert_eq!(env.complete(l.lease, json!(null)).await?, AckOutcome::Cancelled);
    assert_eq!(env.locks().await?, 0, "ending cancelled released the lock");
    let b = env.put_new(keep("k", 2)).await?;
    // And through fail.
    let l = env.take(b, LEASE).await?;
    assert_eq!(env.q.cancel_job(b).await?, CancelOutcome::Requested);
    assert_eq!(
        env.fail(failure(l.lease, "stop", true, late_retry())).await?,
        FailOutcome::Cancelled
    );
    assert_eq!(env.locks().await?, 0, "failing cancelled released the lock");
    env.put_new(keep("k", 3)).await?;
    Ok(())
}

async fn until_started_releases_the_lock_when_the_job_starts(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let started = |v| locked("sync", "k", v, UniqueUntil::Started, OnConflict::Keep);
    let a = env.put_new(started(1)).await?;
    assert_eq!(env.put(&started(2)).await?, kept_out(a));
    let l = env.take(a, LEASE).await?;
    assert_eq!(env.locks().await?, 0, "starting released the lock");
    // Running: the window has ended, a new job is queued, and holds.
    let b = env.put_new(started(3)).await?;
    assert_eq!(env.put(&started(4)).await?, kept_out(b));
    // The first one ending does not release the second's lock.
    assert_eq!(env.complete(l.lease, json!(1)).await?, AckOutcome::Completed);
    assert_eq!(env.put(&started(5)).await?, kept_out(b));
    Ok(())
}

async fn the_window_bounds_the_lock(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let short = |v| {
        let mut j = keep("k", v);
        if let Some(u) = &mut j.unique {
            u.window = ms(40);
        }
        j
    };
    let a = env.put_new(short(1)).await?;
    assert_eq!(env.put(&short(2)).await?, kept_out(a));
    tokio::time::sleep(ms(80)).await;
    // Past its bound the lock excludes nothing, though its job still waits; the new job
    // takes it.
    let b = env.put_new(short(3)).await?;
    assert_eq!(env.put(&short(4)).await?, kept_out(b));
    // The old holder ending leaves the new lock alone.
    let l = env.take(a, LEASE).await?;
    assert_eq!(env.complete(l.lease, json!(1)).await?, AckOutcome::Completed);
    assert_eq!(env.put(&short(5)).await?, kept_out(b));
    assert_eq!(env.locks().await?, 1);
    Ok(())
}

async fn replace_gives_a_queued_holder_the_new_args(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let debounce = |v| locked("sync", "k", v, UniqueUntil::Done, OnConflict::Replace);
    let replaced = |existing| EnqueueOutcome::Unique { existing, replaced: true };
    let a = env.put_new(debounce(1)).await?;
    assert_eq!(env.put(&debounce(2)).await?, replaced(a));
    assert_eq!(env.put(&debounce(3)).await?, replaced(a));
    assert_eq!(env.job(a).await?.args, json!({ "v": 3 }), "latest data wins");
    // Running: the next one is a new job, queued, holding; then it is the one replaced.
    let l = env.take(a, LEASE).await?;
    assert_eq!(l.job.args, json!({ "v": 3 }));
    let b = env.put_new(debounce(4)).await?;
    assert_eq!(env.put(&debounce(5)).await?, replaced(b));
    // The running one ending leaves the queued one's lock alone.
    assert_eq!(env.complete(l.lease, json!(1)).await?, AckOutcome::Completed);
    assert_eq!(env.locks().await?, 1, "b's lock");
    assert_eq!(env.put(&debounce(6)).await?, replaced(b));
    let l = env.take(b, LEASE).await?;
    assert_eq!(l.job.args, json!({ "v": 6 }));
    assert_eq!(env.job(a).await?.status, JobStatus::Completed);
    // At most one queued and one running of the key, whatever came in between.
    let s = env.stats().await?;
    assert_eq!((s.pending.normal, s.processing, s.counters.enqueued), (0, 1, 2), "{s:?}");
    Ok(())
}

async fn a_batch_is_deduplicated_within_itself(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let batch = [keep("k1", 1), keep("k1", 2), keep("k2", 3), keep("k1", 4)];
    let out = env.b.enqueue(&batch).await?;
    let (a, c) = (batch[0].id, batch[2].id);
    assert_eq!(
        out,
        [EnqueueOutcome::Created, kept_out(a), EnqueueOutcome::Created, kept_out(a)],
        "the first of a key in the batch takes the lock"
    );
    assert!(env.b.get_job(batch[1].id).await?.is_none());
    env.assert_held("k2", c).await?;

    // Replace within one batch: the first takes the later ones' args.
    let debounce = |v| locked("sync", "r", v, UniqueUntil::Done, OnConflict::Replace);
    let batch = [debounce(1), debounce(2), debounce(3)];
    let first = batch[0].id;
    let out = env.b.enqueue(&batch).await?;
    let replaced = EnqueueOutcome::Unique { existing: first, replaced: true };
    assert_eq!(out, [EnqueueOutcome::Created, replaced, replaced]);
    assert_eq!(env.job(first).await?.args, json!({ "v": 3 }));
    let f = env.fetch(10).await?;
    let got: Vec<(JobId, Value)> = f.jobs.iter().map(|l| (l.job.id, l.job.args.clone())).collect();
    assert_eq!(got, [(a, json!({"v": 1})), (c, json!({"v": 3})), (first, json!({"v": 3}))]);
    Ok(())
}

async fn a_lock_with_a_bad_window_is_refused_before_anything_is_written(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let mut bad = keep("k", 1);
    if let Some(u) = &mut bad.unique {
        u.window = Duration::ZERO;
    }
    let good = keep("other", 2);
    let err = env.q.enqueue_many(&[good.clone(), bad]).await;
    assert!(matches!(err, Err(Error::InvalidJob { .. })), "{err:?}");
    assert!(env.b.get_job(good.id).await?.is_none(), "nothing of the batch is written");
    // The good job alone goes in, and holds its key.
    let id = env.q.enqueue_job(NewJob { priority: JobPriority::High, ..good }).await?;
    env.assert_held("other", id).await?;
    Ok(())
}
