//! Reading and operating the queue: single jobs, listings, the dead-letter queue, counts,
//! purging, workers and throughput.

use std::time::Duration;

use ::redis::Value;

use super::RedisBackend;
use super::reply::{bytes, int, lossy, status_letter, text};
use super::scripts::SCRIPTS;
use super::{keys, record};
use crate::backend::{
    JobPage, LIST_SCAN_LIMIT, ListCursor, ListRequest, ListState, THROUGHPUT_MINUTES,
    ThroughputBucket, WorkerEntry, throughput_buckets,
};
use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobPriority};
use crate::stats::{PendingByPriority, QueueCounters, QueueInfo, QueueStats, UnhandledStats};
use crate::time::{duration_ms, ms_to_time};

/// Most dead-letter records one `clear_dead` script call deletes (the client loops).
const CLEAR_CHUNK: usize = 500;

impl RedisBackend {
    /// Reads jobs by id with their payloads and errors (and results), skipping ids whose
    /// record is gone, and, given `gens` (one per id, from pending list entries), ids whose
    /// record has another generation (the entry is a ghost of an earlier job).
    async fn read_jobs(
        &self,
        ids: &[&str],
        gens: Option<&[&str]>,
        with_result: bool,
    ) -> Result<Vec<Result<Job>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET").arg(self.keys.jobs()).arg(ids);
        pipe.cmd("HMGET").arg(self.keys.errors()).arg(ids);
        pipe.cmd("HMGET").arg(self.keys.progress()).arg(ids);
        if with_result {
            pipe.cmd("HMGET").arg(self.keys.results()).arg(ids);
        }
        let mut conn = self.conn.clone();
        let mut cols: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut conn).await?;
        let results = if with_result { cols.pop() } else { None };
        let progress = cols.pop().unwrap_or_default();
        let (recs, errs) = match (cols.first(), cols.get(1)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::Backend("short HMGET pipeline reply".into())),
        };
        let mut out = Vec::with_capacity(ids.len());
        for (i, sid) in ids.iter().enumerate() {
            let Some(Some(rec)) = recs.get(i) else { continue };
            if gens.is_some_and(|g| record::generation(rec) != g[i].as_bytes()) {
                continue;
            }
            let id: JobId = match sid.parse() {
                Ok(id) => id,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let err = errs.get(i).and_then(|e| e.as_deref()).map(lossy);
            let res = results.as_ref().and_then(|r| r.get(i)).and_then(|r| r.as_deref());
            let job = record::to_job(id, rec, res, err).map(|mut job| {
                // A report that cannot be read is left out rather than failing the job.
                job.progress = progress
                    .get(i)
                    .and_then(|p| p.as_deref())
                    .and_then(|p| serde_json::from_slice(p).ok());
                job
            });
            out.push(job);
        }
        Ok(out)
    }
}

/// The jobs of a listing that this version can read; the others are logged and left out
/// (a listing must not fail because of one record; `get_job` on it gives the error).
fn readable(jobs: Vec<Result<Job>>) -> Vec<Job> {
    jobs.into_iter()
        .filter_map(|j| {
            j.map_err(|e| tracing::warn!(error = %crate::escape::Escaped(&e), "unreadable job record left out of a listing"))
                .ok()
        })
        .collect()
}

pub(super) async fn get_job(backend: &RedisBackend, id: JobId) -> Result<Option<Job>> {
    backend.read_jobs(&[&id.to_string()], None, true).await?.pop().transpose()
}

