//! What a schedule is: its definition ([`ScheduleSpec`], [`ScheduleType`], [`MisfirePolicy`])
//! and the view of it the API and the statistics show ([`ScheduleInfo`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobPriority};
use crate::schedule::StoredSchedule;

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ScheduleType {
    /// Every `seconds`, at a fixed rate counted from the first run (which is one interval
    /// after the schedule is registered or enabled).
    Interval {
        /// The period, at least 1.
        seconds: u64,
    },
    /// On a 5-field cron expression (see [`CronExpr`](crate::CronExpr)).
    Cron {
        /// `minute hour day-of-month month day-of-week`.
        expression: String,
        /// IANA time zone the expression is read in (`None`: UTC).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Once, at `at` (an instant already past fires at once).
    Once {
        /// When.
        at: DateTime<Utc>,
    },
}

impl ScheduleType {
    /// `"interval"`, `"cron"` or `"once"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScheduleType::Interval { .. } => "interval",
            ScheduleType::Cron { .. } => "cron",
            ScheduleType::Once { .. } => "once",
        }
    }
}

/// What happens to ticks that were due while no scheduler was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub enum MisfirePolicy {
    /// Fire once for all the missed ticks, then resume on schedule: the next run is the
    /// first occurrence after now. The default: a scheduler that was down for an hour does
    /// not flood the queue with sixty copies of a one-minute job.
    #[default]
    Coalesce,
    /// Fire every missed tick, one after the other, then resume.
    CatchUp,
}

/// A schedule to register: name, job, when, arguments, priority.
///
/// ```
/// use jobs_core::{JobPriority, MisfirePolicy, ScheduleSpec};
///
/// let spec = ScheduleSpec::cron("market_open", "fetch_market_data", "30 9 * * 1-5")
///     .timezone("America/New_York")
///     .args(serde_json::json!({"symbols": ["AAPL"]}))
///     .priority(JobPriority::High)
///     .misfire(MisfirePolicy::CatchUp);
/// assert!(spec.enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// The schedule's name, unique in the deployment (1-200 bytes, no control characters).
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleType,
    /// The arguments of its jobs (default `{}`).
    pub args: serde_json::Value,
    /// The priority of its jobs (`None`: the handler's, else the service default; see
    /// [`options`](crate::options)).
    #[serde(default)]
    pub priority: Option<JobPriority>,
    /// Whether it fires (default true).
    pub enabled: bool,
    /// What happens to ticks missed while no scheduler ran (default coalesce).
    #[serde(default)]
    pub misfire: MisfirePolicy,
}

impl ScheduleSpec {
    /// A schedule with default args, priority, flag and misfire policy.
    pub fn new(
        name: impl Into<String>,
        job_name: impl Into<String>,
        schedule: ScheduleType,
    ) -> Self {
        ScheduleSpec {
            name: name.into(),
            job_name: job_name.into(),
            schedule,
            args: serde_json::Value::Object(serde_json::Map::new()),
            priority: None,
            enabled: true,
            misfire: MisfirePolicy::Coalesce,
        }
    }

    /// Every `seconds`.
    pub fn interval(name: impl Into<String>, job_name: impl Into<String>, seconds: u64) -> Self {
        Self::new(name, job_name, ScheduleType::Interval { seconds })
    }

    /// On a cron expression, in UTC (see [`timezone`](Self::timezone)).
    pub fn cron(
        name: impl Into<String>,
        job_name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        Self::new(
            name,
            job_name,
            ScheduleType::Cron { expression: expression.into(), timezone: None },
        )
    }

    /// Once, at `at`.
    pub fn once(name: impl Into<String>, job_name: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self::new(name, job_name, ScheduleType::Once { at })
    }

    /// Reads a cron schedule's expression in this IANA zone (ignored by other types).
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        if let ScheduleType::Cron { timezone, .. } = &mut self.schedule {
            *timezone = Some(tz.into());
        }
        self
    }

    /// Sets the jobs' arguments.
    pub fn args(mut self, args: serde_json::Value) -> Self {
        self.args = args;
        self
    }

    /// Sets the jobs' priority.
    pub fn priority(mut self, p: JobPriority) -> Self {
        self.priority = Some(p);
        self
    }

    /// Registers the schedule enabled or disabled.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Sets the misfire policy.
    pub fn misfire(mut self, m: MisfirePolicy) -> Self {
        self.misfire = m;
        self
    }
}

/// A schedule as the API and the stats show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// `"interval"`, `"cron"` or `"once"`.
    pub schedule_type: String,
    /// The period of an interval schedule.
    pub interval_seconds: Option<u64>,
    /// The expression of a cron schedule.
    pub cron_expression: Option<String>,
    /// The time zone of a cron schedule (`None`: UTC).
    pub timezone: Option<String>,
    /// The instant of a one-time schedule.
    pub run_at: Option<DateTime<Utc>>,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// The priority of its jobs: the spec's, else the handler's, else the default (the
    /// [`Scheduler`](crate::Scheduler) resolves it with its process's handlers and defaults,
    /// as when it fires; the conversion from a [`StoredSchedule`] uses the stored handler
    /// options and [`JobPriority::default`]).
    pub priority: JobPriority,
    /// Whether it fires.
    pub enabled: bool,
    /// When it last enqueued a job.
    pub last_run: Option<DateTime<Utc>>,
    /// Its next tick (`None` when disabled, or for a one-time schedule that has fired).
    pub next_run: Option<DateTime<Utc>>,
    /// How many jobs it has enqueued (ticks and run-now).
    pub run_count: u64,
    /// The last job it enqueued.
    pub last_job_id: Option<JobId>,
    /// What happens to missed ticks.
    pub misfire_policy: MisfirePolicy,
}

impl From<StoredSchedule> for ScheduleInfo {
    fn from(s: StoredSchedule) -> Self {
        let e = s.entry;
        let (interval_seconds, cron_expression, timezone, run_at) = match &e.schedule {
            ScheduleType::Interval { seconds } => (Some(*seconds), None, None, None),
            ScheduleType::Cron { expression, timezone } => {
                (None, Some(expression.clone()), timezone.clone(), None)
            }
            ScheduleType::Once { at } => (None, None, None, Some(*at)),
        };
        ScheduleInfo {
            schedule_type: e.schedule.as_str().to_owned(),
            name: e.name,
            job_name: e.job_name,
            interval_seconds,
            cron_expression,
            timezone,
            run_at,
            args: e.args,
            priority: e.priority.or(e.handler_options.priority).unwrap_or_default(),
            enabled: s.state.enabled,
            last_run: s.state.last_run,
            next_run: s.state.next_run,
            run_count: s.state.run_count,
            last_job_id: s.state.last_job_id,
            misfire_policy: e.misfire,
        }
    }
}
