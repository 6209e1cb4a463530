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

#[job_handler("api_noargs")]
async fn api_noargs() -> Result<(), JobError> {
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

// ---------------------------------------------------------------- health and stats

#[tokio::test]
async fn health_answers_healthy() {
    let fx = fixture().await;
    let got = get(&fx.router, "/api/v1/jobs/health").await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["status"], "healthy");
    assert_eq!(got.1["backend"], "redis");
    assert_eq!(got.1["workers_running"], false);
    assert_eq!(got.1["scheduler_running"], false);
}

#[tokio::test]
async fn a_redis_outage_is_unhealthy_and_a_503_elsewhere() {
    let server = jobs_test_support::RedisServer::start();
    let cfg = jobs_core::backend::redis::RedisConfig {
        response_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..jobs_core::backend::redis::RedisConfig::new(&server.url())
    };
    let backend =
        jobs_core::backend::redis::RedisBackend::connect(cfg).await.expect("redis connects");
    let service = Arc::new(JobService::with_parts(
        ServiceConfig { enable_workers: false, ..ServiceConfig::default() },
        JobQueue::new(backend),
        Arc::new(Registry::default()),
        State::new(),
    ));
    let app = router(ApiState::new(service, ApiConfig::default()));
    drop(server);
    let got = get(&app, "/api/v1/jobs/health").await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.1);
    assert_eq!(got.1["status"], "unhealthy");
    // regression: an outage was a generic 500, which clients and load balancers read as a
    // bug rather than "try again": it is a 503 `backend_unavailable` with `Retry-After`,
    // still without Redis details.
    let res = app
        .clone()
        .oneshot(request(Method::GET, "/api/v1/jobs/queue/stats", None))
        .await
        .expect("the router is infallible");
    assert!(res.headers().contains_key(header::RETRY_AFTER), "{:?}", res.headers());
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    let msg = assert_error(&(status, body), 503, "backend_unavailable");
    assert!(!msg.to_lowercase().contains("redis"), "{msg}");
}

#[tokio::test]
async fn queue_stats_is_exactly_the_spec_object() {
    let fx = fixture().await;
    for p in ["critical", "high", "high", "low"] {
        enqueue(&fx.router, json!({"name": "api_noargs", "priority": p})).await;
    }
    enqueue(&fx.router, json!({"name": "api_noargs", "delay_seconds": 3600})).await;
    let got = get(&fx.router, "/api/v1/jobs/queue/stats").await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(
        got.1,
        json!({
            "pending": {"critical": 1, "high": 2, "normal": 0, "low": 1},
            "scheduled": 1,
            "processing": 0,
            "dead_letter": 0,
            "total_pending": 4
        })
    );
}

#[tokio::test]
async fn full_stats_has_queue_workers_and_handlers() {
    let fx = fixture().await;
    enqueue(&fx.router, json!({"name": "api_noargs"})).await;
    let got = get(&fx.router, "/api/v1/jobs/stats").await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["queue"]["total_pending"], 1);
    assert_eq!(got.1["queue"]["counters"]["enqueued"], 1);
    assert_eq!(got.1["queue"]["retrying"], 0);
    assert_eq!(got.1["workers"], json!([]));
    assert_eq!(got.1["running"], false);
    let names: Vec<&str> = got.1["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert!(names.contains(&"api_sync"), "{names:?}");
}

#[tokio::test]
async fn workers_stats_lists_live_workers_in_the_spec_shape() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let path = "/api/v1/jobs/workers/stats";
    let got = wait_until("a worker in the workers stats", Duration::from_secs(10), || async {
        let got = get(&fx.router, path).await;
        assert_eq!(got.0, StatusCode::OK);
        (got.1["total_workers"] == 1).then_some(got)
    })
    .await;
    let got = match got {
        Ok(got) => got,
        Err(e) => panic!("{}", e.last_seen(get(&fx.router, path).await.1)),
    };
    let w = &got.1["workers"][0];
    for field in [
        "worker_id",
        "status",
        "jobs_processed",
        "jobs_succeeded",
        "jobs_failed",
        "success_rate",
        "average_processing_time",
    ] {
        assert!(w.get(field).is_some(), "missing {field}: {w}");
    }
    assert_eq!(w["success_rate"], 100.0);
    fx.service.stop().await.expect("stops");
}

#[tokio::test]
async fn handlers_lists_defaults_and_argument_types() {
    let fx = fixture().await;
    let got = get(&fx.router, "/api/v1/jobs/handlers").await;
    assert_eq!(got.0, StatusCode::OK);
    let all = got.1["handlers"].as_array().expect("handlers");
    let sync = all.iter().find(|h| h["name"] == "api_sync").expect("api_sync listed");
    assert_eq!(sync["priority"], "high");
    assert_eq!(sync["max_retries"], 5);
    assert_eq!(sync["timeout"], 30);
    assert_eq!(sync["takes_args"], true);
    assert!(sync["args_type"].as_str().expect("args_type").ends_with("SyncArgs"), "{sync}");
    assert!(sync["location"].as_str().expect("location").contains("api.rs"), "{sync}");
    let none = all.iter().find(|h| h["name"] == "api_noargs").expect("api_noargs listed");
    assert_eq!(none["takes_args"], false);
    assert_eq!(none["priority"], "normal");
    assert_eq!(none["max_retries"], 3);
    assert_eq!(none["args_schema"]["additionalProperties"], false);
    // The schema derived through the macro from `SyncArgs: JsonSchema`.
    let schema = &sync["args_schema"];
    assert_eq!(schema["type"], "object", "{schema}");
    assert_eq!(schema["required"], json!(["user_id", "count"]), "{schema}");
    assert_eq!(schema["properties"]["user_id"]["type"], "string", "{schema}");
    assert_eq!(schema["properties"]["user_id"]["description"], "Whose account.", "{schema}");
    assert_eq!(schema["properties"]["count"]["type"], "integer", "{schema}");
    assert_eq!(schema["properties"]["count"]["minimum"], 0, "{schema}");
    // A type without a schema: any JSON (the type still checks it on enqueue).
    let opaque = all.iter().find(|h| h["name"] == "api_opaque").expect("api_opaque listed");
    assert_eq!((&opaque["takes_args"], &opaque["args_schema"]), (&json!(true), &json!({})));
}

