//! A job record in Redis that this version cannot read (written by hand, or by a newer
//! version) goes to the dead-letter queue with a clear error: it never crashes a worker,
//! never blocks the queue, and never vanishes.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::backend::redis::keys::Keys;
use jobs_core::backend::{Backend, BackendConfig, FetchRequest, ReapOptions};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Error, Job, JobId, JobStatus, NewJob, Registry, RunAt, State};
use jobs_test_support::{redis_backend, shared, unique_namespace, wait_for_job};
use serde_json::json;

#[job_handler("corrupt_test_ok")]
async fn ok_job() -> Result<(), JobError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_dead_lettered_and_the_queue_goes_on() {
    let backend = redis_backend(&unique_namespace("corrupt"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let queue = JobQueue::new(backend);

    // Written by hand, in front of a good job: one whose state cannot be read at all, one
    // whose state is fine but whose meta is not JSON.
    let garbage = JobId::new();
    let bad_meta = JobId::new();
    let mut c = shared().connection().expect("connect");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.jobs())
        .arg(garbage.to_string())
        .arg("v9|from the future")
        .cmd("HSET")
        .arg(keys.jobs())
        .arg(bad_meta.to_string())
        .arg("p2:0:0:3:30000:0:0:1700000000000:0:0:0|{not json\n{}")
        .cmd("RPUSH")
        .arg(keys.pending(2))
        .arg(garbage.to_string())
        .arg(bad_meta.to_string())
        .query(&mut c)
        .expect("write by hand");
    let good = queue.enqueue("corrupt_test_ok", json!(null)).await.expect("enqueue");

    let registry = Arc::new(Registry::global().expect("registry").clone());
    let cfg = WorkerConfig { max_concurrent_jobs: 4, ..WorkerConfig::default() };
    let running = JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)
        .expect("worker")
        .start();
    let completed = |j: &Job| j.status == JobStatus::Completed;
    let ran = wait_for_job(&queue, good, Duration::from_secs(10), completed).await;
    ran.unwrap_or_else(|e| panic!("the good job behind the bad ones never ran: {e}"));
    running.stop().await.expect("the worker survived");

    let s = queue.stats().await.expect("stats");
    assert_eq!(s.dead_letter, 2, "both unreadable records are in the DLQ: {s:?}");
    assert_eq!((s.total_pending, s.processing), (0, 0));
    for id in [garbage, bad_meta] {
        match queue.get_job(id).await {
            Err(Error::CorruptRecord { id: got, .. }) => assert_eq!(got, id.to_string()),
            other => panic!("expected a CorruptRecord error for {id}, got {other:?}"),
        }
    }
    // Listings skip what they cannot read instead of failing; clearing removes it all.
    queue.get_dead_letter_jobs(10).await.expect("the DLQ listing still works");
    assert_eq!(queue.clear_dead_letter_queue().await.expect("clear"), 2);
    assert!(queue.get_job(garbage).await.expect("gone").is_none());
}

/// A record in the scripts' format with priority 7 (only 0..=3 exist), status `s`, started
/// now (so that a lapsed lease is a lost worker, not a timeout).
fn bad_priority_record(s: char, attempt: u32) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    format!("{s}7:{attempt}:0:3:30000:0:0:{now}:{now}:{now}:0|{{\"n\":\"bad\"}}\n{{}}")
}

fn dead_reason(c: &mut redis::Connection, keys: &Keys, id: JobId) -> Option<(f64, String)> {
    let (score, why): (Option<f64>, Option<String>) = redis::pipe()
        .cmd("ZSCORE")
        .arg(keys.dead())
        .arg(id.to_string())
        .cmd("HGET")
        .arg(keys.errors())
        .arg(id.to_string())
        .query(c)
        .expect("read the DLQ");
    Some((score?, why?))
}

