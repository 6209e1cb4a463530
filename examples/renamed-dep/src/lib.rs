//! A handler written in a crate that calls jobs-core `jobs` (a renamed dependency).

use jobs::JobError;
use serde::{Deserialize, Serialize};

/// The arguments of [`greet`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Greet {
    /// Who to greet.
    pub name: String,
}

/// Greets someone; an empty name is a permanent error.
#[jobs::job_handler("renamed_dep_greet", max_retries = 0)]
pub async fn greet(args: Greet) -> Result<String, JobError> {
    if args.name.is_empty() {
        return Err(JobError::permanent_msg("no name"));
    }
    Ok(format!("hello, {}", args.name))
}

/// Loads a file, with context on failure: the stored error is the whole chain.
#[jobs::job_handler("renamed_dep_load", max_retries = 0)]
pub async fn load(args: Greet) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    Err(err).with_context(|| format!("loading {}", args.name))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jobs::worker::{JobWorker, WorkerConfig};
    use jobs::{JobQueue, JobStatus};

    use super::*;

    /// Runs one job on a worker until it leaves the queue (bounded: 5 s).
    async fn run_to_end(queue: &JobQueue, id: jobs::JobId) -> jobs::Job {
        let running =
            JobWorker::new(queue.clone(), WorkerConfig::default()).expect("worker").start();
        let mut job = None;
        for _ in 0..500 {
            let j = queue.get_job(id).await.expect("get").expect("job exists");
            if matches!(j.status, JobStatus::Completed | JobStatus::Failed) {
                job = Some(j);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.stop().await.expect("stop");
        job.expect("the job finished within 5 s")
    }

    // regression: an `anyhow::Result` handler did not compile ("`anyhow::Error:
    // std::error::Error` is not satisfied"), and the worker stored only the error's top line
    // (`to_string()`), losing the context chain.
    #[tokio::test]
    async fn anyhow_handler_stores_the_error_chain() {
        let queue = JobQueue::memory();
        let id =
            queue.enqueue_typed::<LoadJob>(Greet { name: "a.csv".into() }).await.expect("enqueue");
        let job = run_to_end(&queue, id).await;
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.error.as_deref(), Some("loading a.csv: no such file"));
    }

    // regression: with jobs-core renamed in Cargo.toml, the generated code named
    // `::jobs_core` and failed with "cannot find `jobs_core` in the crate root".
    #[tokio::test]
    async fn renamed_dependency_handler_runs() {
        let queue = JobQueue::memory();
        let id =
            queue.enqueue_typed::<GreetJob>(Greet { name: "ada".into() }).await.expect("enqueue");
        let job = run_to_end(&queue, id).await;
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.result, Some(serde_json::json!("hello, ada")));
    }
}
