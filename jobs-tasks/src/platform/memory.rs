//! [`MemoryStore`]: the platform in this process only (the runner's store without Redis,
//! and a quick store for tests). Same semantics as the Redis store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{
    Activity, Maintenance, Outbox, Portfolios, PriceAlerts, Prices, Reports, RiskLimits, Store,
    TradingBots,
};
use crate::error::Result;
use crate::model::{
    Bot, BotStatus, BreachKind, CleanupReport, DailyReport, Email, LogEntry, PortfolioSnapshot,
    Position, PriceAlert, Quote, RiskBreach, RiskLimit, RiskMetrics, Stats24h, Trade, User,
    VacuumPlan, VacuumReport, ValuePoint,
};

/// The whole platform in a mutex. Histories are kept sorted by time.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<String, User>,
    positions: BTreeMap<String, Vec<Position>>,
    snapshots: BTreeMap<String, PortfolioSnapshot>,
    value_history: BTreeMap<String, Vec<ValuePoint>>,
    symbols: BTreeSet<String>,
    latest: HashMap<String, Quote>,
    history: BTreeMap<String, Vec<Quote>>,
    stats: HashMap<String, Stats24h>,
    limits: BTreeMap<String, RiskLimit>,
    metrics: BTreeMap<String, RiskMetrics>,
    open_breaches: BTreeMap<(String, BreachKind), RiskBreach>,
    breach_history: Vec<RiskBreach>,
    alerts: BTreeMap<String, PriceAlert>,
    bots: BTreeMap<String, Bot>,
    reports: BTreeMap<NaiveDate, DailyReport>,
    summaries_sent: BTreeSet<(NaiveDate, String)>,
    outbox: VecDeque<Email>,
    trades: Vec<Trade>,
    logs: Vec<LogEntry>,
    cache: HashMap<String, (serde_json::Value, DateTime<Utc>)>,
}

