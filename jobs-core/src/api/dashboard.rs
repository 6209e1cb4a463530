//! The web dashboard: one page at `/` and its assets under `/dashboard/`, embedded in the
//! binary (no build step, nothing fetched from the internet). The page is plain JavaScript
//! that talks to the API under `/api/v1/jobs` (see `dashboard/app.js`).
//!
//! The page and its assets need no token: they hold no data. The API calls they make do,
//! when one is configured; the page asks for it once and keeps it for the tab.
//!
//! Every response carries a strong `ETag` (a hash of the embedded bytes, so it changes
//! with the binary) and `Cache-Control: no-cache`: browsers revalidate and get a 304
//! while the binary is the same.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    hash: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Asset { body, content_type, hash: fnv1a(body) }
    }
}

/// FNV-1a, 64 bits: enough to tell two builds' assets apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

static INDEX: Asset =
    Asset::new(include_bytes!("dashboard/index.html"), "text/html; charset=utf-8");
static APP_JS: Asset =
    Asset::new(include_bytes!("dashboard/app.js"), "text/javascript; charset=utf-8");
static APP_CSS: Asset = Asset::new(include_bytes!("dashboard/app.css"), "text/css; charset=utf-8");
static FAVICON: Asset = Asset::new(include_bytes!("dashboard/favicon.svg"), "image/svg+xml");

/// The page may load its own script, style and icon, and talk to this origin; nothing
/// else, and it may not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes: `/` and `/dashboard/{app.js,app.css,favicon.svg}`. Merge it into
/// the API's router (it needs no state).
pub fn router() -> Router {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/dashboard/app.js", get(|h: HeaderMap| async move { serve(&APP_JS, &h) }))
        .route("/dashboard/app.css", get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }))
        .route("/dashboard/favicon.svg", get(|h: HeaderMap| async move { serve(&FAVICON, &h) }))
}

/// Whether `If-None-Match` lists `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn serve(asset: &'static Asset, req: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = not_modified(req, &etag);
    let mut res = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Body::from(asset.body))
    };
    let h = res.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if asset.content_type.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut b = Request::builder().uri(path);
        if let Some(t) = if_none_match {
            b = b.header(header::IF_NONE_MATCH, t);
        }
        let req = b.body(Body::empty()).unwrap_or_default();
        match router().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    fn header_of(res: &Response, name: header::HeaderName) -> &str {
        res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_their_types() {
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard/app.js", "text/javascript; charset=utf-8"),
            ("/dashboard/app.css", "text/css; charset=utf-8"),
            ("/dashboard/favicon.svg", "image/svg+xml"),
        ] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&res, header::CONTENT_TYPE), ty, "{path}");
            assert_eq!(header_of(&res, header::CACHE_CONTROL), "no-cache", "{path}");
            assert!(header_of(&res, header::ETAG).starts_with('"'), "{path}");
        }
        let page = get("/", None).await;
        assert!(header_of(&page, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    }

    #[tokio::test]
    async fn a_matching_etag_is_not_modified() {
        let first = get("/dashboard/app.js", None).await;
        let etag = header_of(&first, header::ETAG).to_owned();
        let again = get("/dashboard/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let listed = get("/dashboard/app.js", Some(&format!("\"x\", W/{etag}"))).await;
        assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);
        let other = get("/dashboard/app.js", Some("\"0000\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_links_only_embedded_assets() {
        let html = std::str::from_utf8(INDEX.body).unwrap_or_default();
        let mut linked = 0;
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let url = part.split('"').next().unwrap_or_default();
                if url.starts_with('#') {
                    continue;
                }
                assert!(
                    url.starts_with("dashboard/") && !url.contains("//"),
                    "{url} is not an embedded asset"
                );
                linked += 1;
            }
        }
        assert_eq!(linked, 3);
        assert_ne!(APP_JS.hash, APP_CSS.hash);
    }
}
