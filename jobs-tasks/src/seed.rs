//! Deterministic demo data: users with positions, symbols with a day of price history,
//! alerts, bots, risk limits, and trades, logs and cache entries of various ages, chosen so
//! that every task finds something to do.
//!
//! The same [`DemoConfig`] gives the same data (timestamps are relative to the time of
//! seeding). Some of it is set up to be noticed: every fourth user is over their exposure
//! limit, every third user has an alert the current price has crossed, every third bot has a
//! stale heartbeat, and some trades, logs and cache entries are past retention.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::model::{
    AlertCondition, Bot, BotStatus, LogEntry, Position, PriceAlert, Quote, RiskLimit, Trade, User,
};
use crate::platform::feed::{DEFAULT_SEED, SplitMix64};
use crate::platform::{Platform, SimulatedFeed};

/// The demo's symbols.
pub const DEMO_SYMBOLS: [&str; 8] =
    ["AAPL", "BTC-USD", "ETH-USD", "MSFT", "NVDA", "SOL-USD", "SPY", "TSLA"];

/// What to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Users to create (10).
    pub users: usize,
    /// Seed of the random choices and of the price walk (42).
    pub seed: u64,
    /// Length of the price history (24 h).
    pub history: Duration,
    /// Spacing of the price history (5 min).
    pub step: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            users: 10,
            seed: DEFAULT_SEED,
            history: Duration::from_secs(24 * 3600),
            step: Duration::from_secs(300),
        }
    }
}

/// What [`seed_demo`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    /// Users.
    pub users: usize,
    /// Symbols.
    pub symbols: usize,
    /// Quotes of price history.
    pub quotes: usize,
    /// Positions, over all users.
    pub positions: usize,
    /// Risk limits.
    pub risk_limits: usize,
    /// Price alerts.
    pub alerts: usize,
    /// Trading bots.
    pub bots: usize,
    /// Trades.
    pub trades: usize,
    /// Log entries.
    pub logs: usize,
    /// Cache entries.
    pub cache: usize,
    /// Records deleted first (the store is emptied before seeding).
    pub cleared: u64,
}

/// Empties the platform's store and fills it with demo data, relative to now.
pub async fn seed_demo(platform: &Platform, cfg: &DemoConfig) -> Result<DemoSummary> {
    seed_demo_at(platform, cfg, Utc::now()).await
}

