//! This process's job metrics: counters and processing-time histograms by handler, the
//! queue wait time by queue and priority. The API renders them, with the deployment's
//! numbers, at `/metrics` (see `api::metrics`).
//!
//! They are kept in [`prometheus-client`](https://docs.rs/prometheus-client), the
//! Prometheus project's own Rust client, rather than written by hand or through the
//! `metrics` facade with `metrics-exporter-prometheus`:
//!
//! - its encoder writes the OpenMetrics text format (escaping, `_total`, `_bucket`/`le`,
//!   `# EOF`) that Prometheus scrapes natively, so the page cannot drift from the format;
//! - metrics are plain values registered in a [`Registry`] that the caller owns: the
//!   page is built from a registry per request, holding these process-wide families and
//!   the deployment's numbers read from the backend for that request (queue depths, live
//!   workers, the backend's counters). The `metrics` facade instead records into one
//!   global recorder that a library must not install on its application's behalf (an
//!   application with its own recorder would lose ours, or we theirs), and has no place
//!   for values read at scrape time other than setting global gauges before rendering;
//! - histograms have explicit buckets (the exporter renders summaries unless configured),
//!   and its dependencies are few (`dtoa`, `itoa`, `parking_lot`).
//!
//! The families are process-wide, like the default registry of the `prometheus` crate: a
//! worker records the outcome of every job it runs here, and every enqueue of this process
//! is counted (the queue's enqueue calls, which the API, handlers and typed jobs go
//! through, and the scheduler's ticks and run-now, which write through the backend).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::job::{Job, JobPriority};

/// Upper bounds (seconds) of the processing-time histogram's buckets (`+Inf` is implied).
pub(crate) const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Upper bounds (seconds) of the queue wait histogram's buckets: those of
/// [`BUCKETS`], then up to four hours, for a backlog.
pub(crate) const WAIT_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 14400.0,
];

/// The most distinct handler labels kept. Job names come from the queue, where anyone
/// with write access can put any name; past this many, further names share one label so
/// that a flood of made-up names cannot grow the page (or memory) without bound.
const MAX_HANDLERS: usize = 1000;
/// The label shared by handler names beyond [`MAX_HANDLERS`].
const OVERFLOW_LABEL: &str = "__other__";

/// What happened to a job, as counted per handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Enqueued by this process.
    Enqueued,
    /// Its handler succeeded and the completion was recorded.
    Completed,
    /// An attempt failed (error, panic or timeout), whatever happens next.
    Failed,
    /// A failed attempt was scheduled for a retry.
    Retried,
    /// A failed attempt moved the job to the dead-letter queue.
    DeadLettered,
    /// Given back: this process has no handler of that name.
    Unhandled,
    /// A delivery's lease was lost: a heartbeat reported it taken back, the worker stopped
    /// the job because its lease went unrenewed, or its outcome was answered stale.
    LeaseLost,
}

impl Event {
    /// Every event, in the order of the families.
    pub(crate) const ALL: [Event; 7] = [
        Event::Enqueued,
        Event::Completed,
        Event::Failed,
        Event::Retried,
        Event::DeadLettered,
        Event::Unhandled,
        Event::LeaseLost,
    ];
}

/// The label of the per-handler families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    handler: String,
}

/// The labels of the queue wait histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
    priority: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn processing_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

/// The process's families (clones share their values).
struct Metrics {
    enqueued: Family<HandlerLabel, Counter>,
    completed: Family<HandlerLabel, Counter>,
    failed: Family<HandlerLabel, Counter>,
    retried: Family<HandlerLabel, Counter>,
    dead_lettered: Family<HandlerLabel, Counter>,
    unhandled: Family<HandlerLabel, Counter>,
    leases_lost: Family<HandlerLabel, Counter>,
    processing: Histograms<HandlerLabel>,
    queue_wait: Histograms<QueueLabels>,
    /// The handler labels in use, at most [`MAX_HANDLERS`].
    handlers: Mutex<HashSet<String>>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        enqueued: Family::default(),
        completed: Family::default(),
        failed: Family::default(),
        retried: Family::default(),
        dead_lettered: Family::default(),
        unhandled: Family::default(),
        leases_lost: Family::default(),
        processing: Family::new_with_constructor(processing_histogram as fn() -> Histogram),
        queue_wait: Family::new_with_constructor(wait_histogram as fn() -> Histogram),
        handlers: Mutex::default(),
    })
}

impl Metrics {
    fn counters(&self, event: Event) -> &Family<HandlerLabel, Counter> {
        match event {
            Event::Enqueued => &self.enqueued,
            Event::Completed => &self.completed,
            Event::Failed => &self.failed,
            Event::Retried => &self.retried,
            Event::DeadLettered => &self.dead_lettered,
            Event::Unhandled => &self.unhandled,
            Event::LeaseLost => &self.leases_lost,
        }
    }

