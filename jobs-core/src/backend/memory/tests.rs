//! Unit tests of the in-memory backend through the `Backend` trait (the shared behaviour is
//! covered by the conformance suite in `jobs-test-support`).

use std::time::Duration;

use serde_json::{Value, json};

use super::MemoryBackend;
use crate::backend::{
    AckOutcome, Backend, BackendConfig, CancelOutcome, Completion, FailOutcome, Failure,
    FetchRequest, Heartbeat, Lease, LeasedJob, ReapOptions,
};
use crate::error::Error;
use crate::job::{EnqueueOutcome, JobId, JobPriority, JobStatus, NewJob, RunAt};
use crate::retry::RetryPolicy;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn new_job(name: &str, priority: JobPriority) -> NewJob {
    NewJob { priority, ..NewJob::new(name, json!({"n": name})) }
}

fn req(max: usize, lease: Duration) -> FetchRequest {
    FetchRequest { queues: Vec::new(), max, worker_id: "w1".into(), lease, grace: Duration::ZERO }
}

fn names(jobs: &[LeasedJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.job.name.as_str()).collect()
}

fn reap_now() -> ReapOptions {
    ReapOptions { interval: Duration::ZERO, grace: Duration::ZERO, ..ReapOptions::default() }
}

#[tokio::test]
async fn priorities_are_strict_and_fifo_within_one() -> TestResult {
    let b = MemoryBackend::default();
    let jobs = [
        new_job("low1", JobPriority::Low),
        new_job("n1", JobPriority::Normal),
        new_job("crit1", JobPriority::Critical),
        new_job("n2", JobPriority::Normal),
        new_job("high1", JobPriority::High),
        new_job("crit2", JobPriority::Critical),
    ];
    let mut batch = jobs.to_vec();
    // The same id again in the batch, chosen by the caller: a duplicate.
    batch.push(NewJob { id: jobs[1].id, ..new_job("again", JobPriority::Low) });
    let out = b.enqueue(&batch).await?;
    assert_eq!(out.last(), Some(&EnqueueOutcome::Duplicate));
    assert_eq!(b.stats().await?.total_pending, 6);
    assert_eq!(b.stats().await?.counters.enqueued, 6);

    let pending = b.list_pending(None, 10).await?;
    let listed: Vec<&str> = pending.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(listed, ["crit1", "crit2", "high1", "n1", "n2", "low1"]);

    let got = b.fetch(&req(4, Duration::from_secs(30))).await?;
    assert_eq!(names(&got.jobs), ["crit1", "crit2", "high1", "n1"]);
    assert!(got.jobs.iter().all(|j| j.job.status == JobStatus::Running
        && j.job.attempt == 1
        && j.lease.attempt == 1
        && j.job.args != Value::Null));
    assert_eq!(got.next_due_in, None);
    let got = b.fetch(&req(4, Duration::from_secs(30))).await?;
    assert_eq!(names(&got.jobs), ["n2", "low1"]);
    assert_eq!(b.stats().await?.processing, 6);
    Ok(())
}

#[tokio::test]
async fn delayed_job_is_not_fetched_before_it_is_due() -> TestResult {
    let b = MemoryBackend::default();
    let mut job = new_job("later", JobPriority::Normal);
    job.run_at = RunAt::Delay(Duration::from_millis(60));
    b.enqueue(std::slice::from_ref(&job)).await?;

    let stored = b.get_job(job.id).await?.ok_or("missing")?;
    assert_eq!(stored.status, JobStatus::Pending);
    let due = stored.scheduled_at.ok_or("no scheduled_at")?;
    assert_eq!(b.stats().await?.scheduled, 1);
    assert_eq!(b.stats().await?.total_pending, 0);

    let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
    assert!(got.jobs.is_empty());
    let wait = got.next_due_in.ok_or("no next_due_in")?;
    assert!(wait <= Duration::from_millis(60), "{wait:?}");

    let mut fetched = None;
    for _ in 0..50 {
        b.wait_for_work(Duration::from_millis(200)).await?;
        let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
        if let Some(j) = got.jobs.into_iter().next() {
            fetched = Some(j);
            break;
        }
    }
    let fetched = fetched.ok_or("never fetched")?;
    assert!(fetched.job.started_at.is_some_and(|s| s >= due));
    assert_eq!(fetched.job.scheduled_at, Some(due));
    Ok(())
}

