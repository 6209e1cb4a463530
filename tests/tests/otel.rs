//! OpenTelemetry end to end (`cargo test -p jobs-test-support --features otel --test otel`):
//! the trace context of the span that enqueues a job is stored with it, and each attempt
//! runs in a consumer span linked to it, across processes. Without the feature, the same
//! file checks that nothing is stored.
//!
//! Spans are collected by OpenTelemetry's in-memory exporter under a tracing-opentelemetry
//! layer. The cross-process test enqueues here and runs the worker in a child process (this
//! test binary again, running only [`child_worker`]), which writes the spans it exported as
//! JSON to a file.

#[cfg(feature = "otel")]
use std::time::Duration;

#[cfg(feature = "otel")]
use jobs_core::RetryPolicy;
use jobs_core::backend::BackendConfig;
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::prelude::*;
#[cfg(feature = "otel")]
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{JobQueue, NewJob, TraceContext};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Fails its first attempt; the second enqueues `otel_followup` (from inside the handler,
/// so in the attempt's span) and returns that job's id.
#[job_handler("otel_flaky", queue = "traced")]
async fn flaky(_args: serde_json::Value, ctx: JobContext) -> Result<String, JobError> {
    if ctx.attempt() == 1 {
        return Err(JobError::msg("the first attempt fails"));
    }
    let id = ctx.queue().enqueue("otel_followup", json!({})).await.map_err(JobError::new)?;
    Ok(id.to_string())
}

#[job_handler("otel_followup")]
async fn followup() -> Result<(), JobError> {
    Ok(())
}

/// A tracer provider exporting to memory, and a subscriber with its layer.
fn collector() -> (SdkTracerProvider, InMemorySpanExporter, impl tracing::Subscriber + Send + Sync)
{
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test"));
    let subscriber = tracing_subscriber::registry().with(layer);
    (provider, exporter, subscriber)
}

#[cfg(feature = "otel")]
fn worker_config() -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(500),
        retry: RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(20)),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

#[cfg(feature = "otel")]
fn worker(queue: &JobQueue, cfg: WorkerConfig) -> JobWorker {
    let registry = std::sync::Arc::new(jobs_core::Registry::global().expect("registry").clone());
    JobWorker::with_registry(
        queue.clone(),
        registry,
        std::sync::Arc::new(jobs_core::State::new()),
        cfg,
    )
    .expect("valid worker config")
}

/// With the feature, the enqueue calls store the current span's context (and leave one set
/// by hand as it is); outside any span, and without the feature, nothing is stored.
#[tokio::test(flavor = "current_thread")]
async fn enqueue_stores_the_current_trace_context_only_with_the_feature() {
    let (_provider, _exporter, subscriber) = collector();
    let _guard = tracing::subscriber::set_default(subscriber);
    let queue = JobQueue::new(MemoryBackend::new(BackendConfig::default()));
    let by_hand = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: None,
        baggage: None,
    };
    let span = tracing::info_span!("request");
    let (single, many) = async {
        let single = queue.enqueue("otel_followup", json!({})).await.expect("enqueue");
        let a = queue.new_job("otel_followup", json!({}));
        let b =
            NewJob { trace: Some(by_hand.clone()), ..queue.new_job("otel_followup", json!({})) };
        queue.enqueue_many(&[a.clone(), b.clone()]).await.expect("enqueue_many");
        (single, [a.id, b.id])
    }
    .instrument(span.clone())
    .await;
    let outside = queue.enqueue("otel_followup", json!({})).await.expect("enqueue");
    let trace = |id| {
        let queue = queue.clone();
        async move { queue.get_job(id).await.expect("read").expect("exists").trace }
    };
    assert_eq!(trace(many[1]).await, Some(by_hand), "a context set by hand is kept");
    assert_eq!(trace(outside).await, None, "no span, no context");
    let expected = {
        let sc = span.context().span().span_context().clone();
        assert!(sc.is_valid(), "the layer gives the span a context");
        format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
    };
    for id in [single, many[0]] {
        let t = trace(id).await;
        if cfg!(feature = "otel") {
            let t = t.unwrap_or_else(|| panic!("job {id} has no trace context"));
            assert_eq!(t.traceparent, expected);
            assert_eq!((t.tracestate, t.baggage), (None, None));
        } else {
            assert_eq!(t, None, "without the `otel` feature nothing is stored");
        }
    }
}

