//! A runner for the reliability tests: `jobs_core::runner::main()` with test handlers that
//! record every start in Redis (`TEST_STARTS_KEY`, a hash of job id → starts, and
//! `<TEST_STARTS_KEY>:first`, job id → Unix milliseconds of its first start), so a test can
//! count duplicates across processes it kills and tell when they ran.
//!
//! The starts go to `TEST_STARTS_URL` (a plain `redis://` server) if set, else to
//! `REDIS_URL`: a failover test keeps them on a server that is not killed, and a
//! `redis+sentinel://` deployment URL is not one a plain client opens.

use std::sync::OnceLock;
use std::time::Duration;

use jobs_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Sleep {
    ms: u64,
}

fn redis() -> Option<redis::Client> {
    static CLIENT: OnceLock<Option<redis::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let url = std::env::var("TEST_STARTS_URL").or_else(|_| std::env::var("REDIS_URL"));
            redis::Client::open(url.ok()?).ok()
        })
        .clone()
}

async fn record_start(ctx: &JobContext) -> Result<(), JobError> {
    let (Some(client), Ok(key)) = (redis(), std::env::var("TEST_STARTS_KEY")) else {
        return Ok(());
    };
    let mut c = client.get_multiplexed_async_connection().await?;
    let id = ctx.job_id().to_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    redis::pipe()
        .atomic()
        .cmd("HINCRBY")
        .arg(&key)
        .arg(&id)
        .arg(1)
        .ignore()
        .cmd("HSETNX")
        .arg(format!("{key}:first"))
        .arg(&id)
        .arg(now_ms)
        .ignore()
        .exec_async(&mut c)
        .await?;
    Ok(())
}

/// Records its start, then sleeps `ms`.
#[job_handler("reliability_sleep")]
async fn reliability_sleep(args: Sleep, ctx: JobContext) -> Result<(), JobError> {
    record_start(&ctx).await?;
    tokio::time::sleep(Duration::from_millis(args.ms)).await;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Limited {
    key: u32,
    n: u32,
    ms: u64,
}

/// Appends `line` to the list `<TEST_STARTS_KEY>:events` (the limits tests read it).
async fn record_event(line: String) -> Result<(), JobError> {
    let (Some(client), Ok(key)) = (redis(), std::env::var("TEST_STARTS_KEY")) else {
        return Ok(());
    };
    let mut c = client.get_multiplexed_async_connection().await?;
    redis::cmd("RPUSH").arg(format!("{key}:events")).arg(line).exec_async(&mut c).await?;
    Ok(())
}

fn local_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// One at a time per `key`: records `s <key> <id> <attempt> <ms>` when it starts and
/// `e ...` when it ends (this machine's clock), sleeping `ms` in between.
#[job_handler("limits_exclusive", concurrency(max = 1, by = [key]))]
async fn limits_exclusive(args: Limited, ctx: JobContext) -> Result<(), JobError> {
    let at = |kind: &str| {
        format!("{kind} {} {} {} {}", args.key, ctx.job_id(), ctx.attempt(), local_ms())
    };
    record_event(at("s")).await?;
    tokio::time::sleep(Duration::from_millis(args.ms)).await;
    record_event(at("e")).await?;
    let _ = args.n;
    Ok(())
}

/// At most 10 starts a second per `key`: records `r <key> <id> <attempt> <start ms>`, the
/// start by the backend's clock (the instant the limiter counted).
#[job_handler("limits_rated", rate_limit(max = 10, per = "1s", by = [key]))]
async fn limits_rated(args: Limited, ctx: JobContext) -> Result<(), JobError> {
    let started = ctx.started_at().map_or(0, |t| t.timestamp_millis());
    record_event(format!("r {} {} {} {started}", args.key, ctx.job_id(), ctx.attempt())).await?;
    let _ = (args.n, args.ms);
    Ok(())
}

fn main() -> std::process::ExitCode {
    if let Ok(n) = std::env::var("TEST_UNIQUE_BURST") {
        return unique_burst(&n);
    }
    jobs_core::runner::main()
}

#[derive(Debug, Serialize, Deserialize)]
struct Keyed {
    key: u32,
    n: u32,
}

/// Unique per `key` while queued or running: the multi-process uniqueness test's job.
#[job_handler("unique_burst", unique(by = [key], for = "10m"))]
async fn unique_burst_job(args: Keyed) -> Result<(), JobError> {
    let _ = args.n;
    Ok(())
}

/// `TEST_UNIQUE_BURST=<jobs>,<keys>`: instead of running, enqueues `<jobs>` jobs of
/// `unique_burst` at once (all in flight together) over `<keys>` keys, in `REDIS_URL`'s
/// `JOBS_NAMESPACE`, and prints `created=<n> duplicate=<n>`.
fn unique_burst(spec: &str) -> std::process::ExitCode {
    let parsed = spec
        .split_once(',')
        .and_then(|(j, k)| Some((j.parse::<u32>().ok()?, k.parse::<u32>().ok()?)));
    let Some((jobs, keys)) = parsed.filter(|(_, k)| *k > 0) else {
        eprintln!("TEST_UNIQUE_BURST must be <jobs>,<keys>, found {spec}");
        return std::process::ExitCode::FAILURE;
    };
    let run = async {
        let url = std::env::var("REDIS_URL").map_err(|e| e.to_string())?;
        let mut cfg = jobs_core::backend::redis::RedisConfig::new(&url);
        cfg.namespace = std::env::var("JOBS_NAMESPACE").map_err(|e| e.to_string())?;
        let backend = jobs_core::backend::redis::RedisBackend::connect(cfg)
            .await
            .map_err(|e| e.to_string())?;
        let queue = JobQueue::new(backend);
        let sends =
            (0..jobs).map(|n| queue.enqueue("unique_burst", Keyed { key: n % keys, n }).report());
        let out = futures::future::join_all(sends).await;
        let mut created = 0;
        let mut duplicate = 0;
        for o in out {
            if o.map_err(|e| e.to_string())?.is_duplicate() { duplicate += 1 } else { created += 1 }
        }
        println!("created={created} duplicate={duplicate}");
        Ok::<(), String>(())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match rt.map_err(|e| e.to_string()).and_then(|rt| rt.block_on(run)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unique burst: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Soak {
    kind: String,
    ms: u64,
}

/// The chaos soak's job: records its start, then succeeds, fails for good, panics or
/// hangs past its timeout, as its `kind` says.
#[job_handler("soak_job")]
async fn soak_job(args: Soak, ctx: JobContext) -> Result<(), JobError> {
    record_start(&ctx).await?;
    tokio::time::sleep(Duration::from_millis(args.ms)).await;
    match args.kind.as_str() {
        "fail" => Err(JobError::permanent_msg("soak: deliberate failure")),
        "panic" => panic!("soak: deliberate panic"),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The chaos soak's one-second schedule: every tick records its start.
#[every_seconds(1, name = "soak_tick")]
async fn soak_tick(ctx: JobContext) -> Result<(), JobError> {
    record_start(&ctx).await
}
