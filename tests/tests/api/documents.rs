//! Authentication, routing, the OpenAPI document and `/metrics`.

use super::*;

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
        ("/api/v1/jobs/job/{job_id}", &["get", "delete"]),
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
        ("/api/v1/jobs/jobs", &["get"]),
        ("/api/v1/jobs/jobs/bulk", &["post"]),
        ("/api/v1/jobs/job/{job_id}/retry", &["post"]),
        ("/api/v1/jobs/queues", &["get"]),
        ("/api/v1/jobs/queues/{name}/pause", &["post"]),
        ("/api/v1/jobs/queues/{name}/resume", &["post"]),
        ("/api/v1/jobs/limits", &["get"]),
        ("/api/v1/jobs/openapi.json", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for m in methods {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[m];
            assert!(op["responses"].is_object(), "{m} {path} has no responses");
            // regression: the same-site refusals (403) and the body timeout (408) happen
            // before any handler, on every endpoint, and were not in the document.
            for code in ["403", "408"] {
                assert!(op["responses"][code].is_object(), "{m} {path} does not list {code}");
            }
        }
    }
    assert_eq!(paths.len(), 29);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Every operation of the served document has an `operationId` no other operation has, and at
/// least one tag, each declared in the document's `tags`; every link names an operation that
/// exists. Client generators name their functions after the ids (a duplicate is refused or
/// mangled) and group them by tag.
#[tokio::test]
async fn operation_ids_are_unique_and_every_operation_is_tagged() {
    let fx = fixture().await;
    let (status, doc) = get(&fx.router, "/api/v1/jobs/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let declared: Vec<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().expect("a tag's name"))
        .collect();
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut ids: std::collections::BTreeMap<&str, String> = Default::default();
    let mut links = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in methods {
            let Some(op) = item.get(m) else { continue };
            let at = format!("{} {path}", m.to_uppercase());
            let id =
                op["operationId"].as_str().unwrap_or_else(|| panic!("{at} has no operationId"));
            if let Some(other) = ids.insert(id, at.clone()) {
                panic!("operationId `{id}` is used by {other} and {at}");
            }
            let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
            assert!(!tags.is_empty(), "{at} has no tag");
            for t in tags {
                let t = t.as_str().expect("a tag is a string");
                assert!(declared.contains(&t), "{at}: tag `{t}` is not declared in `tags`");
            }
            let responses = op["responses"].as_object().expect("responses");
            for (code, r) in responses {
                for (name, link) in r["links"].as_object().into_iter().flatten() {
                    links.push((format!("{at} {code} link {name}"), link["operationId"].clone()));
                }
            }
        }
    }
    assert!(ids.len() >= 23, "{ids:?}");
    for (at, target) in links {
        let target = target.as_str().unwrap_or_else(|| panic!("{at} has no operationId"));
        assert!(ids.contains_key(target), "{at} names `{target}`, which no operation has");
    }
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let id = enqueue(r, json!({"name": "api_sync", "args": sync_args()})).await;
    wait_for_job(r, id, |j| j["status"] == "completed").await;
    let id = enqueue(r, json!({"name": "api_limited", "args": sync_args()})).await;
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
    assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
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
    assert!(value("jobs_processing_seconds_bucket{le=\"+Inf\",handler=\"api_sync\"}") >= 1.0);
    // `api_sync` is of the default queue, and of high priority.
    assert!(value("jobs_queue_wait_seconds_count{queue=\"default\",priority=\"high\"}") >= 1.0);
    // `api_limited` declares `queue = "payments"`.
    assert!(value("jobs_queue_wait_seconds_count{queue=\"payments\",priority=\"normal\"}") >= 1.0);
    assert_eq!(value("jobs_queue_pending{priority=\"low\"}"), 0.0);
    assert_eq!(value("jobs_queue_scheduled"), 1.0);
    assert_eq!(value("jobs_queue_processing"), 0.0);
    assert_eq!(value("jobs_dead_letter_size"), 0.0);
    assert!(value("jobs_workers_live") >= 0.0);
    assert_eq!(value("jobs_backend_completed_total"), 2.0);
    // Every handler of the process is listed, at 0 before its first event.
    assert!(value("jobs_unhandled_total{handler=\"api_sync\"}") >= 0.0);
    assert!(value("jobs_leases_lost_total{handler=\"api_noargs\"}") >= 0.0);
    // OpenMetrics names a counter's family without its `_total`.
    for family in
        ["jobs_failed", "jobs_retried", "jobs_dead_lettered", "jobs_unhandled", "jobs_leases_lost"]
    {
        assert!(text.contains(&format!("# TYPE {family} counter")), "{family}");
    }
    assert!(text.contains("# TYPE jobs_processing_seconds histogram"));
    assert!(text.contains("# TYPE jobs_queue_wait_seconds histogram"));
    assert_eq!(text.lines().last(), Some("# EOF"));
}
