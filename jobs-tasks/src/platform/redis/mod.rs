//! [`RedisStore`]: the platform on Redis, under its own keys (`trading:{<namespace>}:…`,
//! see [`keys`]), next to the queue's.
//!
//! Histories are sorted sets scored by time in milliseconds, so retention and trimming are
//! one `ZREMRANGEBYSCORE` each. Things that must happen once (an alert triggering, its
//! notification, a breach opening, a summary per user and day) are decided by one atomic
//! command (`HSETNX`, `SADD`) or script, so concurrent tasks cannot both win.

pub mod keys;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use jobs_core::redis::{RedisConfig, RedisConnection};
use redis::{Cmd, FromRedisValue, Pipeline, Script};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::keys::Keys;
use super::{
    Activity, Maintenance, Outbox, Portfolios, PriceAlerts, Prices, Reports, RiskLimits, Store,
    TradingBots, from_ms, ms,
};
use crate::error::Result;
use crate::model::{
    Bot, BotStatus, BreachKind, CleanupReport, DailyReport, Email, LogEntry, PortfolioSnapshot,
    Position, PriceAlert, Quote, RiskBreach, RiskLimit, RiskMetrics, Stats24h, Trade, User,
    VacuumPlan, VacuumReport, ValuePoint,
};

static BOT_TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/bot_transition.lua")));
static BOT_RESTART: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/bot_restart.lua")));

/// Most messages the outbox keeps between vacuums (the oldest are dropped on write).
const OUTBOX_CAP: isize = 10_000;
/// How long the "summary sent" sets of a day are kept.
const SUMMARY_SENT_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// Keys per SCAN round trip.
const SCAN_COUNT: usize = 500;

/// The trading platform on Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    keys: Keys,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// How an alert's trigger is recorded (`alerts:triggered`).
#[derive(Debug, Serialize, Deserialize)]
struct Triggered {
    price: f64,
    at: DateTime<Utc>,
}

