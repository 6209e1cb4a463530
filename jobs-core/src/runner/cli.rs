//! The runner's command line: every flag and subcommand, as clap types.

use clap::{Args, Parser, Subcommand};

use super::RunnerEnv;
use crate::backend::redis::TlsFiles;

/// The runner's command line: [`CliWith`] no application commands.
pub type Cli = CliWith<NoExtra>;

/// The runner's command line with an application's own subcommands `E`: they share the
/// global flags (`--redis-url`, `--namespace`, the TLS files, `--json`), are listed in
/// `--help` beside the runner's, and come back from [`CliWith::into_invocation`] for the
/// application to run (the runner's own go to [`main_with_cli`](super::main_with_cli) or
/// [`run`](super::run) unchanged).
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
///
/// Without a subcommand it runs workers: `run`'s flags are accepted at the top level too
/// (`jobs-runner --workers 2` is `jobs-runner run --workers 2`), and only there: before
/// another subcommand they are an error rather than ignored.
#[derive(Debug)]
pub struct CliWith<E: Subcommand>(Line<E>);

/// The command line as clap derives it; [`CliWith`] adds the check on `run`'s flags.
#[derive(Debug, Parser)]
#[command(name = "jobs-runner", version, about = "Run and operate background jobs", long_about = None)]
struct Line<E: Subcommand> {
    #[command(flatten)]
    conn: Connection,
    /// Machine-readable output (JSON) for the operator commands.
    #[arg(long, global = true)]
    json: bool,
    /// `run`'s flags, for a command line without a subcommand (boxed: they are most of
    /// the line's size).
    #[command(flatten)]
    run: Box<RunArgs>,
    #[command(subcommand)]
    command: Option<AnyCommand<E>>,
}

impl<E: Subcommand> clap::CommandFactory for CliWith<E> {
    fn command() -> clap::Command {
        Line::<E>::command()
    }

    fn command_for_update() -> clap::Command {
        Line::<E>::command_for_update()
    }
}

impl<E: Subcommand> clap::FromArgMatches for CliWith<E> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        run_flags_alone(m)?;
        Line::from_arg_matches(m).map(CliWith)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        run_flags_alone(m)?;
        self.0.update_from_arg_matches(m)
    }
}

impl<E: Subcommand> Parser for CliWith<E> {}

/// `run`'s flags at the top level go without a subcommand: `jobs-runner --workers 2 stats`
/// is a mistake to point out, not `stats`. (clap's `args_conflicts_with_subcommands` would
/// refuse the global flags before a subcommand too.)
fn run_flags_alone(m: &clap::ArgMatches) -> Result<(), clap::Error> {
    let Some((sub, _)) = m.subcommand() else { return Ok(()) };
    let run = RunArgs::augment_args(clap::Command::new("run"));
    let given = run.get_arguments().find(|a| {
        m.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
    });
    match given.and_then(|a| a.get_long()) {
        None => Ok(()),
        Some(flag) => Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "`--{flag}` is a flag of `run`: give it after `run` (`jobs-runner run --{flag} …`) \
                 or with no subcommand (`jobs-runner --{flag} …`), not before `{sub}`\n"
            ),
        )),
    }
}

/// No subcommands beyond the runner's own (see [`Cli`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum NoExtra {}

/// What a command line asks for (see [`CliWith::into_invocation`]).
#[derive(Debug)]
pub enum Invocation<E> {
    /// One of the runner's commands (none: `run`), for
    /// [`main_with_cli`](super::main_with_cli) or [`run`](super::run).
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
        let Line { conn, json, run, command } = self.0;
        let command = match command {
            Some(AnyCommand::App(command)) => {
                return Invocation::App(AppCommand { env: conn.env(), json, command });
            }
            Some(AnyCommand::Runner(c)) => Some(AnyCommand::Runner(c)),
            None => None,
        };
        Invocation::Runner(CliWith(Line { conn, json, run, command }))
    }

    /// Whether this command line runs workers (`run`, or no subcommand) rather than a
    /// one-shot command.
    pub(super) fn runs_workers(&self) -> bool {
        matches!(self.0.command, None | Some(AnyCommand::Runner(Command::Run(_))))
    }
}