// ---------------------------------------------------------------- enqueue and jobs

#[tokio::test]
async fn enqueue_creates_a_job_with_the_options_given() {
    let fx = fixture().await;
    let id = enqueue(
        &fx.router,
        json!({"name": "api_sync", "args": sync_args(), "priority": "critical",
               "max_retries": 7, "timeout": 12.5, "user_id": "user-123"}),
    )
    .await;
    let (status, job) = get(&fx.router, &format!("/api/v1/jobs/job/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["name"], "api_sync");
    assert_eq!(job["args"], sync_args());
    assert_eq!(job["status"], "pending");
    assert_eq!(job["priority"], "critical");
    assert_eq!(job["max_retries"], 7);
    assert_eq!(job["timeout"], 12.5);
    assert_eq!(job["user_id"], "user-123");
    assert_eq!(job["retry_count"], 0);
    for field in ["created_at", "scheduled_at", "started_at", "completed_at", "error", "result"] {
        assert!(job.get(field).is_some(), "missing {field}");
    }
}

#[tokio::test]
async fn enqueue_applies_handler_defaults_and_delays() {
    let fx = fixture().await;
    let id = enqueue(&fx.router, json!({"name": "api_sync", "args": sync_args()})).await;
    let (_, job) = get(&fx.router, &format!("/api/v1/jobs/job/{id}")).await;
    assert_eq!(job["priority"], "high");
    assert_eq!(job["max_retries"], 5);
    assert_eq!(job["timeout"], 30);
    assert_eq!(job["scheduled_at"], Value::Null);

    let id = enqueue(&fx.router, json!({"name": "api_noargs", "delay_seconds": 60})).await;
    let (_, job) = get(&fx.router, &format!("/api/v1/jobs/job/{id}")).await;
    assert!(job["scheduled_at"].is_string(), "{job}");

    let at = "2999-01-01T00:00:00Z";
    let got =
        post(&fx.router, "/api/v1/jobs/enqueue", json!({"name": "api_noargs", "scheduled_at": at}))
            .await;
    assert_error(&got, 400, "invalid_request");
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let id = enqueue(&fx.router, json!({"name": "api_noargs", "scheduled_at": at})).await;
    let (_, job) = get(&fx.router, &format!("/api/v1/jobs/job/{id}")).await;
    assert!(job["scheduled_at"].is_string(), "{job}");
    let (_, stats) = get(&fx.router, "/api/v1/jobs/queue/stats").await;
    assert_eq!(stats["scheduled"], 2);
}

#[tokio::test]
async fn enqueue_rejects_bad_input_with_the_right_status() {
    let fx = fixture_with(ApiConfig::default().body_limit(4096), false).await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/enqueue";

    // 400: not JSON at all, or cut short.
    let raw = |body: &'static str, ct: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .expect("valid request")
    };
    for body in ["{", "{\"name\": \"api_noargs\"", "nope", "", "{\"name\": \"api_noargs\"} x"] {
        let (status, bytes) = send(r, raw(body, "application/json")).await;
        let v: Value = serde_json::from_slice(&bytes).expect("json error body");
        assert_error(&(status, v), 400, "malformed_json");
    }
    // 400: well-formed JSON with a bad field.
    for (body, field) in [
        (json!([1, 2]), ""),
        (json!({"args": {}}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"name": "api_noargs", "priority": "urgent"}), "priority"),
        (json!({"name": "api_noargs", "delay_seconds": -1}), "delay_seconds"),
        (json!({"name": "api_noargs", "delay_seconds": 1e12}), "delay_seconds"),
        (
            json!({"name": "api_noargs", "delay_seconds": 1, "scheduled_at": "2030-01-01T00:00:00Z"}),
            "scheduled_at",
        ),
        (json!({"name": "api_noargs", "scheduled_at": "tomorrow"}), "scheduled_at"),
        (json!({"name": "api_noargs", "timeout": 0}), "timeout"),
        (json!({"name": "api_noargs", "max_retries": -1}), "max_retries"),
        (json!({"name": "api_noargs", "max_retries": 100000}), "max_retries"),
        (json!({"name": "api_noargs", "surprise": true}), "surprise"),
    ] {
        let got = post(r, uri, body.clone()).await;
        let msg = assert_error(&got, 400, "invalid_request");
        assert!(msg.contains(field), "{body}: {msg}");
    }
    // 404: no such handler.
    let msg =
        assert_error(&post(r, uri, json!({"name": "api_nope"})).await, 404, "handler_not_found");
    assert!(msg.contains("api_nope"), "{msg}");
    // 422: arguments that do not fit, naming the field.
    let got =
        post(r, uri, json!({"name": "api_sync", "args": {"user_id": "u", "count": "x"}})).await;
    let msg = assert_error(&got, 422, "invalid_args");
    assert!(msg.contains("count"), "{msg}");
    let got = post(r, uri, json!({"name": "api_sync", "args": {"count": 1}})).await;
    let msg = assert_error(&got, 422, "invalid_args");
    assert!(msg.contains("user_id"), "{msg}");
    let got = post(r, uri, json!({"name": "api_noargs", "args": {"a": 1}})).await;
    assert_error(&got, 422, "invalid_args");
    // 413: over the body limit.
    let big = json!({"name": "api_noargs", "user_id": "x".repeat(8192)});
    assert_error(&post(r, uri, big).await, 413, "payload_too_large");
    // 415: not declared as JSON.
    let (status, bytes) = send(r, raw("{\"name\": \"api_noargs\"}", "text/plain")).await;
    let v: Value = serde_json::from_slice(&bytes).expect("json error body");
    assert_error(&(status, v), 415, "unsupported_media_type");
    // Nothing was enqueued by any of it.
    let (_, stats) = get(r, "/api/v1/jobs/queue/stats").await;
    assert_eq!(stats["total_pending"], 0);
}

