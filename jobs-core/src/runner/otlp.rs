//! OTLP export of the runner's spans (features `runner` and `otel`), configured by the
//! standard `OTEL_*` variables.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set (and not empty), unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`;
//! otherwise nothing changes: no exporter, no thread, no OpenTelemetry layer. The exporter
//! speaks OTLP over HTTP with protobuf (`http/protobuf`, the default protocol; plain HTTP:
//! the build carries no TLS for it) and reads the other variables itself
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, …); the SDK reads `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER`(`_ARG`). Spans go out in batches
//! from the SDK's own thread; [`shutdown_tracing`](super::shutdown_tracing) flushes them.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The provider export goes through, kept to be flushed at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The name spans are reported under when `OTEL_SERVICE_NAME` is unset.
const DEFAULT_SERVICE_NAME: &str = "jobs-runner";

/// Whether the `OTEL_*` variables ask for export (see the module's documentation).
pub(super) fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| var(k).is_some_and(|v| !v.trim().is_empty());
    let is = |k: &str, v: &str| var(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The tracing-opentelemetry layer exporting over OTLP, when the environment asks for it;
/// `None` (and a warning) if the exporter cannot be built.
pub(super) fn layer<S>()
-> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !wanted(|k| std::env::var(k).ok()) {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export is off: cannot build the OTLP exporter: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("jobs");
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]),
    );
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Flushes and stops the exporter, if one was started.
pub(super) fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        eprintln!("warning: flushing OpenTelemetry spans failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn export_is_on_only_with_an_endpoint_and_not_disabled() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(!wanted(env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])));
        const ON: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(!wanted(env(&[ON, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!wanted(env(&[ON, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted(env(&[ON, ("OTEL_SDK_DISABLED", "false")])));
    }
}
