//! The rate and concurrency limits one job is held to ([`JobLimits`]), as its enqueue
//! computes them from its handler's `rate_limit(...)` and `concurrency(...)` declarations
//! (see [`flow`](crate::flow)), and what a backend shows of a limiter in use
//! ([`LimiterUsage`]).
//!
//! A limiter is named by its kind, its bounds and its key (the handler and the values of
//! the `by` fields): jobs whose limiters have one name share its slots, whichever process
//! enqueued them. The backends enforce them when they hand a job out: a job over one of
//! its limits is *parked* on that limiter (not handed out, not in its queue's ready
//! lists) until the limiter has a slot again, and the fetch takes the next eligible job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::flow::FlowControl;

/// The most starts a rate limit may allow per period (each start in the period is kept).
pub const MAX_RATE: u32 = 100_000;
/// The longest period of a rate limit: one day.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(86_400);
/// The most jobs of one key a concurrency limit may allow at once.
pub const MAX_CONCURRENCY: u32 = 100_000;
/// The most rate limits one job may be held to.
pub const MAX_RATE_LIMITS: usize = 8;

/// One limiter a job is held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Limiter {
    /// At most `max` starts of jobs with this key in any `per` (a sliding window).
    Rate {
        /// The key (see [`flow_key`](crate::flow::flow_key)).
        key: String,
        /// Starts allowed per period.
        max: u32,
        /// The period.
        per: Duration,
    },
    /// At most `max` jobs with this key running at once.
    Concurrency {
        /// The key.
        key: String,
        /// Jobs allowed to run at once.
        max: u32,
    },
}

impl Limiter {
    /// The limiter's name, which jobs sharing its slots share: `r:<max>/<per ms>:<key>` or
    /// `c:<key>` (two rate limits of one key with other bounds are two limiters).
    pub fn name(&self) -> String {
        match self {
            Limiter::Rate { key, max, per } => format!("r:{max}/{}:{key}", per.as_millis()),
            Limiter::Concurrency { key, .. } => format!("c:{key}"),
        }
    }

