//! The platform's records, as the stores keep them (JSON) and the tasks read them.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A user of the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Stable id (`user-001`).
    pub id: String,
    /// Where their notifications and summaries go.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// A holding of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The instrument (`BTC-USD`, `AAPL`).
    pub symbol: String,
    /// Units held (negative: short).
    pub quantity: f64,
    /// Average cost per unit.
    pub avg_cost: f64,
}

/// One position valued at a price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionValue {
    /// The instrument.
    pub symbol: String,
    /// Units held.
    pub quantity: f64,
    /// The price used.
    pub price: f64,
    /// `quantity * price`.
    pub value: f64,
    /// `quantity * (price - avg_cost)`.
    pub pnl: f64,
}

/// A user's portfolio valued at one moment (what `sync_portfolio` stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioSnapshot {
    /// Whose.
    pub user_id: String,
    /// When it was valued.
    pub at: DateTime<Utc>,
    /// Sum of the position values (net).
    pub total_value: f64,
    /// Sum of `quantity * avg_cost`.
    pub cost_basis: f64,
    /// `total_value - cost_basis`.
    pub pnl: f64,
    /// Each valued position.
    pub positions: Vec<PositionValue>,
    /// Symbols held without a known price (left out of the totals).
    pub missing_prices: Vec<String>,
}

/// A point of a portfolio's value history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValuePoint {
    /// When.
    pub at: DateTime<Utc>,
    /// The portfolio's total value then.
    pub value: f64,
}

/// A price observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The instrument.
    pub symbol: String,
    /// Last traded price.
    pub price: f64,
    /// Volume traded since the previous quote.
    pub volume: f64,
    /// When it was observed.
    pub at: DateTime<Utc>,
}

/// Rolling 24-hour statistics of a symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats24h {
    /// The instrument.
    pub symbol: String,
    /// First price in the window.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Latest price.
    pub last: f64,
    /// Volume over the window.
    pub volume: f64,
    /// `last - open`.
    pub change: f64,
    /// `change / open * 100`.
    pub change_pct: f64,
    /// Quotes in the window.
    pub samples: usize,
    /// End of the window.
    pub at: DateTime<Utc>,
}

/// A user's risk limits. Fractions are in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskLimit {
    /// Whose.
    pub user_id: String,
    /// Largest gross exposure (sum of `|value|`) allowed.
    pub max_exposure: f64,
    /// Largest share of the gross exposure one symbol may take.
    pub max_concentration: f64,
    /// Largest fall from the portfolio's peak value allowed.
    pub max_drawdown: f64,
}

/// Which limit a breach is of.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BreachKind {
    /// Gross exposure above `max_exposure`.
    Exposure,
    /// One symbol above `max_concentration` of the portfolio.
    Concentration,
    /// Fall from peak above `max_drawdown`.
    Drawdown,
}

impl BreachKind {
    /// The kind's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreachKind::Exposure => "exposure",
            BreachKind::Concentration => "concentration",
            BreachKind::Drawdown => "drawdown",
        }
    }
}

/// A user's risk figures at one moment (what `monitor_risk` computes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskMetrics {
    /// Whose.
    pub user_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Net portfolio value.
    pub value: f64,
    /// Gross exposure: sum of `|position value|`.
    pub exposure: f64,
    /// Largest single-symbol share of the gross exposure (0 when flat).
    pub concentration: f64,
    /// The symbol with that share.
    pub top_symbol: Option<String>,
    /// Highest value seen in the drawdown window.
    pub peak_value: f64,
    /// `(peak - value) / peak` (0 when at the peak).
    pub drawdown: f64,
}

/// A limit found exceeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiskBreach {
    /// Stable id: `<user>:<kind>:<opened ms>`.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Which limit.
    pub kind: BreachKind,
    /// The measured figure.
    pub value: f64,
    /// The limit it exceeds.
    pub limit: f64,
    /// When it was first seen (the breach stays open until the figure is back in limits).
    pub at: DateTime<Utc>,
}

/// Which side of the threshold triggers an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCondition {
    /// Price at or above the threshold.
    Above,
    /// Price at or below the threshold.
    Below,
}

/// A user's price alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceAlert {
    /// Stable id.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// The instrument watched.
    pub symbol: String,
    /// Which side triggers.
    pub condition: AlertCondition,
    /// The price.
    pub threshold: f64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it triggered (then it is no longer checked).
    pub triggered_at: Option<DateTime<Utc>>,
    /// The price that triggered it.
    pub triggered_price: Option<f64>,
    /// When its notification was sent.
    pub notified_at: Option<DateTime<Utc>>,
}

