//! What reaches the log from outside: job arguments echoed in handler errors, names.
//! A newline must not forge a log line, an ANSI escape must not reach the terminal.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::backend::BackendConfig;
use jobs_core::backend::memory::MemoryBackend;
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{JobStatus, Registry, RetryPolicy, State};
use jobs_test_support::wait_for_job;
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct UserArgs {
    user_id: String,
}

/// Echoes its argument in its error, as real handlers do ("unknown user `…`").
#[job_handler("log_unknown_user")]
async fn unknown_user(args: UserArgs) -> Result<(), JobError> {
    Err(JobError::permanent_msg(format_args!("unknown user `{}`", args.user_id)))
}

/// The same, retryable: the "will retry" warning carries the error too.
#[job_handler("log_flaky_user")]
async fn flaky_user(args: UserArgs) -> Result<(), JobError> {
    Err(JobError::msg(format_args!("user `{}` is busy", args.user_id)))
}

/// A log sink the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

// regression: handler errors reached the log raw, so a `user_id` of
// "x\nERROR forged line" wrote a second, forged log line, and "\x1b[2J" cleared the
// operator's terminal.
#[tokio::test]
async fn job_arguments_in_errors_cannot_forge_log_lines() {
    let sink = Captured::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test's runtime is current-thread: the worker's tasks log through this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let queue = JobQueue::new(MemoryBackend::new(BackendConfig::default()));
    let cfg = WorkerConfig {
        poll_interval: Duration::from_millis(100),
        retry: RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(20)),
        shutdown_grace: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let registry = Arc::new(Registry::global().expect("handlers register").clone());
    let worker = JobWorker::with_registry(queue.clone(), registry, Arc::new(State::new()), cfg)
        .expect("valid worker config")
        .start();
    let payload = "u1\nERROR forged line\r\n\x1b[2J\u{2028}\u{85}end";
    let mut ids = Vec::new();
    for name in ["log_unknown_user", "log_flaky_user"] {
        let id = queue
            .enqueue(name, json!({ "user_id": payload }))
            .max_retries(1)
            .await
            .expect("enqueue");
        ids.push(id);
    }
    for id in ids {
        wait_for_job(&queue, id, Duration::from_secs(10), |j| j.status == JobStatus::Failed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    worker.stop().await.expect("stop");

    let out = sink.text();
    assert!(out.contains("moved to the dead-letter queue"), "{out}");
    assert!(out.contains("will retry"), "{out}");
    for raw in ['\x1b', '\r', '\u{2028}', '\u{85}'] {
        assert!(!out.contains(raw), "{raw:?} reached the log raw:\n{out}");
    }
    // Every line is a real record (a timestamp, then a level); none is the forged one.
    for line in out.lines() {
        assert!(!line.trim_start().starts_with("ERROR forged"), "forged line:\n{out}");
        assert!(line.starts_with(|c: char| c.is_ascii_digit()), "not a record: {line:?}\n{out}");
    }
    // Still readable: the text is there, escaped.
    assert!(out.contains(r"u1\nERROR forged line\r\n\u{1b}[2J\u{2028}\u{85}end"), "{out}");
}
