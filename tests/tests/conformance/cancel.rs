//! Cancel: waiting jobs are cancelled at once, running jobs on request (through
//! heartbeat and fail), and finished or unknown jobs cannot be cancelled.

use std::time::{Duration, Instant};

use chrono::Utc;
use jobs_core::backend::{
    AckOutcome, BackendConfig, CANCEL_READ_LIMIT, CancelNotices, CancelOutcome, Completion,
    FETCH_SKIP_LIMIT, FailOutcome, Heartbeat, Lease,
};
use jobs_core::{JobId, JobPriority, JobStatus, NewJob, QueueCounters, QueueStats, RunAt};
use serde_json::json;

use crate::{
    Env, HOUR, Kind, LEASE, TestResult, assert_invalid_state, assert_not_found, assert_within,
    failure, ids, late_retry, leased_ids, new_job, pending,
};

conformance!(
    cancel_removes_waiting_jobs_for_good,
    cancel_running_job_is_requested_then_cancelled_by_fail,
    complete_after_a_cancel_request_cancels,
    cancel_notices_reach_a_waiting_reader_at_once,
    cancel_notices_wait_for_a_reader_that_was_away,
    cancel_notices_are_read_in_bounded_batches,
    cancel_finished_or_unknown_jobs_is_an_error,
    ghost_entries_never_meet_a_reused_id,
    ghost_entries_drained_per_fetch_are_bounded,
    a_ghost_whose_record_was_purged_is_skipped,
);

/// A cancelled ready job whose record was purged leaves an entry with no record at all:
/// fetch skips it (a record-less entry once made the uniqueness check of fetch fail).
async fn a_ghost_whose_record_was_purged_is_skipped(kind: Kind) -> TestResult {
    let cfg = BackendConfig { result_ttl: Duration::ZERO, ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let gone = env.add("gone", JobPriority::Normal).await?;
    let next = env.add("next", JobPriority::Normal).await?;
    assert_eq!(env.q.cancel_job(gone).await?, CancelOutcome::Cancelled);
    tokio::time::sleep(Duration::from_millis(5)).await;
    env.b.purge(10).await?;
    assert!(env.b.get_job(gone).await?.is_none(), "purged");
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [next]);
    Ok(())
}

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

    let args = [json!({ "job": "ready" }), json!({}), json!({ "job": "retrying" })];
    for (id, args) in [ready, delayed, retrying].into_iter().zip(args) {
        let before = Utc::now();
        assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Cancelled);
        let after = Utc::now();
        let job = env.job(id).await?;
        assert_eq!(job.status, JobStatus::Cancelled);
        assert_eq!(job.args, args, "a cancelled job keeps its args for the retention period");
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
    assert_eq!(job.args, json!({ "job": "long" }), "kept");
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

// regression: a job whose cancel was requested while it ran ended `completed` when its
// handler returned Ok anyway; once a cancel is requested the job ends `cancelled`.
async fn complete_after_a_cancel_request_cancels(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("finishes", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    let before = Utc::now();
    assert_eq!(env.complete(l.lease, json!("done")).await?, AckOutcome::Cancelled);
    let after = Utc::now();
    let job = env.job(id).await?;
    assert_eq!((job.status, &job.result), (JobStatus::Cancelled, &None), "{job:?}");
    assert_eq!(job.args, json!({ "job": "finishes" }), "a cancelled job keeps its args");
    assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            counters: QueueCounters { enqueued: 1, cancelled: 1, ..Default::default() },
            ..Default::default()
        }
    );
    assert!(env.fetch(1).await?.jobs.is_empty(), "a cancelled job was fetched");
    // A repeated acknowledgement says the same and changes nothing.
    assert_eq!(env.complete(l.lease, json!("again")).await?, AckOutcome::Cancelled);
    assert_eq!(env.stats().await?, stats);
    // Through the queue, the refusal is an invalid state.
    let err = env.q.complete(l.lease, json!("again")).await.err().ok_or("completed")?;
    assert_invalid_state(err, id, JobStatus::Cancelled, "complete");
    // In one batch with the same delivery twice, the second sees the first's outcome.
    let other = env.add("twice", JobPriority::Normal).await?;
    let l2 = env.take(other, LEASE).await?;
    env.q.cancel_job(other).await?;
    let done = |r: &str| Completion { lease: l2.lease, result: json!(r) };
    let out = env.b.complete(&[done("a"), done("b")]).await?;
    assert_eq!(out, [AckOutcome::Cancelled, AckOutcome::Cancelled]);
    assert_eq!(env.stats().await?.counters.cancelled, 2);
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