#[tokio::test]
async fn get_job_answers_404_and_400() {
    let fx = fixture().await;
    let unknown = JobId::new();
    let msg = assert_error(
        &get(&fx.router, &format!("/api/v1/jobs/job/{unknown}")).await,
        404,
        "job_not_found",
    );
    assert!(msg.contains(&unknown.to_string()), "{msg}");
    assert_error(&get(&fx.router, "/api/v1/jobs/job/not-a-uuid").await, 400, "invalid_job_id");
    assert_error(&get(&fx.router, "/api/v1/jobs/job/%FF%FE").await, 400, "invalid_request");
}

#[tokio::test]
async fn job_result_is_null_until_completed() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let id = enqueue(
        &fx.router,
        json!({"name": "api_sync", "args": sync_args(), "delay_seconds": 3600}),
    )
    .await;
    let got = get(&fx.router, &format!("/api/v1/jobs/job/{id}/result")).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(
        got.1,
        json!({"job_id": id.to_string(), "status": "pending", "result": null, "error": null, "completed_at": null})
    );

    let id = enqueue(&fx.router, json!({"name": "api_sync", "args": sync_args()})).await;
    wait_for_job(&fx.router, id, |j| j["status"] == "completed").await;
    let got = get(&fx.router, &format!("/api/v1/jobs/job/{id}/result")).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["status"], "completed");
    assert_eq!(got.1["result"], json!({"user_id": "user-123", "count": 2}));
    assert!(got.1["completed_at"].is_string());

    assert_error(
        &get(&fx.router, &format!("/api/v1/jobs/job/{}/result", JobId::new())).await,
        404,
        "job_not_found",
    );
    assert_error(&get(&fx.router, "/api/v1/jobs/job/123/result").await, 400, "invalid_job_id");
    fx.service.stop().await.expect("stops");
}

#[tokio::test]
async fn cancel_cancels_waiting_jobs_and_refuses_finished_ones() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let id = enqueue(r, json!({"name": "api_noargs", "delay_seconds": 3600})).await;
    let got = call(r, Method::POST, &format!("/api/v1/jobs/job/{id}/cancel"), None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"job_id": id.to_string(), "outcome": "cancelled"}));
    // Twice: the job is cancelled now, a finished state.
    let again = call(r, Method::POST, &format!("/api/v1/jobs/job/{id}/cancel"), None).await;
    assert_error(&again, 409, "invalid_state");
    // A completed job.
    let done = enqueue(r, json!({"name": "api_noargs"})).await;
    wait_for_job(r, done, |j| j["status"] == "completed").await;
    let got = call(r, Method::POST, &format!("/api/v1/jobs/job/{done}/cancel"), None).await;
    let msg = assert_error(&got, 409, "invalid_state");
    assert!(msg.contains("completed"), "{msg}");
    let unknown =
        call(r, Method::POST, &format!("/api/v1/jobs/job/{}/cancel", JobId::new()), None).await;
    assert_error(&unknown, 404, "job_not_found");
    let bad = call(r, Method::POST, "/api/v1/jobs/job/xyz/cancel", None).await;
    assert_error(&bad, 400, "invalid_job_id");
    fx.service.stop().await.expect("stops");
}

