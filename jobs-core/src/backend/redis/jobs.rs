//! The calls of the job lifecycle, each one script: enqueue, fetch, heartbeat, complete,
//! fail, release, reap and cancel, with the parsing of their replies.

use std::time::Duration;

use ::redis::Value;

use super::record::{self, MetaOut};
use super::reply::{bytes, int, lossy, status_letter, text};
use super::scripts::SCRIPTS;
use super::{Args, RedisBackend, Send};
use crate::backend::{
    AckOutcome, CANCEL_LOG_MAX, CancelOutcome, Completion, DEAD_TRIM_LIMIT, ERR_TIMEOUT,
    ERR_WORKER_LOST, FETCH_SKIP_LIMIT, FailOutcome, Failure, FetchRequest, Fetched, GiveBack,
    GiveBackOutcome, Heartbeat, HeartbeatReply, Lease, LeasedJob, PROMOTE_LIMIT, PURGE_ON_COMPLETE,
    ProgressUpdate, ReapOptions, ReapReport, UNHANDLED_GAP, UNHANDLED_NAMES_MAX, UNHANDLED_OTHER,
    truncate_error,
};
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, JobId, NewJob, RunAt};
use crate::time::{duration_ms, ms_to_time};

impl RedisBackend {
    fn ttl_ms(&self) -> u64 {
        duration_ms(self.cfg.backend.result_ttl)
    }

    /// The policy arguments shared by `fail` and `reap` (`policy()` in lib.lua).
    fn policy_args(&self, inv: &mut Args, retry: &crate::RetryPolicy) {
        let jitter = retry.delay_with_jitter(1).saturating_sub(retry.delay(1));
        let b = &self.cfg.backend;
        inv.arg(duration_ms(retry.base))
            .arg(duration_ms(retry.cap))
            .arg(duration_ms(jitter))
            .arg(b.dead_max)
            .arg(duration_ms(b.dead_ttl))
            .arg(duration_ms(b.result_ttl))
            .arg(DEAD_TRIM_LIMIT);
    }
}

pub(super) async fn enqueue(
    backend: &RedisBackend,
    jobs: &[NewJob],
) -> Result<Vec<EnqueueOutcome>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // Encode everything first: a job that cannot be encoded fails the call before
    // anything reaches Redis.
    let mut enc = Vec::with_capacity(jobs.len());
    for j in jobs {
        if let Some(q) = &j.queue {
            crate::flow::check_queue_name(q)?;
        }
        let meta = serde_json::to_string(&MetaOut::of(j))?;
        let payload = serde_json::to_string(&j.args)?;
        let (run_at, delay) = match j.run_at {
            RunAt::Now => (0, 0),
            RunAt::Time(t) => (t.timestamp_millis().max(0), 0),
            // Rounded up, as in the memory backend: any positive delay delays.
            RunAt::Delay(d) => {
                (0, i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX))
            }
        };
        let limits = limits_arg(j.limits.as_ref())?;
        enc.push((j, meta, payload, run_at, delay, limits));
    }
    // A job under an id `NewJob::new` drew is found only if this call (or this `NewJob`)
    // wrote it, so a resent call answers `Created` for it without a stored reply: only a
    // batch with ids the caller chose keeps one (about 180 bytes for 21 s a call, which
    // at tens of thousands of single enqueues a second would be a lot of memory).
    // A uniqueness lock makes the answer depend on other jobs (the holder may start or end
    // between two sends), so such a batch keeps its reply too.
    let keep_reply = jobs.iter().any(|j| !j.has_drawn_id() || j.unique.is_some());
    let reply: Vec<Value> = backend
        .resend_lost(&SCRIPTS.enqueue, Send { request_key: keep_reply, durable: true }, |inv| {
            inv.arg(jobs.len());
            for (j, meta, payload, run_at, delay, limits) in &enc {
                inv.arg(j.id.to_string())
                    .arg(j.priority.index())
                    .arg(*run_at)
                    .arg(*delay)
                    .arg(j.max_retries)
                    .arg(duration_ms(j.timeout))
                    .arg(meta)
                    .arg(payload);
                match &j.unique {
                    Some(lock) => inv
                        .arg(&lock.key)
                        .arg(duration_ms(lock.window).max(1))
                        .arg(unique_mode(lock)),
                    None => inv.arg("").arg(0).arg(""),
                };
                inv.arg(super::keys::script_name(j.queue_name())).arg(limits);
            }
        })
        .await?;
    if reply.len() != jobs.len() {
        return Err(Error::Backend("enqueue answered for a different number of jobs".into()));
    }
    jobs.iter().zip(&reply).map(|(j, r)| enqueue_outcome(j, r)).collect()
}