impl PriceAlert {
    /// Whether `price` is on the triggering side of the threshold.
    pub fn is_crossed_by(&self, price: f64) -> bool {
        match self.condition {
            AlertCondition::Above => price >= self.threshold,
            AlertCondition::Below => price <= self.threshold,
        }
    }
}

/// A trading bot's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotStatus {
    /// Trading; expected to heartbeat.
    Running,
    /// Stopped by its owner; not checked.
    Stopped,
    /// Missed its heartbeat; waiting for a restart.
    Unhealthy,
    /// Restarted too often; left for a human.
    Failed,
}

impl BotStatus {
    /// The status's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            BotStatus::Running => "running",
            BotStatus::Stopped => "stopped",
            BotStatus::Unhealthy => "unhealthy",
            BotStatus::Failed => "failed",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => BotStatus::Running,
            "stopped" => BotStatus::Stopped,
            "unhealthy" => BotStatus::Unhealthy,
            "failed" => BotStatus::Failed,
            _ => return None,
        })
    }
}

/// A trading bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bot {
    /// Stable id.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// What it trades.
    pub symbol: String,
    /// Its state.
    pub status: BotStatus,
    /// Its last heartbeat.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Restarts so far.
    pub restarts: u32,
    /// When it was last restarted.
    pub last_restart: Option<DateTime<Utc>>,
}

/// An executed trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Stable id.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// The instrument.
    pub symbol: String,
    /// Positive: bought; negative: sold.
    pub quantity: f64,
    /// Execution price.
    pub price: f64,
    /// When.
    pub at: DateTime<Utc>,
}

/// An application log line kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// `info`, `warn`, …
    pub level: String,
    /// What happened.
    pub message: String,
}

/// A message as the mailer accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A message as the mailer sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Email {
    /// The mailer's message id.
    pub id: String,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

/// A symbol's move, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mover {
    /// The instrument.
    pub symbol: String,
    /// Latest price.
    pub last: f64,
    /// 24 h change in percent.
    pub change_pct: f64,
}

/// The platform's daily report (what `generate_daily_report` stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyReport {
    /// The day it covers (UTC).
    pub date: NaiveDate,
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
    /// Users on the platform.
    pub users: usize,
    /// Sum of the users' latest portfolio values.
    pub total_value: f64,
    /// Sum of the users' latest unrealised P&L.
    pub total_pnl: f64,
    /// Trades in the 24 h before `generated_at`.
    pub trades: usize,
    /// Their notional (sum of `|quantity * price|`).
    pub traded_notional: f64,
    /// Symbols by 24 h change, largest moves first (at most 5).
    pub top_movers: Vec<Mover>,
    /// Risk breaches open now.
    pub open_breaches: usize,
    /// Alerts that triggered in the 24 h window.
    pub alerts_triggered: usize,
    /// Bots by status (`running`, `unhealthy`, …).
    pub bots: std::collections::BTreeMap<String, usize>,
}

/// What a data-retention pass deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Trades deleted.
    pub trades: u64,
    /// Log entries deleted.
    pub logs: u64,
    /// Cache entries deleted.
    pub cache: u64,
}

/// What to keep when compacting the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VacuumPlan {
    /// Price history older than this goes.
    pub price_history_before: DateTime<Utc>,
    /// Portfolio value history older than this goes.
    pub snapshot_history_before: DateTime<Utc>,
    /// Breach history older than this goes.
    pub breaches_before: DateTime<Utc>,
    /// Alerts that triggered (and were notified) before this go.
    pub alerts_before: DateTime<Utc>,
    /// The outbox keeps at most this many messages.
    pub outbox_max: usize,
}

/// What a compaction of the store reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VacuumReport {
    /// Price-history entries removed.
    pub price_points: u64,
    /// Portfolio-history entries removed.
    pub snapshot_points: u64,
    /// Breach-history entries removed.
    pub breaches: u64,
    /// Finished alerts removed.
    pub alerts: u64,
    /// Outbox messages removed.
    pub outbox: u64,
    /// Records and keys that belonged to no user or symbol any more.
    pub orphans: u64,
    /// Memory the store used before, in bytes (when the store can tell).
    pub memory_before: Option<u64>,
    /// Memory the store uses after, in bytes (when the store can tell).
    pub memory_after: Option<u64>,
}