// regression: a running job's worker learned of its cancel only at its next heartbeat; the
// backend must tell a reader blocked on `watch_cancels` at once.
async fn cancel_notices_reach_a_waiting_reader_at_once(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("long", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    let start = env.b.watch_cancels(None, Duration::ZERO).await?;
    assert!(start.leases.is_empty(), "a cursor from `None` lists nothing: {start:?}");

    // The reader is another client (another process, for Redis), waiting far longer than
    // the notice may take.
    let peer = env.peer().await;
    let cursor = start.cursor.clone();
    let reader = tokio::spawn(async move {
        let t = Instant::now();
        let got = peer.watch_cancels(Some(&cursor), Duration::from_secs(10)).await;
        (got, t.elapsed())
    });
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    let (got, took) = reader.await?;
    let got = got?;
    assert_eq!(got.leases, [l.lease], "{got:?}");
    assert_ne!(got.cursor, start.cursor, "the cursor moves past what was read");
    assert!(took < Duration::from_secs(2), "the notice took {took:?}");
    Ok(())
}

// Reconnects must not lose a cancel: notices stay readable from a reader's cursor, in
// order, with each delivery's attempt; waiting jobs are cancelled outright, not noticed.
async fn cancel_notices_wait_for_a_reader_that_was_away(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add("a", JobPriority::Normal).await?;
    let b = env.add("b", JobPriority::Normal).await?;
    let waiting = env.add("waiting", JobPriority::Low).await?;
    let la = env.take(a, LEASE).await?;
    // b's second delivery: the notice names attempt 2.
    let lb = env.take(b, LEASE).await?;
    assert_eq!(env.b.release(&[lb.lease]).await?, 1);
    let lb = env.take(b, LEASE).await?;
    assert_eq!(lb.lease, Lease { id: b, attempt: 2 });

    let start = env.b.watch_cancels(None, Duration::ZERO).await?.cursor;
    assert_eq!(env.q.cancel_job(a).await?, CancelOutcome::Requested);
    assert_eq!(env.q.cancel_job(waiting).await?, CancelOutcome::Cancelled);
    assert_eq!(env.q.cancel_job(b).await?, CancelOutcome::Requested);
    assert_eq!(env.q.cancel_job(a).await?, CancelOutcome::Requested, "asked again");

    // A reader that comes back (a new connection, for Redis) with its cursor.
    let peer = env.peer().await;
    let got = peer.watch_cancels(Some(&start), Duration::ZERO).await?;
    assert_eq!(got.leases, [la.lease, lb.lease, la.lease], "{got:?}");
    // Past the last one: nothing, at once with no wait, after the wait with one.
    let none = peer.watch_cancels(Some(&got.cursor), Duration::ZERO).await?;
    assert_eq!(none, CancelNotices { leases: Vec::new(), cursor: got.cursor.clone() });
    let t = Instant::now();
    let none = peer.watch_cancels(Some(&got.cursor), Duration::from_millis(300)).await?;
    assert_eq!(none, CancelNotices { leases: Vec::new(), cursor: got.cursor.clone() });
    assert!(t.elapsed() >= Duration::from_millis(250), "returned early: {:?}", t.elapsed());
    // The end of the log, read now, lists none of them.
    let end = peer.watch_cancels(None, Duration::ZERO).await?.cursor;
    assert!(peer.watch_cancels(Some(&end), Duration::ZERO).await?.leases.is_empty());
    Ok(())
}

// Work per call is bounded: a reader far behind gets the notices a batch at a time.
async fn cancel_notices_are_read_in_bounded_batches(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("long", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    let start = env.b.watch_cancels(None, Duration::ZERO).await?.cursor;
    let n = CANCEL_READ_LIMIT + 1;
    for _ in 0..n {
        env.q.cancel_job(id).await?;
    }
    let first = env.b.watch_cancels(Some(&start), Duration::ZERO).await?;
    assert_eq!(first.leases.len(), CANCEL_READ_LIMIT);
    assert!(first.leases.iter().all(|x| *x == l.lease));
    let rest = env.b.watch_cancels(Some(&first.cursor), Duration::from_secs(5)).await?;
    assert_eq!(rest.leases, [l.lease]);
    Ok(())
}

// regression: a job with an explicit id, cancelled while ready, leaves its list entry behind
// (a "ghost"); once its record is purged the same id can be enqueued again. The ghost must
// not stand for the new job: both entries were leased in one fetch with the same attempt
// (the job ran twice at once), a delayed re-enqueue was leased at once through the ghost,
// and the ghost count stayed off by one for good.
async fn ghost_entries_never_meet_a_reused_id(kind: Kind) -> TestResult {
    // Cancelled records are purged at the first purge after their cancel.
    let cfg = BackendConfig { result_ttl: Duration::ZERO, ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let reuse = |job: &NewJob, priority: JobPriority, run_at: RunAt| NewJob {
        priority,
        run_at,
        id: job.id,
        ..NewJob::new(job.name.clone(), json!({ "again": true }))
    };

    // Ready again at once, at another priority: one delivery, never two.
    let first = new_job("first", JobPriority::Normal);
    let delayed = new_job("delayed", JobPriority::Low);
    env.add_job(first.clone()).await?;
    env.add_job(delayed.clone()).await?;
    for id in [first.id, delayed.id] {
        assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Cancelled);
    }
    assert_eq!(env.b.purge(10).await?, 2, "both cancelled records are purged");
    env.add_job(reuse(&first, JobPriority::High, RunAt::Now)).await?;
    // Delayed by an hour: its ghost must not make it ready now.
    env.add_job(reuse(&delayed, JobPriority::Low, RunAt::Delay(HOUR))).await?;

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 1, 0, 0), "{stats:?}");
    assert_eq!(stats.scheduled, 1);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [first.id], "listed once");
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [first.id], "one delivery of the reused id, nothing early");
    assert_eq!(f.jobs[0].job.args, json!({ "again": true }));
    assert_eq!(f.jobs[0].lease.attempt, 1);
    assert!(env.fetch(10).await?.jobs.is_empty(), "the ghosts are gone, nothing else is ready");

    // The ghost count is right again: a new job in each ghost's queue counts as one.
    let normal = env.add("normal", JobPriority::Normal).await?;
    let low = env.add("low", JobPriority::Low).await?;
    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 1, 1), "{stats:?}");
    assert_eq!((stats.scheduled, stats.processing), (1, 1));
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [normal, low]);
    assert_eq!(leased_ids(&env.fetch(10).await?), [normal, low]);
    assert_eq!(env.job(delayed.id).await?.status, JobStatus::Pending, "still waiting");
    Ok(())
}

