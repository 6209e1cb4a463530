//! `/metrics`: the OpenMetrics text format (1.0.0), which Prometheus scrapes natively,
//! written by [`prometheus-client`](https://docs.rs/prometheus-client) (why that crate:
//! [`crate::metrics`]).
//!
//! The page has two halves, put in one registry built for each request: this process's
//! families, kept by [`crate::metrics`] as workers and the queue record them, and the
//! deployment's numbers (queue depths, the backend's counters, live workers, schedules),
//! read from the backend for that request.

use axum::extract::State as AxumState;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::stats::{QueueInfo, QueueStats, SchedulerStats};

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics: this process's job counters, processing-time and queue wait
/// histograms, and the deployment's queue depths, dead-letter size, live workers and
/// schedules.
#[utoipa::path(
    get, path = "/metrics", operation_id = "get_metrics", tag = "meta",
    responses(
        (status = 200, description = "OpenMetrics text format 1.0.0", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn prometheus(AxumState(s): AxumState<ApiState>) -> Result<Response, ApiError> {
    let svc = s.service();
    let queue = svc.queue().stats().await?;
    let queues = svc.queue().queues().await?;
    let live_workers = svc.worker_stats().await?.len() as u64;
    let scheduler = svc.scheduler().stats().await?;
    // Every handler this process has is listed, at 0 before its first event.
    crate::metrics::declare(svc.registry().handlers().map(|h| (h.name(), h.queue())));

    let mut registry = Registry::default();
    crate::metrics::register(&mut registry);
    register_queue(&mut registry, &queue, live_workers);
    register_named_queues(&mut registry, &queues);
    register_scheduler(&mut registry, &scheduler);
    let out = encode(&registry).map_err(|e| ApiError::internal(&e))?;

    let mut res = out.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(res)
}

/// The page: every family of `registry`, then `# EOF`.
fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// A count as a gauge's value.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A family of gauges with one label, `key`, set to these values.
fn gauges<'a>(
    key: &'static str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> Family<Vec<(&'static str, String)>, Gauge> {
    let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for (label, v) in values {
        family.get_or_create(&vec![(key, label.to_owned())]).set(v);
    }
    family
}

/// Each named queue's ready jobs by priority, and whether it is paused (1) or not (0).
fn register_named_queues(reg: &mut Registry, queues: &[QueueInfo]) {
    let ready = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let paused = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for q in queues {
        for p in crate::job::JobPriority::ALL {
            let labels = vec![("queue", q.name.clone()), ("priority", p.to_string())];
            ready.get_or_create(&labels).set(int(q.pending.get(p)));
        }
        paused.get_or_create(&vec![("queue", q.name.clone())]).set(i64::from(q.paused));
    }
    reg.register("jobs_queue_ready", "Jobs ready to run in each named queue, by priority", ready);
    reg.register("jobs_queue_paused", "Whether each named queue is paused (1) or not (0)", paused);
}

/// The deployment's queue depths, live workers and the backend's monotonic counters.
/// Counters are registered without their `_total`, which the encoder adds.
fn register_queue(reg: &mut Registry, q: &QueueStats, live_workers: u64) {
    let p = &q.pending;
    reg.register(
        "jobs_queue_pending",
        "Jobs of the deployment ready to run, by priority",
        gauges(
            "priority",
            [
                ("critical", int(p.critical)),
                ("high", int(p.high)),
                ("normal", int(p.normal)),
                ("low", int(p.low)),
            ],
        ),
    );
    let scalar_gauges = [
        (
            "jobs_queue_scheduled",
            "Jobs of the deployment due later (delayed, and retries waiting)",
            q.scheduled,
        ),
        (
            "jobs_queue_retrying",
            "Retries of the deployment waiting for their next attempt",
            q.retrying,
        ),
        ("jobs_queue_processing", "Jobs of the deployment running", q.processing),
        (
            "jobs_queue_parked",
            "Jobs of the deployment parked on a rate or concurrency limiter, waiting for a slot",
            q.parked,
        ),
        ("jobs_dead_letter_size", "Jobs in the deployment's dead-letter queue", q.dead_letter),
        ("jobs_workers_live", "Workers of the deployment with a recent heartbeat", live_workers),
    ];
    for (name, help, v) in scalar_gauges {
        reg.register(name, help, ConstGauge::new(int(v)));
    }
    let c = q.counters;
    let backend_counters = [
        ("jobs_backend_enqueued", "Jobs created in the deployment", c.enqueued),
        ("jobs_backend_completed", "Jobs completed in the deployment", c.completed),
        ("jobs_backend_failed", "Failed attempts in the deployment", c.failed),
        ("jobs_backend_retried", "Retries scheduled in the deployment", c.retried),
        ("jobs_backend_dead_lettered", "Jobs dead-lettered in the deployment", c.dead),
        ("jobs_backend_cancelled", "Jobs cancelled in the deployment", c.cancelled),
        (
            "jobs_backend_stalled",
            "Leases taken back from lost workers in the deployment",
            c.stalled,
        ),
        (
            "jobs_backend_throttled",
            "Deliveries sent back by their handler with ctx.rate_limited in the deployment",
            c.throttled,
        ),
    ];
    for (name, help, v) in backend_counters {
        reg.register(name, help, ConstCounter::new(v));
    }
    let unhandled = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (handler, u) in &q.unhandled {
        unhandled.get_or_create(&vec![("handler", handler.clone())]).inc_by(u.given_back);
    }
    reg.register(
        "jobs_backend_unhandled",
        "Deliveries given back in the deployment because their worker lacked the handler, by handler",
        unhandled,
    );
    reg.register(
        "jobs_unhandled_no_live_worker_since_seconds",
        "Since when (Unix time) no live worker has had the handler, as of its last give-back; absent while one has",
        gauges(
            "handler",
            q.unhandled
                .iter()
                .filter_map(|(h, u)| u.no_live_worker_since.map(|t| (h.as_str(), t.timestamp()))),
        ),
    );
}

/// The deployment's schedules by state, and whether this process's scheduler runs.
fn register_scheduler(reg: &mut Registry, st: &SchedulerStats) {
    reg.register(
        "jobs_schedules",
        "Schedules of the deployment, by state",
        gauges(
            "state",
            [
                ("enabled", int(st.enabled_tasks as u64)),
                ("disabled", int(st.disabled_tasks as u64)),
            ],
        ),
    );
    let scalar_gauges = [
        ("jobs_schedules_due", "Enabled schedules due and not fired", st.due_tasks as u64),
        ("jobs_scheduler_running", "1 when this process's scheduler runs", u64::from(st.running)),
        (
            "jobs_schedules_lost",
            "Schedules registered through the API and lost with the backend's data (not recreatable)",
            st.lost_tasks.len() as u64,
        ),
    ];
    for (name, help, v) in scalar_gauges {
        reg.register(name, help, ConstGauge::new(int(v)));
    }
    reg.register(
        "jobs_schedules_restored",
        "Declared schedules this process stored again after the backend lost them",
        ConstCounter::new(st.restored_tasks),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Event, observe, record};

    fn page(q: &QueueStats, live: u64, st: &SchedulerStats) -> String {
        let mut registry = Registry::default();
        crate::metrics::register(&mut registry);
        register_queue(&mut registry, q, live);
        register_scheduler(&mut registry, st);
        encode(&registry).expect("encodes")
    }

    fn no_schedules() -> SchedulerStats {
        SchedulerStats {
            running: false,
            total_tasks: 0,
            enabled_tasks: 0,
            disabled_tasks: 0,
            due_tasks: 0,
            lost_tasks: Vec::new(),
            restored_tasks: 0,
            tasks: Vec::new(),
        }
    }

    #[track_caller]
    fn has_lines(out: &str, lines: &[&str]) {
        for line in lines {
            assert!(out.lines().any(|l| l == *line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn process_and_deployment_halves_share_one_page() {
        let name = "api_metrics_unit_test_handler";
        record(name, Event::Enqueued);
        observe(name, std::time::Duration::from_millis(3));
        let out = page(&QueueStats::default(), 0, &no_schedules());
        has_lines(
            &out,
            &[
                "jobs_enqueued_total{handler=\"api_metrics_unit_test_handler\"} 1",
                "jobs_processing_seconds_count{handler=\"api_metrics_unit_test_handler\"} 1",
                "jobs_workers_live 0",
            ],
        );
        assert_eq!(out.matches("# EOF").count(), 1, "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn named_queues_have_their_depth_by_priority_and_paused_flag() {
        let pending = crate::stats::PendingByPriority { high: 3, ..Default::default() };
        let q = |name: &str, paused| QueueInfo {
            name: name.into(),
            paused,
            pending,
            total_pending: pending.total(),
        };
        let mut registry = Registry::default();
        register_named_queues(&mut registry, &[q("default", false), q("payments", true)]);
        let out = encode(&registry).expect("encodes");
        has_lines(
            &out,
            &[
                "# TYPE jobs_queue_ready gauge",
                "jobs_queue_ready{queue=\"payments\",priority=\"high\"} 3",
                "jobs_queue_ready{queue=\"default\",priority=\"low\"} 0",
                "# TYPE jobs_queue_paused gauge",
                "jobs_queue_paused{queue=\"payments\"} 1",
                "jobs_queue_paused{queue=\"default\"} 0",
            ],
        );
    }

    #[test]
    fn jobs_without_a_live_handler_are_counted_per_name() {
        let mut q = QueueStats::default();
        let since = chrono::DateTime::from_timestamp(1_700_000_000, 0);
        let u = crate::stats::UnhandledStats {
            given_back: 9,
            last_given_back_at: since,
            no_live_worker_since: since,
        };
        q.unhandled.insert("resize".into(), u);
        q.unhandled.insert("handled_again".into(), crate::stats::UnhandledStats::default());
        let out = page(&q, 1, &no_schedules());
        has_lines(
            &out,
            &[
                "# TYPE jobs_backend_unhandled counter",
                "jobs_backend_unhandled_total{handler=\"resize\"} 9",
                "jobs_backend_unhandled_total{handler=\"handled_again\"} 0",
                "jobs_unhandled_no_live_worker_since_seconds{handler=\"resize\"} 1700000000",
            ],
        );
        assert!(!out.contains("no_live_worker_since_seconds{handler=\"handled_again\"}"), "{out}");
    }

    #[test]
    fn deployment_gauges_render() {
        let mut q = QueueStats::default();
        q.pending.low = 4;
        q.scheduled = 2;
        q.counters.completed = 7;
        let st = SchedulerStats {
            running: true,
            total_tasks: 3,
            enabled_tasks: 2,
            disabled_tasks: 1,
            due_tasks: 0,
            lost_tasks: vec!["gone".into()],
            restored_tasks: 2,
            tasks: Vec::new(),
        };
        let out = page(&q, 5, &st);
        has_lines(
            &out,
            &[
                "jobs_queue_pending{priority=\"low\"} 4",
                "jobs_queue_pending{priority=\"critical\"} 0",
                "# TYPE jobs_queue_pending gauge",
                "jobs_queue_scheduled 2",
                "jobs_workers_live 5",
                "jobs_backend_completed_total 7",
                "# TYPE jobs_backend_completed counter",
                "# HELP jobs_backend_completed Jobs completed in the deployment.",
                "jobs_schedules{state=\"enabled\"} 2",
                "jobs_schedules{state=\"disabled\"} 1",
                "jobs_scheduler_running 1",
                "jobs_schedules_lost 1",
                "jobs_schedules_restored_total 2",
            ],
        );
    }
}
