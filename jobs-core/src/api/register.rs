//! The body of `POST /api/v1/jobs/scheduled/register` in its two forms: the nested one and
//! the flat one (the fields `GET /api/v1/jobs/scheduled` answers in).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{JobId, JobPriority};
use crate::schedule::{MisfirePolicy, ScheduleSpec, ScheduleType};

/// When a schedule fires, as a request gives it.
///
/// Not [`ScheduleType`] itself: that is also the stored form, and its serde derive lets
/// unknown keys through, where a request is closed (an unknown key is a 400, and the
/// document says so with `additionalProperties: false` on each variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduleView {
    /// Every `seconds` seconds.
    Interval {
        /// The period.
        #[schema(minimum = 1, maximum = 315_360_000)]
        #[serde(deserialize_with = "whole")]
        seconds: u64,
    },
    /// On a 5-field cron expression (`minute hour day-of-month month day-of-week`).
    Cron {
        /// The expression, e.g. `0 8 * * *`.
        #[schema(min_length = 1)]
        expression: String,
        /// An IANA time zone, e.g. `Europe/Paris` (default UTC).
        #[serde(default)]
        timezone: Option<String>,
    },
    /// Once, at a time (one already past fires at once).
    Once {
        /// When (RFC 3339; within ten years of now, before or after, as for enqueue).
        at: DateTime<Utc>,
    },
}

impl From<ScheduleView> for ScheduleType {
    fn from(v: ScheduleView) -> Self {
        match v {
            ScheduleView::Interval { seconds } => ScheduleType::Interval { seconds },
            ScheduleView::Cron { expression, timezone } => {
                ScheduleType::Cron { expression, timezone }
            }
            ScheduleView::Once { at } => ScheduleType::Once { at },
        }
    }
}

/// A schedule to register (or to replace the one of that name), in either of two forms:
/// the nested one (`"schedule": {"type": "interval", "seconds": 300}`), or the flat one of
/// `"schedule_type": "interval", "interval_seconds": 300`, which is the
/// form `GET /api/v1/jobs/scheduled` answers in, so that a listed schedule can be posted
/// back unchanged.
///
/// A body with a `schedule_type` key is read as the flat form, any other as the nested one;
/// each form is closed (an unknown key is a 400 naming it).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RegisterRequest {
    /// `schedule: {"type": …}`.
    Nested(NestedRegisterRequest),
    /// The flat fields.
    Flat(FlatRegisterRequest),
}

impl<'de> Deserialize<'de> for RegisterRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(d)?;
        let keys = value.as_object();
        let has = |k: &str| keys.is_some_and(|m| m.contains_key(k));
        if has("schedule_type") {
            let flat: FlatRegisterRequest = decode_value(value).map_err(D::Error::custom)?;
            flat.schedule().map_err(D::Error::custom)?;
            Ok(RegisterRequest::Flat(flat))
        } else if keys.is_some() && !has("schedule") {
            Err(D::Error::custom(
                "missing field `schedule` (or `schedule_type` and its fields, the flat form)",
            ))
        } else {
            decode_value(value).map(RegisterRequest::Nested).map_err(D::Error::custom)
        }
    }
}

/// Decodes one form of a request from its JSON, naming the offending field on failure.
fn decode_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("field `{path}`: {}", e.into_inner())
        }
    })
}

impl RegisterRequest {
    /// The schedule the request describes (its priority `None` when none is given: the
    /// scheduler resolves it by the one option rule, handler then default).
    pub fn into_spec(self) -> Result<ScheduleSpec, String> {
        let (name, job_name, schedule, args, priority, enabled, misfire) = match self {
            RegisterRequest::Nested(r) => {
                (r.name, r.job_name, r.schedule.into(), r.args, r.priority, r.enabled, r.misfire)
            }
            RegisterRequest::Flat(r) => {
                let schedule = r.schedule()?;
                (r.name, r.job_name, schedule, r.args, r.priority, r.enabled, r.misfire_policy)
            }
        };
        let mut spec = ScheduleSpec::new(name, job_name, schedule)
            .args(args.unwrap_or_else(|| serde_json::json!({})))
            .enabled(enabled.unwrap_or(true))
            .misfire(misfire.unwrap_or_default());
        spec.priority = priority;
        Ok(spec)
    }
}

/// A schedule to register, with its trigger nested under `schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "portfolio_sync", "job_name": "sync_all_portfolios",
    "schedule": {"type": "interval", "seconds": 300}, "priority": "normal"}))]
pub struct NestedRegisterRequest {
    /// The schedule's name (unique in the deployment; at most 200 bytes, no control
    /// characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub name: String,
    /// The handler its jobs run.
    #[schema(min_length = 1, max_length = 200)]
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleView,
    /// The arguments of its jobs (default `{}`); they must fit the handler (else 422).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// The priority of its jobs (default: the handler's, else normal).
    #[serde(default)]
    pub priority: Option<JobPriority>,
    /// Whether it fires (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// What happens to missed ticks (default `coalesce`).
    #[serde(default)]
    pub misfire: Option<MisfirePolicy>,
}

/// The `schedule_type` of a flat register body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlatScheduleType {
    /// Every `interval_seconds`.
    Interval,
    /// On `cron_expression` (in `timezone`).
    Cron,
    /// Once, at `run_at`.
    Once,
}

impl FlatScheduleType {
    fn as_str(self) -> &'static str {
        match self {
            FlatScheduleType::Interval => "interval",
            FlatScheduleType::Cron => "cron",
            FlatScheduleType::Once => "once",
        }
    }
}

