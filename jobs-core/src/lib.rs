//! Background jobs for Rust.
#![doc(html_root_url = "https://docs.rs/jobs-core")]

extern crate self as jobs_core;

pub mod backend;
mod error;
mod job;
mod queue;
mod retry;
mod stats;

pub use error::{Error, Result};
pub use job::{
    EnqueueOutcome, Job, JobDefaults, JobId, JobPriority, JobStatus, MAX_DELAY, MAX_RETRIES,
    MAX_TIMEOUT, NewJob, RunAt,
};
pub use queue::{Enqueue, JobQueue};
pub use retry::RetryPolicy;
pub use stats::{PendingByPriority, QueueCounters, QueueStats};
