//! Hostile clients: held connections, oversized bodies, cross-site and rebound requests.

use super::*;

/// Reads until the server closes the connection or `within` passes; true when it closed.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET /health` on a fresh connection: the status line's code, if it answered.
async fn health_over_tcp(addr: std::net::SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    conn.write_all(
        format!("GET /api/v1/jobs/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.ok()?;
    let line = String::from_utf8_lossy(&out);
    line.split(' ').nth(1)?.parse().ok()
}

/// One `GET /stats` on a fresh connection with the given `Host`: the status code.
async fn stats_with_host(addr: std::net::SocketAddr, host: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req =
        format!("GET /api/v1/jobs/stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.ok()?;
    let line = String::from_utf8_lossy(&out);
    line.split(' ').nth(1)?.parse().ok()
}

// regression: the Host check ignored the port, so a page served by another local server
// (http://localhost:3000, a different origin) rebound to the API's name passed it; and the
// configured loopback address must pass as it is (127.0.0.2:PORT, [::1]:PORT).
#[tokio::test]
async fn hosts_must_name_the_apis_own_loopback_address_and_port() {
    let f = fixture().await;
    for bind in ["127.0.0.1:0", "127.0.0.2:0", "[::1]:0"] {
        let state = ApiState::new(f.service.clone(), ApiConfig::default());
        let Ok(api) = jobs_core::api::start(bind, state, false).await else {
            eprintln!("cannot bind {bind} here; skipped");
            continue;
        };
        let addr = api.local_addr();
        let port = addr.port();
        let other = if port == 65535 { 1 } else { port + 1 };
        for (host, want) in [
            (addr.to_string(), 200),
            (format!("localhost:{port}"), 200),
            (format!("127.0.0.1:{port}"), 200),
            (format!("[::1]:{port}"), 200),
            (format!("localhost:{other}"), 403),
            (format!("{}:{other}", addr.ip()), 403),
            ("localhost".to_owned(), 403),
            (format!("evil.example:{port}"), 403),
        ] {
            assert_eq!(stats_with_host(addr, &host).await, Some(want), "{bind}: Host {host}");
        }
        api.stop().await.expect("the API stops");
    }
}

// regression: the API was served by `axum::serve` with no header-read timeout, no idle
// timeout and no connection cap, so clients that open connections and never finish their
// headers (or idle after a request) held them, and their memory, forever.
#[tokio::test]
async fn held_connections_are_cut_and_health_still_answers() {
    use tokio::io::AsyncWriteExt;
    let f = fixture().await;
    let cap = 4;
    let timeout = Duration::from_millis(400);
    let config = ApiConfig::default().max_connections(cap).header_timeout(timeout);
    let api = jobs_core::api::start("127.0.0.1:0", ApiState::new(f.service.clone(), config), false)
        .await
        .expect("the API starts");
    let addr = api.local_addr();
    // Four times the cap, each with a request line and half its headers.
    let mut held = Vec::new();
    for _ in 0..cap * 4 {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connects");
        c.write_all(b"GET /api/v1/jobs/health HTTP/1.1\r\nHost: 127.0").await.expect("writes");
        held.push(c);
    }
    let started = std::time::Instant::now();
    // Every held connection is closed by the server: those over the cap at once, the
    // others by the header timeout.
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            closed_within(c, timeout + Duration::from_secs(2)).await,
            "held connection {i} was never closed"
        );
    }
    let cut = started.elapsed();
    let status = tokio::time::timeout(Duration::from_secs(1), health_over_tcp(addr))
        .await
        .expect("health answers within a second once the held connections are cut");
    assert_eq!(status, Some(200));
    eprintln!(
        "{} held connections cut after {cut:?}; health answered after {:?}",
        held.len(),
        started.elapsed()
    );
    // A keep-alive connection that idles after its request is closed too.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connects");
    idle.write_all(format!("GET /api/v1/jobs/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("writes");
    assert!(
        closed_within(&mut idle, timeout + Duration::from_secs(2)).await,
        "an idle keep-alive connection was never closed"
    );
    api.stop().await.expect("the API stops");
}

// regression: a body that announced more than the limit was read (up to the limit) before
// the 413; it is refused on its Content-Length at once, before any of it is sent.
#[tokio::test]
async fn bodies_announced_over_the_limit_are_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let config = ApiConfig::default().body_limit(1024);
    let api = jobs_core::api::start("127.0.0.1:0", ApiState::new(f.service.clone(), config), false)
        .await
        .expect("the API starts");
    let addr = api.local_addr();
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connects");
    c.write_all(
        format!("POST /api/v1/jobs/enqueue HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n").as_bytes(),
    )
    .await
    .expect("writes");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("answers without waiting for the body")
        .expect("reads");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    api.stop().await.expect("the API stops");
}

/// A request with the given headers and an optional raw body.
fn raw(method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_owned()))).expect("valid request")
}

// regression: without a token the API answered any browser page: a cross-site form POST
// (CSRF) or a page on a rebound DNS name (Host: evil.example resolving to 127.0.0.1) could
// enqueue jobs and clear the DLQ. Foreign Origins, foreign Hosts and non-JSON bodies are
// refused; bare CLI POSTs stay valid.
#[tokio::test]
async fn cross_site_and_rebound_requests_are_refused_without_a_token() {
    let f = fixture().await;
    let r = &f.router;
    let body = r#"{"name":"api_noargs"}"#;
    let json = ("content-type", "application/json");
    let enqueue = "/api/v1/jobs/enqueue";
    let status = |req| async { send(r, req).await.0.as_u16() };
    // A foreign Origin on a state change.
    let evil = raw(Method::POST, enqueue, &[json, ("origin", "https://evil.example")], Some(body));
    assert_eq!(status(evil).await, 403);
    let null = raw(Method::DELETE, "/api/v1/jobs/dlq", &[("origin", "null")], None);
    assert_eq!(status(null).await, 403);
    // The API's own Origin is fine.
    let own = raw(
        Method::POST,
        enqueue,
        &[json, ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")],
        Some(body),
    );
    assert_eq!(status(own).await, 201);
    // A Host that is not a loopback name (DNS rebinding), even on a GET.
    let rebound = raw(Method::GET, "/api/v1/jobs/stats", &[("host", "evil.example:8080")], None);
    assert_eq!(status(rebound).await, 403);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "localhost"] {
        let ok = raw(Method::GET, "/api/v1/jobs/stats", &[("host", host)], None);
        assert_eq!(status(ok).await, 200, "{host}");
    }
    // Form and text bodies are refused with 415, whatever the endpoint.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let retry = "/api/v1/jobs/dlq/00000000-0000-4000-8000-000000000000/retry";
    assert_eq!(status(raw(Method::POST, retry, &form, Some("a=1"))).await, 415);
    let text = [("content-type", "text/plain")];
    assert_eq!(status(raw(Method::DELETE, "/api/v1/jobs/dlq", &text, Some("x"))).await, 415);
    // A bare POST (no body, no Origin) stays valid: it reaches the handler (no such job).
    assert_eq!(status(raw(Method::POST, retry, &[], None)).await, 404);
}
