//! Enqueue, jobs, cancel, pending and the dead-letter queue.

use super::*;

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
        // regression: under a millisecond was stored as 0 and timed out every attempt.
        (json!({"name": "api_noargs", "timeout": 0.0005}), "timeout"),
        // regression: one horizon rule, both ways: ten years past is no instant either.
        (json!({"name": "api_noargs", "scheduled_at": "1970-01-01T00:00:00Z"}), "scheduled_at"),
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
    // ... naming the closest handlers.
    let msg =
        assert_error(&post(r, uri, json!({"name": "api_synk"})).await, 404, "handler_not_found");
    assert!(msg.contains("did you mean `api_sync`"), "{msg}");
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
async fn a_duplicate_enqueue_answers_200_with_the_existing_job() {
    let fx = fixture().await;
    let r = &fx.router;
    let uri = "/api/v1/jobs/enqueue";
    // A key given in the body: the first creates (201), the second points at it (200).
    let body =
        json!({"name": "api_sync", "args": sync_args(), "unique_key": "nightly", "unique_for": 60});
    let id = enqueue(r, body.clone()).await;
    let again = post(r, uri, body).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    assert_eq!(again.1, json!({"job_id": id.to_string(), "duplicate": true, "replaced": false}));
    // Another key: a new job, whose reply says nothing of duplicates.
    let other =
        post(r, uri, json!({"name": "api_sync", "args": sync_args(), "unique_key": "k2"})).await;
    assert_eq!(other.0, StatusCode::CREATED, "{}", other.1);
    assert_eq!(
        (other.1["duplicate"].as_bool(), other.1["replaced"].as_bool()),
        (Some(false), Some(false)),
        "{}",
        other.1
    );
    // A handler's own declaration (unique by user_id, until started) applies to the API.
    let first = enqueue(r, json!({"name": "api_limited", "args": sync_args()})).await;
    let dup =
        post(r, uri, json!({"name": "api_limited", "args": {"user_id": "user-123", "count": 9}}))
            .await;
    assert_eq!(dup.1, json!({"job_id": first.to_string(), "duplicate": true, "replaced": false}));
    let (_, stats) = get(r, "/api/v1/jobs/stats").await;
    assert_eq!(stats["queue"]["unique_locks"], 3, "{stats}");
    // Bad uniqueness fields: 400, naming the field, nothing written.
    for (extra, field) in [
        (json!({"unique_key": ""}), "unique_key"),
        (json!({"unique_key": "x".repeat(257)}), "unique_key"),
        (json!({"unique_key": "k", "unique_for": 0}), "unique_for"),
        (json!({"unique_key": "k", "unique_for": -1}), "unique_for"),
        (json!({"unique_for": 5}), "unique_key"),
    ] {
        let mut body = json!({"name": "api_noargs"});
        if let (Some(o), Some(more)) = (body.as_object_mut(), extra.as_object()) {
            o.extend(more.clone());
        }
        let got = post(r, uri, body.clone()).await;
        let message = assert_error(&got, 400, "invalid_request");
        assert!(message.contains(field), "{body}: {message}");
    }
    let (_, stats) = get(r, "/api/v1/jobs/queue/stats").await;
    assert_eq!(stats["total_pending"], 3, "{stats}");
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
