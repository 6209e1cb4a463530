//! A schedule as the backends store it: the definition ([`ScheduleEntry`]) with its hash,
//! its state ([`ScheduleState`]), and the records of the exactly-once fire step
//! ([`TickClaim`], [`ScheduleFire`], [`FireOutcome`]). The contract of the backend calls
//! that take them is in [`backend`](crate::backend).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::{JobId, JobPriority, NewJob, RunAt};
use crate::schedule::{MisfirePolicy, ScheduleType};

/// A schedule's definition as the backends store it: what to enqueue, and when. Built by
/// the [`Scheduler`](crate::Scheduler) from a [`ScheduleSpec`](crate::ScheduleSpec), with
/// the handler's defaults resolved, so that any process can fire it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    /// The schedule's name (unique per namespace).
    pub name: String,
    /// The handler its jobs run.
    pub job_name: String,
    /// When it fires.
    pub schedule: ScheduleType,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// The priority of its jobs.
    pub priority: JobPriority,
    /// The retries its jobs may use.
    pub max_retries: u32,
    /// The timeout of one attempt of its jobs, in milliseconds.
    pub timeout_ms: u64,
    /// What to do about ticks missed while no scheduler ran.
    pub misfire: MisfirePolicy,
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
    /// The job this schedule enqueues, under `id` (ready at once).
    pub(crate) fn job(&self, id: JobId) -> NewJob {
        NewJob {
            id,
            name: self.job_name.clone(),
            args: self.args.clone(),
            priority: self.priority,
            max_retries: self.max_retries,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            run_at: RunAt::Now,
            user_id: None,
            retry_base: None,
            retry_cap: None,
        }
    }

    /// 64-bit FNV-1a of the entry's JSON, in hex: stable across processes, builds and Rust
    /// versions (unlike `DefaultHasher`), which is what comparing definitions stored by
    /// other processes needs. `serde_json` writes struct fields in declaration order and
    /// object keys sorted, so equal definitions give equal text.
    pub(crate) fn definition_hash(&self) -> Result<String> {
        let bytes = serde_json::to_vec(self)?;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(format!("{h:016x}"))
    }
}
