//! Helpers the benchmark binaries share (`bench`, `scale`): queues and workers on a private
//! server, its figures (`INFO`, `SLOWLOG`), and the arithmetic of the reports.
//!
//! Not part of the example application: the handlers live in each binary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::backend::BackendConfig;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::worker::{JobWorker, WorkerConfig};
use jobs_core::{JobQueue, NewJob, Registry, State};
use jobs_test_support::RedisServer;
use serde_json::json;

/// The error type of the benchmarks: anything, reported and exit 1.
pub type BoxError = Box<dyn std::error::Error>;

/// A queue on `url` in namespace `ns`, with the backend's defaults.
pub async fn queue_at(url: &str, ns: &str) -> jobs_core::Result<JobQueue> {
    let cfg = RedisConfig {
        namespace: ns.into(),
        backend: BackendConfig::default(),
        ..RedisConfig::new(url)
    };
    Ok(JobQueue::new(RedisBackend::connect(cfg).await?))
}

/// A queue on `url` in namespace `ns` whose enqueues are acknowledged only once `replicas`
/// replicas have them (durable writes, `WAIT`).
pub async fn durable_queue_at(url: &str, ns: &str, replicas: u32) -> jobs_core::Result<JobQueue> {
    let cfg =
        RedisConfig { namespace: ns.into(), durable_writes: replicas, ..RedisConfig::new(url) };
    Ok(JobQueue::new(RedisBackend::connect(cfg).await?))
}