// regression: `parse` read the priority with `(%d)`, so a record with priority 7 passed it;
// `fetch` had already ZREMed every due id of its batch from `scheduled`/`retry` when the
// push to `pending[8]` errored, and Redis kept the ZREM: the whole batch was in no index
// and never ran. The unreadable record goes to the DLQ with the reason; the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_priority_at_promotion_strands_no_batch() {
    let backend = redis_backend(&unique_namespace("bad-prio"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let delayed: Vec<NewJob> = (0..5)
        .map(|i| NewJob {
            run_at: RunAt::Delay(Duration::from_millis(1)),
            ..NewJob::new("corrupt_test_ok", json!({ "i": i }))
        })
        .collect();
    backend.enqueue(&delayed).await.expect("enqueue");
    let (in_sched, in_retry) = (JobId::new(), JobId::new());
    let mut c = shared().connection().expect("connect");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.jobs())
        .arg(in_sched.to_string())
        .arg(bad_priority_record('p', 0))
        .cmd("ZADD")
        .arg(keys.scheduled())
        .arg(1)
        .arg(in_sched.to_string())
        .cmd("HSET")
        .arg(keys.jobs())
        .arg(in_retry.to_string())
        .arg(bad_priority_record('y', 1))
        .cmd("ZADD")
        .arg(keys.retry())
        .arg(1)
        .arg(in_retry.to_string())
        .query(&mut c)
        .expect("write by hand");
    // The delayed jobs are due 1 ms after their enqueue.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let f = backend.fetch(&req).await.expect("fetch must not fail on an unreadable record");
    let mut got: Vec<JobId> = f.jobs.iter().map(|l| l.job.id).collect();
    let mut want: Vec<JobId> = delayed.iter().map(|j| j.id).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every good job of the batch is promoted and fetched");
    for id in [in_sched, in_retry] {
        let (_, why) = dead_reason(&mut c, &keys, id).expect("dead-lettered with a reason");
        assert!(why.contains("corrupt record") && why.contains("priority"), "{why}");
    }
    let s = backend.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.scheduled, s.total_pending, s.processing), (2, 0, 0, 5));
    assert_eq!(s.counters.dead, 2);
}

// regression: `reap` and `release` rewrote a record before the push to `pending[p + 1]` that
// errored on a bad priority, leaving a `pending` job in no list (and the rest of the batch
// not taken back). The unreadable record goes to the DLQ; the other jobs are taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_priority_at_reap_or_release_strands_no_batch() {
    let backend = redis_backend(&unique_namespace("bad-prio"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let jobs: Vec<NewJob> =
        (0..4).map(|i| NewJob::new("corrupt_test_ok", json!({ "i": i }))).collect();
    backend.enqueue(&jobs).await.expect("enqueue");
    let req = |lease| FetchRequest {
        queues: Vec::new(),
        max: 2,
        worker_id: "w".into(),
        lease,
        grace: Duration::ZERO,
    };
    let lost = backend.fetch(&req(Duration::from_millis(1))).await.expect("fetch");
    let held = backend.fetch(&req(Duration::from_secs(60))).await.expect("fetch");
    assert_eq!((lost.jobs.len(), held.jobs.len()), (2, 2));
    // The first job of each batch turns unreadable while it runs.
    let mut c = shared().connection().expect("connect");
    for l in [&lost.jobs[0], &held.jobs[0]] {
        let _: () = redis::cmd("HSET")
            .arg(keys.jobs())
            .arg(l.lease.id.to_string())
            .arg(bad_priority_record('r', l.lease.attempt))
            .query(&mut c)
            .expect("write by hand");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    let opts =
        ReapOptions { interval: Duration::ZERO, grace: Duration::ZERO, ..Default::default() };
    let report = backend.reap(&opts).await.expect("reap must not fail on an unreadable record");
    assert_eq!((report.requeued, report.failed), (1, 0), "{report:?}");
    let leases: Vec<_> = held.jobs.iter().map(|l| l.lease).collect();
    let n = backend.release(&leases).await.expect("release must not fail either");
    assert_eq!(n, 1, "the readable job is released");

    for l in [&lost.jobs[0], &held.jobs[0]] {
        let (_, why) = dead_reason(&mut c, &keys, l.lease.id).expect("dead-lettered");
        assert!(why.contains("corrupt record") && why.contains("priority"), "{why}");
    }
    let s = backend.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.total_pending, s.processing), (2, 2, 0), "{s:?}");
    let pending: Vec<JobId> =
        backend.list_pending(None, 10).await.expect("list").iter().map(|j| j.id).collect();
    assert_eq!(pending, [held.jobs[1].lease.id, lost.jobs[1].lease.id]);
}
