//! The schedule model, below the backends that store it and the scheduler that fires it:
//! what a schedule is ([`ScheduleSpec`], [`ScheduleType`], [`MisfirePolicy`]), how the
//! backends store it ([`ScheduleEntry`], [`ScheduleState`], the fire records), the id of
//! a tick's job, and the pure maths of when it fires next (`cron.rs`: [`CronExpr`] and the
//! trigger arithmetic).
//!
//! Nothing here does I/O or reads a clock: every function takes the time it works from.

pub(crate) mod cron;
mod spec;
mod stored;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::job::JobId;
use crate::time::ms_to_time;

pub(crate) use cron::Trigger;
pub use cron::{CronExpr, MAX_INTERVAL_SECS};
pub use spec::{MisfirePolicy, ScheduleInfo, ScheduleSpec, ScheduleType};
pub(crate) use stored::check_schedule_hash;
pub use stored::{
    DueSchedules, FireOutcome, ScheduleEntry, ScheduleFire, ScheduleState, StoredJobOptions,
    StoredSchedule, TickClaim, UpsertOutcome,
};

/// The id of a tick's job: the same in every process, so the job exists at most once per
/// tick of one generation of the definition. Generation 0 (a schedule never edited nor
/// re-enabled) keeps the id earlier builds gave, `cron:<name>:<tick ms>`, so that a tick
/// they fired is not fired again after an upgrade; later generations are
/// `cron:<name>:<tick ms>:g<generation>` (read from the right, the two forms cannot meet).
pub(crate) fn tick_job_id(name: &str, generation: u64, tick_ms: i64) -> JobId {
    if generation == 0 {
        JobId::derived(&format!("cron:{name}:{tick_ms}"))
    } else {
        JobId::derived(&format!("cron:{name}:{tick_ms}:g{generation}"))
    }
}

/// The first run of a schedule registered or enabled at `now`.
pub(crate) fn first_run(
    name: &str,
    trigger: &Trigger,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    match trigger.first(now.timestamp_millis()) {
        Some(ms) => Ok(ms_to_time(ms).or(Some(now))),
        None => Err(Error::InvalidSchedule {
            reason: format!("schedule `{name}` has no occurrence after {now}"),
        }),
    }
}
