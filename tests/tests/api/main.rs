//! The HTTP admin API against a service on a private Redis: one test per endpoint (status
//! and body), every bad-input case, authentication, the OpenAPI document and `/metrics`.
//!
//! Requests go through `router(state).oneshot(request)`: no port is bound.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jobs_core::api::{ApiConfig, ApiState, router};
use jobs_core::backend::BackendConfig;
use jobs_core::prelude::*;
use jobs_core::service::{JobService, ServiceConfig};
use jobs_core::worker::WorkerConfig;
use jobs_core::{JobId, Registry, RetryPolicy, State};
use jobs_test_support::{redis_backend, unique_namespace, wait_until};
use serde_json::{Value, json};
use tower::ServiceExt;

mod documents;
mod hardening;
mod jobs;
mod listing;
mod metrics;
mod queues;
mod schedules;
mod stats;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
// Through jobs-core's re-export: this crate does not depend on schemars itself.
#[schemars(crate = "jobs_core::schemars")]
struct SyncArgs {
    /// Whose account.
    user_id: String,
    count: u32,
}

/// Arguments without a JSON Schema (no `JsonSchema` derive).
#[derive(Debug, Serialize, Deserialize)]
struct OpaqueArgs {
    blob: String,
}

#[job_handler("api_opaque")]
async fn api_opaque(args: OpaqueArgs) -> Result<(), JobError> {
    drop(args.blob);
    Ok(())
}

#[job_handler("api_sync", priority = "high", max_retries = 5, timeout = "30s")]
async fn api_sync(args: SyncArgs) -> Result<Value, JobError> {
    Ok(json!({ "user_id": args.user_id, "count": args.count }))
}

/// Flow control declared (listed by the API; uniqueness enforced).
#[job_handler(
    "api_limited",
    queue = "payments",
    unique(by = [user_id], for = "10m", until = "started"),
    rate_limit(max = 10, per = "1s", by = [user_id]),
    rate_limit(max = 500, per = "1m"),
    concurrency(max = 1, by = [user_id])
)]
async fn api_limited(args: SyncArgs) -> Result<(), JobError> {
    drop(args);
    Ok(())
}

#[job_handler("api_noargs")]
async fn api_noargs() -> Result<(), JobError> {
    Ok(())
}

/// Runs for two seconds (long enough to lose its lease from outside).
#[job_handler("api_slow")]
async fn api_slow() -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

#[job_handler("api_broken")]
async fn api_broken() -> Result<(), JobError> {
    Err(JobError::permanent_msg("always broken"))
}

const TOKEN: &str = "t0ken-for-tests";

struct Fixture {
    router: Router,
    service: Arc<JobService>,
}

async fn fixture_with(api: ApiConfig, workers: bool) -> Fixture {
    let backend = redis_backend(&unique_namespace("api"), BackendConfig::default()).await;
    let cfg = ServiceConfig {
        enable_workers: workers,
        concurrency: 4,
        worker: WorkerConfig {
            poll_interval: Duration::from_millis(200),
            lease: Duration::from_secs(5),
            grace: Duration::from_millis(200),
            heartbeat_interval: Duration::from_millis(100),
            retry: RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(80)),
            shutdown_grace: Duration::from_millis(200),
            ..WorkerConfig::default()
        },
        ..ServiceConfig::default()
    };
    let registry = Arc::new(Registry::global().expect("handlers register").clone());
    let service =
        Arc::new(JobService::with_parts(cfg, JobQueue::new(backend), registry, State::new()));
    if workers {
        service.start().expect("service starts");
    }
    Fixture { router: router(ApiState::new(service.clone(), api)), service }
}

async fn fixture() -> Fixture {
    fixture_with(ApiConfig::default(), false).await
}

/// One request; the body is JSON when given.
fn request(method: Method, uri: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder().method(method).uri(uri);
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .expect("valid request"),
        None => b.body(Body::empty()).expect("valid request"),
    }
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let res = router.clone().oneshot(req).await.expect("the router is infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, bytes) = send(router, request(method, uri, body)).await;
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{uri} answered {status} with a non-JSON body ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

async fn get(router: &Router, uri: &str) -> (StatusCode, Value) {
    call(router, Method::GET, uri, None).await
}

async fn post(router: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    call(router, Method::POST, uri, Some(body)).await
}

/// Asserts the error shape and code; returns the message.
#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) -> String {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    let obj = got.1.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only `error`: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    got.1["error"]["message"].as_str().expect("a message").to_owned()
}

async fn enqueue(router: &Router, body: Value) -> JobId {
    let got = post(router, "/api/v1/jobs/enqueue", body).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    got.1["job_id"].as_str().expect("job_id").parse().expect("a job id")
}

/// Polls the job through the API until `done` holds (bounded).
async fn wait_for_job(router: &Router, id: JobId, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/jobs/job/{id}");
    let what = format!("job {id} to reach the expected state");
    let got = wait_until(&what, Duration::from_secs(10), || async {
        let (status, job) = get(router, &path).await;
        assert_eq!(status, StatusCode::OK);
        done(&job).then_some(job)
    })
    .await;
    match got {
        Ok(job) => job,
        Err(e) => panic!("{}", e.last_seen(get(router, &path).await.1)),
    }
}

fn sync_args() -> Value {
    json!({"user_id": "user-123", "count": 2})
}