#[tokio::test]
async fn pending_lists_ready_jobs_in_order() {
    let fx = fixture().await;
    let r = &fx.router;
    let low = enqueue(r, json!({"name": "api_noargs", "priority": "low"})).await;
    let high = enqueue(r, json!({"name": "api_noargs", "priority": "high"})).await;
    let high2 = enqueue(r, json!({"name": "api_noargs", "priority": "high"})).await;
    enqueue(r, json!({"name": "api_noargs", "delay_seconds": 3600})).await;

    let ids = |v: &Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let got = get(r, "/api/v1/jobs/pending").await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["count"], 3);
    assert_eq!(ids(&got.1), [high.to_string(), high2.to_string(), low.to_string()]);
    let got = get(r, "/api/v1/jobs/pending?priority=low").await;
    assert_eq!(ids(&got.1), [low.to_string()]);
    let got = get(r, "/api/v1/jobs/pending?priority=high&limit=1").await;
    assert_eq!(ids(&got.1), [high.to_string()]);
    let got = get(r, "/api/v1/jobs/pending?limit=0").await;
    assert_eq!(got.1, json!({"count": 0, "jobs": []}));

    assert_error(&get(r, "/api/v1/jobs/pending?priority=urgent").await, 400, "invalid_request");
    assert_error(&get(r, "/api/v1/jobs/pending?limit=1001").await, 400, "invalid_request");
    assert_error(&get(r, "/api/v1/jobs/pending?limit=-1").await, 400, "invalid_request");
    assert_error(&get(r, "/api/v1/jobs/pending?limit=ten").await, 400, "invalid_request");
}

// ---------------------------------------------------------------- dead-letter queue

#[tokio::test]
async fn dlq_list_retry_and_clear() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let dead = enqueue(r, json!({"name": "api_broken"})).await;
    let job = wait_for_job(r, dead, |j| j["status"] == "failed").await;
    assert_eq!(job["error"], "always broken");

    let got = get(r, "/api/v1/jobs/dlq").await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["count"], 1);
    assert_eq!(got.1["jobs"][0]["id"], dead.to_string());
    assert_eq!(got.1["jobs"][0]["status"], "failed");
    assert_eq!(get(r, "/api/v1/jobs/dlq?limit=0").await.1["count"], 0);
    assert_error(&get(r, "/api/v1/jobs/dlq?limit=5000").await, 400, "invalid_request");

    // Retry puts it back; it fails again and returns to the DLQ.
    let got = call(r, Method::POST, &format!("/api/v1/jobs/dlq/{dead}/retry"), None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"job_id": dead.to_string(), "status": "pending"}));
    wait_for_job(r, dead, |j| j["status"] == "failed").await;

    // 409 for a job that is not in the DLQ, 404 for none, 400 for a bad id.
    let waiting = enqueue(r, json!({"name": "api_noargs", "delay_seconds": 3600})).await;
    let got = call(r, Method::POST, &format!("/api/v1/jobs/dlq/{waiting}/retry"), None).await;
    assert_error(&got, 409, "invalid_state");
    let got =
        call(r, Method::POST, &format!("/api/v1/jobs/dlq/{}/retry", JobId::new()), None).await;
    assert_error(&got, 404, "job_not_found");
    assert_error(
        &call(r, Method::POST, "/api/v1/jobs/dlq/nope/retry", None).await,
        400,
        "invalid_job_id",
    );

    let got = call(r, Method::DELETE, "/api/v1/jobs/dlq", None).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1, json!({"cleared": 1}));
    assert_eq!(get(r, "/api/v1/jobs/dlq").await.1, json!({"count": 0, "jobs": []}));
    fx.service.stop().await.expect("stops");
}

// ---------------------------------------------------------------- schedules

fn interval_schedule(name: &str) -> Value {
    json!({"name": name, "job_name": "api_sync", "args": sync_args(),
           "schedule": {"type": "interval", "seconds": 300}})
}

#[tokio::test]
async fn scheduler_stats_is_the_spec_object() {
    let fx = fixture().await;
    let r = &fx.router;
    assert_eq!(
        post(r, "/api/v1/jobs/scheduled/register", interval_schedule("every5")).await.0,
        StatusCode::OK
    );
    let daily = json!({"name": "daily", "job_name": "api_noargs", "enabled": false,
                       "schedule": {"type": "cron", "expression": "0 8 * * *"}});
    assert_eq!(post(r, "/api/v1/jobs/scheduled/register", daily).await.0, StatusCode::OK);
    let got = get(r, "/api/v1/jobs/scheduler/stats").await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["running"], false);
    assert_eq!(got.1["total_tasks"], 2);
    assert_eq!(got.1["enabled_tasks"], 1);
    assert_eq!(got.1["disabled_tasks"], 1);
    assert_eq!(got.1["due_tasks"], 0);
    let names: Vec<&str> = got.1["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["daily", "every5"]);
    // The full stats carry the same object.
    let (_, full) = get(r, "/api/v1/jobs/stats").await;
    assert_eq!(full["scheduler"]["total_tasks"], 2);
}

