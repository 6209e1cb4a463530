//! The job endpoints: enqueue, inspect, cancel and list jobs, and the dead-letter queue.
//! Each is annotated with `#[utoipa::path]`: the OpenAPI document and the router are built
//! from the same list (see [`routes`](super::routes)).

use std::time::Duration;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use chrono::Utc;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::{
    BulkRequest, CancelResponse, ClearResponse, DEFAULT_LIMIT, DeleteResponse, EnqueueRequest,
    EnqueueResponse, JobListResponse, JobPageResponse, JobResultResponse, JobsQuery, LimitQuery,
    MAX_LIMIT, PendingQuery, RetryResponse, StateCounts,
};
use crate::bulk::{BulkReport, SELECTION_STATES, Selection, SelectionError};
use crate::error::Error;
use crate::flow::MAX_UNIQUE_WINDOW;
use crate::job::{
    EnqueueOutcome, Job, JobId, JobStatus, MAX_DELAY, MAX_TIMEOUT, MIN_TIMEOUT, check_horizon,
};

/// Parses a job id from a path segment (400 `invalid_job_id`).
fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<JobId>().map_err(ApiError::from)
}

fn limit(raw: Option<u32>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT as usize),
        Some(n) if n <= MAX_LIMIT => Ok(n as usize),
        Some(n) => {
            Err(ApiError::invalid_request(format!("limit must be at most {MAX_LIMIT}, found {n}")))
        }
    }
}

/// Enqueues a job.
///
/// The handler must be linked into the serving process (else 404) and the arguments must
/// fit its argument type (else 422, naming the field).
#[utoipa::path(
    post, path = "/api/v1/jobs/enqueue", operation_id = "enqueue_job", tag = "jobs",
    request_body = EnqueueRequest,
    responses(
        (status = 200, description = "Not enqueued: a job with the same uniqueness key holds its lock; `job_id` is that job, `duplicate` is true", body = EnqueueResponse),
        (status = 201, description = "Enqueued", body = EnqueueResponse, links(
            ("GetJob" = (operation_id = "get_job", parameters(("job_id" = "$response.body#/job_id")))),
            ("GetJobResult" = (operation_id = "get_job_result", parameters(("job_id" = "$response.body#/job_id")))),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("job_id" = "$response.body#/job_id")))),
            ("RetryDeadJob" = (operation_id = "retry_dead_letter_job", parameters(("job_id" = "$response.body#/job_id")))),
        )),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such handler", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Arguments that do not fit the handler", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn enqueue(
    AxumState(s): AxumState<ApiState>,
    ApiJson(req): ApiJson<EnqueueRequest>,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    let svc = s.service();
    let Some(handler) = svc.registry().handler(&req.name) else {
        let name: String = req.name.chars().take(64).collect();
        let known = svc.registry().handlers().map(|h| h.name());
        return Err(Error::unknown_handler(name, known).into());
    };
    let args = req.args.unwrap_or_else(|| serde_json::json!({}));
    handler.check_args(&args)?;
    let mut e = svc.enqueue(req.name.clone(), args);
    if let Some(p) = req.priority {
        e = e.priority(p);
    }
    match (req.delay_seconds, req.scheduled_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "give either `delay_seconds` or `scheduled_at`, not both",
            ));
        }
        (Some(d), None) => {
            let delay = Duration::try_from_secs_f64(d)
                .ok()
                .filter(|d| *d <= MAX_DELAY)
                .ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "field `delay_seconds`: must be between 0 and {} seconds, found {d}",
                        MAX_DELAY.as_secs()
                    ))
                })?;
            e = e.delay(delay);
        }
        (None, Some(at)) => {
            check_horizon(at, Utc::now())
                .map_err(|why| ApiError::invalid_request(format!("field `scheduled_at`: {why}")))?;
            e = e.scheduled_at(at);
        }
        (None, None) => {}
    }
    if let Some(n) = req.max_retries {
        e = e.max_retries(n);
    }
    if let Some(t) = req.timeout {
        e = e.timeout(seconds_between("timeout", t, MIN_TIMEOUT, MAX_TIMEOUT)?);
    }
    if let Some(u) = req.user_id {
        e = e.user_id(u);
    }
    if let Some(key) = req.unique_key {
        if key.is_empty() || key.len() > 256 {
            return Err(ApiError::invalid_request(format!(
                "field `unique_key`: must be 1 to 256 bytes long, found {}",
                key.len()
            )));
        }
        e = e.unique_key(key);
    }
    if let Some(q) = req.queue {
        e = e.queue(q);
    }
    if let Some(t) = req.unique_for {
        let min = Duration::from_millis(1);
        e = e.unique_for(seconds_between("unique_for", t, min, MAX_UNIQUE_WINDOW)?);
    }
    let done = e.report().await?;
    let (duplicate, replaced) = match done.outcome {
        EnqueueOutcome::Unique { replaced, .. } => (true, replaced),
        EnqueueOutcome::Created | EnqueueOutcome::Duplicate => (false, false),
    };
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(EnqueueResponse { job_id: done.id, duplicate, replaced })))
}

