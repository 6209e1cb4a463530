//! Every key of the trading store is built here and nowhere else.
//!
//! Keys are `trading:{<namespace>}:<suffix>`, apart from the queue's `jobq:{<namespace>}:…`
//! keys. The braces are a Redis Cluster hash tag: all keys of one namespace share a slot,
//! so the store's scripts may touch any of them.

use chrono::NaiveDate;

use crate::error::{PlatformError, Result};
use crate::model::BreachKind;

/// The key prefix of the trading store.
pub const PREFIX: &str = "trading";

/// The key names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    base: String,
}

impl Keys {
    /// The keys of `namespace`: 1-100 characters, no braces, whitespace or control
    /// characters (the same rule as the queue's namespaces).
    pub fn new(namespace: &str) -> Result<Self> {
        let ok = !namespace.is_empty()
            && namespace.len() <= 100
            && !namespace.contains(['{', '}'])
            && !namespace.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(PlatformError::Config(format!(
                "invalid namespace `{namespace}`: 1-100 characters, no braces or spaces"
            )));
        }
        Ok(Keys { base: format!("{PREFIX}:{{{namespace}}}:") })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }

    /// HASH user id -> `User` JSON.
    pub fn users(&self) -> String {
        self.key("users")
    }
    /// HASH user id -> `[Position]` JSON.
    pub fn positions(&self) -> String {
        self.key("positions")
    }
    /// HASH user id -> latest `PortfolioSnapshot` JSON.
    pub fn snapshots(&self) -> String {
        self.key("snapshot")
    }
    /// ZSET `ValuePoint` JSON -> ms: one user's portfolio value history.
    pub fn values(&self, user_id: &str) -> String {
        self.key(&format!("values:{user_id}"))
    }
    /// SCAN pattern of every [`values`](Self::values) key.
    pub fn values_pattern(&self) -> String {
        format!("{}values:*", glob_escape(&self.base))
    }
    /// The user of a [`values`](Self::values) key.
    pub fn user_of_values<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.base)?.strip_prefix("values:")
    }
    /// SET of tracked symbols.
    pub fn symbols(&self) -> String {
        self.key("symbols")
    }
    /// HASH symbol -> latest `Quote` JSON.
    pub fn quotes(&self) -> String {
        self.key("quotes")
    }
    /// ZSET `Quote` JSON -> ms: one symbol's price history.
    pub fn history(&self, symbol: &str) -> String {
        self.key(&format!("history:{symbol}"))
    }
    /// SCAN pattern of every [`history`](Self::history) key.
    pub fn history_pattern(&self) -> String {
        format!("{}history:*", glob_escape(&self.base))
    }
    /// The symbol of a [`history`](Self::history) key.
    pub fn symbol_of_history<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.base)?.strip_prefix("history:")
    }
    /// HASH symbol -> `Stats24h` JSON.
    pub fn stats(&self) -> String {
        self.key("stats24h")
    }
    /// HASH user id -> `RiskLimit` JSON.
    pub fn limits(&self) -> String {
        self.key("risk:limits")
    }
    /// HASH user id -> latest `RiskMetrics` JSON.
    pub fn metrics(&self) -> String {
        self.key("risk:metrics")
    }
    /// HASH [`breach_field`](Self::breach_field) -> open `RiskBreach` JSON.
    pub fn open_breaches(&self) -> String {
        self.key("risk:open")
    }
    /// The field of a user's open breach of one kind in [`open_breaches`](Self::open_breaches).
    pub fn breach_field(&self, user_id: &str, kind: BreachKind) -> String {
        format!("{user_id}|{}", kind.as_str())
    }
    /// ZSET `RiskBreach` JSON -> opened ms: breach history.
    pub fn breach_history(&self) -> String {
        self.key("risk:breaches")
    }
    /// HASH alert id -> `PriceAlert` JSON (as created).
    pub fn alerts(&self) -> String {
        self.key("alerts")
    }
    /// HASH alert id -> `{"price", "at"}` JSON; HSETNX makes the trigger happen once.
    pub fn alerts_triggered(&self) -> String {
        self.key("alerts:triggered")
    }
    /// HASH alert id -> notified ms; HSETNX makes the notification count once.
    pub fn alerts_notified(&self) -> String {
        self.key("alerts:notified")
    }
    /// HASH bot id -> `Bot` JSON (its definition; the live fields are below).
    pub fn bots(&self) -> String {
        self.key("bots")
    }
    /// HASH bot id -> status string (`running`, `unhealthy`, …).
    pub fn bot_status(&self) -> String {
        self.key("bots:status")
    }
    /// HASH bot id -> last heartbeat ms.
    pub fn bot_heartbeats(&self) -> String {
        self.key("bots:heartbeat")
    }
    /// HASH bot id -> restart count.
    pub fn bot_restarts(&self) -> String {
        self.key("bots:restarts")
    }
    /// HASH bot id -> last restart ms.
    pub fn bot_restarted(&self) -> String {
        self.key("bots:restarted")
    }
    /// HASH date (`YYYY-MM-DD`) -> `DailyReport` JSON.
    pub fn reports(&self) -> String {
        self.key("reports")
    }
    /// SET of user ids who got the summary of `date` (expires after a week).
    pub fn summaries_sent(&self, date: NaiveDate) -> String {
        self.key(&format!("summaries:{date}"))
    }
    /// LIST of sent `Email` JSON, newest first (capped).
    pub fn outbox(&self) -> String {
        self.key("outbox")
    }
    /// ZSET `Trade` JSON -> ms.
    pub fn trades(&self) -> String {
        self.key("trades")
    }
    /// ZSET `LogEntry` JSON -> ms.
    pub fn logs(&self) -> String {
        self.key("logs")
    }
    /// HASH cache key -> value JSON.
    pub fn cache(&self) -> String {
        self.key("cache")
    }
    /// ZSET cache key -> written ms (the retention index of [`cache`](Self::cache)).
    pub fn cache_index(&self) -> String {
        self.key("cache:at")
    }
    /// SCAN pattern of every key of the namespace.
    pub fn all_pattern(&self) -> String {
        format!("{}*", glob_escape(&self.base))
    }
}

/// Escapes the characters special to Redis glob patterns.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_apart_from_the_queue() -> Result<()> {
        let k = Keys::new("prod")?;
        assert_eq!(k.users(), "trading:{prod}:users");
        assert_eq!(k.values("user-1"), "trading:{prod}:values:user-1");
        assert_eq!(k.user_of_values("trading:{prod}:values:user-1"), Some("user-1"));
        assert_eq!(k.symbol_of_history(&k.history("BTC-USD")), Some("BTC-USD"));
        assert_eq!(k.breach_field("u", BreachKind::Drawdown), "u|drawdown");
        assert_eq!(Keys::new("a*b")?.all_pattern(), "trading:{a\\*b}:*");
        assert!(Keys::new("a{b}").is_err());
        assert!(Keys::new("").is_err());
        Ok(())
    }
}
