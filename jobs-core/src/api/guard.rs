//! Same-site checks of the tokenless API: the `Host` a request names, the `Origin` of a
//! state change, and the content type of a body.

use axum::extract::{Request, State as AxumState};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{ApiConfig, ApiState, extract};

/// A `Host` header (or an Origin's authority) split into its name and port:
/// `[::1]:8080` is `("::1", Some("8080"))`, `localhost` is `("localhost", None)`.
fn split_host(host: &str) -> (&str, Option<&str>) {
    match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, tail)) => (name, tail.strip_prefix(':')),
            None => (rest, None),
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    }
}

/// Whether `name` is this machine's loopback: `localhost` or a loopback address
/// (`127.0.0.0/8`, `::1`), which covers a loopback address the API is bound to.
fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether `host` (a `Host` header or an Origin's authority) names this machine's loopback
/// on the port the API is served on (any port when it is not known, as under
/// `router(state).oneshot(..)`; no port means 80).
pub(super) fn is_own_host(host: &str, config: &ApiConfig) -> bool {
    let (name, port) = split_host(host);
    let port_ok = match (config.port, port) {
        (None, _) => true,
        (Some(own), Some(p)) => p.parse::<u16>().is_ok_and(|p| p == own),
        (Some(own), None) => own == 80,
    };
    is_loopback_name(name) && port_ok
}

/// Without a token, the API trusts whoever can reach it, so it must not be reachable from
/// a browser page on another site: a `Host` that is not a loopback name with the API's
/// port (DNS rebinding, unless served on a non-loopback address) and an `Origin` other
/// than the API's own on a state change are 403. Whatever the token, a body must be JSON
/// (form and text bodies, which browsers send cross-site without a preflight, are 415). A
/// request with neither body nor Origin (a CLI client) passes.
pub(super) async fn same_site(
    AxumState(state): AxumState<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let config = state.config();
    let forbidden = |why: &str| {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", why.to_owned()).into_response()
    };
    if !config.has_token() {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !config.remote && host.is_some_and(|h| !is_own_host(h, config)) {
            return forbidden(
                "the Host header must name this machine's loopback and the API's port",
            );
        }
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if changes && let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let authority =
                origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            let own = match (authority, host) {
                (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
                (Some(a), None) => is_own_host(a, config),
                (None, _) => false,
            };
            if !own {
                return forbidden("a request from another site's page is refused");
            }
        }
    }
    // The body's own size hint covers both `Content-Length` and chunked bodies.
    let has_body = axum::body::HttpBody::size_hint(req.body()).upper() != Some(0);
    if has_body && !extract::is_json(headers) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with `Content-Type: application/json`",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_loopback_on_the_apis_port() {
        let on = |port| ApiConfig { port, ..ApiConfig::default() };
        let bound = on(Some(8080));
        for ok in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(is_own_host(ok, &bound), "{ok}");
        }
        // The configured loopback address itself, whatever it is in 127/8.
        assert!(is_own_host("127.0.0.2:8080", &bound));
        for bad in [
            "127.0.0.1:8081",
            "localhost:9",
            "[::1]:80",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:",
            "127.0.0.1:x",
            "evil.example:8080",
            "localhost.evil.example:8080",
            "10.0.0.1:8080",
            "[::1",
            "::1",
        ] {
            assert!(!is_own_host(bad, &bound), "{bad}");
        }
        // Port 80: a Host without a port is the same.
        assert!(is_own_host("localhost", &on(Some(80))));
        assert!(is_own_host("127.0.0.1:80", &on(Some(80))));
        // Port not known (router tests): any port of a loopback name.
        assert!(is_own_host("localhost:1234", &on(None)));
        assert!(is_own_host("localhost", &on(None)));
        assert!(!is_own_host("evil.example", &on(None)));
    }
}