/// [`seed_demo`] as if it were `now`.
pub async fn seed_demo_at(
    platform: &Platform,
    cfg: &DemoConfig,
    now: DateTime<Utc>,
) -> Result<DemoSummary> {
    // Millisecond precision, as the Redis store keeps times: both stores then hold the
    // same data for the same `now`.
    let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let store = platform.store();
    let mut sum = DemoSummary { cleared: store.clear().await?, ..DemoSummary::default() };
    let mut rng = SplitMix64::new(cfg.seed);

    // A day of prices, oldest first, from the same walk the runner's feed continues.
    let symbols: Vec<String> = DEMO_SYMBOLS.iter().map(|s| (*s).to_owned()).collect();
    store.add_symbols(&symbols).await?;
    sum.symbols = symbols.len();
    let feed = SimulatedFeed::new(cfg.seed);
    let step = chrono::Duration::from_std(cfg.step).unwrap_or(chrono::Duration::minutes(5));
    let steps = (cfg.history.as_secs() / cfg.step.as_secs().max(1)).min(10_000) as i32;
    let mut batch: Vec<Quote> = Vec::new();
    for i in (0..=steps).rev() {
        let at = now - step * i;
        batch.extend(symbols.iter().map(|s| feed.next_quote(s, at)));
        if batch.len() >= 400 || i == 0 {
            sum.quotes += batch.len();
            store.record_quotes(&batch).await?;
            batch.clear();
        }
    }
    let latest = store.latest_quotes().await?;
    let price = |s: &str| latest.get(s).map_or_else(|| SimulatedFeed::base_price(s), |q| q.price);

    let mut bot_no = 0usize;
    for i in 1..=cfg.users {
        let id = format!("user-{i:03}");
        store
            .put_user(&User {
                id: id.clone(),
                email: format!("{id}@example.com"),
                name: format!("Demo User {i}"),
            })
            .await?;

        // 2 to 4 distinct symbols, each worth 5,000 to 50,000 at cost.
        let n = 2 + rng.below(3) as usize;
        let mut held = BTreeSet::new();
        while held.len() < n {
            held.insert(DEMO_SYMBOLS[rng.below(DEMO_SYMBOLS.len() as u64) as usize]);
        }
        let positions: Vec<Position> = held
            .iter()
            .map(|s| {
                let p = price(s);
                let notional = 5_000.0 + rng.next_f64() * 45_000.0;
                let cost = p * (0.8 + rng.next_f64() * 0.4);
                Position {
                    symbol: (*s).to_owned(),
                    quantity: round(notional / cost, 6),
                    avg_cost: round(cost, 4),
                }
            })
            .collect();
        sum.positions += positions.len();
        store.set_positions(&id, &positions).await?;

        // Every fourth user has tight limits, which the first risk evaluation reports.
        let tight = i.is_multiple_of(4);
        store
            .set_limit(&RiskLimit {
                user_id: id.clone(),
                max_exposure: if tight { 20_000.0 } else { 250_000.0 },
                max_concentration: if tight { 0.4 } else { 0.9 },
                max_drawdown: 0.25,
            })
            .await?;
        sum.risk_limits += 1;

        // Two alerts each; every third user's second alert is crossed already.
        let first = held.iter().next().copied().unwrap_or(DEMO_SYMBOLS[0]);
        let last = held.iter().next_back().copied().unwrap_or(DEMO_SYMBOLS[0]);
        let alerts = [
            (first, AlertCondition::Above, price(first) * 1.05),
            (
                last,
                AlertCondition::Below,
                if i.is_multiple_of(3) { price(last) * 1.01 } else { price(last) * 0.9 },
            ),
        ];
        for (n, (symbol, condition, threshold)) in alerts.into_iter().enumerate() {
            store
                .put_alert(&PriceAlert {
                    id: format!("alert-{i:03}-{}", n + 1),
                    user_id: id.clone(),
                    symbol: symbol.to_owned(),
                    condition,
                    threshold: round(threshold, 4),
                    created_at: now - chrono::Duration::days(1),
                    triggered_at: None,
                    triggered_price: None,
                    notified_at: None,
                })
                .await?;
            sum.alerts += 1;
        }

        // One bot each, two for even users; every third bot missed its heartbeats, and
        // every seventh was stopped by its owner.
        for b in 0..(1 + usize::from(i.is_multiple_of(2))) {
            bot_no += 1;
            let stale = bot_no.is_multiple_of(3);
            let status =
                if bot_no.is_multiple_of(7) { BotStatus::Stopped } else { BotStatus::Running };
            let symbol = held.iter().nth(b).copied().unwrap_or(first);
            store
                .put_bot(&Bot {
                    id: format!("bot-{bot_no:03}"),
                    user_id: id.clone(),
                    name: format!("{symbol} grid #{}", b + 1),
                    symbol: symbol.to_owned(),
                    status,
                    last_heartbeat: Some(if stale {
                        now - chrono::Duration::minutes(20)
                    } else {
                        now - chrono::Duration::seconds(30)
                    }),
                    restarts: 0,
                    last_restart: None,
                })
                .await?;
            sum.bots += 1;
        }

        // Trades of various ages: the 120- and 200-day-old ones are past retention.
        for (n, days) in [0.5, 3.0, 20.0, 60.0, 120.0, 200.0].into_iter().enumerate() {
            let symbol = held.iter().nth(n % held.len()).copied().unwrap_or(first);
            let qty = round((rng.next_f64() - 0.4) * 10.0, 4);
            store
                .record_trade(&Trade {
                    id: format!("trade-{i:03}-{}", n + 1),
                    user_id: id.clone(),
                    symbol: symbol.to_owned(),
                    quantity: if qty == 0.0 { 1.0 } else { qty },
                    price: round(price(symbol) * (0.9 + rng.next_f64() * 0.2), 4),
                    at: now - chrono::Duration::minutes((days * 1440.0) as i64),
                })
                .await?;
            sum.trades += 1;
        }
    }

    // Logs over the last 60 days (those older than 30 days are past retention).
    for d in 0..60 {
        store
            .log(&LogEntry {
                at: now - chrono::Duration::days(d) - chrono::Duration::minutes(7),
                level: if d % 10 == 0 { "warn" } else { "info" }.to_owned(),
                message: format!("demo: nightly reconciliation of day -{d} done"),
            })
            .await?;
        sum.logs += 1;
    }

    // Fresh quote cache entries, and stale session entries.
    for s in &symbols {
        let v = serde_json::json!({ "price": price(s) });
        store.cache_put(&format!("quote:{s}"), &v, now).await?;
        sum.cache += 1;
    }
    for i in 1..=cfg.users.min(5) {
        let v = serde_json::json!({ "user_id": format!("user-{i:03}") });
        store
            .cache_put(&format!("session:user-{i:03}"), &v, now - chrono::Duration::hours(3))
            .await?;
        sum.cache += 1;
    }
    sum.users = cfg.users;
    Ok(sum)
}

/// The same platform with a [`SimulatedFeed`] of `seed` continuing from the stored latest
/// prices, so that fetched prices follow on from the history instead of jumping back to
/// the base prices.
pub async fn resume_simulated_feed(platform: Platform, seed: u64) -> Result<Platform> {
    let latest = platform.store().latest_quotes().await?;
    let feed = SimulatedFeed::new(seed)
        .with_start_prices(latest.into_values().map(|q| (q.symbol, q.price)));
    Ok(platform.with_market_source(std::sync::Arc::new(feed)))
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}
