//! Statistics: queue stats stay exact through every transition, and per-minute throughput.

use jobs_core::backend::{AckOutcome, CancelOutcome, FailOutcome};
use jobs_core::{EnqueueOutcome, Error, JobPriority, NewJob, QueueCounters, QueueStats, RunAt};
use serde_json::json;

use crate::{Env, HOUR, Kind, LEASE, TestResult, failure, late_retry, new_job, pending};

conformance!(
    stats_stay_exact_through_a_mixed_sequence,
    throughput_counts_completions_and_failures_per_minute,
);

async fn stats_stay_exact_through_a_mixed_sequence(kind: Kind) -> TestResult {
    use JobPriority::*;
    let env = Env::open(kind).await;
    let mut expected = QueueStats::default();
    let check = |expected: QueueStats, step: &'static str| {
        let b = env.b.clone();
        async move {
            let got = b.stats().await?;
            assert_eq!(got, expected, "stats after: {step}");
            Ok::<_, Error>(())
        }
    };
    check(expected.clone(), "nothing").await?;

    let mut batch = Vec::new();
    for (p, n) in [(Critical, 2), (High, 3), (Normal, 4), (Low, 5)] {
        for i in 0..n {
            batch.push(new_job(&format!("{p}-{i}"), p));
        }
    }
    let delayed: Vec<NewJob> = (0..2)
        .map(|i| NewJob { run_at: RunAt::Delay(HOUR), ..new_job(&format!("delayed-{i}"), Normal) })
        .collect();
    batch.extend(delayed.iter().cloned());
    env.b.enqueue(&batch).await?;
    // A duplicate is not counted.
    let again = NewJob { id: batch[0].id, ..new_job("again", Normal) };
    assert_eq!(env.b.enqueue(&[again]).await?, [EnqueueOutcome::Duplicate]);
    expected.pending = pending(2, 3, 4, 5);
    expected.total_pending = 14;
    expected.scheduled = 2;
    expected.counters.enqueued = 16;
    check(expected.clone(), "enqueue").await?;

    let f = env.fetch(4).await?;
    let got: Vec<JobPriority> = f.jobs.iter().map(|l| l.job.priority).collect();
    assert_eq!(got, [Critical, Critical, High, High]);
    expected.pending = pending(0, 1, 4, 5);
    expected.total_pending = 10;
    expected.processing = 4;
    check(expected.clone(), "fetch 4").await?;

    assert_eq!(env.complete(f.jobs[0].lease, json!(1)).await?, AckOutcome::Completed);
    expected.processing = 3;
    expected.counters.completed = 1;
    check(expected.clone(), "complete").await?;

    let retrying = f.jobs[1].lease;
    let out = env.fail(failure(retrying, "again", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }));
    expected.processing = 2;
    expected.scheduled = 3;
    expected.retrying = 1;
    expected.counters.failed = 1;
    expected.counters.retried = 1;
    check(expected.clone(), "fail → retrying").await?;

    let out = env.fail(failure(f.jobs[2].lease, "fatal", false, late_retry())).await?;
    assert_eq!(out, FailOutcome::Dead);
    expected.processing = 1;
    expected.dead_letter = 1;
    expected.counters.failed = 2;
    expected.counters.dead = 1;
    check(expected.clone(), "fail → dead").await?;

    let low = env.b.list_pending(Some(Low), 1).await?;
    assert_eq!(env.b.cancel(low[0].id).await?, CancelOutcome::Cancelled);
    expected.pending = pending(0, 1, 4, 4);
    expected.total_pending = 9;
    expected.counters.cancelled = 1;
    check(expected.clone(), "cancel pending").await?;

    assert_eq!(env.b.cancel(delayed[0].id).await?, CancelOutcome::Cancelled);
    expected.scheduled = 2;
    expected.counters.cancelled = 2;
    check(expected.clone(), "cancel delayed").await?;

    assert_eq!(env.b.cancel(retrying.id).await?, CancelOutcome::Cancelled);
    expected.scheduled = 1;
    expected.retrying = 0;
    expected.counters.cancelled = 3;
    check(expected.clone(), "cancel retrying").await?;

    let running = f.jobs[3].lease;
    assert_eq!(env.b.cancel(running.id).await?, CancelOutcome::Requested);
    check(expected.clone(), "cancel requested").await?;
    assert_eq!(
        env.fail(failure(running, "stopped", true, late_retry())).await?,
        FailOutcome::Cancelled
    );
    expected.processing = 0;
    expected.counters.cancelled = 4;
    check(expected.clone(), "fail → cancelled").await?;

    assert_eq!(
        expected,
        QueueStats {
            pending: pending(0, 1, 4, 4),
            scheduled: 1,
            processing: 0,
            dead_letter: 1,
            total_pending: 9,
            retrying: 0,
            unique_locks: 0,
            parked: 0,
            counters: QueueCounters {
                enqueued: 16,
                completed: 1,
                failed: 2,
                retried: 1,
                dead: 1,
                cancelled: 4,
                stalled: 0,
                dead_dropped: 0,
                purged: 0,
                throttled: 0,
            },
            unhandled: Default::default(),
        }
    );
    Ok(())
}

async fn throughput_counts_completions_and_failures_per_minute(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let empty = env.b.throughput().await?;
    assert_eq!(empty.len(), 60);
    assert!(empty.iter().all(|b| b.completed == 0 && b.failed == 0));
    assert!(empty.windows(2).all(|w| w[1].start - w[0].start == chrono::Duration::minutes(1)));
    let before = chrono::Utc::now();
    for i in 0..5 {
        let id = env.add(&format!("t{i}"), JobPriority::Normal).await?;
        let leased = env.take(id, LEASE).await?;
        if i < 3 {
            env.q.complete(leased.lease, serde_json::json!(i)).await?;
        } else {
            // One retry and one dead-lettering: two failed attempts.
            env.fail(failure(leased.lease, "boom", i == 3, late_retry())).await?;
        }
    }
    let after = chrono::Utc::now();
    let buckets = env.b.throughput().await?;
    assert_eq!(buckets.len(), 60);
    let last = buckets.last().ok_or("no buckets")?;
    assert!(last.start <= after && after - last.start < chrono::Duration::minutes(1));
    let (c, f): (u64, u64) =
        buckets.iter().fold((0, 0), |(c, f), b| (c + b.completed, f + b.failed));
    assert_eq!((c, f), (3, 2), "every event counted once, in the last hour");
    // All in the minute(s) the calls ran in.
    let first_minute = before.timestamp().div_euclid(60) * 60;
    for b in &buckets {
        if b.completed + b.failed > 0 {
            assert!(b.start.timestamp() >= first_minute, "{b:?}");
        }
    }
    Ok(())
}
