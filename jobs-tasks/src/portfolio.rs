//! Portfolio tasks: `sync_portfolio` values one user's positions at current prices and
//! stores the snapshot; `sync_all_portfolios` fans out one `sync_portfolio` per user, in
//! batches (the `portfolio_sync` schedule, every 5 minutes).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jobs_core::prelude::*;
use jobs_core::{EnqueueOutcome, JobId};

use crate::error::Result as PResult;
use crate::model::{PortfolioSnapshot, Position, PositionValue, Quote};
use crate::platform::Platform;

/// Arguments of `sync_portfolio`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncPortfolio {
    /// Whose portfolio.
    pub user_id: String,
}

/// What `sync_portfolio` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Whose portfolio.
    pub user_id: String,
    /// Its value now.
    pub total_value: f64,
    /// Unrealised profit and loss.
    pub pnl: f64,
    /// Positions valued.
    pub positions: usize,
    /// Symbols without a price (left out of the value).
    pub missing_prices: Vec<String>,
}

/// Values a user's positions at the latest prices and stores the snapshot (the user's
/// latest, plus a point of their value history).
///
/// An unknown user fails the job permanently. Unique per user: while one user's sync is
/// queued, running or waiting for a retry, another enqueue for that user (a click, the
/// fan-out of `sync_all_portfolios`) answers the existing job instead of queueing a second.
#[job_handler("sync_portfolio", max_retries = 5, timeout = "30s", unique(by = [user_id], for = "10m"))]
pub async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<SyncSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    if platform.store().user(&args.user_id).await?.is_none() {
        return Err(JobError::permanent_msg(format_args!("unknown user `{}`", args.user_id)));
    }
    let snap = value_portfolio(platform, &args.user_id, Utc::now()).await?;
    platform.store().save_snapshot(&snap).await?;
    tracing::debug!(user_id = %jobs_core::escape::Escaped(&snap.user_id), value = snap.total_value, "portfolio synced");
    Ok(SyncSummary {
        user_id: snap.user_id,
        total_value: snap.total_value,
        pnl: snap.pnl,
        positions: snap.positions.len(),
        missing_prices: snap.missing_prices,
    })
}

/// What `sync_all_portfolios` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOutSummary {
    /// Users found.
    pub users: usize,
    /// `enqueue_many` calls made.
    pub batches: usize,
    /// `sync_portfolio` jobs created.
    pub enqueued: usize,
    /// Jobs not created: this fan-out ran before (e.g. a redelivery), or the user's sync
    /// was queued already (unique per user).
    pub duplicates: usize,
}

/// Enqueues one `sync_portfolio` per user, `sync_batch_size` per atomic `enqueue_many`.
///
/// Each job's id is derived from this job's id and the user, so a redelivered fan-out
/// creates no second job for anyone.
#[job_handler("sync_all_portfolios", timeout = "5m")]
#[every_minutes(5, name = "portfolio_sync", priority = "normal")]
pub async fn sync_all_portfolios(ctx: JobContext) -> Result<FanOutSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let users = platform.store().users().await?;
    let mut sum = FanOutSummary { users: users.len(), batches: 0, enqueued: 0, duplicates: 0 };
    for batch in users.chunks(platform.settings().sync_batch_size.max(1)) {
        let mut jobs = Vec::with_capacity(batch.len());
        for u in batch {
            let mut job = ctx
                .queue()
                .new_typed_job::<SyncPortfolioJob>(SyncPortfolio { user_id: u.id.clone() })?;
            job.id = JobId::derived(&format!("sync_portfolio:{}:{}", ctx.job_id(), u.id));
            job.user_id = Some(u.id.clone());
            jobs.push(job);
        }
        let outcomes = ctx.queue().enqueue_many(&jobs).await?;
        sum.batches += 1;
        sum.enqueued += outcomes.iter().filter(|o| **o == EnqueueOutcome::Created).count();
        // Already there: this fan-out's own job (a retried run), or the user's sync that
        // someone else queued (`sync_portfolio` is unique per user).
        sum.duplicates += outcomes.iter().filter(|o| o.is_duplicate()).count();
    }
    tracing::info!(users = sum.users, enqueued = sum.enqueued, "sync_all_portfolios fanned out");
    Ok(sum)
}

/// Values a user's positions at the store's latest prices, as of `at`.
pub async fn value_portfolio(
    platform: &Platform,
    user_id: &str,
    at: DateTime<Utc>,
) -> PResult<PortfolioSnapshot> {
    let positions = platform.store().positions(user_id).await?;
    let prices = platform.store().latest_quotes().await?;
    Ok(value_positions(user_id, &positions, &prices, at))
}

/// Values positions at the given prices. Positions without a price are listed in
/// `missing_prices` and left out of every total (valuing them at cost would hide the gap).
pub fn value_positions(
    user_id: &str,
    positions: &[Position],
    prices: &HashMap<String, Quote>,
    at: DateTime<Utc>,
) -> PortfolioSnapshot {
    let mut snap = PortfolioSnapshot {
        user_id: user_id.to_owned(),
        at,
        total_value: 0.0,
        cost_basis: 0.0,
        pnl: 0.0,
        positions: Vec::with_capacity(positions.len()),
        missing_prices: Vec::new(),
    };
    for p in positions {
        let Some(q) = prices.get(&p.symbol).filter(|q| q.price.is_finite()) else {
            snap.missing_prices.push(p.symbol.clone());
            continue;
        };
        let value = p.quantity * q.price;
        let cost = p.quantity * p.avg_cost;
        snap.total_value += value;
        snap.cost_basis += cost;
        snap.positions.push(PositionValue {
            symbol: p.symbol.clone(),
            quantity: p.quantity,
            price: q.price,
            value: round2(value),
            pnl: round2(value - cost),
        });
    }
    snap.total_value = round2(snap.total_value);
    snap.cost_basis = round2(snap.cost_basis);
    snap.pnl = round2(snap.total_value - snap.cost_basis);
    snap
}

/// Rounds money to cents.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(symbol: &str, price: f64) -> (String, Quote) {
        (symbol.to_owned(), Quote { symbol: symbol.to_owned(), price, volume: 1.0, at: Utc::now() })
    }

    #[test]
    fn values_positions_and_reports_missing_prices() {
        let prices: HashMap<_, _> = [quote("A", 10.0), quote("B", 2.5)].into_iter().collect();
        let positions = [
            Position { symbol: "A".into(), quantity: 3.0, avg_cost: 8.0 },
            Position { symbol: "B".into(), quantity: -4.0, avg_cost: 3.0 },
            Position { symbol: "C".into(), quantity: 1.0, avg_cost: 100.0 },
        ];
        let s = value_positions("u", &positions, &prices, Utc::now());
        assert_eq!(s.total_value, 30.0 - 10.0);
        assert_eq!(s.cost_basis, 24.0 - 12.0);
        assert_eq!(s.pnl, 8.0);
        assert_eq!(s.missing_prices, ["C"]);
        assert_eq!(s.positions.len(), 2);
        assert_eq!(s.positions[1].pnl, 2.0, "a short gains when the price falls");
    }
}