/// The spans of one exported trace, as the child writes them.
#[cfg(feature = "otel")]
fn span_json(s: &opentelemetry_sdk::trace::SpanData) -> serde_json::Value {
    let attributes: serde_json::Map<String, serde_json::Value> =
        s.attributes.iter().map(|kv| (kv.key.to_string(), json!(kv.value.to_string()))).collect();
    let links: Vec<serde_json::Value> = s
        .links
        .links
        .iter()
        .map(|l| {
            json!({
                "trace_id": l.span_context.trace_id().to_string(),
                "span_id": l.span_context.span_id().to_string(),
            })
        })
        .collect();
    json!({
        "name": s.name,
        "kind": format!("{:?}", s.span_kind),
        "trace_id": s.span_context.trace_id().to_string(),
        "span_id": s.span_context.span_id().to_string(),
        "parent_span_id": s.parent_span_id.to_string(),
        "status": format!("{:?}", s.status),
        "links": links,
        "attributes": attributes,
    })
}

/// The worker side of [`a_run_span_links_to_the_enqueue_span_across_processes`], run in a
/// child process: runs the job named by `OTEL_CHILD_JOB` to completion on the parent's
/// Redis, then writes every span it exported to `OTEL_CHILD_OUT`. Does nothing when run
/// on its own.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
#[ignore = "the worker process of a_run_span_links_to_the_enqueue_span_across_processes"]
async fn child_worker() {
    let (Ok(url), Ok(ns), Ok(job), Ok(out)) = (
        std::env::var("OTEL_CHILD_REDIS_URL"),
        std::env::var("OTEL_CHILD_NAMESPACE"),
        std::env::var("OTEL_CHILD_JOB"),
        std::env::var("OTEL_CHILD_OUT"),
    ) else {
        return;
    };
    let (provider, exporter, subscriber) = collector();
    let _guard = tracing::subscriber::set_default(subscriber);
    let config = jobs_core::backend::redis::RedisConfig {
        namespace: ns,
        use_functions: jobs_test_support::use_functions(),
        ..jobs_core::backend::redis::RedisConfig::new(&url)
    };
    let backend =
        jobs_core::backend::redis::RedisBackend::connect(config).await.expect("connect to redis");
    let queue = JobQueue::new(backend);
    let id: jobs_core::JobId = job.parse().expect("a job id");
    let running = worker(&queue, worker_config()).start();
    let done = jobs_test_support::wait_for_job(&queue, id, Duration::from_secs(20), |j| {
        j.status == jobs_core::JobStatus::Completed
    })
    .await;
    running.stop().await.expect("stop the worker");
    done.unwrap_or_else(|e| panic!("{e}"));
    provider.force_flush().expect("flush");
    let spans: Vec<serde_json::Value> =
        exporter.get_finished_spans().expect("spans").iter().map(span_json).collect();
    std::fs::write(out, serde_json::to_vec(&spans).expect("json")).expect("write the spans");
}