/// `secs` of the body's `field` as a duration within `min..=max` (`min` a millisecond), or
/// the 400 that names the field and the range.
fn seconds_between(
    field: &str,
    secs: f64,
    min: Duration,
    max: Duration,
) -> Result<Duration, ApiError> {
    Duration::try_from_secs_f64(secs).ok().filter(|d| *d >= min && *d <= max).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "field `{field}`: must be between 0.001 (a millisecond) and {} seconds, found {secs}",
            max.as_secs()
        ))
    })
}

/// A job, with every field of [`Job`](crate::Job).
#[utoipa::path(
    get, path = "/api/v1/jobs/job/{job_id}", operation_id = "get_job", tag = "jobs",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = Job),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_job(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&raw)?;
    let job = s.service().queue().get_job(id).await?.ok_or(Error::NotFound { id })?;
    Ok(Json(job))
}

/// A job's result (or its error, or `null` while it has none).
#[utoipa::path(
    get, path = "/api/v1/jobs/job/{job_id}/result", operation_id = "get_job_result", tag = "jobs",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = JobResultResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn job_result(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<JobResultResponse>, ApiError> {
    let id = job_id(&raw)?;
    let job = s.service().queue().get_job(id).await?.ok_or(Error::NotFound { id })?;
    Ok(Json(JobResultResponse {
        job_id: job.id,
        status: job.status,
        result: job.result,
        error: job.error,
        completed_at: job.completed_at,
    }))
}

/// Cancels a waiting job, or asks a running one to stop.
#[utoipa::path(
    post, path = "/api/v1/jobs/job/{job_id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = CancelResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has finished", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn cancel_job(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<CancelResponse>, ApiError> {
    let id = job_id(&raw)?;
    let outcome = s.service().queue().cancel_job(id).await?;
    Ok(Json(CancelResponse { job_id: id, outcome }))
}

/// Deletes a finished job (completed, cancelled or dead) for good: its record, result and
/// error. A job that may still run is a conflict: cancel it first.
#[utoipa::path(
    delete, path = "/api/v1/jobs/job/{job_id}", operation_id = "delete_job", tag = "jobs",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job may still run (pending, delayed, retrying, running)", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn delete_job(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let id = job_id(&raw)?;
    s.service().queue().delete_job(id).await?;
    Ok(Json(DeleteResponse { job_id: id, deleted: true }))
}

/// Retries, cancels or deletes each job of one page of a state's jobs.
///
/// The page is the one `GET /api/v1/jobs/jobs` would list for the same state, filters,
/// cursor and limit (at most 1,000 jobs looked at); each job is acted on in its own atomic
/// step, and one that changed state since it was listed is reported in `failures`, not
/// acted on. Call again with `next_cursor` until it is `null` (for `pending`, while
/// `matched` is not 0).
#[utoipa::path(
    post, path = "/api/v1/jobs/jobs/bulk", operation_id = "bulk_jobs", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, body = BulkReport),
        (status = 400, description = "An action that does not apply to the state, an unknown state, a cursor this server did not hand out for that state, an invalid limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn bulk_jobs(
    AxumState(s): AxumState<ApiState>,
    ApiJson(req): ApiJson<BulkRequest>,
) -> Result<Json<BulkReport>, ApiError> {
    let n = match req.limit {
        None => DEFAULT_LIMIT as usize,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid_request(format!(
                "field `limit`: must be between 1 and {MAX_LIMIT}, found {n}"
            )));
        }
    };
    let sel = selection(&req.state, req.name, req.user_id, req.cursor.as_deref(), n)?;
    req.action
        .check(sel.state())
        .map_err(|why| ApiError::invalid_request(format!("field `action`: {why}")))?;
    Ok(Json(s.service().queue().bulk(req.action, &sel).await?))
}

/// Runs a retrying job now, or puts a dead one back in its queue.
///
/// A `retrying` job (waiting for the backoff of its next attempt) goes to the tail of its
/// queue at once; a `failed` one (the dead-letter queue) goes back as
/// `POST /api/v1/jobs/dlq/{job_id}/retry` puts it. Either keeps its history (retries used,
/// attempts, last error).
#[utoipa::path(
    post, path = "/api/v1/jobs/job/{job_id}/retry", operation_id = "retry_job", tag = "jobs",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = RetryResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is neither retrying nor dead", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn retry_job(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<RetryResponse>, ApiError> {
    let id = job_id(&raw)?;
    s.service().queue().retry_job(id).await?;
    Ok(Json(RetryResponse { job_id: id, status: JobStatus::Pending }))
}

