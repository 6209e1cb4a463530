//! The API's one error shape, `{"error": {"code": "...", "message": "..."}}`, and the
//! mapping of [`Error`] to HTTP statuses.
//!
//! Client mistakes keep their status and say what was wrong. A backend that cannot be
//! reached is a 503 `backend_unavailable` with `Retry-After`; other infrastructure failures
//! (a corrupt record, a bug) are a generic 500. Either way the details go to the log, never
//! to the client (axum's error-handling example does the same).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Error;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "job_not_found", "message": "job 0190f5c2-7a3b-7c1d-9e2f-0123456789ab not found"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_json`, `invalid_request`, `invalid_job_id`,
    /// `invalid_priority`, `invalid_schedule`, `unauthorized`, `forbidden`, `job_not_found`,
    /// `handler_not_found`, `schedule_not_found`, `not_found`, `method_not_allowed`,
    /// `invalid_state`, `request_timeout`, `payload_too_large`, `unsupported_media_type`, `invalid_args`,
    /// `internal_error`, `backend_unavailable`.
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// 400 `invalid_request`: a field (or query parameter) that is not acceptable.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`: no such route.
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not support the method",
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    /// 500 `internal_error`: logs `err` with its sources and tells the client nothing more.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut cur = err.source();
        while let Some(c) = cur {
            chain.push_str(": ");
            chain.push_str(&c.to_string());
            cur = c.source();
        }
        tracing::error!(error = %crate::escape::Escaped(&chain), "api request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see the server log",
        )
    }

    /// 503 `backend_unavailable` (with `Retry-After`): logs `err` and tells the client only
    /// that the backend cannot be reached.
    pub fn unavailable(err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(error = %crate::escape::Escaped(&err), "the backend is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            "the backend is unavailable; retry later",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Seconds a client should wait before retrying after a 503 `backend_unavailable`.
const RETRY_AFTER: &str = "5";

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match &e {
            Error::NotFound { .. } => Self::new(S::NOT_FOUND, "job_not_found", msg),
            Error::InvalidState { .. } => Self::new(S::CONFLICT, "invalid_state", msg),
            Error::InvalidJobId { .. } => Self::new(S::BAD_REQUEST, "invalid_job_id", msg),
            Error::InvalidPriority { .. } => Self::new(S::BAD_REQUEST, "invalid_priority", msg),
            Error::InvalidJob { .. } => Self::new(S::BAD_REQUEST, "invalid_request", msg),
            Error::InvalidQueue { .. } => Self::new(S::BAD_REQUEST, "invalid_queue", msg),
            Error::UnknownHandler { .. } => Self::new(S::NOT_FOUND, "handler_not_found", msg),
            Error::InvalidArgs { .. } => Self::new(S::UNPROCESSABLE_ENTITY, "invalid_args", msg),
            Error::ScheduleNotFound { .. } => Self::new(S::NOT_FOUND, "schedule_not_found", msg),
            Error::InvalidSchedule { .. } => Self::new(S::BAD_REQUEST, "invalid_schedule", msg),
            Error::InvalidCursor { .. } => {
                Self::new(S::BAD_REQUEST, "invalid_request", format!("field `cursor`: {msg}"))
            }
            // An outage: worth retrying, and not the client's doing or a bug. The details
            // (addresses, the server's words) go to the log only.
            Error::Connect { .. } | Error::NotReplicated { .. } => Self::unavailable(&e),
            Error::Redis(r)
                if r.is_io_error()
                    || r.is_connection_refusal()
                    || r.is_connection_dropped()
                    || r.is_timeout() =>
            {
                Self::unavailable(&e)
            }
            // Configuration, a stale lease (never reached from a request), corrupt records,
            // Redis, JSON encoding and unexpected replies: not the client's doing. (This
            // match is exhaustive on purpose: a new variant must be classified here.)
            Error::Config(_)
            | Error::StaleLease { .. }
            | Error::CorruptRecord { .. }
            | Error::Redis(_)
            | Error::Json(_)
            | Error::Backend(_) => Self::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.code == "backend_unavailable" {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobStatus};

    #[test]
    fn client_errors_keep_their_status() {
        let id = JobId::new();
        let cases = [
            (Error::NotFound { id }, 404, "job_not_found"),
            (
                Error::InvalidState { id, status: JobStatus::Completed, op: "cancel" },
                409,
                "invalid_state",
            ),
            (Error::InvalidJobId { id: "x".into() }, 400, "invalid_job_id"),
            (Error::unknown_handler("x", ["y"]), 404, "handler_not_found"),
            (Error::InvalidQueue { name: "a b".into(), reason: "r" }, 400, "invalid_queue"),
            (Error::InvalidArgs { name: "x".into(), message: "m".into() }, 422, "invalid_args"),
            (Error::Backend("secret detail".into()), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status().as_u16(), status);
            assert_eq!(api.code(), code);
            assert!(!api.message().contains("secret"), "{api:?}");
        }
    }
}
