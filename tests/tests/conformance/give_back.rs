//! Give-backs (`Backend::give_back`): a delivery whose handler its worker lacks goes back
//! as a delayed job without using a retry, counted for its name; once no live worker has
//! had the handler for `dead_after`, it is dead-lettered with that reason.

use std::time::{Duration, Instant};

use chrono::Utc;
use jobs_core::backend::{GiveBack, GiveBackOutcome, Lease, UNHANDLED_GAP};
use jobs_core::{JobStatus, UnhandledStats};
use serde_json::json;

use crate::{Env, Kind, LEASE, TestResult, assert_stale, assert_within, ms, td};

conformance!(
    job_without_local_handler_is_given_back_without_a_retry,
    job_no_live_worker_handles_goes_dead_after_configured_time,
    a_live_worker_with_the_handler_restarts_the_time_to_the_dead_letter_queue,
    a_cancelled_job_given_back_is_cancelled,
);

fn give(lease: Lease, delay: Duration, handled_elsewhere: bool, dead_after: Duration) -> GiveBack {
    GiveBack { lease, name: "resize".into(), delay, handled_elsewhere, dead_after }
}

async fn unhandled(env: &Env) -> Result<UnhandledStats, String> {
    let stats = env.stats().await.map_err(|e| e.to_string())?;
    stats.unhandled.get("resize").cloned().ok_or_else(|| format!("no entry: {stats:?}"))
}

async fn job_without_local_handler_is_given_back_without_a_retry(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("resize", json!({ "w": 1 })).max_retries(3).await?;
    let l = env.take(id, LEASE).await?;
    let before = Utc::now();
    let out = env.b.give_back(&give(l.lease, ms(100), true, LEASE)).await?;
    let after = Utc::now();
    let GiveBackOutcome::Delayed { at } = out else {
        return Err(format!("expected Delayed, got {out:?}").into());
    };
    assert_within("offered again", at, before + td(ms(100)), after + td(ms(100)));
    let job = env.job(id).await?;
    assert_eq!((job.status, job.retry_count, job.attempt), (JobStatus::Pending, 0, 1));
    assert_eq!((job.scheduled_at, job.error), (Some(at), None));
    assert_eq!(job.args, json!({ "w": 1 }));
    let stats = env.stats().await?;
    assert_eq!((stats.scheduled, stats.processing, stats.total_pending), (1, 0, 0));
    assert_eq!((stats.counters.failed, stats.counters.retried), (0, 0), "no retry used");
    let u = unhandled(&env).await?;
    assert_eq!((u.given_back, u.no_live_worker_since), (1, None));
    assert_within("last give-back", u.last_given_back_at.ok_or("last")?, before, after);
    // The old delivery is fenced: giving it back again changes nothing, counts nothing.
    assert_eq!(
        env.b.give_back(&give(l.lease, ms(100), true, LEASE)).await?,
        GiveBackOutcome::Stale
    );
    assert_eq!(unhandled(&env).await?.given_back, 1);
    // Offered again once due, as a new delivery that can complete.
    let (again, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
    assert_eq!((again.lease.attempt, again.job.retry_count), (2, 0));
    env.complete(again.lease, json!(null)).await?;
    assert_eq!(env.job(id).await?.status, JobStatus::Completed);
    assert_stale(env.q.complete(l.lease, json!(null)).await.err().ok_or("not stale")?, id, 1);
    Ok(())
}

async fn job_no_live_worker_handles_goes_dead_after_configured_time(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("resize", json!({})).max_retries(3).await?;
    let dead_after = ms(300);
    let first = Instant::now();
    let started = Utc::now();
    let mut gave_back = 0u64;
    let dead_at = loop {
        let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
        let out = env.b.give_back(&give(l.lease, ms(20), false, dead_after)).await?;
        gave_back += 1;
        match out {
            GiveBackOutcome::Delayed { .. } => {
                assert!(
                    first.elapsed() < dead_after + ms(200),
                    "still not dead after {:?}",
                    first.elapsed()
                );
                let u = unhandled(&env).await?;
                assert_within(
                    "run start",
                    u.no_live_worker_since.ok_or("since")?,
                    started,
                    started + td(ms(100)),
                );
            }
            GiveBackOutcome::Dead => break first.elapsed(),
            other => return Err(format!("unexpected {other:?}").into()),
        }
        if gave_back > 200 {
            return Err("too many give-backs".into());
        }
    };
    assert!(dead_at >= dead_after - ms(10), "dead after {dead_at:?}, before {dead_after:?}");
    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some(r#"no live worker has a handler for "resize""#));
    assert_eq!(job.retry_count, 0, "no retry was used");
    assert_eq!(env.b.list_dead(0, 10).await?.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    let stats = env.stats().await?;
    assert_eq!((stats.dead_letter, stats.counters.dead, stats.counters.retried), (1, 1, 0));
    assert_eq!(unhandled(&env).await?.given_back, gave_back);
    Ok(())
}

async fn a_live_worker_with_the_handler_restarts_the_time_to_the_dead_letter_queue(
    kind: Kind,
) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("resize", json!({})).await?;
    let dead_after = ms(150);
    let l = env.take(id, LEASE).await?;
    assert!(matches!(
        env.b.give_back(&give(l.lease, ms(1), false, dead_after)).await?,
        GiveBackOutcome::Delayed { .. }
    ));
    assert!(unhandled(&env).await?.no_live_worker_since.is_some());
    tokio::time::sleep(dead_after + ms(50)).await;
    // A worker with the handler is live: the run ends, and nothing dies.
    let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
    assert!(matches!(
        env.b.give_back(&give(l.lease, ms(1), true, dead_after)).await?,
        GiveBackOutcome::Delayed { .. }
    ));
    assert_eq!(unhandled(&env).await?.no_live_worker_since, None);
    // Gone again: the time starts from now, not from the first give-back.
    let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
    let before = Utc::now();
    assert!(matches!(
        env.b.give_back(&give(l.lease, ms(1), false, dead_after)).await?,
        GiveBackOutcome::Delayed { .. }
    ));
    let u = unhandled(&env).await?;
    assert_within("new run", u.no_live_worker_since.ok_or("since")?, before, Utc::now());
    assert_eq!(u.given_back, 3);
    assert!(UNHANDLED_GAP > dead_after);
    Ok(())
}

async fn a_cancelled_job_given_back_is_cancelled(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("resize", json!({})).await?;
    let l = env.take(id, LEASE).await?;
    env.b.cancel(id).await?;
    let out = env.b.give_back(&give(l.lease, ms(1), false, Duration::ZERO)).await?;
    assert_eq!(out, GiveBackOutcome::Cancelled);
    assert_eq!(env.job(id).await?.status, JobStatus::Cancelled);
    assert!(env.stats().await?.unhandled.is_empty(), "a cancel is not a give-back");
    Ok(())
}
