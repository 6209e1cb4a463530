//! The benchmark of record: queue throughput, memory and Redis CPU per job against a private
//! `redis-server` it starts itself (never a shared one).
//!
//! ```text
//! cargo run --release -p examples --bin bench            # full run, table + JSON
//! cargo run --release -p examples --bin bench -- --quick # small counts (what CI runs)
//! cargo run --release -p examples --bin bench -- --json  # only the JSON object
//! ```
//!
//! Scenarios (each in a fresh namespace):
//! * `enqueue_single`: 20,000 single enqueues, 100 in flight.
//! * `enqueue_batched`: 50,000 jobs in batches of 1,000.
//! * `fetch_complete`: queue level, no workers: drain 50,000 jobs with fetch(64) +
//!   complete(batch of 64), 4 drainers; Redis CPU per job from `INFO cpu`.
//! * `drain`: a real `JobWorker` (concurrency 50) draining 50,000 no-op jobs.
//! * `pickup`: enqueue-to-start latency of an idle worker (p50/p99), and how late a job
//!   delayed by 50 ms starts.
//! * `bytes_per_job`: `INFO memory` `used_memory` before/after 100,000 queued jobs with args
//!   `{"user_id":"user-123"}`, on a fresh server.
//!
//! No figure here is asserted anywhere: these machines are shared and noisy; compare
//! medians and ratios measured in one run.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{BackendConfig, Completion, FetchRequest};
use jobs_core::prelude::*;
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{NewJob, Registry, State};
use jobs_test_support::RedisServer;
use serde_json::json;
use tokio::sync::mpsc;

struct Sizes {
    single: usize,
    in_flight: usize,
    batched: usize,
    batch: usize,
    drain: usize,
    drainers: usize,
    memory: usize,
    worker_drain: usize,
    pickups: usize,
}

/// The no-op handler the worker scenarios run.
#[job_handler("bench_noop")]
async fn bench_noop() -> Result<(), JobError> {
    Ok(())
}

/// Reports when it started, for the latency scenarios.
#[job_handler("bench_probe")]
async fn bench_probe() -> Result<(), JobError> {
    if let Some(tx) = PROBE.get() {
        let _ = tx.send(Instant::now());
    }
    Ok(())
}

