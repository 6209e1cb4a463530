//! Typed enqueue and an in-process worker, on the in-memory backend.
//!
//! ```text
//! cargo run -p examples --bin typed_enqueue
//! ```

use std::time::Duration;

use examples::my_tasks::{SendWelcomeEmailJob, Welcome};
use jobs_core::service::{JobService, ServiceConfig};
use jobs_core::{JobStatus, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let service = JobService::connect(ServiceConfig::default()).await?;
    service.start()?;
    let queue = service.queue();

    // The argument type is checked by the compiler: passing anything but `Welcome` fails.
    let ok = queue
        .enqueue_typed::<SendWelcomeEmailJob>(Welcome {
            user_id: "user-123".into(),
            email: "ada@example.com".into(),
        })
        .await?;
    let bad = queue
        .enqueue_typed::<SendWelcomeEmailJob>(Welcome {
            user_id: "user-456".into(),
            email: "nope".into(),
        })
        .await?;

    for id in [ok, bad] {
        // Bounded wait for the worker to finish the job.
        for _ in 0..200 {
            let job = queue.get_job(id).await?.ok_or(jobs_core::Error::NotFound { id })?;
            if matches!(job.status, JobStatus::Completed | JobStatus::Failed) {
                println!("{id}: {} result={:?} error={:?}", job.status, job.result, job.error);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("stats: {}", serde_json::to_string(&service.get_full_stats().await?.queue)?);
    service.stop().await
}
