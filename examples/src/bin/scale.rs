//! How cost grows with the work: the scaling scenarios of the benchmark, each on a private
//! `redis-server` it starts itself (or a private three-master cluster).
//!
//! ```text
//! cargo run --release -p examples --bin scale                        # 1,000,000 jobs
//! cargo run --release -p examples --bin scale -- --size 100000
//! cargo run --release -p examples --bin scale -- --quick             # 20,000 (CI)
//! cargo run --release -p examples --bin scale -- --only delayed,dead --json
//! ```
//!
//! Scenarios (`--only` takes a comma-separated list of their names):
//! * `backlog`: batched enqueue and worker drain (concurrency 50) of a probe of
//!   `min(50,000, size/2)` jobs on an empty queue, then again with `size` jobs already
//!   queued; Redis bytes per queued job at `size/10` and at `size` jobs.
//! * `delayed`: `size` delayed jobs falling due at the same instant while a worker of
//!   concurrency 50 waits: how long promotion takes (its rate), the slowest script call
//!   meanwhile (`SLOWLOG`, threshold 1 ms), and the pickup latency of a probe job enqueued
//!   every 10 ms in another namespace on the same server.
//! * `dead`: `size` jobs in the dead-letter queue and `size` finished records: the time of
//!   listing (head, middle, tail), retrying one, reading stats, purging expired records and
//!   clearing the queue, per call, and the slowest call Redis logged.
//! * `processes`: 1, 2, 4 and 8 worker processes (this binary, concurrency 50 each) draining
//!   `min(size, 50,000)` jobs from one queue: aggregate rate and Redis CPU per job.
//! * `cluster`: a three-master Redis Cluster, three namespaces placed on different masters,
//!   a worker each: the Redis CPU each node spent.
//!
//! Nothing here is asserted anywhere: compare figures measured in one run.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use examples::bench_support::{
    Bar, BoxError, bar_chart, child_drain, command, enqueue_batched_named, percentile, queue,
    queue_at, rate, redis_cpu_us, redis_cpu_us_at, round1, round3, used_memory, wait_completed,
    worker,
};
use jobs_core::backend::BackendConfig;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::prelude::*;
use jobs_core::{JobId, RunAt};
use jobs_test_support::{RedisCluster, RedisServer};
use serde_json::json;
use tokio::sync::mpsc;

/// The no-op handler the scenarios drain.
#[job_handler("scale_noop")]
async fn scale_noop() -> Result<(), JobError> {
    Ok(())
}

/// Fails for good: fills the dead-letter queue.
#[job_handler("scale_fail", max_retries = 0)]
async fn scale_fail() -> Result<(), JobError> {
    Err(JobError::permanent_msg("scale_fail always fails"))
}

/// Reports when it started, for the pickup probe.
#[job_handler("scale_probe")]
async fn scale_probe() -> Result<(), JobError> {
    if let Some(tx) = PROBE.get() {
        let _ = tx.send(Instant::now());
    }
    Ok(())
}

static PROBE: OnceLock<mpsc::UnboundedSender<Instant>> = OnceLock::new();

const BATCH: usize = 1_000;
const SCENARIOS: [&str; 5] = ["backlog", "delayed", "dead", "processes", "cluster"];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-drain") {
        return child_drain(&args[1..]).await;
    }
    let mut size = 1_000_000usize;
    let mut json_only = false;
    let mut svg: Option<String> = None;
    let mut only: Vec<String> = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => size = 20_000,
            "--json" => json_only = true,
            "--size" => {
                size = it
                    .next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .filter(|n| *n >= 1_000)
                    .ok_or("--size takes a whole number of at least 1000")?;
            }
            "--svg" => svg = it.next().cloned(),
            "--only" => {
                let list = it.next().ok_or("--only takes a comma-separated list")?;
                only = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(format!("unknown scenario `{bad}`; expected {SCENARIOS:?}").into());
                }
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; expected --quick, --size N, --only LIST, --json, --svg PATH"
                )
                .into());
            }
        }
    }
    let say = |what: &str| {
        if !json_only {
            eprintln!("  {what}");
        }
    };
    let mut report = serde_json::Map::new();
    report.insert("size".into(), json!(size));
    for name in &only {
        say(&format!("{name} ({size} jobs)"));
        let t = Instant::now();
        let part = match name.as_str() {
            "backlog" => backlog(size).await?,
            "delayed" => delayed(size).await?,
            "dead" => dead(size).await?,
            "processes" => processes(size).await?,
            _ => cluster(size).await?,
        };
        say(&format!("  {part}"));
        say(&format!("  took {:.1} s", t.elapsed().as_secs_f64()));
        report.insert(name.clone(), part);
    }
    let report = serde_json::Value::Object(report);
    if let Some(path) = svg {
        std::fs::write(&path, processes_svg(&report["processes"]))?;
    }
    println!("{report}");
    Ok(())
}

