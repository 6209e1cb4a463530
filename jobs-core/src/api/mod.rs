//! The HTTP admin API: every endpoint of the spec under `/api/v1/jobs`, its OpenAPI
//! document at `/api/v1/jobs/openapi.json`, and Prometheus metrics at `/metrics`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use jobs_core::api::{self, ApiConfig, ApiState};
//! use jobs_core::service::{JobService, ServiceConfig};
//!
//! # async fn run() -> jobs_core::Result<()> {
//! let service = Arc::new(JobService::connect(ServiceConfig::default()).await?);
//! let state = ApiState::new(service, ApiConfig::default().token(Some("s3cret".into())));
//! let api = api::start("127.0.0.1:8080", state, false).await?;
//! // ... serve until shutdown, then:
//! api.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` (see [`ApiError`]): 400 for
//! malformed JSON and invalid fields, 401 without the token, 404 for an unknown job,
//! handler or schedule, 409 for a transition the job's state forbids, 413 for a body over
//! the limit, 415 for a body that is not JSON, 422 for arguments that do not fit the
//! handler. Infrastructure failures are a generic 500 whose details go to the log.
//!
//! With a token configured, every endpoint except `health` requires
//! `Authorization: Bearer <token>`; the token is compared in constant time.

mod dashboard;
mod error;
mod extract;
mod jobs;
mod metrics;
mod model;
mod openapi;
mod register;
mod schedules;
mod stats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
// axum's `State` extractor goes by `AxumState` throughout this module: in this crate,
// `State` is the handlers' application state (`jobs_core::State`).
use axum::extract::{DefaultBodyLimit, Request, State as AxumState};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::service::JobService;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use model::*;
pub use openapi::openapi;
pub use register::*;

/// The path of the one endpoint that never requires the token.
pub const HEALTH_PATH: &str = "/api/v1/jobs/health";
/// The default limit of a request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How the API behaves: its token and its body limit.
#[derive(Clone)]
pub struct ApiConfig {
    token: Option<String>,
    body_limit: usize,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { token: None, body_limit: DEFAULT_BODY_LIMIT }
    }
}

impl ApiConfig {
    /// Requires `Authorization: Bearer <token>` on every endpoint but health. `None` (or an
    /// empty token) requires nothing.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The largest request body accepted, in bytes (default 1 MiB); larger is a 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Whether a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The body limit in bytes.
    pub fn limit(&self) -> usize {
        self.body_limit
    }
}

/// What the endpoints share: the service and the API's configuration. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    service: Arc<JobService>,
    config: Arc<ApiConfig>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("service", &self.service)
            .field("config", &self.config)
            .finish()
    }
}

impl ApiState {
    /// The API of `service`, configured by `config`.
    pub fn new(service: Arc<JobService>, config: ApiConfig) -> Self {
        ApiState { service, config: Arc::new(config) }
    }

    /// The service.
    pub fn service(&self) -> &JobService {
        &self.service
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }
}

/// Every endpoint, registered with its OpenAPI description: the router and the document
/// come from this one list, so they cannot disagree.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::BaseDoc::openapi())
        .routes(routes!(stats::health))
        .routes(routes!(stats::stats))
        .routes(routes!(stats::queue_stats))
        .routes(routes!(stats::throughput))
        .routes(routes!(stats::workers_stats))
        .routes(routes!(schedules::stats))
        .routes(routes!(stats::handlers))
        .routes(routes!(jobs::enqueue))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::job_result))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::pending))
        .routes(routes!(jobs::list_dlq, jobs::clear_dlq))
        .routes(routes!(jobs::retry_dlq))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::register, schedules::unregister_named_register))
        .routes(routes!(schedules::unregister))
        .routes(routes!(schedules::enable))
        .routes(routes!(schedules::disable))
        .routes(routes!(schedules::run))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(metrics::prometheus))
}

