//! Complete and fail: a completed job's record, retries with the policy's backoff until
//! the job is dead-lettered, and the limit on stored error messages.

use std::time::Duration;

use chrono::Utc;
use jobs_core::backend::{FailOutcome, MAX_ERROR_LEN, truncate_error};
use jobs_core::{JobPriority, JobStatus, QueueCounters, QueueStats, RetryPolicy};
use serde_json::json;

use crate::{
    Env, Kind, LEASE, TestResult, assert_within, failure, ids, late_retry, ms, reap_now, td,
};

conformance!(
    completed_job_keeps_its_result_and_its_args,
    retry_backoff_follows_the_policy_then_dead_letters,
    error_messages_are_cut_to_the_limit,
    handler_retry_backoff_sets_the_fail_delay,
    handler_retry_backoff_sets_the_reap_delay,
);

/// A handler with a backoff of its own: 1 s, then 1.5 s (its cap), whatever the worker's.
#[jobs_core::job_handler("conformance_quick_retry", retry_base = "1s", retry_cap = "1500ms")]
async fn conformance_quick_retry() -> Result<(), jobs_core::JobError> {
    Ok(())
}

async fn completed_job_keeps_its_result_and_its_args(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("report", json!({ "big": "payload" })).await?;
    let l = env.take(id, LEASE).await?;
    let result = json!({ "rows": 3, "ok": true });
    let before = Utc::now();
    env.q.complete(l.lease, result.clone()).await?;
    let after = Utc::now();
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.result, Some(result));
    assert_eq!(job.args, json!({ "big": "payload" }), "kept for the retention period");
    assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
    assert_eq!(job.started_at, l.job.started_at);
    assert_eq!((job.attempt, job.retry_count, job.error), (1, 0, None));
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            counters: QueueCounters { enqueued: 1, completed: 1, ..Default::default() },
            ..Default::default()
        }
    );
    Ok(())
}

async fn retry_backoff_follows_the_policy_then_dead_letters(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let policy = RetryPolicy::exponential(ms(50), ms(200));
    let id = env.q.enqueue("flaky", json!({ "k": "v" })).max_retries(3).await?;
    let expected_delays = [ms(50), ms(100), ms(200)];

    for attempt in 1..=4u32 {
        let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
        assert_eq!((l.lease.attempt, l.job.attempt), (attempt, attempt));
        assert_eq!(l.job.retry_count, attempt - 1);
        let started = l.job.started_at.ok_or("started_at")?;

        let error = format!("failure {attempt}");
        let before = Utc::now();
        let out = env.q.fail(&failure(l.lease, &error, true, policy)).await?;
        let after = Utc::now();
        let job = env.job(id).await?;
        assert_eq!(job.error.as_deref(), Some(error.as_str()));

        if attempt <= 3 {
            let delay = expected_delays[attempt as usize - 1];
            let FailOutcome::Retrying { at } = out else {
                return Err(format!("attempt {attempt}: expected Retrying, got {out:?}").into());
            };
            assert_within(
                &format!("retry {attempt} due"),
                at,
                before + td(delay),
                after + td(delay),
            );
            // The same, measured from the start of the attempt (fail came right after it).
            let gap = (at - started).to_std().unwrap_or_default();
            assert!(
                gap >= delay - ms(10) && gap < delay + ms(250),
                "retry {attempt}: due {gap:?} after the start, expected about {delay:?}"
            );
            assert_eq!(job.status, JobStatus::Retrying);
            assert_eq!(job.retry_count, attempt);
            assert_eq!(job.scheduled_at, Some(at));
            assert_eq!(job.args, json!({ "k": "v" }));
            let stats = env.stats().await?;
            assert_eq!((stats.scheduled, stats.retrying, stats.processing), (1, 1, 0));
            assert_eq!(stats.total_pending, 0);
        } else {
            assert_eq!(out, FailOutcome::Dead);
            assert_eq!(job.status, JobStatus::Failed);
            assert_eq!(job.retry_count, 3);
            assert_within("completed_at", job.completed_at.ok_or("completed_at")?, before, after);
            assert_eq!(job.args, json!({ "k": "v" }), "a dead job keeps its args");
        }
    }
    let stats = env.stats().await?;
    assert_eq!(
        stats,
        QueueStats {
            dead_letter: 1,
            counters: QueueCounters {
                enqueued: 1,
                failed: 4,
                retried: 3,
                dead: 1,
                ..Default::default()
            },
            ..Default::default()
        }
    );
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [id]);
    let f = env.fetch(1).await?;
    assert!(f.jobs.is_empty());
    assert_eq!(f.next_due_in, None);
    Ok(())
}

