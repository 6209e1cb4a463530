//! Background jobs for Rust: typed handlers declared with attribute macros, run by workers
//! over a Redis-backed queue (or an embedded in-memory one) with four strict priorities,
//! delayed jobs, retries with exponential backoff, a dead-letter queue, cancellation,
//! timeouts, leases that survive a killed process, schedules that fire exactly once across
//! processes, statistics, an HTTP admin API and a dashboard.
//!
//! ```rust,standalone_crate
//! use jobs_core::prelude::*;
//! use jobs_core::JobStatus;
//! use jobs_core::service::{JobService, ServiceConfig};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SyncPortfolio { user_id: String }
//!
//! #[job_handler("sync_portfolio", max_retries = 5, timeout = "30s")]
//! async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<String, JobError> {
//!     Ok(format!("synced {} (attempt {})", args.user_id, ctx.attempt()))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jobs_core::Result<()> {
//! // In memory here; `BackendChoice::Redis(RedisConfig::new(url))` for a deployment.
//! let service = JobService::connect(ServiceConfig::default()).await?;
//! service.start()?;
//! let id = service
//!     .queue()
//!     .enqueue_typed::<SyncPortfolioJob>(SyncPortfolio { user_id: "user-123".into() })
//!     .await?;
//! # for _ in 0..500 {
//! #     if service.queue().get_job(id).await?.map(|j| j.status) == Some(JobStatus::Completed) { break }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! let job = service.queue().get_job(id).await?.expect("kept for 24 h");
//! assert_eq!(job.status, JobStatus::Completed);
//! assert_eq!(job.result, Some(serde_json::json!("synced user-123 (attempt 1)")));
//! service.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Delivery is at least once: a job whose worker dies is run again by another, so handlers
//! should be idempotent. Handlers register at link time through `inventory`, which only
//! sees crates the binary links: a runner names its task crates (`use my_tasks as _;`).
//! See [`runner`] for a ready-made `main`, [`JobQueue`] for the queue API, and
//! [`backend`] for the storage contract.
//!
//! With the `otel` feature, a job carries the W3C trace context of the span that enqueued
//! it ([`TraceContext`]), each attempt runs in an OpenTelemetry consumer span linked to it
//! ([`worker::TraceParent`]), and the runner exports spans over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the README's OpenTelemetry section).
#![cfg_attr(
    not(feature = "runner"),
    doc = "",
    doc = "[`runner`]: https://docs.rs/jobs-core/latest/jobs_core/runner/"
)]
#![doc(html_root_url = "https://docs.rs/jobs-core")]

extern crate self as jobs_core;

#[cfg(feature = "api")]
pub mod api;
pub mod backend;
pub mod bulk;
mod context;
mod declared;
mod error;
pub mod escape;
pub mod flow;
mod handler;
mod job;
mod marks;
mod metrics;
pub mod options;
#[cfg(feature = "otel")]
mod otel;
mod queue;
pub mod redis;
pub mod registry;
mod retry;
#[cfg(feature = "runner")]
pub mod runner;
pub mod schedule;
mod scheduler;
pub mod service;
mod stats;
pub mod testing;
mod time;
mod typed;
pub mod worker;

pub use context::{JobContext, MissingState, State};
pub use error::{Error, Result};
pub use flow::{
    ConcurrencyLimit, DEFAULT_QUEUE, FlowControl, LimitsInfo, OnConflict, RateLimit, UniqueLock,
    UniqueSpec, UniqueUntil,
};
pub use handler::{
    BoxFuture, HandlerFn, IntoJobError, IntoJobResult, JobArgs, JobDefinition, JobError, JobOutput,
};
pub use job::{
    DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, EnqueueOutcome, Job, JobId, JobLimits, JobPriority,
    JobStatus, Limiter, LimiterKind, LimiterUsage, MAX_BAGGAGE_LEN, MAX_DELAY,
    MAX_PROGRESS_MESSAGE, MAX_RETRIES, MAX_RETRY_DELAY, MAX_TIMEOUT, MAX_TRACEPARENT_LEN,
    MAX_TRACESTATE_LEN, MIN_TIMEOUT, NewJob, Progress, RunAt, TraceContext, check_horizon,
};
pub use jobs_macros::{cron, daily_at, every_minutes, every_seconds, job_handler};
pub use marks::{Permanent, RetryAfter};
pub use options::{HandlerDefaults, JobDefaults, JobOptions};
pub use queue::{DEFAULT_UNIQUE_WINDOW, Enqueue, Enqueued, JobQueue};
pub use registry::{
    HandlerRegistration, Location, Registry, RegistryError, ScheduleDef, ScheduleKind,
    ScheduleRegistration,
};
pub use retry::RetryPolicy;
pub use schedule::{
    CronExpr, MAX_INTERVAL_SECS, MisfirePolicy, ScheduleInfo, ScheduleSpec, ScheduleType,
};
pub use scheduler::{Scheduler, SchedulerConfig};
pub use stats::{
    FullStats, HandlerInfo, PendingByPriority, QueueCounters, QueueInfo, QueueStats,
    SchedulerStats, UnhandledStats, WorkerStats, WorkerStatus,
};
pub use worker::QueueSelection;

/// What handler code needs, in one import: `use jobs_core::prelude::*;`.
///
/// Includes serde's `Serialize` and `Deserialize` and schemars' `JsonSchema` (traits and
/// derives). The derives expand to paths through the `serde` and `schemars` crates, so a
/// crate that derives them depends on those crates itself (or adds
/// `#[serde(crate = "jobs_core::__private::serde")]`,
/// `#[schemars(crate = "jobs_core::schemars")]`). Deriving `JsonSchema` on a handler's
/// argument type is optional: with it, the HTTP API lists a JSON Schema of the arguments
/// and the dashboard builds a form from it.
pub mod prelude {
    pub use crate::{
        JobContext, JobDefinition, JobError, JobPriority, JobQueue, Permanent, RetryAfter, cron,
        daily_at, every_minutes, every_seconds, job_handler,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// The `schemars` version whose `JsonSchema` argument types may derive (see [`prelude`]).
pub use schemars;

/// Not public API: what the macros' generated code names.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::JobContext;
    pub use crate::flow::{
        ConcurrencyLimit, DEFAULT_QUEUE, FlowControl, OnConflict, RateLimit, UniqueSpec,
        UniqueUntil,
    };
    pub use crate::handler::rt::*;
    pub use crate::handler::{BoxFuture, JobDefinition, JobError};
    pub use crate::job::JobPriority;
    pub use crate::options::HandlerDefaults;
    pub use crate::registry::{HandlerRegistration, Location, ScheduleKind, ScheduleRegistration};
    pub use inventory;
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::time::Duration;
}
