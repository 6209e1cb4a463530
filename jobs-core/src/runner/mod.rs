//! What a binary's `main` calls: configuration from flags and environment, the service
//! started, a clean stop on SIGINT/SIGTERM, and the operator subcommands. Feature
//! `runner` (which enables `api`, the HTTP admin API every runner serves):
//! `jobs-core = { version = "…", features = ["runner"] }`.
//!
//! ```no_run
//! // src/bin/my-runner.rs of an application crate
//! use my_tasks as _; // link the crate whose handlers should run (see the crate docs)
//! # mod my_tasks {}
//!
//! fn main() -> std::process::ExitCode {
//!     jobs_core::runner::main()
//! }
//! ```
//!
//! Environment (each also a flag): `REDIS_URL` (unset: the in-memory backend; a
//! comma-separated list for the seed nodes of a cluster, `redis+sentinel://…` for Redis
//! Sentinel), `JOBS_DURABLE_WRITES` (replicas that confirm each enqueue), `REDIS_CA_CERT`,
//! `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY` (TLS files for `rediss://`), `JOBS_NAMESPACE`,
//! `JOBS_WORKERS`, `JOBS_CONCURRENCY`, `JOBS_LEASE`, `JOBS_SHUTDOWN_GRACE`, the retry
//! backoff `JOBS_RETRY_BASE` (seconds, default 120), `JOBS_RETRY_CAP` (default 3600) and
//! `JOBS_RETRY_JITTER` (default 0), `JOBS_UNHANDLED_DEAD_AFTER` (seconds, default 600: how
//! long a job whose handler no live worker has waits before it is dead-lettered);
//! the HTTP API: `JOBS_BIND` (default `127.0.0.1:8080`), `JOBS_API_TOKEN`,
//! `JOBS_API_BODY_LIMIT`, `JOBS_API_MAX_CONNECTIONS`, and the flags `--allow-remote` and `--no-api`;
//! `RUST_LOG` sets the log filter (default `info`).
//!
//! A binary with commands of its own adds them to the runner's command line with
//! [`CliWith`], so that they share the connection flags and `--help`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::backend::redis::redact_url as redact;
use crate::backend::redis::{RedisConfig, TlsFiles};
use crate::context::State;
use crate::error::{Error, Result};
use crate::job::MAX_RETRY_DELAY;
use crate::retry::RetryPolicy;
use crate::service::{BackendChoice, JobService, ServiceConfig};
use crate::worker::WorkerConfig;

mod cli;
mod operate;
#[cfg(feature = "otel")]
mod otlp;
mod show;

use cli::{ApiArgs, Command, RunArgs};
pub use cli::{AppCommand, Cli, CliWith, Invocation, NoExtra, RedisTlsArgs};

/// Parses the command line, sets up logging, runs, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    main_with_state(|_| async { Ok(State::new()) })
}

/// What the application-state closure of [`main_with_state`] learns about the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerEnv {
    /// The Redis URL in use (`None`: the in-memory backend).
    pub redis_url: Option<String>,
    /// The namespace of the deployment's keys.
    pub namespace: String,
    /// The TLS files for a `rediss://` URL (`REDIS_CA_CERT`, `REDIS_CLIENT_CERT`,
    /// `REDIS_CLIENT_KEY`).
    pub redis_tls: TlsFiles,
    /// Replicas that must confirm an enqueue or a schedule tick (`JOBS_DURABLE_WRITES`;
    /// 0: none).
    pub durable_writes: u32,
}

impl RunnerEnv {
    /// The Redis configuration in use (URL, TLS files, namespace), for application data kept
    /// on the same Redis (see
    /// [`RedisConnection::connect`](crate::redis::RedisConnection::connect));
    /// `None` on the in-memory backend.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        let url = self.redis_url.as_deref()?;
        let cfg = RedisConfig {
            tls: self.redis_tls.clone(),
            durable_writes: self.durable_writes,
            ..RedisConfig::new(url)
        };
        Some(cfg.namespace(self.namespace.clone()))
    }
}

/// Like [`main`], with application state for the handlers (`ctx.state::<T>()`), built once
/// at start-up from the Redis URL in use (`None`: the in-memory backend).
///
/// ```no_run
/// use jobs_core::State;
///
/// struct Db { url: Option<String> }
///
/// fn main() -> std::process::ExitCode {
///     jobs_core::runner::main_with_state(|env| async move {
///         Ok(State::new().with(Db { url: env.redis_url }))
///     })
/// }
/// ```
pub fn main_with_state<F, Fut>(state: F) -> ExitCode
where
    F: FnOnce(RunnerEnv) -> Fut,
    Fut: std::future::Future<Output = Result<State>>,
{
    main_with_cli(Cli::parse(), state)
}

