//! The benchmark of record: queue and worker throughput, latency, memory and Redis CPU per
//! job, against a private `redis-server` it starts itself (never a shared one).
//!
//! ```text
//! cargo run --release -p examples --bin bench                          # full, medians of 3
//! cargo run --release -p examples --bin bench -- --quick               # small, 1 run (CI)
//! cargo run --release -p examples --bin bench -- --json --svg out.svg  # JSON only, + chart
//! ```
//!
//! Scenarios (each in a fresh namespace; `--runs N` repeats each, the median is reported):
//! * `enqueue_single_per_s`: 20,000 single enqueues, 100 in flight.
//! * `enqueue_batched_per_s`: 50,000 jobs in batches of 1,000.
//! * `fetch_complete_per_s`: queue level, no workers: fetch(64) + complete(64), 4 loops.
//! * `drain_per_s_by_concurrency`: a real `JobWorker` draining no-op jobs at concurrency 1,
//!   10, 50 and 200 (`drain_per_s` is concurrency 50, 50,000 jobs), and
//!   `drain_two_processes_per_s`: two processes of concurrency 50 on one queue.
//! * `redis_cpu_us_per_job`: Redis CPU (`INFO cpu` user+sys delta) per drained job at
//!   concurrency 50.
//! * `pickup_p50_ms`/`pickup_p99_ms`/`pickup_p999_ms`: enqueue-to-start latency of an idle
//!   worker (500 samples: the p999 is the worst but one);
//!   `delayed_lateness_*`: how late a job delayed by 50 ms starts.
//! * `cancel_stop_p50_ms`/`cancel_stop_p99_ms`: cancel-to-stopped latency of a running job
//!   whose handler watches its token (200 cancels, 50 with `--quick`), from the
//!   `cancel_job` call to the handler seeing its token cancelled, with the default 10 s
//!   heartbeat: what the backend's cancel notice takes.
//! * `enqueue_single_durable_per_s`, `enqueue_single_durable_p50_ms`/`_p99_ms`: the cost of
//!   durable writes, 5,000 single enqueues (1,000 with `--quick`), 100 in flight, with
//!   `durable_writes: 1` (each acknowledged after `WAIT 1`) on a master with one replica,
//!   against `enqueue_single_nowait_*`: the same calls on the same servers without it;
//!   `enqueue_single_{durable,nowait}_alone_p50_ms`: a tenth as many, one at a time.
//! * `enqueue_drain_redis_cpu_us_per_job` / `enqueue_drain_unique_redis_cpu_us_per_job`:
//!   Redis CPU per job of enqueueing (batches of 1,000) and draining (concurrency 50) jobs
//!   without and with a uniqueness lock each (all keys distinct), runs alternating, and
//!   `enqueue_drain_limited_redis_cpu_us_per_job` with a rate and a concurrency limit on the
//!   handler (far above the drain's rate: the accounting's cost, no waiting).
//! * `bytes_per_job`: `used_memory` before/after 100,000 queued jobs with args
//!   `{"user_id":"user-123"}`, on a fresh server.
//!
//! No figure here is asserted anywhere: these machines are shared and noisy; compare
//! medians and ratios measured in one run.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use examples::bench_support::{
    Bar, bar_chart, child_drain, command_profile, durable_queue_at, enqueue_batched_named,
    master_and_replica, median, percentile, queue, rate, redis_cpu_us, redis_version, reset_stats,
    round1, round3, used_memory, wait_completed, worker,
};
use jobs_core::NewJob;
use jobs_core::backend::{Completion, FetchRequest};
use jobs_core::prelude::*;
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
    cancels: usize,
    durable_single: usize,
}

