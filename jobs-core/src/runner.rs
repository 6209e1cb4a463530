//! What a binary's `main` calls: configuration from flags and environment, the service
//! started, a clean stop on SIGINT/SIGTERM, and the operator subcommands.
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
//! comma-separated list for the seed nodes of a cluster), `REDIS_CA_CERT`,
//! `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY` (TLS files for `rediss://`), `JOBS_NAMESPACE`,
//! `JOBS_WORKERS`, `JOBS_CONCURRENCY`, `JOBS_LEASE`, `JOBS_SHUTDOWN_GRACE`;
//! the HTTP API: `JOBS_BIND` (default `127.0.0.1:8080`), `JOBS_API_TOKEN`,
//! `JOBS_API_BODY_LIMIT`, and the flags `--allow-remote` and `--no-api`;
//! `RUST_LOG` sets the log filter (default `info`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::backend::redis::{RedisConfig, TlsFiles};
use crate::context::State;
use crate::error::{Error, Result};
use crate::job::{JobId, JobPriority};
use crate::service::{BackendChoice, JobService, ServiceConfig};
use crate::worker::WorkerConfig;

/// The runner's command line: [`CliWith`] no application commands.
pub type Cli = CliWith<NoExtra>;

/// The runner's command line with an application's own subcommands `E`: they share the
/// global flags (`--redis-url`, `--namespace`, the TLS files, `--json`), are listed in
/// `--help` beside the runner's, and come back from [`CliWith::into_invocation`] for the
/// application to run (the runner's own go to [`main_with_cli`] or [`run`] unchanged).
/// The application derives `E` with clap (a dependency of its own, feature `derive`).
///
/// ```no_run
/// use clap::Parser;
/// use jobs_core::runner::{CliWith, Invocation};
///
/// #[derive(Debug, clap::Subcommand)]
/// enum MyCommand {
///     /// Load the fixtures into the deployment's Redis.
///     LoadFixtures,
/// }
///
/// fn main() -> std::process::ExitCode {
///     match CliWith::<MyCommand>::parse().into_invocation() {
///         Invocation::App(app) => {
///             println!("{:?} on {:?}", app.command, app.env.redis_url);
///             std::process::ExitCode::SUCCESS
///         }
///         Invocation::Runner(cli) => {
///             jobs_core::runner::main_with_cli(cli, |_| async { Ok(jobs_core::State::new()) })
///         }
///     }
/// }
/// ```
#[derive(Debug, Parser)]
#[command(name = "jobs-runner", version, about = "Run and operate background jobs", long_about = None)]
pub struct CliWith<E: Subcommand> {
    #[command(flatten)]
    conn: Connection,
    /// Machine-readable output (JSON) for the operator commands.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<AnyCommand<E>>,
}

/// No subcommands beyond the runner's own (see [`Cli`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum NoExtra {}

/// What a command line asks for (see [`CliWith::into_invocation`]).
#[derive(Debug)]
pub enum Invocation<E> {
    /// One of the runner's commands (none: `run`), for [`main_with_cli`] or [`run`].
    Runner(Cli),
    /// One of the application's commands.
    App(AppCommand<E>),
}

/// One of an application's own commands (`E` of [`CliWith`]) and what the global flags say.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppCommand<E> {
    /// The deployment named by `--redis-url`, `--namespace` and the TLS flags (or their
    /// variables), as the runner's own commands see it.
    pub env: RunnerEnv,
    /// `--json`: machine-readable output.
    pub json: bool,
    /// The command.
    pub command: E,
}

impl<E: Subcommand> CliWith<E> {
    /// Splits the runner's commands from the application's.
    pub fn into_invocation(self) -> Invocation<E> {
        let CliWith { conn, json, command } = self;
        let command = match command {
            Some(AnyCommand::App(command)) => {
                return Invocation::App(AppCommand { env: conn.env(), json, command });
            }
            Some(AnyCommand::Runner(c)) => Some(AnyCommand::Runner(c)),
            None => None,
        };
        Invocation::Runner(CliWith { conn, json, command })
    }
}

/// The runner's commands, then the application's.
#[derive(Debug, Subcommand)]
enum AnyCommand<E: Subcommand> {
    #[command(flatten)]
    Runner(Command),
    #[command(flatten)]
    App(E),
}

