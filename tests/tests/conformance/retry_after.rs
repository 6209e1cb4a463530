//! A handler's own retry delay (`Failure::retry_after`, from `JobError::retry_after` or a
//! `RetryAfter` in its error): used instead of the backoff and its jitter, still counted as
//! a retry and bounded by `max_retries`, and refused beyond the enqueue horizon.

use std::time::Duration;

use chrono::Utc;
use jobs_core::backend::{FailOutcome, Failure};
use jobs_core::{Error, JobStatus, MAX_DELAY, RetryPolicy};
use serde_json::json;

use crate::{Env, HOUR, Kind, LEASE, TestResult, assert_within, failure, ms, td};

conformance!(
    retry_after_replaces_the_backoff_and_still_counts_a_retry,
    retry_after_beyond_the_enqueue_horizon_is_refused_and_changes_nothing,
);

fn asking(f: Failure, after: Duration) -> Failure {
    Failure { retry_after: Some(after), ..f }
}

async fn retry_after_replaces_the_backoff_and_still_counts_a_retry(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // A backoff of an hour with an hour of jitter: a retry within a second is the handler's.
    let policy = RetryPolicy::exponential(HOUR, HOUR).with_jitter(HOUR);
    let id = env.q.enqueue("rate_limited", json!({})).max_retries(2).await?;
    for attempt in 1..=3u32 {
        let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
        assert_eq!(l.job.retry_count, attempt - 1);
        let before = Utc::now();
        let out = env.fail(asking(failure(l.lease, "429", true, policy), ms(150))).await?;
        let after = Utc::now();
        let job = env.job(id).await?;
        if attempt <= 2 {
            let FailOutcome::Retrying { at } = out else {
                return Err(format!("attempt {attempt}: expected Retrying, got {out:?}").into());
            };
            assert_within("retry due", at, before + td(ms(150)), after + td(ms(150)));
            assert_eq!((job.status, job.retry_count), (JobStatus::Retrying, attempt));
            assert_eq!(job.scheduled_at, Some(at));
        } else {
            // No retry left: the asked-for delay does not extend max_retries.
            assert_eq!(out, FailOutcome::Dead);
            assert_eq!((job.status, job.retry_count), (JobStatus::Failed, 2));
        }
    }
    let stats = env.stats().await?;
    assert_eq!((stats.counters.failed, stats.counters.retried, stats.counters.dead), (3, 2, 1));
    Ok(())
}

async fn retry_after_beyond_the_enqueue_horizon_is_refused_and_changes_nothing(
    kind: Kind,
) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("rate_limited", json!({})).max_retries(2).await?;
    let l = env.take(id, LEASE).await?;
    let too_far = asking(failure(l.lease, "429", true, RetryPolicy::default()), MAX_DELAY + ms(1));
    match env.fail(too_far).await {
        Err(Error::InvalidJob { reason }) => {
            assert!(reason.contains("retry_after"), "the error names the field: {reason}")
        }
        other => return Err(format!("expected InvalidJob, got {other:?}").into()),
    }
    let job = env.job(id).await?;
    assert_eq!((job.status, job.retry_count, job.error), (JobStatus::Running, 0, None));
    // The horizon itself is accepted, and the delivery still holds.
    let at_horizon = asking(failure(l.lease, "429", true, RetryPolicy::default()), MAX_DELAY);
    let before = Utc::now();
    let FailOutcome::Retrying { at } = env.fail(at_horizon).await? else {
        return Err("expected Retrying at the horizon".into());
    };
    assert!(at >= before + td(MAX_DELAY) - td(ms(10)), "due {at}, expected about now + 10 years");
    Ok(())
}
