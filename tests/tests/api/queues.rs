//! The queue endpoints: listing, pause and resume, the enqueue body's `queue`, bad names.

use super::*;

fn names(v: &Value) -> Vec<&str> {
    v["queues"].as_array().expect("queues").iter().filter_map(|q| q["name"].as_str()).collect()
}

fn queue<'a>(v: &'a Value, name: &str) -> &'a Value {
    let all = v["queues"].as_array().expect("queues");
    all.iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("{name} listed: {v}"))
}

#[tokio::test]
async fn queues_are_listed_with_their_depth_and_paused_and_resumed() {
    let fx = fixture().await;
    let r = &fx.router;
    let got = get(r, "/api/v1/jobs/queues").await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!((got.1["count"].as_u64(), names(&got.1)), (Some(1), vec!["default"]));

    // The handler's queue, one named in the body, and the default one.
    let paid = enqueue(r, json!({"name": "api_limited", "args": sync_args()})).await;
    let bulk = enqueue(
        r,
        json!({"name": "api_sync", "args": sync_args(), "queue": "bulk", "priority": "low"}),
    )
    .await;
    enqueue(r, json!({"name": "api_sync", "args": sync_args()})).await;
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{paid}")).await.1["queue"], "payments");
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{bulk}")).await.1["queue"], "bulk");

    let got = get(r, "/api/v1/jobs/queues").await;
    assert_eq!(names(&got.1), ["bulk", "default", "payments"]);
    let b = queue(&got.1, "bulk");
    assert_eq!((b["paused"].as_bool(), b["total_pending"].as_u64()), (Some(false), Some(1)));
    assert_eq!((b["pending"]["low"].as_u64(), b["pending"]["high"].as_u64()), (Some(1), Some(0)));
    assert_eq!(queue(&got.1, "default")["pending"]["high"], 1);
    assert_eq!(queue(&got.1, "payments")["total_pending"], 1);

    let pause = "/api/v1/jobs/queues/payments/pause";
    let got = post(r, pause, json!({})).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"name": "payments", "paused": true, "changed": true}));
    assert_eq!(post(r, pause, json!({})).await.1["changed"], false);
    let listed = get(r, "/api/v1/jobs/queues").await.1;
    assert_eq!(queue(&listed, "payments")["paused"], true);
    assert_eq!(queue(&listed, "payments")["total_pending"], 1, "its job stays");

    let resume = "/api/v1/jobs/queues/payments/resume";
    assert_eq!(
        post(r, resume, json!({})).await.1,
        json!({"name": "payments", "paused": false, "changed": true})
    );
    assert_eq!(post(r, resume, json!({})).await.1["changed"], false);
    assert_eq!(queue(&get(r, "/api/v1/jobs/queues").await.1, "payments")["paused"], false);

    // A queue no job used yet is created paused; resuming one never seen lists nothing.
    assert_eq!(post(r, "/api/v1/jobs/queues/later/pause", json!({})).await.1["changed"], true);
    assert_eq!(post(r, "/api/v1/jobs/queues/never/resume", json!({})).await.1["changed"], false);
    let listed = get(r, "/api/v1/jobs/queues").await.1;
    assert_eq!(names(&listed), ["bulk", "default", "later", "payments"]);
    assert_eq!(queue(&listed, "later")["paused"], true);
}

#[tokio::test]
async fn bad_queue_names_are_refused_and_nothing_is_enqueued() {
    let fx = fixture().await;
    let r = &fx.router;
    let long = "q".repeat(65);
    for bad in ["a:b", "x{y}", "", long.as_str()] {
        let body = json!({"name": "api_sync", "args": sync_args(), "queue": bad});
        let msg = assert_error(&post(r, "/api/v1/jobs/enqueue", body).await, 400, "invalid_queue");
        assert!(msg.contains("queue"), "{msg}");
    }
    for bad in ["a%20b", "a:b", long.as_str()] {
        for op in ["pause", "resume"] {
            let got = post(r, &format!("/api/v1/jobs/queues/{bad}/{op}"), json!({})).await;
            let msg = assert_error(&got, 400, "invalid_queue");
            assert!(msg.len() < 200, "the name is cut in the message: {msg}");
        }
    }
    let (_, stats) = get(r, "/api/v1/jobs/queue/stats").await;
    assert_eq!(stats["total_pending"], 0, "{stats}");
    assert_eq!(names(&get(r, "/api/v1/jobs/queues").await.1), ["default"]);
}

