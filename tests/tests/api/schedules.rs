//! The scheduler's endpoints: register (both body forms), list, enable, disable, run, delete.

use super::*;

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
    // regression: a one-time schedule took any instant (years 1970 and 9999) while enqueue
    // caps at ten years; one rule for both, in the past too.
    for at in ["1970-01-01T00:00:00Z", "9999-01-01T00:00:00Z"] {
        let got = post(r, uri, with(json!({"type": "once", "at": at}))).await;
        let msg = assert_error(&got, 400, "invalid_schedule");
        assert!(msg.contains("3650 days"), "{at}: {msg}");
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

/// The flat body: the fields `GET /scheduled` answers in.
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

// regression: `POST /scheduled/register` refused the flat body (`schedule_type`,
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
