//! The scheduler's endpoints: `scheduler/stats` and `scheduled/*`.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::model::Priority;
use crate::metrics;
use crate::schedule::{MisfirePolicy, ScheduleInfo, ScheduleSpec, ScheduleType};
use crate::stats::SchedulerStats;

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduleView {
    /// Every `seconds` seconds.
    Interval {
        /// The period.
        #[schema(minimum = 1, maximum = 315_360_000)]
        seconds: u64,
    },
    /// On a 5-field cron expression (`minute hour day-of-month month day-of-week`).
    Cron {
        /// The expression, e.g. `0 8 * * *`.
        expression: String,
        /// An IANA time zone, e.g. `Europe/Paris` (default UTC).
        #[serde(default)]
        timezone: Option<String>,
    },
    /// Once, at a time (one already past fires at once).
    Once {
        /// When (RFC 3339).
        at: DateTime<Utc>,
    },
}

impl From<ScheduleView> for ScheduleType {
    fn from(v: ScheduleView) -> Self {
        match v {
            ScheduleView::Interval { seconds } => ScheduleType::Interval { seconds },
            ScheduleView::Cron { expression, timezone } => {
                ScheduleType::Cron { expression, timezone }
            }
            ScheduleView::Once { at } => ScheduleType::Once { at },
        }
    }
}

/// What happens to ticks that were due while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Fire once for all missed ticks, then resume on schedule (the default).
    Coalesce,
    /// Fire every missed tick, then resume.
    CatchUp,
}

impl From<MisfirePolicy> for Misfire {
    fn from(m: MisfirePolicy) -> Self {
        match m {
            MisfirePolicy::Coalesce => Misfire::Coalesce,
            MisfirePolicy::CatchUp => Misfire::CatchUp,
        }
    }
}

impl From<Misfire> for MisfirePolicy {
    fn from(m: Misfire) -> Self {
        match m {
            Misfire::Coalesce => MisfirePolicy::Coalesce,
            Misfire::CatchUp => MisfirePolicy::CatchUp,
        }
    }
}

/// A schedule to register (or to replace the one of that name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "portfolio_sync", "job_name": "sync_all_portfolios",
    "schedule": {"type": "interval", "seconds": 300}, "priority": "normal"}))]
pub struct RegisterRequest {
    /// The schedule's name (unique in the deployment).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The handler its jobs run.
    #[schema(min_length = 1, max_length = 200)]
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleView,
    /// The arguments of its jobs (default `{}`); they must fit the handler (else 422).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// The priority of its jobs (default: the handler's, else normal).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Whether it fires (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// What happens to missed ticks (default `coalesce`).
    #[serde(default)]
    pub misfire: Option<Misfire>,
}

/// One schedule and its state (the spec's task object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleInfoView {
    /// The schedule's name.
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// `interval`, `cron` or `once`.
    pub schedule_type: String,
    /// The period of an interval schedule.
    pub interval_seconds: Option<u64>,
    /// The expression of a cron schedule.
    pub cron_expression: Option<String>,
    /// The time zone of a cron schedule (`null`: UTC).
    pub timezone: Option<String>,
    /// The instant of a one-time schedule.
    pub run_at: Option<DateTime<Utc>>,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// The priority of its jobs.
    pub priority: Priority,
    /// Whether it fires.
    pub enabled: bool,
    /// When it last enqueued a job.
    pub last_run: Option<DateTime<Utc>>,
    /// Its next tick (`null` when disabled, or for a one-time schedule that has fired).
    pub next_run: Option<DateTime<Utc>>,
    /// How many jobs it has enqueued.
    pub run_count: u64,
    /// The last job it enqueued.
    pub last_job_id: Option<Uuid>,
    /// What happens to missed ticks.
    pub misfire_policy: Misfire,
}

impl From<ScheduleInfo> for ScheduleInfoView {
    fn from(i: ScheduleInfo) -> Self {
        ScheduleInfoView {
            name: i.name,
            job_name: i.job_name,
            schedule_type: i.schedule_type,
            interval_seconds: i.interval_seconds,
            cron_expression: i.cron_expression,
            timezone: i.timezone,
            run_at: i.run_at,
            args: i.args,
            priority: i.priority.into(),
            enabled: i.enabled,
            last_run: i.last_run,
            next_run: i.next_run,
            run_count: i.run_count,
            last_job_id: i.last_job_id.map(|id| id.0),
            misfire_policy: i.misfire_policy.into(),
        }
    }
}

/// The spec's "Scheduler Statistics" object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SchedulerStatsView {
    /// Whether this process's scheduler loop is running.
    pub running: bool,
    /// Schedules in the deployment.
    pub total_tasks: u64,
    /// Enabled schedules.
    pub enabled_tasks: u64,
    /// Disabled schedules.
    pub disabled_tasks: u64,
    /// Enabled schedules whose next run has come and not fired yet.
    pub due_tasks: u64,
    /// Every schedule, by name.
    pub tasks: Vec<ScheduleInfoView>,
}

