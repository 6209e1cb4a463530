//! Flow control as a handler declares it: its named queue, whether its jobs are unique, and
//! the rate and concurrency limits on its starts (issue 18).
//!
//! `#[job_handler]` checks these declarations at compile time (durations, `max = 0`, and
//! every field named in `by` against the handler's argument type) and registers them as
//! `&'static` data on the [`HandlerRegistration`](crate::HandlerRegistration): see
//! [`HandlerRegistration::flow`](crate::HandlerRegistration::flow).
//!
//! ```
//! use jobs_core::prelude::*;
//! use jobs_core::{Registry, UniqueUntil};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Quotes { exchange: String, symbol: String }
//!
//! #[job_handler("fetch_quotes", queue = "market",
//!     unique(by = [exchange, symbol], for = "1m", until = "started"),
//!     rate_limit(max = 10, per = "1s", by = [exchange]),
//!     rate_limit(max = 500, per = "1m"))]
//! async fn fetch_quotes(args: Quotes) {}
//!
//! let flow = Registry::global()?.handler("fetch_quotes").expect("linked").flow();
//! assert_eq!(flow.queue, "market");
//! let unique = flow.unique.expect("declared");
//! assert_eq!(unique.until, UniqueUntil::Started);
//! assert_eq!(flow.rate_limits.len(), 2);
//! let args = serde_json::json!({"exchange": "xnys", "symbol": "IBM"});
//! assert_eq!(flow.rate_limits[0].key("fetch_quotes", &args)?, r#"["fetch_quotes","xnys"]"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Uniqueness is enforced by the backends' enqueue ([`UniqueLock`]), named queues by their
//! fetch (a worker's [`QueueSelection`](crate::QueueSelection)), and the rate and
//! concurrency limits by their fetch too: an enqueue computes each job's limiter keys
//! ([`JobLimits::declared`]) and a job over a limit is parked until its limiter has a slot
//! (the contract: [`backend::limits`](crate::backend::limits)).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
/// The lock an enqueue takes and the choices of a declaration, defined with the job (whose
/// [`NewJob::unique`](crate::NewJob::unique) holds one).
pub use crate::job::{MAX_UNIQUE_KEY_LEN, MAX_UNIQUE_WINDOW, OnConflict, UniqueLock, UniqueUntil};

/// The default queue, the longest queue name and the rule names are held to, defined with
/// the job (whose [`NewJob::queue`](crate::NewJob::queue) names one).
pub use crate::job::{DEFAULT_QUEUE, MAX_QUEUE_NAME_LEN, check_queue_name};

/// The limits one job is held to and what a backend shows of a limiter in use, defined
/// with the job (whose [`NewJob::limits`](crate::NewJob::limits) holds them).
pub use crate::job::{
    JobLimits, Limiter, LimiterKind, LimiterUsage, MAX_CONCURRENCY, MAX_RATE, MAX_RATE_LIMITS,
    MAX_RATE_PERIOD,
};

/// Everything a handler declares about how its jobs flow: its queue and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControl {
    /// The named queue its jobs go to (`queue = "payments"`; [`DEFAULT_QUEUE`] if unset).
    pub queue: &'static str,
    /// `unique(...)`: at most one job per key while the window is open.
    pub unique: Option<UniqueSpec>,
    /// `rate_limit(...)`, each one given (they stack: every one must allow a start).
    pub rate_limits: &'static [RateLimit],
    /// `concurrency(...)`: at most so many running at once per key.
    pub concurrency: Option<ConcurrencyLimit>,
}

impl FlowControl {
    /// The default queue, no limits: what a handler without flow options gets.
    pub const DEFAULT: FlowControl =
        FlowControl { queue: DEFAULT_QUEUE, unique: None, rate_limits: &[], concurrency: None };

    /// Whether it declares any limit (uniqueness, rate or concurrency).
    pub fn has_limits(&self) -> bool {
        self.unique.is_some() || !self.rate_limits.is_empty() || self.concurrency.is_some()
    }