// regression: a mass cancel leaves as many ghosts in the lists, and one fetch drained any
// number of them in a single script run. A fetch skips at most a bounded number of dead
// entries; the rest is for the next call, and the work left is still signalled.
async fn ghost_entries_drained_per_fetch_are_bounded(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let batch: Vec<NewJob> = (0..FETCH_SKIP_LIMIT + 1)
        .map(|i| new_job(&format!("mass-{i}"), JobPriority::Normal))
        .collect();
    env.q.enqueue_many(&batch).await?;
    for j in &batch[..FETCH_SKIP_LIMIT] {
        assert_eq!(env.q.cancel_job(j.id).await?, CancelOutcome::Cancelled);
    }
    let live = batch[FETCH_SKIP_LIMIT].id;
    assert_eq!(env.stats().await?.pending, pending(0, 0, 1, 0));

    let f = env.fetch(1).await?;
    assert!(f.jobs.is_empty(), "the first fetch stops after {FETCH_SKIP_LIMIT} dead entries");
    assert_eq!(env.stats().await?.pending, pending(0, 0, 1, 0));
    // The job behind them is still work: a waiter does not sleep.
    let started = Instant::now();
    env.b.wait_for_work(Duration::from_secs(5)).await?;
    assert!(started.elapsed() < Duration::from_secs(2), "work left must be signalled");
    assert_eq!(leased_ids(&env.fetch(1).await?), [live]);
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.processing), (0, 1));
    assert!(env.fetch(1).await?.jobs.is_empty());
    Ok(())
}