/// Enqueued here within a span (with baggage), run by a worker in another process: each
/// attempt is a consumer span of its own trace, linked to the enqueuing span, with the
/// messaging attributes; the retry is a second such span linked to the same enqueue; a
/// job the handler enqueues carries the attempt's context on (and the baggage).
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
async fn a_run_span_links_to_the_enqueue_span_across_processes() {
    use opentelemetry::baggage::BaggageExt;
    let (_provider, _exporter, subscriber) = collector();
    let _guard = tracing::subscriber::set_default(subscriber);
    let ns = jobs_test_support::unique_namespace("otel");
    let queue =
        JobQueue::new(jobs_test_support::redis_backend(&ns, BackendConfig::default()).await);

    let span = {
        let _cx = opentelemetry::Context::current_with_baggage([opentelemetry::KeyValue::new(
            "tenant", "acme",
        )])
        .attach();
        tracing::info_span!("request")
    };
    let id = async { queue.enqueue("otel_flaky", json!({})).await }
        .instrument(span.clone())
        .await
        .expect("enqueue");
    let enqueuer = span.context().span().span_context().clone();
    drop(span);
    let stored = queue.get_job(id).await.expect("read").expect("exists").trace.expect("a context");
    assert_eq!(stored.traceparent, format!("00-{}-{}-01", enqueuer.trace_id(), enqueuer.span_id()));
    assert_eq!(stored.baggage.as_deref(), Some("tenant=acme"));

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spans.json");
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["child_worker", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("OTEL_CHILD_REDIS_URL", jobs_test_support::shared().url())
        .env("OTEL_CHILD_NAMESPACE", &ns)
        .env("OTEL_CHILD_JOB", id.to_string())
        .env("OTEL_CHILD_OUT", &out)
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker process");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the worker process ends within a minute")
        .expect("wait for it");
    assert!(status.success(), "the worker process failed: {status}");
    let spans: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&out).expect("the spans file")).expect("json");

    let mut runs: Vec<&serde_json::Value> =
        spans.iter().filter(|s| s["name"] == "process traced").collect();
    runs.sort_by_key(|s| s["attributes"]["job.attempt"].as_str().map(str::to_owned));
    assert_eq!(runs.len(), 2, "one span per attempt: {spans:#?}");
    let link = json!([{ "trace_id": enqueuer.trace_id().to_string(),
        "span_id": enqueuer.span_id().to_string() }]);
    for (run, attempt) in runs.iter().zip(["1", "2"]) {
        assert_eq!(run["kind"], "Consumer", "{run:#}");
        assert_eq!(run["links"], link, "linked to the enqueuing span: {run:#}");
        assert_ne!(run["trace_id"], json!(enqueuer.trace_id().to_string()), "a trace of its own");
        assert_eq!(run["parent_span_id"], "0000000000000000", "a root span: {run:#}");
        let a = &run["attributes"];
        assert_eq!(a["messaging.system"], "jobs", "{a:#}");
        assert_eq!(a["messaging.destination.name"], "traced", "the handler's queue: {a:#}");
        assert_eq!(a["messaging.operation.type"], "process", "{a:#}");
        assert_eq!(a["messaging.message.id"], json!(id.to_string()), "{a:#}");
        assert_eq!(a["job.attempt"], attempt, "{a:#}");
        assert!(a["job.queue_wait_ms"].as_str().is_some_and(|w| w.parse::<u64>().is_ok()), "{a:#}");
    }
    let status = |run: &serde_json::Value| run["status"].as_str().unwrap_or_default().to_owned();
    assert!(
        status(runs[0]).starts_with("Error") && status(runs[0]).contains("the first attempt fails"),
        "a failed attempt's span is an error with its message: {}",
        status(runs[0])
    );
    assert_eq!(status(runs[1]), "Ok", "the attempt that succeeded");
    assert_ne!(runs[0]["span_id"], runs[1]["span_id"], "a retry is a new span");
    assert_ne!(runs[0]["trace_id"], runs[1]["trace_id"], "in a trace of its own");

    // The job the second attempt enqueued carries that attempt's context, and the baggage.
    let result = queue.get_job(id).await.expect("read").expect("exists").result;
    let followup: jobs_core::JobId =
        result.as_ref().and_then(|r| r.as_str()).and_then(|s| s.parse().ok()).expect("an id");
    let carried =
        queue.get_job(followup).await.expect("read").expect("exists").trace.expect("context");
    let second = runs[1];
    let expected = format!(
        "00-{}-{}-01",
        second["trace_id"].as_str().unwrap_or_default(),
        second["span_id"].as_str().unwrap_or_default()
    );
    assert_eq!(carried.traceparent, expected);
    assert_eq!(carried.baggage.as_deref(), Some("tenant=acme"));
}

