//! Fetch: strict priorities and FIFO within each, batches, `list_pending`, delayed and
//! due jobs, `wait_for_work` wake-ups, promotion of due jobs, and concurrent fetchers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobs_core::backend::{FailOutcome, FetchRequest};
use jobs_core::{EnqueueOutcome, Error, JobId, JobPriority, JobStatus, NewJob, RetryPolicy};
use serde_json::{Value, json};

use crate::{
    Env, HOUR, Kind, LEASE, TOL, TestResult, assert_within, failure, fetch_req, ids, leased_ids,
    ms, new_job, pending, td,
};

conformance!(
    fetch_serves_priorities_strictly_and_fifo_within_each,
    fetch_batches_keep_the_same_order,
    list_pending_follows_fetch_order_and_limit,
    run_at_in_the_past_or_zero_delay_is_ready_at_once,
    delayed_job_is_not_fetched_before_it_is_due,
    wait_for_work_wakes_for_new_and_due_work,
    promoted_jobs_join_the_tail_delayed_before_retrying,
    two_fetchers_never_get_the_same_job,
);

/// Critical, high, normal, low jobs in an interleaved enqueue order, and the order in
/// which they must be fetched.
async fn enqueue_mixed(env: &Env, tag: &str) -> Result<Vec<JobId>, Error> {
    use JobPriority::*;
    let plan =
        [Low, Normal, Critical, High, Low, Critical, Normal, High, Critical, Low, Normal, High];
    let mut enqueued = Vec::new();
    // The first half one call at a time, the second half in one batch (batch order counts).
    for (i, p) in plan[..6].iter().enumerate() {
        enqueued.push((*p, env.add(&format!("{tag}-{i}"), *p).await?));
    }
    let batch: Vec<NewJob> = plan[6..]
        .iter()
        .enumerate()
        .map(|(i, p)| new_job(&format!("{tag}-{}", i + 6), *p))
        .collect();
    let out = env.q.enqueue_many(&batch).await?;
    assert_eq!(out, vec![EnqueueOutcome::Created; batch.len()]);
    enqueued.extend(batch.iter().map(|j| (j.priority, j.id)));
    // A stable sort by priority keeps enqueue order within each priority.
    enqueued.sort_by_key(|(p, _)| *p);
    Ok(enqueued.into_iter().map(|(_, id)| id).collect())
}

async fn fetch_serves_priorities_strictly_and_fifo_within_each(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "order").await?;
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let f = env.fetch(1).await?;
        assert_eq!(f.jobs.len(), 1, "one job per fetch of max 1");
        let l = &f.jobs[0];
        assert_eq!(l.job.status, JobStatus::Running);
        assert_eq!((l.lease.id, l.lease.attempt, l.job.attempt), (l.job.id, 1, 1));
        assert_eq!(l.job.args, json!({ "job": l.job.name }), "fetched jobs carry their args");
        got.push(l.job.id);
    }
    assert_eq!(got, expected);
    let empty = env.fetch(1).await?;
    assert!(empty.jobs.is_empty());
    assert_eq!(empty.next_due_in, None, "nothing delayed: next_due_in is None");
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.processing), (0, 12));
    Ok(())
}

async fn fetch_batches_keep_the_same_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "batch").await?;
    let mut got = Vec::new();
    for _ in 0..10 {
        let f = env.fetch(5).await?;
        if f.jobs.is_empty() {
            break;
        }
        assert!(f.jobs.len() <= 5, "fetch returned more than max");
        got.extend(leased_ids(&f));
    }
    assert_eq!(got, expected);
    Ok(())
}

