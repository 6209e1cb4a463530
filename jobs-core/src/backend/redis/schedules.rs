//! The schedule calls, each one script (`scripts/sched_*.lua`), and the reading of the
//! schedule record they return.

use ::redis::Value;
use chrono::{DateTime, Utc};

use super::record::MetaOut;
use super::reply::{bytes, int, text};
use super::scripts::SCHED_SCRIPTS;
use super::{RedisBackend, Send};
use crate::backend::{
    DueSchedules, FireOutcome, ScheduleEntry, ScheduleFire, ScheduleState, StoredSchedule,
    UpsertOutcome, check_schedule_hash,
};
use crate::error::{Error, Result};
use crate::time::{duration_ms, ms_to_time};

pub(super) async fn schedule_upsert(
    backend: &RedisBackend,
    entry: &ScheduleEntry,
    hash: &str,
    enabled: Option<bool>,
    first_next: Option<DateTime<Utc>>,
) -> Result<UpsertOutcome> {
    check_schedule_hash(hash)?;
    let def = serde_json::to_string(entry)?;
    let reply: String = backend
        .run_retried(&SCHED_SCRIPTS.upsert, |inv| {
            inv.arg(&entry.name)
                .arg(&def)
                .arg(hash)
                .arg(match enabled {
                    Some(true) => "1",
                    Some(false) => "0",
                    None => "",
                })
                .arg(opt_ms(first_next));
        })
        .await?;
    match reply.as_str() {
        "CREATED" => Ok(UpsertOutcome::Created),
        "UPDATED" => Ok(UpsertOutcome::Updated),
        "KEPT" => Ok(UpsertOutcome::Kept),
        other => Err(Error::Backend(format!("unexpected sched_upsert reply {other:?}"))),
    }
}

pub(super) async fn schedule_set_enabled(
    backend: &RedisBackend,
    name: &str,
    enabled: bool,
    first_next: Option<DateTime<Utc>>,
) -> Result<StoredSchedule> {
    let reply: Vec<Value> = backend
        .run_retried(&SCHED_SCRIPTS.enable, |inv| {
            inv.arg(name).arg(if enabled { "1" } else { "0" }).arg(opt_ms(first_next));
        })
        .await?;
    match reply.as_slice() {
        [] => Err(Error::ScheduleNotFound { name: name.to_owned() }),
        [rec, next] => schedule_from(name, bytes(rec)?, int(next)?),
        _ => Err(Error::Backend("malformed sched_enable reply".into())),
    }
}

pub(super) async fn schedule_remove(backend: &RedisBackend, name: &str) -> Result<bool> {
    let n: i64 = backend
        .run_retried(&SCHED_SCRIPTS.remove, |inv| {
            inv.arg(name);
        })
        .await?;
    Ok(n == 1)
}

pub(super) async fn schedule_get(
    backend: &RedisBackend,
    name: &str,
) -> Result<Option<StoredSchedule>> {
    if name.is_empty() {
        // The script reads '' as "every schedule"; no schedule has an empty name.
        return Ok(None);
    }
    Ok(backend.read_schedules(name).await?.pop())
}

pub(super) async fn schedule_list(backend: &RedisBackend) -> Result<Vec<StoredSchedule>> {
    let mut all = backend.read_schedules("").await?;
    all.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(all)
}

pub(super) async fn schedule_due(backend: &RedisBackend, limit: usize) -> Result<DueSchedules> {
    let reply: Vec<Value> = backend
        .run(&SCHED_SCRIPTS.due, |inv| {
            inv.arg(limit);
        })
        .await?;
    if reply.len() < 2 || !(reply.len() - 2).is_multiple_of(3) {
        return Err(Error::Backend("malformed sched_due reply".into()));
    }
    let now = ms_to_time(int(&reply[0])?)
        .ok_or_else(|| Error::Backend("server time out of range".into()))?;
    let next_run = ms_to_time(int(&reply[1])?);
    let mut due = Vec::with_capacity((reply.len() - 2) / 3);
    for c in reply[2..].chunks_exact(3) {
        let name = text(&c[0])?;
        let tick = int(&c[1])?;
        let at = ms_to_time(tick).ok_or_else(|| Error::Backend("bad tick time".into()))?;
        match schedule_from(name, bytes(&c[2])?, tick) {
            Ok(s) => due.push((at, s)),
            // One unreadable schedule must not stop the others from firing.
            Err(e) => {
                tracing::error!(schedule = %crate::escape::Escaped(name), error = %crate::escape::Escaped(&e), "unreadable schedule skipped")
            }
        }
    }
    Ok(DueSchedules { now, due, next_run })
}

