//! `/metrics`: the Prometheus text exposition format (0.0.4), rendered here and only here.
//!
//! The page has two halves: this process's per-handler counters and processing-time
//! histograms, kept in memory by [`crate::metrics`] as workers and the queue record them,
//! and the deployment's numbers (queue depths, the backend's counters, live workers,
//! schedules), read from the backend for each request.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State as AxumState;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::metrics::{BUCKETS, HandlerMetrics};
use crate::stats::{QueueStats, SchedulerStats};

/// The content type of the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics: this process's job counters and processing-time histograms by
/// handler, and the deployment's queue depths, dead-letter size and live workers.
#[utoipa::path(
    get, path = "/metrics", operation_id = "get_metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn prometheus(AxumState(s): AxumState<ApiState>) -> Result<Response, ApiError> {
    let svc = s.service();
    let queue = svc.queue().stats().await?;
    let live_workers = svc.worker_stats().await?.len() as u64;
    let scheduler = svc.scheduler().stats().await?;

    let mut out = String::with_capacity(4096);
    write_process(&mut out, &crate::metrics::snapshot());
    write_queue(&mut out, &queue, live_workers);
    write_scheduler(&mut out, &scheduler);

    let mut res = out.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(res)
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// This process's per-handler counters and processing-time histograms.
fn write_process(out: &mut String, handlers: &BTreeMap<String, HandlerMetrics>) {
    type Get = fn(&HandlerMetrics) -> u64;
    let counters: [(&str, &str, Get); 6] = [
        ("jobs_enqueued_total", "Jobs enqueued by this process, by handler.", |m| m.enqueued),
        ("jobs_completed_total", "Jobs completed by this process's workers, by handler.", |m| {
            m.completed
        }),
        (
            "jobs_failed_total",
            "Failed attempts in this process's workers (each retry and each dead-lettering counts), by handler.",
            |m| m.failed,
        ),
        ("jobs_retried_total", "Failed attempts scheduled for a retry, by handler.", |m| m.retried),
        (
            "jobs_dead_lettered_total",
            "Jobs moved to the dead-letter queue by this process's workers, by handler.",
            |m| m.dead,
        ),
        (
            "jobs_unhandled_total",
            "Deliveries this process's workers gave back because they lack the handler, by handler.",
            |m| m.unhandled,
        ),
    ];
    for (name, help, get) in counters {
        family(out, name, "counter", help);
        for (handler, m) in handlers {
            let _ = writeln!(out, "{name}{{handler=\"{}\"}} {}", escape_label(handler), get(m));
        }
    }
    let name = "jobs_processing_seconds";
    family(out, name, "histogram", "Handler run time in this process's workers, by handler.");
    for (handler, m) in handlers {
        let h = escape_label(handler);
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += m.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{handler=\"{h}\",le=\"{bound}\"}} {cumulative}");
        }
        cumulative += m.buckets[BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{handler=\"{h}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{handler=\"{h}\"}} {}", m.sum);
        let _ = writeln!(out, "{name}_count{{handler=\"{h}\"}} {}", m.count);
    }
}