    /// Every field named in a `by`, in declaration order (with repeats).
    pub fn by_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        let unique = self.unique.iter().flat_map(|u| u.by.iter());
        let rates = self.rate_limits.iter().flat_map(|r| r.by.iter());
        let conc = self.concurrency.iter().flat_map(|c| c.by.iter());
        unique.chain(rates).chain(conc).copied()
    }

    /// The first field named in a `by` that a JSON Schema of the arguments (an object
    /// schema with `properties`) does not list: the compile-time check sees Rust field
    /// names, the schema sees the JSON ones, so this catches a `#[serde(rename)]`d field.
    /// `None` when every field is listed or the schema lists no properties.
    pub fn field_missing_from(&self, schema: &Value) -> Option<&'static str> {
        let props = schema.get("properties")?.as_object()?;
        self.by_fields().find(|f| !props.contains_key(*f))
    }
}

impl Default for FlowControl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `unique(by = [user_id], for = "10m", until = "done", on_conflict = "keep")`: while the
/// window of a job with some key is open, an enqueue with the same key creates no job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueSpec {
    /// The argument fields whose values make the key, in order; empty: the whole arguments.
    pub by: &'static [&'static str],
    /// `for`: the longest the lock is held, whatever the job does (its upper bound).
    pub window: Duration,
    /// Which transition of the job ends the window.
    pub until: UniqueUntil,
    /// What a duplicate enqueue does.
    pub on_conflict: OnConflict,
}

impl UniqueSpec {
    /// The uniqueness key of a job of `handler` with `args`; see [`flow_key`].
    pub fn key(&self, handler: &str, args: &Value) -> Result<String, Error> {
        flow_key(handler, KeyOf::FieldsOrArgs(self.by), args)
    }
}

/// `rate_limit(max = 10, per = "1s", by = [exchange])`: at most `max` starts per `per` for
/// each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts allowed per period (at least 1).
    pub max: u32,
    /// The period.
    pub per: Duration,
    /// The argument fields whose values make the key; empty: one limit for the handler.
    pub by: &'static [&'static str],
}

impl RateLimit {
    /// The limiter key of a job of `handler` with `args`; see [`flow_key`].
    pub fn key(&self, handler: &str, args: &Value) -> Result<String, Error> {
        flow_key(handler, KeyOf::FieldsOrHandler(self.by), args)
    }
}

/// `concurrency(max = 1, by = [account_id])`: at most `max` jobs of one key running at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    /// Jobs of one key allowed to run at once (at least 1).
    pub max: u32,
    /// The argument fields whose values make the key; empty: one limit for the handler.
    pub by: &'static [&'static str],
}

impl ConcurrencyLimit {
    /// The limiter key of a job of `handler` with `args`; see [`flow_key`].
    pub fn key(&self, handler: &str, args: &Value) -> Result<String, Error> {
        flow_key(handler, KeyOf::FieldsOrHandler(self.by), args)
    }
}

/// A handler's limits as the stats, the API and the CLI list them, as declared (the
/// limiters in use are [`LimiterUsage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct LimitsInfo {
    /// `unique(...)`, if declared.
    pub unique: Option<UniqueInfo>,
    /// Each `rate_limit(...)`, in declaration order.
    pub rate_limits: Vec<RateLimitInfo>,
    /// `concurrency(...)`, if declared.
    pub concurrency: Option<ConcurrencyInfo>,
}

/// A [`UniqueSpec`], owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct UniqueInfo {
    /// The argument fields of the key (empty: the whole arguments).
    pub by: Vec<String>,
    /// The lock's upper bound (`for`), milliseconds.
    pub for_ms: u64,
    /// Which transition ends the window.
    pub until: UniqueUntil,
    /// What a duplicate enqueue does.
    pub on_conflict: OnConflict,
}

/// A [`RateLimit`], owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct RateLimitInfo {
    /// Starts allowed per period.
    pub max: u32,
    /// The period, milliseconds.
    pub per_ms: u64,
    /// The argument fields of the key (empty: one limit for the handler).
    pub by: Vec<String>,
}

/// A [`ConcurrencyLimit`], owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct ConcurrencyInfo {
    /// Jobs of one key allowed to run at once.
    pub max: u32,
    /// The argument fields of the key (empty: one limit for the handler).
    pub by: Vec<String>,
}

