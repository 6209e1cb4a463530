//! The dead-letter queue: listing, retrying and clearing dead jobs, and its `dead_max`
//! and `dead_ttl` bounds.

use jobs_core::backend::{BackendConfig, ERR_WORKER_LOST, FailOutcome, ReapOptions, ReapReport};
use jobs_core::{JobId, JobStatus, QueueCounters, QueueStats};
use serde_json::json;

use crate::{
    Env, Kind, LEASE, TestResult, assert_invalid_state, assert_not_found, failure, ids, kill_jobs,
    late_retry, ms, reap_now,
};

conformance!(
    dead_letter_retry_and_clear,
    dead_letter_queue_keeps_the_newest_dead_max,
    dead_letter_entries_expire_after_dead_ttl,
    dead_letter_ttl_is_enforced_on_the_reapers_timer,
    retry_dead_resets_the_stall_count,
);

async fn dead_letter_retry_and_clear(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // No retries: the first failure dead-letters.
    let a = env.q.enqueue("no_retries", json!({ "a": 1 })).max_retries(0).await?;
    // Retries left, but the failure is not retryable.
    let b = env.q.enqueue("fatal", json!({ "b": 2 })).max_retries(5).await?;

    let la = env.take(a, LEASE).await?;
    assert_eq!(
        env.fail(failure(la.lease, "a failed", true, late_retry())).await?,
        FailOutcome::Dead
    );
    tokio::time::sleep(ms(5)).await;
    let lb = env.take(b, LEASE).await?;
    assert_eq!(
        env.fail(failure(lb.lease, "b failed", false, late_retry())).await?,
        FailOutcome::Dead
    );

    let dead = env.q.get_dead_letter_jobs(10).await?;
    assert_eq!(ids(&dead), [b, a], "newest first");
    assert!(dead.iter().all(|j| j.status == JobStatus::Failed));
    assert_eq!(dead[0].retry_count, 0, "a non-retryable failure uses no retry");
    assert_eq!(ids(&env.b.list_dead(1, 10).await?), [a]);
    assert_eq!(ids(&env.b.list_dead(0, 1).await?), [b]);
    assert!(env.b.list_dead(2, 10).await?.is_empty());
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.failed), (2, 2, 2));

    // Back to pending, with its history.
    env.q.retry_dead_letter_job(a).await?;
    let job = env.job(a).await?;
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.completed_at, None);
    assert_eq!((job.retry_count, job.attempt), (0, 1));
    assert_eq!(job.error.as_deref(), Some("a failed"));
    assert_eq!(job.args, json!({ "a": 1 }));
    let stats = env.stats().await?;
    assert_eq!((stats.pending.normal, stats.dead_letter), (1, 1));
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [b]);

    // Not in the DLQ (pending now) / unknown.
    let err = env.q.retry_dead_letter_job(a).await.err().ok_or("retry of a pending job")?;
    assert_invalid_state(err, a, JobStatus::Pending, "retry");
    let unknown = JobId::new();
    let err = env.q.retry_dead_letter_job(unknown).await.err().ok_or("retry of unknown")?;
    assert_not_found(err, unknown);

    // It runs again (attempt 2); without retries left, failing makes it dead again.
    let la = env.take(a, LEASE).await?;
    assert_eq!(la.lease.attempt, 2);
    assert_eq!(la.job.args, json!({ "a": 1 }));
    assert_eq!(env.fail(failure(la.lease, "again", true, late_retry())).await?, FailOutcome::Dead);

    // b had retries it never used: after a DLQ retry, a retryable failure retries.
    env.q.retry_dead_letter_job(b).await?;
    let lb = env.take(b, LEASE).await?;
    assert_eq!(lb.lease.attempt, 2);
    let out = env.fail(failure(lb.lease, "b again", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert_eq!(env.job(b).await?.retry_count, 1);
    let err = env.q.retry_dead_letter_job(b).await.err().ok_or("retry of a retrying job")?;
    assert_invalid_state(err, b, JobStatus::Retrying, "retry");

    assert_eq!(env.q.clear_dead_letter_queue().await?, 1);
    assert!(env.b.list_dead(0, 10).await?.is_empty());
    assert_eq!(env.b.get_job(a).await?, None, "cleared DLQ records are deleted");
    assert_eq!(env.job(b).await?.status, JobStatus::Retrying, "other jobs are untouched");
    assert_eq!(env.q.clear_dead_letter_queue().await?, 0);
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            scheduled: 1,
            retrying: 1,
            unique_locks: 0,
            counters: QueueCounters {
                enqueued: 2,
                failed: 4,
                retried: 1,
                dead: 3,
                ..Default::default()
            },
            ..Default::default()
        }
    );
    Ok(())
}