async fn error_messages_are_cut_to_the_limit(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("verbose", JobPriority::Normal).await?;
    let l = env.take(id, LEASE).await?;
    // Three-byte characters, so that the cut must respect a character boundary.
    let long = "é€".repeat(MAX_ERROR_LEN);
    env.fail(failure(l.lease, &long, true, late_retry())).await?;
    let error = env.job(id).await?.error.ok_or("error not stored")?;
    assert_eq!(error, truncate_error(&long));
    assert!(error.len() <= MAX_ERROR_LEN && error.len() > MAX_ERROR_LEN - 4);
    Ok(())
}

// regression: a handler's `retry_base`/`retry_cap` never reached the backend's fail path:
// the job came back after the failing worker's backoff (here an hour), not the handler's.
async fn handler_retry_backoff_sets_the_fail_delay(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("conformance_quick_retry", json!({})).await?;
    // The worker's policy is an hour: only the job's own backoff can bring it back sooner.
    for (attempt, delay) in [(1u32, ms(1000)), (2, ms(1500))] {
        let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
        assert_eq!(l.lease.attempt, attempt);
        let before = Utc::now();
        let out = env.q.fail(&failure(l.lease, "boom", true, late_retry())).await?;
        let after = Utc::now();
        let FailOutcome::Retrying { at } = out else {
            return Err(format!("attempt {attempt}: expected Retrying, got {out:?}").into());
        };
        assert_within(&format!("retry {attempt} due"), at, before + td(delay), after + td(delay));
        assert_eq!(env.job(id).await?.scheduled_at, Some(at));
    }
    // The call's option beats the handler's; a job with none keeps the worker's policy.
    let quick = env.q.enqueue("conformance_quick_retry", json!({})).retry_base(ms(300)).await?;
    let plain = env.q.enqueue("plain", json!({})).await?;
    for (id, delay) in [(quick, ms(300)), (plain, Duration::from_secs(3600))] {
        let l = env.take(id, LEASE).await?;
        let before = Utc::now();
        let out = env.q.fail(&failure(l.lease, "boom", true, late_retry())).await?;
        let after = Utc::now();
        let FailOutcome::Retrying { at } = out else {
            return Err(format!("{id}: expected Retrying, got {out:?}").into());
        };
        assert_within(&format!("{id} due"), at, before + td(delay), after + td(delay));
    }
    Ok(())
}

// regression: the reap path (a job past its timeout) also used only the reaper's backoff.
async fn handler_retry_backoff_sets_the_reap_delay(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("conformance_quick_retry", json!({})).timeout(ms(100)).await?;
    env.take(id, Duration::from_secs(10)).await?;
    // Past started + timeout (+ the zero grace of reap_now): the reap fails it as timed out.
    tokio::time::sleep(ms(300)).await;
    let before = Utc::now();
    let report = env.reap(reap_now()).await?;
    let after = Utc::now();
    assert_eq!(report.failed, 1, "{report:?}");
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Retrying);
    let due = job.scheduled_at.ok_or("a retry has scheduled_at")?;
    assert_within("reaped retry due", due, before + td(ms(1000)), after + td(ms(1000)));
    Ok(())
}
