//! Enqueue: the record a job is written as, batches that are all or nothing, duplicate
//! ids, and large batches.

use std::time::Duration;

use chrono::Utc;
use jobs_core::backend::{Failure, Lease};
use jobs_core::{
    EnqueueOutcome, Error, Job, JobPriority, JobStatus, NewJob, QueueCounters, QueueStats,
    RetryPolicy, RunAt, TraceContext,
};
use serde_json::json;

use crate::{Env, Kind, LEASE, TestResult, assert_within, ids, leased_ids, new_job, pending};

conformance!(
    enqueue_writes_every_field,
    enqueue_many_is_all_or_nothing,
    enqueue_reports_duplicates_and_writes_one_record,
    enqueue_of_a_drawn_id_again_reports_created_and_writes_one,
    enqueue_many_handles_two_thousand_jobs,
    a_trace_context_is_kept_through_retries_and_completion,
);

async fn enqueue_writes_every_field(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let new = NewJob {
        priority: JobPriority::High,
        max_retries: 7,
        timeout: Duration::from_secs(45),
        user_id: Some("user-123".into()),
        ..NewJob::new("sync_portfolio", json!({ "user_id": "user-123", "n": [1, 2] }))
    };
    let before = Utc::now();
    env.add_job(new.clone()).await?;
    let after = Utc::now();
    let job = env.job(new.id).await?;
    assert_within("created_at", job.created_at, before, after);
    let expected = Job {
        id: new.id,
        name: "sync_portfolio".into(),
        args: new.args.clone(),
        status: JobStatus::Pending,
        priority: JobPriority::High,
        created_at: job.created_at,
        scheduled_at: None,
        started_at: None,
        completed_at: None,
        error: None,
        result: None,
        retry_count: 0,
        max_retries: 7,
        timeout: Duration::from_secs(45),
        user_id: Some("user-123".into()),
        attempt: 0,
        progress: None,
        trace: None,
        queue: "default".into(),
    };
    assert_eq!(job, expected);

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 1, 0, 0));
    assert_eq!(stats.counters, QueueCounters { enqueued: 1, ..Default::default() });

    // The fetched copy is the same job, running, with its args and a first lease.
    let before = Utc::now();
    let l = env.take(new.id, LEASE).await?;
    let after = Utc::now();
    assert_eq!(l.lease, Lease { id: new.id, attempt: 1 });
    let started = l.job.started_at.ok_or("started_at not set")?;
    assert_within("started_at", started, before, after);
    assert_eq!(
        l.job,
        Job { status: JobStatus::Running, started_at: Some(started), attempt: 1, ..expected }
    );
    assert_eq!(env.job(new.id).await?.status, JobStatus::Running);
    Ok(())
}

async fn enqueue_many_is_all_or_nothing(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let good = NewJob::new("good", json!({}));
    let bad = NewJob::new("", json!({}));
    let also_good = NewJob::new("also_good", json!({}));
    let err = env
        .q
        .enqueue_many(&[good.clone(), bad, also_good.clone()])
        .await
        .err()
        .ok_or("a batch with an invalid job was accepted")?;
    assert!(matches!(err, Error::InvalidJob { .. }), "{err:?}");
    assert_eq!(env.b.get_job(good.id).await?, None, "part of a refused batch was written");
    assert_eq!(env.b.get_job(also_good.id).await?, None);
    assert_eq!(env.stats().await?, QueueStats::default());
    assert!(env.fetch(10).await?.jobs.is_empty());

    assert_eq!(env.q.enqueue_many(&[]).await?, Vec::<EnqueueOutcome>::new());
    let out = env.q.enqueue_many(&[good.clone(), also_good.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Created, EnqueueOutcome::Created]);
    assert_eq!(env.stats().await?.counters.enqueued, 2);
    Ok(())
}

async fn enqueue_reports_duplicates_and_writes_one_record(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = new_job("a", JobPriority::Normal);
    let b = new_job("b", JobPriority::Normal);
    let a_again = NewJob { id: a.id, ..new_job("a_again", JobPriority::Critical) };
    let out = env.q.enqueue_many(&[a.clone(), b.clone(), a_again.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Created, EnqueueOutcome::Created, EnqueueOutcome::Duplicate]);
    let job = env.job(a.id).await?;
    assert_eq!((job.name.as_str(), job.priority), ("a", JobPriority::Normal), "the first one wins");

    let c = new_job("c", JobPriority::Normal);
    let out = env.q.enqueue_many(&[a_again.clone(), c.clone()]).await?;
    assert_eq!(out, [EnqueueOutcome::Duplicate, EnqueueOutcome::Created]);
    // The builder is idempotent by id too.
    let id = env.q.enqueue("other", json!({})).id(b.id).await?;
    assert_eq!(id, b.id);

    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 3, 0));
    assert_eq!(stats.counters.enqueued, 3);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [a.id, b.id, c.id]);
    assert_eq!(leased_ids(&env.fetch(10).await?), [a.id, b.id, c.id]);

    // A job that exists in any state is a duplicate: running now.
    assert_eq!(env.b.enqueue(std::slice::from_ref(&a_again)).await?, [EnqueueOutcome::Duplicate]);
    assert_eq!(env.job(a.id).await?.status, JobStatus::Running);
    assert_eq!(env.stats().await?.counters.enqueued, 3);
    Ok(())
}