#[tokio::test]
async fn a_paused_queue_keeps_its_job_from_the_workers_until_resumed() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    assert_eq!(post(r, "/api/v1/jobs/queues/default/pause", json!({})).await.1["changed"], true);
    let id = enqueue(r, json!({"name": "api_noargs"})).await;
    // A job of the other queue the workers serve (api_limited's), enqueued after: once it
    // has run, a fetch has passed the paused queue by, and its job still waits.
    let paid = enqueue(r, json!({"name": "api_limited", "args": sync_args()})).await;
    wait_for_job(r, paid, |j| j["status"] == "completed").await;
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{id}")).await.1["status"], "pending");
    assert_eq!(post(r, "/api/v1/jobs/queues/default/resume", json!({})).await.1["changed"], true);
    wait_for_job(r, id, |j| j["status"] == "completed").await;
    fx.service.stop().await.expect("service stops");
}

/// The limiters in use, from jobs a handler's `rate_limit(...)` and `concurrency(...)` hold:
/// the second job of a user waits, parked, while the first runs.
#[tokio::test]
async fn limits_list_the_limiters_in_use_and_the_jobs_parked_on_them() {
    let fx = fixture().await;
    let r = &fx.router;
    let got = get(r, "/api/v1/jobs/limits").await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"count": 0, "parked": 0, "limiters": []}));

    let args = json!({"user_id": "lim-1", "count": 1});
    let first = enqueue(r, json!({"name": "api_limited", "args": args})).await;
    let backend = fx.service.queue().backend().clone();
    let req = jobs_core::backend::FetchRequest {
        queues: vec!["payments".into()],
        max: 10,
        worker_id: "api-test".into(),
        lease: Duration::from_secs(30),
        grace: Duration::ZERO,
    };
    let f = backend.fetch(&req).await.expect("fetch");
    assert_eq!(f.jobs.iter().map(|j| j.job.id).collect::<Vec<_>>(), [first]);
    // Unique until started: a second job of the user is created, and waits for the first.
    let second = enqueue(r, json!({"name": "api_limited", "args": args})).await;
    assert!(backend.fetch(&req).await.expect("fetch").jobs.is_empty(), "one at a time per user");
    assert_eq!(get(r, &format!("/api/v1/jobs/job/{second}")).await.1["status"], "pending");

    let got = get(r, "/api/v1/jobs/limits").await.1;
    assert_eq!((got["count"].as_u64(), got["parked"].as_u64()), (Some(3), Some(1)), "{got}");
    let by_name = |name: &str| {
        let all = got["limiters"].as_array().expect("limiters");
        all.iter().find(|l| l["name"] == name).cloned().unwrap_or_else(|| panic!("{name} in {got}"))
    };
    let conc = by_name(r#"c:["api_limited","lim-1"]"#);
    assert_eq!(
        (
            &conc["kind"],
            &conc["key"],
            &conc["max"],
            &conc["in_use"],
            &conc["parked"],
            &conc["per_ms"]
        ),
        (
            &json!("concurrency"),
            &json!(r#"["api_limited","lim-1"]"#),
            &json!(1),
            &json!(1),
            &json!(1),
            &Value::Null
        )
    );
    let rate = by_name(r#"r:10/1000:["api_limited","lim-1"]"#);
    assert_eq!(
        (&rate["kind"], &rate["in_use"], &rate["per_ms"], &rate["parked"]),
        (&json!("rate"), &json!(1), &json!(1000), &json!(0))
    );
    assert_eq!(by_name(r#"r:500/60000:["api_limited"]"#)["in_use"], 1);

    // The first ends: the second gets its slot and starts.
    let done = [jobs_core::backend::Completion { lease: f.jobs[0].lease, result: json!(null) }];
    backend.complete(&done).await.expect("complete");
    let g = backend.fetch(&req).await.expect("fetch");
    assert_eq!(g.jobs.iter().map(|j| j.job.id).collect::<Vec<_>>(), [second]);
    assert_eq!(get(r, "/api/v1/jobs/limits").await.1["parked"], 0);
}