/// The limiters argument of `enqueue.lua` (`limits_lib.lua`): `[["r", name, max, per ms],
/// ..., ["c", name, max]]`, or empty for none. Checked first, as everything of an enqueue.
fn limits_arg(limits: Option<&crate::job::JobLimits>) -> Result<String> {
    use crate::job::Limiter;
    let Some(limits) = limits else { return Ok(String::new()) };
    limits.validate()?;
    let spec: Vec<serde_json::Value> = limits
        .limiters
        .iter()
        .map(|l| match l {
            Limiter::Rate { max, per, .. } => {
                serde_json::json!(["r", l.name(), max, duration_ms(*per)])
            }
            Limiter::Concurrency { max, .. } => serde_json::json!(["c", l.name(), max]),
        })
        .collect();
    Ok(serde_json::to_string(&spec)?)
}

/// The mode argument of `enqueue.lua` for a lock: which transition ends its window
/// (`d`one, `s`tarted), then what a duplicate does (`k`eep, `r`eplace).
fn unique_mode(lock: &crate::flow::UniqueLock) -> &'static str {
    use crate::flow::{OnConflict, UniqueUntil};
    match (lock.until, lock.on_conflict) {
        (UniqueUntil::Done, OnConflict::Keep) => "dk",
        (UniqueUntil::Done, OnConflict::Replace) => "dr",
        (UniqueUntil::Started, OnConflict::Keep) => "sk",
        (UniqueUntil::Started, OnConflict::Replace) => "sr",
    }
}

/// One job's reply of `enqueue.lua`: 1, 0, or `u<id>` / `r<id>` (the lock's holder).
fn enqueue_outcome(job: &NewJob, reply: &Value) -> Result<EnqueueOutcome> {
    if let Value::Int(n) = reply {
        return Ok(job.outcome(*n == 1));
    }
    let t = text(reply)?;
    let (replaced, id) = match t.split_at_checked(1) {
        Some(("u", id)) => (false, id),
        Some(("r", id)) => (true, id),
        _ => return Err(Error::Backend(format!("malformed enqueue reply `{t}`"))),
    };
    let existing = id
        .parse::<JobId>()
        .map_err(|_| Error::Backend(format!("malformed job id in enqueue reply `{t}`")))?;
    Ok(EnqueueOutcome::Unique { existing, replaced })
}

pub(super) async fn fetch(backend: &RedisBackend, req: &FetchRequest) -> Result<Fetched> {
    let reply: Vec<Value> = backend.run_retried(&SCRIPTS.fetch, |a| fetch_args(a, req)).await?;
    read_fetched(backend, reply).await
}

/// The arguments of `fetch.lua` for `req` (before the request's own).
pub(super) fn fetch_args(a: &mut Args, req: &FetchRequest) {
    a.arg(req.max)
        .arg(&req.worker_id)
        .arg(duration_ms(req.lease))
        .arg(duration_ms(req.grace))
        .arg(PROMOTE_LIMIT)
        .arg(FETCH_SKIP_LIMIT);
    if req.queues.is_empty() {
        a.arg(1).arg("");
    } else {
        a.arg(req.queues.len());
        for q in &req.queues {
            a.arg(super::keys::script_name(q));
        }
    }
}

/// Reads the reply of `fetch.lua`; records it cannot read are dead-lettered.
pub(super) async fn read_fetched(backend: &RedisBackend, reply: Vec<Value>) -> Result<Fetched> {
    if reply.len() < 2 || !(reply.len() - 2).is_multiple_of(4) {
        return Err(Error::Backend("malformed fetch reply".into()));
    }
    let next = int(&reply[1])?;
    let mut out = Fetched {
        jobs: Vec::with_capacity((reply.len() - 2) / 4),
        next_due_in: u64::try_from(next).ok().map(Duration::from_millis),
    };
    let mut corrupt = Vec::new();
    for c in reply[2..].chunks_exact(4) {
        let sid = text(&c[0])?;
        let attempt = u32::try_from(int(&c[1])?).unwrap_or(u32::MAX);
        let id: JobId = match sid.parse() {
            Ok(id) => id,
            Err(_) => {
                tracing::error!(job.id = %crate::escape::Escaped(&sid), "job id in redis is not a uuid; skipped");
                continue;
            }
        };
        let lease = Lease { id, attempt };
        let error = match &c[3] {
            Value::Nil => None,
            v => Some(lossy(bytes(v)?)),
        };
        match record::to_job(id, bytes(&c[2])?, None, error) {
            Ok(job) => out.jobs.push(LeasedJob { job, lease }),
            Err(e) => corrupt.push((lease, e)),
        }
    }
    // A record this version cannot read must not block the queue or crash a worker:
    // it goes to the dead-letter queue with the reason.
    for (lease, e) in corrupt {
        tracing::error!(job.id = %lease.id, error = %crate::escape::Escaped(&e), "unreadable job dead-lettered");
        let failure = Failure {
            lease,
            error: e.to_string(),
            retryable: false,
            retry: crate::RetryPolicy::default(),
            retry_after: None,
        };
        fail(backend, &failure).await?;
    }
    Ok(out)
}

