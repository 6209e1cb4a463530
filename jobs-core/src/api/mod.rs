//! The HTTP admin API: the jobs, schedules and statistics under `/api/v1/jobs`, its OpenAPI
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
mod guard;
mod jobs;
mod metrics;
mod model;
mod openapi;
mod queues;
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
/// The default cap on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default time a client gets to send a request's headers, and the longest a
/// keep-alive connection may stay idle between requests.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a client gets to send a request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the API behaves: its token, its body limit, and what a connection may hold.
#[derive(Clone)]
pub struct ApiConfig {
    token: Option<String>,
    body_limit: usize,
    max_connections: usize,
    header_timeout: Duration,
    body_timeout: Duration,
    /// Served on an address that is not loopback (set by [`serve`]): the Host check is off.
    remote: bool,
    /// The port served on (set by [`serve`]): a loopback `Host` must name it.
    port: Option<u16>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("body_limit", &self.body_limit)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("remote", &self.remote)
            .field("port", &self.port)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            remote: false,
            port: None,
        }
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

    /// The most connections served at once (default 1024, at least 1): further connections
    /// are closed as soon as they are accepted.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a client gets to send a request's headers, and how long a keep-alive
    /// connection may idle between requests, before it is closed (default 10 s).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a client gets to send a request's body before the request is refused
    /// with 408 (default 30 s).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
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
        .routes(routes!(jobs::get_job, jobs::delete_job))
        .routes(routes!(jobs::job_result))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(jobs::pending))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::bulk_jobs))
        .routes(routes!(jobs::list_dlq, jobs::clear_dlq))
        .routes(routes!(jobs::retry_dlq))
        .routes(routes!(queues::list))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(queues::limits))
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
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(state.clone(), guard::same_site))
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

/// Reads the request's body before the handler sees it: a `Content-Length` over the limit
/// is a 413 at once (nothing of the body is read), a body that does not arrive within
/// [`ApiConfig::body_timeout`] is a 408, and a longer chunked body is a 413 too.
async fn read_body(AxumState(state): AxumState<ApiState>, req: Request, next: Next) -> Response {
    let limit = state.config.body_limit;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
        .into_response()
    };
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(state.config.body_timeout, axum::body::to_bytes(body, limit))
            .await
        {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                return if e.into_inner().is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::invalid_request("the request body could not be read").into_response()
                };
            }
            Err(_) => {
                return ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                )
                .into_response();
            }
        };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
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
    TcpListener::bind(&addrs[..]).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process, perhaps another runner, listens there): choose another \
                 address with --bind or JOBS_BIND, or run without the API (--no-api)"
            }
            _ => "; choose another address with --bind or JOBS_BIND",
        };
        Error::Config(format!("cannot bind the API to `{addr}`: {e}{fix}"))
    })
}

/// A server started by [`start`]: stop it with [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningApi {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How long in-flight requests get to finish when the server stops (see
/// [`RunningApi::stop_within`]).
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long idle keep-alive connections stay open once the server stops: a request a
/// client sent just before is still read and answered (with `Connection: close`).
const DRAIN_LINGER: Duration = Duration::from_millis(250);

impl RunningApi {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, gives the requests in flight [`STOP_GRACE`] to finish,
    /// and returns.
    pub async fn stop(self) -> Result<()> {
        self.stop_within(STOP_GRACE).await
    }

    /// Stops accepting connections and gives the requests in flight up to `grace` to finish
    /// (each answered with `Connection: close`); then closes every connection and returns.
    pub async fn stop_within(mut self, grace: Duration) -> Result<()> {
        self.shutdown.cancel();
        let joined = match tokio::time::timeout(grace, &mut self.task).await {
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

/// Adds `Connection: close` to every response once the server is stopping, so that a
/// keep-alive client knows its connection ends after this response.
async fn close_when_stopping(
    AxumState(closing): AxumState<CancellationToken>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    if closing.is_cancelled() {
        res.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    res
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
///
/// HTTP/1.1 only, hardened against clients that hold connections: at most
/// [`ApiConfig::max_connections`] are served at once (further ones are closed as soon as
/// they are accepted), and a connection that does not send its
/// headers within [`ApiConfig::header_timeout`], or idles that long between requests, is
/// closed. Bodies have their own limit and timeout (see [`router`]).
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    // Served beyond loopback (`--allow-remote` or a token), clients name the host as they
    // reach it: the loopback-Host check would refuse them all. Served on loopback, the Host
    // must name the port too: a page on another local port is another site.
    let local = listener.local_addr().ok();
    let remote = local.is_some_and(|a| !a.ip().to_canonical().is_loopback());
    let config = ApiConfig { remote, port: local.map(|a| a.port()), ..state.config().clone() };
    let state = ApiState { service: state.service.clone(), config: Arc::new(config) };
    let max_connections = state.config().max_connections;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.config().header_timeout);
    // Once stopping, every response says `Connection: close`, which also ends its connection.
    let closing = CancellationToken::new();
    let app =
        router(state).layer(middleware::from_fn_with_state(closing.clone(), close_when_stopping));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning
                    // (as `axum::serve` does).
                    tracing::warn!(error = %crate::escape::Escaped(&e), "the HTTP API cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the cap, a new connection is closed at once: it costs nothing while it waits
        // (no backlog for held connections to fill ahead of a real client), and the client
        // knows to retry.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("the HTTP API is at its connection cap; refusing a connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %crate::escape::Escaped(&e), "HTTP API connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    closing.cancel();
    // A request already sent on an idle keep-alive connection may not have been read yet:
    // give it a moment (connections that answer one close themselves), then close the idle
    // ones and wait for the requests in flight.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_LINGER, permits.acquire_many(all)).await;
    graceful.shutdown().await;
    Ok(())
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
        assert_eq!(paths.len(), 29, "{paths:?}");
        assert!(paths.contains(&"/api/v1/jobs/stats/throughput"), "{paths:?}");
        assert!(paths.contains(&"/api/v1/jobs/queues/{name}/resume"), "{paths:?}");
    }
}
