//! `/metrics` after real work: lease losses, and the Grafana dashboard of `docs/` checked
//! against the page (every metric its queries name is there, with the type the query
//! expects).

use std::collections::{BTreeMap, BTreeSet};

use jobs_core::backend::Lease;

use super::*;

/// The `/metrics` page.
async fn metrics_page(router: &Router) -> String {
    let (status, body) = send(router, request(Method::GET, "/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body).expect("utf-8")
}

/// The value of the sample written exactly `series` (name and labels), if on the page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok())
    })
}

#[tokio::test]
async fn a_lease_taken_back_from_a_running_job_is_counted_as_lost() {
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let series = "jobs_leases_lost_total{handler=\"api_slow\"}";
    let before = sample(&metrics_page(r).await, series).unwrap_or(0.0);
    let id = enqueue(r, json!({"name": "api_slow"})).await;
    let job = wait_for_job(r, id, |j| j["status"] == "running").await;
    let attempt = job["attempt"].as_u64().and_then(|a| u32::try_from(a).ok()).expect("attempt");
    // Taken back from outside, as a reaper would: the worker's next heartbeat learns it.
    let backend = fx.service.queue().backend().clone();
    assert_eq!(backend.release(&[Lease { id, attempt }]).await.expect("releases"), 1);
    let lost = wait_until("the lost lease to be counted", Duration::from_secs(10), || async {
        sample(&metrics_page(r).await, series).filter(|v| *v > before)
    })
    .await;
    fx.service.stop().await.expect("stops");
    let lost = lost.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(lost, before + 1.0, "one delivery lost once");
}

/// The metric names in a PromQL expression: its identifiers that begin with `jobs_`
/// (functions, `by` and label names do not; a range like `[5m]` is no identifier).
fn metric_names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("jobs_"))
        .collect()
}

#[test]
fn metric_names_are_read_out_of_queries() {
    let expr = "histogram_quantile(0.95, sum by (le, queue) (rate(jobs_queue_wait_seconds_bucket[$__rate_interval]))) / max(jobs_workers_live)";
    assert_eq!(metric_names(expr), ["jobs_queue_wait_seconds_bucket", "jobs_workers_live"]);
}

#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_of_a_real_page() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("docs/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");

    // A few jobs of every kind: completed, dead-lettered, delayed.
    let fx = fixture_with(ApiConfig::default(), true).await;
    let r = &fx.router;
    let done = enqueue(r, json!({"name": "api_sync", "args": sync_args()})).await;
    let dead = enqueue(r, json!({"name": "api_broken"})).await;
    enqueue(r, json!({"name": "api_noargs", "delay_seconds": 3600})).await;
    wait_for_job(r, done, |j| j["status"] == "completed").await;
    wait_for_job(r, dead, |j| j["status"] == "failed").await;
    let page = metrics_page(r).await;
    fx.service.stop().await.expect("stops");

    // Families by name, with their type; and every sample name.
    let types: BTreeMap<&str, &str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let samples: BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel title");
        let exprs: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert!(!exprs.is_empty(), "panel {title:?} has no query");
        for expr in exprs {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {title:?}: no metric in {expr:?}");
            for name in names {
                assert!(samples.contains(name), "panel {title:?}: no sample {name} on\n{page}");
                // The type the name's suffix implies (the family of `x_total` is a counter
                // `x`, of `x_bucket`/`_sum`/`_count` a histogram `x`).
                let (family, kind) = match ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).map(|f| (f, *s)))
                {
                    Some((f, "_total")) => (f, "counter"),
                    Some((f, _)) if types.get(f) == Some(&"histogram") => (f, "histogram"),
                    _ => (name, "gauge"),
                };
                assert_eq!(types.get(family), Some(&kind), "panel {title:?}: {name} in {expr:?}");
                used.insert(name);
            }
        }
    }
    // The dashboard shows what an operator asks first.
    for name in [
        "jobs_completed_total",
        "jobs_failed_total",
        "jobs_dead_lettered_total",
        "jobs_processing_seconds_bucket",
        "jobs_queue_wait_seconds_bucket",
        "jobs_queue_pending",
        "jobs_leases_lost_total",
        "jobs_workers_live",
    ] {
        assert!(used.contains(name), "the dashboard shows no {name}: {used:?}");
    }
}