    /// The label for the handler `name`: itself, or [`OVERFLOW_LABEL`] once
    /// [`MAX_HANDLERS`] others have one.
    fn label(&self, name: &str) -> HandlerLabel {
        // A panic while this lock is held cannot leave the set half-updated (one insert),
        // so a poisoned lock is still used.
        let mut names = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        HandlerLabel { handler: capped(&mut names, name, MAX_HANDLERS).to_owned() }
    }
}

/// `name` if it is in `names` or there is room for it (then it is added), else
/// [`OVERFLOW_LABEL`].
fn capped<'a>(names: &mut HashSet<String>, name: &'a str, max: usize) -> &'a str {
    if names.contains(name) || names.len() < max && names.insert(name.to_owned()) {
        name
    } else {
        OVERFLOW_LABEL
    }
}

/// Counts one event for the handler `name`.
pub(crate) fn record(name: &str, event: Event) {
    let m = metrics();
    m.counters(event).get_or_create(&m.label(name)).inc();
}

/// Records how long one run of the handler `name` took (success or failure).
pub(crate) fn observe(name: &str, took: Duration) {
    let m = metrics();
    m.processing.get_or_create(&m.label(name)).observe(took.as_secs_f64());
}

/// Records how long a job of `queue` and `priority` waited to start.
pub(crate) fn observe_wait(queue: &str, priority: JobPriority, waited: Duration) {
    let labels = QueueLabels { queue: queue.to_owned(), priority: priority.as_str().to_owned() };
    metrics().queue_wait.get_or_create(&labels).observe(waited.as_secs_f64());
}

/// How long a job just started waited for it: from when it was due (its `scheduled_at`,
/// for a delayed job or a retry, else its creation) to its start, on the backend's clock
/// (the backend stamps all three). `None` if it has no start time; never negative.
pub(crate) fn queue_wait(job: &Job) -> Option<Duration> {
    let due = job.scheduled_at.map_or(job.created_at, |s| s.max(job.created_at));
    let waited = job.started_at?.signed_duration_since(due);
    Some(waited.to_std().unwrap_or(Duration::ZERO))
}

/// Makes the counters and histograms of these handlers (name, queue) exist (at 0), so that
/// a scrape lists every family before the first event (a process that runs no jobs, such as
/// an API-only runner, included) and `rate()` sees that first increase.
pub(crate) fn declare<'a>(handlers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let m = metrics();
    for (name, queue) in handlers {
        let label = m.label(name);
        drop(m.processing.get_or_create(&label));
        for p in JobPriority::ALL {
            let labels = QueueLabels { queue: queue.to_owned(), priority: p.as_str().to_owned() };
            drop(m.queue_wait.get_or_create(&labels));
        }
        for event in Event::ALL {
            drop(m.counters(event).get_or_create(&label));
        }
    }
}

/// Registers this process's families in `registry` (names, help and types are set here
/// and only here). Counters are registered without their `_total`, which the encoder adds
/// to each sample (`jobs_enqueued_total{handler="…"}`), as OpenMetrics names them.
#[cfg_attr(not(feature = "api"), allow(dead_code))]
pub(crate) fn register(registry: &mut Registry) {
    let m = metrics();
    let counters = [
        (
            "jobs_enqueued",
            "Jobs enqueued by this process (through the queue, the API, handlers and the scheduler's ticks and run-now; an enqueue of an existing id is not counted), by handler",
            &m.enqueued,
        ),
        ("jobs_completed", "Jobs completed by this process's workers, by handler", &m.completed),
        (
            "jobs_failed",
            "Failed attempts in this process's workers (each retry and each dead-lettering counts), by handler",
            &m.failed,
        ),
        (
            "jobs_retried",
            "Failed attempts in this process's workers scheduled for a retry, by handler",
            &m.retried,
        ),
        (
            "jobs_dead_lettered",
            "Jobs moved to the dead-letter queue by this process's workers, by handler",
            &m.dead_lettered,
        ),
        (
            "jobs_unhandled",
            "Deliveries this process's workers gave back because they lack the handler, by handler",
            &m.unhandled,
        ),
        (
            "jobs_leases_lost",
            "Deliveries whose lease this process's workers lost (a heartbeat reported it taken back, the lease went unrenewed, or the outcome was refused as stale): the job's outcome was not recorded here, by handler",
            &m.leases_lost,
        ),
    ];
    for (name, help, family) in counters {
        registry.register(name, help, family.clone());
    }
    registry.register(
        "jobs_processing_seconds",
        "Handler run time in this process's workers, successes and failures, by handler",
        m.processing.clone(),
    );
    registry.register(
        "jobs_queue_wait_seconds",
        "Time from when a job was due (enqueued, or its delay or retry elapsed) to the start of its run in this process's workers, by the handler's queue and the job's priority",
        m.queue_wait.clone(),
    );
}