pub(super) async fn schedule_fire(
    backend: &RedisBackend,
    fire: &ScheduleFire,
) -> Result<FireOutcome> {
    fire.check()?;
    let job = &fire.job;
    let meta = serde_json::to_string(&MetaOut::of(job))?;
    let payload = serde_json::to_string(&job.args)?;
    let claim = fire.claim.as_ref();
    let reply: Vec<Value> = backend
        .resend_lost(&SCHED_SCRIPTS.fire, Send { request_key: true, durable: true }, |inv| {
            inv.arg(&fire.name)
                .arg(claim.map(|c| c.expected.timestamp_millis().to_string()).unwrap_or_default())
                .arg(opt_ms(claim.and_then(|c| c.next)))
                .arg(claim.map(|c| c.hash.as_str()).unwrap_or_default())
                .arg(claim.map(|c| c.generation.to_string()).unwrap_or_default())
                .arg(job.id.to_string())
                .arg(job.priority.index())
                .arg(job.max_retries)
                .arg(duration_ms(job.timeout))
                .arg(&meta)
                .arg(&payload)
                .arg(super::keys::script_name(job.queue_name()));
        })
        .await?;
    let time = |v: Option<&Value>| -> Result<DateTime<Utc>> {
        v.map(int)
            .transpose()?
            .and_then(ms_to_time)
            .ok_or_else(|| Error::Backend("sched_fire reply without a time".into()))
    };
    match reply.first().map(text).transpose()? {
        Some("FIRED") => Ok(FireOutcome::Fired),
        Some("DUP") => Ok(FireOutcome::Duplicate),
        Some("STALE") => {
            let cur = reply.get(1).map(int).transpose()?.unwrap_or(-1);
            Ok(FireOutcome::Stale { current: ms_to_time(cur) })
        }
        Some("NOTDUE") => Ok(FireOutcome::NotDue { now: time(reply.get(1))? }),
        Some("NOTFOUND") => Ok(FireOutcome::NotFound),
        other => Err(Error::Backend(format!("unexpected sched_fire reply {other:?}"))),
    }
}

impl RedisBackend {
    /// One schedule (`name`) or all (`""`), read in one script call.
    async fn read_schedules(&self, name: &str) -> Result<Vec<StoredSchedule>> {
        let reply: Vec<Value> = self
            .run(&SCHED_SCRIPTS.read, |inv| {
                inv.arg(name);
            })
            .await?;
        if !reply.len().is_multiple_of(3) {
            return Err(Error::Backend("malformed sched_read reply".into()));
        }
        reply
            .chunks_exact(3)
            .map(|c| schedule_from(text(&c[0])?, bytes(&c[1])?, int(&c[2])?))
            .collect()
    }
}

/// A time as the scripts take it: Unix ms, or `""` for none.
fn opt_ms(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.timestamp_millis().to_string()).unwrap_or_default()
}

/// Reads a schedule record, `<en>:<runs>:<last>:<hash>:<job>:<gen>|<definition JSON>` (see
/// `scripts/sched_lib.lua`; earlier builds wrote no `:<gen>`, generation 0), with its next
/// run (`-1`: none).
fn schedule_from(name: &str, rec: &[u8], next: i64) -> Result<StoredSchedule> {
    let corrupt = |reason: &str| Error::CorruptRecord {
        id: format!("schedule {name}"),
        reason: reason.into(),
    };
    let bar = rec.iter().position(|&b| b == b'|').ok_or_else(|| corrupt("no state separator"))?;
    let head = std::str::from_utf8(&rec[..bar]).map_err(|_| corrupt("state is not text"))?;
    let mut f = head.split(':');
    let (Some(en), Some(runs), Some(last), Some(hash), Some(job), generation, None) =
        (f.next(), f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(corrupt("state has the wrong number of fields"));
    };
    let generation = match generation {
        None => 0,
        Some(g) => g.parse().map_err(|_| corrupt("generation"))?,
    };
    let entry: ScheduleEntry =
        serde_json::from_slice(&rec[bar + 1..]).map_err(|e| corrupt(&e.to_string()))?;
    Ok(StoredSchedule {
        entry,
        hash: hash.to_owned(),
        state: ScheduleState {
            enabled: en == "1",
            next_run: ms_to_time(next),
            last_run: last.parse().ok().and_then(ms_to_time),
            run_count: runs.parse().map_err(|_| corrupt("run count"))?,
            last_job_id: if job.is_empty() { None } else { Some(job.parse()?) },
            generation,
        },
    })
}