#[derive(Debug, Args)]
struct Connection {
    /// Redis URL (`redis://` or `rediss://`; a comma-separated list names the seed nodes of a
    /// cluster); without it the runner uses the in-memory backend.
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// Namespace of this deployment's keys.
    #[arg(long, env = "JOBS_NAMESPACE", default_value = "jobs", global = true)]
    namespace: String,
    #[command(flatten)]
    tls: RedisTlsArgs,
}

impl Connection {
    /// What the flags say about the deployment (the one place that reads them).
    fn env(&self) -> RunnerEnv {
        RunnerEnv {
            redis_url: self.redis_url.clone().filter(|u| !u.is_empty()),
            namespace: self.namespace.clone(),
            redis_tls: self.tls.files(),
        }
    }
}

/// The TLS flags of a command line that connects to Redis (`--redis-ca-cert`,
/// `--redis-client-cert`, `--redis-client-key`, or the `REDIS_*` variables): for binaries
/// with subcommands of their own to `#[command(flatten)]`.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisTlsArgs {
    /// PEM file of the CA that signed the Redis server's certificate (for `rediss://`).
    #[arg(long, env = "REDIS_CA_CERT", value_name = "PEM", global = true)]
    pub redis_ca_cert: Option<std::path::PathBuf>,
    /// PEM file of a client certificate for Redis servers that require one.
    #[arg(long, env = "REDIS_CLIENT_CERT", value_name = "PEM", global = true)]
    pub redis_client_cert: Option<std::path::PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "REDIS_CLIENT_KEY", value_name = "PEM", global = true)]
    pub redis_client_key: Option<std::path::PathBuf>,
}