    /// The key it counts jobs by.
    pub fn key(&self) -> &str {
        match self {
            Limiter::Rate { key, .. } | Limiter::Concurrency { key, .. } => key,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidJob { reason });
        let key = self.key();
        if key.is_empty() || key.len() > crate::job::MAX_UNIQUE_KEY_LEN {
            return invalid(format!(
                "a limiter key must be 1 to {} bytes long, found {}",
                crate::job::MAX_UNIQUE_KEY_LEN,
                key.len()
            ));
        }
        match self {
            Limiter::Rate { max, per, .. } => {
                if *max == 0 || *max > MAX_RATE {
                    return invalid(format!(
                        "a rate limit allows 1 to {MAX_RATE} starts, found {max}"
                    ));
                }
                if *per < Duration::from_millis(1) || *per > MAX_RATE_PERIOD {
                    return invalid(format!(
                        "a rate limit's period must be between 1 ms and 1 day, found {per:?}"
                    ));
                }
            }
            Limiter::Concurrency { max, .. } => {
                if *max == 0 || *max > MAX_CONCURRENCY {
                    return invalid(format!(
                        "a concurrency limit allows 1 to {MAX_CONCURRENCY} jobs, found {max}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The limits a job is held to ([`NewJob::limits`](crate::NewJob::limits)): every rate
/// limit must allow its start, and at most one concurrency limit holds a slot while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLimits {
    /// Its limiters: rate limits first, in declaration order, then its concurrency limit.
    pub limiters: Vec<Limiter>,
}

impl JobLimits {
    /// The limits a handler's declaration gives a job of `handler` with `args` (`None`:
    /// it declares none). Keys past [`MAX_UNIQUE_KEY_LEN`](crate::job::MAX_UNIQUE_KEY_LEN)
    /// bytes are digested as uniqueness keys are.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobs_core::flow::{ConcurrencyLimit, FlowControl, RateLimit};
    /// use jobs_core::{JobLimits, Limiter};
    ///
    /// const RATES: &[RateLimit] = &[RateLimit { max: 10, per: Duration::from_secs(1), by: &["exchange"] }];
    /// let flow = FlowControl {
    ///     rate_limits: RATES,
    ///     concurrency: Some(ConcurrencyLimit { max: 1, by: &[] }),
    ///     ..FlowControl::DEFAULT
    /// };
    /// let limits = JobLimits::declared(&flow, "quotes", &serde_json::json!({"exchange": "xnys"}))?
    ///     .expect("declared");
    /// assert_eq!(limits.limiters[0].name(), r#"r:10/1000:["quotes","xnys"]"#);
    /// assert_eq!(limits.limiters[1], Limiter::Concurrency { key: r#"["quotes"]"#.into(), max: 1 });
    /// # Ok::<(), jobs_core::Error>(())
    /// ```
    pub fn declared(
        flow: &FlowControl,
        handler: &str,
        args: &Value,
    ) -> Result<Option<Self>, Error> {
        let mut limiters = Vec::new();
        for r in flow.rate_limits {
            let key = crate::job::unique::bounded_key(handler, r.key(handler, args)?);
            limiters.push(Limiter::Rate { key, max: r.max, per: r.per });
        }
        if let Some(c) = flow.concurrency {
            let key = crate::job::unique::bounded_key(handler, c.key(handler, args)?);
            limiters.push(Limiter::Concurrency { key, max: c.max });
        }
        Ok((!limiters.is_empty()).then_some(JobLimits { limiters }))
    }

    /// Checks every limiter (key 1 to 512 bytes, bounds in range), at most
    /// [`MAX_RATE_LIMITS`] rate limits and one concurrency limit, and no limiter twice.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidJob { reason });
        let rates = self.limiters.iter().filter(|l| matches!(l, Limiter::Rate { .. })).count();
        if rates > MAX_RATE_LIMITS {
            return invalid(format!(
                "a job takes at most {MAX_RATE_LIMITS} rate limits, found {rates}"
            ));
        }
        if self.limiters.len() - rates > 1 {
            return invalid("a job takes at most one concurrency limit".into());
        }
        let mut names = std::collections::HashSet::new();
        for l in &self.limiters {
            l.validate()?;
            if !names.insert(l.name()) {
                return invalid(format!("the limiter {} is given twice", l.name()));
            }
        }
        Ok(())
    }

    /// Its concurrency limit, if it has one.
    pub fn concurrency(&self) -> Option<(&str, u32)> {
        self.limiters.iter().find_map(|l| match l {
            Limiter::Concurrency { key, max } => Some((key.as_str(), *max)),
            Limiter::Rate { .. } => None,
        })
    }

    /// Whether it has any rate limit.
    pub fn has_rate(&self) -> bool {
        self.limiters.iter().any(|l| matches!(l, Limiter::Rate { .. }))
    }
}

/// A limiter in use, as a backend shows it (`GET /api/v1/jobs/limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct LimiterUsage {
    /// Its name ([`Limiter::name`]).
    pub name: String,
    /// `rate` or `concurrency`.
    pub kind: LimiterKind,
    /// The key it counts jobs by: the handler and the values of the `by` fields, as JSON.
    pub key: String,
    /// Starts per period (rate) or jobs at once (concurrency) it allows.
    pub max: u32,
    /// A rate limit's period, milliseconds (`null` for a concurrency limit).
    pub per_ms: Option<u64>,
    /// Starts in the current window (rate), or jobs holding a slot (concurrency).
    pub in_use: u64,
    /// Jobs parked on it: ready, but waiting for one of its slots.
    pub parked: u64,
    /// When its next slot opens (rate; `null` while one is free or for a concurrency
    /// limit, whose slot opens when a job of its key ends).
    pub next_slot_at: Option<DateTime<Utc>>,
    /// Until when a handler's [`rate_limited`](crate::JobContext::rate_limited) holds it
    /// closed (`null`: not held).
    pub blocked_until: Option<DateTime<Utc>>,
}

/// The kind of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LimiterKind {
    /// A rate limit (`rate_limit(...)`).
    Rate,
    /// A concurrency limit (`concurrency(...)`).
    Concurrency,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(key: &str, max: u32, ms: u64) -> Limiter {
        Limiter::Rate { key: key.into(), max, per: Duration::from_millis(ms) }
    }

    #[test]
    fn bad_limits_are_clear_errors() {
        let bad = |limiters: Vec<Limiter>| {
            JobLimits { limiters }.validate().expect_err("refused").to_string()
        };
        assert!(bad(vec![rate("k", 0, 1000)]).contains("1 to 100000 starts"));
        assert!(bad(vec![rate("k", 1, 0)]).contains("between 1 ms and 1 day"));
        assert!(bad(vec![rate("", 1, 10)]).contains("limiter key"));
        assert!(bad(vec![rate("k", 1, 10), rate("k", 1, 10)]).contains("given twice"));
        let c = |k: &str| Limiter::Concurrency { key: k.into(), max: 1 };
        assert!(bad(vec![c("a"), c("b")]).contains("one concurrency limit"));
        assert!(
            bad(vec![Limiter::Concurrency { key: "a".into(), max: 0 }])
                .contains("1 to 100000 jobs")
        );
        let many = (0..9).map(|i| rate("k", 1, 10 + i)).collect();
        assert!(bad(many).contains("at most 8 rate limits"));
        JobLimits { limiters: vec![rate("k", 1, 10), rate("k", 2, 10), c("k")] }
            .validate()
            .expect("valid");
    }

    #[test]
    fn names_tell_bounds_and_kinds_apart() {
        assert_eq!(rate("k", 10, 1000).name(), "r:10/1000:k");
        assert_ne!(rate("k", 10, 1000).name(), rate("k", 500, 60_000).name());
        assert_eq!(Limiter::Concurrency { key: "k".into(), max: 3 }.name(), "c:k");
    }
}
