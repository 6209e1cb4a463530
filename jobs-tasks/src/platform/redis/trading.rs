//! Risk limits and breaches, price alerts and trading bots on Redis (the bots' state
//! changes are Lua scripts, so two workers cannot both restart one bot).

use super::*;

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
