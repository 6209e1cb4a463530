//! What the tasks work on: one trait per concern of the trading platform, a Redis
//! implementation ([`RedisStore`]), an in-memory one ([`MemoryStore`]), the mailer and the
//! market-data source, bundled in [`Platform`], which handlers read from the application
//! state (`ctx.state::<Platform>()?`).
//!
//! ```
//! use jobs_tasks::platform::Platform;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), jobs_tasks::PlatformError> {
//! let platform = Platform::memory();
//! jobs_tasks::seed::seed_demo(&platform, &jobs_tasks::seed::DemoConfig::default()).await?;
//! assert_eq!(platform.store().users().await?.len(), 10);
//! # Ok(())
//! # }
//! ```

pub(crate) mod feed;
mod mailer;
mod memory;
mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::Result;
use crate::model::{
    Bot, BotStatus, BreachKind, CleanupReport, Email, LogEntry, PortfolioSnapshot, Position,
    PriceAlert, Quote, RiskBreach, RiskLimit, RiskMetrics, Stats24h, Trade, User, VacuumPlan,
    VacuumReport, ValuePoint,
};

pub use self::redis::RedisStore;
pub use feed::{DEFAULT_SEED, MarketSource, SimulatedFeed};
pub use mailer::{Mailer, OutboxMailer};
pub use memory::MemoryStore;

/// Users, their positions and their valued snapshots.
#[async_trait]
pub trait Portfolios: Send + Sync {
    /// Every user, by id.
    async fn users(&self) -> Result<Vec<User>>;
    /// One user.
    async fn user(&self, id: &str) -> Result<Option<User>>;
    /// Adds or replaces a user.
    async fn put_user(&self, user: &User) -> Result<()>;
    /// A user's positions (none for an unknown user).
    async fn positions(&self, user_id: &str) -> Result<Vec<Position>>;
    /// Replaces a user's positions.
    async fn set_positions(&self, user_id: &str, positions: &[Position]) -> Result<()>;
    /// Stores a snapshot as the user's latest and adds its value to their history.
    async fn save_snapshot(&self, snapshot: &PortfolioSnapshot) -> Result<()>;
    /// The user's latest snapshot.
    async fn latest_snapshot(&self, user_id: &str) -> Result<Option<PortfolioSnapshot>>;
    /// The user's portfolio values since `since`, oldest first.
    async fn value_history(&self, user_id: &str, since: DateTime<Utc>) -> Result<Vec<ValuePoint>>;
}

/// Symbols, their latest quotes, their history and their 24 h statistics.
#[async_trait]
pub trait Prices: Send + Sync {
    /// Every tracked symbol, sorted.
    async fn symbols(&self) -> Result<Vec<String>>;
    /// Starts tracking symbols.
    async fn add_symbols(&self, symbols: &[String]) -> Result<()>;
    /// The latest quote of every symbol that has one.
    async fn latest_quotes(&self) -> Result<HashMap<String, Quote>>;
    /// Records quotes: each becomes its symbol's latest (unless a newer one is known) and
    /// joins its history.
    async fn record_quotes(&self, quotes: &[Quote]) -> Result<()>;
    /// A symbol's quotes since `since`, oldest first.
    async fn history(&self, symbol: &str, since: DateTime<Utc>) -> Result<Vec<Quote>>;
    /// Stores 24 h statistics.
    async fn save_stats(&self, stats: &[Stats24h]) -> Result<()>;
    /// The stored 24 h statistics, by symbol.
    async fn stats(&self) -> Result<HashMap<String, Stats24h>>;
}

/// Risk limits, computed metrics and breaches.
#[async_trait]
pub trait RiskLimits: Send + Sync {
    /// Every user's limits.
    async fn limits(&self) -> Result<Vec<RiskLimit>>;
    /// One user's limits.
    async fn limit(&self, user_id: &str) -> Result<Option<RiskLimit>>;
    /// Adds or replaces a user's limits.
    async fn set_limit(&self, limit: &RiskLimit) -> Result<()>;
    /// Stores a user's latest metrics.
    async fn save_metrics(&self, metrics: &RiskMetrics) -> Result<()>;
    /// Opens a breach unless one of its user and kind is open already; returns the open
    /// breach and whether this call opened it. Atomic: of two concurrent calls, one opens.
    async fn open_breach(&self, breach: &RiskBreach) -> Result<(RiskBreach, bool)>;
    /// Closes the open breach of this user and kind; returns whether one was open.
    async fn close_breach(&self, user_id: &str, kind: BreachKind) -> Result<bool>;
    /// Every open breach.
    async fn open_breaches(&self) -> Result<Vec<RiskBreach>>;
    /// Breaches opened since `since` (history), oldest first.
    async fn breach_history(&self, since: DateTime<Utc>) -> Result<Vec<RiskBreach>>;
}

