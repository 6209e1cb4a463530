//! The trading platform's predefined tasks, their default schedules, and the platform they
//! work on.
//!
//! ```
//! use std::sync::Arc;
//! use jobs_core::{JobContext, JobId, JobQueue, State};
//! use jobs_tasks::platform::Platform;
//! use jobs_tasks::portfolio::{SyncPortfolio, sync_portfolio};
//! use jobs_tasks::seed::{DemoConfig, seed_demo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let platform = Platform::memory();
//! seed_demo(&platform, &DemoConfig::default()).await?;
//!
//! // Handlers read the platform from the application state, as the runner provides it.
//! let state = Arc::new(State::new().with(platform.clone()));
//! let ctx = JobContext::new(JobId::new(), "sync_portfolio", 1, JobQueue::memory()).with_state(state);
//! let out = sync_portfolio(SyncPortfolio { user_id: "user-001".into() }, ctx).await?;
//! assert!(out.total_value > 0.0);
//! assert!(platform.store().latest_snapshot("user-001").await?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Tasks
//!
//! | job | module | what it does |
//! |---|---|---|
//! | `sync_portfolio` | [`portfolio`] | values a user's positions, stores the snapshot |
//! | `sync_all_portfolios` | [`portfolio`] | one `sync_portfolio` per user, in batches |
//! | `monitor_risk` | [`risk`] | exposure, concentration, drawdown of a user or all |
//! | `evaluate_risk_limits` | [`risk`] | every limit; records breaches, notifies |
//! | `send_risk_notification` | [`risk`] | mails a user about a breach |
//! | `cleanup_data` | [`cleanup`] | trades, logs, cache, job records past retention |
//! | `vacuum_database` | [`cleanup`] | trims histories, drops orphans, reports it |
//! | `check_price_alerts` | [`alerts`] | marks crossed alerts, one notification each |
//! | `send_price_notification` | [`alerts`] | mails a user about their alert |
//! | `bot_health_check` | [`bots`] | heartbeat age against a threshold |
//! | `restart_unhealthy_bots` | [`bots`] | restarts unhealthy bots |
//! | `fetch_market_data` | [`market`] | quotes from the source into the store (at most 100 symbols of `A-Z0-9.-`, 1-16 long) |
//! | `update_24h_stats` | [`market`] | high, low, volume, change over 24 h |
//! | `generate_daily_report` | [`reports`] | the day's platform report |
//! | `send_daily_summary_emails` | [`reports`] | each user's daily summary, once |
//!
//! Every handler reads the [`Platform`] with `ctx.state::<Platform>()?`
//! and returns a small JSON summary of what it did.
//!
//! # Default schedules
//!
//! | schedule | job | when (UTC) | priority |
//! |---|---|---|---|
//! | `portfolio_sync` | `sync_all_portfolios` | every 5 min | normal |
//! | `risk_monitoring` | `evaluate_risk_limits` | every 1 min | high |
//! | `bot_health_check` | `bot_health_check` | every 2 min | high |
//! | `data_cleanup` | `cleanup_data` | daily 03:00 | low |
//! | `database_vacuum` | `vacuum_database` | Sundays 04:00 | low |
//! | `daily_summary` | `send_daily_summary_emails` | daily 08:00 | normal |

pub mod alerts;
pub mod bots;
pub mod cleanup;
mod error;
pub mod market;
pub mod model;
pub mod platform;
pub mod portfolio;
pub mod reports;
pub mod risk;
pub mod seed;

pub use error::{PlatformError, Result};
pub use platform::Platform;

/// The name of every job handler this crate defines.
pub const TASK_NAMES: [&str; 15] = [
    "bot_health_check",
    "check_price_alerts",
    "cleanup_data",
    "evaluate_risk_limits",
    "fetch_market_data",
    "generate_daily_report",
    "monitor_risk",
    "restart_unhealthy_bots",
    "send_daily_summary_emails",
    "send_price_notification",
    "send_risk_notification",
    "sync_all_portfolios",
    "sync_portfolio",
    "update_24h_stats",
    "vacuum_database",
];

/// The default schedules: `(schedule, job)`.
pub const SCHEDULE_NAMES: [(&str, &str); 6] = [
    ("bot_health_check", "bot_health_check"),
    ("daily_summary", "send_daily_summary_emails"),
    ("data_cleanup", "cleanup_data"),
    ("database_vacuum", "vacuum_database"),
    ("portfolio_sync", "sync_all_portfolios"),
    ("risk_monitoring", "evaluate_risk_limits"),
];