#[tokio::test]
async fn schedules_register_list_enable_disable_run_and_unregister() {
    let fx = fixture().await;
    let r = &fx.router;
    let got = post(r, "/api/v1/jobs/scheduled/register", interval_schedule("sync5")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["name"], "sync5");
    assert_eq!(got.1["job_name"], "api_sync");
    assert_eq!(got.1["schedule_type"], "interval");
    assert_eq!(got.1["interval_seconds"], 300);
    // The handler's priority when none is given.
    assert_eq!(got.1["priority"], "high");
    assert_eq!(got.1["enabled"], true);
    assert!(got.1["next_run"].is_string());
    assert_eq!(got.1["run_count"], 0);
    assert_eq!(got.1["misfire_policy"], "coalesce");

    let got = get(r, "/api/v1/jobs/scheduled").await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["count"], 1);
    assert_eq!(got.1["tasks"][0]["name"], "sync5");

    let got = call(r, Method::POST, "/api/v1/jobs/scheduled/sync5/disable", None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["enabled"], false);
    assert_eq!(got.1["next_run"], Value::Null);
    let got = call(r, Method::POST, "/api/v1/jobs/scheduled/sync5/enable", None).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1["enabled"], true);
    assert!(got.1["next_run"].is_string());

    let got = call(r, Method::POST, "/api/v1/jobs/scheduled/sync5/run", None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["name"], "sync5");
    let job_id = got.1["job_id"].as_str().expect("job_id").to_owned();
    let (status, job) = get(r, &format!("/api/v1/jobs/job/{job_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["name"], "api_sync");
    assert_eq!(job["args"], sync_args());
    let (_, info) = get(r, "/api/v1/jobs/scheduled").await;
    assert_eq!(info["tasks"][0]["run_count"], 1);
    assert_eq!(info["tasks"][0]["last_job_id"], job_id.as_str());

    let got = call(r, Method::DELETE, "/api/v1/jobs/scheduled/sync5", None).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.1, json!({"name": "sync5", "removed": true}));
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1, json!({"count": 0, "tasks": []}));
}

#[tokio::test]
async fn schedules_reject_bad_input_with_the_right_status() {
    let fx = fixture().await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/scheduled/register";
    let with =
        |schedule: Value| json!({"name": "s", "job_name": "api_noargs", "schedule": schedule});
    for schedule in [
        json!({"type": "cron", "expression": "61 * * * *"}),
        json!({"type": "cron", "expression": "not a cron"}),
        json!({"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Olympus"}),
        json!({"type": "interval", "seconds": 0}),
    ] {
        assert_error(&post(r, uri, with(schedule.clone())).await, 400, "invalid_schedule");
    }
    for schedule in [
        json!({"type": "hourly"}),
        json!({"type": "interval", "seconds": -5}),
        json!({"type": "interval"}),
        json!({"type": "once", "at": "soon"}),
        json!("every minute"),
    ] {
        assert_error(&post(r, uri, with(schedule.clone())).await, 400, "invalid_request");
    }
    let bad_name = json!({"name": "", "job_name": "api_noargs", "schedule": {"type": "interval", "seconds": 5}});
    assert_error(&post(r, uri, bad_name).await, 400, "invalid_schedule");
    let unknown = json!({"name": "s", "job_name": "api_nope", "schedule": {"type": "interval", "seconds": 5}});
    assert_error(&post(r, uri, unknown).await, 404, "handler_not_found");
    let bad_args = json!({"name": "s", "job_name": "api_sync", "args": {"user_id": 1},
                          "schedule": {"type": "interval", "seconds": 5}});
    let msg = assert_error(&post(r, uri, bad_args).await, 422, "invalid_args");
    assert!(msg.contains("user_id"), "{msg}");
    let (status, bytes) = send(
        r,
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"name\":"))
            .expect("request"),
    )
    .await;
    assert_error(&(status, serde_json::from_slice(&bytes).expect("json")), 400, "malformed_json");

    for (method, path) in [
        (Method::POST, "/api/v1/jobs/scheduled/ghost/enable"),
        (Method::POST, "/api/v1/jobs/scheduled/ghost/disable"),
        (Method::POST, "/api/v1/jobs/scheduled/ghost/run"),
        (Method::DELETE, "/api/v1/jobs/scheduled/ghost"),
    ] {
        let msg = assert_error(&call(r, method, path, None).await, 404, "schedule_not_found");
        assert!(msg.contains("ghost"), "{msg}");
    }
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1["count"], 0);
}

/// The flat body of the original spec: the fields `GET /scheduled` answers in.
fn flat_schedule(name: &str, kind: &str) -> Value {
    let mut body = json!({"name": name, "job_name": "api_noargs", "schedule_type": kind});
    let extra = match kind {
        "interval" => json!({"interval_seconds": 300}),
        "cron" => json!({"cron_expression": "30 9 * * 1-5", "timezone": "America/New_York"}),
        _ => json!({"run_at": "2030-01-01T08:00:00Z"}),
    };
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

// regression: `POST /scheduled/register` refused the spec's flat body (`schedule_type`,
// `interval_seconds`, …) with 400 `unknown field schedule_type`, though `GET` answers in it.
#[tokio::test]
async fn schedules_accept_the_flat_body_of_the_spec() {
    let fx = fixture().await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/scheduled/register";
    let got = post(r, uri, flat_schedule("flat_interval", "interval")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["schedule_type"], "interval");
    assert_eq!(got.1["interval_seconds"], 300);
    let got = post(r, uri, flat_schedule("flat_cron", "cron")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["schedule_type"], "cron");
    assert_eq!(got.1["cron_expression"], "30 9 * * 1-5");
    assert_eq!(got.1["timezone"], "America/New_York");
    let mut once = flat_schedule("flat_once", "once");
    once["priority"] = json!("low");
    once["args"] = json!({});
    let got = post(r, uri, once).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["schedule_type"], "once");
    assert_eq!(got.1["run_at"], "2030-01-01T08:00:00Z");
    assert_eq!(got.1["priority"], "low");
    // The nested form still works beside it.
    let got = post(r, uri, interval_schedule("nested")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1["count"], 4);
}

