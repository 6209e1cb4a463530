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

fn main() -> std::process::ExitCode {
    jobs_core::runner::main()
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
