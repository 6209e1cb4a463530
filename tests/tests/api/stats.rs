//! Health and the statistics endpoints: the documented objects, exactly.

use super::*;

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
    assert!(sync["location"].as_str().expect("location").contains("tests/api/main.rs"), "{sync}");
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

#[tokio::test]
async fn handlers_list_their_queue_and_declared_limits() {
    let fx = fixture().await;
    let got = get(&fx.router, "/api/v1/jobs/handlers").await;
    assert_eq!(got.0, StatusCode::OK);
    let all = got.1["handlers"].as_array().expect("handlers");
    let limited = all.iter().find(|h| h["name"] == "api_limited").expect("api_limited listed");
    assert_eq!(limited["queue"], "payments");
    assert_eq!(
        limited["limits"],
        json!({
            "unique": {"by": ["user_id"], "for_ms": 600_000, "until": "started", "on_conflict": "keep"},
            "rate_limits": [
                {"max": 10, "per_ms": 1000, "by": ["user_id"]},
                {"max": 500, "per_ms": 60_000, "by": []}
            ],
            "concurrency": {"max": 1, "by": ["user_id"]}
        })
    );
    let plain = all.iter().find(|h| h["name"] == "api_noargs").expect("api_noargs listed");
    assert_eq!(plain["queue"], "default");
    assert_eq!(plain["limits"], json!({"unique": null, "rate_limits": [], "concurrency": null}));
    // The OpenAPI document describes both fields.
    let (_, doc) = get(&fx.router, "/api/v1/jobs/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let view = &schemas["HandlerView"];
    let required: Vec<&str> =
        view["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    assert!(required.contains(&"queue") && required.contains(&"limits"), "{view}");
    assert_eq!(view["properties"]["queue"]["type"], "string", "{view}");
    for (name, fields) in [
        ("LimitsInfo", &["unique", "rate_limits", "concurrency"][..]),
        ("UniqueInfo", &["by", "for_ms", "until", "on_conflict"]),
        ("RateLimitInfo", &["max", "per_ms", "by"]),
        ("ConcurrencyInfo", &["max", "by"]),
    ] {
        for f in fields {
            assert!(
                schemas[name]["properties"][f].is_object(),
                "{name}.{f} missing: {}",
                schemas[name]
            );
        }
    }
    let until = serde_json::to_string(&schemas["UniqueUntil"]).expect("json");
    assert!(until.contains("started") && until.contains("done"), "{until}");
}

#[tokio::test]
async fn jobs_no_live_worker_handles_are_counted_per_name_in_stats_metrics_and_schema() {
    use jobs_core::backend::{FetchRequest, GiveBack};
    let fx = fixture().await;
    enqueue(&fx.router, json!({"name": "api_noargs"})).await;
    let backend = fx.service.queue().backend().clone();
    let req = FetchRequest {
        queues: Vec::new(),
        max: 1,
        worker_id: "old-build".into(),
        lease: Duration::from_secs(30),
        grace: Duration::ZERO,
    };
    let fetched = backend.fetch(&req).await.expect("fetch");
    let lease = fetched.jobs.first().expect("a job").lease;
    let give = GiveBack {
        lease,
        name: "api_noargs".into(),
        delay: Duration::from_secs(3600),
        handled_elsewhere: false,
        dead_after: Duration::from_secs(3600),
    };
    backend.give_back(&give).await.expect("give back");

    let (status, body) = get(&fx.router, "/api/v1/jobs/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let u = &body["queue"]["unhandled"]["api_noargs"];
    assert_eq!(u["given_back"], 1, "{body}");
    assert!(u["no_live_worker_since"].is_string(), "{body}");
    assert!(u["last_given_back_at"].is_string(), "{body}");

    let res = fx.router.clone().oneshot(request(Method::GET, "/metrics", None)).await.expect("ok");
    let text = res.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(text.to_vec()).expect("utf-8");
    let line = "jobs_backend_unhandled_total{handler=\"api_noargs\"} 1";
    assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    assert!(text.contains("jobs_unhandled_no_live_worker_since_seconds{handler=\"api_noargs\"}"));

    let (_, doc) = get(&fx.router, "/api/v1/jobs/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["QueueStats"]["properties"]["unhandled"].is_object(),
        "{}",
        schemas["QueueStats"]
    );
    let props = &schemas["UnhandledStats"]["properties"];
    for field in ["given_back", "last_given_back_at", "no_live_worker_since"] {
        assert!(props[field].is_object(), "UnhandledStats.{field}: {}", schemas["UnhandledStats"]);
    }
}
