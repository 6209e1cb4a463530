//! Market data: the [`MarketSource`] trait and [`SimulatedFeed`], a deterministic random
//! walk, so that everything runs offline.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::Quote;

/// Where `fetch_market_data` gets quotes from.
#[async_trait]
pub trait MarketSource: Send + Sync {
    /// A short name for logs and task results.
    fn name(&self) -> &str;
    /// The current quote of each symbol (symbols the source does not know are left out).
    async fn quotes(&self, symbols: &[String], at: DateTime<Utc>) -> Result<Vec<Quote>>;
}

/// A seeded random walk per symbol: the same seed gives the same sequence of prices for
/// each symbol, on every machine (no network, no clock in the prices themselves).
///
/// Each call moves every requested symbol one step: the price is multiplied by
/// `exp(volatility * z)`, `z` roughly standard normal.
///
/// ```
/// use jobs_tasks::platform::SimulatedFeed;
///
/// let a = SimulatedFeed::new(7);
/// let b = SimulatedFeed::new(7);
/// let t = chrono::Utc::now();
/// assert_eq!(a.next_quote("BTC-USD", t), b.next_quote("BTC-USD", t));
/// ```
#[derive(Debug)]
pub struct SimulatedFeed {
    seed: u64,
    volatility: f64,
    walks: Mutex<HashMap<String, Walk>>,
}

#[derive(Debug, Clone)]
struct Walk {
    price: f64,
    rng: SplitMix64,
}

/// The default seed of the demo.
pub const DEFAULT_SEED: u64 = 42;

impl Default for SimulatedFeed {
    fn default() -> Self {
        Self::new(DEFAULT_SEED)
    }
}

impl SimulatedFeed {
    /// A feed with this seed and a per-step volatility of 0.4 %.
    pub fn new(seed: u64) -> Self {
        SimulatedFeed { seed, volatility: 0.004, walks: Mutex::new(HashMap::new()) }
    }

    /// The same feed with another per-step volatility (a fraction, e.g. `0.01`).
    pub fn with_volatility(mut self, volatility: f64) -> Self {
        if volatility.is_finite() && volatility >= 0.0 {
            self.volatility = volatility;
        }
        self
    }

    /// The same feed continuing from these prices (e.g. the latest stored quotes, so that a
    /// restarted runner does not jump back to the base prices).
    pub fn with_start_prices(self, prices: impl IntoIterator<Item = (String, f64)>) -> Self {
        {
            let mut walks = self.walks.lock().unwrap_or_else(|e| e.into_inner());
            for (symbol, price) in prices {
                if price.is_finite() && price > 0.0 {
                    let rng = SplitMix64::new(self.seed ^ fnv1a(&symbol));
                    walks.insert(symbol, Walk { price, rng });
                }
            }
        }
        self
    }

    /// The price a symbol's walk starts from: a fixed table for the demo symbols, else a
    /// value between 10 and 510 derived from the name.
    pub fn base_price(symbol: &str) -> f64 {
        match symbol {
            "BTC-USD" => 65_000.0,
            "ETH-USD" => 3_200.0,
            "SOL-USD" => 150.0,
            "AAPL" => 190.0,
            "MSFT" => 420.0,
            "NVDA" => 120.0,
            "TSLA" => 180.0,
            "SPY" => 520.0,
            other => 10.0 + (fnv1a(other) % 500) as f64,
        }
    }

    /// Moves `symbol` one step and returns its quote stamped `at`.
    pub fn next_quote(&self, symbol: &str, at: DateTime<Utc>) -> Quote {
        let mut walks = self.walks.lock().unwrap_or_else(|e| e.into_inner());
        let walk = walks.entry(symbol.to_owned()).or_insert_with(|| Walk {
            price: Self::base_price(symbol),
            rng: SplitMix64::new(self.seed ^ fnv1a(symbol)),
        });
        // Irwin-Hall: the sum of 4 uniforms, centred and scaled to unit variance, is close
        // enough to a normal step for a demo and needs no extra crate.
        let z = ((0..4).map(|_| walk.rng.next_f64()).sum::<f64>() - 2.0) * 3f64.sqrt();
        walk.price = (walk.price * (self.volatility * z).exp()).max(0.01);
        let base_volume = 1_000_000.0 / Self::base_price(symbol);
        let volume = base_volume * (0.5 + walk.rng.next_f64());
        Quote {
            symbol: symbol.to_owned(),
            price: round(walk.price, 4),
            volume: round(volume, 4),
            at,
        }
    }
}

#[async_trait]
impl MarketSource for SimulatedFeed {
    fn name(&self) -> &str {
        "simulated"
    }

    async fn quotes(&self, symbols: &[String], at: DateTime<Utc>) -> Result<Vec<Quote>> {
        Ok(symbols.iter().map(|s| self.next_quote(s, at)).collect())
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// FNV-1a: a stable hash (std's hasher is randomly keyed per process).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64: a tiny, stable PRNG (the sequence never changes with a dependency update).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_walk_other_seed_other_walk() {
        let t = Utc::now();
        let a: Vec<f64> = (0..50).map(|_| SimulatedFeed::new(1).next_quote("X", t).price).collect();
        let feed = SimulatedFeed::new(1);
        let b: Vec<f64> = (0..50).map(|_| feed.next_quote("X", t).price).collect();
        let again = SimulatedFeed::new(1);
        let c: Vec<f64> = (0..50).map(|_| again.next_quote("X", t).price).collect();
        assert_eq!(b, c);
        assert_ne!(a, b, "a fresh feed per call repeats the first step");
        let other = SimulatedFeed::new(2);
        assert_ne!(other.next_quote("X", t).price, SimulatedFeed::new(1).next_quote("X", t).price);
        assert!(b.iter().all(|p| *p > 0.0));
    }

    #[test]
    fn resumes_from_start_prices() {
        let feed = SimulatedFeed::new(3).with_start_prices([("AAPL".to_owned(), 1000.0)]);
        let q = feed.next_quote("AAPL", Utc::now());
        assert!((q.price - 1000.0).abs() < 100.0, "{q:?}");
    }
}