fn owned(by: &[&str]) -> Vec<String> {
    by.iter().map(|f| (*f).to_owned()).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&FlowControl> for LimitsInfo {
    fn from(f: &FlowControl) -> Self {
        LimitsInfo {
            unique: f.unique.map(|u| UniqueInfo {
                by: owned(u.by),
                for_ms: millis(u.window),
                until: u.until,
                on_conflict: u.on_conflict,
            }),
            rate_limits: f
                .rate_limits
                .iter()
                .map(|r| RateLimitInfo { max: r.max, per_ms: millis(r.per), by: owned(r.by) })
                .collect(),
            concurrency: f.concurrency.map(|c| ConcurrencyInfo { max: c.max, by: owned(c.by) }),
        }
    }
}

/// One line: `unique(by=[user_id] for=600000ms until=done keep) rate(10/1000ms by=[exchange])`,
/// or `none`.
impl fmt::Display for LimitsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = |by: &[String]| format!("[{}]", by.join(","));
        let mut parts = Vec::new();
        if let Some(u) = &self.unique {
            parts.push(format!(
                "unique(by={} for={}ms until={} {})",
                by(&u.by),
                u.for_ms,
                u.until.as_str(),
                u.on_conflict.as_str()
            ));
        }
        for r in &self.rate_limits {
            parts.push(format!("rate({}/{}ms by={})", r.max, r.per_ms, by(&r.by)));
        }
        if let Some(c) = &self.concurrency {
            parts.push(format!("concurrency({} by={})", c.max, by(&c.by)));
        }
        if parts.is_empty() { f.write_str("none") } else { f.write_str(&parts.join(" ")) }
    }
}

/// What a key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOf<'a> {
    /// These fields; when there are none, the whole arguments (`unique` without `by`).
    FieldsOrArgs(&'a [&'a str]),
    /// These fields; when there are none, nothing but the handler (a limit without `by`).
    FieldsOrHandler(&'a [&'a str]),
}

/// The key that a uniqueness lock or a limiter of `handler` files a job with `args` under.
///
/// Canonical, so that equal arguments give equal keys however they were written: a compact
/// JSON array of the handler's name and then the values of the `by` fields in their order
/// (`["fetch_quotes","xnys"]`), or the whole arguments, or nothing more, as `of` says.
/// Object keys are sorted at every depth, so the order the fields were sent in does not
/// matter. Numbers are kept as JSON has them (`1` and `1.0` differ), as typed enqueue
/// always writes a field one way.
///
/// A field named in `by` that the arguments lack (the compile-time check sees the Rust
/// field, but `#[serde(rename)]` or `skip_serializing_if` can hide it from the JSON), or
/// arguments that are not an object, are [`Error::InvalidArgs`] naming the field.
///
/// ```
/// use jobs_core::flow::{KeyOf, flow_key};
/// use serde_json::json;
///
/// let args = json!({"symbol": "IBM", "exchange": "xnys"});
/// assert_eq!(flow_key("q", KeyOf::FieldsOrHandler(&["exchange"]), &args)?, r#"["q","xnys"]"#);
/// assert_eq!(flow_key("q", KeyOf::FieldsOrHandler(&[]), &args)?, r#"["q"]"#);
/// assert_eq!(
///     flow_key("q", KeyOf::FieldsOrArgs(&[]), &args)?,
///     r#"["q",{"exchange":"xnys","symbol":"IBM"}]"#
/// );
/// assert!(flow_key("q", KeyOf::FieldsOrArgs(&["user"]), &args).is_err());
/// # Ok::<(), jobs_core::Error>(())
/// ```
pub fn flow_key(handler: &str, of: KeyOf<'_>, args: &Value) -> Result<String, Error> {
    let mut parts = vec![Value::String(handler.to_owned())];
    let fields = match of {
        KeyOf::FieldsOrArgs([]) => {
            parts.push(canonical(args));
            &[][..]
        }
        KeyOf::FieldsOrArgs(by) | KeyOf::FieldsOrHandler(by) => by,
    };
    if !fields.is_empty() {
        let invalid = |message: String| Error::InvalidArgs { name: handler.to_owned(), message };
        let Value::Object(map) = args else {
            return Err(invalid(format!(
                "the arguments must be an object with the fields named in `by` ({}), found {}",
                fields.join(", "),
                kind(args)
            )));
        };
        for field in fields {
            let value = map.get(*field).ok_or_else(|| {
                invalid(format!("missing field `{field}`, which a `by` of the handler names"))
            })?;
            parts.push(canonical(value));
        }
    }
    // Serialising a `Value` cannot fail (its map keys are strings).
    Ok(Value::Array(parts).to_string())
}