/// Users' price alerts.
#[async_trait]
pub trait PriceAlerts: Send + Sync {
    /// Every alert, triggered or not.
    async fn alerts(&self) -> Result<Vec<PriceAlert>>;
    /// One alert.
    async fn alert(&self, id: &str) -> Result<Option<PriceAlert>>;
    /// Adds or replaces an alert (its trigger and notification marks are reset).
    async fn put_alert(&self, alert: &PriceAlert) -> Result<()>;
    /// Marks an alert triggered at `price`; true only for the call that marked it.
    async fn mark_triggered(&self, id: &str, price: f64, at: DateTime<Utc>) -> Result<bool>;
    /// Marks an alert's notification sent; true only for the call that marked it.
    async fn mark_notified(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
}

/// Trading bots: their state and heartbeats.
#[async_trait]
pub trait TradingBots: Send + Sync {
    /// Every bot.
    async fn bots(&self) -> Result<Vec<Bot>>;
    /// One bot.
    async fn bot(&self, id: &str) -> Result<Option<Bot>>;
    /// Adds or replaces a bot (status, heartbeat and restart count included).
    async fn put_bot(&self, bot: &Bot) -> Result<()>;
    /// Records a heartbeat.
    async fn heartbeat(&self, id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Sets the status to `to` if it is `from`; returns whether it changed.
    async fn transition(&self, id: &str, from: BotStatus, to: BotStatus) -> Result<bool>;
    /// Restarts an unhealthy bot: status `running`, one more restart, a fresh heartbeat.
    /// Returns the restart count, or `None` if the bot was not unhealthy (someone else
    /// restarted it, or it is gone).
    async fn restart(&self, id: &str, at: DateTime<Utc>) -> Result<Option<u32>>;
}

/// Daily reports and who got their summary.
#[async_trait]
pub trait Reports: Send + Sync {
    /// Stores (replaces) the report of its date.
    async fn save_report(&self, report: &crate::model::DailyReport) -> Result<()>;
    /// The report of a date.
    async fn report(&self, date: NaiveDate) -> Result<Option<crate::model::DailyReport>>;
    /// Whether `user_id` got the summary of `date`.
    async fn summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool>;
    /// Records that `user_id` got the summary of `date`; true only the first time.
    async fn mark_summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool>;
}

/// Where the default mailer puts messages: a bounded list, newest first.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Adds a message.
    async fn push_email(&self, email: &Email) -> Result<()>;
    /// The newest `limit` messages, newest first.
    async fn outbox(&self, limit: usize) -> Result<Vec<Email>>;
}

/// Trades, logs and cache: the data that retention applies to.
#[async_trait]
pub trait Activity: Send + Sync {
    /// Records a trade.
    async fn record_trade(&self, trade: &Trade) -> Result<()>;
    /// Trades since `since`, oldest first.
    async fn trades(&self, since: DateTime<Utc>) -> Result<Vec<Trade>>;
    /// Appends a log entry.
    async fn log(&self, entry: &LogEntry) -> Result<()>;
    /// Log entries since `since`, oldest first.
    async fn logs(&self, since: DateTime<Utc>) -> Result<Vec<LogEntry>>;
    /// Caches a value, stamped `at`.
    async fn cache_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// A cached value.
    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>>;
}

/// Data retention and compaction.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Deletes trades, logs and cache entries stamped before their cut-offs.
    async fn delete_before(
        &self,
        trades: DateTime<Utc>,
        logs: DateTime<Utc>,
        cache: DateTime<Utc>,
    ) -> Result<CleanupReport>;
    /// Trims histories and drops records of users and symbols that no longer exist.
    async fn vacuum(&self, plan: &VacuumPlan) -> Result<VacuumReport>;
    /// Deletes everything the store holds (before seeding demo data).
    async fn clear(&self) -> Result<u64>;
}

