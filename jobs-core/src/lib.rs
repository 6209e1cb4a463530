//! Background jobs for Rust.
#![doc(html_root_url = "https://docs.rs/jobs-core")]

extern crate self as jobs_core;

#[cfg(feature = "api")]
pub mod api;
pub mod backend;
mod context;
mod cron;
mod error;
mod handler;
mod job;
mod metrics;
mod queue;
pub mod registry;
mod retry;
pub mod runner;
mod scheduler;
pub mod service;
mod stats;
mod typed;
pub mod worker;

pub use context::{JobContext, MissingState, State};
pub use cron::{CronExpr, MAX_INTERVAL_SECS};
pub use error::{Error, Result};
pub use handler::{
    BoxFuture, HandlerFn, IntoJobError, IntoJobResult, JobArgs, JobDefinition, JobError, JobOutput,
};
pub use job::{
    EnqueueOutcome, Job, JobDefaults, JobId, JobPriority, JobStatus, MAX_DELAY, MAX_RETRIES,
    MAX_TIMEOUT, NewJob, RunAt,
};
pub use jobs_macros::{cron, daily_at, every_minutes, every_seconds, job_handler};
pub use queue::{Enqueue, JobQueue};
pub use registry::{
    HandlerDefaults, HandlerRegistration, Location, Registry, RegistryError, ScheduleDef,
    ScheduleKind, ScheduleRegistration,
};
pub use retry::RetryPolicy;
pub use scheduler::{
    MisfirePolicy, ScheduleInfo, ScheduleSpec, ScheduleType, Scheduler, SchedulerConfig,
    SchedulerStats,
};
pub use stats::{PendingByPriority, QueueCounters, QueueStats};

/// What handler code needs, in one import: `use jobs_core::prelude::*;`.
///
/// Includes serde's `Serialize` and `Deserialize` (traits and derives). The derives expand to
/// paths through the `serde` crate, so a crate that derives them depends on `serde` itself
/// (or adds `#[serde(crate = "jobs_core::__private::serde")]`).
pub mod prelude {
    pub use crate::{
        JobContext, JobDefinition, JobError, JobPriority, JobQueue, cron, daily_at, every_minutes,
        every_seconds, job_handler,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Not public API: what the macros' generated code names.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::JobContext;
    pub use crate::handler::rt::*;
    pub use crate::handler::{BoxFuture, JobDefinition, JobError};
    pub use crate::job::JobPriority;
    pub use crate::registry::{
        HandlerDefaults, HandlerRegistration, Location, ScheduleKind, ScheduleRegistration,
    };
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::time::Duration;
}