/// Enqueue and drain rates on an empty queue and behind a backlog of `size` jobs.
async fn backlog(size: usize) -> Result<serde_json::Value, BoxError> {
    let server = RedisServer::start();
    let q = queue(&server, "scale-backlog").await?;
    let probe = (size / 2).min(50_000);
    let (enq_empty, drain_empty) = enqueue_then_drain(&q, probe, probe as u64).await?;

    let m0 = used_memory(&server).await?;
    enqueue_batched_named(&q, size / 10, BATCH, "scale_noop").await?;
    let m_tenth = used_memory(&server).await?;
    enqueue_batched_named(&q, size - size / 10, BATCH, "scale_noop").await?;
    let m_full = used_memory(&server).await?;
    // The queue holds `size` jobs; the drain takes the oldest `probe` of `size + probe`.
    let (enq_full, drain_full) = enqueue_then_drain(&q, probe, 2 * probe as u64).await?;
    Ok(json!({
        "probe_jobs": probe,
        "enqueue_batched_per_s_empty": enq_empty,
        "enqueue_batched_per_s_backlog": enq_full,
        "drain_per_s_empty": drain_empty,
        "drain_per_s_backlog": drain_full,
        "enqueue_backlog_vs_empty": round3(enq_full / enq_empty),
        "drain_backlog_vs_empty": round3(drain_full / drain_empty),
        "bytes_per_job_at_tenth": round1((m_tenth - m0) / (size / 10) as f64),
        "bytes_per_job_at_size": round1((m_full - m0) / size as f64),
    }))
}

/// Enqueues `n` no-op jobs in batches, then drains `n` with a worker of concurrency 50
/// (until the namespace has completed `completed_after` in all): both rates.
async fn enqueue_then_drain(
    q: &JobQueue,
    n: usize,
    completed_after: u64,
) -> Result<(f64, f64), BoxError> {
    let t = Instant::now();
    enqueue_batched_named(q, n, BATCH, "scale_noop").await?;
    let enq = rate(n, t.elapsed());
    let t = Instant::now();
    let running = worker(q, 50)?.start();
    wait_completed(q, completed_after).await?;
    let drained = rate(n, t.elapsed());
    running.stop().await?;
    Ok((enq, drained))
}