/// Most messages the in-memory outbox keeps (as the Redis one, it drops the oldest).
const OUTBOX_CAP: usize = 10_000;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change behind (every
        // change below is a single insert/remove), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Inserts keeping the vector sorted by `key` (stable for equal keys).
fn insert_sorted<T>(v: &mut Vec<T>, item: T, key: impl Fn(&T) -> DateTime<Utc>) {
    let k = key(&item);
    let at = v.partition_point(|x| key(x) <= k);
    v.insert(at, item);
}

/// Removes the entries before `cutoff` from a time-sorted vector; returns how many.
fn drain_before<T>(
    v: &mut Vec<T>,
    cutoff: DateTime<Utc>,
    key: impl Fn(&T) -> DateTime<Utc>,
) -> u64 {
    let n = v.partition_point(|x| key(x) < cutoff);
    v.drain(..n);
    n as u64
}

fn since<T: Clone>(v: &[T], since: DateTime<Utc>, key: impl Fn(&T) -> DateTime<Utc>) -> Vec<T> {
    let start = v.partition_point(|x| key(x) < since);
    v[start..].to_vec()
}

#[async_trait]
impl Portfolios for MemoryStore {
    async fn users(&self) -> Result<Vec<User>> {
        Ok(self.lock().users.values().cloned().collect())
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.lock().users.insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn positions(&self, user_id: &str) -> Result<Vec<Position>> {
        Ok(self.lock().positions.get(user_id).cloned().unwrap_or_default())
    }

    async fn set_positions(&self, user_id: &str, positions: &[Position]) -> Result<()> {
        self.lock().positions.insert(user_id.to_owned(), positions.to_vec());
        Ok(())
    }

    async fn save_snapshot(&self, s: &PortfolioSnapshot) -> Result<()> {
        let mut g = self.lock();
        g.snapshots.insert(s.user_id.clone(), s.clone());
        let h = g.value_history.entry(s.user_id.clone()).or_default();
        insert_sorted(h, ValuePoint { at: s.at, value: s.total_value }, |p| p.at);
        Ok(())
    }

    async fn latest_snapshot(&self, user_id: &str) -> Result<Option<PortfolioSnapshot>> {
        Ok(self.lock().snapshots.get(user_id).cloned())
    }

    async fn value_history(&self, user_id: &str, from: DateTime<Utc>) -> Result<Vec<ValuePoint>> {
        Ok(self
            .lock()
            .value_history
            .get(user_id)
            .map(|h| since(h, from, |p| p.at))
            .unwrap_or_default())
    }
}

#[async_trait]
impl Prices for MemoryStore {
    async fn symbols(&self) -> Result<Vec<String>> {
        Ok(self.lock().symbols.iter().cloned().collect())
    }

    async fn add_symbols(&self, symbols: &[String]) -> Result<()> {
        self.lock().symbols.extend(symbols.iter().cloned());
        Ok(())
    }

    async fn latest_quotes(&self) -> Result<HashMap<String, Quote>> {
        Ok(self.lock().latest.clone())
    }

    async fn record_quotes(&self, quotes: &[Quote]) -> Result<()> {
        let mut g = self.lock();
        for q in quotes {
            let newer = g.latest.get(&q.symbol).is_none_or(|old| old.at <= q.at);
            if newer {
                g.latest.insert(q.symbol.clone(), q.clone());
            }
            insert_sorted(g.history.entry(q.symbol.clone()).or_default(), q.clone(), |q| q.at);
        }
        Ok(())
    }

    async fn history(&self, symbol: &str, from: DateTime<Utc>) -> Result<Vec<Quote>> {
        Ok(self.lock().history.get(symbol).map(|h| since(h, from, |q| q.at)).unwrap_or_default())
    }

    async fn save_stats(&self, stats: &[Stats24h]) -> Result<()> {
        let mut g = self.lock();
        for s in stats {
            g.stats.insert(s.symbol.clone(), s.clone());
        }
        Ok(())
    }

    async fn stats(&self) -> Result<HashMap<String, Stats24h>> {
        Ok(self.lock().stats.clone())
    }
}

#[async_trait]
impl RiskLimits for MemoryStore {
    async fn limits(&self) -> Result<Vec<RiskLimit>> {
        Ok(self.lock().limits.values().cloned().collect())
    }

    async fn limit(&self, user_id: &str) -> Result<Option<RiskLimit>> {
        Ok(self.lock().limits.get(user_id).cloned())
    }

    async fn set_limit(&self, limit: &RiskLimit) -> Result<()> {
        self.lock().limits.insert(limit.user_id.clone(), limit.clone());
        Ok(())
    }

    async fn save_metrics(&self, m: &RiskMetrics) -> Result<()> {
        self.lock().metrics.insert(m.user_id.clone(), m.clone());
        Ok(())
    }

    async fn open_breach(&self, b: &RiskBreach) -> Result<(RiskBreach, bool)> {
        let mut g = self.lock();
        let key = (b.user_id.clone(), b.kind);
        if let Some(open) = g.open_breaches.get(&key) {
            return Ok((open.clone(), false));
        }
        g.open_breaches.insert(key, b.clone());
        insert_sorted(&mut g.breach_history, b.clone(), |b| b.at);
        Ok((b.clone(), true))
    }

    async fn close_breach(&self, user_id: &str, kind: BreachKind) -> Result<bool> {
        Ok(self.lock().open_breaches.remove(&(user_id.to_owned(), kind)).is_some())
    }

    async fn open_breaches(&self) -> Result<Vec<RiskBreach>> {
        Ok(self.lock().open_breaches.values().cloned().collect())
    }

    async fn breach_history(&self, from: DateTime<Utc>) -> Result<Vec<RiskBreach>> {
        Ok(since(&self.lock().breach_history, from, |b| b.at))
    }
}

#[async_trait]
impl PriceAlerts for MemoryStore {
    async fn alerts(&self) -> Result<Vec<PriceAlert>> {
        Ok(self.lock().alerts.values().cloned().collect())
    }

    async fn alert(&self, id: &str) -> Result<Option<PriceAlert>> {
        Ok(self.lock().alerts.get(id).cloned())
    }

    async fn put_alert(&self, alert: &PriceAlert) -> Result<()> {
        let a = PriceAlert {
            triggered_at: None,
            triggered_price: None,
            notified_at: None,
            ..alert.clone()
        };
        self.lock().alerts.insert(a.id.clone(), a);
        Ok(())
    }

    async fn mark_triggered(&self, id: &str, price: f64, at: DateTime<Utc>) -> Result<bool> {
        let mut g = self.lock();
        match g.alerts.get_mut(id) {
            Some(a) if a.triggered_at.is_none() => {
                a.triggered_at = Some(at);
                a.triggered_price = Some(price);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_notified(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let mut g = self.lock();
        match g.alerts.get_mut(id) {
            Some(a) if a.notified_at.is_none() => {
                a.notified_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl TradingBots for MemoryStore {
    async fn bots(&self) -> Result<Vec<Bot>> {
        Ok(self.lock().bots.values().cloned().collect())
    }

    async fn bot(&self, id: &str) -> Result<Option<Bot>> {
        Ok(self.lock().bots.get(id).cloned())
    }

    async fn put_bot(&self, bot: &Bot) -> Result<()> {
        self.lock().bots.insert(bot.id.clone(), bot.clone());
        Ok(())
    }

    async fn heartbeat(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        if let Some(b) = self.lock().bots.get_mut(id) {
            b.last_heartbeat = Some(at);
        }
        Ok(())
    }

    async fn transition(&self, id: &str, from: BotStatus, to: BotStatus) -> Result<bool> {
        match self.lock().bots.get_mut(id) {
            Some(b) if b.status == from => {
                b.status = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn restart(&self, id: &str, at: DateTime<Utc>) -> Result<Option<u32>> {
        match self.lock().bots.get_mut(id) {
            Some(b) if b.status == BotStatus::Unhealthy => {
                b.status = BotStatus::Running;
                b.restarts += 1;
                b.last_heartbeat = Some(at);
                b.last_restart = Some(at);
                Ok(Some(b.restarts))
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl Reports for MemoryStore {
    async fn save_report(&self, report: &DailyReport) -> Result<()> {
        self.lock().reports.insert(report.date, report.clone());
        Ok(())
    }

    async fn report(&self, date: NaiveDate) -> Result<Option<DailyReport>> {
        Ok(self.lock().reports.get(&date).cloned())
    }

    async fn summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool> {
        Ok(self.lock().summaries_sent.contains(&(date, user_id.to_owned())))
    }

    async fn mark_summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool> {
        Ok(self.lock().summaries_sent.insert((date, user_id.to_owned())))
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn push_email(&self, email: &Email) -> Result<()> {
        let mut g = self.lock();
        g.outbox.push_front(email.clone());
        g.outbox.truncate(OUTBOX_CAP);
        Ok(())
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<Email>> {
        Ok(self.lock().outbox.iter().take(limit).cloned().collect())
    }
}

#[async_trait]
impl Activity for MemoryStore {
    async fn record_trade(&self, trade: &Trade) -> Result<()> {
        insert_sorted(&mut self.lock().trades, trade.clone(), |t| t.at);
        Ok(())
    }

    async fn trades(&self, from: DateTime<Utc>) -> Result<Vec<Trade>> {
        Ok(since(&self.lock().trades, from, |t| t.at))
    }

    async fn log(&self, entry: &LogEntry) -> Result<()> {
        insert_sorted(&mut self.lock().logs, entry.clone(), |l| l.at);
        Ok(())
    }

    async fn logs(&self, from: DateTime<Utc>) -> Result<Vec<LogEntry>> {
        Ok(since(&self.lock().logs, from, |l| l.at))
    }

    async fn cache_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.lock().cache.insert(key.to_owned(), (value.clone(), at));
        Ok(())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.lock().cache.get(key).map(|(v, _)| v.clone()))
    }
}

#[async_trait]
impl Maintenance for MemoryStore {
    async fn delete_before(
        &self,
        trades: DateTime<Utc>,
        logs: DateTime<Utc>,
        cache: DateTime<Utc>,
    ) -> Result<CleanupReport> {
        let mut g = self.lock();
        let t = drain_before(&mut g.trades, trades, |t| t.at);
        let l = drain_before(&mut g.logs, logs, |l| l.at);
        let before = g.cache.len();
        g.cache.retain(|_, (_, at)| *at >= cache);
        Ok(CleanupReport { trades: t, logs: l, cache: (before - g.cache.len()) as u64 })
    }

    async fn vacuum(&self, plan: &VacuumPlan) -> Result<VacuumReport> {
        let mut g = self.lock();
        let mut r = VacuumReport::default();
        for h in g.history.values_mut() {
            r.price_points += drain_before(h, plan.price_history_before, |q| q.at);
        }
        for h in g.value_history.values_mut() {
            r.snapshot_points += drain_before(h, plan.snapshot_history_before, |p| p.at);
        }
        r.breaches = drain_before(&mut g.breach_history, plan.breaches_before, |b| b.at);
        let before = g.alerts.len();
        g.alerts.retain(|_, a| !matches!(a.notified_at, Some(t) if t < plan.alerts_before));
        r.alerts = (before - g.alerts.len()) as u64;
        let before = g.outbox.len();
        g.outbox.truncate(plan.outbox_max);
        r.outbox = (before - g.outbox.len()) as u64;

        // Orphans: records of users or symbols that no longer exist, and empty histories.
        let Inner { users, symbols, .. } = &*g;
        let (users, symbols) = (users.clone(), symbols.clone());
        let mut orphans = 0u64;
        let mut count = |removed: usize| orphans += removed as u64;
        macro_rules! retain_users {
            ($map:expr) => {{
                let n = $map.len();
                $map.retain(|k, _| users.contains_key(k));
                count(n - $map.len());
            }};
        }
        retain_users!(g.positions);
        retain_users!(g.snapshots);
        retain_users!(g.limits);
        retain_users!(g.metrics);
        let n = g.value_history.len();
        g.value_history.retain(|k, h| users.contains_key(k) && !h.is_empty());
        count(n - g.value_history.len());
        let n = g.history.len();
        g.history.retain(|s, h| symbols.contains(s) && !h.is_empty());
        count(n - g.history.len());
        let n = g.latest.len();
        g.latest.retain(|s, _| symbols.contains(s));
        count(n - g.latest.len());
        let n = g.stats.len();
        g.stats.retain(|s, _| symbols.contains(s));
        count(n - g.stats.len());
        let n = g.alerts.len();
        g.alerts.retain(|_, a| users.contains_key(&a.user_id));
        count(n - g.alerts.len());
        let n = g.bots.len();
        g.bots.retain(|_, b| users.contains_key(&b.user_id));
        count(n - g.bots.len());
        let n = g.open_breaches.len();
        g.open_breaches.retain(|(u, _), _| users.contains_key(u));
        count(n - g.open_breaches.len());
        r.orphans = orphans;
        Ok(r)
    }

    async fn clear(&self) -> Result<u64> {
        let mut g = self.lock();
        let n = (g.users.len() + g.symbols.len() + g.alerts.len() + g.bots.len()) as u64;
        *g = Inner::default();
        Ok(n)
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
}
