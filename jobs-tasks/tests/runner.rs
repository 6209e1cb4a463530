//! The `jobs-runner` binary end to end, as an operator uses it: `seed-demo`, `run` against a
//! private Redis, `enqueue` and `job` through the CLI, the job seen through the HTTP API,
//! and SIGTERM for a clean exit. Also the README's first command: `run` without Redis.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobs_test_support::{RedisServer, free_port, unique_namespace};
use serde_json::Value;

const RUNNER: &str = env!("CARGO_BIN_EXE_jobs-runner");
const TOKEN: &str = "e2e-token";

/// Kills the runner if a test fails before stopping it.
struct Runner {
    child: Child,
}

impl Drop for Runner {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Runner {
    /// Sends SIGTERM and waits (bounded) for the exit.
    fn terminate(&mut self, limit: Duration) -> ExitStatus {
        jobs_test_support::sigterm(&self.child).expect("kill(SIGTERM) failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the runner") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the runner did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn cli(redis: &RedisServer, ns: &str, args: &[&str]) -> Output {
    Command::new(RUNNER)
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("JOBS_NAMESPACE", ns)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run jobs-runner")
}

fn cli_json(redis: &RedisServer, ns: &str, args: &[&str]) -> Value {
    let out = cli(redis, ns, args);
    assert!(
        out.status.success(),
        "jobs-runner {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "jobs-runner {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A plain HTTP/1.1 GET on loopback; returns the status code and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runner_seeds_runs_a_job_from_the_cli_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start();
    let ns = unique_namespace("e2e");

    let seeded = cli_json(&redis, &ns, &["seed-demo", "--users", "4", "--json"]);
    assert_eq!(seeded["users"], 4, "{seeded}");
    assert_eq!(seeded["symbols"], 8, "{seeded}");

    let port = free_port().expect("a free loopback port");
    let mut runner = Runner {
        child: Command::new(RUNNER)
            .args(["run", "--lease", "2", "--shutdown-grace", "5"])
            .env("REDIS_URL", redis.url())
            .env("JOBS_NAMESPACE", &ns)
            .env("JOBS_BIND", format!("127.0.0.1:{port}"))
            .env("JOBS_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jobs-runner run"),
    };

    let enq = cli_json(
        &redis,
        &ns,
        &["enqueue", "sync_portfolio", "--args", r#"{"user_id":"user-002"}"#, "--json"],
    );
    let id = enq["id"].as_str().expect("enqueue prints the id").to_owned();

    let job = wait_for("the job to complete", Duration::from_secs(30), || {
        let job = cli_json(&redis, &ns, &["job", &id, "--json"]);
        assert_ne!(job["status"], "failed", "{job}");
        (job["status"] == "completed").then_some(job)
    });
    assert_eq!(job["name"], "sync_portfolio");
    assert_eq!(job["result"]["user_id"], "user-002", "{job}");
    assert!(job["result"]["total_value"].as_f64().is_some_and(|v| v > 0.0), "{job}");

    // The same job through the HTTP API.
    let (status, body) = wait_for("the API", Duration::from_secs(15), || {
        http_get(port, &format!("/api/v1/jobs/job/{id}")).ok()
    });
    assert_eq!(status, 200, "{body}");
    let api_job: Value = serde_json::from_str(&body).expect("the API answers JSON");
    let api_job = api_job.get("job").unwrap_or(&api_job);
    assert_eq!(api_job["status"], "completed", "{body}");

    let stats = cli_json(&redis, &ns, &["stats", "--json"]);
    assert!(stats["counters"]["completed"].as_u64().is_some_and(|n| n >= 1), "{stats}");

    let status = runner.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "runner exited with {status}");
}

#[test]
fn seed_demo_without_redis_explains_why_not() {
    let out = Command::new(RUNNER)
        .args(["seed-demo"])
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run jobs-runner");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set REDIS_URL") && err.contains("in memory"), "{err}");
}

/// `seed-demo` after a global flag that takes a value (`--redis-ca-cert <file>`) is still
/// `seed-demo`, with the same connection flags as the runner's own commands.
#[test]
fn seed_demo_after_a_tls_flag_is_still_seed_demo() {
    let ca = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-test-ca.pem");
    std::fs::write(&ca, "not read: seed-demo stops at the missing REDIS_URL first\n")
        .expect("write the CA file");
    let out = Command::new(RUNNER)
        .arg("--redis-ca-cert")
        .arg(&ca)
        .arg("seed-demo")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CA_CERT")
        .stdin(Stdio::null())
        .output()
        .expect("run jobs-runner");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set REDIS_URL") && err.contains("in memory"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// One command line: `--help` lists `seed-demo` beside the runner's commands.
#[test]
fn help_lists_seed_demo_beside_the_runner_commands() {
    let out = Command::new(RUNNER).arg("--help").stdin(Stdio::null()).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "enqueue", "stats", "dlq", "schedules", "seed-demo", "--redis-ca-cert"] {
        assert!(help.contains(cmd), "`{cmd}` missing from --help:\n{help}");
    }
}

#[test]
fn without_redis_the_runner_seeds_memory_and_stops_cleanly() {
    let port = free_port().expect("a free loopback port");
    let mut runner = Runner {
        child: Command::new(RUNNER)
            .env_remove("REDIS_URL")
            .env("JOBS_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jobs-runner"),
    };
    let stderr = runner.child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    // The reader ends at EOF, when the runner exits.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| l.contains("worker started")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                panic!("no `worker started` line within 20 s; log so far:\n{}", seen.join("\n"))
            }
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("in-memory backend"), "{log}");
    assert!(log.contains("seeded with demo data"), "{log}");
    assert!(log.contains("users=10"), "{log}");
    // The runner installs its SIGTERM handler just after start-up; a signal before that
    // kills it the default way. Give it a moment past its last start-up line.
    std::thread::sleep(Duration::from_millis(500));