#[tokio::test]
async fn released_jobs_go_to_the_head_in_the_given_order() -> TestResult {
    let b = MemoryBackend::default();
    let jobs: Vec<NewJob> =
        ["a", "b", "c"].iter().map(|n| new_job(n, JobPriority::Normal)).collect();
    b.enqueue(&jobs).await?;
    let got = b.fetch(&req(2, Duration::from_secs(30))).await?;
    let leases: Vec<Lease> = got.jobs.iter().rev().map(|j| j.lease).collect(); // b, a
    assert_eq!(b.release(&leases).await?, 2);
    assert_eq!(b.release(&leases).await?, 0, "a second release is stale");

    let pending = b.list_pending(Some(JobPriority::Normal), 10).await?;
    let listed: Vec<&str> = pending.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(listed, ["b", "a", "c"]);
    assert!(pending.iter().all(|j| j.status == JobStatus::Pending));

    let again = b.fetch(&req(1, Duration::from_secs(30))).await?;
    assert_eq!(names(&again.jobs), ["b"]);
    assert_eq!(again.jobs[0].lease.attempt, 2);
    Ok(())
}

#[tokio::test]
async fn an_expired_lease_is_reaped_and_the_old_delivery_is_stale() -> TestResult {
    let b = MemoryBackend::default();
    let job = new_job("slow", JobPriority::Normal);
    b.enqueue(std::slice::from_ref(&job)).await?;
    let first = b.fetch(&req(1, Duration::from_millis(100))).await?;
    let old = first.jobs.first().ok_or("not fetched")?.lease;

    let early = b.reap(&reap_now()).await?;
    assert_eq!((early.ran, early.requeued), (true, 0), "the lease has not lapsed yet");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = b.reap(&reap_now()).await?;
    assert_eq!((report.requeued, report.failed), (1, 0));
    assert_eq!(b.stats().await?.counters.stalled, 1);

    let second = b.fetch(&req(1, Duration::from_secs(30))).await?;
    let new = second.jobs.first().ok_or("not fetched again")?.lease;
    assert_eq!(new.attempt, 2);

    let done = |lease| Completion { lease, result: json!("ok") };
    assert_eq!(b.complete(&[done(old)]).await?, [AckOutcome::Stale]);
    assert_eq!(b.complete(&[done(new)]).await?, [AckOutcome::Completed]);
    assert_eq!(b.complete(&[done(new)]).await?, [AckOutcome::Already]);
    let stored = b.get_job(job.id).await?.ok_or("missing")?;
    assert_eq!(stored.status, JobStatus::Completed);
    assert_eq!(stored.args, job.args, "kept for the retention period");
    assert_eq!(stored.result, Some(json!("ok")));
    assert_eq!(stored.attempt, 2);
    Ok(())
}

