//! `jobs-runner`: workers, scheduler and operator commands for the predefined trading
//! tasks. See `jobs-runner --help`.
//!
//! Everything but `seed-demo` is `jobs_core::runner`, given the trading [`Platform`] as
//! application state: on Redis when `REDIS_URL` is set (keys `trading:{<namespace>}:…`),
//! else in memory, seeded with demo data so that the tasks have work to do.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jobs_core::State;
use jobs_core::redis::RedisConfig;
use jobs_core::runner::RedisTlsArgs;
use jobs_tasks::PlatformError;
use jobs_tasks::platform::{DEFAULT_SEED, Platform};
use jobs_tasks::seed::{DemoConfig, resume_simulated_feed, seed_demo};

/// Demo users of the in-memory store.
const MEMORY_DEMO_USERS: usize = 10;
/// Most users `seed-demo` creates.
const MAX_DEMO_USERS: usize = 100_000;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if subcommand(&args).as_deref() == Some("seed-demo") {
        return seed_main(args);
    }
    jobs_core::runner::main_with_state(|env| async move {
        let platform = build_platform(env.redis_config().as_ref()).await?;
        Ok(State::new().with(platform))
    })
}

/// The trading platform of a `run`: Redis when a URL is given (an unreachable server is an
/// error), else an in-memory store seeded with demo data.
async fn build_platform(redis: Option<&RedisConfig>) -> jobs_core::Result<Platform> {
    let platform = match redis {
        Some(cfg) => {
            let namespace = cfg.namespace.as_str();
            let p = Platform::redis_with(cfg).await.map_err(|e| {
                tracing::error!(url = %jobs_core::backend::redis::redact_url(&cfg.url), namespace, "cannot open the trading store on redis");
                core_error(e)
            })?;
            let users = p.store().users().await.map_err(core_error)?.len();
            if users == 0 {
                tracing::warn!(
                    namespace,
                    "the trading store is empty; fill it with `jobs-runner seed-demo`"
                );
            } else {
                tracing::info!(store = "redis", namespace, users, "trading store ready");
            }
            p
        }
        None => {
            let p = Platform::memory();
            let cfg = DemoConfig { users: MEMORY_DEMO_USERS, ..DemoConfig::default() };
            let s = seed_demo(&p, &cfg).await.map_err(core_error)?;
            tracing::info!(
                store = "memory",
                users = s.users,
                symbols = s.symbols,
                alerts = s.alerts,
                bots = s.bots,
                "trading store in memory, seeded with demo data"
            );
            p
        }
    };
    resume_simulated_feed(platform, DEFAULT_SEED).await.map_err(core_error)
}

fn core_error(e: PlatformError) -> jobs_core::Error {
    match e {
        PlatformError::Redis(e) => jobs_core::Error::Redis(e),
        PlatformError::Queue(e) => e,
        other => jobs_core::Error::Config(format!("trading store: {other}")),
    }
}

/// `seed-demo`'s command line (the rest belongs to `jobs_core::runner`).
#[derive(Debug, Parser)]
#[command(name = "jobs-runner", about = "Fill the trading store with deterministic demo data")]
struct SeedCli {
    /// Redis URL of the deployment.
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// Namespace of the deployment's keys.
    #[arg(long, env = "JOBS_NAMESPACE", default_value = "jobs", global = true)]
    namespace: String,
    #[command(flatten)]
    tls: RedisTlsArgs,
    /// Machine-readable output (JSON).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: SeedCommand,
}

#[derive(Debug, Subcommand)]
enum SeedCommand {
    /// Replace the trading store's data with deterministic demo data.
    SeedDemo {
        /// Users to create.
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Seed of the data and of the simulated prices.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
}

fn seed_main(args: Vec<OsString>) -> ExitCode {
    let cli = SeedCli::parse_from(args);
    jobs_core::runner::init_tracing();
    let SeedCommand::SeedDemo { users, seed } = cli.command;
    let Some(url) = cli.redis_url.filter(|u| !u.is_empty()) else {
        eprintln!(
            "error: seed-demo writes the demo data to Redis, where runners share it: set REDIS_URL.\n\
             Without REDIS_URL there is nothing to seed: `jobs-runner run` keeps its data in \
             memory and seeds it with demo data itself at start-up."
        );
        return ExitCode::from(2);
    };
    if users == 0 || users > MAX_DEMO_USERS {
        eprintln!("error: --users must be in 1..={MAX_DEMO_USERS}, found {users}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = DemoConfig { users, seed, ..DemoConfig::default() };
    let outcome = rt.block_on(async {
        let redis = RedisConfig { tls: cli.tls.files(), ..RedisConfig::new(&url) };
        let platform = Platform::redis_with(&redis.namespace(cli.namespace.clone())).await?;
        seed_demo(&platform, &cfg).await
    });
    match outcome {
        Ok(s) if cli.json => match serde_json::to_string(&s) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(s) => {
            println!(
                "seeded namespace `{}`: {} users ({} positions, {} risk limits), {} symbols ({} quotes of history), {} alerts, {} bots, {} trades, {} log entries, {} cache entries",
                cli.namespace,
                s.users,
                s.positions,
                s.risk_limits,
                s.symbols,
                s.quotes,
                s.alerts,
                s.bots,
                s.trades,
                s.logs,
                s.cache
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot seed the demo data: {}", jobs_core::runner::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Global options of the runner that take a separate value (`--namespace ns`).
const VALUE_FLAGS: [&str; 2] = ["--redis-url", "--namespace"];

/// The first positional argument: the subcommand.
fn subcommand(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if VALUE_FLAGS.contains(&a.as_ref()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a.into_owned());
        }
    }
    None
}
