//! Cleanup tasks: `cleanup_data` (the `data_cleanup` schedule, daily at 03:00, low
//! priority) deletes trades, logs and cache entries past retention, and job records past
//! theirs; `vacuum_database` (the `database_vacuum` schedule, Sundays at 04:00, low
//! priority) compacts the store and reports what it reclaimed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::prelude::*;

use crate::model::{VacuumPlan, VacuumReport};
use crate::platform::{Platform, ago};

/// Arguments of `cleanup_data`; absent fields take the platform's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CleanupData {
    /// Keep trades this many days.
    #[serde(default)]
    pub trade_retention_days: Option<u32>,
    /// Keep logs this many days.
    #[serde(default)]
    pub log_retention_days: Option<u32>,
    /// Keep cache entries this many seconds.
    #[serde(default)]
    pub cache_retention_secs: Option<u64>,
}

/// What `cleanup_data` deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupSummary {
    /// Trades deleted (older than `trades_before`).
    pub trades: u64,
    /// Log entries deleted.
    pub logs: u64,
    /// Cache entries deleted.
    pub cache: u64,
    /// Finished job records past their retention, purged from the queue.
    pub job_records: u64,
    /// The trades cut-off.
    pub trades_before: DateTime<Utc>,
    /// The logs cut-off.
    pub logs_before: DateTime<Utc>,
    /// The cache cut-off.
    pub cache_before: DateTime<Utc>,
}

/// Job records purged per call, and most calls per run (the rest waits for tomorrow).
const PURGE_BATCH: usize = 1000;
const PURGE_ROUNDS: usize = 100;

/// Deletes trades, logs and cache entries older than their retention, then finished job
/// records past the queue's retention. Entries exactly at a cut-off are kept.
#[job_handler("cleanup_data", priority = "low", timeout = "30m")]
#[daily_at(3, 0, name = "data_cleanup", priority = "low")]
pub async fn cleanup_data(args: CleanupData, ctx: JobContext) -> Result<CleanupSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let s = platform.settings();
    let days = |d: Option<u32>, default: Duration| {
        d.map_or(default, |d| Duration::from_secs(u64::from(d) * 24 * 3600))
    };
    let now = Utc::now();
    let trades_before = ago(now, days(args.trade_retention_days, s.trade_retention));
    let logs_before = ago(now, days(args.log_retention_days, s.log_retention));
    let cache_before =
        ago(now, args.cache_retention_secs.map_or(s.cache_retention, Duration::from_secs));
    let r = platform.store().delete_before(trades_before, logs_before, cache_before).await?;
    let mut job_records = 0;
    for _ in 0..PURGE_ROUNDS {
        let n = ctx.queue().backend().purge(PURGE_BATCH).await?;
        job_records += n;
        if n < PURGE_BATCH as u64 || ctx.is_cancelled() {
            break;
        }
    }
    tracing::info!(
        trades = r.trades,
        logs = r.logs,
        cache = r.cache,
        job_records,
        "old data cleaned up"
    );
    Ok(CleanupSummary {
        trades: r.trades,
        logs: r.logs,
        cache: r.cache,
        job_records,
        trades_before,
        logs_before,
        cache_before,
    })
}

/// What `vacuum_database` reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacuumSummary {
    /// Entries and keys removed, by kind.
    #[serde(flatten)]
    pub report: VacuumReport,
    /// Entries and keys removed in all.
    pub removed: u64,
    /// Bytes the store's memory shrank by (when the store can tell).
    pub reclaimed_bytes: Option<u64>,
}

/// Compacts the store: trims price, portfolio-value and breach histories to their windows,
/// drops finished alerts and outbox overflow, and drops records of users and symbols that
/// no longer exist (orphan keys and fields).
#[job_handler("vacuum_database", priority = "low", timeout = "30m")]
#[cron("0 4 * * 0", name = "database_vacuum", priority = "low")]
pub async fn vacuum_database(ctx: JobContext) -> Result<VacuumSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let s = platform.settings();
    let now = Utc::now();
    let plan = VacuumPlan {
        price_history_before: ago(now, s.price_history),
        snapshot_history_before: ago(now, s.snapshot_history),
        breaches_before: ago(now, s.breach_history),
        alerts_before: ago(now, s.breach_history),
        outbox_max: s.outbox_max,
    };
    let report = platform.store().vacuum(&plan).await?;
    let removed = report.price_points
        + report.snapshot_points
        + report.breaches
        + report.alerts
        + report.outbox
        + report.orphans;
    let reclaimed_bytes = match (report.memory_before, report.memory_after) {
        (Some(b), Some(a)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    tracing::info!(removed, orphans = report.orphans, "store vacuumed");
    Ok(VacuumSummary { report, removed, reclaimed_bytes })
}
