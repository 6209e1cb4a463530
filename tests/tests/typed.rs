//! Typed enqueue and enqueue by name through both backends: the typed arguments survive the
//! round trip to the handler, handler defaults apply, and JSON that does not fit the
//! handler's type is refused before anything is written.

use std::time::Duration;

use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{BackendConfig, FetchRequest};
use jobs_core::prelude::*;
use jobs_core::{Error, JobPriority, Registry};
use jobs_test_support::{redis_backend, unique_namespace};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transfer {
    account: String,
    cents: i64,
    tags: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Receipt {
    account: String,
    cents: i64,
    attempt: u32,
}

#[job_handler("typed_transfer", priority = "critical", max_retries = 7, timeout = "45s")]
async fn typed_transfer(args: Transfer, ctx: JobContext) -> Result<Receipt, JobError> {
    Ok(Receipt { account: args.account, cents: args.cents, attempt: ctx.attempt() })
}

fn req() -> FetchRequest {
    FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "typed-test".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(1),
    }
}

async fn round_trip(queue: JobQueue) {
    let args = Transfer { account: "acc-1".into(), cents: 12_345, tags: vec!["a".into()] };
    let id = queue.enqueue_typed::<TypedTransferJob>(args.clone()).await.expect("enqueue");
    let job = queue.get_job(id).await.expect("get").expect("exists");
    // The handler's attribute options were applied.
    assert_eq!(job.priority, JobPriority::Critical);
    assert_eq!(job.max_retries, 7);
    assert_eq!(job.timeout, Duration::from_secs(45));

    let fetched = queue.fetch(&req()).await.expect("fetch");
    let leased = fetched.jobs.into_iter().next().expect("one job");
    assert_eq!(leased.job.id, id);
    let back: Transfer = serde_json::from_value(leased.job.args.clone()).expect("typed args");
    assert_eq!(back, args);

    // The registry's erased handler gets the typed args back and returns the JSON result.
    let registry = Registry::global().expect("registry");
    let handler = registry.handler("typed_transfer").expect("linked");
    let ctx = JobContext::for_job(&leased.job, queue.clone());
    let result = handler.call(leased.job.args.clone(), ctx).await.expect("handler ok");
    assert_eq!(result, json!({ "account": "acc-1", "cents": 12_345, "attempt": 1 }));
    queue.complete(leased.lease, result.clone()).await.expect("complete");
    let done = queue.get_job(id).await.expect("get").expect("exists");
    assert_eq!(done.result, Some(result));
}

async fn by_name_is_validated_and_gets_defaults(queue: JobQueue) {
    // Enqueue by name gets the handler's defaults too.
    let id = queue
        .enqueue("typed_transfer", json!({ "account": "a", "cents": 1, "tags": [] }))
        .await
        .expect("enqueue by name");
    let job = queue.get_job(id).await.expect("get").expect("exists");
    assert_eq!((job.priority, job.max_retries), (JobPriority::Critical, 7));

    // A wrong type and a missing field are refused, naming the field, and nothing is written.
    let before = queue.stats().await.expect("stats");
    let err = queue
        .enqueue("typed_transfer", json!({ "account": "a", "cents": "lots", "tags": [] }))
        .await
        .expect_err("wrong type");
    match err {
        Error::InvalidArgs { name, message } => {
            assert_eq!(name, "typed_transfer");
            assert!(message.contains("cents"), "{message}");
        }
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
    let err =
        queue.enqueue("typed_transfer", json!({ "account": "a" })).await.expect_err("missing");
    assert!(
        matches!(&err, Error::InvalidArgs { message, .. } if message.contains("cents")),
        "{err}"
    );
    let batch = vec![
        queue.new_job("typed_transfer", json!({ "account": "a", "cents": 1, "tags": [] })),
        queue.new_job("typed_transfer", json!({ "account": 5 })),
    ];
    assert!(queue.enqueue_many(&batch).await.is_err(), "one bad job fails the whole batch");
    assert_eq!(queue.stats().await.expect("stats"), before, "nothing was written");

    // Names no linked handler knows pass (another process may handle them).
    queue.enqueue("handled_elsewhere", json!({ "any": "thing" })).await.expect("unknown name");
}

#[tokio::test]
async fn typed_round_trip_on_memory() {
    round_trip(JobQueue::new(MemoryBackend::new(BackendConfig::default()))).await;
}

#[tokio::test]
async fn typed_round_trip_on_redis() {
    round_trip(JobQueue::new(
        redis_backend(&unique_namespace("typed"), BackendConfig::default()).await,
    ))
    .await;
}

#[tokio::test]
async fn by_name_on_memory() {
    by_name_is_validated_and_gets_defaults(JobQueue::new(MemoryBackend::new(
        BackendConfig::default(),
    )))
    .await;
}

#[tokio::test]
async fn by_name_on_redis() {
    by_name_is_validated_and_gets_defaults(JobQueue::new(
        redis_backend(&unique_namespace("byname"), BackendConfig::default()).await,
    ))
    .await;
}

/// The one option rule, on every enqueue path: what the call sets wins, then the handler's
/// attribute, then the queue's defaults.
#[tokio::test]
async fn every_enqueue_path_resolves_options_by_one_rule() {
    let defaults = jobs_core::JobDefaults {
        priority: JobPriority::Low,
        max_retries: 2,
        timeout: Duration::from_secs(9),
        ..jobs_core::JobDefaults::default()
    };
    let queue = JobQueue::memory().with_defaults(defaults);
    let args = || Transfer { account: "acc".into(), cents: 1, tags: vec![] };
    let call = jobs_core::JobOptions { max_retries: Some(1), ..jobs_core::JobOptions::NONE };
    let by_type =
        queue.enqueue_typed::<TypedTransferJob>(args()).options(call).await.expect("typed");
    let by_name = queue
        .enqueue("typed_transfer", serde_json::to_value(args()).expect("json"))
        .options(call)
        .await
        .expect("by name");
    let batch = queue.new_typed_job::<TypedTransferJob>(args()).expect("job");
    let unknown = queue.enqueue("not_a_handler", json!({})).options(call).await.expect("unknown");
    queue.enqueue_many(std::slice::from_ref(&batch)).await.expect("batch");
    for (id, want) in [
        (by_type, (JobPriority::Critical, 1, Duration::from_secs(45))),
        (by_name, (JobPriority::Critical, 1, Duration::from_secs(45))),
        (batch.id, (JobPriority::Critical, 7, Duration::from_secs(45))),
        (unknown, (JobPriority::Low, 1, Duration::from_secs(9))),
    ] {
        let j = queue.get_job(id).await.expect("get").expect("exists");
        assert_eq!((j.priority, j.max_retries, j.timeout), want, "job {}", j.name);
    }
    // A single option set on the builder after `options` still wins.
    let e = queue.enqueue_typed::<TypedTransferJob>(args()).options(call).max_retries(4);
    assert_eq!(e.job().max_retries, 4);
}