/// The no-op handler the worker scenarios run.
#[job_handler("bench_noop")]
async fn bench_noop() -> Result<(), JobError> {
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Numbered {
    n: usize,
}

/// The unique-jobs scenario's job without a lock: the same arguments as `bench_unique`.
#[job_handler("bench_plain")]
async fn bench_plain(args: Numbered) -> Result<(), JobError> {
    let _ = args.n;
    Ok(())
}

/// The no-op handler of the unique-jobs scenario: unique per `n`.
#[job_handler("bench_unique", unique(by = [n], for = "10m"))]
async fn bench_unique(args: Numbered) -> Result<(), JobError> {
    let _ = args.n;
    Ok(())
}

/// The no-op handler of the limits scenario: a rate and a concurrency limit on the
/// handler, both far above what a drain reaches (so that every start pays the accounting and
/// none waits).
#[job_handler("bench_limited", rate_limit(max = 100000, per = "1s"), concurrency(max = 1000))]
async fn bench_limited(args: Numbered) -> Result<(), JobError> {
    let _ = args.n;
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

/// Reports its start (`false`), then waits for its token and reports when it saw it
/// cancelled (`true`), for the cancel latency scenario.
#[job_handler("bench_cancel")]
async fn bench_cancel(ctx: JobContext) -> Result<(), JobError> {
    let tx = CANCEL_PROBE.get();
    if let Some(tx) = tx {
        let _ = tx.send((false, Instant::now()));
    }
    ctx.cancelled().await;
    if let Some(tx) = tx {
        let _ = tx.send((true, Instant::now()));
    }
    Err(JobError::msg("cancelled"))
}

static CANCEL_PROBE: OnceLock<mpsc::UnboundedSender<(bool, Instant)>> = OnceLock::new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-drain") {
        return child_drain(&args[1..]).await;
    }
    let mut quick = false;
    let mut json_only = false;
    let mut runs: Option<usize> = None;
    let mut svg: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_only = true,
            "--runs" => {
                runs = it.next().and_then(|v| v.parse().ok()).filter(|n| *n > 0).or(Some(0))
            }
            "--svg" => svg = it.next().cloned(),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; expected --quick, --json, --runs N, --svg PATH"
                )
                .into());
            }
        }
    }
    let runs = match runs {
        Some(0) => return Err("--runs takes a whole number of at least 1".into()),
        Some(n) => n,
        None if quick => 1,
        None => 3,
    };
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
            cancels: 50,
            durable_single: 1_000,
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
            cancels: 200,
            durable_single: 5_000,
        }
    };

    let server = RedisServer::start();
    let mut report = serde_json::Map::new();
    report.insert("quick".into(), json!(quick));
    report.insert("runs".into(), json!(runs));
    report.insert("redis_version".into(), json!(redis_version(&server).await?));
    let progress = |what: &str, run: usize| {
        if !json_only {
            eprintln!("  {what} (run {}/{runs})", run + 1);
        }
    };

    let mut v = Vec::new();
    for r in 0..runs {
        progress("enqueue single, 100 in flight", r);
        let q = queue(&server, &format!("bench-single-{r}")).await?;
        let t = Instant::now();
        enqueue_single(&q, s.single, s.in_flight).await?;
        v.push(rate(s.single, t.elapsed()));
    }
    report.insert("enqueue_single_per_s".into(), json!(median(&mut v)));

    let mut v = Vec::new();
    for r in 0..runs {
        progress("enqueue batched, 1,000 per call", r);
        let q = queue(&server, &format!("bench-batched-{r}")).await?;
        let t = Instant::now();
        enqueue_batched(&q, s.batched, s.batch).await?;
        v.push(rate(s.batched, t.elapsed()));
    }
    report.insert("enqueue_batched_per_s".into(), json!(median(&mut v)));

    let (mut v, mut cpu_v) = (Vec::new(), Vec::new());
    for r in 0..runs {
        progress("fetch(64) + complete(64), queue level", r);
        let q = queue(&server, &format!("bench-drain-{r}")).await?;
        enqueue_batched(&q, s.drain, s.batch).await?;
        let cpu0 = redis_cpu_us(&server).await?;
        let t = Instant::now();
        let drained = drain(&q, s.drainers).await?;
        let elapsed = t.elapsed();
        let cpu = redis_cpu_us(&server).await? - cpu0;
        if drained != s.drain {
            return Err(format!("drained {drained} of {} jobs", s.drain).into());
        }
        v.push(rate(drained, elapsed));
        cpu_v.push(round1(cpu / drained as f64));
    }
    report.insert("fetch_complete_per_s".into(), json!(median(&mut v)));
    report.insert("fetch_complete_redis_cpu_us_per_job".into(), json!(median(&mut cpu_v)));

    // Real workers, no-op handlers: the throughput users see, by concurrency.
    let mut by_concurrency = serde_json::Map::new();
    for c in [1usize, 10, 50, 200] {
        let n = if c == 1 { s.worker_drain / 10 } else { s.worker_drain };
        let (mut v, mut cpu_v) = (Vec::new(), Vec::new());
        for r in 0..runs {
            progress(&format!("worker drain, concurrency {c}, {n} jobs"), r);
            let q = queue(&server, &format!("bench-worker-{c}-{r}")).await?;
            enqueue_batched_named(&q, n, s.batch, "bench_noop").await?;
            let profile = c == 50 && r == 0;
            if profile {
                reset_stats(&server).await?;
            }
            let cpu0 = redis_cpu_us(&server).await?;
            let t = Instant::now();
            let running = worker(&q, c)?.start();
            wait_completed(&q, n as u64).await?;
            let elapsed = t.elapsed();
            let cpu = redis_cpu_us(&server).await? - cpu0;
            running.stop().await?;
            if profile {
                // Where Redis's time goes: commands run inside the scripts are counted under
                // their own names, so this is a per-command profile of the drain.
                report.insert(
                    "redis_profile_us_per_job_c50".into(),
                    command_profile(&server, n).await?,
                );
            }
            v.push(rate(n, elapsed));
            cpu_v.push(round1(cpu / n as f64));
        }
        let per_s = median(&mut v);
        by_concurrency.insert(c.to_string(), json!(per_s));
        if c == 50 {
            report.insert("drain_per_s".into(), json!(per_s));
            report.insert("redis_cpu_us_per_job".into(), json!(median(&mut cpu_v)));
        }
    }
    report.insert("drain_per_s_by_concurrency".into(), serde_json::Value::Object(by_concurrency));

    // Two processes (this binary, twice), concurrency 50 each.
    let mut v = Vec::new();
    for r in 0..runs {
        progress("worker drain, two processes x concurrency 50", r);
        let ns = format!("bench-two-{r}");
        let q = queue(&server, &ns).await?;
        enqueue_batched_named(&q, s.worker_drain, s.batch, "bench_noop").await?;
        let exe = std::env::current_exe()?;
        let t = Instant::now();
        let mut children = Vec::new();
        for _ in 0..2 {
            children.push(
                tokio::process::Command::new(&exe)
                    .args(["--child-drain", &server.url(), &ns, &s.worker_drain.to_string()])
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        wait_completed(&q, s.worker_drain as u64).await?;
        let elapsed = t.elapsed();
        for mut ch in children {
            let status = ch.wait().await?;
            if !status.success() {
                return Err(format!("a drain child failed: {status}").into());
            }
        }
        v.push(rate(s.worker_drain, elapsed));
    }
    report.insert("drain_two_processes_per_s".into(), json!(median(&mut v)));

    // Unique jobs: the same drain (enqueue in batches, then concurrency 50), of jobs that
    // each take a uniqueness lock (every key distinct, so that all of them run), against
    // jobs without one, runs alternating; Redis CPU per job covers enqueue and drain.
    let (mut off, mut on, mut limited) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let variants =
            [("bench_plain", &mut off), ("bench_unique", &mut on), ("bench_limited", &mut limited)];
        for (name, cpu_v) in variants {
            progress(&format!("enqueue + drain, {name}, {} jobs", s.worker_drain), r);
            let q = queue(&server, &format!("bench-{name}-{r}")).await?;
            let cpu0 = redis_cpu_us(&server).await?;
            let mut left = s.worker_drain;
            while left > 0 {
                let k = left.min(s.batch);
                // The same arguments either way (`bench_plain` has no lock).
                let jobs: Vec<NewJob> =
                    (0..k).map(|i| q.new_job(name, json!({ "n": left - i }))).collect();
                q.enqueue_many(&jobs).await?;
                left -= k;
            }
            let running = worker(&q, 50)?.start();
            wait_completed(&q, s.worker_drain as u64).await?;
            let cpu = redis_cpu_us(&server).await? - cpu0;
            running.stop().await?;
            if name == "bench_unique" && q.stats().await?.unique_locks != 0 {
                return Err("locks left behind after the unique drain".into());
            }
            if name == "bench_limited"
                && q.backend()
                    .limits(10)
                    .await?
                    .iter()
                    .any(|l| l.kind == jobs_core::LimiterKind::Concurrency)
            {
                return Err("concurrency slots left behind after the limited drain".into());
            }
            cpu_v.push(round1(cpu / s.worker_drain as f64));
        }
    }
    report.insert("enqueue_drain_redis_cpu_us_per_job".into(), json!(median(&mut off)));
    report.insert("enqueue_drain_unique_redis_cpu_us_per_job".into(), json!(median(&mut on)));
    report.insert("enqueue_drain_limited_redis_cpu_us_per_job".into(), json!(median(&mut limited)));

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
    report.insert("pickup_p999_ms".into(), json!(round3(percentile(&mut pickup, 0.999))));
    report.insert("delayed_lateness_p50_ms".into(), json!(round3(percentile(&mut late, 0.50))));
    report.insert("delayed_lateness_p99_ms".into(), json!(round3(percentile(&mut late, 0.99))));

    // Cancel-to-stopped: a running job cancelled, its handler watching its token.
    if !json_only {
        eprintln!("  cancel a running job, {} times", s.cancels);
    }
    let q = queue(&server, "bench-cancel").await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    CANCEL_PROBE.set(tx).map_err(|_| "cancel probe already set")?;
    let running = worker(&q, 10)?.start();
    let mut stop = Vec::with_capacity(s.cancels);
    for _ in 0..s.cancels {
        let id = q.enqueue("bench_cancel", json!(null)).await?;
        let (stopped, _) = rx.recv().await.ok_or("cancel probe closed")?;
        if stopped {
            return Err("the cancel probe stopped before it was cancelled".into());
        }
        let t = Instant::now();
        q.cancel_job(id).await?;
        let (stopped, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| "a cancelled job's handler was not told within 30 s")?
            .ok_or("cancel probe closed")?;
        if !stopped {
            return Err("a second job started before the cancelled one stopped".into());
        }
        stop.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
    }
    running.stop().await?;
    report.insert("cancel_stop_p50_ms".into(), json!(round3(percentile(&mut stop, 0.50))));
    report.insert("cancel_stop_p99_ms".into(), json!(round3(percentile(&mut stop, 0.99))));
    drop(server);

    // The cost of durable writes: single enqueues on a master with one replica, acknowledged
    // after `WAIT 1` or as soon as the master has them; runs alternate between the two.
    let (master, replica) = master_and_replica().await?;
    let (mut nowait, mut durable) =
        ((Vec::new(), Vec::new(), Vec::new()), (Vec::new(), Vec::new(), Vec::new()));
    for r in 0..runs {
        for (replicas, (rates, latencies, alone)) in [(0, &mut nowait), (1, &mut durable)] {
            progress(&format!("enqueue single, WAIT {replicas}, master + 1 replica"), r);
            let q = durable_queue_at(&master.url(), &format!("bench-wait{replicas}-{r}"), replicas)
                .await?;
            let t = Instant::now();
            latencies.extend(enqueue_single(&q, s.durable_single, s.in_flight).await?);
            rates.push(rate(s.durable_single, t.elapsed()));
            // One at a time: the round trip itself, without queueing behind the others.
            alone.extend(enqueue_single(&q, s.durable_single / 10, 1).await?);
        }
    }
    for (name, (rates, latencies, alone)) in [("nowait", &mut nowait), ("durable", &mut durable)] {
        report.insert(
            format!("enqueue_single_{name}_alone_p50_ms"),
            json!(round3(percentile(alone, 0.50))),
        );
        report.insert(format!("enqueue_single_{name}_per_s"), json!(median(rates)));
        report.insert(
            format!("enqueue_single_{name}_p50_ms"),
            json!(round3(percentile(latencies, 0.50))),
        );
        report.insert(
            format!("enqueue_single_{name}_p99_ms"),
            json!(round3(percentile(latencies, 0.99))),
        );
    }
    drop((master, replica));

    // A fresh server, so nothing else is in its memory.
    let server = RedisServer::start();
    let q = queue(&server, "bench-memory").await?;
    let before = used_memory(&server).await?;
    enqueue_batched(&q, s.memory, s.batch).await?;
    let after = used_memory(&server).await?;
    report.insert("bytes_per_job".into(), json!(round1((after - before) / s.memory as f64)));

    let report = serde_json::Value::Object(report);
    if let Some(path) = svg {
        std::fs::write(&path, svg_chart(&report))?;
    }
    if !json_only {
        for (k, v) in report.as_object().into_iter().flatten() {
            println!("{k:<26} {v}");
        }
    }
    println!("{report}");
    Ok(())
}

