//! Retrying a job now: a retrying job (waiting for its backoff) becomes ready at once,
//! keeping its history; a dead one goes back through `retry_dead` (`JobQueue::retry_job`).

use chrono::Utc;
use jobs_core::backend::FailOutcome;
use jobs_core::{JobId, JobStatus};
use serde_json::json;

use crate::{
    Env, Kind, LEASE, TestResult, assert_invalid_state, assert_not_found, failure, late_retry,
};

conformance!(retry_now_makes_a_retrying_job_ready_at_once, retry_job_covers_retrying_and_dead_jobs);

async fn retry_now_makes_a_retrying_job_ready_at_once(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("flaky", json!({ "n": 1 })).max_retries(3).await?;
    let l = env.take(id, LEASE).await?;
    let out = env.fail(failure(l.lease, "boom", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert!(env.fetch(1).await?.jobs.is_empty(), "its backoff is an hour");

    let before = Utc::now();
    env.b.retry_now(id).await?;
    let after = Utc::now();
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!((job.retry_count, job.attempt), (1, 1), "history kept");
    assert_eq!(job.error.as_deref(), Some("boom"));
    assert_eq!(job.args, json!({ "n": 1 }));
    crate::assert_within("scheduled_at", job.scheduled_at.ok_or("due now")?, before, after);
    let stats = env.stats().await?;
    assert_eq!((stats.retrying, stats.scheduled, stats.pending.normal), (0, 0, 1));
    let c = env.stats().await?.counters;
    assert_eq!((c.failed, c.retried), (1, 1), "no counter moves");

    let again = env.take(id, LEASE).await?;
    assert_eq!(again.lease.attempt, 2);
    // Not retrying (running now), twice, unknown.
    assert_invalid_state(
        env.b.retry_now(id).await.err().ok_or("running")?,
        id,
        JobStatus::Running,
        "retry",
    );
    let unknown = JobId::new();
    assert_not_found(env.b.retry_now(unknown).await.err().ok_or("unknown")?, unknown);
    let pending = env.q.enqueue("other", json!({})).await?;
    assert_invalid_state(
        env.b.retry_now(pending).await.err().ok_or("pending")?,
        pending,
        JobStatus::Pending,
        "retry",
    );
    Ok(())
}

async fn retry_job_covers_retrying_and_dead_jobs(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let dead = env.q.enqueue("doomed", json!({})).max_retries(0).await?;
    let l = env.take(dead, LEASE).await?;
    assert_eq!(env.fail(failure(l.lease, "x", true, late_retry())).await?, FailOutcome::Dead);
    assert_invalid_state(
        env.b.retry_now(dead).await.err().ok_or("dead")?,
        dead,
        JobStatus::Failed,
        "retry",
    );
    env.q.retry_job(dead).await?;
    assert_eq!(env.job(dead).await?.status, JobStatus::Pending);
    assert_eq!(env.stats().await?.dead_letter, 0);
    let l = env.take(dead, LEASE).await?;
    env.complete(l.lease, json!(null)).await?;
    assert_invalid_state(
        env.q.retry_job(dead).await.err().ok_or("completed")?,
        dead,
        JobStatus::Completed,
        "retry",
    );
    Ok(())
}
