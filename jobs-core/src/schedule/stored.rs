//! A schedule as the backends store it: the definition ([`ScheduleEntry`]) with its hash,
//! its state ([`ScheduleState`]), and the records of the exactly-once fire step
//! ([`TickClaim`], [`ScheduleFire`], [`FireOutcome`]). The contract of the backend calls
//! that take them is in [`backend`](crate::backend).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::error::{Error, Result};
use crate::job::{JobId, JobPriority, NewJob, RunAt};
use crate::options::{JobDefaults, JobOptions};
use crate::schedule::{MisfirePolicy, ScheduleType};
use crate::time::duration_ms;

/// A schedule's definition as the backends store it: what to enqueue, and when. Built by
/// the [`Scheduler`](crate::Scheduler) from a [`ScheduleSpec`](crate::ScheduleSpec).
///
/// It holds only what the spec and the handler's attribute set, never a process's
/// defaults: the retries, timeout and priority of a tick's job are resolved when the job is
/// enqueued, by the process that fires it (the rule of [`options`](crate::options)), so two
/// processes with different defaults store the same definition and do not rewrite each
/// other's (which would move the next run at every start).
///
/// Records written by builds that stored the resolved `max_retries`/`timeout_ms` still
/// load: those values become the [`handler_options`](Self::handler_options), and their
/// priority the spec's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "EntryIn")]
pub struct ScheduleEntry {
    /// The schedule's name (unique per namespace).
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleType,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// The priority the spec sets (`None`: the handler's, else the firing process's default).
    pub priority: Option<JobPriority>,
    /// The options of the handler's attribute as the process that stored the definition
    /// knew them (none if it did not have the handler). Only a process that does not have
    /// the handler uses them; they are not part of the definition hash,
    /// since whether a process links the handler is a property of the process.
    #[serde(default)]
    pub handler_options: StoredJobOptions,
    /// What to do about ticks missed while no scheduler ran.
    pub misfire: MisfirePolicy,
}

/// Options stored with a schedule (a [`JobOptions`] with the timeout in milliseconds);
/// `None` leaves an option to the level below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredJobOptions {
    /// Retries a job may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// How long one attempt may run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<JobPriority>,
}

impl From<JobOptions> for StoredJobOptions {
    fn from(o: JobOptions) -> Self {
        StoredJobOptions {
            max_retries: o.max_retries,
            timeout_ms: o.timeout.map(duration_ms),
            priority: o.priority,
        }
    }
}

impl From<StoredJobOptions> for JobOptions {
    fn from(o: StoredJobOptions) -> Self {
        JobOptions {
            max_retries: o.max_retries,
            timeout: o.timeout_ms.map(Duration::from_millis),
            priority: o.priority,
            // Not stored: a process without the handler gives its jobs the worker's backoff.
            retry_base: None,
            retry_cap: None,
        }
    }
}

/// What a stored definition may hold: today's fields, and the resolved `max_retries` and
/// `timeout_ms` that earlier builds wrote.
#[derive(Deserialize)]
struct EntryIn {
    name: String,
    job_name: String,
    schedule: ScheduleType,
    args: serde_json::Value,
    #[serde(default)]
    priority: Option<JobPriority>,
    #[serde(default)]
    handler_options: Option<StoredJobOptions>,
    #[serde(default)]
    max_retries: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    misfire: MisfirePolicy,
}

impl From<EntryIn> for ScheduleEntry {
    fn from(e: EntryIn) -> Self {
        // An earlier build's record: what it resolved is the best guess of the handler's
        // options (used only where the handler is not linked).
        let handler_options = e.handler_options.unwrap_or(StoredJobOptions {
            max_retries: e.max_retries,
            timeout_ms: e.timeout_ms,
            priority: None,
        });
        ScheduleEntry {
            name: e.name,
            job_name: e.job_name,
            schedule: e.schedule,
            args: e.args,
            priority: e.priority,
            handler_options,
            misfire: e.misfire,
        }
    }
}