pub(super) async fn heartbeat(backend: &RedisBackend, beat: &Heartbeat) -> Result<HeartbeatReply> {
    let info = serde_json::to_string(&beat.info)?;
    let (lost, cancel): (Vec<String>, Vec<String>) = backend
        .run(&SCRIPTS.heartbeat, |inv| {
            inv.arg(&beat.worker_id)
                .arg(&info)
                .arg(duration_ms(beat.lease))
                .arg(duration_ms(beat.grace))
                .arg(beat.leases.len());
            for l in &beat.leases {
                inv.arg(l.id.to_string()).arg(l.attempt);
            }
        })
        .await?;
    let parse = |v: Vec<String>| v.iter().map(|s| s.parse()).collect::<Result<Vec<JobId>>>();
    Ok(HeartbeatReply { lost: parse(lost)?, cancel: parse(cancel)? })
}

/// A progress report: stored, and the lease extended, only for the current delivery. A
/// resend has the effect of one call (the same write, the same extension from a later now).
pub(super) async fn progress(backend: &RedisBackend, u: &ProgressUpdate) -> Result<bool> {
    let json = serde_json::to_string(&u.progress)?;
    let held: i64 = backend
        .run_retried(&SCRIPTS.progress, |inv| {
            inv.arg(u.lease.id.to_string())
                .arg(u.lease.attempt)
                .arg(&json)
                .arg(duration_ms(u.lease_for))
                .arg(duration_ms(u.grace));
        })
        .await?;
    Ok(held == 1)
}

pub(super) async fn complete(
    backend: &RedisBackend,
    items: &[Completion],
) -> Result<Vec<AckOutcome>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let results =
        items.iter().map(|c| serde_json::to_string(&c.result)).collect::<Result<Vec<_>, _>>()?;
    let reply: Vec<i64> = backend
        .run(&SCRIPTS.complete, |inv| {
            inv.arg(backend.ttl_ms()).arg(PURGE_ON_COMPLETE).arg(items.len());
            for (c, r) in items.iter().zip(&results) {
                inv.arg(c.lease.id.to_string()).arg(c.lease.attempt).arg(r);
            }
        })
        .await?;
    Ok(reply
        .into_iter()
        .map(|r| match r {
            1 => AckOutcome::Completed,
            2 => AckOutcome::Already,
            3 => AckOutcome::Cancelled,
            _ => AckOutcome::Stale,
        })
        .collect())
}

pub(super) async fn fail(backend: &RedisBackend, f: &Failure) -> Result<FailOutcome> {
    f.validate()?;
    let reply: Vec<Value> = backend
        .run_retried(&SCRIPTS.fail, |inv| {
            inv.arg(f.lease.id.to_string())
                .arg(f.lease.attempt)
                .arg(truncate_error(&f.error))
                .arg(if f.retryable { 1 } else { 0 });
            backend.policy_args(inv, &f.retry);
            inv.arg(f.retry_after.map_or(String::new(), |d| duration_ms(d).to_string()));
        })
        .await?;
    match reply.first().map(text).transpose()? {
        Some("RETRY") => {
            let due = reply.get(1).map(int).transpose()?.unwrap_or(0);
            let at = ms_to_time(due).ok_or_else(|| Error::Backend("bad retry time".into()))?;
            Ok(FailOutcome::Retrying { at })
        }
        Some("DEAD") => Ok(FailOutcome::Dead),
        Some("CANCELLED") => Ok(FailOutcome::Cancelled),
        Some("STALE") => Ok(FailOutcome::Stale),
        other => Err(Error::Backend(format!("unexpected fail reply {other:?}"))),
    }
}