async fn dead_letter_queue_keeps_the_newest_dead_max(kind: Kind) -> TestResult {
    let cfg = BackendConfig { dead_max: 3, ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let dead = kill_jobs(&env, 5).await?;
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [dead[4], dead[3], dead[2]]);
    for id in &dead[..2] {
        assert_eq!(env.b.get_job(*id).await?, None, "a dropped DLQ entry's record is deleted");
    }
    let stats = env.stats().await?;
    assert_eq!(stats.dead_letter, 3);
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 5, failed: 5, dead: 5, dead_dropped: 2, ..Default::default() }
    );
    Ok(())
}

async fn dead_letter_entries_expire_after_dead_ttl(kind: Kind) -> TestResult {
    let cfg = BackendConfig { dead_ttl: ms(150), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let old = kill_jobs(&env, 1).await?;
    tokio::time::sleep(ms(300)).await;
    let new = kill_jobs(&env, 1).await?;
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), new);
    assert_eq!(env.b.get_job(old[0]).await?, None);
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.dead_dropped), (1, 2, 1));
    Ok(())
}

// regression: the DLQ's age limit was enforced only when another job died; a queue where
// nothing dies kept its dead-letter entries for ever. The reaper's timer (the reap call)
// trims the DLQ as a death does.
async fn dead_letter_ttl_is_enforced_on_the_reapers_timer(kind: Kind) -> TestResult {
    let cfg = BackendConfig { dead_ttl: ms(150), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let old = kill_jobs(&env, 2).await?;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(env.b.list_dead(0, 10).await?.len(), 2, "nothing trims without a call");
    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, ..ReapReport::default() });
    assert!(env.b.list_dead(0, 10).await?.is_empty(), "expired entries go at the reap");
    for id in old {
        assert_eq!(env.b.get_job(id).await?, None, "an expired DLQ entry's record is deleted");
    }
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.dead_dropped), (0, 2, 2));
    Ok(())
}

// regression: a job dead-lettered as "worker lost" kept its stall count through
// `retry_dead`, so the next lost lease failed it again at once instead of putting it back.
async fn retry_dead_resets_the_stall_count(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let opts = ReapOptions { max_stalls: 1, ..reap_now() };
    let id = env.q.enqueue("stalls", json!({})).max_retries(0).await?;
    let lose = |expected: ReapReport| {
        let env = &env;
        async move {
            env.take(id, ms(1)).await?;
            tokio::time::sleep(ms(10)).await;
            let got = env.reap(opts).await?;
            assert_eq!(got, expected);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    };
    let requeued = ReapReport { ran: true, requeued: 1, ..ReapReport::default() };
    let failed = ReapReport { ran: true, failed: 1, ..ReapReport::default() };
    lose(requeued).await?;
    lose(failed).await?;
    let job = env.job(id).await?;
    assert_eq!((job.status, job.error.as_deref()), (JobStatus::Failed, Some(ERR_WORKER_LOST)));

    env.q.retry_dead_letter_job(id).await?;
    // A fresh start: one lost lease puts it back, as for a new job.
    lose(requeued).await?;
    assert_eq!(env.job(id).await?.status, JobStatus::Pending);
    lose(failed).await?;
    assert_eq!(env.job(id).await?.status, JobStatus::Failed);
    Ok(())
}