/// The API's router: `/api/v1/jobs/...`, `/api/v1/jobs/openapi.json` and `/metrics`, with
/// authentication, the body limit, and JSON errors for unknown routes and methods.
///
/// Tests drive it without a socket: `router(state).oneshot(request)`.
pub fn router(state: ApiState) -> Router {
    let (api, _doc) = routes().split_for_parts();
    let limit = state.config().body_limit;
    api.fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
        .merge(dashboard::router())
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
fn is_authorized(req: &Request, token: &str) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return false;
    };
    // Constant time over the token's bytes: how much of a guess matches must not show in
    // the response time. (The length may; it says nothing about the content.)
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(credentials.trim().as_bytes().ct_eq(token.as_bytes()))
}

async fn authenticate(AxumState(state): AxumState<ApiState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token
        && req.uri().path() != HEALTH_PATH
        && !is_authorized(&req, token)
    {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// Binds the API's listener on `addr` (`host:port`).
///
/// Refuses an address that is not loopback when no token is configured, unless
/// `allow_remote`: an open admin API on a network is an accident waiting to happen.
pub async fn bind(addr: &str, config: &ApiConfig, allow_remote: bool) -> Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot resolve the API address `{addr}`: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Config(format!("the API address `{addr}` resolves to nothing")));
    }
    let remote = addrs.iter().any(|a| !a.ip().to_canonical().is_loopback());
    if remote && !config.has_token() && !allow_remote {
        return Err(Error::Config(format!(
            "refusing to serve the API on `{addr}`, which is not a loopback address, without a \
             token: set JOBS_API_TOKEN (--api-token), or pass --allow-remote"
        )));
    }
    TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| Error::Config(format!("cannot bind the API to `{addr}`: {e}")))
}

/// A server started by [`start`]: stop it with [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningApi {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How long in-flight requests get to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl RunningApi {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, gives the requests in flight a few seconds to finish,
    /// and returns.
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        let joined = match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(joined) => joined,
            Err(_) => {
                tracing::warn!("the HTTP API did not stop in time; closing its connections");
                self.task.abort();
                return Ok(());
            }
        };
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Config(format!("the HTTP API failed: {e}"))),
            Err(e) => Err(Error::Config(format!("the HTTP API task failed: {e}"))),
        }
    }
}

/// Binds `addr` (see [`bind`]) and serves the API there on the current runtime until
/// [`RunningApi::stop`].
pub async fn start(addr: &str, state: ApiState, allow_remote: bool) -> Result<RunningApi> {
    let listener = bind(addr, state.config(), allow_remote).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("cannot read the API's address: {e}")))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(serve(listener, state, async move { stop.cancelled().await }));
    Ok(RunningApi { addr: local, shutdown, task })
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(auth: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/x");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap_or_default()
    }

    #[test]
    fn bearer_tokens_are_checked() {
        assert!(is_authorized(&req(Some("Bearer s3cret")), "s3cret"));
        assert!(is_authorized(&req(Some("bearer s3cret")), "s3cret"));
        assert!(!is_authorized(&req(Some("Bearer s3cre")), "s3cret"));
        assert!(!is_authorized(&req(Some("Bearer s3cretx")), "s3cret"));
        assert!(!is_authorized(&req(Some("Basic s3cret")), "s3cret"));
        assert!(!is_authorized(&req(Some("s3cret")), "s3cret"));
        assert!(!is_authorized(&req(None), "s3cret"));
    }

    #[test]
    fn empty_tokens_mean_no_token() {
        assert!(!ApiConfig::default().token(Some(String::new())).has_token());
        assert!(ApiConfig::default().token(Some("t".into())).has_token());
    }

    #[tokio::test]
    async fn remote_binds_need_a_token_or_a_flag() {
        let open = ApiConfig::default();
        let r = bind("0.0.0.0:0", &open, false).await;
        assert!(matches!(r, Err(Error::Config(ref m)) if m.contains("--allow-remote")), "{r:?}");
        assert!(bind("127.0.0.1:0", &open, false).await.is_ok());
        assert!(bind("0.0.0.0:0", &open, true).await.is_ok());
        let closed = ApiConfig::default().token(Some("t".into()));
        assert!(bind("0.0.0.0:0", &closed, false).await.is_ok());
    }

    #[test]
    fn the_document_lists_every_endpoint() {
        let doc = openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert_eq!(paths.len(), 22, "{paths:?}");
        assert!(paths.contains(&"/api/v1/jobs/stats/throughput"), "{paths:?}");
    }
}