/// A schedule's state: kept by the backend, changed by fires and by enable/disable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Whether it fires.
    pub enabled: bool,
    /// Its next tick (`None`: disabled, or a one-time schedule that has fired).
    pub next_run: Option<DateTime<Utc>>,
    /// When it last enqueued a job (tick or run-now).
    pub last_run: Option<DateTime<Utc>>,
    /// How many jobs it has enqueued.
    pub run_count: u64,
    /// The last job it enqueued.
    pub last_job_id: Option<JobId>,
    /// The definition's generation: 0 when created, one more at each change of the
    /// definition or of the flag through an upsert, and at each enable. Part of the ids of
    /// its ticks' jobs, so that a schedule edited or re-enabled after it fired (a one-time
    /// schedule whose instant is its next run again) fires again.
    #[serde(default)]
    pub generation: u64,
}

/// A stored schedule: definition, definition hash, state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchedule {
    /// The definition.
    pub entry: ScheduleEntry,
    /// The hash of the definition (see [`Backend::schedule_upsert`](crate::backend::Backend::schedule_upsert)).
    pub hash: String,
    /// The state.
    pub state: ScheduleState,
}

/// What [`Backend::schedule_upsert`](crate::backend::Backend::schedule_upsert) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsertOutcome {
    /// A new schedule.
    Created,
    /// The definition or the enabled flag changed.
    Updated,
    /// Same definition and flag: nothing changed (the next run is kept).
    Kept,
}

/// Schedules due now, from [`Backend::schedule_due`](crate::backend::Backend::schedule_due).
#[derive(Debug, Clone, PartialEq)]
pub struct DueSchedules {
    /// The backend's clock when it answered.
    pub now: DateTime<Utc>,
    /// Due schedules with the tick each is due for, earliest first.
    pub due: Vec<(DateTime<Utc>, StoredSchedule)>,
    /// The earliest next run of any schedule (due or not), `None` if none has one.
    pub next_run: Option<DateTime<Utc>>,
}

/// The claim of one tick, for [`Backend::schedule_fire`](crate::backend::Backend::schedule_fire): a compare-and-set of the
/// schedule's next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickClaim {
    /// The tick being fired: must be the schedule's current next run.
    pub expected: DateTime<Utc>,
    /// The next run after it (`None`: the schedule is done).
    pub next: Option<DateTime<Utc>>,
    /// The definition hash the caller computed `next` from: must be the stored one.
    pub hash: String,
    /// The generation the caller read with the tick (and derived the job id from): must be
    /// the stored one.
    pub generation: u64,
}

/// One job to enqueue for a schedule, for [`Backend::schedule_fire`](crate::backend::Backend::schedule_fire).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    /// The schedule.
    pub name: String,
    /// The tick this job is for (`None`: run now, outside the schedule).
    pub claim: Option<TickClaim>,
    /// The job (run at once; `run_at` is ignored).
    pub job: NewJob,
}

