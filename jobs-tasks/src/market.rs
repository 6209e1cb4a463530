//! Market data tasks: `fetch_market_data` reads quotes from the market-data source into the
//! store (latest price, history, quote cache); `update_24h_stats` computes each symbol's
//! high, low, volume and change over the last 24 hours from that history.

use chrono::{DateTime, Utc};
use jobs_core::prelude::*;

use crate::model::{Quote, Stats24h};
use crate::platform::Platform;

/// The most symbols one `fetch_market_data` job may name.
pub const MAX_SYMBOLS: usize = 100;
/// The longest symbol, in characters.
pub const MAX_SYMBOL_LEN: usize = 16;

/// Arguments of `fetch_market_data`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FetchMarketData {
    /// Only these symbols (absent: every tracked symbol). Untracked ones start being tracked.
    /// At most [`MAX_SYMBOLS`], each 1 to [`MAX_SYMBOL_LEN`] characters of `A-Z`, `0-9`,
    /// `.` and `-` (`AAPL`, `BTC-USD`, `BRK.B`).
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
}

/// Checks the symbols a job names, before anything is tracked: a job that names more than
/// [`MAX_SYMBOLS`], or a symbol that is not 1 to [`MAX_SYMBOL_LEN`] characters of
/// `A-Z0-9.-`, would track keys for good (and slow every later fetch); it fails
/// permanently, naming the first offender (escaped, for the log).
pub fn check_symbols(symbols: &[String]) -> Result<(), JobError> {
    if symbols.len() > MAX_SYMBOLS {
        return Err(JobError::permanent_msg(format_args!(
            "at most {MAX_SYMBOLS} symbols per job, found {}",
            symbols.len()
        )));
    }
    let valid = |s: &str| {
        (1..=MAX_SYMBOL_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    };
    if let Some(bad) = symbols.iter().find(|s| !valid(s)) {
        let shown: String = bad.chars().take(MAX_SYMBOL_LEN * 2).collect();
        return Err(JobError::permanent_msg(format_args!(
            "invalid symbol \"{}\"{}: a symbol is 1 to {MAX_SYMBOL_LEN} characters of A-Z, 0-9, `.` and `-`",
            shown.escape_default(),
            if shown.len() < bad.len() { " (cut)" } else { "" }
        )));
    }
    Ok(())
}

/// What `fetch_market_data` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchSummary {
    /// The source's name.
    pub source: String,
    /// Symbols asked for.
    pub symbols: usize,
    /// Quotes received and stored.
    pub quotes: usize,
    /// When.
    pub at: DateTime<Utc>,
}

/// Fetches the current quote of each symbol from the market-data source and stores it: as
/// the latest price, in the price history, and in the quote cache (`quote:<symbol>`).
/// Held to the market-data source's quota across every process: at most 10 fetches a
/// second and 2 at once (jobs beyond wait, parked, without blocking other work).
#[job_handler(
    "fetch_market_data",
    timeout = "1m",
    rate_limit(max = 10, per = "1s"),
    concurrency(max = 2)
)]
pub async fn fetch_market_data(
    args: FetchMarketData,
    ctx: JobContext,
) -> Result<FetchSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let symbols = match args.symbols {
        Some(s) => {
            check_symbols(&s)?;
            store.add_symbols(&s).await?;
            s
        }
        None => store.symbols().await?,
    };
    let at = Utc::now();
    let quotes = platform.market().quotes(&symbols, at).await?;
    store.record_quotes(&quotes).await?;
    for q in &quotes {
        let v = serde_json::json!({ "price": q.price, "volume": q.volume, "at": q.at });
        store.cache_put(&format!("quote:{}", q.symbol), &v, at).await?;
    }
    Ok(FetchSummary {
        source: platform.market().name().to_owned(),
        symbols: symbols.len(),
        quotes: quotes.len(),
        at,
    })
}

/// What `update_24h_stats` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSummary {
    /// Symbols tracked.
    pub symbols: usize,
    /// Symbols whose statistics were updated.
    pub updated: usize,
    /// Symbols without quotes in the last 24 hours.
    pub without_data: Vec<String>,
}

/// Computes every symbol's statistics over the 24 hours before now and stores them.
#[job_handler("update_24h_stats", timeout = "2m")]
pub async fn update_24h_stats(ctx: JobContext) -> Result<StatsSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let now = Utc::now();
    let since = now - chrono::Duration::hours(24);
    let symbols = store.symbols().await?;
    let mut stats = Vec::with_capacity(symbols.len());
    let mut without_data = Vec::new();
    for s in &symbols {
        match stats_from_history(s, &store.history(s, since).await?, now) {
            Some(st) => stats.push(st),
            None => without_data.push(s.clone()),
        }
    }
    store.save_stats(&stats).await?;
    Ok(StatsSummary { symbols: symbols.len(), updated: stats.len(), without_data })
}

/// Statistics of quotes sorted oldest first; `None` without quotes.
pub fn stats_from_history(symbol: &str, quotes: &[Quote], at: DateTime<Utc>) -> Option<Stats24h> {
    let first = quotes.first()?;
    let last = quotes.last()?;
    let high = quotes.iter().map(|q| q.price).fold(f64::MIN, f64::max);
    let low = quotes.iter().map(|q| q.price).fold(f64::MAX, f64::min);
    let volume: f64 = quotes.iter().map(|q| q.volume).sum();
    let change = last.price - first.price;
    let change_pct = if first.price != 0.0 { change / first.price * 100.0 } else { 0.0 };
    Some(Stats24h {
        symbol: symbol.to_owned(),
        open: first.price,
        high,
        low,
        last: last.price,
        volume: (volume * 10_000.0).round() / 10_000.0,
        change: (change * 10_000.0).round() / 10_000.0,
        change_pct: (change_pct * 100.0).round() / 100.0,
        samples: quotes.len(),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_small_history() {
        let t = Utc::now();
        let q = |price: f64, volume: f64| Quote { symbol: "X".into(), price, volume, at: t };
        let s = stats_from_history(
            "X",
            &[q(100.0, 1.0), q(120.0, 2.0), q(90.0, 3.0), q(110.0, 4.0)],
            t,
        );
        let s = s.expect("has quotes");
        assert_eq!((s.open, s.high, s.low, s.last), (100.0, 120.0, 90.0, 110.0));
        assert_eq!((s.volume, s.change, s.change_pct, s.samples), (10.0, 10.0, 10.0, 4));
        assert!(stats_from_history("X", &[], t).is_none());
    }
}
