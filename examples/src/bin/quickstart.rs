//! Quick start: the queue API on the embedded in-memory backend (no Redis needed).
//!
//! ```text
//! cargo run -p examples --bin quickstart
//! ```
//! Set `REDIS_URL=redis://127.0.0.1:6379` to run the same code against Redis.

use std::time::Duration;

use jobs_core::backend::FetchRequest;
use jobs_core::{JobPriority, JobQueue};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> jobs_core::Result<()> {
    let queue = match std::env::var("REDIS_URL") {
        Ok(url) => JobQueue::redis(&url).await?,
        Err(_) => JobQueue::memory(),
    };
    println!("backend: {}", queue.backend().kind());

    // An immediate high-priority job and a delayed one.
    let id = queue
        .enqueue("sync_portfolio", json!({"user_id": "user-123"}))
        .priority(JobPriority::High)
        .await?;
    let later = queue.enqueue("send_report", json!({})).delay(Duration::from_secs(3600)).await?;
    println!("enqueued {id} (now) and {later} (in an hour)");
    println!("stats: {}", serde_json::to_string(&queue.stats().await?)?);

    // What a worker does: lease the job, run it, acknowledge it with a result.
    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "quickstart".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    };
    for leased in queue.fetch(&req).await?.jobs {
        println!("running {} with {}", leased.job.name, leased.job.args);
        queue.complete(leased.lease, json!({"status": "completed"})).await?;
    }

    queue.cancel_job(later).await?;
    let job = queue.get_job(id).await?;
    println!("job: {}", serde_json::to_string_pretty(&job)?);
    println!("stats: {}", serde_json::to_string(&queue.stats().await?)?);
    Ok(())
}
