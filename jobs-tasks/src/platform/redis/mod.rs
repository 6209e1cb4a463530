//! [`RedisStore`]: the platform on Redis, under its own keys (`trading:{<namespace>}:…`,
//! see [`keys`]), next to the queue's.
//!
//! Histories are sorted sets scored by time in milliseconds, so retention and trimming are
//! one `ZREMRANGEBYSCORE` each. Things that must happen once (an alert triggering, its
//! notification, a breach opening, a summary per user and day) are decided by one atomic
//! command (`HSETNX`, `SADD`) or script, so concurrent tasks cannot both win.

mod markets;
mod ops;
mod trading;

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
            tracing::warn!(key, error = %jobs_core::escape::Escaped(&error), "skipping a corrupt record");
            None
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
}
