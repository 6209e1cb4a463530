//! The statistics endpoints: health, everything at once, queue, throughput, workers and
//! handlers. Each is annotated with `#[utoipa::path]` (see [`routes`](super::routes)).

use std::time::Duration;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::StatusCode;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::model::{
    FullStatsResponse, HandlerView, HandlersResponse, Health, HealthResponse, QueueStatsView,
    ThroughputResponse, WorkersResponse,
};

/// How long the health check waits for the backend.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Service health: whether the backend answers.
#[utoipa::path(
    get, path = "/api/v1/jobs/health", operation_id = "get_health", tag = "health",
    security(()),
    responses(
        (status = 200, description = "The backend answers", body = HealthResponse),
        (status = 503, description = "The backend does not answer", body = HealthResponse),
    )
)]
pub async fn health(AxumState(s): AxumState<ApiState>) -> (StatusCode, Json<HealthResponse>) {
    let svc = s.service();
    let ok = match tokio::time::timeout(HEALTH_TIMEOUT, svc.queue().stats()).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::escape::Escaped(&e), "health check: the backend failed");
            false
        }
        Err(_) => {
            tracing::warn!("health check: the backend did not answer in time");
            false
        }
    };
    let body = HealthResponse {
        status: if ok { Health::Healthy } else { Health::Unhealthy },
        backend: svc.queue().backend().kind().to_owned(),
        workers_running: svc.is_running(),
        scheduler_running: svc.scheduler().is_running(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// Everything at once: queue (with counters), workers, handlers, scheduler.
#[utoipa::path(
    get, path = "/api/v1/jobs/stats", operation_id = "get_stats", tag = "stats",
    responses(
        (status = 200, body = FullStatsResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn stats(AxumState(s): AxumState<ApiState>) -> Result<Json<FullStatsResponse>, ApiError> {
    let full = s.service().get_full_stats().await?;
    Ok(Json(FullStatsResponse {
        queue: full.queue,
        workers: full.workers,
        handlers: handler_views(&s),
        running: full.running,
        scheduler: full.scheduler,
    }))
}

/// Completions and failed attempts per minute over the last hour, counted in the backend by
/// every runner (the dashboard's chart).
#[utoipa::path(
    get, path = "/api/v1/jobs/stats/throughput", operation_id = "get_throughput", tag = "stats",
    responses(
        (status = 200, body = ThroughputResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn throughput(
    AxumState(s): AxumState<ApiState>,
) -> Result<Json<ThroughputResponse>, ApiError> {
    let buckets = s.service().queue().backend().throughput().await?;
    Ok(Json(ThroughputResponse { bucket_seconds: 60, buckets }))
}

/// Queue statistics: the counts per state.
#[utoipa::path(
    get, path = "/api/v1/jobs/queue/stats", operation_id = "get_queue_stats", tag = "stats",
    responses(
        (status = 200, body = QueueStatsView),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn queue_stats(
    AxumState(s): AxumState<ApiState>,
) -> Result<Json<QueueStatsView>, ApiError> {
    Ok(Json(s.service().queue().stats().await?.into()))
}

/// Every live worker of the deployment, each with its statistics.
#[utoipa::path(
    get, path = "/api/v1/jobs/workers/stats", operation_id = "get_worker_stats", tag = "stats",
    responses(
        (status = 200, body = WorkersResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn workers_stats(
    AxumState(s): AxumState<ApiState>,
) -> Result<Json<WorkersResponse>, ApiError> {
    let workers = s.service().worker_stats().await?;
    Ok(Json(WorkersResponse { total_workers: workers.len() as u64, workers }))
}

fn handler_views(s: &ApiState) -> Vec<HandlerView> {
    let reg = s.service().registry();
    s.service()
        .handlers()
        .into_iter()
        .map(|h| {
            let r = reg.handler(&h.name);
            let takes_args = r.is_none_or(|r| r.takes_args());
            HandlerView::new(h, takes_args, r.and_then(|r| r.args_schema()))
        })
        .collect()
}

/// The handlers linked into the serving process, with their defaults and argument types.
#[utoipa::path(
    get, path = "/api/v1/jobs/handlers", operation_id = "list_handlers", tag = "stats",
    responses(
        (status = 200, body = HandlersResponse),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn handlers(AxumState(s): AxumState<ApiState>) -> Json<HandlersResponse> {
    Json(HandlersResponse { handlers: handler_views(&s) })
}