pub(super) async fn list_pending(
    backend: &RedisBackend,
    priority: Option<JobPriority>,
    limit: usize,
) -> Result<Vec<Job>> {
    let prios: Vec<JobPriority> = match priority {
        Some(p) => vec![p],
        None => JobPriority::ALL.to_vec(),
    };
    let mut out = Vec::new();
    let mut conn = backend.conn.clone();
    // Every queue, by name (as the in-memory backend orders them): within a priority, the
    // jobs of each queue in the order that queue's workers take them.
    let mut names: Vec<String> =
        ::redis::cmd("HKEYS").arg(backend.keys.queues()).query_async(&mut conn).await?;
    names.retain(|q| !keys::is_default(q) && crate::flow::check_queue_name(q).is_ok());
    names.push(crate::flow::DEFAULT_QUEUE.to_owned());
    names.sort();
    let mut fields = Vec::with_capacity(prios.len() * names.len());
    let mut lists = Vec::with_capacity(prios.len() * names.len());
    for p in &prios {
        for q in &names {
            let i = p.index();
            fields.push(if keys::is_default(q) {
                format!("ghost{i}")
            } else {
                format!("ghost:{q}:{i}")
            });
            lists.push(backend.keys.queue_pending(q, i));
        }
    }
    let ghosts: Vec<Option<i64>> = ::redis::cmd("HMGET")
        .arg(backend.keys.counters())
        .arg(&fields)
        .query_async(&mut conn)
        .await?;
    for (list, g) in lists.into_iter().zip(ghosts) {
        if out.len() >= limit {
            break;
        }
        // Reading `want + ghosts` entries is enough to find `want` live ones: at most
        // `ghosts` entries of the list are cancelled leftovers.
        let want = limit - out.len();
        let g = g.unwrap_or(0).max(0) as usize;
        let stop = (want + g).saturating_sub(1);
        let entries: Vec<String> =
            ::redis::cmd("LRANGE").arg(list).arg(0).arg(stop).query_async(&mut conn).await?;
        let (ids, gens): (Vec<&str>, Vec<&str>) =
            entries.iter().map(|e| record::split_entry(e)).unzip();
        let jobs = readable(backend.read_jobs(&ids, Some(&gens), false).await?);
        out.extend(
            jobs.into_iter().filter(|j| j.status == crate::job::JobStatus::Pending).take(want),
        );
    }
    Ok(out)
}

pub(super) async fn list_dead(
    backend: &RedisBackend,
    offset: usize,
    limit: usize,
) -> Result<Vec<Job>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut conn = backend.conn.clone();
    let ids: Vec<String> = ::redis::cmd("ZREVRANGE")
        .arg(backend.keys.dead())
        .arg(offset)
        .arg(offset + limit - 1)
        .query_async(&mut conn)
        .await?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(readable(backend.read_jobs(&ids, None, false).await?))
}

pub(super) async fn list_jobs(backend: &RedisBackend, req: &ListRequest) -> Result<JobPage> {
    // Positions in KEYS (lib.lua) of each state's index, and the status its records need.
    let (index, status) = match req.state {
        ListState::Scheduled => (8, ""),
        ListState::Retrying => (9, ""),
        ListState::Running => (10, ""),
        ListState::Failed => (11, ""),
        ListState::Completed => (12, "c"),
        ListState::Cancelled => (12, "x"),
    };
    if let Some(c) = &req.cursor
        && c.state() != req.state
    {
        return Err(Error::InvalidCursor {
            reason: format!("a cursor of state {}, not {}", c.state(), req.state),
        });
    }
    // The fragments of the meta JSON (record.rs, MetaOut) that the filters look for,
    // encoded as the meta is.
    let fragment = |key: &str, v: &Option<String>| -> Result<String> {
        Ok(match v {
            Some(v) => format!("\"{key}\":{}", serde_json::to_string(v)?),
            None => String::new(),
        })
    };
    let (name, user) = (fragment("n", &req.name)?, fragment("u", &req.user_id)?);
    let (cs, cm) = match &req.cursor {
        Some(c) => (c.score().to_string(), c.id().to_string()),
        None => (String::new(), String::new()),
    };
    let reply: Vec<Value> = backend
        .run(&SCRIPTS.list_jobs, |inv| {
            inv.arg(index)
                .arg(status)
                .arg(&cs)
                .arg(&cm)
                .arg(req.clamped_limit())
                .arg(LIST_SCAN_LIMIT)
                .arg(&name)
                .arg(&user);
        })
        .await?;
    if reply.len() < 2 || !(reply.len() - 2).is_multiple_of(3) {
        return Err(Error::Backend("malformed list_jobs reply".into()));
    }
    let cursor = match text(&reply[1])? {
        "" => None,
        id => Some(ListCursor::new(req.state, int(&reply[0])?, id.parse()?)),
    };
    let mut jobs = Vec::with_capacity((reply.len() - 2) / 3);
    for t in reply[2..].chunks_exact(3) {
        let id: JobId = match text(&t[0]).and_then(str::parse) {
            Ok(id) => id,
            Err(e) => {
                jobs.push(Err(e));
                continue;
            }
        };
        let err = bytes(&t[2])?;
        let err = (!err.is_empty()).then(|| lossy(err));
        jobs.push(record::to_job(id, bytes(&t[1])?, None, err));
    }
    Ok(JobPage { jobs: readable(jobs), cursor })
}

pub(super) async fn retry_dead(backend: &RedisBackend, id: JobId) -> Result<()> {
    one_job(backend, &SCRIPTS.retry_dead, id, "retry").await
}

