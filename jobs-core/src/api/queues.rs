//! The flow-control endpoints: every named queue with its ready jobs, pausing or resuming
//! one for every process of the deployment, and the rate and concurrency limiters in use. Each is annotated with `#[utoipa::path]` (see
//! [`routes`](super::routes)).

use axum::Json;
use axum::extract::State as AxumState;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::model::{LimitsResponse, QueuePauseResponse, QueuesResponse};

/// Every named queue: its ready jobs per priority, and whether it is paused.
///
/// The default queue is always listed; a named one once a job went to it or it was paused.
#[utoipa::path(
    get, path = "/api/v1/jobs/queues", operation_id = "list_queues", tag = "queues",
    responses(
        (status = 200, body = QueuesResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list(AxumState(s): AxumState<ApiState>) -> Result<Json<QueuesResponse>, ApiError> {
    let queues = s.service().queue().queues().await?;
    Ok(Json(QueuesResponse { count: queues.len() as u64, queues }))
}

/// The rate and concurrency limiters in use: each one's key (the handler and the values of
/// its `by` fields), its bound, the starts in its window or the slots held, the jobs parked
/// on it waiting for a slot, when its next slot opens, and a handler's hold
/// (`ctx.rate_limited`). A limiter no job uses is not listed.
#[utoipa::path(
    get, path = "/api/v1/jobs/limits", operation_id = "list_limits", tag = "queues",
    responses(
        (status = 200, body = LimitsResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn limits(AxumState(s): AxumState<ApiState>) -> Result<Json<LimitsResponse>, ApiError> {
    let backend = s.service().queue().backend().clone();
    let limiters = backend.limits(crate::backend::limits::LIMITS_LIST_MAX).await?;
    let parked = backend.stats().await?.parked;
    Ok(Json(LimitsResponse { count: limiters.len() as u64, parked, limiters }))
}

/// Pauses a queue for every process: no worker takes its jobs until it is resumed; they
/// stay in order, and enqueues into it go on. A queue no job has used yet is created
/// paused.
#[utoipa::path(
    post, path = "/api/v1/jobs/queues/{name}/pause", operation_id = "pause_queue", tag = "queues",
    params(("name" = String, Path, description = "The queue's name (1 to 64 of `A-Z a-z 0-9 _ . -`)", pattern = r"^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)),
    responses(
        (status = 200, body = QueuePauseResponse),
        (status = 400, description = "Not a queue name (`invalid_queue`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn pause(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueuePauseResponse>, ApiError> {
    set_paused(&s, name, true).await
}

/// Resumes a paused queue: its workers are woken and take its jobs again.
#[utoipa::path(
    post, path = "/api/v1/jobs/queues/{name}/resume", operation_id = "resume_queue", tag = "queues",
    params(("name" = String, Path, description = "The queue's name (1 to 64 of `A-Z a-z 0-9 _ . -`)", pattern = r"^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)),
    responses(
        (status = 200, body = QueuePauseResponse),
        (status = 400, description = "Not a queue name (`invalid_queue`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn resume(
    AxumState(s): AxumState<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueuePauseResponse>, ApiError> {
    set_paused(&s, name, false).await
}

async fn set_paused(
    s: &ApiState,
    name: String,
    paused: bool,
) -> Result<Json<QueuePauseResponse>, ApiError> {
    let changed = s.service().queue().backend().pause_queue(&name, paused).await?;
    Ok(Json(QueuePauseResponse { name, paused, changed }))
}
