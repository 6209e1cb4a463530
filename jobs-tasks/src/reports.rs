//! Report tasks: `generate_daily_report` builds and stores the platform's report of a day;
//! `send_daily_summary_emails` (the `daily_summary` schedule, daily at 08:00) mails every
//! user their summary, once per user and day.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use jobs_core::prelude::*;

use crate::error::Result as PResult;
use crate::market::stats_from_history;
use crate::model::{DailyReport, Mover, OutgoingEmail};
use crate::platform::Platform;
use crate::portfolio::{round2, value_portfolio};

/// Arguments of `generate_daily_report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateDailyReport {
    /// The day to file it under (absent: today, UTC).
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// Builds the daily report from the current state and the last 24 hours (portfolio values,
/// trades, movers, open breaches, triggered alerts, bots by status) and stores it under its
/// date, replacing an earlier one. Returns it.
#[job_handler("generate_daily_report", timeout = "10m")]
pub async fn generate_daily_report(
    args: GenerateDailyReport,
    ctx: JobContext,
) -> Result<DailyReport, JobError> {
    let platform = ctx.state::<Platform>()?;
    let now = Utc::now();
    let report = build_report(platform, args.date.unwrap_or_else(|| now.date_naive()), now).await?;
    platform.store().save_report(&report).await?;
    tracing::info!(date = %report.date, users = report.users, "daily report generated");
    Ok(report)
}

/// Builds (without storing) the report of `date` as of `now`.
pub async fn build_report(
    platform: &Platform,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> PResult<DailyReport> {
    let store = platform.store();
    let since = now - chrono::Duration::hours(24);
    let users = store.users().await?;
    let (mut total_value, mut total_pnl) = (0.0, 0.0);
    for u in &users {
        let snap = match store.latest_snapshot(&u.id).await? {
            Some(s) => s,
            None => value_portfolio(platform, &u.id, now).await?,
        };
        total_value += snap.total_value;
        total_pnl += snap.pnl;
    }
    let trades = store.trades(since).await?;
    let traded_notional: f64 = trades.iter().map(|t| (t.quantity * t.price).abs()).sum();

    // Movers from the stored statistics, or from the history when none were computed yet.
    let mut stats = store.stats().await?;
    if stats.is_empty() {
        for s in store.symbols().await? {
            if let Some(st) = stats_from_history(&s, &store.history(&s, since).await?, now) {
                stats.insert(s, st);
            }
        }
    }
    let mut top_movers: Vec<Mover> = stats
        .values()
        .map(|s| Mover { symbol: s.symbol.clone(), last: s.last, change_pct: s.change_pct })
        .collect();
    top_movers.sort_by(|a, b| {
        b.change_pct.abs().total_cmp(&a.change_pct.abs()).then_with(|| a.symbol.cmp(&b.symbol))
    });
    top_movers.truncate(5);

    let alerts_triggered =
        store.alerts().await?.iter().filter(|a| a.triggered_at.is_some_and(|t| t >= since)).count();
    let mut bots = BTreeMap::new();
    for b in store.bots().await? {
        *bots.entry(b.status.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(DailyReport {
        date,
        generated_at: now,
        users: users.len(),
        total_value: round2(total_value),
        total_pnl: round2(total_pnl),
        trades: trades.len(),
        traded_notional: round2(traded_notional),
        top_movers,
        open_breaches: store.open_breaches().await?.len(),
        alerts_triggered,
        bots,
    })
}

/// What `send_daily_summary_emails` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryEmails {
    /// The day.
    pub date: NaiveDate,
    /// Messages sent.
    pub sent: usize,
    /// Users who had theirs already (a rerun).
    pub skipped: usize,
    /// Whether this run generated the day's report (none was stored).
    pub generated_report: bool,
}

/// Mails each user their daily summary: portfolio value and change over 24 hours, P&L, and
/// the day's top movers from the daily report (generated if missing). Each user gets one
/// message per day: a rerun skips those already sent.
#[job_handler("send_daily_summary_emails", timeout = "30m")]
#[daily_at(8, 0, name = "daily_summary", priority = "normal")]
pub async fn send_daily_summary_emails(ctx: JobContext) -> Result<SummaryEmails, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let now = Utc::now();
    let date = now.date_naive();
    let (report, generated_report) = match store.report(date).await? {
        Some(r) => (r, false),
        None => {
            let r = build_report(platform, date, now).await?;
            store.save_report(&r).await?;
            (r, true)
        }
    };
    let movers = report
        .top_movers
        .iter()
        .map(|m| format!("  {:<8} {:>12.2} {:>+7.2}%", m.symbol, m.last, m.change_pct))
        .collect::<Vec<_>>()
        .join("\n");
    let mut sum = SummaryEmails { date, sent: 0, skipped: 0, generated_report };
    for user in store.users().await? {
        if ctx.is_cancelled() {
            return Err(JobError::msg("cancelled; a retry continues with the users left"));
        }
        if store.summary_sent(date, &user.id).await? {
            sum.skipped += 1;
            continue;
        }
        let snap = value_portfolio(platform, &user.id, now).await?;
        let day_ago = store
            .value_history(&user.id, now - chrono::Duration::hours(24))
            .await?
            .first()
            .map(|p| p.value);
        let change =
            day_ago.map_or_else(|| "n/a".to_owned(), |v| format!("{:+.2}", snap.total_value - v));
        platform
            .mailer()
            .send(&OutgoingEmail {
                to: user.email.clone(),
                subject: format!("Your daily summary for {date}"),
                body: format!(
                    "Hello {},\n\nPortfolio value: {:.2} (24 h change: {change})\nUnrealised P&L: {:.2}\nPositions: {}\n\nTop movers:\n{movers}\n",
                    user.name,
                    snap.total_value,
                    snap.pnl,
                    snap.positions.len()
                ),
            })
            .await?;
        // Marked after sending: a crash in between sends one duplicate rather than none.
        store.mark_summary_sent(date, &user.id).await?;
        sum.sent += 1;
    }
    tracing::info!(date = %date, sent = sum.sent, skipped = sum.skipped, "daily summaries sent");
    Ok(sum)
}