impl Cli {
    /// The deployment, `--json`, and the command (none given: `run`, with the flags given
    /// at the top level).
    pub(super) fn into_parts(self) -> (RunnerEnv, bool, Command) {
        let Line { conn, json, run, command } = self.0;
        let command = match command {
            Some(AnyCommand::Runner(c)) => c,
            Some(AnyCommand::App(never)) => match never {},
            None => Command::Run(run),
        };
        (conn.env(), json, command)
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
    /// cluster; `redis+sentinel://host:26379,…/<master-name>` for Redis Sentinel); without it
    /// the runner uses the in-memory backend.
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// Namespace of this deployment's keys.
    #[arg(long, env = "JOBS_NAMESPACE", default_value = "jobs", global = true)]
    namespace: String,
    #[command(flatten)]
    tls: RedisTlsArgs,
    /// Acknowledge enqueues and schedule ticks only once this many replicas have them
    /// (Redis `WAIT`); 0 acknowledges when the master has them.
    #[arg(long, env = "JOBS_DURABLE_WRITES", default_value_t = 0, global = true)]
    durable_writes: u32,
}

impl Connection {
    /// What the flags say about the deployment (the one place that reads them).
    fn env(&self) -> RunnerEnv {
        RunnerEnv {
            redis_url: self.redis_url.clone().filter(|u| !u.is_empty()),
            namespace: self.namespace.clone(),
            redis_tls: self.tls.files(),
            durable_writes: self.durable_writes,
        }
    }
}

/// The TLS flags of a command line that connects to Redis (`--redis-ca-cert`,
/// `--redis-client-cert`, `--redis-client-key`, or the `REDIS_*` variables), to
/// `#[command(flatten)]` into a command line of a binary's own. Subcommands that should sit
/// beside the runner's get these and the other global flags from [`CliWith`] instead.
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

/// The runner's own commands.
#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Run workers (the default).
    Run(Box<RunArgs>),
    /// Enqueue a job by name.
    Enqueue(Box<EnqueueArgs>),
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
    /// Delete a finished job (completed, cancelled or dead) for good.
    Delete {
        /// The job id.
        id: String,
    },
    /// List jobs of one state, newest first: pending, scheduled, retrying, running,
    /// completed, cancelled or failed.
    Jobs(Box<JobsArgs>),
    /// Retry, cancel or delete each job of one page of a state's jobs (filtered as `jobs`
    /// filters them); prints the cursor of the next page.
    Bulk(Box<BulkArgs>),
    /// Run a retrying job now (without waiting for its backoff), or put a dead one back.
    Retry {
        /// The job id.
        id: String,
    },
    /// Queue statistics.
    Stats,
    /// Named queues: list them (the default), pause or resume one for every process.
    Queues {
        #[command(subcommand)]
        op: Option<QueueOp>,
    },
    /// The rate and concurrency limiters in use: slots taken, jobs parked, next slot.
    Limits,
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

/// `enqueue`'s arguments.
#[derive(Debug, Args)]
pub(super) struct EnqueueArgs {
    /// Handler name.
    pub(super) name: String,
    /// Arguments as JSON.
    #[arg(long, default_value = "{}")]
    pub(super) args: String,
    /// critical, high, normal or low.
    #[arg(long)]
    pub(super) priority: Option<String>,
    /// Run after this many seconds.
    #[arg(long = "in", value_name = "SECS", conflicts_with = "at")]
    pub(super) delay: Option<f64>,
    /// Run at this RFC 3339 time (one in the past runs now).
    #[arg(long)]
    pub(super) at: Option<String>,
    /// Retries the job may use before it is dead-lettered (default: the handler's).
    #[arg(long, value_name = "N")]
    pub(super) max_retries: Option<u32>,
    /// How long one attempt may run: `30s`, `500ms`, `5m`, `1h 30m`, or a number of seconds
    /// (default: the handler's).
    #[arg(long, value_name = "DURATION")]
    pub(super) timeout: Option<String>,
    /// The job's id (a UUID) instead of a fresh one: enqueueing twice with one id creates
    /// one job.
    #[arg(long)]
    pub(super) id: Option<String>,
    /// The user the job acts for.
    #[arg(long)]
    pub(super) user_id: Option<String>,
    /// The named queue (default: the handler's `queue = ..`, else `default`).
    #[arg(long)]
    pub(super) queue: Option<String>,
    /// A uniqueness key: while a job of this handler enqueued with the same key is queued,
    /// running or retrying, no job is created and the existing one is printed.
    #[arg(long, value_name = "KEY")]
    pub(super) unique_key: Option<String>,
    /// How long at most the uniqueness lock holds (`10m`, `1h`, or seconds; default: the
    /// handler's `unique(for = ..)`, else a day).
    #[arg(long, value_name = "DURATION")]
    pub(super) unique_for: Option<String>,
}

/// `jobs`'s arguments.
#[derive(Debug, Args)]
pub(super) struct JobsArgs {
    /// pending, scheduled, retrying, running, completed, cancelled or failed.
    #[arg(long)]
    pub(super) state: String,
    /// Only jobs of this handler.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Only jobs of this user.
    #[arg(long)]
    pub(super) user_id: Option<String>,
    /// How many at most (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub(super) limit: usize,
    /// Go on where the previous page ended (the cursor it printed).
    #[arg(long)]
    pub(super) cursor: Option<String>,
}

/// `bulk`'s arguments.
#[derive(Debug, Args)]
pub(super) struct BulkArgs {
    /// retry (retrying, failed), cancel (pending, scheduled, retrying, running) or delete
    /// (completed, cancelled, failed).
    pub(super) action: String,
    /// Which jobs.
    #[command(flatten)]
    pub(super) jobs: JobsArgs,
}

/// `schedules …`.
#[derive(Debug, Subcommand)]
pub(super) enum ScheduleOp {
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

/// `queues …`.
#[derive(Debug, Subcommand)]
pub(super) enum QueueOp {
    /// Each queue's ready jobs per priority, and whether it is paused.
    List,
    /// Pause a queue for every process: its jobs wait, in order; enqueues go on.
    Pause {
        /// The queue's name.
        name: String,
    },
    /// Resume a paused queue: its workers take its jobs again.
    Resume {
        /// The queue's name.
        name: String,
    },
}

/// `dlq …`.
#[derive(Debug, Subcommand)]
pub(super) enum DlqOp {
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

/// `run`'s flags.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// Workers in this process (more than 1 runs a pool).
    #[arg(long, env = "JOBS_WORKERS", default_value_t = 1)]
    pub(super) workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, env = "JOBS_CONCURRENCY", default_value_t = 10)]
    pub(super) concurrency: usize,
    /// The named queues to take jobs from: `payments,default` (strict: in that order) or
    /// `payments:3,default:1` (weighted: each comes first in proportion to its weight).
    /// Default: every queue this binary's handlers name, each weighing 1.
    #[arg(long, env = "JOBS_QUEUES", value_name = "QUEUES")]
    pub(super) queues: Option<String>,
    /// Lease length in seconds (a killed runner's jobs come back after about this long).
    #[arg(long, env = "JOBS_LEASE", default_value_t = 30.0)]
    pub(super) lease: f64,
    /// Seconds running jobs get to finish at shutdown before they are released.
    #[arg(long, env = "JOBS_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub(super) shutdown_grace: f64,
    /// Seconds a failed job waits before its first retry; each later retry waits twice as
    /// long as the one before, up to --retry-cap.
    #[arg(
        long,
        env = "JOBS_RETRY_BASE",
        value_name = "SECS",
        default_value = "120",
        allow_negative_numbers = true
    )]
    pub(super) retry_base: String,
    /// The longest wait before a retry, in seconds.
    #[arg(
        long,
        env = "JOBS_RETRY_CAP",
        value_name = "SECS",
        default_value = "3600",
        allow_negative_numbers = true
    )]
    pub(super) retry_cap: String,
    /// Upper bound of a random wait added to each retry, in seconds (0: none), so that jobs
    /// that failed together do not all come back at the same instant.
    #[arg(
        long,
        env = "JOBS_RETRY_JITTER",
        value_name = "SECS",
        default_value = "0",
        allow_negative_numbers = true
    )]
    pub(super) retry_jitter: String,
    /// Seconds a job whose handler no live worker of the deployment has waits before it
    /// goes to the dead-letter queue (until then it is given back, using no retry).
    #[arg(long, env = "JOBS_UNHANDLED_DEAD_AFTER", value_name = "SECS", default_value_t = 600.0)]
    pub(super) unhandled_dead_after: f64,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    pub(super) no_scheduler: bool,
    /// Do not run workers in this process (an API- or scheduler-only runner).
    #[arg(long)]
    pub(super) no_workers: bool,
    #[command(flatten)]
    pub(super) api: ApiArgs,
}