static PROBE: OnceLock<mpsc::UnboundedSender<Instant>> = OnceLock::new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_only = args.iter().any(|a| a == "--json");
    if let Some(bad) = args.iter().find(|a| !matches!(a.as_str(), "--quick" | "--json")) {
        return Err(format!("unknown argument `{bad}`; expected --quick and/or --json").into());
    }
    let s = if quick {
        Sizes {
            single: 2_000,
            in_flight: 100,
            batched: 5_000,
            batch: 1_000,
            drain: 5_000,
            drainers: 4,
            memory: 10_000,
            worker_drain: 5_000,
            pickups: 50,
        }
    } else {
        Sizes {
            single: 20_000,
            in_flight: 100,
            batched: 50_000,
            batch: 1_000,
            drain: 50_000,
            drainers: 4,
            memory: 100_000,
            worker_drain: 50_000,
            pickups: 500,
        }
    };

    let server = RedisServer::start();
    let mut report = serde_json::Map::new();
    report.insert("quick".into(), json!(quick));
    report.insert("redis_version".into(), json!(redis_version(&server).await?));

    let q = queue(&server, "bench-single").await?;
    let t = Instant::now();
    enqueue_single(&q, s.single, s.in_flight).await?;
    report.insert("enqueue_single_per_s".into(), json!(rate(s.single, t.elapsed())));

    let q = queue(&server, "bench-batched").await?;
    let t = Instant::now();
    enqueue_batched(&q, s.batched, s.batch).await?;
    report.insert("enqueue_batched_per_s".into(), json!(rate(s.batched, t.elapsed())));

    let q = queue(&server, "bench-drain").await?;
    enqueue_batched(&q, s.drain, s.batch).await?;
    let cpu0 = redis_cpu_us(&server).await?;
    let t = Instant::now();
    let drained = drain(&q, s.drainers).await?;
    let elapsed = t.elapsed();
    let cpu = redis_cpu_us(&server).await? - cpu0;
    if drained != s.drain {
        return Err(format!("drained {drained} of {} jobs", s.drain).into());
    }
    report.insert("fetch_complete_per_s".into(), json!(rate(drained, elapsed)));
    report.insert("redis_cpu_us_per_job".into(), json!(round1(cpu / drained as f64)));

    // A real worker, concurrency 50, no-op handlers: the throughput users see.
    let q = queue(&server, "bench-worker").await?;
    enqueue_batched_named(&q, s.worker_drain, s.batch, "bench_noop").await?;
    let cpu0 = redis_cpu_us(&server).await?;
    let t = Instant::now();
    let running = worker(&q, 50)?.start();
    wait_completed(&q, s.worker_drain as u64).await?;
    let elapsed = t.elapsed();
    let cpu = redis_cpu_us(&server).await? - cpu0;
    running.stop().await?;
    report.insert("drain_per_s".into(), json!(rate(s.worker_drain, elapsed)));
    report.insert("drain_redis_cpu_us_per_job".into(), json!(round1(cpu / s.worker_drain as f64)));

    // Latency: an idle worker (blocked on Redis), one job at a time.
    let q = queue(&server, "bench-latency").await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    PROBE.set(tx).map_err(|_| "probe already set")?;
    let running = worker(&q, 10)?.start();
    let mut pickup = Vec::with_capacity(s.pickups);
    for _ in 0..s.pickups {
        // Let the worker go back to blocking on the marker.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Instant::now();
        q.enqueue("bench_probe", json!(null)).await?;
        let started = rx.recv().await.ok_or("probe channel closed")?;
        pickup.push(started.saturating_duration_since(t).as_secs_f64() * 1000.0);
    }
    let mut late = Vec::with_capacity(s.pickups / 5);
    for _ in 0..(s.pickups / 5).max(5) {
        let delay = Duration::from_millis(50);
        let t = Instant::now();
        q.enqueue("bench_probe", json!(null)).delay(delay).await?;
        let started = rx.recv().await.ok_or("probe channel closed")?;
        late.push(started.saturating_duration_since(t + delay).as_secs_f64() * 1000.0);
    }
    running.stop().await?;
    report.insert("pickup_p50_ms".into(), json!(round3(percentile(&mut pickup, 0.50))));
    report.insert("pickup_p99_ms".into(), json!(round3(percentile(&mut pickup, 0.99))));
    report.insert("delayed_lateness_p50_ms".into(), json!(round3(percentile(&mut late, 0.50))));
    report.insert("delayed_lateness_p99_ms".into(), json!(round3(percentile(&mut late, 0.99))));
    drop(server);

    // A fresh server, so nothing else is in its memory.
    let server = RedisServer::start();
    let q = queue(&server, "bench-memory").await?;
    let before = used_memory(&server).await?;
    enqueue_batched(&q, s.memory, s.batch).await?;
    let after = used_memory(&server).await?;
    report.insert("bytes_per_job".into(), json!(round1((after - before) / s.memory as f64)));

    let report = serde_json::Value::Object(report);
    if !json_only {
        for (k, v) in report.as_object().into_iter().flatten() {
            println!("{k:<26} {v}");
        }
    }
    println!("{report}");
    Ok(())
}

async fn queue(server: &RedisServer, ns: &str) -> jobs_core::Result<JobQueue> {
    let cfg = RedisConfig {
        namespace: ns.into(),
        backend: BackendConfig::default(),
        ..RedisConfig::new(&server.url())
    };
    Ok(JobQueue::new(RedisBackend::connect(cfg).await?))
}

fn job(q: &JobQueue) -> NewJob {
    q.new_job("sync_portfolio", json!({"user_id": "user-123"}))
}

