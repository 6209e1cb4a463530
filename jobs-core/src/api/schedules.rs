//! The scheduler's endpoints: `scheduler/stats` and `scheduled/*`.

use axum::Json;
use axum::extract::State as AxumState;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::model::{RunResponse, ScheduleListResponse, UnregisterResponse};
use super::register::RegisterRequest;
use crate::schedule::ScheduleInfo;
use crate::stats::SchedulerStats;

/// The scheduler's statistics.
#[utoipa::path(
    get, path = "/api/v1/jobs/scheduler/stats", operation_id = "get_scheduler_stats", tag = "scheduler",
    responses(
        (status = 200, body = SchedulerStats),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn stats(AxumState(s): AxumState<ApiState>) -> Result<Json<SchedulerStats>, ApiError> {
    Ok(Json(s.service().scheduler().stats().await?))
}

/// Every schedule.
#[utoipa::path(
    get, path = "/api/v1/jobs/scheduled", operation_id = "list_schedules", tag = "scheduler",
    responses(
        (status = 200, body = ScheduleListResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list(
    AxumState(s): AxumState<ApiState>,
) -> Result<Json<ScheduleListResponse>, ApiError> {
    let tasks = s.service().scheduler().list().await?;
    Ok(Json(ScheduleListResponse { count: tasks.len() as u64, tasks }))
}

/// Registers a schedule, or replaces the one of that name (keeping its counters).
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/register", operation_id = "register_schedule", tag = "scheduler",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = ScheduleInfo, links(
            ("EnableSchedule" = (operation_id = "enable_schedule", parameters(("name" = "$response.body#/name")))),
            ("DisableSchedule" = (operation_id = "disable_schedule", parameters(("name" = "$response.body#/name")))),
            ("RunSchedule" = (operation_id = "run_schedule", parameters(("name" = "$response.body#/name")))),
            ("UnregisterSchedule" = (operation_id = "delete_schedule", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "Malformed JSON, an invalid field, cron expression or time zone", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such handler", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Arguments that do not fit the handler", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn register(
    AxumState(s): AxumState<ApiState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    // Checked when the body was decoded: a failure here is the same 400.
    let spec = req.into_spec().map_err(ApiError::invalid_request)?;
    Ok(Json(s.service().scheduler().register(spec).await?))
}

/// Removes a schedule (the jobs it already enqueued are not touched).
#[utoipa::path(
    delete, path = "/api/v1/jobs/scheduled/{name}", operation_id = "delete_schedule", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = UnregisterResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn unregister(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UnregisterResponse>, ApiError> {
    s.service().scheduler().unregister(&name).await?;
    Ok(Json(UnregisterResponse { name, removed: true }))
}

/// Removes the schedule named `register`.
///
/// The path `…/scheduled/register` is the register endpoint's, and a concrete path is
/// matched before a templated one (by the router as by OpenAPI), so `DELETE
/// /scheduled/{name}` never sees that name: this is its `DELETE` for that one name.
#[utoipa::path(
    delete, path = "/api/v1/jobs/scheduled/register", operation_id = "delete_schedule_named_register", tag = "scheduler",
    responses(
        (status = 200, body = UnregisterResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No schedule named `register`", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
pub async fn unregister_named_register(
    AxumState(s): AxumState<ApiState>,
) -> Result<Json<UnregisterResponse>, ApiError> {
    let name = "register".to_owned();
    s.service().scheduler().unregister(&name).await?;
    Ok(Json(UnregisterResponse { name, removed: true }))
}

/// Enables a schedule: its next run is the first occurrence from now.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/enable", operation_id = "enable_schedule", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = ScheduleInfo),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn enable(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    Ok(Json(s.service().scheduler().enable(&name).await?))
}

/// Disables a schedule: it keeps its definition and counters but does not fire.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/disable", operation_id = "disable_schedule", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = ScheduleInfo),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn disable(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    Ok(Json(s.service().scheduler().disable(&name).await?))
}

/// Enqueues one job of the schedule now, enabled or not; its next run does not move.
#[utoipa::path(
    post, path = "/api/v1/jobs/scheduled/{name}/run", operation_id = "run_schedule", tag = "scheduler",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, body = RunResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn run(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RunResponse>, ApiError> {
    let id = s.service().scheduler().run_now(&name).await?;
    Ok(Json(RunResponse { name, job_id: id }))
}
