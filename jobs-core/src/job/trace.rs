//! The W3C trace context a job carries ([`TraceContext`]).

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The W3C trace context a job carries from the span that enqueued it to the spans of
/// its attempts: the `traceparent` and `tracestate` headers of
/// [Trace Context](https://www.w3.org/TR/trace-context/) and the `baggage` header of
/// [Baggage](https://www.w3.org/TR/baggage/), as text.
///
/// With the `otel` feature, [`JobQueue`](crate::JobQueue)'s enqueue calls fill it in from
/// the current span (tracing-opentelemetry's, else OpenTelemetry's current context), and
/// workers run each attempt in a consumer span linked to it (see
/// [`WorkerConfig::trace_parent`](crate::worker::WorkerConfig::trace_parent)). Without the feature
/// nothing fills it in; one set by hand is stored and read back all the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct TraceContext {
    /// `00-<trace id>-<parent span id>-<flags>`.
    pub traceparent: String,
    /// Vendor entries, when the enqueuing context had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The enqueuing context's baggage, when it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
}

/// The longest `traceparent` stored (a version-00 one is 55 bytes; later versions may add).
pub const MAX_TRACEPARENT_LEN: usize = 256;
/// The longest `tracestate` stored (W3C: at most 32 entries, 512 characters are enough to
/// propagate).
pub const MAX_TRACESTATE_LEN: usize = 512;
/// The longest `baggage` stored (W3C: at least 8192 bytes must be propagated).
pub const MAX_BAGGAGE_LEN: usize = 8192;

impl TraceContext {
    /// Checks sizes and characters: printable ASCII only, within the limits above.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [
            ("traceparent", Some(self.traceparent.as_str()), MAX_TRACEPARENT_LEN),
            ("tracestate", self.tracestate.as_deref(), MAX_TRACESTATE_LEN),
            ("baggage", self.baggage.as_deref(), MAX_BAGGAGE_LEN),
        ];
        for (what, value, max) in fields {
            let Some(v) = value else { continue };
            if v.len() > max {
                return Err(Error::InvalidJob {
                    reason: format!("trace {what} must be at most {max} bytes, found {}", v.len()),
                });
            }
            if !v.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(Error::InvalidJob {
                    reason: format!("trace {what} must be printable ASCII"),
                });
            }
        }
        if self.traceparent.is_empty() {
            return Err(Error::InvalidJob { reason: "trace traceparent must not be empty".into() });
        }
        Ok(())
    }
}