/// One handler's count of `event` so far.
#[cfg(test)]
pub(crate) fn count(name: &str, event: Event) -> u64 {
    let m = metrics();
    m.counters(event).get(&m.label(name)).map_or(0, |c| c.get())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn render() -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[track_caller]
    fn has_line(out: &str, line: &str) {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }

    #[test]
    fn events_and_run_times_are_counted_per_handler() {
        let name = "metrics_unit_test_handler";
        for event in Event::ALL {
            record(name, event);
            assert_eq!(count(name, event), 1, "{event:?}");
        }
        record(name, Event::LeaseLost);
        assert_eq!(count(name, Event::LeaseLost), 2);
        observe(name, Duration::from_millis(3));
        observe(name, Duration::from_secs(1000));
        let out = render();
        let h = "handler=\"metrics_unit_test_handler\"";
        for line in [
            format!("jobs_enqueued_total{{{h}}} 1"),
            format!("jobs_completed_total{{{h}}} 1"),
            format!("jobs_failed_total{{{h}}} 1"),
            format!("jobs_retried_total{{{h}}} 1"),
            format!("jobs_dead_lettered_total{{{h}}} 1"),
            format!("jobs_unhandled_total{{{h}}} 1"),
            format!("jobs_leases_lost_total{{{h}}} 2"),
            format!("jobs_processing_seconds_bucket{{le=\"0.005\",{h}}} 1"),
            format!("jobs_processing_seconds_bucket{{le=\"300.0\",{h}}} 1"),
            format!("jobs_processing_seconds_bucket{{le=\"+Inf\",{h}}} 2"),
            format!("jobs_processing_seconds_count{{{h}}} 2"),
            "# TYPE jobs_processing_seconds histogram".to_owned(),
            "# TYPE jobs_enqueued counter".to_owned(),
            "# TYPE jobs_leases_lost counter".to_owned(),
        ] {
            has_line(&out, &line);
        }
        assert_eq!(out.lines().last(), Some("# EOF"));
    }

    #[test]
    fn queue_wait_is_counted_by_queue_and_priority() {
        observe_wait("metrics_unit_test_queue", JobPriority::High, Duration::from_millis(20));
        observe_wait("metrics_unit_test_queue", JobPriority::High, Duration::from_secs(20_000));
        observe_wait("metrics_unit_test_queue", JobPriority::Low, Duration::from_secs(2));
        let out = render();
        let high = "queue=\"metrics_unit_test_queue\",priority=\"high\"";
        has_line(&out, "# TYPE jobs_queue_wait_seconds histogram");
        has_line(&out, &format!("jobs_queue_wait_seconds_bucket{{le=\"0.025\",{high}}} 1"));
        has_line(&out, &format!("jobs_queue_wait_seconds_bucket{{le=\"14400.0\",{high}}} 1"));
        has_line(&out, &format!("jobs_queue_wait_seconds_bucket{{le=\"+Inf\",{high}}} 2"));
        has_line(
            &out,
            "jobs_queue_wait_seconds_count{queue=\"metrics_unit_test_queue\",priority=\"low\"} 1",
        );
    }

    #[test]
    fn queue_wait_runs_from_when_the_job_was_due() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0);
        let mut job = Job {
            id: crate::job::JobId::new(),
            name: "x".into(),
            args: serde_json::Value::Null,
            status: crate::job::JobStatus::Running,
            priority: JobPriority::Normal,
            created_at: at(0).expect("a time"),
            scheduled_at: None,
            started_at: at(3),
            completed_at: None,
            error: None,
            result: None,
            retry_count: 0,
            max_retries: 0,
            timeout: Duration::from_secs(1),
            user_id: None,
            attempt: 1,
            progress: None,
            trace: None,
            queue: "default".into(),
        };
        assert_eq!(queue_wait(&job), Some(Duration::from_secs(3)), "from its creation");
        job.scheduled_at = at(60);
        job.started_at = at(62);
        assert_eq!(queue_wait(&job), Some(Duration::from_secs(2)), "from its due time");
        job.started_at = at(59);
        assert_eq!(queue_wait(&job), Some(Duration::ZERO), "never negative");
        job.started_at = None;
        assert_eq!(queue_wait(&job), None);
    }

    #[test]
    fn declared_handlers_are_listed_at_zero_and_names_past_the_cap_share_a_label() {
        declare([("metrics_unit_test_declared", "default")]);
        let out = render();
        has_line(&out, "jobs_leases_lost_total{handler=\"metrics_unit_test_declared\"} 0");
        has_line(&out, "jobs_completed_total{handler=\"metrics_unit_test_declared\"} 0");
        // The histograms too, so that a process that runs no job lists every family.
        has_line(&out, "jobs_processing_seconds_count{handler=\"metrics_unit_test_declared\"} 0");
        assert!(
            out.contains("jobs_queue_wait_seconds_count{") && out.contains("queue=\"default\""),
            "{out}"
        );
        let mut names = HashSet::new();
        assert_eq!(capped(&mut names, "a", 2), "a");
        assert_eq!(capped(&mut names, "b", 2), "b");
        assert_eq!(capped(&mut names, "c", 2), OVERFLOW_LABEL);
        assert_eq!(capped(&mut names, "a", 2), "a", "a known name keeps its label");
    }

    #[test]
    fn label_values_are_escaped() {
        record("we\"ird\\name\n", Event::Enqueued);
        has_line(&render(), "jobs_enqueued_total{handler=\"we\\\"ird\\\\name\\n\"} 1");
    }
}