/// `size` delayed jobs due at one instant: promotion time, slowest call, and another
/// namespace's pickup latency meanwhile.
async fn delayed(size: usize) -> Result<serde_json::Value, BoxError> {
    let server = RedisServer::start();
    let url = server.url();
    let q = queue(&server, "scale-delayed").await?;
    let other = queue(&server, "scale-other").await?;
    // Due after the fill: at 40,000 enqueues/s at worst, plus 3 s.
    let lead = Duration::from_secs(3) + Duration::from_secs_f64(size as f64 / 40_000.0);
    let due = q.backend().time().await? + lead;
    let mut left = size;
    while left > 0 {
        let k = left.min(BATCH);
        let jobs: Vec<_> = (0..k)
            .map(|_| {
                let mut j = q.new_job("scale_noop", json!(null));
                j.run_at = RunAt::Time(due);
                j
            })
            .collect();
        q.enqueue_many(&jobs).await?;
        left -= k;
    }
    let filled_before_due = q.backend().time().await? < due;
    set_slowlog(&url, 1_000).await?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    PROBE.set(tx).map_err(|_| "probe already set")?;
    let probe_worker = worker(&other, 10)?.start();
    let main_worker = worker(&q, 50)?.start();
    let wait = (due - q.backend().time().await?).to_std().unwrap_or_default();
    let until_due = Instant::now() + wait;
    // Probe from a second before the due time until every delayed job has run.
    tokio::time::sleep(wait.saturating_sub(Duration::from_secs(1))).await;
    let mut pickups = Vec::new();
    let mut promoted_at = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t = Instant::now();
        other.enqueue("scale_probe", json!(null)).await?;
        let started = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| "a probe job did not start within 5 s")?
            .ok_or("probe channel closed")?;
        if t >= until_due {
            pickups.push(started.saturating_duration_since(t).as_secs_f64() * 1000.0);
        }
        let stats = q.stats().await?;
        if promoted_at.is_none() && t >= until_due && stats.scheduled == 0 {
            promoted_at = Some(Instant::now());
        }
        if stats.counters.completed >= size as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the delayed jobs did not all run within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ran = until_due.elapsed();
    main_worker.stop().await?;
    probe_worker.stop().await?;
    let promoted = promoted_at.map(|t| t.saturating_duration_since(until_due)).unwrap_or(ran);
    let slow = slowlog(&url).await?;
    Ok(json!({
        "filled_before_due": filled_before_due,
        "promotion_s": round3(promoted.as_secs_f64()),
        "promotion_per_s": rate(size, promoted),
        "all_ran_s": round3(ran.as_secs_f64()),
        "other_namespace_pickup_p50_ms": round3(percentile(&mut pickups.clone(), 0.5)),
        "other_namespace_pickup_p99_ms": round3(percentile(&mut pickups.clone(), 0.99)),
        "other_namespace_pickup_max_ms": round3(percentile(&mut pickups, 1.0)),
        "slowlog": slow,
    }))
}

/// A dead-letter queue of `size` and `size` finished records: the cost of each admin call.
async fn dead(size: usize) -> Result<serde_json::Value, BoxError> {
    let server = RedisServer::start();
    let url = server.url();
    // Keep every dead letter, and the finished records until the fill is done.
    let ttl = Duration::from_secs(10) + Duration::from_secs_f64(size as f64 / 10_000.0);
    let cfg = RedisConfig {
        namespace: "scale-dead".into(),
        backend: BackendConfig {
            dead_max: size as u64 + 1,
            result_ttl: ttl,
            ..BackendConfig::default()
        },
        ..RedisConfig::new(&url)
    };
    let q = JobQueue::new(RedisBackend::connect(cfg).await?);
    let filled = Instant::now();
    enqueue_batched_named(&q, size, BATCH, "scale_noop").await?;
    enqueue_batched_named(&q, size, BATCH, "scale_fail").await?;
    let running = worker(&q, 50)?.start();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let s = q.stats().await?;
        if s.counters.completed >= size as u64 && s.dead_letter >= size as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the dead-letter fill did not finish within 15 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await?;
    let fill_s = filled.elapsed().as_secs_f64();
    let fill_end = Instant::now();
    set_slowlog(&url, 1_000).await?;

    let mut calls = BTreeMap::new();
    let b = q.backend().clone();
    let t = Instant::now();
    let head = b.list_dead(0, 50).await?;
    calls.insert("list_dead_head_50_ms", ms(t));
    let t = Instant::now();
    let middle = b.list_dead(size / 2, 50).await?;
    calls.insert("list_dead_middle_50_ms", ms(t));
    let t = Instant::now();
    b.list_dead(size.saturating_sub(50), 50).await?;
    calls.insert("list_dead_tail_50_ms", ms(t));
    if head.len() != 50 || middle.len() != 50 {
        return Err(format!("listing gave {} and {} of 50", head.len(), middle.len()).into());
    }
    let t = Instant::now();
    q.stats().await?;
    calls.insert("stats_ms", ms(t));
    let one: JobId = middle[0].id;
    let t = Instant::now();
    q.get_job(one).await?;
    calls.insert("get_job_ms", ms(t));
    let t = Instant::now();
    q.retry_dead_letter_job(one).await?;
    calls.insert("retry_dead_one_ms", ms(t));

    // The finished records expire `ttl` after they were written: wait for all of them.
    let expire_wait =
        (fill_end + ttl + Duration::from_secs(1)).saturating_duration_since(Instant::now());
    tokio::time::sleep(expire_wait).await;
    let (purged, purge_calls, purge_max) = timed_until_zero(|| b.purge(1_000)).await?;
    calls.insert("purge_1000_slowest_ms", purge_max);
    let t = Instant::now();
    let cleared = q.clear_dead_letter_queue().await?;
    calls.insert("clear_dead_all_ms", ms(t));
    Ok(json!({
        "fill_s": round1(fill_s),
        "calls": calls,
        "purged": purged,
        "purge_calls": purge_calls,
        "cleared": cleared,
        "slowlog": slowlog(&url).await?,
    }))
}