    let status = runner.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "runner exited with {status}");
    reader.join().expect("stderr reader");
}

/// Reads one HTTP/1.1 response with a `Content-Length` body: (head, body).
fn read_response(s: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

// regression: on SIGTERM, requests that had arrived on keep-alive connections were closed
// without a response, so a client could not tell whether its enqueue happened. They are
// finished within the shutdown grace and answered with `Connection: close`.
#[test]
fn sigterm_finishes_requests_in_flight_on_keep_alive_connections() {
    let port = free_port().expect("a free loopback port");
    let mut runner = Runner {
        child: Command::new(RUNNER)
            .args(["run", "--shutdown-grace", "5"])
            .env_remove("REDIS_URL")
            .env_remove("JOBS_API_TOKEN")
            .env("JOBS_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jobs-runner"),
    };
    let host = format!("127.0.0.1:{port}");
    let connect = || {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok::<_, std::io::Error>(s)
    };
    let health = format!("GET /api/v1/jobs/health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    // Two keep-alive connections, each past one request.
    let (mut busy, mut idle) = wait_for("the API", Duration::from_secs(20), || {
        let (mut a, mut b) = (connect().ok()?, connect().ok()?);
        for s in [&mut a, &mut b] {
            s.write_all(health.as_bytes()).ok()?;
            let (head, _) = read_response(s).ok()?;
            head.starts_with("HTTP/1.1 200").then_some(())?;
        }
        Some((a, b))
    });
    // The signal handler is installed early, but give the runner a moment past start-up.
    std::thread::sleep(Duration::from_millis(300));
    // `busy` has an enqueue in flight: its head and half its body are sent.
    let body = r#"{"name":"update_24h_stats"}"#;
    let (first, rest) = body.split_at(body.len() / 2);
    write!(
        busy,
        "POST /api/v1/jobs/enqueue HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .expect("send the head");
    std::thread::sleep(Duration::from_millis(200));
    jobs_test_support::sigterm(&runner.child).expect("kill(SIGTERM) failed");
    // `idle` sends its next request just after the signal.
    std::thread::sleep(Duration::from_millis(50));
    idle.write_all(health.as_bytes()).expect("send on the idle connection");
    std::thread::sleep(Duration::from_millis(250));
    busy.write_all(rest.as_bytes()).expect("send the rest of the body");

    let (head, got) = read_response(&mut busy).expect("the enqueue in flight is answered");
    assert!(head.starts_with("HTTP/1.1 201"), "{head}{got}");
    assert!(got.contains("job_id"), "{got}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let mut more = Vec::new();
    assert_eq!(busy.read_to_end(&mut more).expect("then closed"), 0, "nothing after the answer");
    let (head, _) = read_response(&mut idle).expect("the request sent at SIGTERM is answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let status = runner.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "runner exited with {status}");
}