// regression: what `GET /scheduled` returns could not be posted back (its `schedule_type`,
// `misfire_policy`, `last_run`, `run_count`… were unknown fields of the register body).
#[tokio::test]
async fn schedule_get_output_posts_back_unchanged() {
    let fx = fixture().await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/scheduled/register";
    let cron = json!({"name": "rt_cron", "job_name": "api_sync", "args": sync_args(),
        "priority": "low", "misfire": "catch_up", "enabled": false,
        "schedule": {"type": "cron", "expression": "0 8 * * *", "timezone": "Europe/Berlin"}});
    let once = json!({"name": "rt_once", "job_name": "api_noargs",
        "schedule": {"type": "once", "at": "2030-01-01T00:00:00Z"}});
    for body in [cron, once, interval_schedule("rt_interval")] {
        let got = post(r, uri, body).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    }
    // Counters and a last job to carry back too.
    let got = call(r, Method::POST, "/api/v1/jobs/scheduled/rt_interval/run", None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let (_, before) = get(r, "/api/v1/jobs/scheduled").await;
    let tasks = before["tasks"].as_array().expect("tasks").clone();
    assert_eq!(tasks.len(), 3);
    for task in tasks {
        let got = post(r, uri, task.clone()).await;
        assert_eq!(got.0, StatusCode::OK, "posting back {task}: {}", got.1);
        assert_eq!(got.1, task, "the answer to a posted-back schedule is the schedule");
    }
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1, before);
    // The settable fields are applied: a changed flag, policy and priority.
    let mut edited = before["tasks"][0].clone();
    assert_eq!(edited["name"], "rt_cron");
    edited["enabled"] = json!(true);
    edited["misfire_policy"] = json!("coalesce");
    edited["priority"] = json!("critical");
    edited["run_count"] = json!(99); // output only: ignored
    let got = post(r, uri, edited).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["enabled"], true);
    assert!(got.1["next_run"].is_string(), "{}", got.1);
    assert_eq!(got.1["misfire_policy"], "coalesce");
    assert_eq!(got.1["priority"], "critical");
    assert_eq!(got.1["run_count"], 0);
}

// regression: a flat body's fields must agree with its `schedule_type`; a mismatch is a 400
// that names the field, never a schedule registered from half of it.
#[tokio::test]
async fn schedules_refuse_an_inconsistent_flat_body_naming_the_field() {
    let fx = fixture().await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/scheduled/register";
    let with = |kind: &str, extra: Value| {
        let mut body = json!({"name": "bad", "job_name": "api_noargs", "schedule_type": kind});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (with("cron", json!({})), "cron_expression"),
        (with("cron", json!({"cron_expression": null})), "cron_expression"),
        (with("interval", json!({"cron_expression": "0 8 * * *"})), "interval_seconds"),
        (with("once", json!({"interval_seconds": 5})), "run_at"),
        (
            with("interval", json!({"interval_seconds": 5, "cron_expression": "0 8 * * *"})),
            "cron_expression",
        ),
        (with("interval", json!({"interval_seconds": 5, "timezone": "UTC"})), "timezone"),
        (
            with("cron", json!({"cron_expression": "0 8 * * *", "run_at": "2030-01-01T00:00:00Z"})),
            "run_at",
        ),
        (
            with("once", json!({"run_at": "2030-01-01T00:00:00Z", "interval_seconds": 5})),
            "interval_seconds",
        ),
        (with("hourly", json!({"interval_seconds": 5})), "schedule_type"),
        (with("interval", json!({"interval_seconds": "5"})), "interval_seconds"),
        (with("interval", json!({"interval_seconds": 5, "run_count": "x"})), "run_count"),
        (
            with("interval", json!({"interval_seconds": 5, "misfire_policy": "never"})),
            "misfire_policy",
        ),
        (with("interval", json!({"interval_seconds": 5, "colour": "red"})), "colour"),
        (
            with(
                "interval",
                json!({"interval_seconds": 5, "schedule": {"type": "interval", "seconds": 5}}),
            ),
            "schedule",
        ),
    ] {
        let msg = assert_error(&post(r, uri, body.clone()).await, 400, "invalid_request");
        assert!(msg.contains(&format!("`{field}`")), "{body}: the message names `{field}`: {msg}");
    }
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1["count"], 0);
}

// regression: `DELETE /scheduled/register` answered 405: the route of `POST …/register`
// shadowed `DELETE /scheduled/{name}` for a schedule named `register`.
#[tokio::test]
async fn a_schedule_named_register_can_be_deleted() {
    let fx = fixture().await;
    let r = &fx.router;
    let path = "/api/v1/jobs/scheduled/register";
    let got = call(r, Method::DELETE, path, None).await;
    let msg = assert_error(&got, 404, "schedule_not_found");
    assert!(msg.contains("register"), "{msg}");
    let got = post(r, path, interval_schedule("register")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    for op in ["disable", "enable", "run"] {
        let got = call(r, Method::POST, &format!("{path}/{op}"), None).await;
        assert_eq!(got.0, StatusCode::OK, "{op}: {}", got.1);
    }
    let got = call(r, Method::DELETE, path, None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"name": "register", "removed": true}));
    assert_eq!(get(r, "/api/v1/jobs/scheduled").await.1["count"], 0);
}

