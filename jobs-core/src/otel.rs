//! OpenTelemetry (the `otel` feature): the trace context a job carries from the span that
//! enqueues it ([`TraceContext`], W3C Trace Context and Baggage as text) and the consumer
//! span each attempt runs in.
//!
//! The enqueue side reads the current span's OpenTelemetry context (tracing-opentelemetry's
//! when its layer is installed, else OpenTelemetry's own current context) and writes it
//! with the W3C propagators. The worker side reads it back and either links its span to it
//! (the default: an attempt is its own trace, as the messaging conventions advise for
//! work that may run much later, and a retry is one more span linked to the same enqueue)
//! or makes it the span's parent (the worker's `TraceParent::Child`).

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::job::{Job, TraceContext};

/// `messaging.system` of the spans of job attempts.
pub(crate) const MESSAGING_SYSTEM: &str = "jobs";

/// The trace context of the current span, if it has a valid one.
pub(crate) fn current() -> Option<TraceContext> {
    let mut cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        cx = Context::current();
    }
    of(&cx)
}

/// The trace context of `cx`, if its span context is valid (a sampled-out span's is: its
/// flags say so, and the worker's span follows them).
pub(crate) fn of(cx: &Context) -> Option<TraceContext> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut map);
    BaggagePropagator::new().inject_context(cx, &mut map);
    let traceparent = map.remove("traceparent").filter(|t| !t.is_empty())?;
    let tracestate = map.remove("tracestate").filter(|t| !t.is_empty());
    let baggage = map.remove("baggage").filter(|t| !t.is_empty());
    Some(TraceContext { traceparent, tracestate, baggage })
}

/// Fills in `trace` from the current span when nothing set it.
pub(crate) fn fill(trace: &mut Option<TraceContext>) {
    if trace.is_none() {
        *trace = current();
    }
}

/// The headers of `t`, for the propagators to read.
fn headers(t: &TraceContext) -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert("traceparent".to_owned(), t.traceparent.clone());
    if let Some(s) = &t.tracestate {
        map.insert("tracestate".to_owned(), s.clone());
    }
    if let Some(b) = &t.baggage {
        map.insert("baggage".to_owned(), b.clone());
    }
    map
}

/// Connects an attempt's `span` (not yet entered) to the span that enqueued `job`: a link
/// to it, or (`as_child`, the worker's `TraceParent::Child`) it as the parent; its baggage
/// either way. A job without a trace context, or with one that does not parse, is left
/// alone. (A flag rather than the worker's enum: this module sits below the worker.)
pub(crate) fn connect(span: &tracing::Span, job: &Job, as_child: bool) {
    let Some(t) = &job.trace else { return };
    let map = headers(t);
    let remote = TraceContextPropagator::new().extract(&map);
    let enqueuer = remote.span().span_context().clone();
    if !enqueuer.is_valid() {
        tracing::debug!(job.id = %job.id, "the job's traceparent does not parse; not linked");
        return;
    }
    // A span whose parent cannot be set has no OpenTelemetry layer under it: nothing to do.
    let _ = if as_child {
        span.set_parent(BaggagePropagator::new().extract_with_context(&remote, &map))
    } else {
        span.add_link(enqueuer);
        // A root span of its own, with the enqueuer's baggage.
        span.set_parent(BaggagePropagator::new().extract_with_context(&Context::new(), &map))
    };
}