impl RedisStore {
    /// Connects to `url` and checks that the server answers: an unreachable server is an
    /// error here, not at the first task.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::connect_with(&RedisConfig::new(url).namespace(namespace)).await
    }

    /// Connects as the queue's configuration says (TLS files, a cluster found from one
    /// node or from seed nodes), in its namespace. All of a namespace's keys share one
    /// hash tag, so on a cluster the store lives on one node, like the queue.
    pub async fn connect_with(cfg: &RedisConfig) -> Result<Self> {
        let keys = Keys::new(&cfg.namespace)?;
        let cfg = RedisConfig { response_timeout: Duration::from_secs(10), ..cfg.clone() };
        let conn = RedisConnection::connect(&cfg).await?;
        Ok(RedisStore { conn, keys })
    }

    /// The store's keys (for tools and tests that inspect Redis).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut c = self.conn.clone();
        Ok(cmd.query_async(&mut c).await?)
    }

    async fn exec(&self, pipe: &Pipeline) -> Result<()> {
        let mut c = self.conn.clone();
        let () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    async fn hgetall<T: DeserializeOwned>(&self, key: &str) -> Result<Vec<(String, T)>> {
        let raw: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(key)).await?;
        Ok(raw.into_iter().filter_map(|(k, v)| decode_or_warn(key, &v).map(|v| (k, v))).collect())
    }

    async fn hget<T: DeserializeOwned>(&self, key: &str, field: &str) -> Result<Option<T>> {
        let raw: Option<String> = self.query(redis::cmd("HGET").arg(key).arg(field)).await?;
        raw.map(|s| serde_json::from_str(&s)).transpose().map_err(Into::into)
    }

    async fn zrange_since<T: DeserializeOwned>(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<T>> {
        let raw: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(key).arg(ms(since)).arg("+inf").arg("BYSCORE"))
            .await?;
        Ok(raw.iter().filter_map(|s| decode_or_warn(key, s)).collect())
    }

    async fn zrem_before(&self, key: &str, cutoff: DateTime<Utc>) -> Result<u64> {
        // `(` makes the bound exclusive: entries stamped exactly at the cut-off stay.
        self.query(
            redis::cmd("ZREMRANGEBYSCORE").arg(key).arg("-inf").arg(format!("({}", ms(cutoff))),
        )
        .await
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
            // On a cluster, SCAN has no key to route by: send it to the namespace's node.
            let (next, batch): (u64, Vec<String>) =
                self.conn.clone().on_node_of(&scan, &self.keys.users()).await?;
            out.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn hdel(&self, key: &str, fields: &[String]) -> Result<u64> {
        if fields.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("HDEL").arg(key).arg(fields)).await
    }

    /// Deletes the fields of `key` not in `keep`; returns how many.
    async fn hdel_unless(&self, key: &str, keep: &HashSet<String>) -> Result<u64> {
        let fields: Vec<String> = self.query(redis::cmd("HKEYS").arg(key)).await?;
        let gone: Vec<String> = fields.into_iter().filter(|f| !keep.contains(f)).collect();
        self.hdel(key, &gone).await
    }

    async fn used_memory(&self) -> Result<Option<u64>> {
        let info: String = self.query(redis::cmd("INFO").arg("memory")).await?;
        Ok(info.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()))
    }

    async fn bot_live_fields(
        &self,
        ids: &[String],
    ) -> Result<Vec<(Option<String>, Option<i64>, Option<u32>, Option<i64>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut p = redis::pipe();
        p.cmd("HMGET").arg(k.bot_status()).arg(ids);
        p.cmd("HMGET").arg(k.bot_heartbeats()).arg(ids);
        p.cmd("HMGET").arg(k.bot_restarts()).arg(ids);
        p.cmd("HMGET").arg(k.bot_restarted()).arg(ids);
        let mut c = self.conn.clone();
        #[allow(clippy::type_complexity)]
        let (status, beats, restarts, restarted): (
            Vec<Option<String>>,
            Vec<Option<i64>>,
            Vec<Option<u32>>,
            Vec<Option<i64>>,
        ) = p.query_async(&mut c).await?;
        Ok(status
            .into_iter()
            .zip(beats)
            .zip(restarts)
            .zip(restarted)
            .map(|(((s, b), r), t)| (s, b, r, t))
            .collect())
    }

    async fn bots_by_id(&self, only: Option<&str>) -> Result<Vec<Bot>> {
        let defs: Vec<(String, Bot)> = match only {
            Some(id) => self
                .hget::<Bot>(&self.keys.bots(), id)
                .await?
                .map(|b| (id.to_owned(), b))
                .into_iter()
                .collect(),
            None => self.hgetall(&self.keys.bots()).await?,
        };
        let ids: Vec<String> = defs.iter().map(|(id, _)| id.clone()).collect();
        let live = self.bot_live_fields(&ids).await?;
        let mut bots: Vec<Bot> = defs
            .into_iter()
            .zip(live)
            .map(|((_, def), (status, beat, restarts, restarted))| Bot {
                status: status.as_deref().and_then(BotStatus::parse).unwrap_or(def.status),
                last_heartbeat: beat.map(from_ms).or(def.last_heartbeat),
                restarts: restarts.unwrap_or(def.restarts),
                last_restart: restarted.map(from_ms).or(def.last_restart),
                ..def
            })
            .collect();
        bots.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(bots)
    }

    async fn merge_alert(&self, mut alert: PriceAlert) -> Result<PriceAlert> {
        let k = &self.keys;
        let mut p = redis::pipe();
        p.cmd("HGET").arg(k.alerts_triggered()).arg(&alert.id);
        p.cmd("HGET").arg(k.alerts_notified()).arg(&alert.id);
        let mut c = self.conn.clone();
        let (t, n): (Option<String>, Option<i64>) = p.query_async(&mut c).await?;
        apply_marks(&mut alert, t.as_deref(), n);
        Ok(alert)
    }
}

fn apply_marks(alert: &mut PriceAlert, triggered: Option<&str>, notified: Option<i64>) {
    if let Some(t) = triggered.and_then(|t| decode_or_warn::<Triggered>("alerts:triggered", t)) {
        alert.triggered_at = Some(t.at);
        alert.triggered_price = Some(t.price);
    }
    alert.notified_at = notified.map(from_ms);
}

