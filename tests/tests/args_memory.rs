//! What keeping a finished job's arguments costs in Redis: `MEMORY USAGE` of the jobs hash
//! after 10,000 jobs completed with arguments of a few sizes. A measurement, not a check:
//! `cargo test -p jobs-test-support --test args_memory -- --ignored --nocapture`.

use std::time::Duration;

use jobs_core::NewJob;
use jobs_core::backend::{Backend, BackendConfig, Completion, FetchRequest};
use jobs_test_support::{redis_backend, shared, unique_namespace};
use serde_json::json;

const N: usize = 10_000;

async fn usage_after_completing(
    args: serde_json::Value,
) -> Result<i64, Box<dyn std::error::Error>> {
    let ns = unique_namespace("argsmem");
    let b = redis_backend(&ns, BackendConfig::default()).await;
    for _ in 0..N / 500 {
        let batch: Vec<NewJob> =
            (0..500).map(|_| NewJob::new("sync_portfolio", args.clone())).collect();
        b.enqueue(&batch).await?;
    }
    let req = FetchRequest {
        queues: Vec::new(),
        max: 500,
        worker_id: "w".into(),
        lease: Duration::from_secs(60),
        grace: Duration::ZERO,
    };
    for _ in 0..N / 500 {
        let f = b.fetch(&req).await?;
        let done: Vec<Completion> =
            f.jobs.iter().map(|l| Completion { lease: l.lease, result: json!(null) }).collect();
        b.complete(&done).await?;
    }
    assert_eq!(b.stats().await?.counters.completed, N as u64);
    let client = redis::Client::open(shared().url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = format!("jobq:{{{ns}}}:jobs");
    let used: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await?;
    Ok(used)
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn finished_jobs_args_memory() -> Result<(), Box<dyn std::error::Error>> {
    let empty = usage_after_completing(json!({})).await?;
    println!("args {{}} (2 bytes): {} bytes/job in the jobs hash", empty / N as i64);
    for len in [20usize, 100, 1000] {
        let args = json!({ "user_id": "u".repeat(len.saturating_sub(14)) });
        let n = args.to_string().len();
        let used = usage_after_completing(args).await?;
        println!(
            "args of {n} bytes: {} bytes/job, {} more than {{}}",
            used / N as i64,
            (used - empty) / N as i64
        );
    }
    Ok(())
}