/// A schedule to register in the flat form: the fields of a schedule as
/// `GET /api/v1/jobs/scheduled` lists it, so that a listed schedule can be posted back.
///
/// `schedule_type` says which of `interval_seconds`, `cron_expression` (with `timezone`)
/// and `run_at` is required; the others must be absent or null. `enabled`,
/// `misfire_policy`, `priority` and `args` are applied; `last_run`, `next_run`, `run_count`
/// and `last_job_id` are what the server reports, accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "portfolio_sync", "job_name": "sync_all_portfolios",
    "schedule_type": "interval", "interval_seconds": 300, "priority": "normal"}))]
pub struct FlatRegisterRequest {
    /// The schedule's name (unique in the deployment; at most 200 bytes, no control
    /// characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub name: String,
    /// The handler its jobs run.
    #[schema(min_length = 1, max_length = 200)]
    pub job_name: String,
    /// `interval`, `cron` or `once`.
    #[schema(value_type = String)]
    pub schedule_type: FlatScheduleType,
    /// The period of an `interval` schedule, seconds.
    #[serde(default, deserialize_with = "whole_or_null")]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub interval_seconds: Option<u64>,
    /// The 5-field expression of a `cron` schedule, e.g. `0 8 * * *`.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub cron_expression: Option<String>,
    /// An IANA time zone for a `cron` schedule, e.g. `Europe/Paris` (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The instant of a `once` schedule (RFC 3339).
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// The arguments of its jobs (default `{}`); they must fit the handler (else 422).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// The priority of its jobs (default: the handler's, else normal).
    #[serde(default)]
    pub priority: Option<JobPriority>,
    /// Whether it fires (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// What happens to missed ticks (default `coalesce`).
    #[serde(default)]
    pub misfire_policy: Option<MisfirePolicy>,
    /// Reported by the server; ignored.
    #[serde(default)]
    pub last_run: Option<DateTime<Utc>>,
    /// Reported by the server; ignored.
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
    /// Reported by the server; ignored.
    #[serde(default, deserialize_with = "whole_or_null")]
    #[schema(minimum = 0)]
    pub run_count: Option<u64>,
    /// Reported by the server; ignored.
    #[serde(default)]
    pub last_job_id: Option<JobId>,
}

impl FlatRegisterRequest {
    /// The trigger the fields describe, or the first field that does not fit
    /// `schedule_type` (missing, or given for another type).
    pub fn schedule(&self) -> Result<ScheduleType, String> {
        let kind = self.schedule_type.as_str();
        let required =
            |field: &str| format!("field `{field}`: required when `schedule_type` is `{kind}`");
        let given = [
            ("interval_seconds", self.interval_seconds.is_some()),
            ("cron_expression", self.cron_expression.is_some()),
            ("timezone", self.timezone.is_some()),
            ("run_at", self.run_at.is_some()),
        ];
        let schedule = match self.schedule_type {
            FlatScheduleType::Interval => ScheduleType::Interval {
                seconds: self.interval_seconds.ok_or_else(|| required("interval_seconds"))?,
            },
            FlatScheduleType::Cron => ScheduleType::Cron {
                expression: self
                    .cron_expression
                    .clone()
                    .ok_or_else(|| required("cron_expression"))?,
                timezone: self.timezone.clone(),
            },
            FlatScheduleType::Once => {
                ScheduleType::Once { at: self.run_at.ok_or_else(|| required("run_at"))? }
            }
        };
        let allowed: &[&str] = match self.schedule_type {
            FlatScheduleType::Interval => &["interval_seconds"],
            FlatScheduleType::Cron => &["cron_expression", "timezone"],
            FlatScheduleType::Once => &["run_at"],
        };
        if let Some((field, _)) = given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
            return Err(format!(
                "field `{field}`: must be absent or null when `schedule_type` is `{kind}`"
            ));
        }
        Ok(schedule)
    }
}

/// A whole number of `u64`, written as an integer (`300`) or as a number with no fraction
/// (`300.0`): JSON Schema counts both as an `integer`, so the document's `integer` fields
/// accept both, where serde's `u64` refuses the second.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole)
}

/// [`whole`], or `null`.
fn whole_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(WholeOrNull)
}

struct Whole;

impl serde::de::Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a non-negative whole number")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
        // Below 2^64, so the cast is exact for whole values.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }
}

struct WholeOrNull;

impl<'de> serde::de::Visitor<'de> for WholeOrNull {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a non-negative whole number or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        whole(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let flat = |extra: &str| {
            let body =
                format!(r#"{{"name": "n", "job_name": "j", "schedule_type": "interval"{extra}}}"#);
            serde_json::from_str::<RegisterRequest>(&body).map_err(|e| e.to_string())
        };
        for (extra, want) in [
            (r#", "interval_seconds": 300"#, Some(300)),
            (r#", "interval_seconds": 300.0, "run_count": 0.0"#, Some(300)),
            (r#", "interval_seconds": 3e2"#, Some(300)),
        ] {
            match flat(extra) {
                Ok(RegisterRequest::Flat(f)) => assert_eq!(f.interval_seconds, want, "{extra}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
        for extra in [
            r#", "interval_seconds": 300.5"#,
            r#", "interval_seconds": -1"#,
            r#", "interval_seconds": 1e30"#,
            r#", "interval_seconds": 5, "run_count": 0.5"#,
            r#", "interval_seconds": "5""#,
        ] {
            assert!(flat(extra).is_err(), "{extra} accepted");
        }
        let nested =
            r#"{"name": "n", "job_name": "j", "schedule": {"type": "interval", "seconds": 60.0}}"#;
        let r = serde_json::from_str::<RegisterRequest>(nested);
        assert!(matches!(r, Ok(RegisterRequest::Nested(_))), "{r:?}");
    }
}
