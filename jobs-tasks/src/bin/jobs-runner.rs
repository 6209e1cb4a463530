//! `jobs-runner`: workers, scheduler and operator commands for the predefined trading
//! tasks. See `jobs-runner --help`.
//!
//! Everything but `seed-demo` is `jobs_core::runner`, given the trading [`Platform`] as
//! application state: on Redis when `REDIS_URL` is set (keys `trading:{<namespace>}:…`),
//! else in memory, seeded with demo data so that the tasks have work to do. `seed-demo` is
//! one more subcommand of the runner's command line, with the same global flags.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jobs_core::State;
use jobs_core::redis::RedisConfig;
use jobs_core::runner::{AppCommand, CliWith, Invocation};
use jobs_tasks::PlatformError;
use jobs_tasks::platform::{DEFAULT_SEED, Platform};
use jobs_tasks::seed::{DemoConfig, resume_simulated_feed, seed_demo};

/// Demo users of the in-memory store.
const MEMORY_DEMO_USERS: usize = 10;
/// Most users `seed-demo` creates.
const MAX_DEMO_USERS: usize = 100_000;

fn main() -> ExitCode {
    match CliWith::<TradingCommand>::parse().into_invocation() {
        Invocation::App(app) => seed_main(app),
        Invocation::Runner(cli) => jobs_core::runner::main_with_cli(cli, |env| async move {
            let platform = build_platform(env.redis_config().as_ref()).await?;
            Ok(State::new().with(platform))
        }),
    }
}

/// The trading platform of a `run`: Redis when a URL is given (an unreachable server is an
/// error), else an in-memory store seeded with demo data.
async fn build_platform(redis: Option<&RedisConfig>) -> jobs_core::Result<Platform> {
    let platform = match redis {
        Some(cfg) => {
            let namespace = cfg.namespace.as_str();
            let p = Platform::redis_with(cfg).await.map_err(|e| {
                tracing::error!(url = %jobs_core::redis::redact_url(&cfg.url), namespace, "cannot open the trading store on redis");
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

/// The commands of `jobs-runner` beyond `jobs_core::runner`'s.
#[derive(Debug, Subcommand)]
enum TradingCommand {
    /// Replace the trading store's data with deterministic demo data (needs REDIS_URL).
    SeedDemo {
        /// Users to create.
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Seed of the data and of the simulated prices.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
}

fn seed_main(app: AppCommand<TradingCommand>) -> ExitCode {
    jobs_core::runner::init_tracing();
    let TradingCommand::SeedDemo { users, seed } = app.command;
    let Some(redis) = app.env.redis_config() else {
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
        let platform = Platform::redis_with(&redis).await?;
        seed_demo(&platform, &cfg).await
    });
    match outcome {
        Ok(s) if app.json => match serde_json::to_string(&s) {
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
                app.env.namespace,
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