async fn list_pending_follows_fetch_order_and_limit(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let expected = enqueue_mixed(&env, "list").await?;
    let all = env.b.list_pending(None, 100).await?;
    assert_eq!(ids(&all), expected);
    assert!(all.iter().all(|j| j.status == JobStatus::Pending && j.args != Value::Null));
    assert_eq!(ids(&env.b.list_pending(None, 3).await?), expected[..3]);

    let high = env.b.list_pending(Some(JobPriority::High), 100).await?;
    assert_eq!(ids(&high), expected[3..6]);
    assert!(high.iter().all(|j| j.priority == JobPriority::High));
    assert_eq!(ids(&env.b.list_pending(Some(JobPriority::Low), 2).await?), expected[9..11]);

    // Cancelled jobs are not pending; a delayed job is not listed until it is ready.
    env.q.cancel_job(expected[4]).await?;
    env.q.enqueue("later", json!({})).priority(JobPriority::Critical).delay(HOUR).await?;
    let mut rest = expected.clone();
    rest.remove(4);
    assert_eq!(ids(&env.b.list_pending(None, 100).await?), rest);
    assert_eq!(
        ids(&env.q.pending_jobs(Some(JobPriority::High), 100).await?),
        [expected[3], expected[5]]
    );
    Ok(())
}

async fn run_at_in_the_past_or_zero_delay_is_ready_at_once(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let past =
        env.q.enqueue("past", json!({})).scheduled_at(Utc::now() - TimeDelta::hours(1)).await?;
    let zero = env.q.enqueue("zero", json!({})).delay(Duration::ZERO).await?;
    let at = DateTime::from_timestamp_millis((Utc::now() + TimeDelta::hours(1)).timestamp_millis())
        .ok_or("timestamp")?;
    let future = env.q.enqueue("future", json!({})).scheduled_at(at).await?;

    assert_eq!(env.job(past).await?.scheduled_at, None);
    assert_eq!(env.job(zero).await?.scheduled_at, None);
    assert_eq!(env.job(future).await?.scheduled_at, Some(at));
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [past, zero]);
    let next = f.next_due_in.ok_or("a delayed job exists: next_due_in must be set")?;
    assert!(next > HOUR - Duration::from_secs(60) && next <= HOUR, "next_due_in {next:?}");
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.processing), (0, 1, 2));
    Ok(())
}

async fn delayed_job_is_not_fetched_before_it_is_due(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let delay = ms(300);
    let t0 = Utc::now();
    let id = env.q.enqueue("delayed", json!({ "x": 1 })).delay(delay).await?;
    let t1 = Utc::now();

    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Pending);
    let due = job.scheduled_at.ok_or("a delayed job has scheduled_at")?;
    assert_within("scheduled_at", due, t0 + td(delay), t1 + td(delay));
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.retrying), (0, 1, 0));
    assert!(env.b.list_pending(None, 10).await?.is_empty(), "a delayed job is not ready");

    let f = env.fetch(1).await?;
    let t2 = Utc::now();
    if t2 < due - TOL {
        assert!(f.jobs.is_empty(), "a delayed job was fetched before it was due");
        let next = f.next_due_in.ok_or("next_due_in must report the delayed job")?;
        let lo = (due - t2 - TOL).to_std().unwrap_or_default();
        assert!(next >= lo && next <= delay, "next_due_in {next:?} not in [{lo:?}, {delay:?}]");
    }

    let (l, _) = env.fetch_when_due(id, Duration::from_secs(5)).await?;
    assert_eq!(l.job.status, JobStatus::Running);
    assert_eq!(l.job.attempt, 1);
    assert_eq!(l.job.scheduled_at, Some(due), "scheduled_at keeps the due time");
    assert_eq!(l.job.args, json!({ "x": 1 }));
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.scheduled, stats.processing), (0, 0, 1));
    Ok(())
}