impl From<SchedulerStats> for SchedulerStatsView {
    fn from(s: SchedulerStats) -> Self {
        SchedulerStatsView {
            running: s.running,
            total_tasks: s.total_tasks as u64,
            enabled_tasks: s.enabled_tasks as u64,
            disabled_tasks: s.disabled_tasks as u64,
            due_tasks: s.due_tasks as u64,
            tasks: s.tasks.into_iter().map(Into::into).collect(),
        }
    }
}

/// Every schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleListResponse {
    /// How many.
    pub count: u64,
    /// Each, by name.
    pub tasks: Vec<ScheduleInfoView>,
}

/// The job a run-now enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// The schedule.
    pub name: String,
    /// The job enqueued.
    pub job_id: Uuid,
}

/// A schedule removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnregisterResponse {
    /// The schedule.
    pub name: String,
    /// Always true.
    pub removed: bool,
}

/// Appends the scheduler's gauges to a metrics page.
pub(crate) async fn render_metrics(s: &ApiState, out: &mut String) -> Result<(), ApiError> {
    let st = s.service().scheduler().stats().await?;
    metrics::family(out, "jobs_schedules", "gauge", "Schedules of the deployment, by state.");
    let _ = writeln!(out, "jobs_schedules{{state=\"enabled\"}} {}", st.enabled_tasks);
    let _ = writeln!(out, "jobs_schedules{{state=\"disabled\"}} {}", st.disabled_tasks);
    metrics::family(out, "jobs_schedules_due", "gauge", "Enabled schedules due and not fired.");
    let _ = writeln!(out, "jobs_schedules_due {}", st.due_tasks);
    metrics::family(
        out,
        "jobs_scheduler_running",
        "gauge",
        "1 when this process's scheduler runs.",
    );
    let _ = writeln!(out, "jobs_scheduler_running {}", u8::from(st.running));
    Ok(())
}

/// The spec's "Scheduler Statistics".
#[utoipa::path(
    get, path = "/api/v1/jobs/scheduler/stats", tag = "scheduler",
    responses(
        (status = 200, body = SchedulerStatsView),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn stats(State(s): State<ApiState>) -> Result<Json<SchedulerStatsView>, ApiError> {
    Ok(Json(s.service().scheduler().stats().await?.into()))
}

/// Every schedule.
#[utoipa::path(
    get, path = "/api/v1/jobs/scheduled", tag = "scheduler",
    responses(
        (status = 200, body = ScheduleListResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn list(State(s): State<ApiState>) -> Result<Json<ScheduleListResponse>, ApiError> {
    let tasks: Vec<ScheduleInfoView> =
        s.service().scheduler().list().await?.into_iter().map(Into::into).collect();
    Ok(Json(ScheduleListResponse { count: tasks.len() as u64, tasks }))
}

/// Registers a schedule, or replaces the one of that name (keeping its counters).
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/register", tag = "scheduler",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = ScheduleInfoView, links(
            ("EnableSchedule" = (operation_id = "enable", parameters(("name" = "$response.body#/name")))),
            ("DisableSchedule" = (operation_id = "disable", parameters(("name" = "$response.body#/name")))),
            ("RunSchedule" = (operation_id = "run", parameters(("name" = "$response.body#/name")))),
            ("UnregisterSchedule" = (operation_id = "unregister", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "Malformed JSON, an invalid field, cron expression or time zone", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such handler", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Arguments that do not fit the handler", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn register(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<ScheduleInfoView>, ApiError> {
    let svc = s.service();
    let priority = match req.priority {
        Some(p) => p.into(),
        None => svc
            .registry()
            .handler(&req.job_name)
            .and_then(|h| h.defaults().priority)
            .unwrap_or(svc.queue().defaults().priority),
    };
    let spec = ScheduleSpec::new(req.name, req.job_name, req.schedule.into())
        .args(req.args.unwrap_or_else(|| serde_json::json!({})))
        .priority(priority)
        .enabled(req.enabled.unwrap_or(true))
        .misfire(req.misfire.map_or(MisfirePolicy::default(), Into::into));
    Ok(Json(svc.scheduler().register(spec).await?.into()))
}

/// Removes a schedule (the jobs it already enqueued are not touched).
#[utoipa::path(
    delete, path = "/api/v1/jobs/scheduled/{name}", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = UnregisterResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn unregister(
    State(s): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UnregisterResponse>, ApiError> {
    s.service().scheduler().unregister(&name).await?;
    Ok(Json(UnregisterResponse { name, removed: true }))
}

/// Enables a schedule: its next run is the first occurrence from now.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/enable", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = ScheduleInfoView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn enable(
    State(s): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleInfoView>, ApiError> {
    Ok(Json(s.service().scheduler().enable(&name).await?.into()))
}

/// Disables a schedule: it keeps its definition and counters but does not fire.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/disable", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = ScheduleInfoView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn disable(
    State(s): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleInfoView>, ApiError> {
    Ok(Json(s.service().scheduler().disable(&name).await?.into()))
}

/// Enqueues one job of the schedule now, enabled or not; its next run does not move.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/run", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = RunResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn run(
    State(s): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RunResponse>, ApiError> {
    let id = s.service().scheduler().run_now(&name).await?;
    Ok(Json(RunResponse { name, job_id: id.0 }))
}