#[tokio::test]
async fn reap_lock_and_worker_expiry() -> TestResult {
    let b = MemoryBackend::default();
    let beat = Heartbeat {
        worker_id: "w1".into(),
        info: json!({"pid": 1}),
        leases: vec![Lease { id: JobId::new(), attempt: 1 }],
        lease: Duration::from_secs(30),
        grace: Duration::ZERO,
    };
    let reply = b.heartbeat(&beat).await?;
    assert_eq!(reply.lost, [beat.leases[0].id]);
    assert_eq!(b.list_workers(Duration::from_secs(60)).await?.len(), 1);

    let opts = ReapOptions { interval: Duration::from_secs(60), ..ReapOptions::default() };
    assert!(b.reap(&opts).await?.ran);
    assert!(!b.reap(&opts).await?.ran, "another reap ran within the interval");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let forget = ReapOptions { worker_ttl: Duration::from_millis(5), ..reap_now() };
    assert!(b.reap(&forget).await?.ran);
    assert!(b.list_workers(Duration::from_secs(60)).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn retries_then_dead_letter_then_retry_dead() -> TestResult {
    let b = MemoryBackend::default();
    let job = NewJob { max_retries: 1, ..new_job("flaky", JobPriority::High) };
    b.enqueue(std::slice::from_ref(&job)).await?;
    let retry = RetryPolicy::exponential(Duration::from_millis(20), Duration::from_secs(1));
    let fail =
        |lease| Failure { lease, error: "boom".into(), retryable: true, retry, retry_after: None };

    let lease = b.fetch(&req(1, Duration::from_secs(30))).await?.jobs[0].lease;
    assert!(matches!(b.fail(&fail(lease)).await?, FailOutcome::Retrying { .. }));
    assert_eq!(b.fail(&fail(lease)).await?, FailOutcome::Stale);
    let stored = b.get_job(job.id).await?.ok_or("missing")?;
    assert_eq!((stored.status, stored.retry_count), (JobStatus::Retrying, 1));
    assert_eq!(b.stats().await?.retrying, 1);

    let mut second = None;
    for _ in 0..50 {
        b.wait_for_work(Duration::from_millis(200)).await?;
        let got = b.fetch(&req(1, Duration::from_secs(30))).await?;
        if let Some(j) = got.jobs.into_iter().next() {
            second = Some(j.lease);
            break;
        }
    }
    let second = second.ok_or("retry never became ready")?;
    assert_eq!(second.attempt, 2);
    assert_eq!(b.fail(&fail(second)).await?, FailOutcome::Dead);

    let dead = b.list_dead(0, 10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error.as_deref(), Some("boom"));
    assert_ne!(dead[0].args, Value::Null, "a dead job keeps its args");
    let c = b.stats().await?.counters;
    assert_eq!((c.failed, c.retried, c.dead), (2, 1, 1));

    b.retry_dead(job.id).await?;
    let back = b.get_job(job.id).await?.ok_or("missing")?;
    assert_eq!((back.status, back.completed_at, back.retry_count), (JobStatus::Pending, None, 1));
    assert!(matches!(b.retry_dead(job.id).await, Err(Error::InvalidState { op: "retry", .. })));
    Ok(())
}

#[tokio::test]
async fn the_dead_letter_queue_keeps_at_most_dead_max() -> TestResult {
    let b = MemoryBackend::new(BackendConfig { dead_max: 2, ..BackendConfig::default() });
    let jobs: Vec<NewJob> = ["d1", "d2", "d3"]
        .iter()
        .map(|n| NewJob { max_retries: 0, ..new_job(n, JobPriority::Normal) })
        .collect();
    b.enqueue(&jobs).await?;
    let got = b.fetch(&req(3, Duration::from_secs(30))).await?;
    for j in &got.jobs {
        let failure = Failure {
            lease: j.lease,
            error: "fatal".into(),
            retryable: false,
            retry: RetryPolicy::default(),
            retry_after: None,
        };
        assert_eq!(b.fail(&failure).await?, FailOutcome::Dead);
        // Distinct death times, so that "oldest" does not depend on id order.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let dead = b.list_dead(0, 10).await?;
    let listed: Vec<&str> = dead.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(listed, ["d3", "d2"]);
    assert!(b.get_job(jobs[0].id).await?.is_none(), "the dropped record is deleted");
    let s = b.stats().await?;
    assert_eq!((s.dead_letter, s.counters.dead, s.counters.dead_dropped), (2, 3, 1));

    assert_eq!(b.clear_dead().await?, 2);
    assert!(b.get_job(jobs[2].id).await?.is_none());
    assert_eq!(b.stats().await?.dead_letter, 0);
    Ok(())
}

#[tokio::test]
async fn cancel_pending_and_running() -> TestResult {
    let b = MemoryBackend::default();
    let jobs: Vec<NewJob> =
        ["x", "y", "z"].iter().map(|n| new_job(n, JobPriority::Normal)).collect();
    b.enqueue(&jobs).await?;
    assert_eq!(b.cancel(jobs[1].id).await?, CancelOutcome::Cancelled);
    let y = b.get_job(jobs[1].id).await?.ok_or("missing")?;
    assert_eq!((y.status, y.args.clone()), (JobStatus::Cancelled, jobs[1].args.clone()));
    assert!(y.completed_at.is_some());
    assert!(matches!(b.cancel(jobs[1].id).await, Err(Error::InvalidState { op: "cancel", .. })));
    assert!(matches!(b.cancel(JobId::new()).await, Err(Error::NotFound { .. })));
    assert_eq!(b.stats().await?.total_pending, 2);

    let got = b.fetch(&req(3, Duration::from_secs(30))).await?;
    assert_eq!(names(&got.jobs), ["x", "z"]);
    assert_eq!(b.cancel(jobs[0].id).await?, CancelOutcome::Requested);
    let beat = Heartbeat {
        worker_id: "w1".into(),
        info: Value::Null,
        leases: got.jobs.iter().map(|j| j.lease).collect(),
        lease: Duration::from_secs(30),
        grace: Duration::ZERO,
    };
    let reply = b.heartbeat(&beat).await?;
    assert_eq!((reply.cancel, reply.lost), (vec![jobs[0].id], vec![]));
    let failure = Failure {
        lease: got.jobs[0].lease,
        error: "cancelled".into(),
        retryable: true,
        retry: RetryPolicy::default(),
        retry_after: None,
    };
    assert_eq!(b.fail(&failure).await?, FailOutcome::Cancelled);
    assert_eq!(b.stats().await?.counters.cancelled, 2);
    Ok(())
}

#[tokio::test]
async fn wait_for_work_wakes_on_enqueue_and_never_misses_one() -> TestResult {
    let b = std::sync::Arc::new(MemoryBackend::default());
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            b.wait_for_work(Duration::from_secs(10)).await.map(|()| start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.enqueue(&[new_job("wake", JobPriority::Low)]).await?;
    let waited = tokio::time::timeout(Duration::from_secs(2), waiter).await???;
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // Work that is already there ends the wait at once.
    let start = std::time::Instant::now();
    b.wait_for_work(Duration::from_secs(10)).await?;
    assert!(start.elapsed() < Duration::from_secs(1));
    Ok(())
}

#[tokio::test]
async fn the_cancel_log_keeps_its_cap_and_reads_in_bounded_batches() -> TestResult {
    use crate::backend::{CANCEL_LOG_MAX, CANCEL_READ_LIMIT, CancelCursor};
    let b = MemoryBackend::default();
    let job = new_job("long", JobPriority::Normal);
    b.enqueue(std::slice::from_ref(&job)).await?;
    let lease = b.fetch(&req(1, Duration::from_secs(30))).await?.jobs[0].lease;
    let extra = 50;
    for _ in 0..CANCEL_LOG_MAX + extra {
        assert_eq!(b.cancel(job.id).await?, CancelOutcome::Requested);
    }
    // A reader from before the first notice gets the oldest kept, a batch at a time.
    let mut cursor = CancelCursor::new("0");
    let mut read = 0;
    for _ in 0..=CANCEL_LOG_MAX / CANCEL_READ_LIMIT {
        let got = b.watch_cancels(Some(&cursor), Duration::ZERO).await?;
        assert!(got.leases.len() <= CANCEL_READ_LIMIT);
        assert!(got.leases.iter().all(|l| *l == lease));
        if read == 0 {
            assert_eq!(got.cursor.as_str(), (extra + CANCEL_READ_LIMIT).to_string());
        }
        read += got.leases.len();
        cursor = got.cursor;
    }
    assert_eq!(read, CANCEL_LOG_MAX);
    let end = b.watch_cancels(None, Duration::ZERO).await?.cursor;
    assert_eq!(end, cursor);
    assert!(b.watch_cancels(Some(&CancelCursor::new("x")), Duration::ZERO).await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_rate_limiter_opens_slot_by_slot_on_the_backends_clock() -> TestResult {
    use crate::job::{JobLimits, Limiter};
    let clock = super::ManualClock::new();
    let b = MemoryBackend::with_clock(BackendConfig::default(), clock.clone());
    let limited = |n: &str| NewJob {
        limits: Some(JobLimits {
            limiters: vec![Limiter::Rate { key: "k".into(), max: 2, per: Duration::from_secs(1) }],
        }),
        ..new_job(n, JobPriority::Normal)
    };
    let jobs: Vec<NewJob> = (1..=5).map(|i| limited(&format!("j{i}"))).collect();
    b.enqueue(&jobs).await?;
    let lease = Duration::from_secs(30);
    let f = b.fetch(&req(10, lease)).await?;
    assert_eq!(names(&f.jobs), ["j1", "j2"]);
    assert_eq!(f.next_due_in, Some(Duration::from_secs(1)), "the oldest start leaves the window");
    assert_eq!(b.stats().await?.parked, 3);
    let u = b.limits(10).await?;
    assert_eq!((u[0].in_use, u[0].parked, u[0].max, u[0].per_ms), (2, 3, 2, Some(1000)));
    assert!(u[0].next_slot_at.is_some());
    clock.advance(Duration::from_millis(999));
    assert!(b.fetch(&req(10, lease)).await?.jobs.is_empty());
    clock.advance(Duration::from_millis(1));
    // Both slots open at once: two go, in the order they were parked; one waits a window.
    let g = b.fetch(&req(10, lease)).await?;
    assert_eq!(names(&g.jobs), ["j3", "j4"]);
    assert_eq!(g.next_due_in, Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(names(&b.fetch(&req(10, lease)).await?.jobs), ["j5"]);
    assert_eq!(b.stats().await?.parked, 0);
    // Idle once its window is empty: forgotten.
    clock.advance(Duration::from_secs(1));
    assert!(b.limits(10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_concurrency_reservation_lapses_and_a_release_keeps_the_slot() -> TestResult {
    use crate::job::{JobLimits, Limiter};
    let clock = super::ManualClock::new();
    let b = MemoryBackend::with_clock(BackendConfig::default(), clock.clone());
    let limited = |n: &str| NewJob {
        limits: Some(JobLimits {
            limiters: vec![Limiter::Concurrency { key: "k".into(), max: 1 }],
        }),
        ..new_job(n, JobPriority::Normal)
    };
    b.enqueue(&[limited("a"), limited("b"), limited("c")]).await?;
    let lease = Duration::from_secs(30);
    let f = b.fetch(&req(10, lease)).await?;
    assert_eq!(names(&f.jobs), ["a"]);
    // Released: back at the head, still holding its slot, so it runs before the parked.
    assert_eq!(b.release(&[f.jobs[0].lease]).await?, 1);
    let g = b.fetch(&req(10, lease)).await?;
    assert_eq!(names(&g.jobs), ["a"]);
    // Completed: the slot is reserved for b, which is ready but not fetched for a while.
    b.complete(&[Completion { lease: g.jobs[0].lease, result: Value::Null }]).await?;
    assert_eq!((b.stats().await?.parked, b.limits(10).await?[0].in_use), (1, 1));
    b.pause_queue("default", true).await?;
    clock.advance(crate::backend::LIMIT_RESERVATION);
    b.enqueue(&[limited("d")]).await?;
    b.pause_queue("default", false).await?;
    // The reservation lapsed (deadline <= now - grace): b and d go by order, one at a time.
    let h = b.fetch(&req(10, lease)).await?;
    assert_eq!(names(&h.jobs), ["b"]);
    assert_eq!(b.stats().await?.parked, 2, "c and d wait");
    Ok(())
}