async fn wait_for_work_wakes_for_new_and_due_work(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    assert!(env.fetch(1).await?.jobs.is_empty());

    // Work that became ready after the last fetch ends the wait at once.
    let id = env.add("ready", JobPriority::Normal).await?;
    let started = Instant::now();
    env.b.wait_for_work(Duration::from_secs(5)).await?;
    assert!(started.elapsed() < Duration::from_secs(2), "missed wake-up: work was ready");
    env.take(id, LEASE).await?;

    // An enqueue by another client during the wait ends it.
    let peer = env.peer().await;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(ms(150)).await;
        peer.enqueue(&[NewJob::new("later", json!({}))]).await
    });
    let started = Instant::now();
    env.b.wait_for_work(Duration::from_secs(5)).await?;
    let waited = started.elapsed();
    assert_eq!(producer.await??, [EnqueueOutcome::Created]);
    assert!(waited < Duration::from_secs(2), "an enqueue did not wake the waiter ({waited:?})");
    assert_eq!(env.fetch(10).await?.jobs.len(), 1);

    // A delayed job ends the wait when it is due.
    let delayed = env.q.enqueue("delayed", json!({})).delay(ms(200)).await?;
    let f = env.fetch(1).await?;
    if f.jobs.is_empty() {
        let started = Instant::now();
        env.b.wait_for_work(Duration::from_secs(5)).await?;
        assert!(started.elapsed() < Duration::from_secs(2), "a due job did not wake the waiter");
    }
    env.fetch_when_due(delayed, Duration::from_secs(5)).await?;
    Ok(())
}

async fn promoted_jobs_join_the_tail_delayed_before_retrying(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let retried = env.add("retried", JobPriority::Normal).await?;
    let l = env.take(retried, LEASE).await?;
    let backoff = RetryPolicy::exponential(ms(100), ms(100));
    let out = env.fail(failure(l.lease, "boom", true, backoff)).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    let delayed = env.q.enqueue("delayed", json!({})).delay(ms(100)).await?;
    let ready = env.add("ready", JobPriority::Normal).await?;

    tokio::time::sleep(ms(250)).await;
    // max 0 only promotes.
    let f = env.b.fetch(&fetch_req(0, LEASE)).await?;
    assert!(f.jobs.is_empty(), "fetch with max 0 took jobs");
    assert_eq!(f.next_due_in, None, "nothing is left to promote");
    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 0, 3, 0));
    assert_eq!((stats.scheduled, stats.retrying, stats.processing), (0, 0, 0));
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [ready, delayed, retried]);
    let r = env.job(retried).await?;
    assert_eq!((r.status, r.retry_count), (JobStatus::Pending, 1));
    assert!(r.scheduled_at.is_some(), "a promoted retry keeps its due time");

    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [ready, delayed, retried]);
    assert_eq!(f.jobs[2].lease.attempt, 2);
    Ok(())
}

async fn two_fetchers_never_get_the_same_job(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let jobs: Vec<NewJob> = (0..1000).map(|i| NewJob::new("race", json!({ "i": i }))).collect();
    env.q.enqueue_many(&jobs).await?;

    let mut tasks = Vec::new();
    for w in 0..2 {
        let backend = env.peer().await;
        tasks.push(tokio::spawn(async move {
            let req = FetchRequest {
                queues: Vec::new(),
                worker_id: format!("racer-{w}"),
                ..fetch_req(25, LEASE)
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut got = Vec::new();
            for _ in 0..2000 {
                let f = backend.fetch(&req).await?;
                if f.jobs.is_empty() || Instant::now() > deadline {
                    break;
                }
                got.extend(f.jobs.into_iter().map(|l| (l.job.id, l.lease.attempt)));
                tokio::task::yield_now().await;
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut seen = HashSet::new();
    let mut per_task = Vec::new();
    for t in tasks {
        let got = t.await??;
        per_task.push(got.len());
        for (id, attempt) in got {
            assert_eq!(attempt, 1);
            assert!(seen.insert(id), "job {id} was delivered twice");
        }
    }
    let all: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(seen.len(), 1000, "fetched {per_task:?}");
    assert_eq!(seen, all);
    let stats = env.stats().await?;
    assert_eq!((stats.total_pending, stats.processing), (0, 1000));
    Ok(())
}