/// Calls `f` until it returns 0: the sum of its results, the number of calls, and the
/// slowest call in milliseconds.
async fn timed_until_zero<F, Fut>(mut f: F) -> Result<(u64, u64, f64), BoxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = jobs_core::Result<u64>>,
{
    let (mut total, mut calls, mut slowest) = (0, 0, 0.0f64);
    loop {
        let t = Instant::now();
        let n = f().await?;
        slowest = slowest.max(ms(t));
        calls += 1;
        total += n;
        if n == 0 || calls > 100_000 {
            return Ok((total, calls, slowest));
        }
    }
}

/// 1, 2, 4 and 8 worker processes on one queue.
async fn processes(size: usize) -> Result<serde_json::Value, BoxError> {
    let server = RedisServer::start();
    let n = size.min(50_000);
    let exe = std::env::current_exe()?;
    let mut out = serde_json::Map::new();
    for procs in [1usize, 2, 4, 8] {
        let ns = format!("scale-procs-{procs}");
        let q = queue(&server, &ns).await?;
        enqueue_batched_named(&q, n, BATCH, "scale_noop").await?;
        let cpu0 = redis_cpu_us(&server).await?;
        let t = Instant::now();
        let mut children = Vec::new();
        for _ in 0..procs {
            children.push(
                tokio::process::Command::new(&exe)
                    .args(["--child-drain", &server.url(), &ns, &n.to_string()])
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        wait_completed(&q, n as u64).await?;
        let elapsed = t.elapsed();
        let cpu = redis_cpu_us(&server).await? - cpu0;
        for mut ch in children {
            let status = ch.wait().await?;
            if !status.success() {
                return Err(format!("a drain child failed: {status}").into());
            }
        }
        out.insert(
            procs.to_string(),
            json!({ "drain_per_s": rate(n, elapsed), "redis_cpu_us_per_job": round1(cpu / n as f64) }),
        );
    }
    Ok(json!({ "jobs": n, "by_processes": out }))
}

/// Three namespaces on three masters, a worker each: Redis CPU per node.
async fn cluster(size: usize) -> Result<serde_json::Value, BoxError> {
    let cluster = RedisCluster::start(3);
    let per_ns = (size / 3).min(30_000);
    // One namespace per master: the first names whose hash tag lands on each node.
    let mut names: Vec<Option<String>> = vec![None; 3];
    for i in 0..1_000 {
        let ns = format!("scale-ns-{i}");
        let node = cluster.node_of(&format!("{{{ns}}}"));
        if names[node].is_none() {
            names[node] = Some(ns);
        }
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    let names: Vec<String> = names.into_iter().flatten().collect();
    if names.len() != 3 {
        return Err("could not place a namespace on every master".into());
    }
    let mut queues = Vec::new();
    for ns in &names {
        let q = queue_at(&cluster.url(), ns).await?;
        enqueue_batched_named(&q, per_ns, BATCH, "scale_noop").await?;
        queues.push(q);
    }
    let urls: Vec<String> = cluster.nodes().iter().map(RedisServer::url).collect();
    let mut cpu0 = Vec::new();
    for u in &urls {
        cpu0.push(redis_cpu_us_at(u).await?);
    }
    let t = Instant::now();
    let mut running = Vec::new();
    for q in &queues {
        running.push(worker(q, 50)?.start());
    }
    for q in &queues {
        wait_completed(q, per_ns as u64).await?;
    }
    let elapsed = t.elapsed();
    for r in running {
        r.stop().await?;
    }
    let mut nodes = Vec::new();
    let mut total = 0.0;
    for (u, c0) in urls.iter().zip(&cpu0) {
        let cpu = redis_cpu_us_at(u).await? - c0;
        total += cpu;
        nodes.push(cpu);
    }
    let shares: Vec<f64> = nodes.iter().map(|c| round3(c / total)).collect();
    Ok(json!({
        "jobs_per_namespace": per_ns,
        "namespaces": names,
        "drain_per_s": rate(3 * per_ns, elapsed),
        "redis_cpu_us_per_job_by_node": nodes.iter().map(|c| round1(c / per_ns as f64)).collect::<Vec<_>>(),
        "cpu_share_by_node": shares,
    }))
}

/// Logs every command slower than `us` microseconds, from now on.
async fn set_slowlog(url: &str, us: u64) -> Result<(), BoxError> {
    command::<()>(url, redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(us))
        .await?;
    command::<()>(url, redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(10_000)).await?;
    command::<()>(url, redis::cmd("SLOWLOG").arg("RESET")).await?;
    Ok(())
}

/// What the slow log holds: how many calls, the slowest (µs) and what it was.
async fn slowlog(url: &str) -> Result<serde_json::Value, BoxError> {
    let entries: Vec<redis::Value> =
        command(url, redis::cmd("SLOWLOG").arg("GET").arg(10_000)).await?;
    let mut slowest = (0i64, String::new());
    let mut over_5ms = 0;
    for e in &entries {
        let redis::Value::Array(fields) = e else { continue };
        let Some(redis::Value::Int(us)) = fields.get(2) else { continue };
        if *us > 5_000 {
            over_5ms += 1;
        }
        if *us > slowest.0 {
            let what = match fields.get(3) {
                Some(redis::Value::Array(args)) => call_summary(args),
                _ => String::new(),
            };
            slowest = (*us, what);
        }
    }
    Ok(json!({
        "calls_over_1ms": entries.len(),
        "calls_over_5ms": over_5ms,
        "slowest_us": slowest.0,
        "slowest_call": slowest.1,
    }))
}

/// A logged call, short: the command and, for a script, its first three arguments after
/// the keys (enough to tell the scripts apart: a fetch's carry its worker id).
fn call_summary(args: &[redis::Value]) -> String {
    let text: Vec<String> = args
        .iter()
        .map(|a| match a {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).chars().take(40).collect(),
            other => format!("{other:?}"),
        })
        .collect();
    let keys = text.get(2).and_then(|k| k.parse::<usize>().ok());
    match (text.first().map(|c| c.to_ascii_uppercase()), keys) {
        (Some(c), Some(k)) if c.starts_with("EVAL") || c == "FCALL" => {
            let argv: Vec<&str> = text.iter().skip(3 + k).take(3).map(String::as_str).collect();
            format!("{c} ({k} keys) {}", argv.join(" "))
        }
        _ => text.into_iter().take(3).collect::<Vec<_>>().join(" "),
    }
}

/// Milliseconds since `since`.
fn ms(since: Instant) -> f64 {
    round3(since.elapsed().as_secs_f64() * 1000.0)
}

/// Aggregate drain rate and Redis CPU per job by worker processes, as an SVG bar chart.
fn processes_svg(part: &serde_json::Value) -> String {
    let by = part["by_processes"].as_object().cloned().unwrap_or_default();
    let mut bars: Vec<(u32, Bar)> = by
        .iter()
        .map(|(k, v)| {
            let bar = Bar {
                label: format!("{k} proc"),
                note: Some(format!("{} µs/job", v["redis_cpu_us_per_job"].as_f64().unwrap_or(0.0))),
                value: v["drain_per_s"].as_f64().unwrap_or(0.0),
            };
            (k.parse().unwrap_or(0), bar)
        })
        .collect();
    bars.sort_by_key(|b| b.0);
    let bars: Vec<Bar> = bars.into_iter().map(|b| b.1).collect();
    bar_chart("Aggregate drain (jobs/s) by worker processes, concurrency 50 each", &bars)
}