/// A `NewJob` under the id `NewJob::new` drew is the one job that id names: sending it again
/// (a caller's retry of a call whose reply it never saw, or the same value twice) writes
/// nothing more and reports `Created`, as the first send did.
async fn enqueue_of_a_drawn_id_again_reports_created_and_writes_one(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = new_job("a", JobPriority::Normal);
    assert!(a.has_drawn_id());
    assert_eq!(env.b.enqueue(std::slice::from_ref(&a)).await?, [EnqueueOutcome::Created]);
    let twice = [a.clone(), new_job("b", JobPriority::Normal), a.clone()];
    assert_eq!(env.b.enqueue(&twice).await?, [EnqueueOutcome::Created; 3]);
    assert_eq!(env.stats().await?.counters.enqueued, 2, "a is written once");
    assert_eq!(env.stats().await?.total_pending, 2);
    // The same id set by hand is an idempotency key: a duplicate.
    let chosen = NewJob { id: a.id, ..new_job("a_again", JobPriority::Low) };
    assert!(!chosen.has_drawn_id());
    assert_eq!(env.b.enqueue(&[chosen]).await?, [EnqueueOutcome::Duplicate]);
    Ok(())
}

async fn enqueue_many_handles_two_thousand_jobs(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let jobs: Vec<NewJob> = (0..2000).map(|i| NewJob::new("bulk", json!({ "i": i }))).collect();
    let out = env.q.enqueue_many(&jobs).await?;
    assert_eq!(out.len(), 2000);
    assert!(out.iter().all(|o| *o == EnqueueOutcome::Created));
    let stats = env.stats().await?;
    assert_eq!(
        (stats.pending.normal, stats.total_pending, stats.counters.enqueued),
        (2000, 2000, 2000)
    );

    let mut got = Vec::new();
    for _ in 0..10 {
        let f = env.fetch(500).await?;
        if f.jobs.is_empty() {
            break;
        }
        got.extend(f.jobs.into_iter().map(|l| l.job.args["i"].as_u64().unwrap_or(u64::MAX)));
    }
    let expected: Vec<u64> = (0..2000).collect();
    assert_eq!(got, expected, "a batch keeps its order");
    Ok(())
}

/// A job's trace context (`NewJob::trace`, set by hand here: the backends store what they
/// are given) is read back as it was written: on the job, on each delivery (a retry
/// included, so that every attempt links to the same enqueue), and once completed.
async fn a_trace_context_is_kept_through_retries_and_completion(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let trace = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: Some("congo=t61rcWkgMzE".into()),
        baggage: Some("user=u%201,tenant=acme".into()),
    };
    let new = NewJob {
        trace: Some(trace.clone()),
        retry_base: Some(Duration::from_millis(1)),
        retry_cap: Some(Duration::from_millis(1)),
        ..NewJob::new("traced", json!({"n": 1}))
    };
    // Not due for an hour: only the traced job is fetched below.
    let plain = NewJob {
        run_at: RunAt::Delay(Duration::from_secs(3600)),
        ..NewJob::new("plain", json!({}))
    };
    env.add_job(new.clone()).await?;
    env.add_job(plain.clone()).await?;
    assert_eq!(env.job(new.id).await?.trace.as_ref(), Some(&trace));
    assert_eq!(env.job(plain.id).await?.trace, None);
    let first = env.take(new.id, LEASE).await?;
    assert_eq!(first.job.trace.as_ref(), Some(&trace));
    let failure = Failure {
        lease: first.lease,
        error: "boom".into(),
        retryable: true,
        retry: RetryPolicy::default(),
        retry_after: Some(Duration::ZERO),
    };
    env.fail(failure).await?;
    let second = env.take(new.id, LEASE).await?;
    assert_eq!(second.lease.attempt, 2);
    assert_eq!(second.job.trace.as_ref(), Some(&trace));
    env.complete(second.lease, json!(null)).await?;
    let done = env.job(new.id).await?;
    assert_eq!((done.status, done.trace.as_ref()), (JobStatus::Completed, Some(&trace)));
    Ok(())
}