/// `v` with the keys of every object in sorted order (whatever `serde_json`'s map keeps).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// "an array", "a string", … for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RATE: RateLimit = RateLimit { max: 10, per: Duration::from_secs(1), by: &["exchange"] };

    fn unique(by: &'static [&'static str]) -> UniqueSpec {
        UniqueSpec {
            by,
            window: Duration::from_secs(600),
            until: UniqueUntil::Done,
            on_conflict: OnConflict::Keep,
        }
    }

    #[test]
    fn key_is_the_handler_and_the_by_values_in_by_order() -> Result<(), Error> {
        let args = json!({"user_id": "u1", "account": 7, "extra": true});
        assert_eq!(unique(&["user_id", "account"]).key("sync", &args)?, r#"["sync","u1",7]"#);
        assert_eq!(unique(&["account", "user_id"]).key("sync", &args)?, r#"["sync",7,"u1"]"#);
        // Fields outside `by` do not change the key.
        let other = json!({"user_id": "u1", "account": 7, "extra": false});
        assert_eq!(
            unique(&["user_id", "account"]).key("sync", &args)?,
            unique(&["user_id", "account"]).key("sync", &other)?
        );
        // Another handler, another key.
        assert_ne!(unique(&["user_id"]).key("a", &args)?, unique(&["user_id"]).key("b", &args)?);
        Ok(())
    }

    #[test]
    fn values_are_compact_json_so_types_and_separators_cannot_collide() -> Result<(), Error> {
        let k = |v: Value| unique(&["a", "b"]).key("h", &v);
        // A string "1" and the number 1 differ; a comma inside a value is not a separator.
        assert_ne!(k(json!({"a": "1", "b": 2}))?, k(json!({"a": 1, "b": 2}))?);
        assert_ne!(k(json!({"a": "x\",\"y", "b": "z"}))?, k(json!({"a": "x", "b": "y\",\"z"}))?);
        assert_eq!(k(json!({"a": null, "b": [1, 2]}))?, r#"["h",null,[1,2]]"#);
        Ok(())
    }

    #[test]
    fn without_by_unique_keys_on_the_whole_args_in_canonical_order() -> Result<(), Error> {
        let a: Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": 2}, "a": [ {"q": 1, "p": 2} ]}"#)
                .map_err(|e| Error::Config(e.to_string()))?;
        let b: Value = serde_json::from_str(r#"{"a": [{"p": 2, "q": 1}], "b": {"x": 2, "y": 1}}"#)
            .map_err(|e| Error::Config(e.to_string()))?;
        let key = unique(&[]).key("h", &a)?;
        assert_eq!(key, r#"["h",{"a":[{"p":2,"q":1}],"b":{"x":2,"y":1}}]"#);
        assert_eq!(key, unique(&[]).key("h", &b)?);
        assert_eq!(unique(&[]).key("h", &Value::Null)?, r#"["h",null]"#);
        Ok(())
    }

    #[test]
    fn limits_without_by_have_one_key_for_the_handler() -> Result<(), Error> {
        let c = ConcurrencyLimit { max: 1, by: &[] };
        assert_eq!(c.key("rebalance", &json!({"account_id": 1}))?, r#"["rebalance"]"#);
        assert_eq!(c.key("rebalance", &Value::Null)?, r#"["rebalance"]"#);
        let r = RateLimit { by: &[], ..RATE };
        assert_eq!(r.key("fetch", &json!({"exchange": "a"}))?, r.key("fetch", &json!({}))?);
        Ok(())
    }

    #[test]
    fn a_missing_field_is_a_clear_error_naming_it() {
        let err = RATE.key("fetch_quotes", &json!({"symbol": "IBM"})).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("invalid arguments for job `fetch_quotes`: missing field `exchange`, \
                 which a `by` of the handler names"
                .to_owned())
        );
        let c = ConcurrencyLimit { max: 1, by: &["account_id"] };
        let err = c.key("rebalance", &json!(["acc"])).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("invalid arguments for job `rebalance`: the arguments must be an object with \
                 the fields named in `by` (account_id), found an array"
                .to_owned())
        );
        assert!(matches!(
            unique(&["user_id"]).key("sync", &Value::Null),
            Err(Error::InvalidArgs { .. })
        ));
    }

    #[test]
    fn long_unique_keys_are_digested_the_same_way_every_time() -> Result<(), Error> {
        let big = json!({"blob": "x".repeat(2000)});
        let a = UniqueLock::declared(&unique(&[]), "h", &big)?;
        let b = UniqueLock::declared(&unique(&[]), "h", &big)?;
        assert_eq!(a.key, b.key);
        assert!(
            a.key.len() <= MAX_UNIQUE_KEY_LEN && a.key.starts_with(r##"["h","#"##),
            "{}",
            a.key
        );
        let other = UniqueLock::declared(&unique(&[]), "h", &json!({"blob": "y".repeat(2000)}))?;
        assert_ne!(a.key, other.key);
        assert!(a.validate().is_ok());
        // A short key is kept readable.
        assert_eq!(UniqueLock::named("h", "k1", Duration::from_secs(1)).key, r#"["h","k1"]"#);
        Ok(())
    }

    #[test]
    fn unique_locks_are_validated() {
        let lock = UniqueLock::named("h", "k", Duration::ZERO);
        assert!(matches!(lock.validate(), Err(Error::InvalidJob { .. })));
        let lock = UniqueLock {
            key: String::new(),
            ..UniqueLock::named("h", "k", Duration::from_secs(1))
        };
        assert!(matches!(lock.validate(), Err(Error::InvalidJob { .. })));
        let far = UniqueLock::named("h", "k", MAX_UNIQUE_WINDOW + Duration::from_secs(1));
        assert!(far.validate().is_err());
    }

    #[test]
    fn queue_names() {
        for ok in ["default", "payments", "a", "eu-west.1_x", &"q".repeat(64)] {
            assert!(check_queue_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "pay ments", "a:b", "é", "a/b", &"q".repeat(65)] {
            assert!(check_queue_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_listing_shows_every_limit() {
        const RATES: &[RateLimit] =
            &[RATE, RateLimit { max: 500, per: Duration::from_secs(60), by: &[] }];
        let f = FlowControl {
            queue: "market",
            unique: Some(unique(&["user_id"])),
            rate_limits: RATES,
            concurrency: Some(ConcurrencyLimit { max: 1, by: &["account_id"] }),
        };
        let info = LimitsInfo::from(&f);
        assert_eq!(
            info.to_string(),
            "unique(by=[user_id] for=600000ms until=done keep) rate(10/1000ms by=[exchange]) \
             rate(500/60000ms by=[]) concurrency(1 by=[account_id])"
        );
        let json = serde_json::to_value(&info).map_err(|e| e.to_string());
        assert_eq!(
            json,
            Ok(json!({
                "unique": {"by": ["user_id"], "for_ms": 600_000, "until": "done", "on_conflict": "keep"},
                "rate_limits": [
                    {"max": 10, "per_ms": 1000, "by": ["exchange"]},
                    {"max": 500, "per_ms": 60_000, "by": []}
                ],
                "concurrency": {"max": 1, "by": ["account_id"]}
            }))
        );
        assert_eq!(LimitsInfo::from(&FlowControl::DEFAULT).to_string(), "none");
    }

    #[test]
    fn by_fields_are_checked_against_a_schema() {
        const RATES: &[RateLimit] = &[RATE];
        let f = FlowControl {
            unique: Some(unique(&["user_id"])),
            rate_limits: RATES,
            ..FlowControl::DEFAULT
        };
        assert_eq!(f.by_fields().collect::<Vec<_>>(), ["user_id", "exchange"]);
        let schema = json!({"type": "object", "properties": {"user_id": {}, "exchange": {}}});
        assert_eq!(f.field_missing_from(&schema), None);
        let renamed = json!({"type": "object", "properties": {"userId": {}, "exchange": {}}});
        assert_eq!(f.field_missing_from(&renamed), Some("user_id"));
        assert_eq!(f.field_missing_from(&json!({})), None);
    }

    #[test]
    fn defaults() {
        assert_eq!(FlowControl::default().queue, "default");
        assert!(!FlowControl::DEFAULT.has_limits());
        let f = FlowControl { rate_limits: &[RATE], ..FlowControl::DEFAULT };
        assert!(f.has_limits());
        assert_eq!(UniqueUntil::default().as_str(), "done");
        assert_eq!(OnConflict::default().as_str(), "keep");
    }
}