/// Jobs ready to run, in the order they will run.
#[utoipa::path(
    get, path = "/api/v1/jobs/pending", operation_id = "list_pending_jobs", tag = "jobs",
    params(PendingQuery),
    responses(
        (status = 200, body = JobListResponse),
        (status = 400, description = "An invalid priority or limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn pending(
    AxumState(s): AxumState<ApiState>,
    ApiQuery(q): ApiQuery<PendingQuery>,
) -> Result<Json<JobListResponse>, ApiError> {
    let n = limit(q.limit)?;
    let jobs = s.service().queue().pending_jobs(q.priority, n).await?;
    Ok(Json(job_list(jobs)))
}

/// Jobs of one state, newest first, filtered by handler and user, paged by cursor.
///
/// `pending` lists the first `limit` ready jobs in the order they will run (all
/// priorities, highest first), filtered, without a cursor. Every other state pages through
/// its index newest first: `scheduled` and `retrying` by due time, `running` by lease
/// deadline (`started_at` is when the attempt started; the worker is not recorded),
/// `completed` and `cancelled` by the end of their retention, `failed` by death time. At
/// most 1,000 jobs are looked at per request, so a filtered page may be short, even empty,
/// with a `next_cursor` to go on.
#[utoipa::path(
    get, path = "/api/v1/jobs/jobs", operation_id = "list_jobs", tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, body = JobPageResponse),
        (status = 400, description = "A missing or unknown state, a cursor this server did not hand out for that state, an invalid limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    AxumState(s): AxumState<ApiState>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobPageResponse>, ApiError> {
    let state = q.state.as_deref().unwrap_or_default();
    if state.is_empty() {
        return Err(ApiError::invalid_request(format!(
            "field `state`: required, one of {SELECTION_STATES}"
        )));
    }
    let n = match q.limit {
        None => DEFAULT_LIMIT as usize,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid_request(format!(
                "field `limit`: must be between 1 and {MAX_LIMIT}, found {n}"
            )));
        }
    };
    let queue = s.service().queue();
    let sel = selection(state, q.name, q.user_id, q.cursor.as_deref(), n)?;
    let (jobs, next) = queue.select(&sel).await?;
    let counts = StateCounts::from(&queue.stats().await?);
    Ok(Json(JobPageResponse {
        state: state.to_owned(),
        count: jobs.len() as u64,
        jobs,
        next_cursor: next,
        counts,
    }))
}

/// The selection of a request's `state`, filters, `cursor` and `limit`, or the 400 that
/// names the field.
fn selection(
    state: &str,
    name: Option<String>,
    user_id: Option<String>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Selection, ApiError> {
    Selection::parse(state, name, user_id, cursor, limit).map_err(|e| match e {
        SelectionError::UnknownState(shown) => ApiError::invalid_request(format!(
            "field `state`: unknown state `{shown}`, expected {SELECTION_STATES}"
        )),
        SelectionError::CursorForPending => ApiError::invalid_request(
            "field `cursor`: pending jobs are listed in the order they will run, without a cursor",
        ),
        SelectionError::Cursor(e) => e.into(),
    })
}

fn job_list(jobs: Vec<Job>) -> JobListResponse {
    JobListResponse { count: jobs.len() as u64, jobs }
}

/// The dead-letter queue, most recently failed first.
#[utoipa::path(
    get, path = "/api/v1/jobs/dlq", operation_id = "list_dead_letter_jobs", tag = "dlq",
    params(LimitQuery),
    responses(
        (status = 200, body = JobListResponse),
        (status = 400, description = "An invalid limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_dlq(
    AxumState(s): AxumState<ApiState>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<JobListResponse>, ApiError> {
    let n = limit(q.limit)?;
    Ok(Json(job_list(s.service().queue().get_dead_letter_jobs(n).await?)))
}

/// Puts a dead-letter job back in its queue.
#[utoipa::path(
    post, path = "/api/v1/jobs/dlq/{job_id}/retry", operation_id = "retry_dead_letter_job", tag = "dlq",
    params(("job_id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = RetryResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not in the dead-letter queue", body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn retry_dlq(
    AxumState(s): AxumState<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<RetryResponse>, ApiError> {
    let id = job_id(&raw)?;
    s.service().queue().retry_dead_letter_job(id).await?;
    Ok(Json(RetryResponse { job_id: id, status: JobStatus::Pending }))
}

/// Deletes every job in the dead-letter queue.
#[utoipa::path(
    delete, path = "/api/v1/jobs/dlq", operation_id = "clear_dead_letter_queue", tag = "dlq",
    responses(
        (status = 200, body = ClearResponse),
        (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "The backend is unavailable (`backend_unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn clear_dlq(AxumState(s): AxumState<ApiState>) -> Result<Json<ClearResponse>, ApiError> {
    Ok(Json(ClearResponse { cleared: s.service().queue().clear_dead_letter_queue().await? }))
}
