//! Bot tasks: `bot_health_check` (the `bot_health_check` schedule, every 2 minutes, high
//! priority) marks running bots whose heartbeat is too old unhealthy and enqueues
//! `restart_unhealthy_bots`, which restarts them (or gives up on bots restarted too often).

use chrono::{DateTime, Utc};
use jobs_core::JobId;
use jobs_core::prelude::*;

use crate::model::{BotStatus, LogEntry};
use crate::platform::Platform;

/// What `bot_health_check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// Running bots checked.
    pub checked: usize,
    /// Of those, with a fresh heartbeat.
    pub healthy: usize,
    /// Bots unhealthy after this check (newly marked, or still waiting for a restart).
    pub unhealthy: Vec<String>,
    /// Bots this check marked unhealthy.
    pub newly_unhealthy: usize,
    /// Bots given up on (`failed`).
    pub failed: usize,
    /// The `restart_unhealthy_bots` job enqueued, if any bot needs one.
    pub restart_job: Option<JobId>,
}

/// Marks running bots whose last heartbeat is older than `bot_heartbeat_threshold` (or who
/// never sent one) unhealthy; if any bot is unhealthy, enqueues `restart_unhealthy_bots`.
#[job_handler("bot_health_check", priority = "high", timeout = "1m")]
#[every_minutes(2, name = "bot_health_check", priority = "high")]
pub async fn bot_health_check(ctx: JobContext) -> Result<HealthSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let threshold = chrono::Duration::from_std(platform.settings().bot_heartbeat_threshold)
        .unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    let mut sum = HealthSummary {
        checked: 0,
        healthy: 0,
        unhealthy: Vec::new(),
        newly_unhealthy: 0,
        failed: 0,
        restart_job: None,
    };
    for bot in store.bots().await? {
        match bot.status {
            BotStatus::Running => {
                sum.checked += 1;
                if is_fresh(bot.last_heartbeat, now, threshold) {
                    sum.healthy += 1;
                } else if store
                    .transition(&bot.id, BotStatus::Running, BotStatus::Unhealthy)
                    .await?
                {
                    sum.newly_unhealthy += 1;
                    sum.unhealthy.push(bot.id);
                }
            }
            BotStatus::Unhealthy => sum.unhealthy.push(bot.id),
            BotStatus::Failed => sum.failed += 1,
            BotStatus::Stopped => {}
        }
    }
    if !sum.unhealthy.is_empty() {
        // Derived from this job: a redelivered check asks for no second restart.
        let id = JobId::derived(&format!("restart_unhealthy_bots:{}", ctx.job_id()));
        ctx.queue()
            .enqueue_typed::<RestartUnhealthyBotsJob>(RestartBots::default())
            .priority(JobPriority::High)
            .id(id)
            .await?;
        sum.restart_job = Some(id);
        tracing::info!(unhealthy = sum.unhealthy.len(), "unhealthy bots found");
    }
    Ok(sum)
}

fn is_fresh(beat: Option<DateTime<Utc>>, now: DateTime<Utc>, threshold: chrono::Duration) -> bool {
    beat.is_some_and(|b| now.signed_duration_since(b) <= threshold)
}

/// Arguments of `restart_unhealthy_bots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestartBots {
    /// Only these bots (absent: every unhealthy bot).
    #[serde(default)]
    pub bot_ids: Option<Vec<String>>,
}

/// One restarted bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarted {
    /// The bot.
    pub bot_id: String,
    /// Its restarts so far.
    pub restarts: u32,
}

/// What `restart_unhealthy_bots` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartSummary {
    /// Bots restarted.
    pub restarted: Vec<Restarted>,
    /// Bots restarted `bot_max_restarts` times already, now `failed`.
    pub gave_up: Vec<String>,
    /// Unhealthy bots someone else restarted first.
    pub skipped: usize,
}

/// Restarts unhealthy bots (status `running`, a fresh heartbeat, one more restart); a bot
/// already restarted `bot_max_restarts` times is set `failed` instead, for a human to look
/// at. Each restart is a compare-and-set on the bot's status, so concurrent runs restart a
/// bot once.
///
/// One sweep at a time across every process (`concurrency(max = 1)`): a second would only
/// race the first for the same bots.
#[job_handler("restart_unhealthy_bots", priority = "high", timeout = "2m", concurrency(max = 1))]
pub async fn restart_unhealthy_bots(
    args: RestartBots,
    ctx: JobContext,
) -> Result<RestartSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let max = platform.settings().bot_max_restarts;
    let mut sum = RestartSummary { restarted: Vec::new(), gave_up: Vec::new(), skipped: 0 };
    let wanted = |id: &str| args.bot_ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == id));
    for bot in store.bots().await? {
        if bot.status != BotStatus::Unhealthy || !wanted(&bot.id) {
            continue;
        }
        let now = Utc::now();
        if bot.restarts >= max {
            if store.transition(&bot.id, BotStatus::Unhealthy, BotStatus::Failed).await? {
                log(
                    platform,
                    now,
                    "warn",
                    format!("bot {} failed after {} restarts", bot.id, bot.restarts),
                )
                .await;
                sum.gave_up.push(bot.id);
            } else {
                sum.skipped += 1;
            }
            continue;
        }
        match store.restart(&bot.id, now).await? {
            Some(restarts) => {
                log(platform, now, "info", format!("bot {} restarted ({restarts})", bot.id)).await;
                sum.restarted.push(Restarted { bot_id: bot.id, restarts });
            }
            None => sum.skipped += 1,
        }
    }
    if !sum.restarted.is_empty() || !sum.gave_up.is_empty() {
        tracing::info!(
            restarted = sum.restarted.len(),
            gave_up = sum.gave_up.len(),
            "bots restarted"
        );
    }
    Ok(sum)
}

/// Writes to the platform's activity log; a failure there must not fail the restart.
async fn log(platform: &Platform, at: DateTime<Utc>, level: &str, message: String) {
    let entry = LogEntry { at, level: level.to_owned(), message };
    if let Err(error) = platform.store().log(&entry).await {
        tracing::warn!(error = %jobs_core::escape::Escaped(&error), "cannot write the activity log");
    }
}