/// With `trace_parent: Child`, the attempt's span is a child of the enqueuing span, in its
/// trace (one process, the memory backend).
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
async fn the_run_span_can_be_a_child_of_the_enqueue_span() {
    let (provider, exporter, subscriber) = collector();
    let _guard = tracing::subscriber::set_default(subscriber);
    let queue = JobQueue::new(MemoryBackend::new(BackendConfig::default()));
    let span = tracing::info_span!("request");
    let id = async { queue.enqueue("otel_followup", json!({})).await }
        .instrument(span.clone())
        .await
        .expect("enqueue");
    let enqueuer = span.context().span().span_context().clone();
    drop(span);
    let cfg =
        WorkerConfig { trace_parent: jobs_core::worker::TraceParent::Child, ..worker_config() };
    let running = worker(&queue, cfg).start();
    let done = jobs_test_support::wait_for_job(&queue, id, Duration::from_secs(10), |j| {
        j.status == jobs_core::JobStatus::Completed
    })
    .await;
    running.stop().await.expect("stop");
    done.unwrap_or_else(|e| panic!("{e}"));
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let run = spans
        .iter()
        .find(|s| s.name == "process default")
        .unwrap_or_else(|| panic!("no run span in {spans:#?}"));
    assert_eq!(run.span_context.trace_id(), enqueuer.trace_id(), "in the enqueuer's trace");
    assert_eq!(run.parent_span_id, enqueuer.span_id(), "a child of the enqueuing span");
    assert!(run.links.links.is_empty(), "and not linked");
    assert_eq!(run.span_kind, opentelemetry::trace::SpanKind::Consumer);
}

/// The runner (`jobs_core::runner::main`, here the test-worker binary built with `otel`)
/// exports its spans over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`, even with
/// `RUST_LOG=warn`, and flushes them when it stops: a collector of our own receives the
/// attempt's span, linked to the span that enqueued the job in this process.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_exports_spans_over_otlp() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let app = {
        let bodies = bodies.clone();
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let bodies = bodies.clone();
                async move {
                    bodies.lock().unwrap_or_else(|e| e.into_inner()).push(body.to_vec());
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (_provider, _exporter, subscriber) = collector();
    let ns = jobs_test_support::unique_namespace("otel-otlp");
    let queue =
        JobQueue::new(jobs_test_support::redis_backend(&ns, BackendConfig::default()).await);
    let (id, enqueuer) = {
        let _guard = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("request");
        let id = async { queue.enqueue("reliability_sleep", json!({"ms": 1})).await }
            .instrument(span.clone())
            .await
            .expect("enqueue");
        (id, span.context().span().span_context().clone())
    };
    let mut runner = std::process::Command::new(env!("CARGO_BIN_EXE_test-worker"))
        .args(["run", "--no-scheduler", "--no-api", "--shutdown-grace", "2"])
        .env("REDIS_URL", jobs_test_support::shared().url())
        .env("JOBS_NAMESPACE", &ns)
        .env("TEST_STARTS_KEY", format!("{ns}:starts"))
        .env("RUST_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "otel-test-runner")
        // The exporter's HTTP client honours proxy variables: never for our collector.
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start the test-worker binary");
    let done = jobs_test_support::wait_for_job(&queue, id, Duration::from_secs(20), |j| {
        j.status == jobs_core::JobStatus::Completed
    })
    .await;
    jobs_test_support::sigterm(&runner).expect("SIGTERM");
    let exited =
        jobs_test_support::wait_until("the runner to exit", Duration::from_secs(15), || {
            let status = runner.try_wait().ok().flatten();
            async move { status }
        })
        .await;
    if exited.is_err() {
        let _ = runner.kill();
        let _ = runner.wait();
    }
    done.unwrap_or_else(|e| panic!("{e}"));
    let status = exited.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "the runner failed: {status}");
    server.abort();

    let all: Vec<u8> = bodies.lock().unwrap_or_else(|e| e.into_inner()).concat();
    let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(!all.is_empty(), "nothing was exported");
    assert!(has(b"process default"), "no attempt span in the export");
    assert!(has(b"otel-test-runner"), "OTEL_SERVICE_NAME is the service's name");
    assert!(has(id.to_string().as_bytes()), "messaging.message.id is the job's id");
    assert!(has(&enqueuer.trace_id().to_bytes()), "linked to the enqueuer's trace");
    assert!(has(&enqueuer.span_id().to_bytes()), "and to its span");
}