pub(super) async fn retry_now(backend: &RedisBackend, id: JobId) -> Result<()> {
    one_job(backend, &SCRIPTS.retry_now, id, "retry").await
}

pub(super) async fn delete(backend: &RedisBackend, id: JobId) -> Result<()> {
    one_job(backend, &SCRIPTS.delete, id, "delete").await
}

/// A transition of one job by id (`retry_dead`, `retry_now`, `delete`), which all answer
/// `{'OK'}`, `{'NOTFOUND'}` or `{'STATE', status letter}`; `what` names it in the errors.
async fn one_job(
    backend: &RedisBackend,
    op: &super::scripts::Op,
    id: JobId,
    what: &'static str,
) -> Result<()> {
    let reply: Vec<Value> = backend
        .run_retried(op, |inv| {
            inv.arg(id.to_string());
        })
        .await?;
    match reply.first().map(text).transpose()? {
        Some("OK") => Ok(()),
        Some("NOTFOUND") => Err(Error::NotFound { id }),
        Some("STATE") => {
            Err(Error::InvalidState { id, status: status_letter(reply.get(1)), op: what })
        }
        other => Err(Error::Backend(format!("unexpected {what} reply {other:?}"))),
    }
}

pub(super) async fn clear_dead(backend: &RedisBackend) -> Result<u64> {
    let mut total = 0;
    // Bounded script calls keep Redis responsive while a large DLQ is cleared.
    loop {
        let n: u64 = backend
            .run_retried(&SCRIPTS.clear_dead, |inv| {
                inv.arg(CLEAR_CHUNK);
            })
            .await?;
        total += n;
        if n < CLEAR_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Every queue: `queues.lua`'s groups of name, state and four counts.
pub(super) async fn queues(backend: &RedisBackend) -> Result<Vec<QueueInfo>> {
    let reply: Vec<Value> = backend.run(&SCRIPTS.queues, |_| {}).await?;
    if !reply.len().is_multiple_of(6) {
        return Err(Error::Backend("malformed queues reply".into()));
    }
    let mut out = Vec::with_capacity(reply.len() / 6);
    for q in reply.chunks_exact(6) {
        let mut pending = PendingByPriority::default();
        for p in JobPriority::ALL {
            pending.set(p, int(&q[2 + p.index()])?.max(0) as u64);
        }
        out.push(QueueInfo {
            name: text(&q[0])?.to_owned(),
            paused: text(&q[1])? == "p",
            total_pending: pending.total(),
            pending,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(super) async fn pause_queue(backend: &RedisBackend, name: &str, paused: bool) -> Result<bool> {
    crate::flow::check_queue_name(name)?;
    let changed: i64 = backend
        .run_retried(&SCRIPTS.queue_pause, |a| {
            a.arg(super::keys::script_name(name)).arg(if paused { "1" } else { "0" });
        })
        .await?;
    Ok(changed == 1)
}

pub(super) async fn stats(backend: &RedisBackend) -> Result<QueueStats> {
    // One script: the lengths and the ghost counts subtracted from them are read together.
    let reply: Vec<Value> = backend.run(&SCRIPTS.stats, |_| {}).await?;
    if reply.len() < 9 || !(reply.len() - 9).is_multiple_of(2) {
        return Err(Error::Backend("malformed stats reply".into()));
    }
    let lens =
        reply[..9].iter().map(|x| int(x).map(|i| i.max(0) as u64)).collect::<Result<Vec<_>>>()?;
    let mut counters = std::collections::HashMap::new();
    for kv in reply[9..].chunks_exact(2) {
        counters.insert(text(&kv[0])?, int(&kv[1])?);
    }
    let get = |name: &str| counters.get(name).copied().unwrap_or(0).max(0) as u64;
    let mut s = QueueStats::default();
    for p in JobPriority::ALL {
        let ghost = get(&format!("ghost{}", p.index()));
        s.pending.set(p, lens[p.index()].saturating_sub(ghost));
    }
    s.total_pending = s.pending.total();
    s.retrying = lens[5];
    s.scheduled = lens[4] + lens[5];
    s.processing = lens[6];
    s.dead_letter = lens[7];
    s.unique_locks = lens[8];
    s.counters = QueueCounters {
        enqueued: get("enqueued"),
        completed: get("completed"),
        failed: get("failed"),
        retried: get("retried"),
        dead: get("dead"),
        cancelled: get("cancelled"),
        stalled: get("stalled"),
        dead_dropped: get("dead_dropped"),
        purged: get("purged"),
        throttled: get("throttled"),
    };
    s.parked = get("parked");
    // Per name: `unhandled:<name>` and its companions (see give_back.lua).
    let time = |field: String| counters.get(field.as_str()).and_then(|&ms| ms_to_time(ms));
    for (field, &n) in &counters {
        if let Some(name) = field.strip_prefix("unhandled:") {
            let stats = UnhandledStats {
                given_back: n.max(0) as u64,
                last_given_back_at: time(format!("unhandled_at:{name}")),
                no_live_worker_since: time(format!("unhandled_since:{name}")),
            };
            s.unhandled.insert(name.to_owned(), stats);
        }
    }
    Ok(s)
}

pub(super) async fn limits(
    backend: &RedisBackend,
    max: usize,
) -> Result<Vec<crate::job::LimiterUsage>> {
    use crate::job::{LimiterKind, LimiterUsage};
    let max = max.min(crate::backend::limits::LIMITS_LIST_MAX);
    let reply: Vec<Value> = backend
        .run(&SCRIPTS.limits, |inv| {
            inv.arg(max);
        })
        .await?;
    if !reply.len().is_multiple_of(8) {
        return Err(Error::Backend("malformed limits reply".into()));
    }
    let mut out = Vec::with_capacity(reply.len() / 8);
    for r in reply.chunks_exact(8) {
        let name = text(&r[0])?.to_owned();
        let kind =
            if text(&r[1])? == "rate" { LimiterKind::Rate } else { LimiterKind::Concurrency };
        let n = |v: &Value| int(v).map(|i| i.max(0));
        let per = n(&r[3])? as u64;
        let time =
            |v: &Value| -> Result<_> { Ok(Some(n(v)?).filter(|&t| t > 0).and_then(ms_to_time)) };
        let key = name.split_once(':').map_or("", |(_, k)| k);
        // A rate limiter's name is `r:<max>/<per>:<key>`: its key follows the second colon.
        let key = if kind == LimiterKind::Rate {
            key.split_once(':').map_or("", |(_, k)| k)
        } else {
            key
        };
        out.push(LimiterUsage {
            key: key.to_owned(),
            kind,
            max: u32::try_from(n(&r[2])?).unwrap_or(u32::MAX),
            per_ms: (kind == LimiterKind::Rate).then_some(per),
            in_use: n(&r[4])? as u64,
            parked: n(&r[5])? as u64,
            next_slot_at: time(&r[6])?,
            blocked_until: time(&r[7])?,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.truncate(max);
    Ok(out)
}

pub(super) async fn purge(backend: &RedisBackend, limit: usize) -> Result<u64> {
    backend
        .run(&SCRIPTS.purge, |inv| {
            inv.arg(limit);
        })
        .await
}

pub(super) async fn throughput(backend: &RedisBackend) -> Result<Vec<ThroughputBucket>> {
    let reply: Vec<Value> = backend.run(&SCRIPTS.throughput, |_| {}).await?;
    let now = reply.first().map(int).transpose()?.unwrap_or(0);
    let mut fields = std::collections::HashMap::new();
    for kv in reply.get(1..).unwrap_or_default().chunks_exact(2) {
        fields.insert(text(&kv[0])?.to_owned(), int(&kv[1])?);
    }
    let mut ring = std::collections::HashMap::new();
    for slot in 0..THROUGHPUT_MINUTES {
        if let Some(&m) = fields.get(&format!("m{slot}")) {
            let get = |k: &str| fields.get(&format!("{k}{slot}")).copied().unwrap_or(0).max(0);
            ring.insert(slot, (m, get("c") as u64, get("f") as u64));
        }
    }
    Ok(throughput_buckets(now, &ring))
}

pub(super) async fn list_workers(
    backend: &RedisBackend,
    ttl: Duration,
) -> Result<Vec<WorkerEntry>> {
    let reply: Vec<Value> = backend
        .run(&SCRIPTS.workers, |inv| {
            inv.arg(duration_ms(ttl));
        })
        .await?;
    let mut out = Vec::new();
    for c in reply.get(1..).unwrap_or_default().chunks_exact(3) {
        let last = int(&c[1])?;
        out.push(WorkerEntry {
            worker_id: text(&c[0])?.to_owned(),
            last_seen: ms_to_time(last).unwrap_or_default(),
            info: serde_json::from_slice(bytes(&c[2])?).unwrap_or(serde_json::Value::Null),
        });
    }
    out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    Ok(out)
}