impl RedisTlsArgs {
    /// The files given.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: self.redis_ca_cert.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run workers (the default).
    Run(RunArgs),
    /// Enqueue a job by name.
    Enqueue {
        /// Handler name.
        name: String,
        /// Arguments as JSON.
        #[arg(long, default_value = "{}")]
        args: String,
        /// critical, high, normal or low.
        #[arg(long)]
        priority: Option<String>,
        /// Run after this many seconds.
        #[arg(long = "in", value_name = "SECS", conflicts_with = "at")]
        delay: Option<f64>,
        /// Run at this RFC 3339 time.
        #[arg(long)]
        at: Option<String>,
    },
    /// Show a job.
    Job {
        /// The job id.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Queue statistics.
    Stats,
    /// Handlers linked into this binary.
    Handlers,
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        op: DlqOp,
    },
    /// Schedules (shared by every runner of the deployment).
    Schedules {
        #[command(subcommand)]
        op: ScheduleOp,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleOp {
    /// List schedules with their last and next runs.
    List,
    /// Enable a schedule.
    Enable {
        /// The schedule's name.
        name: String,
    },
    /// Disable a schedule (for every runner, until enabled again).
    Disable {
        /// The schedule's name.
        name: String,
    },
    /// Enqueue one job of the schedule now (its next run does not move).
    Run {
        /// The schedule's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqOp {
    /// List dead jobs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put a dead job back in its queue.
    Retry {
        /// The job id.
        id: String,
    },
    /// Delete every dead job.
    Clear,
}

#[derive(Debug, Args, Default)]
struct RunArgs {
    /// Workers in this process (more than 1 runs a pool).
    #[arg(long, env = "JOBS_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, env = "JOBS_CONCURRENCY", default_value_t = 10)]
    concurrency: usize,
    /// Lease length in seconds (a killed runner's jobs come back after about this long).
    #[arg(long, env = "JOBS_LEASE", default_value_t = 30.0)]
    lease: f64,
    /// Seconds running jobs get to finish at shutdown before they are released.
    #[arg(long, env = "JOBS_SHUTDOWN_GRACE", default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    no_scheduler: bool,
    /// Do not run workers in this process (an API- or scheduler-only runner).
    #[arg(long)]
    no_workers: bool,
    #[cfg(feature = "api")]
    #[command(flatten)]
    api: ApiArgs,
}

/// The HTTP admin API's flags (see [`crate::api`]).
#[cfg(feature = "api")]
#[derive(Debug, Args, Default)]
struct ApiArgs {
    /// Address of the HTTP admin API (`host:port`).
    #[arg(long, env = "JOBS_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Bearer token the API requires on every endpoint but health.
    #[arg(long, env = "JOBS_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Serve the API on a non-loopback address even without a token.
    #[arg(long)]
    allow_remote: bool,
    /// Largest request body the API accepts, in bytes.
    #[arg(long, env = "JOBS_API_BODY_LIMIT", default_value_t = crate::api::DEFAULT_BODY_LIMIT)]
    api_body_limit: usize,
    /// Do not serve the HTTP API.
    #[arg(long)]
    no_api: bool,
}

#[cfg(feature = "api")]
impl ApiArgs {
    fn from_env() -> Self {
        ApiArgs {
            bind: std::env::var("JOBS_BIND").unwrap_or_else(|_| "127.0.0.1:8080".into()),
            api_token: std::env::var("JOBS_API_TOKEN").ok(),
            api_body_limit: env_or("JOBS_API_BODY_LIMIT", crate::api::DEFAULT_BODY_LIMIT),
            ..ApiArgs::default()
        }
    }

    /// Starts the API for `service`, unless `--no-api`.
    async fn start(
        &self,
        service: std::sync::Arc<JobService>,
    ) -> Result<Option<crate::api::RunningApi>> {
        if self.no_api {
            return Ok(None);
        }
        let config = crate::api::ApiConfig::default()
            .token(self.api_token.clone())
            .body_limit(self.api_body_limit);
        let auth = config.has_token();
        let state = crate::api::ApiState::new(service, config);
        let api = crate::api::start(&self.bind, state, self.allow_remote).await?;
        tracing::info!(addr = %api.local_addr(), auth, "serving the HTTP API");
        Ok(Some(api))
    }
}

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
}

impl RunnerEnv {
    /// The Redis configuration in use (URL, TLS files, namespace), for application data kept
    /// on the same Redis (see
    /// [`RedisConnection::connect`](crate::backend::redis::RedisConnection::connect));
    /// `None` on the in-memory backend.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        let url = self.redis_url.as_deref()?;
        let cfg = RedisConfig { tls: self.redis_tls.clone(), ..RedisConfig::new(url) };
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
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_with_state(cli, state)) {
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

/// Installs a `tracing` subscriber reading `RUST_LOG` (default `info`). Only binaries call
/// this; libraries never install a subscriber.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

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
    let command = match cli.command {
        Some(AnyCommand::Runner(c)) => Some(c),
        Some(AnyCommand::App(never)) => match never {},
        None => None,
    };
    let command = command.unwrap_or(Command::Run(RunArgs {
        workers: env_or("JOBS_WORKERS", 1),
        concurrency: env_or("JOBS_CONCURRENCY", 10),
        lease: env_or("JOBS_LEASE", 30.0),
        shutdown_grace: env_or("JOBS_SHUTDOWN_GRACE", 30.0),
        no_scheduler: false,
        no_workers: false,
        #[cfg(feature = "api")]
        api: ApiArgs::from_env(),
    }));
    match command {
        Command::Run(args) => {
            let st = state(cli.conn.env()).await?;
            serve(&cli.conn, args, st).await
        }
        other => operate(&cli.conn, cli.json, other).await,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn backend(conn: &Connection) -> BackendChoice {
    conn.env().redis_config().map_or(BackendChoice::Memory, BackendChoice::Redis)
}

async fn serve(conn: &Connection, args: RunArgs, state: State) -> Result<()> {
    // Signal handlers first: a SIGTERM that arrives while starting must still stop us cleanly.
    let shutdown = Shutdown::install()?;
    let backend = backend(conn);
    match &backend {
        BackendChoice::Memory => tracing::warn!(
            "using the embedded in-memory backend: jobs live in this process only and are lost on exit; set REDIS_URL to use Redis"
        ),
        BackendChoice::Redis(r) => {
            tracing::info!(url = %redact(&r.url), namespace = %r.namespace, "using redis")
        }
    }
    if args.workers == 0 || args.concurrency == 0 {
        return Err(Error::Config("--workers and --concurrency must be at least 1".into()));
    }
    let lease = secs(args.lease, "--lease")?;
    let cfg = ServiceConfig {
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
            ..WorkerConfig::default()
        },
        ..ServiceConfig::default()
    };
    let service = std::sync::Arc::new(JobService::connect(cfg).await?.with_state(state));
    let names: Vec<&str> = service.registry().handlers().map(|h| h.name()).collect();
    tracing::info!(handlers = names.len(), names = ?names, "runner starting");
    #[cfg(feature = "api")]
    let api = args.api.start(service.clone()).await?;
    service.start()?;
    shutdown.wait().await;
    tracing::info!("shutting down: no new jobs; running jobs get the shutdown grace");
    #[cfg(feature = "api")]
    if let Some(api) = api {
        api.stop().await?;
    }
    service.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

use crate::backend::redis::redact_url as redact;

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

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

async fn operate(conn: &Connection, json: bool, command: Command) -> Result<()> {
    if let Command::Handlers = command {
        let service = JobService::with_parts(
            ServiceConfig::default(),
            crate::JobQueue::memory(),
            std::sync::Arc::new(crate::Registry::global()?.clone()),
            State::new(),
        );
        let hs = service.handlers();
        return print(json, &hs, || {
            hs.iter()
                .map(|h| {
                    format!(
                        "{:<28} priority={:<8} max_retries={:<3} timeout={}s  args={}",
                        h.name, h.priority, h.max_retries, h.timeout, h.args_type
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }
    let BackendChoice::Redis(rc) = backend(conn) else {
        return Err(Error::Config(
            "operator commands need a shared backend: set REDIS_URL (the in-memory backend lives inside the running process)".into(),
        ));
    };
    let queue = crate::JobQueue::new(crate::backend::redis::RedisBackend::connect(rc).await?);
    match command {
        Command::Enqueue { name, args, priority, delay, at } => {
            let args: serde_json::Value = serde_json::from_str(&args)
                .map_err(|e| Error::Config(format!("--args is not valid JSON: {e}")))?;
            let mut e = queue.enqueue(name, args);
            if let Some(p) = priority {
                e = e.priority(p.parse::<JobPriority>()?);
            }
            if let Some(d) = delay {
                e = e.delay(secs(d, "--in")?);
            }
            if let Some(at) = at {
                let t = chrono::DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| Error::Config(format!("--at is not an RFC 3339 time: {e}")))?;
                e = e.scheduled_at(t.with_timezone(&chrono::Utc));
            }
            let id = e.await?;
            print(json, &serde_json::json!({ "id": id }), || format!("enqueued {id}"))
        }
        Command::Job { id } => {
            let id: JobId = id.parse()?;
            let job = queue.get_job(id).await?.ok_or(Error::NotFound { id })?;
            print(json, &job, || serde_json::to_string_pretty(&job).unwrap_or_default())
        }
        Command::Cancel { id } => {
            let id: JobId = id.parse()?;
            let out = queue.cancel_job(id).await?;
            print(json, &serde_json::json!({ "id": id, "outcome": out }), || match out {
                crate::backend::CancelOutcome::Cancelled => format!("cancelled {id}"),
                crate::backend::CancelOutcome::Requested => {
                    format!("{id} is running; asked it to stop")
                }
            })
        }
        Command::Stats => {
            let s = queue.stats().await?;
            print(json, &s, || {
                format!(
                    "pending: critical={} high={} normal={} low={} (total {})\nscheduled: {} (retrying {})\nprocessing: {}\ndead letter: {}\ncounters: {}",
                    s.pending.critical,
                    s.pending.high,
                    s.pending.normal,
                    s.pending.low,
                    s.total_pending,
                    s.scheduled,
                    s.retrying,
                    s.processing,
                    s.dead_letter,
                    serde_json::to_string(&s.counters).unwrap_or_default()
                )
            })
        }
        Command::Dlq { op: DlqOp::List { limit } } => {
            let jobs = queue.get_dead_letter_jobs(limit).await?;
            print(json, &jobs, || {
                jobs.iter()
                    .map(|j| {
                        format!(
                            "{}  {:<24} retries={} error={}",
                            j.id,
                            j.name,
                            j.retry_count,
                            j.error.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Dlq { op: DlqOp::Retry { id } } => {
            let id: JobId = id.parse()?;
            queue.retry_dead_letter_job(id).await?;
            print(json, &serde_json::json!({ "id": id, "retried": true }), || {
                format!("{id} is pending again")
            })
        }
        Command::Dlq { op: DlqOp::Clear } => {
            let n = queue.clear_dead_letter_queue().await?;
            print(json, &serde_json::json!({ "cleared": n }), || format!("cleared {n} dead jobs"))
        }
        Command::Schedules { op } => {
            let registry = std::sync::Arc::new(crate::Registry::global()?.clone());
            let sched =
                crate::Scheduler::new(queue.clone(), registry, crate::SchedulerConfig::default());
            match op {
                ScheduleOp::List => {
                    let list = sched.list().await?;
                    print(json, &list, || {
                        list.iter()
                            .map(|s| {
                                let when = match (&s.cron_expression, s.interval_seconds) {
                                    (Some(c), _) => format!("cron {c}"),
                                    (None, Some(n)) => format!("every {n}s"),
                                    _ => "once".to_owned(),
                                };
                                format!(
                                    "{:<22} {:<28} {:<22} {:<8} next={} last={} runs={}",
                                    s.name,
                                    s.job_name,
                                    when,
                                    if s.enabled { "enabled" } else { "disabled" },
                                    s.next_run
                                        .map(|t| t.to_rfc3339())
                                        .unwrap_or_else(|| "-".into()),
                                    s.last_run
                                        .map(|t| t.to_rfc3339())
                                        .unwrap_or_else(|| "-".into()),
                                    s.run_count
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                }
                ScheduleOp::Enable { name } => {
                    let s = sched.enable(&name).await?;
                    print(json, &s, || format!("{name} enabled"))
                }
                ScheduleOp::Disable { name } => {
                    let s = sched.disable(&name).await?;
                    print(json, &s, || format!("{name} disabled"))
                }
                ScheduleOp::Run { name } => {
                    let id = sched.run_now(&name).await?;
                    print(json, &serde_json::json!({ "schedule": name, "job_id": id }), || {
                        format!("enqueued {id} for {name}")
                    })
                }
            }
        }
        Command::Run(_) | Command::Handlers => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_logs() {
        assert_eq!(redact("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redact("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn cli_parses_the_documented_commands() {
        for argv in [
            &["jobs-runner"][..],
            &["jobs-runner", "run", "--workers", "2", "--concurrency", "5"],
            &["jobs-runner", "enqueue", "sync_portfolio", "--args", "{}", "--priority", "high"],
            &["jobs-runner", "--json", "stats"],
            &["jobs-runner", "dlq", "retry", "0190f5c2-7a3b-7c1d-9e2f-0123456789ab"],
            &["jobs-runner", "schedules", "disable", "portfolio_sync"],
            &["jobs-runner", "run", "--no-workers"],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
        assert!(
            Cli::try_parse_from(["jobs-runner", "enqueue", "x", "--in", "5", "--at", "t"]).is_err()
        );
    }

    #[derive(Debug, PartialEq, Subcommand)]
    enum Extra {
        /// An application command.
        SeedDemo {
            #[arg(long, default_value_t = 10)]
            users: usize,
        },
    }

    #[test]
    fn application_commands_share_the_global_flags() {
        <CliWith<Extra> as clap::CommandFactory>::command().debug_assert();
        <Cli as clap::CommandFactory>::command().debug_assert();
        let help = <CliWith<Extra> as clap::CommandFactory>::command().render_long_help();
        let help = help.to_string();
        assert!(help.contains("seed-demo") && help.contains("schedules"), "{help}");
        assert!(!help.contains("CliWith"), "the type's rustdoc is not the command's help: {help}");
        let parse =
            |argv: &[&str]| CliWith::<Extra>::try_parse_from(argv).map(CliWith::into_invocation);
        for argv in [
            &["jobs-runner", "--redis-ca-cert", "ca.pem", "seed-demo", "--users", "3"][..],
            &["jobs-runner", "--namespace", "ns", "--redis-url", "redis://h", "seed-demo"],
            &["jobs-runner", "seed-demo", "--redis-ca-cert", "ca.pem", "--json"],
        ] {
            match parse(argv) {
                Ok(Invocation::App(app)) => {
                    assert!(matches!(app.command, Extra::SeedDemo { .. }), "{argv:?}");
                    let ca = app.env.redis_tls.ca_cert.as_deref();
                    let ns = app.env.namespace.as_str();
                    assert!(ca == Some("ca.pem".as_ref()) || ns == "ns", "{argv:?}: {app:?}");
                }
                other => panic!("{argv:?}: {other:?}"),
            }
        }
        let Ok(Invocation::App(app)) = parse(&["jobs-runner", "--json", "seed-demo", "--users=3"])
        else {
            panic!("seed-demo --users=3");
        };
        assert!(app.json);
        assert_eq!(app.command, Extra::SeedDemo { users: 3 });
        for argv in [
            &["jobs-runner", "--redis-ca-cert", "ca.pem", "stats"][..],
            &["jobs-runner", "--namespace", "ns"],
            &["jobs-runner", "schedules", "run", "seed-demo"],
        ] {
            assert!(matches!(parse(argv), Ok(Invocation::Runner(_))), "{argv:?}");
        }
    }
}