/// The deployment's queue depths, live workers and the backend's monotonic counters.
fn write_queue(out: &mut String, q: &QueueStats, live_workers: u64) {
    family(out, "jobs_queue_pending", "gauge", "Jobs ready to run, by priority.");
    for (p, n) in [
        ("critical", q.pending.critical),
        ("high", q.pending.high),
        ("normal", q.pending.normal),
        ("low", q.pending.low),
    ] {
        let _ = writeln!(out, "jobs_queue_pending{{priority=\"{p}\"}} {n}");
    }
    let gauges = [
        ("jobs_queue_scheduled", "Jobs due later (delayed, and retries waiting).", q.scheduled),
        ("jobs_queue_retrying", "Retries waiting for their next attempt.", q.retrying),
        ("jobs_queue_processing", "Jobs running.", q.processing),
        ("jobs_dead_letter_size", "Jobs in the dead-letter queue.", q.dead_letter),
        ("jobs_workers_live", "Workers of the deployment with a recent heartbeat.", live_workers),
    ];
    for (name, help, v) in gauges {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let c = q.counters;
    let backend_counters = [
        ("jobs_backend_enqueued_total", "Jobs created in the deployment.", c.enqueued),
        ("jobs_backend_completed_total", "Jobs completed in the deployment.", c.completed),
        ("jobs_backend_failed_total", "Failed attempts in the deployment.", c.failed),
        ("jobs_backend_retried_total", "Retries scheduled in the deployment.", c.retried),
        ("jobs_backend_dead_lettered_total", "Jobs dead-lettered in the deployment.", c.dead),
        ("jobs_backend_cancelled_total", "Jobs cancelled in the deployment.", c.cancelled),
        ("jobs_backend_stalled_total", "Leases taken back from lost workers.", c.stalled),
    ];
    for (name, help, v) in backend_counters {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let name = "jobs_backend_unhandled_total";
    family(
        out,
        name,
        "counter",
        "Deliveries given back in the deployment because their worker lacked the handler, by handler.",
    );
    for (handler, u) in &q.unhandled {
        let _ = writeln!(out, "{name}{{handler=\"{}\"}} {}", escape_label(handler), u.given_back);
    }
    let name = "jobs_unhandled_no_live_worker_since_seconds";
    family(
        out,
        name,
        "gauge",
        "Since when (Unix time) no live worker has had the handler, as of its last give-back; absent while one has.",
    );
    for (handler, u) in &q.unhandled {
        if let Some(since) = u.no_live_worker_since {
            let _ = writeln!(
                out,
                "{name}{{handler=\"{}\"}} {}",
                escape_label(handler),
                since.timestamp()
            );
        }
    }
}

/// The deployment's schedules by state, and whether this process's scheduler runs.
fn write_scheduler(out: &mut String, st: &SchedulerStats) {
    family(out, "jobs_schedules", "gauge", "Schedules of the deployment, by state.");
    let _ = writeln!(out, "jobs_schedules{{state=\"enabled\"}} {}", st.enabled_tasks);
    let _ = writeln!(out, "jobs_schedules{{state=\"disabled\"}} {}", st.disabled_tasks);
    family(out, "jobs_schedules_due", "gauge", "Enabled schedules due and not fired.");
    let _ = writeln!(out, "jobs_schedules_due {}", st.due_tasks);
    family(out, "jobs_scheduler_running", "gauge", "1 when this process's scheduler runs.");
    let _ = writeln!(out, "jobs_scheduler_running {}", u8::from(st.running));
    family(
        out,
        "jobs_schedules_lost",
        "gauge",
        "Schedules registered through the API and lost with the backend's data (not recreatable).",
    );
    let _ = writeln!(out, "jobs_schedules_lost {}", st.lost_tasks.len());
    family(
        out,
        "jobs_schedules_restored_total",
        "counter",
        "Declared schedules stored again after the backend lost them.",
    );
    let _ = writeln!(out, "jobs_schedules_restored_total {}", st.restored_tasks);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::{Event, observe, record};

    #[test]
    fn counts_and_histogram_render_per_handler() {
        let name = "api_metrics_unit_test_handler";
        record(name, Event::Enqueued);
        record(name, Event::Completed);
        record(name, Event::Failed);
        record(name, Event::Retried);
        record(name, Event::DeadLettered);
        observe(name, Duration::from_millis(3));
        observe(name, Duration::from_secs(1000));
        let mut out = String::new();
        write_process(&mut out, &crate::metrics::snapshot());
        for line in [
            "jobs_enqueued_total{handler=\"api_metrics_unit_test_handler\"} 1",
            "jobs_dead_lettered_total{handler=\"api_metrics_unit_test_handler\"} 1",
            "jobs_processing_seconds_bucket{handler=\"api_metrics_unit_test_handler\",le=\"0.005\"} 1",
            "jobs_processing_seconds_bucket{handler=\"api_metrics_unit_test_handler\",le=\"300\"} 1",
            "jobs_processing_seconds_bucket{handler=\"api_metrics_unit_test_handler\",le=\"+Inf\"} 2",
            "jobs_processing_seconds_count{handler=\"api_metrics_unit_test_handler\"} 2",
            "# TYPE jobs_processing_seconds histogram",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn jobs_without_a_live_handler_are_counted_per_name() {
        let name = "api_metrics_unhandled_test_handler";
        record(name, Event::Unhandled);
        record(name, Event::Unhandled);
        let mut out = String::new();
        write_process(&mut out, &crate::metrics::snapshot());
        let line = "jobs_unhandled_total{handler=\"api_metrics_unhandled_test_handler\"} 2";
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");

        let mut q = QueueStats::default();
        let since = chrono::DateTime::from_timestamp(1_700_000_000, 0);
        let u = crate::stats::UnhandledStats {
            given_back: 9,
            last_given_back_at: since,
            no_live_worker_since: since,
        };
        q.unhandled.insert("resize".into(), u);
        q.unhandled.insert("handled_again".into(), crate::stats::UnhandledStats::default());
        let mut out = String::new();
        write_queue(&mut out, &q, 1);
        for line in [
            "# TYPE jobs_backend_unhandled_total counter",
            "jobs_backend_unhandled_total{handler=\"resize\"} 9",
            "jobs_backend_unhandled_total{handler=\"handled_again\"} 0",
            "jobs_unhandled_no_live_worker_since_seconds{handler=\"resize\"} 1700000000",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("no_live_worker_since_seconds{handler=\"handled_again\"}"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        let mut handlers = BTreeMap::new();
        handlers.insert("we\"ird".to_owned(), HandlerMetrics::default());
        write_process(&mut out, &handlers);
        assert!(out.lines().any(|l| l == "jobs_enqueued_total{handler=\"we\\\"ird\"} 0"), "{out}");
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
        let mut out = String::new();
        write_queue(&mut out, &q, 5);
        write_scheduler(&mut out, &st);
        for line in [
            "jobs_queue_pending{priority=\"low\"} 4",
            "jobs_queue_scheduled 2",
            "jobs_workers_live 5",
            "jobs_backend_completed_total 7",
            "# TYPE jobs_backend_completed_total counter",
            "jobs_schedules{state=\"enabled\"} 2",
            "jobs_schedules{state=\"disabled\"} 1",
            "jobs_scheduler_running 1",
            "jobs_schedules_lost 1",
            "jobs_schedules_restored_total 2",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