/// Like [`main_with_state`], for a command line already parsed: the runner's side of a
/// [`CliWith`] application commands (see [`CliWith::into_invocation`]).
pub fn main_with_cli<F, Fut>(cli: Cli, state: F) -> ExitCode
where
    F: FnOnce(RunnerEnv) -> Fut,
    Fut: std::future::Future<Output = Result<State>>,
{
    // One-shot commands print their answer on stdout; only warnings and errors on stderr.
    init_tracing_with(if cli.runs_workers() { "info" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(run_with_state(cli, state));
    drop(rt);
    shutdown_tracing();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources on one line (`a: b: c`), as the runner prints them.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // Some errors (redis-rs's among them) already print their source; say it once.
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Installs a `tracing` subscriber writing to stderr and reading `RUST_LOG` (default
/// `info`), in colour only when stderr is a terminal and `NO_COLOR` is unset. Only binaries
/// call this; libraries never install a subscriber.
pub fn init_tracing() {
    init_tracing_with("info");
}

/// [`init_tracing`] with the filter used when `RUST_LOG` is unset.
fn init_tracing_with(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    // With `otel` and an OTLP endpoint in the environment: the same log output, and the
    // spans exported too (see `otlp`): those of level info and above, whatever `RUST_LOG`
    // keeps of the log (a `RUST_LOG=warn` runner still exports its jobs' spans).
    #[cfg(feature = "otel")]
    if let Some(otel) = otlp::layer() {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter);
        let otel = otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Flushes the spans not exported yet and stops the exporter (features `runner` and
/// `otel`, when [`init_tracing`] started one: `OTEL_EXPORTER_OTLP_ENDPOINT` was set).
/// The runner's `main` calls it on its way out; a binary that calls [`init_tracing`] and
/// has its own `main` calls it last. Without an exporter, it does nothing.
pub fn shutdown_tracing() {
    #[cfg(feature = "otel")]
    otlp::shutdown();
}

/// A Redis URL (each of a cluster's comma-separated seeds) must name its scheme:
/// `127.0.0.1:6379` alone would be read as something else, with a puzzling error. In a
/// Sentinel URL the commas separate hosts of the one URL
/// (`redis+sentinel://h1:26379,h2:26379/master`).
fn check_redis_url(url: &str) -> Result<()> {
    let sentinel = url.trim_start().split("://").next().is_some_and(|s| s.ends_with("+sentinel"));
    let parts: Vec<&str> = if sentinel { vec![url] } else { url.split(',').collect() };
    match parts.into_iter().map(str::trim).find(|u| !u.is_empty() && !u.contains("://")) {
        None => Ok(()),
        Some(bare) => Err(Error::Config(format!(
            "the Redis URL (--redis-url, REDIS_URL) `{}` has no scheme: expected \
             redis://host:port (rediss:// for TLS, a comma-separated list of them for a \
             cluster's seed nodes, redis+sentinel://host:26379/<master> for Sentinel)",
            redact(bare)
        ))),
    }
}

/// A flag's seconds as a positive duration.
fn secs(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        Error::Config(format!("{what} must be a positive number of seconds, found {v}"))
    })
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    run_with_state(cli, |_| async { Ok(State::new()) }).await
}

/// Runs a parsed command line with application state (see [`main_with_state`]).
pub async fn run_with_state<F, Fut>(cli: Cli, state: F) -> Result<()>
where
    F: FnOnce(RunnerEnv) -> Fut,
    Fut: std::future::Future<Output = Result<State>>,
{
    let (env, json, command) = cli.into_parts();
    if let Some(url) = &env.redis_url {
        check_redis_url(url)?;
    }
    match command {
        Command::Run(args) => {
            let st = state(env.clone()).await?;
            serve(&env, *args, st).await
        }
        other => operate::operate(&env, json, other).await,
    }
}

fn backend(env: &RunnerEnv) -> BackendChoice {
    env.redis_config().map_or(BackendChoice::Memory, BackendChoice::Redis)
}

/// `run`: the service until SIGINT/SIGTERM, then a graceful stop.
async fn serve(env: &RunnerEnv, args: RunArgs, state: State) -> Result<()> {
    // Signal handlers first: a SIGTERM that arrives while starting must still stop us cleanly.
    let shutdown = Shutdown::install()?;
    let backend = backend(env);
    match &backend {
        BackendChoice::Memory => tracing::warn!(
            "using the embedded in-memory backend: jobs live in this process only and are lost on exit; set REDIS_URL to use Redis"
        ),
        BackendChoice::Redis(r) => {
            tracing::info!(url = %redact(&r.url), namespace = %r.namespace, "using redis")
        }
    }
    let cfg = service_config(backend, &args)?;
    // Requests in flight when SIGTERM comes get the shutdown grace too.
    let api_grace = cfg.worker.shutdown_grace;
    let service = std::sync::Arc::new(JobService::connect(cfg).await?.with_state(state));
    let names: Vec<&str> = service.registry().handlers().map(|h| h.name()).collect();
    tracing::info!(handlers = names.len(), names = ?names, "runner starting");
    let api = start_api(&args.api, service.clone()).await?;
    service.start()?;
    shutdown.wait().await;
    tracing::info!("shutting down: no new jobs; running jobs get the shutdown grace");
    if let Some(api) = api {
        api.stop_within(api_grace).await?;
    }
    service.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The service `run` starts, from its flags (checked: a clear error for each bad value).
fn service_config(backend: BackendChoice, args: &RunArgs) -> Result<ServiceConfig> {
    if args.workers == 0 || args.concurrency == 0 {
        return Err(Error::Config("--workers and --concurrency must be at least 1".into()));
    }
    let lease = secs(args.lease, "--lease")?;
    Ok(ServiceConfig {
        backend,
        use_worker_pool: args.workers > 1,
        num_workers: args.workers,
        concurrency: args.concurrency,
        enable_scheduler: !args.no_scheduler,
        enable_workers: !args.no_workers,
        worker: WorkerConfig {
            lease,
            heartbeat_interval: lease / 3,
            grace: Duration::from_secs(5).min(lease),
            shutdown_grace: Duration::try_from_secs_f64(args.shutdown_grace).map_err(|_| {
                Error::Config("--shutdown-grace must be a number of seconds".into())
            })?,
            retry: retry_policy(args)?,
            unhandled_dead_after: secs(args.unhandled_dead_after, "--unhandled-dead-after")?,
            queues: args
                .queues
                .as_deref()
                .map(|q| {
                    q.parse::<crate::QueueSelection>()
                        .map_err(|e| Error::Config(format!("--queues (JOBS_QUEUES): {e}")))
                })
                .transpose()?,
            ..WorkerConfig::default()
        },
        ..ServiceConfig::default()
    })
}

/// The backoff of `--retry-base`, `--retry-cap` and `--retry-jitter` (or their variables).
fn retry_policy(args: &RunArgs) -> Result<RetryPolicy> {
    let base = retry_secs(&args.retry_base, "--retry-base", "JOBS_RETRY_BASE", false)?;
    let cap = retry_secs(&args.retry_cap, "--retry-cap", "JOBS_RETRY_CAP", false)?;
    let jitter = retry_secs(&args.retry_jitter, "--retry-jitter", "JOBS_RETRY_JITTER", true)?;
    if base > cap {
        return Err(Error::Config(format!(
            "--retry-base ({} s) must not exceed --retry-cap ({} s)",
            args.retry_base.trim(),
            args.retry_cap.trim()
        )));
    }
    Ok(RetryPolicy::exponential(base, cap).with_jitter(jitter))
}

/// A retry flag's seconds: at least 1 ms (zero too, if `zero_ok`), at most
/// [`MAX_RETRY_DELAY`].
fn retry_secs(text: &str, flag: &str, var: &str, zero_ok: bool) -> Result<Duration> {
    let bad = |what: &str| {
        Error::Config(format!(
            "{flag} ({var}) must be {what} number of seconds, at most {} (a year), found `{text}`",
            MAX_RETRY_DELAY.as_secs()
        ))
    };
    let what = if zero_ok { "a non-negative" } else { "a positive" };
    let d = text
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n).ok())
        .ok_or_else(|| bad(what))?;
    let min = if zero_ok { Duration::ZERO } else { Duration::from_millis(1) };
    if d < min || d > MAX_RETRY_DELAY {
        return Err(bad(what));
    }
    Ok(d)
}

/// Starts the API for `service`, unless `--no-api`.
async fn start_api(
    args: &ApiArgs,
    service: std::sync::Arc<JobService>,
) -> Result<Option<crate::api::RunningApi>> {
    if args.no_api {
        return Ok(None);
    }
    let config = api_config(args)?;
    let auth = config.has_token();
    let state = crate::api::ApiState::new(service, config);
    let api = crate::api::start(&args.bind, state, args.allow_remote).await?;
    tracing::info!(addr = %api.local_addr(), auth, "serving the HTTP API");
    Ok(Some(api))
}

/// The API's configuration from its flags. A token that is blank or has whitespace at
/// either end is refused: clients send it trimmed, so it would never match and the API
/// would be locked for everyone.
fn api_config(args: &ApiArgs) -> Result<crate::api::ApiConfig> {
    if let Some(token) = &args.api_token {
        if token.trim().is_empty() {
            return Err(Error::Config(
                "the API token (--api-token, JOBS_API_TOKEN) is empty or only whitespace: \
                 set a token, or unset it to serve the API without one"
                    .into(),
            ));
        }
        if token.trim() != token {
            return Err(Error::Config(
                "the API token (--api-token, JOBS_API_TOKEN) has whitespace at its start or \
                 end: remove it (clients send the token trimmed, so it would never match)"
                    .into(),
            ));
        }
    }
    Ok(crate::api::ApiConfig::default()
        .token(args.api_token.clone())
        .body_limit(args.api_body_limit)
        .max_connections(args.api_max_connections))
}

/// SIGINT/SIGTERM, listened for from the moment it is installed.
struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let err = |e: std::io::Error| Error::Config(format!("cannot listen for signals: {e}"));
            Ok(Shutdown {
                term: signal(SignalKind::terminate()).map_err(err)?,
                int: signal(SignalKind::interrupt()).map_err(err)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            let Shutdown { mut term, mut int } = self;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service `jobs-runner <argv>` would start (on the in-memory backend).
    fn config_of(argv: &[&str]) -> Result<ServiceConfig> {
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::Config(e.to_string()))?;
        match cli.into_parts().2 {
            Command::Run(args) => service_config(BackendChoice::Memory, &args),
            other => Err(Error::Config(format!("not `run`: {other:?}"))),
        }
    }

    #[test]
    fn queues_come_from_the_flag_strict_or_weighted_and_a_bad_list_is_refused() -> Result<()> {
        assert_eq!(config_of(&["jobs-runner", "run"])?.worker.queues, None);
        let cfg = config_of(&["jobs-runner", "run", "--queues", "payments,default"])?;
        assert_eq!(
            cfg.worker.queues,
            Some(crate::QueueSelection::strict(["payments", "default"])?)
        );
        let cfg = config_of(&["jobs-runner", "run", "--queues", "payments:3,default:1"])?;
        let want = crate::QueueSelection::weighted([("payments", 3), ("default", 1)])?;
        assert_eq!(cfg.worker.queues, Some(want));
        for bad in ["pay ments", "a:0", ","] {
            let err = config_of(&["jobs-runner", "run", "--queues", bad]).expect_err(bad);
            assert!(err.to_string().contains("--queues"), "{bad}: {err}");
        }
        Ok(())
    }

    // regression: `runner::main()` always used the default backoff (2 minutes before the
    // first retry, capped at an hour); the retry flags set it.
    #[test]
    fn retry_policy_comes_from_the_flags() -> Result<()> {
        let cfg = config_of(&["jobs-runner", "run"])?;
        assert_eq!(cfg.worker.retry, RetryPolicy::default());
        let cfg = config_of(&[
            "jobs-runner",
            "run",
            "--retry-base",
            "10",
            "--retry-cap",
            "300",
            "--retry-jitter",
            "2.5",
        ])?;
        let want =
            crate::RetryPolicy::exponential(Duration::from_secs(10), Duration::from_secs(300))
                .with_jitter(Duration::from_millis(2500));
        assert_eq!(cfg.worker.retry, want);
        // The default cap still applies to a base alone.
        let cfg = config_of(&["jobs-runner", "run", "--retry-base", "0.5"])?;
        assert_eq!(cfg.worker.retry.base, Duration::from_millis(500));
        assert_eq!(cfg.worker.retry.cap, Duration::from_secs(3600));
        Ok(())
    }

    // regression: a job whose handler the process lacked burnt its retries at once; how
    // long it may wait for a live worker with the handler is the runner's to set.
    #[test]
    fn unhandled_dead_after_comes_from_the_flag() -> Result<()> {
        let cfg = config_of(&["jobs-runner", "run"])?;
        assert_eq!(cfg.worker.unhandled_dead_after, Duration::from_secs(600));
        let cfg = config_of(&["jobs-runner", "run", "--unhandled-dead-after", "90"])?;
        assert_eq!(cfg.worker.unhandled_dead_after, Duration::from_secs(90));
        let err = config_of(&["jobs-runner", "run", "--unhandled-dead-after", "0"]).err();
        assert!(err.is_some_and(|e| e.to_string().contains("--unhandled-dead-after")));
        Ok(())
    }

    // regression: a bad retry flag must be a clear error naming it, never the default.
    #[test]
    fn bad_retry_flags_are_clear_errors() {
        for (argv, words) in [
            (&["--retry-base", "0"][..], &["--retry-base", "JOBS_RETRY_BASE", "0"][..]),
            (&["--retry-base", "-5"], &["--retry-base", "-5"]),
            (&["--retry-base", "soon"], &["--retry-base", "soon"]),
            (&["--retry-base", "inf"], &["--retry-base", "inf"]),
            (&["--retry-cap", "0"], &["--retry-cap", "JOBS_RETRY_CAP"]),
            (&["--retry-cap", "x"], &["--retry-cap", "x"]),
            (&["--retry-jitter", "-1"], &["--retry-jitter", "JOBS_RETRY_JITTER"]),
            (&["--retry-jitter", "lots"], &["--retry-jitter", "lots"]),
            (&["--retry-base", "7200"], &["--retry-base", "--retry-cap", "3600"]),
            (&["--retry-base", "20", "--retry-cap", "10"], &["--retry-base", "--retry-cap"]),
        ] {
            let mut full = vec!["jobs-runner", "run"];
            full.extend_from_slice(argv);
            match config_of(&full) {
                Ok(cfg) => panic!("{argv:?} accepted: {:?}", cfg.worker.retry),
                Err(e) => {
                    let msg = e.to_string();
                    for w in words {
                        assert!(msg.contains(w), "{argv:?}: `{msg}` should mention `{w}`");
                    }
                }
            }
        }
        // Zero jitter is the default, not an error.
        assert!(config_of(&["jobs-runner", "run", "--retry-jitter", "0"]).is_ok());
    }

    /// The API configuration of `jobs-runner <argv>`.
    fn api_of(argv: &[&str]) -> Result<crate::api::ApiConfig> {
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::Config(e.to_string()))?;
        match cli.into_parts().2 {
            Command::Run(args) => api_config(&args.api),
            other => Err(Error::Config(format!("not `run`: {other:?}"))),
        }
    }

    // regression: a blank token, or one with spaces at an end, was taken as given (or as no
    // token): clients send it trimmed, so nobody could ever authenticate.
    #[test]
    fn blank_or_padded_api_tokens_are_refused_at_start_up() {
        for (token, word) in
            [("", "empty"), ("   ", "empty"), (" s3cret", "whitespace"), ("s3cret\n", "whitespace")]
        {
            match api_of(&["jobs-runner", "run", "--api-token", token]) {
                Ok(cfg) => panic!("{token:?} accepted: {cfg:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(word) && msg.contains("JOBS_API_TOKEN"),
                        "{token:?}: {msg}"
                    );
                }
            }
        }
        let ok = api_of(&["jobs-runner", "run", "--api-token", "s3 cret"]).map(|c| c.has_token());
        assert!(matches!(ok, Ok(true)), "{ok:?}");
        assert!(matches!(api_of(&["jobs-runner", "run"]).map(|c| c.has_token()), Ok(false)));
    }

    // regression: `REDIS_URL=127.0.0.1:6379` failed with redis-rs's "Redis URL did not
    // parse - InvalidClientConfig"; the error says what is expected.
    #[test]
    fn redis_urls_without_a_scheme_are_refused_with_the_expected_form() {
        for ok in [
            "redis://127.0.0.1:6379",
            "rediss://h:6380/0",
            "redis://a:7000, redis://b:7001",
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/master",
            "rediss+sentinel://u:p@h1:26379,h2:26379/master/0",
        ] {
            assert!(check_redis_url(ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1:6379", "redis://a:7000,b:7001", "localhost"] {
            let err = check_redis_url(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("redis://host:port") && err.contains("REDIS_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn passwords_are_hidden_in_logs() {
        assert_eq!(redact("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redact("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
