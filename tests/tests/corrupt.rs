//! A job record in Redis that this version cannot read (written by hand, or by a newer
//! version) goes to the dead-letter queue with a clear error: it never crashes a worker,
//! never blocks the queue, and never vanishes.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::backend::BackendConfig;
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Error, Job, JobId, JobStatus, Registry, State};
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