/// Everything the tasks need of a store, implemented by [`RedisStore`] and [`MemoryStore`]
/// (and by any type implementing all the parts).
pub trait Store:
    Portfolios
    + Prices
    + RiskLimits
    + PriceAlerts
    + TradingBots
    + Reports
    + Outbox
    + Activity
    + Maintenance
{
    /// A short name for logs (`"redis"`, `"memory"`).
    fn kind(&self) -> &'static str;
}

/// The tasks' tunables. Defaults in brackets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Users per `sync_portfolio` fan-out batch (100).
    pub sync_batch_size: usize,
    /// A running bot whose heartbeat is older than this is unhealthy (5 min).
    pub bot_heartbeat_threshold: Duration,
    /// Restarts after which a bot is left `failed` for a human (5).
    pub bot_max_restarts: u32,
    /// Trades are kept this long (90 days).
    pub trade_retention: Duration,
    /// Logs are kept this long (30 days).
    pub log_retention: Duration,
    /// Cache entries are kept this long (1 h).
    pub cache_retention: Duration,
    /// Price history is kept this long (7 days).
    pub price_history: Duration,
    /// Portfolio value history (and the drawdown window) is kept this long (30 days).
    pub snapshot_history: Duration,
    /// Breach history and finished alerts are kept this long (30 days).
    pub breach_history: Duration,
    /// The outbox keeps at most this many messages (10,000).
    pub outbox_max: usize,
}

impl Default for Settings {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Settings {
            sync_batch_size: 100,
            bot_heartbeat_threshold: Duration::from_secs(5 * 60),
            bot_max_restarts: 5,
            trade_retention: Duration::from_secs(90 * DAY),
            log_retention: Duration::from_secs(30 * DAY),
            cache_retention: Duration::from_secs(3600),
            price_history: Duration::from_secs(7 * DAY),
            snapshot_history: Duration::from_secs(30 * DAY),
            breach_history: Duration::from_secs(30 * DAY),
            outbox_max: 10_000,
        }
    }
}

/// The platform the tasks work on: a store, a mailer, a market-data source and settings.
/// Cheap to clone; put one in the service's application state.
#[derive(Clone)]
pub struct Platform {
    store: Arc<dyn Store>,
    mailer: Arc<dyn Mailer>,
    market: Arc<dyn MarketSource>,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("store", &self.store.kind())
            .field("market", &self.market.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// A platform on `store`, mailing to the store's outbox ([`OutboxMailer`]), with the
    /// simulated market feed ([`SimulatedFeed::default`]) and default settings.
    pub fn new<S: Store + 'static>(store: Arc<S>) -> Self {
        let mailer = Arc::new(OutboxMailer::new(store.clone()));
        Platform {
            store,
            mailer,
            market: Arc::new(SimulatedFeed::default()),
            settings: Arc::new(Settings::default()),
        }
    }

    /// A platform on a fresh, empty [`MemoryStore`].
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryStore::new()))
    }

    /// A platform on Redis at `url`, with its keys under `trading:{<namespace>}:`.
    /// An unreachable server is an error here.
    pub async fn redis(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self::new(Arc::new(RedisStore::connect(url, namespace).await?)))
    }

    /// A platform on the Redis that `cfg` describes (TLS files, a cluster), with its keys
    /// under `trading:{<cfg.namespace>}:`.
    pub async fn redis_with(cfg: &jobs_core::redis::RedisConfig) -> Result<Self> {
        Ok(Self::new(Arc::new(RedisStore::connect_with(cfg).await?)))
    }

    /// The same platform sending mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    /// The same platform reading market data from `market`.
    pub fn with_market_source(mut self, market: Arc<dyn MarketSource>) -> Self {
        self.market = market;
        self
    }

    /// The same platform with other settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The mailer.
    pub fn mailer(&self) -> &dyn Mailer {
        &*self.mailer
    }

    /// The market-data source.
    pub fn market(&self) -> &dyn MarketSource {
        &*self.market
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// `now - d`, saturating at the earliest representable time.
pub(crate) fn ago(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Milliseconds since the epoch, as the Redis store scores entries.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`ms`]; out-of-range values clamp to the epoch.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}
