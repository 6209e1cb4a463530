//! This process's job counters and processing-time histograms, by handler. The API renders
//! them in the Prometheus text exposition format at `/metrics` (see `api::metrics`, the
//! one place the page is written).
//!
//! The counters are process-wide, like the default registry of the `prometheus` crate: a
//! worker records the outcome of every job it runs here, the API records the jobs it
//! enqueues. Deployment-wide numbers (queue depths, live workers, the backend's own
//! counters) are read from the backend when the page is rendered, not kept here.

use std::collections::BTreeMap;
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
}

/// One handler's counters and histogram.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandlerMetrics {
    /// Jobs enqueued.
    pub(crate) enqueued: u64,
    /// Jobs completed.
    pub(crate) completed: u64,
    /// Failed attempts.
    pub(crate) failed: u64,
    /// Failed attempts scheduled for a retry.
    pub(crate) retried: u64,
    /// Jobs dead-lettered.
    pub(crate) dead: u64,
    /// Deliveries given back for want of the handler.
    pub(crate) unhandled: u64,
    /// Non-cumulative counts per bucket of [`BUCKETS`]; the last one is `+Inf`.
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    /// Sum of the run times observed, seconds.
    pub(crate) sum: f64,
    /// Run times observed.
    pub(crate) count: u64,
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
        Event::Unhandled => m.unhandled += 1,
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

/// A copy of every handler's metrics, by handler name.
#[cfg_attr(not(feature = "api"), allow(dead_code))]
pub(crate) fn snapshot() -> BTreeMap<String, HandlerMetrics> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One handler's count of `event` so far.
#[cfg(test)]
pub(crate) fn count(name: &str, event: Event) -> u64 {
    let all = snapshot();
    let Some(m) = all.get(name) else { return 0 };
    match event {
        Event::Enqueued => m.enqueued,
        Event::Completed => m.completed,
        Event::Failed => m.failed,
        Event::Retried => m.retried,
        Event::DeadLettered => m.dead,
        Event::Unhandled => m.unhandled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_run_times_are_counted_per_handler() {
        let name = "metrics_unit_test_handler";
        record(name, Event::Enqueued);
        record(name, Event::Completed);
        record(name, Event::Failed);
        record(name, Event::Retried);
        record(name, Event::DeadLettered);
        observe(name, Duration::from_millis(3));
        observe(name, Duration::from_secs(1000));
        let all = snapshot();
        let m = all.get(name).expect("recorded");
        assert_eq!((m.enqueued, m.completed, m.failed, m.retried, m.dead), (1, 1, 1, 1, 1));
        assert_eq!(m.buckets[0], 1, "3 ms is in the first bucket");
        assert_eq!(m.buckets[BUCKETS.len()], 1, "1000 s is past the last bound");
        assert_eq!(m.count, 2);
    }
}