pub(super) async fn give_back(backend: &RedisBackend, g: &GiveBack) -> Result<GiveBackOutcome> {
    let reply: Vec<Value> = backend
        .run(&SCRIPTS.give_back, |inv| {
            inv.arg(g.lease.id.to_string())
                .arg(g.lease.attempt)
                .arg(&g.name)
                .arg(duration_ms(g.delay))
                .arg(if g.handled_elsewhere { 1 } else { 0 })
                .arg(duration_ms(g.dead_after))
                .arg(duration_ms(UNHANDLED_GAP))
                .arg(UNHANDLED_NAMES_MAX)
                .arg(UNHANDLED_OTHER)
                .arg(truncate_error(&g.dead_error()));
            backend.policy_args(inv, &crate::RetryPolicy::default());
        })
        .await?;
    match reply.first().map(text).transpose()? {
        Some("DELAYED") => {
            let due = reply.get(1).map(int).transpose()?.unwrap_or(0);
            let at = ms_to_time(due).ok_or_else(|| Error::Backend("bad due time".into()))?;
            Ok(GiveBackOutcome::Delayed { at })
        }
        Some("DEAD") => Ok(GiveBackOutcome::Dead),
        Some("CANCELLED") => Ok(GiveBackOutcome::Cancelled),
        Some("STALE") => Ok(GiveBackOutcome::Stale),
        other => Err(Error::Backend(format!("unexpected give_back reply {other:?}"))),
    }
}

pub(super) async fn throttle(
    backend: &RedisBackend,
    lease: &Lease,
    delay: Duration,
) -> Result<crate::backend::ThrottleOutcome> {
    use crate::backend::ThrottleOutcome;
    crate::backend::limits::check_throttle(delay)?;
    let reply: Vec<Value> = backend
        .run_retried(&SCRIPTS.throttle, |inv| {
            inv.arg(lease.id.to_string())
                .arg(lease.attempt)
                .arg(duration_ms(delay))
                .arg(backend.ttl_ms());
        })
        .await?;
    let at = || -> Result<chrono::DateTime<chrono::Utc>> {
        let ms = reply.get(1).map(int).transpose()?.unwrap_or(0);
        ms_to_time(ms).ok_or_else(|| Error::Backend("bad time in throttle reply".into()))
    };
    match reply.first().map(text).transpose()? {
        Some("PARKED") => Ok(ThrottleOutcome::Parked { until: at()? }),
        Some("DELAYED") => Ok(ThrottleOutcome::Delayed { at: at()? }),
        Some("CANCELLED") => Ok(ThrottleOutcome::Cancelled),
        Some("STALE") => Ok(ThrottleOutcome::Stale),
        other => Err(Error::Backend(format!("unexpected throttle reply {other:?}"))),
    }
}

pub(super) async fn release(backend: &RedisBackend, leases: &[Lease]) -> Result<u64> {
    if leases.is_empty() {
        return Ok(0);
    }
    backend
        .run_retried(&SCRIPTS.release, |inv| {
            inv.arg(backend.ttl_ms()).arg(leases.len());
            for l in leases {
                inv.arg(l.id.to_string()).arg(l.attempt);
            }
        })
        .await
}

pub(super) async fn reap(backend: &RedisBackend, o: &ReapOptions) -> Result<ReapReport> {
    // The script draws one jitter per job it fails, from this seed.
    let seed: u32 = rand::Rng::random_range(&mut rand::rng(), 1..2_147_483_647);
    let r: Vec<u64> = backend
        .run(&SCRIPTS.reap, |inv| {
            inv.arg(duration_ms(o.interval))
                .arg(duration_ms(o.grace))
                .arg(o.limit)
                .arg(o.max_stalls)
                .arg(duration_ms(o.worker_ttl));
            backend.policy_args(inv, &o.retry);
            inv.arg(ERR_TIMEOUT).arg(ERR_WORKER_LOST).arg(duration_ms(o.retry.jitter)).arg(seed);
        })
        .await?;
    match r.as_slice() {
        [ran, requeued, failed, cancelled] => Ok(ReapReport {
            ran: *ran == 1,
            requeued: *requeued,
            failed: *failed,
            cancelled: *cancelled,
        }),
        _ => Err(Error::Backend("malformed reap reply".into())),
    }
}

pub(super) async fn cancel(backend: &RedisBackend, id: JobId) -> Result<CancelOutcome> {
    let reply: Vec<Value> = backend
        .run_retried(&SCRIPTS.cancel, |inv| {
            inv.arg(id.to_string()).arg(backend.ttl_ms()).arg(CANCEL_LOG_MAX);
        })
        .await?;
    match reply.first().map(text).transpose()? {
        Some("CANCELLED") => Ok(CancelOutcome::Cancelled),
        Some("RUNNING") => Ok(CancelOutcome::Requested),
        Some("NOTFOUND") => Err(Error::NotFound { id }),
        Some("STATE") => {
            Err(Error::InvalidState { id, status: status_letter(reply.get(1)), op: "cancel" })
        }
        other => Err(Error::Backend(format!("unexpected cancel reply {other:?}"))),
    }
}
