//! Cancel: waiting jobs are cancelled at once, running jobs on request (through
//! heartbeat and fail), and finished or unknown jobs cannot be cancelled.

use std::time::Duration;

use chrono::Utc;
use jobs_core::backend::{AckOutcome, CancelOutcome, Completion, FailOutcome, Heartbeat};
use jobs_core::{JobId, JobPriority, JobStatus, QueueCounters, QueueStats};
use serde_json::{Value, json};

use crate::{
    Env, HOUR, Kind, LEASE, TestResult, assert_invalid_state, assert_not_found, assert_within,
    failure, late_retry, pending,
};

conformance!(
    cancel_removes_waiting_jobs_for_good,
    cancel_running_job_is_requested_then_cancelled_by_fail,
    complete_after_a_cancel_request_cancels,
    cancel_finished_or_unknown_jobs_is_an_error,
);

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
    assert_eq!(job.args, Value::Null, "a cancelled job's args are dropped");
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