// ---------------------------------------------------------------- auth, routing, documents

#[tokio::test]
async fn a_configured_token_is_required_everywhere_but_health() {
    let fx = fixture_with(ApiConfig::default().token(Some(TOKEN.into())), false).await;
    let r = &fx.router;
    let with = |method: Method, uri: &str, auth: Option<&str>| {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).expect("valid request")
    };
    for uri in [
        "/api/v1/jobs/stats",
        "/api/v1/jobs/queue/stats",
        "/api/v1/jobs/handlers",
        "/api/v1/jobs/dlq",
        "/api/v1/jobs/openapi.json",
        "/metrics",
        "/api/v1/jobs/nowhere",
    ] {
        for auth in [None, Some("Bearer wrong"), Some("Basic dDBrZW4="), Some(TOKEN)] {
            let res = r.clone().oneshot(with(Method::GET, uri, auth)).await.expect("infallible");
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri} with {auth:?}");
            assert_eq!(
                res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
            let body = res.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    let bearer = format!("Bearer {TOKEN}");
    let (status, _) = send(r, with(Method::GET, "/api/v1/jobs/queue/stats", Some(&bearer))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(r, with(Method::GET, "/metrics", Some(&bearer))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(r, with(Method::GET, "/api/v1/jobs/health", None)).await;
    assert_eq!(status, StatusCode::OK);
    // A POST without the token changes nothing.
    let req = request(Method::POST, "/api/v1/jobs/enqueue", Some(json!({"name": "api_noargs"})));
    assert_eq!(send(r, req).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.service.queue().stats().await.expect("stats").total_pending, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let fx = fixture().await;
    assert_error(&get(&fx.router, "/api/v1/jobs/nowhere").await, 404, "not_found");
    assert_error(
        &call(&fx.router, Method::PUT, "/api/v1/jobs/health", None).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(&fx.router, Method::GET, "/api/v1/jobs/enqueue", None).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn openapi_document_describes_every_endpoint() {
    let fx = fixture().await;
    let (status, doc) = get(&fx.router, "/api/v1/jobs/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/jobs/health", &["get"][..]),
        ("/api/v1/jobs/stats", &["get"]),
        ("/api/v1/jobs/queue/stats", &["get"]),
        ("/api/v1/jobs/stats/throughput", &["get"]),
        ("/api/v1/jobs/workers/stats", &["get"]),
        ("/api/v1/jobs/scheduler/stats", &["get"]),
        ("/api/v1/jobs/handlers", &["get"]),
        ("/api/v1/jobs/enqueue", &["post"]),
        ("/api/v1/jobs/job/{job_id}", &["get"]),
        ("/api/v1/jobs/job/{job_id}/result", &["get"]),
        ("/api/v1/jobs/job/{job_id}/cancel", &["post"]),
        ("/api/v1/jobs/pending", &["get"]),
        ("/api/v1/jobs/dlq", &["get", "delete"]),
        ("/api/v1/jobs/dlq/{job_id}/retry", &["post"]),
        ("/api/v1/jobs/scheduled", &["get"]),
        ("/api/v1/jobs/scheduled/register", &["post", "delete"]),
        ("/api/v1/jobs/scheduled/{name}", &["delete"]),
        ("/api/v1/jobs/scheduled/{name}/enable", &["post"]),
        ("/api/v1/jobs/scheduled/{name}/disable", &["post"]),
        ("/api/v1/jobs/scheduled/{name}/run", &["post"]),
        ("/api/v1/jobs/openapi.json", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for m in methods {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[m];
            assert!(op["responses"].is_object(), "{m} {path} has no responses");
        }
    }
    assert_eq!(paths.len(), 22);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let id = enqueue(r, json!({"name": "api_sync", "args": sync_args()})).await;
    wait_for_job(r, id, |j| j["status"] == "completed").await;
    enqueue(r, json!({"name": "api_noargs", "priority": "low", "delay_seconds": 3600})).await;
    fx.service.stop().await.expect("stops");

    let res = r.clone().oneshot(request(Method::GET, "/metrics", None)).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no sample {prefix}:\n{text}"))
    };
    assert!(value("jobs_enqueued_total{handler=\"api_sync\"}") >= 1.0);
    assert!(value("jobs_completed_total{handler=\"api_sync\"}") >= 1.0);
    assert!(value("jobs_processing_seconds_count{handler=\"api_sync\"}") >= 1.0);
    assert!(value("jobs_processing_seconds_bucket{handler=\"api_sync\",le=\"+Inf\"}") >= 1.0);
    assert_eq!(value("jobs_queue_pending{priority=\"low\"}"), 0.0);
    assert_eq!(value("jobs_queue_scheduled"), 1.0);
    assert_eq!(value("jobs_queue_processing"), 0.0);
    assert_eq!(value("jobs_dead_letter_size"), 0.0);
    assert!(value("jobs_workers_live") >= 0.0);
    assert_eq!(value("jobs_backend_completed_total"), 1.0);
    for family in ["jobs_failed_total", "jobs_retried_total", "jobs_dead_lettered_total"] {
        assert!(text.contains(&format!("# TYPE {family} counter")), "{family}");
    }
    assert!(text.contains("# TYPE jobs_processing_seconds histogram"));
}

/// Reads until the server closes the connection or `within` passes; true when it closed.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET /health` on a fresh connection: the status line's code, if it answered.
async fn health_over_tcp(addr: std::net::SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    conn.write_all(
        b"GET /api/v1/jobs/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.ok()?;
    let line = String::from_utf8_lossy(&out);
    line.split(' ').nth(1)?.parse().ok()
}

// regression: the API was served by `axum::serve` with no header-read timeout, no idle
// timeout and no connection cap, so clients that open connections and never finish their
// headers (or idle after a request) held them, and their memory, forever.
#[tokio::test]
async fn held_connections_are_cut_and_health_still_answers() {
    use tokio::io::AsyncWriteExt;
    let f = fixture().await;
    let cap = 4;
    let timeout = Duration::from_millis(400);
    let config = ApiConfig::default().max_connections(cap).header_timeout(timeout);
    let api = jobs_core::api::start("127.0.0.1:0", ApiState::new(f.service.clone(), config), false)
        .await
        .expect("the API starts");
    let addr = api.local_addr();
    // Four times the cap, each with a request line and half its headers.
    let mut held = Vec::new();
    for _ in 0..cap * 4 {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connects");
        c.write_all(b"GET /api/v1/jobs/health HTTP/1.1\r\nHost: 127.0").await.expect("writes");
        held.push(c);
    }
    let started = std::time::Instant::now();
    // Every held connection is closed by the server: those over the cap at once, the
    // others by the header timeout.
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            closed_within(c, timeout + Duration::from_secs(2)).await,
            "held connection {i} was never closed"
        );
    }
    let cut = started.elapsed();
    let status = tokio::time::timeout(Duration::from_secs(1), health_over_tcp(addr))
        .await
        .expect("health answers within a second once the held connections are cut");
    assert_eq!(status, Some(200));
    eprintln!(
        "{} held connections cut after {cut:?}; health answered after {:?}",
        held.len(),
        started.elapsed()
    );
    // A keep-alive connection that idles after its request is closed too.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connects");
    idle.write_all(b"GET /api/v1/jobs/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("writes");
    assert!(
        closed_within(&mut idle, timeout + Duration::from_secs(2)).await,
        "an idle keep-alive connection was never closed"
    );
    api.stop().await.expect("the API stops");
}

// regression: a body that announced more than the limit was read (up to the limit) before
// the 413; it is refused on its Content-Length at once, before any of it is sent.
#[tokio::test]
async fn bodies_announced_over_the_limit_are_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let config = ApiConfig::default().body_limit(1024);
    let api = jobs_core::api::start("127.0.0.1:0", ApiState::new(f.service.clone(), config), false)
        .await
        .expect("the API starts");
    let mut c = tokio::net::TcpStream::connect(api.local_addr()).await.expect("connects");
    c.write_all(
        b"POST /api/v1/jobs/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    )
    .await
    .expect("writes");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("answers without waiting for the body")
        .expect("reads");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    api.stop().await.expect("the API stops");
}

/// A request with the given headers and an optional raw body.
fn raw(method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_owned()))).expect("valid request")
}

// regression: without a token the API answered any browser page: a cross-site form POST
// (CSRF) or a page on a rebound DNS name (Host: evil.example resolving to 127.0.0.1) could
// enqueue jobs and clear the DLQ. Foreign Origins, foreign Hosts and non-JSON bodies are
// refused; bare CLI POSTs stay valid.
#[tokio::test]
async fn cross_site_and_rebound_requests_are_refused_without_a_token() {
    let f = fixture().await;
    let r = &f.router;
    let body = r#"{"name":"api_noargs"}"#;
    let json = ("content-type", "application/json");
    let enqueue = "/api/v1/jobs/enqueue";
    let status = |req| async { send(r, req).await.0.as_u16() };
    // A foreign Origin on a state change.
    let evil = raw(Method::POST, enqueue, &[json, ("origin", "https://evil.example")], Some(body));
    assert_eq!(status(evil).await, 403);
    let null = raw(Method::DELETE, "/api/v1/jobs/dlq", &[("origin", "null")], None);
    assert_eq!(status(null).await, 403);
    // The API's own Origin is fine.
    let own = raw(
        Method::POST,
        enqueue,
        &[json, ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")],
        Some(body),
    );
    assert_eq!(status(own).await, 201);
    // A Host that is not a loopback name (DNS rebinding), even on a GET.
    let rebound = raw(Method::GET, "/api/v1/jobs/stats", &[("host", "evil.example:8080")], None);
    assert_eq!(status(rebound).await, 403);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "localhost"] {
        let ok = raw(Method::GET, "/api/v1/jobs/stats", &[("host", host)], None);
        assert_eq!(status(ok).await, 200, "{host}");
    }
    // Form and text bodies are refused with 415, whatever the endpoint.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let retry = "/api/v1/jobs/dlq/00000000-0000-4000-8000-000000000000/retry";
    assert_eq!(status(raw(Method::POST, retry, &form, Some("a=1"))).await, 415);
    let text = [("content-type", "text/plain")];
    assert_eq!(status(raw(Method::DELETE, "/api/v1/jobs/dlq", &text, Some("x"))).await, 415);
    // A bare POST (no body, no Origin) stays valid: it reaches the handler (no such job).
    assert_eq!(status(raw(Method::POST, retry, &[], None)).await, 404);
}
