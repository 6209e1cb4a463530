//! The store's portfolios and prices on Redis: users, positions, snapshots, value
//! history, symbols, quotes and 24 h statistics.

use super::*;

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
