//! Deleting one finished job (completed, cancelled or dead) for good; a job that may still
//! run is refused.

use jobs_core::backend::{FailOutcome, ListRequest, ListState};
use jobs_core::{JobPriority, JobStatus, NewJob};
use serde_json::json;

use crate::{
    Env, Kind, LEASE, TestResult, assert_invalid_state, assert_not_found, failure, late_retry,
};

conformance!(
    finished_jobs_are_deleted_and_their_id_is_free_again,
    a_job_that_may_still_run_is_not_deleted,
);

async fn finished_jobs_are_deleted_and_their_id_is_free_again(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let done = env.add("done", JobPriority::Normal).await?;
    let l = env.take(done, LEASE).await?;
    env.complete(l.lease, json!({ "ok": true })).await?;
    let dead = env.q.enqueue("dead", json!({})).max_retries(0).await?;
    let l = env.take(dead, LEASE).await?;
    assert_eq!(env.fail(failure(l.lease, "boom", false, late_retry())).await?, FailOutcome::Dead);
    // Cancelled while queued: its queue entry is left behind until a fetch skips it.
    let gone = env.add("gone", JobPriority::High).await?;
    env.b.cancel(gone).await?;
    let before = env.stats().await?;

    for id in [done, dead, gone] {
        env.b.delete(id).await?;
        assert!(env.b.get_job(id).await?.is_none(), "{id} deleted");
        assert_not_found(env.b.delete(id).await.expect_err("deleted already"), id);
    }
    let s = env.stats().await?;
    assert_eq!((s.dead_letter, s.total_pending), (0, 0));
    assert_eq!(s.counters, before.counters, "no counter moves");
    assert!(env.b.list_dead(0, 10).await?.is_empty());
    for state in [ListState::Completed, ListState::Cancelled, ListState::Failed] {
        assert!(env.b.list_jobs(&ListRequest::new(state, 10)).await?.jobs.is_empty(), "{state}");
    }
    // The ids are free: an enqueue under one makes a new job, fetched once, with its own args.
    let again = NewJob { id: gone, ..NewJob::new("again", json!({ "n": 2 })) };
    env.add_job(again).await?;
    let got = env.fetch(10).await?;
    assert_eq!(got.jobs.len(), 1, "the old entry is not a second delivery");
    assert_eq!((got.jobs[0].job.id, &got.jobs[0].job.name), (gone, &"again".to_owned()));
    Ok(())
}

async fn a_job_that_may_still_run_is_not_deleted(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // Taken one at a time, before anything else is ready.
    let retrying = env.q.enqueue("flaky", json!({})).max_retries(3).await?;
    let l = env.take(retrying, LEASE).await?;
    let out = env.fail(failure(l.lease, "again", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    let running = env.add("running", JobPriority::Normal).await?;
    env.take(running, LEASE).await?;
    let pending = env.add("pending", JobPriority::Normal).await?;
    let delayed =
        env.q.enqueue("later", json!({})).delay(std::time::Duration::from_secs(3600)).await?;
    for (id, status) in [
        (pending, JobStatus::Pending),
        (delayed, JobStatus::Pending),
        (retrying, JobStatus::Retrying),
        (running, JobStatus::Running),
    ] {
        assert_invalid_state(env.b.delete(id).await.expect_err("refused"), id, status, "delete");
        assert_eq!(env.job(id).await?.status, status, "unchanged");
    }
    let unknown = jobs_core::JobId::new();
    assert_not_found(env.b.delete(unknown).await.expect_err("unknown"), unknown);
    Ok(())
}
