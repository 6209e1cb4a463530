//! Unique jobs as an application uses them: declared on the handler
//! (`#[job_handler(.., unique(..))]`), given per call (`unique_key`, `unique_for`), and
//! enforced across processes. The backend rules, one per exit path, are in the conformance
//! suite (`conformance/unique.rs`).

use std::process::{Command, Stdio};
use std::time::Duration;

use jobs_core::prelude::*;
use jobs_core::{EnqueueOutcome, Error, NewJob, OnConflict, UniqueUntil};
use jobs_test_support::{redis_backend, shared, unique_namespace};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Portfolio {
    user_id: String,
    full: bool,
}

/// Unique per user while queued or running.
#[job_handler("unique_sync", unique(by = [user_id], for = "10m"))]
async fn unique_sync(_args: Portfolio) {}

/// Debounced per user: a queued duplicate takes the new arguments.
#[job_handler("unique_debounce", unique(by = [user_id], for = "1m", on_conflict = "replace"))]
async fn unique_debounce(_args: Portfolio) {}

/// Not unique.
#[job_handler("unique_plain")]
async fn unique_plain(_args: Portfolio) {}

fn args(user: &str, full: bool) -> Portfolio {
    Portfolio { user_id: user.into(), full }
}

#[tokio::test]
async fn a_declared_unique_handler_dedupes_by_its_fields() -> Result<(), Error> {
    let q = JobQueue::memory();
    let first = q.enqueue("unique_sync", args("u1", false)).report().await?;
    assert_eq!(first.outcome, EnqueueOutcome::Created);
    // Same user, other fields differ: the same job, reported as a duplicate.
    let again = q.enqueue("unique_sync", args("u1", true)).report().await?;
    assert_eq!(again.id, first.id);
    assert_eq!(again.outcome, EnqueueOutcome::Unique { existing: first.id, replaced: false });
    assert!(again.is_duplicate());
    // Awaiting the builder answers the holder's id too.
    assert_eq!(q.enqueue("unique_sync", args("u1", true)).await?, first.id);
    // Another user: a new job.
    let other = q.enqueue("unique_sync", args("u2", false)).report().await?;
    assert_eq!(other.outcome, EnqueueOutcome::Created);
    // `new_job` + `enqueue_many` take the declared lock as well, within the batch too.
    let batch = [
        q.new_job("unique_sync", json!({"user_id": "u3", "full": false})),
        q.new_job("unique_sync", json!({"user_id": "u3", "full": true})),
        q.new_job("unique_sync", json!({"user_id": "u1", "full": true})),
    ];
    let out = q.enqueue_many(&batch).await?;
    assert_eq!(
        out,
        [
            EnqueueOutcome::Created,
            EnqueueOutcome::Unique { existing: batch[0].id, replaced: false },
            EnqueueOutcome::Unique { existing: first.id, replaced: false },
        ]
    );
    let stats = q.stats().await?;
    assert_eq!((stats.total_pending, stats.unique_locks), (3, 3), "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn a_debounced_handler_keeps_the_latest_args() -> Result<(), Error> {
    let q = JobQueue::memory();
    let id = q.enqueue("unique_debounce", args("u1", false)).await?;
    let r = q.enqueue("unique_debounce", args("u1", true)).report().await?;
    assert_eq!(r.outcome, EnqueueOutcome::Unique { existing: id, replaced: true });
    let job = q.get_job(id).await?.ok_or(Error::NotFound { id })?;
    assert_eq!(job.args, json!({"user_id": "u1", "full": true}));
    Ok(())
}

#[tokio::test]
async fn a_call_can_name_its_own_key_and_window() -> Result<(), Error> {
    let q = JobQueue::memory();
    // A handler without `unique(...)`: the call's key makes it unique.
    let a = q.enqueue("unique_plain", args("u1", false)).unique_key("nightly").await?;
    let b = q.enqueue("unique_plain", args("u2", true)).unique_key("nightly").report().await?;
    assert_eq!(b.outcome, EnqueueOutcome::Unique { existing: a, replaced: false });
    // Another handler with the same key is not excluded (keys are per handler).
    let c = q.enqueue("unique_sync", args("u9", false)).unique_key("nightly").report().await?;
    assert_eq!(c.outcome, EnqueueOutcome::Created);
    // A call's window replaces the declared one: a short lock stops excluding quickly.
    let short = q
        .enqueue("unique_sync", args("u5", false))
        .unique_for(Duration::from_millis(30))
        .report()
        .await?;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let later = q.enqueue("unique_sync", args("u5", false)).report().await?;
    assert_eq!(later.outcome, EnqueueOutcome::Created, "past its window the lock is gone");
    assert_ne!(later.id, short.id);
    // A window with nothing to lock is a clear error, and nothing is written.
    let before = q.stats().await?.total_pending;
    let err = q.enqueue("unique_plain", args("u1", false)).unique_for(Duration::from_secs(1)).await;
    assert!(
        matches!(&err, Err(Error::InvalidJob { reason }) if reason.contains("unique_key")),
        "{err:?}"
    );
    assert_eq!(q.stats().await?.total_pending, before);
    // A lock given whole wins over the declaration.
    let lock = jobs_core::UniqueLock {
        key: "custom".into(),
        window: Duration::from_secs(60),
        until: UniqueUntil::Started,
        on_conflict: OnConflict::Keep,
    };
    let d = q.enqueue("unique_sync", args("u1", false)).unique(lock.clone()).await?;
    let e = q
        .enqueue_reported(NewJob {
            unique: Some(lock),
            ..q.new_job("unique_plain", json!({"user_id": "x", "full": false}))
        })
        .await?;
    assert_eq!(e.outcome, EnqueueOutcome::Unique { existing: d, replaced: false });
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct MaybeUser {
    #[serde(default)]
    user_id: Option<String>,
}

/// Its key field may be left out of the JSON (serde's default).
#[job_handler("unique_optional", unique(by = [user_id], for = "1h"))]
async fn unique_optional(_args: MaybeUser) {}

#[tokio::test]
async fn a_missing_by_field_is_refused_naming_it() -> Result<(), Error> {
    let q = JobQueue::memory();
    let err = q.enqueue("unique_optional", json!({})).await;
    assert!(
        matches!(&err, Err(Error::InvalidArgs { message, .. }) if message.contains("`user_id`")),
        "{err:?}"
    );
    assert_eq!(q.stats().await?.total_pending, 0, "nothing is written");
    // A null is a value like any other.
    q.enqueue("unique_optional", json!({"user_id": null})).await?;
    Ok(())
}

/// Eight processes enqueue 1,000 jobs each, all at once, over the same 50 keys: exactly 50
/// jobs exist, one per key, and every other enqueue was answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_racing_on_fifty_keys_make_fifty_jobs() -> Result<(), Error> {
    const PROCESSES: usize = 8;
    const PER_PROCESS: u32 = 1000;
    const KEYS: u32 = 50;
    let ns = unique_namespace("unique-race");
    let url = shared().url();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_test-worker"))
                .env("TEST_UNIQUE_BURST", format!("{PER_PROCESS},{KEYS}"))
                .env("REDIS_URL", &url)
                .env("JOBS_NAMESPACE", &ns)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start test-worker")
        })
        .collect();
    let (mut created, mut duplicate) = (0u32, 0u32);
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait for test-worker");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "burst failed: {text}");
        let field = |name: &str| -> u32 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text:?}"))
        };
        created += field("created");
        duplicate += field("duplicate");
    }
    assert_eq!(created, KEYS, "one job per key across every process");
    assert_eq!(duplicate, PROCESSES as u32 * PER_PROCESS - KEYS);

    let q = JobQueue::new(redis_backend(&ns, Default::default()).await);
    let stats = q.stats().await?;
    assert_eq!((stats.total_pending, stats.unique_locks), (50, 50), "{stats:?}");
    assert_eq!(stats.counters.enqueued, 50);
    let mut keys: Vec<u64> = q
        .pending_jobs(None, 1000)
        .await?
        .iter()
        .filter_map(|j| j.args.get("key").and_then(|k| k.as_u64()))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..u64::from(KEYS)).collect::<Vec<_>>(), "every key once");
    Ok(())
}
