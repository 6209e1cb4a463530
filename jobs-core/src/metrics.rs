//! This process's job counters and processing-time histograms, by handler, and their
//! rendering in the Prometheus text exposition format (served at `/metrics` by the API).
//!
//! The counters are process-wide, like the default registry of the `prometheus` crate: a
//! worker records the outcome of every job it runs here, the API records the jobs it
//! enqueues. Deployment-wide numbers (queue depths, live workers, the backend's own
//! counters) are read from the backend when the page is rendered, not kept here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the processing-time histogram's buckets (`+Inf` is implied).
pub(crate) const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The most distinct handler labels kept. Job names come from the queue, where anyone
/// with write access can put any name; past this many, further names share one label so
/// that a flood of made-up names cannot grow the page (or memory) without bound.
const MAX_HANDLERS: usize = 1000;
/// The label shared by handler names beyond [`MAX_HANDLERS`].
const OVERFLOW_LABEL: &str = "__other__";

/// What happened to a job, as counted per handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Enqueued by this process (through the API).
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    Enqueued,
    /// Its handler succeeded and the completion was recorded.
    Completed,
    /// An attempt failed (error, panic or timeout), whatever happens next.
    Failed,
    /// A failed attempt was scheduled for a retry.
    Retried,
    /// A failed attempt moved the job to the dead-letter queue.
    DeadLettered,
}

#[derive(Debug, Clone, Default)]
struct HandlerMetrics {
    enqueued: u64,
    completed: u64,
    failed: u64,
    retried: u64,
    dead: u64,
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

fn registry() -> &'static Mutex<BTreeMap<String, HandlerMetrics>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<String, HandlerMetrics>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn with_handler(name: &str, f: impl FnOnce(&mut HandlerMetrics)) {
    // A panic while this lock is held cannot leave a half-updated entry worth refusing
    // (each update is a few additions), so a poisoned lock is still used.
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = map.get_mut(name) {
        f(m);
        return;
    }
    let key = if map.len() < MAX_HANDLERS { name } else { OVERFLOW_LABEL };
    f(map.entry(key.to_owned()).or_default());
}

/// Counts one event for the handler `name`.
pub(crate) fn record(name: &str, event: Event) {
    with_handler(name, |m| match event {
        Event::Enqueued => m.enqueued += 1,
        Event::Completed => m.completed += 1,
        Event::Failed => m.failed += 1,
        Event::Retried => m.retried += 1,
        Event::DeadLettered => m.dead += 1,
    });
}

/// Records how long one run of the handler `name` took (success or failure).
pub(crate) fn observe(name: &str, took: Duration) {
    let secs = took.as_secs_f64();
    let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
    with_handler(name, |m| {
        m.buckets[bucket] += 1;
        m.sum += secs;
        m.count += 1;
    });
}

/// The counters of handler `name` as `(enqueued, completed, failed, retried, dead)`.
#[cfg(test)]
fn counters(name: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let map = registry().lock().unwrap_or_else(|e| e.into_inner());
    map.get(name).map(|m| (m.enqueued, m.completed, m.failed, m.retried, m.dead))
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub(crate) fn escape_label(value: &str) -> String {
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
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders this process's per-handler counters and histograms.
#[cfg_attr(not(feature = "api"), allow(dead_code))]
pub(crate) fn render_process(out: &mut String) {
    let map = registry().lock().unwrap_or_else(|e| e.into_inner()).clone();
    type Get = fn(&HandlerMetrics) -> u64;
    let counters: [(&str, &str, Get); 5] = [
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
    ];
    for (name, help, get) in counters {
        family(out, name, "counter", help);
        for (handler, m) in &map {
            let _ = writeln!(out, "{name}{{handler=\"{}\"}} {}", escape_label(handler), get(m));
        }
    }
    let name = "jobs_processing_seconds";
    family(out, name, "histogram", "Handler run time in this process's workers, by handler.");
    for (handler, m) in &map {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histogram_render_per_handler() {
        let name = "metrics_unit_test_handler";
        record(name, Event::Enqueued);
        record(name, Event::Completed);
        record(name, Event::Failed);
        record(name, Event::Retried);
        record(name, Event::DeadLettered);
        observe(name, Duration::from_millis(3));
        observe(name, Duration::from_secs(1000));
        assert_eq!(counters(name), Some((1, 1, 1, 1, 1)));
        let mut out = String::new();
        render_process(&mut out);
        for line in [
            "jobs_enqueued_total{handler=\"metrics_unit_test_handler\"} 1",
            "jobs_dead_lettered_total{handler=\"metrics_unit_test_handler\"} 1",
            "jobs_processing_seconds_bucket{handler=\"metrics_unit_test_handler\",le=\"0.005\"} 1",
            "jobs_processing_seconds_bucket{handler=\"metrics_unit_test_handler\",le=\"300\"} 1",
            "jobs_processing_seconds_bucket{handler=\"metrics_unit_test_handler\",le=\"+Inf\"} 2",
            "jobs_processing_seconds_count{handler=\"metrics_unit_test_handler\"} 2",
            "# TYPE jobs_processing_seconds histogram",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