/// The HTTP admin API's flags (see [`crate::api`]).
#[derive(Debug, Args)]
pub(super) struct ApiArgs {
    /// Address of the HTTP admin API (`host:port`).
    #[arg(long, env = "JOBS_BIND", default_value = "127.0.0.1:8080")]
    pub(super) bind: String,
    /// Bearer token the API requires on every endpoint but health.
    #[arg(long, env = "JOBS_API_TOKEN", hide_env_values = true)]
    pub(super) api_token: Option<String>,
    /// Serve the API on a non-loopback address even without a token.
    #[arg(long)]
    pub(super) allow_remote: bool,
    /// Largest request body the API accepts, in bytes.
    #[arg(long, env = "JOBS_API_BODY_LIMIT", default_value_t = crate::api::DEFAULT_BODY_LIMIT)]
    pub(super) api_body_limit: usize,
    /// Most connections the API serves at once; further ones are closed on accept.
    #[arg(long, env = "JOBS_API_MAX_CONNECTIONS", default_value_t = crate::api::DEFAULT_MAX_CONNECTIONS)]
    pub(super) api_max_connections: usize,
    /// Do not serve the HTTP API.
    #[arg(long)]
    pub(super) no_api: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    // regression: `jobs-runner --workers 2`, as the README's configuration table has it,
    // was "unexpected argument"; before another subcommand it is still an error, naming it.
    #[test]
    fn run_flags_work_without_a_subcommand_and_only_there() {
        let parts = |argv: &[&str]| Cli::try_parse_from(argv).map(|c| c.into_parts().2);
        let Ok(Command::Run(args)) = parts(&["jobs-runner", "--workers", "2", "--no-api"]) else {
            panic!("not run");
        };
        assert!(args.workers == 2 && args.api.no_api);
        let Ok(Command::Run(args)) = parts(&["jobs-runner", "run", "--workers", "3"]) else {
            panic!("not run");
        };
        assert_eq!(args.workers, 3);
        for argv in [
            &["jobs-runner", "--workers", "2", "stats"][..],
            &["jobs-runner", "--workers", "2", "run", "--concurrency", "4"],
        ] {
            let err = parts(argv).map(|_| ()).expect_err("refused").to_string();
            assert!(err.contains("`--workers` is a flag of `run`"), "{argv:?}: {err}");
        }
        // The global flags still go anywhere.
        assert!(parts(&["jobs-runner", "--namespace", "n", "stats"]).is_ok());
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
