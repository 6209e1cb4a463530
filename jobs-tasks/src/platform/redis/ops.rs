//! Reports, the outbox, the activity log and the maintenance passes (cleanup, vacuum) on
//! Redis.

use super::*;

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
