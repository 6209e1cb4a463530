//! `GET /api/v1/jobs/jobs`: jobs by state, filtered, paged by cursor, with counts.

use super::*;

fn ids(v: &Value) -> Vec<String> {
    v["jobs"].as_array().map_or_else(Vec::new, |a| {
        a.iter().map(|j| j["id"].as_str().unwrap_or("").to_owned()).collect()
    })
}

#[tokio::test]
async fn jobs_lists_a_state_newest_first_filtered_and_paged() {
    let fx = fixture().await;
    let r = &fx.router;
    let mut delayed = Vec::new();
    for (i, user) in ["u1", "u2", "u1"].iter().enumerate() {
        let body = json!({"name": "api_noargs", "delay_seconds": 3600 + i * 10, "user_id": user});
        delayed.push(enqueue(r, body).await.to_string());
    }
    let ready = enqueue(r, json!({"name": "api_noargs", "user_id": "u1"})).await.to_string();
    enqueue(r, json!({"name": "api_sync", "args": sync_args()})).await;

    let got = get(r, "/api/v1/jobs/jobs?state=scheduled").await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["state"], "scheduled");
    assert_eq!(got.1["count"], 3);
    assert_eq!(
        ids(&got.1),
        [delayed[2].clone(), delayed[1].clone(), delayed[0].clone()],
        "latest due first"
    );
    assert_eq!(got.1["next_cursor"], Value::Null);
    assert_eq!(
        got.1["counts"],
        json!({"pending": 2, "scheduled": 3, "retrying": 0, "running": 0, "failed": 0})
    );

    let got = get(r, "/api/v1/jobs/jobs?state=scheduled&user_id=u1").await;
    assert_eq!(ids(&got.1), [delayed[2].clone(), delayed[0].clone()]);
    let got = get(r, "/api/v1/jobs/jobs?state=scheduled&name=api_sync").await;
    assert_eq!(got.1["count"], 0);

    // Pages of one, each pointing at the next, until the end.
    let mut paged = Vec::new();
    let mut uri = "/api/v1/jobs/jobs?state=scheduled&limit=1".to_owned();
    for _ in 0..5 {
        let got = get(r, &uri).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        paged.extend(ids(&got.1));
        match got.1["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/jobs/jobs?state=scheduled&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, [delayed[2].clone(), delayed[1].clone(), delayed[0].clone()]);

    // Pending: in the order they will run (api_sync is high priority), filtered.
    let got = get(r, "/api/v1/jobs/jobs?state=pending&name=api_noargs").await;
    assert_eq!(ids(&got.1), std::slice::from_ref(&ready));
    assert_eq!(get(r, "/api/v1/jobs/jobs?state=pending").await.1["count"], 2);
    assert_eq!(get(r, "/api/v1/jobs/jobs?state=completed").await.1["count"], 0);
}

#[tokio::test]
async fn jobs_refuses_a_bad_state_cursor_or_limit_naming_the_field() {
    let fx = fixture().await;
    let r = &fx.router;
    for _ in 0..2 {
        enqueue(r, json!({"name": "api_noargs", "delay_seconds": 3600})).await;
    }
    let msg = assert_error(&get(r, "/api/v1/jobs/jobs").await, 400, "invalid_request");
    assert!(msg.contains("`state`"), "{msg}");
    let msg = assert_error(&get(r, "/api/v1/jobs/jobs?state=dead").await, 400, "invalid_request");
    assert!(msg.contains("`state`") && msg.contains("retrying"), "{msg}");
    let msg = assert_error(
        &get(r, "/api/v1/jobs/jobs?state=failed&cursor=nope").await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("`cursor`"), "{msg}");
    let page = get(r, "/api/v1/jobs/jobs?state=scheduled&limit=1").await;
    let cursor = page.1["next_cursor"].as_str().expect("a next page").to_owned();
    let msg = assert_error(
        &get(r, &format!("/api/v1/jobs/jobs?state=retrying&cursor={cursor}")).await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("`cursor`") && msg.contains("scheduled"), "{msg}");
    let msg = assert_error(
        &get(r, &format!("/api/v1/jobs/jobs?state=pending&cursor={cursor}")).await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("`cursor`"), "{msg}");
    for limit in ["0", "1001", "ten"] {
        let got = get(r, &format!("/api/v1/jobs/jobs?state=failed&limit={limit}")).await;
        assert_error(&got, 400, "invalid_request");
    }
    let (_, doc) = get(r, "/api/v1/jobs/openapi.json").await;
    assert!(doc["paths"]["/api/v1/jobs/jobs"]["get"].is_object(), "documented");
}

#[tokio::test]
async fn retry_runs_a_retrying_job_now_and_puts_a_dead_one_back() {
    use jobs_core::backend::FailOutcome;
    let fx = fixture().await;
    let r = &fx.router;
    let hour = Duration::from_secs(3600);
    let take = |max_retries: u32| {
        let fx = &fx;
        async move {
            let (id, out) = fail_next(fx, true, RetryPolicy::exponential(hour, hour)).await;
            assert_eq!(matches!(out, FailOutcome::Dead), max_retries == 0, "{out:?}");
            id
        }
    };
    let retrying = enqueue(r, json!({"name": "api_noargs", "max_retries": 3})).await;
    assert_eq!(take(3).await, retrying);
    let dead = enqueue(r, json!({"name": "api_noargs", "max_retries": 0})).await;
    assert_eq!(take(0).await, dead);
    assert_eq!(get(r, "/api/v1/jobs/jobs?state=retrying").await.1["count"], 1);

    for id in [retrying, dead] {
        let got = call(r, Method::POST, &format!("/api/v1/jobs/job/{id}/retry"), None).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        assert_eq!(got.1, json!({"job_id": id.to_string(), "status": "pending"}));
        let (_, job) = get(r, &format!("/api/v1/jobs/job/{id}")).await;
        assert_eq!(
            (job["status"].as_str(), job["error"].as_str()),
            (Some("pending"), Some("boom"))
        );
    }
    let (_, job) = get(r, &format!("/api/v1/jobs/job/{retrying}")).await;
    assert_eq!(job["retry_count"], 1, "history kept");
    assert_eq!(get(r, "/api/v1/jobs/jobs?state=pending").await.1["count"], 2);
    assert_eq!(get(r, "/api/v1/jobs/jobs?state=retrying").await.1["count"], 0);

    // Pending now: 409; unknown: 404; not an id: 400.
    let got = call(r, Method::POST, &format!("/api/v1/jobs/job/{retrying}/retry"), None).await;
    assert_error(&got, 409, "invalid_state");
    let got =
        call(r, Method::POST, &format!("/api/v1/jobs/job/{}/retry", JobId::new()), None).await;
    assert_error(&got, 404, "job_not_found");
    assert_error(
        &call(r, Method::POST, "/api/v1/jobs/job/nope/retry", None).await,
        400,
        "invalid_job_id",
    );
}

/// Leases the next ready job and fails it (`retryable`, with `retry`); its id and what
/// became of it.
async fn fail_next(
    fx: &Fixture,
    retryable: bool,
    retry: RetryPolicy,
) -> (JobId, jobs_core::backend::FailOutcome) {
    use jobs_core::backend::{Failure, FetchRequest};
    let b = fx.service.queue().backend().clone();
    let req = FetchRequest {
        queues: Vec::new(),
        max: 1,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    let lease = b.fetch(&req).await.expect("fetch").jobs[0].lease;
    let f = Failure { lease, error: "boom".into(), retryable, retry, retry_after: None };
    (lease.id, b.fail(&f).await.expect("fail"))
}

/// Fails the next ready job for good (not retryable): it is dead.
async fn kill_next(fx: &Fixture) -> JobId {
    let (id, out) = fail_next(fx, false, RetryPolicy::default()).await;
    assert_eq!(out, jobs_core::backend::FailOutcome::Dead);
    id
}

#[tokio::test]
async fn bulk_actions_act_on_one_filtered_page_and_say_where_the_next_starts() {
    let fx = fixture().await;
    let r = &fx.router;
    let mut dead = Vec::new();
    for _ in 0..3 {
        enqueue(r, json!({"name": "api_noargs", "max_retries": 0})).await;
        dead.push(kill_next(&fx).await);
    }
    enqueue(r, json!({"name": "api_sync", "args": sync_args(), "max_retries": 0})).await;
    let other = kill_next(&fx).await;
    let bulk = "/api/v1/jobs/jobs/bulk";

    // Retry the dead api_noargs jobs, two per call: the handler filter leaves the other.
    let body = json!({"action": "retry", "state": "failed", "name": "api_noargs", "limit": 2});
    let got = post(r, bulk, body.clone()).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!((got.1["matched"].as_u64(), got.1["succeeded"].as_u64()), (Some(2), Some(2)));
    assert_eq!(got.1["failures"], json!([]));
    let cursor = got.1["next_cursor"].as_str().expect("more to go").to_owned();
    let mut next = body.clone();
    next["cursor"] = json!(cursor);
    let got = post(r, bulk, next).await;
    assert_eq!((got.1["matched"].as_u64(), got.1["next_cursor"].is_null()), (Some(1), true));
    for id in &dead {
        assert_eq!(get(r, &format!("/api/v1/jobs/job/{id}")).await.1["status"], "pending");
    }
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{other}")).await.1["status"], "failed");

    // Cancel the pending ones of the user of none of them: nothing; then all three.
    let got = post(r, bulk, json!({"action": "cancel", "state": "pending", "user_id": "x"})).await;
    assert_eq!(got.1["matched"], 0, "{}", got.1);
    let got = post(r, bulk, json!({"action": "cancel", "state": "pending"})).await;
    assert_eq!((got.1["matched"].as_u64(), got.1["succeeded"].as_u64()), (Some(3), Some(3)));
    // Delete the cancelled ones, and the dead one by id.
    let got = post(r, bulk, json!({"action": "delete", "state": "cancelled"})).await;
    assert_eq!(got.1["succeeded"], 3, "{}", got.1);
    for id in &dead {
        assert_error(&get(r, &format!("/api/v1/jobs/job/{id}")).await, 404, "job_not_found");
    }
    let got = call(r, Method::DELETE, &format!("/api/v1/jobs/job/{other}"), None).await;
    assert_eq!(got, (StatusCode::OK, json!({"job_id": other.to_string(), "deleted": true})));
    let got = call(r, Method::DELETE, &format!("/api/v1/jobs/job/{other}"), None).await;
    assert_error(&got, 404, "job_not_found");
    let stats = get(r, "/api/v1/jobs/queue/stats").await.1;
    assert_eq!(
        (stats["dead_letter"].as_u64(), stats["total_pending"].as_u64()),
        (Some(0), Some(0))
    );

    // A job that may still run is not deleted; an action that does not fit the state, an
    // unknown state or action, and a limit out of range are 400s naming the field.
    let waiting = enqueue(r, json!({"name": "api_noargs"})).await;
    let got = call(r, Method::DELETE, &format!("/api/v1/jobs/job/{waiting}"), None).await;
    assert_error(&got, 409, "invalid_state");
    let msg = assert_error(
        &post(r, bulk, json!({"action": "delete", "state": "pending"})).await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("`action`") && msg.contains("completed"), "{msg}");
    let msg = assert_error(
        &post(r, bulk, json!({"action": "retry", "state": "dead"})).await,
        400,
        "invalid_request",
    );
    assert!(msg.contains("`state`"), "{msg}");
    assert_error(
        &post(r, bulk, json!({"action": "purge", "state": "failed"})).await,
        400,
        "invalid_request",
    );
    let body = json!({"action": "retry", "state": "failed", "limit": 0});
    assert_error(&post(r, bulk, body).await, 400, "invalid_request");
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{waiting}")).await.1["status"], "pending");
}