/// Starts a master and a replica of it (`--replicaof`, diskless sync without delay) and
/// waits, 20 s at most, until the master counts the replica as connected and the replica's
/// link is up.
pub async fn master_and_replica() -> Result<(RedisServer, RedisServer), BoxError> {
    let sync = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"];
    let master = RedisServer::builder().args(sync).start();
    let replica = RedisServer::builder()
        .args(sync)
        .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
        .start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = info(&replica, "replication").await?.contains("master_link_status:up");
        let counted = field(&info(&master, "replication").await?, "connected_slaves") == Some(1.0);
        if up && counted {
            return Ok((master, replica));
        }
        if Instant::now() >= deadline {
            return Err("the replica did not sync with the master within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A queue on `server` in namespace `ns`.
pub async fn queue(server: &RedisServer, ns: &str) -> jobs_core::Result<JobQueue> {
    queue_at(&server.url(), ns).await
}

/// A worker on `q` running every handler linked into the binary, `concurrency` at a time.
pub fn worker(q: &JobQueue, concurrency: usize) -> jobs_core::Result<JobWorker> {
    let cfg = WorkerConfig { max_concurrent_jobs: concurrency, ..WorkerConfig::default() };
    let registry = Arc::new(Registry::global()?.clone());
    JobWorker::with_registry(q.clone(), registry, Arc::new(State::new()), cfg)
}

/// Waits (10 minutes at most) until the namespace has completed `n` jobs in all.
pub async fn wait_completed(q: &JobQueue, n: u64) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while q.stats().await?.counters.completed < n {
        if Instant::now() > deadline {
            return Err("drain did not finish within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Enqueues `n` jobs named `name` (no args), `batch` per call.
pub async fn enqueue_batched_named(
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

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// `n` per second of `d`, rounded.
pub fn rate(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64()).round()
}

/// Rounded to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounded to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs one command on the server at `url` over a fresh connection.
pub async fn command<T: redis::FromRedisValue>(
    url: &str,
    cmd: &redis::Cmd,
) -> Result<T, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut c).await
}

/// One section of `INFO`.
pub async fn info(server: &RedisServer, section: &str) -> Result<String, redis::RedisError> {
    info_at(&server.url(), section).await
}

/// One section of `INFO` of the server at `url`.
pub async fn info_at(url: &str, section: &str) -> Result<String, redis::RedisError> {
    command(url, redis::cmd("INFO").arg(section)).await
}

/// A numeric field of an `INFO` reply.
pub fn field(info: &str, name: &str) -> Option<f64> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// The server's CPU time so far (user + system), in microseconds.
pub async fn redis_cpu_us(server: &RedisServer) -> Result<f64, BoxError> {
    redis_cpu_us_at(&server.url()).await
}

/// The CPU time so far of the server at `url`, in microseconds.
pub async fn redis_cpu_us_at(url: &str) -> Result<f64, BoxError> {
    let i = info_at(url, "cpu").await?;
    let user = field(&i, "used_cpu_user").ok_or("no used_cpu_user in INFO")?;
    let sys = field(&i, "used_cpu_sys").ok_or("no used_cpu_sys in INFO")?;
    Ok((user + sys) * 1e6)
}

/// The server's `used_memory`, in bytes.
pub async fn used_memory(server: &RedisServer) -> Result<f64, BoxError> {
    let i = info(server, "memory").await?;
    Ok(field(&i, "used_memory").ok_or("no used_memory in INFO")?)
}

/// The server's version string.
pub async fn redis_version(server: &RedisServer) -> Result<String, BoxError> {
    let i = info(server, "server").await?;
    Ok(i.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

/// `--child-drain URL NS N`: a worker of concurrency 50 that exits once the namespace has
/// completed N jobs (the scenarios with several processes).
pub async fn child_drain(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, n] = args else {
        return Err("--child-drain takes URL NAMESPACE JOBS".into());
    };
    let n: u64 = n.parse()?;
    let q = queue_at(url, ns).await?;
    let running = worker(&q, 50)?.start();
    wait_completed(&q, n).await?;
    running.stop().await?;
    Ok(())
}

/// Zeroes the server's `INFO` counters (`CONFIG RESETSTAT`).
pub async fn reset_stats(server: &RedisServer) -> Result<(), redis::RedisError> {
    command(&server.url(), redis::cmd("CONFIG").arg("RESETSTAT")).await
}

/// `INFO commandstats` as microseconds per job, largest first.
pub async fn command_profile(
    server: &RedisServer,
    jobs: usize,
) -> Result<serde_json::Value, BoxError> {
    let i = info(server, "commandstats").await?;
    let mut rows: Vec<(String, f64)> = i
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let usec =
                rest.split(',').find_map(|kv| kv.strip_prefix("usec="))?.parse::<f64>().ok()?;
            Some((name.to_owned(), round3(usec / jobs as f64)))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(serde_json::Value::Object(rows.into_iter().take(12).map(|(k, v)| (k, json!(v))).collect()))
}

/// One bar of [`bar_chart`]: its labels under the bar (one or two lines) and its value.
pub struct Bar {
    /// The first line under the bar.
    pub label: String,
    /// An optional second line under it.
    pub note: Option<String>,
    /// Its height.
    pub value: f64,
}

/// A bar chart as SVG, with `title` above it and a scale of five lines.
pub fn bar_chart(title: &str, bars: &[Bar]) -> String {
    let max = bars.iter().map(|b| b.value).fold(1.0, f64::max);
    let notes = bars.iter().any(|b| b.note.is_some());
    let (w, h, left) = (560.0, 300.0, 70.0);
    let bottom = if notes { 56.0 } else { 40.0 };
    let bw = (w - left - 20.0) / bars.len().max(1) as f64;
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <text x='{left}' y='16' font-size='14'>{title}</text>\n"
    );
    for i in 0..=4 {
        let y = h - bottom - (h - bottom - 30.0) * f64::from(i) / 4.0;
        let label = (max * f64::from(i) / 4.0).round();
        out += &format!(
            "<line x1='{left}' x2='{}' y1='{y}' y2='{y}' stroke='#ddd'/><text x='{}' y='{}' text-anchor='end'>{label}</text>\n",
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let bh = (h - bottom - 30.0) * b.value / max;
        let x = left + bw * i as f64 + bw * 0.15;
        let cx = x + bw * 0.35;
        let y = h - bottom - bh;
        out += &format!(
            "<rect x='{x}' y='{y}' width='{}' height='{bh}' fill='#3b6fd8'/><text x='{cx}' y='{}' text-anchor='middle'>{}</text><text x='{cx}' y='{}' text-anchor='middle'>{}</text>\n",
            bw * 0.7,
            h - bottom + 16.0,
            b.label,
            y - 4.0,
            b.value.round()
        );
        if let Some(note) = &b.note {
            out += &format!(
                "<text x='{cx}' y='{}' text-anchor='middle'>{note}</text>\n",
                h - bottom + 32.0
            );
        }
    }
    out += "</svg>\n";
    out
}
