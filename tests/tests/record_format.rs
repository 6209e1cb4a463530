//! The job record's hot state is binary (lib.lua's `HOT`); records written by earlier
//! versions hold it as text. A queue left by an earlier version keeps working after an
//! upgrade: its jobs run, and each record is rewritten in the binary form when it changes.
//! A binary state that cannot be used is dead-lettered with a reason, as a text one is.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::backend::{Backend, BackendConfig, FetchRequest};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{Job, JobId, JobStatus, NewJob, Registry, State};
use jobs_test_support::{redis_backend, shared, unique_namespace, wait_for_job};
use serde_json::json;

#[job_handler("record_format_ok")]
async fn ok_job(args: serde_json::Value) -> Result<serde_json::Value, JobError> {
    Ok(args)
}

fn raw(c: &mut redis::Connection, key: &str, id: JobId) -> Vec<u8> {
    redis::cmd("HGET").arg(key).arg(id.to_string()).query(c).expect("HGET")
}

/// The second byte of a record is its flags (priority, cancel, generation, lock: < 32) in the
/// binary form, its priority digit in the text one.
fn is_binary(rec: &[u8]) -> bool {
    rec.get(1).is_some_and(|&b| b < 32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_written_in_the_text_form_runs_after_an_upgrade() {
    let backend = redis_backend(&unique_namespace("fmt-text"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let queue = JobQueue::new(backend);
    let now = chrono::Utc::now().timestamp_millis();
    let (ready, stamped, delayed) = (JobId::new(), JobId::new(), JobId::new());
    let text = |g: &str, due: i64, i: u32| {
        format!(
            "p1:0:0:3:30000:0:0:{now}:{due}:0:0{g}|{{\"n\":\"record_format_ok\"}}\n{{\"i\":{i}}}"
        )
    };
    let mut c = shared().connection().expect("connect");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.jobs())
        .arg(ready.to_string())
        .arg(text("", 0, 1))
        .arg(stamped.to_string())
        .arg(text(":7", 0, 2))
        .arg(delayed.to_string())
        .arg(text("", now + 50, 3))
        .cmd("RPUSH")
        .arg(keys.pending(1))
        .arg(ready.to_string())
        .arg(format!("{stamped}/7"))
        .cmd("ZADD")
        .arg(keys.scheduled())
        .arg(now + 50)
        .arg(delayed.to_string())
        .query(&mut c)
        .expect("write by hand, as the text version did");
    // Listed and read as before the upgrade.
    let pending: Vec<JobId> =
        queue.backend().list_pending(None, 10).await.expect("list").iter().map(|j| j.id).collect();
    assert_eq!(pending, [ready, stamped]);

    let registry = Arc::new(Registry::global().expect("registry").clone());
    let cfg = WorkerConfig { max_concurrent_jobs: 4, ..WorkerConfig::default() };
    let running = JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)
        .expect("worker")
        .start();
    let completed = |j: &Job| j.status == JobStatus::Completed;
    for (id, i) in [(ready, 1), (stamped, 2), (delayed, 3)] {
        let job = wait_for_job(&queue, id, Duration::from_secs(10), completed)
            .await
            .unwrap_or_else(|e| panic!("job {i} in the text form never completed: {e}"));
        assert_eq!(job.result, Some(json!({ "i": i })), "it ran with its own args");
        assert_eq!((job.attempt, job.max_retries), (1, 3));
        assert!(is_binary(&raw(&mut c, keys.jobs(), id)), "rewritten in the binary form");
    }
    running.stop().await.expect("stop");
    let s = queue.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.total_pending, s.processing), (0, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_write_the_binary_form_and_refuse_a_bad_one() {
    let backend = redis_backend(&unique_namespace("fmt-bin"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let jobs: Vec<NewJob> =
        (0..3).map(|i| NewJob::new("record_format_ok", json!({ "i": i }))).collect();
    backend.enqueue(&jobs).await.expect("enqueue");
    let mut c = shared().connection().expect("connect");
    let rec = raw(&mut c, keys.jobs(), jobs[0].id);
    assert!(is_binary(&rec), "{rec:?}");
    // 40 bytes of state, then the meta and the args.
    assert!(rec.ends_with(b"\n{\"i\":0}"), "{rec:?}");

    // The first job's flags byte (priority, cancel, generation) gets a bit no version sets.
    let mut bad = rec.clone();
    bad[1] = 32;
    let _: () = redis::cmd("HSET")
        .arg(keys.jobs())
        .arg(jobs[0].id.to_string())
        .arg(bad)
        .query(&mut c)
        .expect("write by hand");
    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let f = backend.fetch(&req).await.expect("fetch must not fail on an unreadable record");
    let got: Vec<JobId> = f.jobs.iter().map(|l| l.job.id).collect();
    assert_eq!(got, [jobs[1].id, jobs[2].id], "the readable jobs are fetched");
    let why: String = redis::cmd("HGET")
        .arg(keys.errors())
        .arg(jobs[0].id.to_string())
        .query(&mut c)
        .expect("why");
    assert!(why.contains("corrupt record") && why.contains("flags"), "{why}");
    let s = backend.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.processing), (1, 2), "{s:?}");
}

// An older version dead-letters a record it cannot read (the binary form) in the state it
// had: running, say. The operator's retry from the new version puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_an_older_version_dead_lettered_can_be_retried() {
    let backend = redis_backend(&unique_namespace("fmt-old"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let job = NewJob::new("record_format_ok", json!({ "i": 9 }));
    backend.enqueue(std::slice::from_ref(&job)).await.expect("enqueue");
    let req = FetchRequest {
        queues: Vec::new(),
        max: 1,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let f = backend.fetch(&req).await.expect("fetch");
    assert_eq!(f.jobs.len(), 1);
    // What the older version's reap did with a record it could not read.
    let mut c = shared().connection().expect("connect");
    let _: () = redis::pipe()
        .cmd("ZREM")
        .arg(keys.active())
        .arg(job.id.to_string())
        .cmd("ZADD")
        .arg(keys.dead())
        .arg(1)
        .arg(job.id.to_string())
        .cmd("HSET")
        .arg(keys.errors())
        .arg(job.id.to_string())
        .arg("corrupt record: its state cannot be read")
        .query(&mut c)
        .expect("dead-letter by hand");
    backend.retry_dead(job.id).await.expect("the retry puts it back");
    let s = backend.stats().await.expect("stats");
    assert_eq!((s.dead_letter, s.total_pending, s.processing), (0, 1, 0), "{s:?}");
    let f = backend.fetch(&req).await.expect("fetch");
    assert_eq!(f.jobs.iter().map(|l| l.job.id).collect::<Vec<_>>(), [job.id]);
    assert_eq!(f.jobs[0].job.args, json!({ "i": 9 }), "with its args");
}

/// A lock's holder whose record cannot be read is dead-lettered with its lock released,
/// and a holder an older version dead-lettered as it was (still `pending` in its state)
/// holds nothing: neither leaves a key locked for its whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lock_holder_leaves_no_lock_behind() {
    let backend = redis_backend(&unique_namespace("fmt-lock"), BackendConfig::default()).await;
    let keys = backend.keys().clone();
    let locked = |key: &str| NewJob {
        unique: Some(jobs_core::UniqueLock {
            key: key.into(),
            window: Duration::from_secs(3600),
            until: jobs_core::UniqueUntil::Done,
            on_conflict: jobs_core::OnConflict::Keep,
        }),
        ..NewJob::new("record_format_ok", json!({}))
    };
    let (a, b) = (locked("a"), locked("b"));
    backend.enqueue(&[a.clone(), b.clone()]).await.expect("enqueue");
    assert_eq!(backend.stats().await.expect("stats").unique_locks, 2);
    let mut c = shared().connection().expect("connect");
    // `a`'s flags byte gets a bit no version sets: the fetch dead-letters it.
    let mut bad = raw(&mut c, keys.jobs(), a.id);
    bad[1] |= 32;
    let _: () = redis::cmd("HSET")
        .arg(keys.jobs())
        .arg(a.id.to_string())
        .arg(bad)
        .query(&mut c)
        .expect("write");
    // `b` as an older version leaves it: in the dead-letter queue, its state untouched.
    let _: () = redis::cmd("ZADD")
        .arg(keys.dead())
        .arg(1)
        .arg(b.id.to_string())
        .query(&mut c)
        .expect("zadd");
    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    backend.fetch(&req).await.expect("fetch");
    assert_eq!(backend.stats().await.expect("stats").unique_locks, 1, "a's lock is released");
    for key in ["a", "b"] {
        let fresh = locked(key);
        let out = backend.enqueue(std::slice::from_ref(&fresh)).await.expect("enqueue");
        assert_eq!(out, [jobs_core::EnqueueOutcome::Created], "{key} is free again");
    }
}