fn worker(q: &JobQueue, concurrency: usize) -> jobs_core::Result<JobWorker> {
    let cfg = WorkerConfig { max_concurrent_jobs: concurrency, ..WorkerConfig::default() };
    let registry = Arc::new(Registry::global()?.clone());
    JobWorker::with_registry(q.clone(), registry, Arc::new(State::new()), cfg)
}

async fn wait_completed(q: &JobQueue, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while q.stats().await?.counters.completed < n {
        if Instant::now() > deadline {
            return Err("drain did not finish within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn enqueue_batched_named(
    q: &JobQueue,
    n: usize,
    batch: usize,
    name: &str,
) -> jobs_core::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let jobs: Vec<NewJob> = (0..k).map(|_| q.new_job(name, json!(null))).collect();
        q.enqueue_many(&jobs).await?;
        left -= k;
    }
    Ok(())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn enqueue_single(q: &JobQueue, n: usize, in_flight: usize) -> jobs_core::Result<()> {
    let q = Arc::new(q.clone());
    let mut tasks: tokio::task::JoinSet<jobs_core::Result<_>> = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let q = q.clone();
        let count = n / in_flight + usize::from(w < n % in_flight);
        tasks.spawn(async move {
            for _ in 0..count {
                q.enqueue_job(job(&q)).await?;
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| jobs_core::Error::Backend(e.to_string()))??;
    }
    Ok(())
}

async fn enqueue_batched(q: &JobQueue, n: usize, batch: usize) -> jobs_core::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let jobs: Vec<NewJob> = (0..k).map(|_| job(q)).collect();
        q.enqueue_many(&jobs).await?;
        left -= k;
    }
    Ok(())
}

/// Fetch 64 and complete them in one call, from `drainers` concurrent loops, until empty.
async fn drain(q: &JobQueue, drainers: usize) -> jobs_core::Result<usize> {
    let mut tasks: tokio::task::JoinSet<jobs_core::Result<_>> = tokio::task::JoinSet::new();
    for d in 0..drainers {
        let backend = q.backend().clone();
        tasks.spawn(async move {
            let req = FetchRequest {
                max: 64,
                worker_id: format!("bench-{d}"),
                lease: Duration::from_secs(30),
                grace: Duration::from_secs(5),
            };
            let mut done = 0usize;
            loop {
                let got = backend.fetch(&req).await?;
                if got.jobs.is_empty() {
                    return Ok(done);
                }
                let acks: Vec<Completion> = got
                    .jobs
                    .iter()
                    .map(|j| Completion { lease: j.lease, result: serde_json::Value::Null })
                    .collect();
                backend.complete(&acks).await?;
                done += acks.len();
            }
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.map_err(|e| jobs_core::Error::Backend(e.to_string()))??;
    }
    Ok(total)
}

fn rate(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64()).round()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

async fn info(server: &RedisServer, section: &str) -> Result<String, redis::RedisError> {
    let client = redis::Client::open(server.url())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    redis::cmd("INFO").arg(section).query_async(&mut c).await
}

fn field(info: &str, name: &str) -> Option<f64> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

async fn redis_cpu_us(server: &RedisServer) -> Result<f64, Box<dyn std::error::Error>> {
    let i = info(server, "cpu").await?;
    let user = field(&i, "used_cpu_user").ok_or("no used_cpu_user in INFO")?;
    let sys = field(&i, "used_cpu_sys").ok_or("no used_cpu_sys in INFO")?;
    Ok((user + sys) * 1e6)
}

async fn used_memory(server: &RedisServer) -> Result<f64, Box<dyn std::error::Error>> {
    let i = info(server, "memory").await?;
    Ok(field(&i, "used_memory").ok_or("no used_memory in INFO")?)
}

async fn redis_version(server: &RedisServer) -> Result<String, Box<dyn std::error::Error>> {
    let i = info(server, "server").await?;
    Ok(i.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}