/// Decodes a stored record; a corrupt one is logged and skipped so that one bad record does
/// not stop a task from working on the others.
fn decode_or_warn<T: DeserializeOwned>(key: &str, raw: &str) -> Option<T> {
    match serde_json::from_str(raw) {
        Ok(v) => Some(v),
        Err(error) => {
            tracing::warn!(key, %error, "skipping a corrupt record");
            None
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

#[async_trait]
impl Portfolios for RedisStore {
    async fn users(&self) -> Result<Vec<User>> {
        let mut users: Vec<User> =
            self.hgetall(&self.keys.users()).await?.into_iter().map(|(_, u)| u).collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(users)
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.hget(&self.keys.users(), id).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.query(redis::cmd("HSET").arg(self.keys.users()).arg(&user.id).arg(json(user)?)).await
    }

    async fn positions(&self, user_id: &str) -> Result<Vec<Position>> {
        Ok(self.hget(&self.keys.positions(), user_id).await?.unwrap_or_default())
    }

    async fn set_positions(&self, user_id: &str, positions: &[Position]) -> Result<()> {
        self.query(
            redis::cmd("HSET").arg(self.keys.positions()).arg(user_id).arg(json(&positions)?),
        )
        .await
    }

    async fn save_snapshot(&self, s: &PortfolioSnapshot) -> Result<()> {
        let point = ValuePoint { at: s.at, value: s.total_value };
        let mut p = redis::pipe();
        p.cmd("HSET").arg(self.keys.snapshots()).arg(&s.user_id).arg(json(s)?).ignore();
        p.cmd("ZADD").arg(self.keys.values(&s.user_id)).arg(ms(s.at)).arg(json(&point)?).ignore();
        self.exec(&p).await
    }

    async fn latest_snapshot(&self, user_id: &str) -> Result<Option<PortfolioSnapshot>> {
        self.hget(&self.keys.snapshots(), user_id).await
    }

    async fn value_history(&self, user_id: &str, since: DateTime<Utc>) -> Result<Vec<ValuePoint>> {
        self.zrange_since(&self.keys.values(user_id), since).await
    }
}

#[async_trait]
impl Prices for RedisStore {
    async fn symbols(&self) -> Result<Vec<String>> {
        let mut s: Vec<String> =
            self.query(redis::cmd("SMEMBERS").arg(self.keys.symbols())).await?;
        s.sort();
        Ok(s)
    }

    async fn add_symbols(&self, symbols: &[String]) -> Result<()> {
        if symbols.is_empty() {
            return Ok(());
        }
        let _: u64 = self.query(redis::cmd("SADD").arg(self.keys.symbols()).arg(symbols)).await?;
        Ok(())
    }

    async fn latest_quotes(&self) -> Result<HashMap<String, Quote>> {
        Ok(self.hgetall(&self.keys.quotes()).await?.into_iter().collect())
    }

    async fn record_quotes(&self, quotes: &[Quote]) -> Result<()> {
        if quotes.is_empty() {
            return Ok(());
        }
        // The newest quote per symbol in this batch, compared with the stored one: a late
        // batch (a slow fetch finishing after a newer one) must not move the price back.
        let mut newest: HashMap<&str, &Quote> = HashMap::new();
        for q in quotes {
            let e = newest.entry(q.symbol.as_str()).or_insert(q);
            if q.at >= e.at {
                *e = q;
            }
        }
        let symbols: Vec<&str> = newest.keys().copied().collect();
        let stored: Vec<Option<String>> =
            self.query(redis::cmd("HMGET").arg(self.keys.quotes()).arg(&symbols)).await?;
        let mut p = redis::pipe();
        for (sym, old) in symbols.iter().zip(stored) {
            let Some(q) = newest.get(sym) else { continue };
            let old_at = old.and_then(|o| decode_or_warn::<Quote>("quotes", &o)).map(|o| o.at);
            if old_at.is_none_or(|t| t <= q.at) {
                p.cmd("HSET").arg(self.keys.quotes()).arg(*sym).arg(json(*q)?).ignore();
            }
        }
        for q in quotes {
            p.cmd("ZADD").arg(self.keys.history(&q.symbol)).arg(ms(q.at)).arg(json(q)?).ignore();
        }
        self.exec(&p).await
    }

    async fn history(&self, symbol: &str, since: DateTime<Utc>) -> Result<Vec<Quote>> {
        self.zrange_since(&self.keys.history(symbol), since).await
    }

    async fn save_stats(&self, stats: &[Stats24h]) -> Result<()> {
        if stats.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.keys.stats());
        for s in stats {
            cmd.arg(&s.symbol).arg(json(s)?);
        }
        let _: u64 = self.query(&cmd).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<HashMap<String, Stats24h>> {
        Ok(self.hgetall(&self.keys.stats()).await?.into_iter().collect())
    }
}

#[async_trait]
impl RiskLimits for RedisStore {
    async fn limits(&self) -> Result<Vec<RiskLimit>> {
        let mut l: Vec<RiskLimit> =
            self.hgetall(&self.keys.limits()).await?.into_iter().map(|(_, l)| l).collect();
        l.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(l)
    }

    async fn limit(&self, user_id: &str) -> Result<Option<RiskLimit>> {
        self.hget(&self.keys.limits(), user_id).await
    }

    async fn set_limit(&self, limit: &RiskLimit) -> Result<()> {
        self.query(redis::cmd("HSET").arg(self.keys.limits()).arg(&limit.user_id).arg(json(limit)?))
            .await
    }

    async fn save_metrics(&self, m: &RiskMetrics) -> Result<()> {
        self.query(redis::cmd("HSET").arg(self.keys.metrics()).arg(&m.user_id).arg(json(m)?)).await
    }

    async fn open_breach(&self, b: &RiskBreach) -> Result<(RiskBreach, bool)> {
        let field = self.keys.breach_field(&b.user_id, b.kind);
        let opened: bool = self
            .query(redis::cmd("HSETNX").arg(self.keys.open_breaches()).arg(&field).arg(json(b)?))
            .await?;
        if opened {
            let _: u64 = self
                .query(
                    redis::cmd("ZADD").arg(self.keys.breach_history()).arg(ms(b.at)).arg(json(b)?),
                )
                .await?;
            return Ok((b.clone(), true));
        }
        let open = self.hget(&self.keys.open_breaches(), &field).await?;
        Ok((open.unwrap_or_else(|| b.clone()), false))
    }

    async fn close_breach(&self, user_id: &str, kind: BreachKind) -> Result<bool> {
        let field = self.keys.breach_field(user_id, kind);
        self.query(redis::cmd("HDEL").arg(self.keys.open_breaches()).arg(field)).await
    }

    async fn open_breaches(&self) -> Result<Vec<RiskBreach>> {
        let mut b: Vec<RiskBreach> =
            self.hgetall(&self.keys.open_breaches()).await?.into_iter().map(|(_, b)| b).collect();
        b.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(b)
    }

    async fn breach_history(&self, since: DateTime<Utc>) -> Result<Vec<RiskBreach>> {
        self.zrange_since(&self.keys.breach_history(), since).await
    }
}

#[async_trait]
impl PriceAlerts for RedisStore {
    async fn alerts(&self) -> Result<Vec<PriceAlert>> {
        let k = &self.keys;
        let mut p = redis::pipe();
        p.cmd("HGETALL").arg(k.alerts());
        p.cmd("HGETALL").arg(k.alerts_triggered());
        p.cmd("HGETALL").arg(k.alerts_notified());
        let mut c = self.conn.clone();
        let (defs, triggered, notified): (
            HashMap<String, String>,
            HashMap<String, String>,
            HashMap<String, i64>,
        ) = p.query_async(&mut c).await?;
        let mut out: Vec<PriceAlert> = defs
            .iter()
            .filter_map(|(id, raw)| {
                let mut a: PriceAlert = decode_or_warn(&k.alerts(), raw)?;
                apply_marks(
                    &mut a,
                    triggered.get(id).map(String::as_str),
                    notified.get(id).copied(),
                );
                Some(a)
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn alert(&self, id: &str) -> Result<Option<PriceAlert>> {
        match self.hget::<PriceAlert>(&self.keys.alerts(), id).await? {
            Some(a) => Ok(Some(self.merge_alert(a).await?)),
            None => Ok(None),
        }
    }

    async fn put_alert(&self, alert: &PriceAlert) -> Result<()> {
        let clean = PriceAlert {
            triggered_at: None,
            triggered_price: None,
            notified_at: None,
            ..alert.clone()
        };
        let k = &self.keys;
        let mut p = redis::pipe();
        p.cmd("HSET").arg(k.alerts()).arg(&alert.id).arg(json(&clean)?).ignore();
        p.cmd("HDEL").arg(k.alerts_triggered()).arg(&alert.id).ignore();
        p.cmd("HDEL").arg(k.alerts_notified()).arg(&alert.id).ignore();
        self.exec(&p).await
    }

    async fn mark_triggered(&self, id: &str, price: f64, at: DateTime<Utc>) -> Result<bool> {
        let exists: bool =
            self.query(redis::cmd("HEXISTS").arg(self.keys.alerts()).arg(id)).await?;
        if !exists {
            return Ok(false);
        }
        // HSETNX decides: of any number of concurrent checks, exactly one marks it.
        let t = json(&Triggered { price, at })?;
        self.query(redis::cmd("HSETNX").arg(self.keys.alerts_triggered()).arg(id).arg(t)).await
    }

    async fn mark_notified(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        self.query(redis::cmd("HSETNX").arg(self.keys.alerts_notified()).arg(id).arg(ms(at))).await
    }
}

#[async_trait]
impl TradingBots for RedisStore {
    async fn bots(&self) -> Result<Vec<Bot>> {
        self.bots_by_id(None).await
    }

    async fn bot(&self, id: &str) -> Result<Option<Bot>> {
        Ok(self.bots_by_id(Some(id)).await?.into_iter().next())
    }

    async fn put_bot(&self, bot: &Bot) -> Result<()> {
        let k = &self.keys;
        let mut p = redis::pipe();
        p.cmd("HSET").arg(k.bots()).arg(&bot.id).arg(json(bot)?).ignore();
        p.cmd("HSET").arg(k.bot_status()).arg(&bot.id).arg(bot.status.as_str()).ignore();
        p.cmd("HSET").arg(k.bot_restarts()).arg(&bot.id).arg(bot.restarts).ignore();
        match bot.last_heartbeat {
            Some(t) => p.cmd("HSET").arg(k.bot_heartbeats()).arg(&bot.id).arg(ms(t)).ignore(),
            None => p.cmd("HDEL").arg(k.bot_heartbeats()).arg(&bot.id).ignore(),
        };
        match bot.last_restart {
            Some(t) => p.cmd("HSET").arg(k.bot_restarted()).arg(&bot.id).arg(ms(t)).ignore(),
            None => p.cmd("HDEL").arg(k.bot_restarted()).arg(&bot.id).ignore(),
        };
        self.exec(&p).await
    }

    async fn heartbeat(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let exists: bool = self.query(redis::cmd("HEXISTS").arg(self.keys.bots()).arg(id)).await?;
        if exists {
            let _: u64 = self
                .query(redis::cmd("HSET").arg(self.keys.bot_heartbeats()).arg(id).arg(ms(at)))
                .await?;
        }
        Ok(())
    }

    async fn transition(&self, id: &str, from: BotStatus, to: BotStatus) -> Result<bool> {
        let mut c = self.conn.clone();
        let changed: i64 = BOT_TRANSITION
            .key(self.keys.bot_status())
            .arg(id)
            .arg(from.as_str())
            .arg(to.as_str())
            .invoke_async(&mut c)
            .await?;
        Ok(changed == 1)
    }

    async fn restart(&self, id: &str, at: DateTime<Utc>) -> Result<Option<u32>> {
        let k = &self.keys;
        let mut c = self.conn.clone();
        let n: i64 = BOT_RESTART
            .key(k.bot_status())
            .key(k.bot_restarts())
            .key(k.bot_heartbeats())
            .key(k.bot_restarted())
            .arg(id)
            .arg(ms(at))
            .invoke_async(&mut c)
            .await?;
        Ok(u32::try_from(n).ok())
    }
}

#[async_trait]
impl Reports for RedisStore {
    async fn save_report(&self, report: &DailyReport) -> Result<()> {
        self.query(
            redis::cmd("HSET")
                .arg(self.keys.reports())
                .arg(report.date.to_string())
                .arg(json(report)?),
        )
        .await
    }

    async fn report(&self, date: NaiveDate) -> Result<Option<DailyReport>> {
        self.hget(&self.keys.reports(), &date.to_string()).await
    }

    async fn summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool> {
        self.query(redis::cmd("SISMEMBER").arg(self.keys.summaries_sent(date)).arg(user_id)).await
    }

    async fn mark_summary_sent(&self, date: NaiveDate, user_id: &str) -> Result<bool> {
        let key = self.keys.summaries_sent(date);
        let mut p = redis::pipe();
        p.cmd("SADD").arg(&key).arg(user_id);
        p.cmd("EXPIRE").arg(&key).arg(SUMMARY_SENT_TTL.as_secs()).ignore();
        let mut c = self.conn.clone();
        let (added,): (u64,) = p.query_async(&mut c).await?;
        Ok(added == 1)
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn push_email(&self, email: &Email) -> Result<()> {
        let mut p = redis::pipe();
        p.cmd("LPUSH").arg(self.keys.outbox()).arg(json(email)?).ignore();
        p.cmd("LTRIM").arg(self.keys.outbox()).arg(0).arg(OUTBOX_CAP - 1).ignore();
        self.exec(&p).await
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<Email>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        let raw: Vec<String> =
            self.query(redis::cmd("LRANGE").arg(self.keys.outbox()).arg(0).arg(stop)).await?;
        Ok(raw.iter().filter_map(|s| decode_or_warn("outbox", s)).collect())
    }
}

#[async_trait]
impl Activity for RedisStore {
    async fn record_trade(&self, trade: &Trade) -> Result<()> {
        self.query(redis::cmd("ZADD").arg(self.keys.trades()).arg(ms(trade.at)).arg(json(trade)?))
            .await
    }

    async fn trades(&self, since: DateTime<Utc>) -> Result<Vec<Trade>> {
        self.zrange_since(&self.keys.trades(), since).await
    }

    async fn log(&self, entry: &LogEntry) -> Result<()> {
        self.query(redis::cmd("ZADD").arg(self.keys.logs()).arg(ms(entry.at)).arg(json(entry)?))
            .await
    }

    async fn logs(&self, since: DateTime<Utc>) -> Result<Vec<LogEntry>> {
        self.zrange_since(&self.keys.logs(), since).await
    }

    async fn cache_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut p = redis::pipe();
        p.cmd("HSET").arg(self.keys.cache()).arg(key).arg(json(value)?).ignore();
        p.cmd("ZADD").arg(self.keys.cache_index()).arg(ms(at)).arg(key).ignore();
        self.exec(&p).await
    }

    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>> {
        self.hget(&self.keys.cache(), key).await
    }
}

#[async_trait]
impl Maintenance for RedisStore {
    async fn delete_before(
        &self,
        trades: DateTime<Utc>,
        logs: DateTime<Utc>,
        cache: DateTime<Utc>,
    ) -> Result<CleanupReport> {
        let t = self.zrem_before(&self.keys.trades(), trades).await?;
        let l = self.zrem_before(&self.keys.logs(), logs).await?;
        let stale: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.keys.cache_index())
                    .arg("-inf")
                    .arg(format!("({}", ms(cache)))
                    .arg("BYSCORE"),
            )
            .await?;
        let mut c = 0;
        for chunk in stale.chunks(SCAN_COUNT) {
            let mut p = redis::pipe();
            p.cmd("HDEL").arg(self.keys.cache()).arg(chunk);
            p.cmd("ZREM").arg(self.keys.cache_index()).arg(chunk).ignore();
            let mut conn = self.conn.clone();
            let (n,): (u64,) = p.query_async(&mut conn).await?;
            c += n;
        }
        Ok(CleanupReport { trades: t, logs: l, cache: c })
    }

    async fn vacuum(&self, plan: &VacuumPlan) -> Result<VacuumReport> {
        let k = &self.keys;
        let mut r =
            VacuumReport { memory_before: self.used_memory().await?, ..VacuumReport::default() };
        let users: HashSet<String> = self
            .query::<Vec<String>>(redis::cmd("HKEYS").arg(k.users()))
            .await?
            .into_iter()
            .collect();
        let symbols: HashSet<String> = self.symbols().await?.into_iter().collect();

        // Histories: trim by age; drop whole keys of users and symbols that are gone.
        for key in self.scan(&k.history_pattern()).await? {
            match k.symbol_of_history(&key) {
                Some(s) if symbols.contains(s) => {
                    r.price_points += self.zrem_before(&key, plan.price_history_before).await?
                }
                _ => r.orphans += self.query::<u64>(redis::cmd("DEL").arg(&key)).await?,
            }
        }
        for key in self.scan(&k.values_pattern()).await? {
            match k.user_of_values(&key) {
                Some(u) if users.contains(u) => {
                    r.snapshot_points +=
                        self.zrem_before(&key, plan.snapshot_history_before).await?
                }
                _ => r.orphans += self.query::<u64>(redis::cmd("DEL").arg(&key)).await?,
            }
        }
        r.breaches = self.zrem_before(&k.breach_history(), plan.breaches_before).await?;
        let len: i64 = self.query(redis::cmd("LLEN").arg(k.outbox())).await?;
        let keep = i64::try_from(plan.outbox_max).unwrap_or(i64::MAX);
        if len > keep {
            let _: () =
                self.query(redis::cmd("LTRIM").arg(k.outbox()).arg(0).arg(keep - 1)).await?;
            r.outbox = (len - keep) as u64;
        }

        // Finished alerts (notified before the cut-off) and alerts of users who are gone.
        let alerts = self.alerts().await?;
        let mut gone_alerts: Vec<String> = Vec::new();
        for a in &alerts {
            if !users.contains(&a.user_id) {
                r.orphans += 1;
                gone_alerts.push(a.id.clone());
            } else if matches!(a.notified_at, Some(t) if t < plan.alerts_before) {
                r.alerts += 1;
                gone_alerts.push(a.id.clone());
            }
        }
        for key in [k.alerts(), k.alerts_triggered(), k.alerts_notified()] {
            self.hdel(&key, &gone_alerts).await?;
        }
        // Marks of alerts that no longer exist.
        let alert_ids: HashSet<String> =
            alerts.iter().map(|a| a.id.clone()).filter(|id| !gone_alerts.contains(id)).collect();
        r.orphans += self.hdel_unless(&k.alerts_triggered(), &alert_ids).await?;
        r.orphans += self.hdel_unless(&k.alerts_notified(), &alert_ids).await?;

        // Bots of users who are gone, and live fields of bots that are gone.
        let bots: Vec<(String, Bot)> = self.hgetall(&k.bots()).await?;
        let gone_bots: Vec<String> = bots
            .iter()
            .filter(|(_, b)| !users.contains(&b.user_id))
            .map(|(id, _)| id.clone())
            .collect();
        r.orphans += self.hdel(&k.bots(), &gone_bots).await?;
        let bot_ids: HashSet<String> =
            bots.iter().map(|(id, _)| id.clone()).filter(|id| !gone_bots.contains(id)).collect();
        for key in [k.bot_status(), k.bot_heartbeats(), k.bot_restarts(), k.bot_restarted()] {
            r.orphans += self.hdel_unless(&key, &bot_ids).await?;
        }

        // Per-user and per-symbol records.
        for key in [k.positions(), k.snapshots(), k.limits(), k.metrics()] {
            r.orphans += self.hdel_unless(&key, &users).await?;
        }
        for key in [k.quotes(), k.stats()] {
            r.orphans += self.hdel_unless(&key, &symbols).await?;
        }
        let open: Vec<(String, RiskBreach)> = self.hgetall(&k.open_breaches()).await?;
        let stale: Vec<String> =
            open.into_iter().filter(|(_, b)| !users.contains(&b.user_id)).map(|(f, _)| f).collect();
        r.orphans += self.hdel(&k.open_breaches(), &stale).await?;

        r.memory_after = self.used_memory().await?;
        Ok(r)
    }

    async fn clear(&self) -> Result<u64> {
        let keys = self.scan(&self.keys.all_pattern()).await?;
        let mut n = 0;
        for chunk in keys.chunks(SCAN_COUNT) {
            n += self.query::<u64>(redis::cmd("DEL").arg(chunk)).await?;
        }
        Ok(n)
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
}