impl ScheduleFire {
    /// Checks what neither backend can repair: a claim's next run must be later than its
    /// tick (else the schedule could fire the same tick twice).
    pub(crate) fn check(&self) -> Result<()> {
        match &self.claim {
            Some(c) if c.next.is_some_and(|n| n <= c.expected) => Err(Error::InvalidSchedule {
                reason: format!(
                    "schedule `{}`: the run after tick {} must be later than it",
                    self.name, c.expected
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// What [`Backend::schedule_fire`](crate::backend::Backend::schedule_fire) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// The tick was claimed (or run-now accepted) and the job written.
    Fired,
    /// The tick was claimed but its job existed already; nothing was written.
    Duplicate,
    /// Someone else fired this tick, or the schedule changed; `current` is its next run now.
    Stale {
        /// The schedule's next run as stored (`None`: it has none).
        current: Option<DateTime<Utc>>,
    },
    /// The tick is not due yet on the backend's clock.
    NotDue {
        /// The backend's now.
        now: DateTime<Utc>,
    },
    /// No such schedule.
    NotFound,
}

/// A definition hash must be 1-64 hex digits (the Redis scripts read it with `%x+`; the
/// memory backend refuses the same ones, so that the two agree).
pub(crate) fn check_schedule_hash(hash: &str) -> Result<()> {
    if hash.is_empty() || hash.len() > 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidSchedule {
            reason: format!("definition hash must be 1-64 hex digits, found `{hash}`"),
        });
    }
    Ok(())
}

impl ScheduleEntry {
    /// The job this schedule enqueues, under `id` (ready at once), with the options `o`
    /// resolved by the process that enqueues it.
    pub(crate) fn job(&self, id: JobId, o: JobDefaults) -> NewJob {
        NewJob {
            id,
            name: self.job_name.clone(),
            args: self.args.clone(),
            priority: o.priority,
            max_retries: o.max_retries,
            timeout: o.timeout,
            run_at: RunAt::Now,
            user_id: None,
            retry_base: o.retry_base,
            retry_cap: o.retry_cap,
            drawn_id: None,
            // A tick is made once by its id (the schedule, the generation and the instant);
            // it takes no uniqueness lock (`sched_fire.lua` writes none).
            unique: None,
            // The scheduler fires ticks from its own loop, in no span: a tick starts a trace.
            trace: None,
            // The scheduler sets its handler's queue (it knows the registry).
            queue: None,
            // A tick is held to no rate or concurrency limit (`sched_fire.lua` writes none):
            // a schedule already bounds how often it fires.
            limits: None,
        }
    }

    /// 64-bit FNV-1a of the definition's JSON, in hex: stable across processes, builds and
    /// Rust versions (unlike `DefaultHasher`), which is what comparing definitions stored by
    /// other processes needs. `serde_json` writes struct fields in declaration order and
    /// object keys sorted, so equal definitions give equal text. The handler's options are
    /// left out (see [`handler_options`](Self::handler_options)).
    pub(crate) fn definition_hash(&self) -> Result<String> {
        #[derive(Serialize)]
        struct Definition<'a> {
            name: &'a str,
            job_name: &'a str,
            schedule: &'a ScheduleType,
            args: &'a serde_json::Value,
            priority: Option<JobPriority>,
            misfire: MisfirePolicy,
        }
        let bytes = serde_json::to_vec(&Definition {
            name: &self.name,
            job_name: &self.job_name,
            schedule: &self.schedule,
            args: &self.args,
            priority: self.priority,
            misfire: self.misfire,
        })?;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(format!("{h:016x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ScheduleEntry {
        ScheduleEntry {
            name: "s".into(),
            job_name: "j".into(),
            schedule: ScheduleType::Interval { seconds: 60 },
            args: serde_json::json!({"a": 1}),
            priority: None,
            handler_options: StoredJobOptions::default(),
            misfire: MisfirePolicy::Coalesce,
        }
    }

    #[test]
    fn the_hash_leaves_out_the_handler_options() -> Result<()> {
        let e = entry();
        let with_handler = ScheduleEntry {
            handler_options: StoredJobOptions { max_retries: Some(9), ..Default::default() },
            ..e.clone()
        };
        assert_eq!(e.definition_hash()?, with_handler.definition_hash()?);
        let high = ScheduleEntry { priority: Some(JobPriority::High), ..e.clone() };
        assert_ne!(e.definition_hash()?, high.definition_hash()?);
        Ok(())
    }

    #[test]
    fn an_earlier_builds_record_loads() -> Result<()> {
        // As the build that stored resolved options wrote it.
        let old = r#"{"name":"s","job_name":"j","schedule":{"type":"interval","seconds":60},
            "args":{"a":1},"priority":"high","max_retries":3,"timeout_ms":300000,
            "misfire":"coalesce"}"#;
        let e: ScheduleEntry = serde_json::from_str(old)?;
        assert_eq!(e.priority, Some(JobPriority::High));
        assert_eq!(
            e.handler_options,
            StoredJobOptions { max_retries: Some(3), timeout_ms: Some(300_000), priority: None }
        );
        // Today's records round-trip.
        let now = entry();
        let back: ScheduleEntry = serde_json::from_str(&serde_json::to_string(&now)?)?;
        assert_eq!(back, now);
        Ok(())
    }
}