fn job(q: &JobQueue) -> NewJob {
    q.new_job("sync_portfolio", json!({"user_id": "user-123"}))
}

/// `n` single enqueues, `in_flight` at a time; the latency of each, in milliseconds.
async fn enqueue_single(q: &JobQueue, n: usize, in_flight: usize) -> jobs_core::Result<Vec<f64>> {
    let q = Arc::new(q.clone());
    let mut tasks: tokio::task::JoinSet<jobs_core::Result<_>> = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let q = q.clone();
        let count = n / in_flight + usize::from(w < n % in_flight);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                q.enqueue_job(job(&q)).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.map_err(|e| jobs_core::Error::Backend(e.to_string()))??);
    }
    Ok(all)
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
                queues: Vec::new(),
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

/// Drain throughput against concurrency, as an SVG bar chart.
fn svg_chart(report: &serde_json::Value) -> String {
    let by = report["drain_per_s_by_concurrency"].as_object().cloned().unwrap_or_default();
    let mut bars: Vec<Bar> = by
        .iter()
        .map(|(k, v)| Bar { label: k.clone(), note: None, value: v.as_f64().unwrap_or(0.0) })
        .collect();
    bars.sort_by_key(|b| b.label.parse::<u32>().unwrap_or(0));
    if let Some(two) = report["drain_two_processes_per_s"].as_f64() {
        bars.push(Bar { label: "2x50".into(), note: None, value: two });
    }
    bar_chart("Drain throughput (jobs/s) by concurrency, no-op jobs", &bars)
}
