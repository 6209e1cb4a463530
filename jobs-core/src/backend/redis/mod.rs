//! The Redis backend: every state change is one Lua script (see `scripts/`), every key is
//! built in [`keys`], every timestamp is the server's `TIME`.
//!
//! Layout and design: `shared/REDIS.md`. In short, per namespace:
//! ready jobs in one LIST per priority (cheaper than a ZSET in CPU and memory, and FIFO by
//! construction); delayed and retrying jobs, leases, the DLQ and finished jobs in ZSETs
//! scored by time; job records, payloads, results and errors as fields of four HASHes (so
//! scripts that find ids on the server never build a key name). Idle workers block on
//! `BZPOPMIN` of a marker ZSET instead of polling.

use std::sync::Mutex;
use std::time::Duration;

use ::redis::{Script, Value};
use async_trait::async_trait;
use serde::Serialize;

use super::*;
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, NewJob, RunAt};
use crate::stats::{QueueCounters, QueueStats};
use crate::time::{duration_ms, ms_to_time};

mod conn;
pub mod keys;
mod record;
mod scripts;

use conn::Connector;
pub use conn::{RedisConnection, TlsFiles};
use keys::Keys;
use scripts::{SCHED_SCRIPTS, SCRIPTS};

/// How to reach Redis and where to keep this deployment's keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. A Redis Cluster
    /// is found by itself from the URL of any of its nodes; several seed nodes may be given
    /// as a comma-separated list (`redis://a:7000,redis://b:7001`).
    pub url: String,
    /// CA and client certificates for `rediss://` beyond the system's trust store.
    pub tls: TlsFiles,
    /// All keys of one deployment live in this namespace (default `jobs`). Deployments that
    /// share a Redis must use different namespaces.
    pub namespace: String,
    /// The first part of every key (default `jobq`).
    pub prefix: String,
    /// Retention and dead-letter caps.
    pub backend: BackendConfig,
    /// How long one command may take before it fails (default 5 s). Blocking waits get
    /// their own connections and allowance.
    pub response_timeout: Duration,
    /// How long to wait for a connection (default 5 s).
    pub connect_timeout: Duration,
}

impl RedisConfig {
    /// Defaults for the server at `url`.
    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_owned(),
            tls: TlsFiles::default(),
            namespace: "jobs".into(),
            prefix: "jobq".into(),
            backend: BackendConfig::default(),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The same configuration in another namespace.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// The same configuration with other retention and dead-letter settings.
    pub fn backend(mut self, cfg: BackendConfig) -> Self {
        self.backend = cfg;
        self
    }
}

/// The Redis implementation of [`Backend`].
pub struct RedisBackend {
    connector: Connector,
    conn: RedisConnection,
    keys: Keys,
    cfg: RedisConfig,
    /// Connections for `BZPOPMIN`. A blocking command holds its whole connection, so each
    /// concurrent waiter takes one of these instead of the shared multiplexed connection.
    blocking: Mutex<Vec<Blocker>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("namespace", &self.cfg.namespace).finish()
    }
}

/// A connection reserved for `BZPOPMIN`, with its `CLIENT ID` so that a wait can be ended
/// early with `CLIENT UNBLOCK`.
struct Blocker {
    conn: RedisConnection,
    id: i64,
}

/// The longest single BZPOPMIN: bounds how long a lost wake-up (e.g. a worker that died
/// holding the delayed-job marker) can delay work. REDIS.md §4.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// How much longer than our own timer the server-side BZPOPMIN timeout is.
const UNBLOCK_SLACK: Duration = Duration::from_secs(1);

/// Most dead-letter records one `clear_dead` script call deletes (the client loops).
const CLEAR_CHUNK: usize = 500;

impl RedisBackend {
    /// Connects and checks the server answers. An unreachable server or a refused password
    /// is an error here, not later.
    pub async fn connect(cfg: RedisConfig) -> Result<Self> {
        let keys = Keys::new(&cfg.prefix, &cfg.namespace)?;
        let (connector, conn) = Connector::open(&cfg).await?;
        Ok(RedisBackend { connector, conn, keys, cfg, blocking: Mutex::new(Vec::new()) })
    }

    /// The keys of this backend's namespace (for tools and tests that inspect Redis).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The configuration this backend was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// A clone of the shared multiplexed connection (for callers that need raw commands
    /// beside the queue, such as the benchmark and the tests).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Whether the backend talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    async fn run<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        args: impl FnOnce(&mut ::redis::ScriptInvocation<'_>),
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in self.keys.all() {
            inv.key(k);
        }
        args(&mut inv);
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    fn ttl_ms(&self) -> u64 {
        duration_ms(self.cfg.backend.result_ttl)
    }

    /// The policy arguments shared by `fail` and `reap` (`policy()` in lib.lua).
    fn policy_args(&self, inv: &mut ::redis::ScriptInvocation<'_>, retry: &crate::RetryPolicy) {
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

    async fn blocking_conn(&self) -> Result<Blocker> {
        let pooled = self.blocking.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(c) = pooled {
            return Ok(c);
        }
        let timeout = MAX_BLOCK + UNBLOCK_SLACK + self.cfg.response_timeout;
        let mut conn = self.connector.dedicated(&self.cfg, timeout).await?;
        // On a cluster this asks the node of the marker key: the one BZPOPMIN blocks on.
        let id: i64 = conn.on_node_of(::redis::cmd("CLIENT").arg("ID"), self.keys.marker()).await?;
        Ok(Blocker { conn, id })
    }

    /// Reads jobs by id with their payloads and errors (and results), skipping ids whose
    /// record is gone.
    async fn read_jobs(&self, ids: &[String], with_result: bool) -> Result<Vec<Result<Job>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET").arg(self.keys.jobs()).arg(ids);
        pipe.cmd("HMGET").arg(self.keys.errors()).arg(ids);
        if with_result {
            pipe.cmd("HMGET").arg(self.keys.results()).arg(ids);
        }
        let mut conn = self.conn.clone();
        let mut cols: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut conn).await?;
        let results = if with_result { cols.pop() } else { None };
        let (recs, errs) = match (cols.first(), cols.get(1)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::Backend("short HMGET pipeline reply".into())),
        };
        let mut out = Vec::with_capacity(ids.len());
        for (i, sid) in ids.iter().enumerate() {
            let Some(Some(rec)) = recs.get(i) else { continue };
            let id: JobId = match sid.parse() {
                Ok(id) => id,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let err = errs.get(i).and_then(|e| e.as_deref()).map(lossy);
            let res = results.as_ref().and_then(|r| r.get(i)).and_then(|r| r.as_deref());
            out.push(record::to_job(id, rec, res, err));
        }
        Ok(out)
    }
}

/// The URL with its password (if any) replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        // The seed nodes of a cluster, each with its own credentials.
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!(
                "{}://{}{}***@{}",
                &url[..s],
                user,
                if user.is_empty() { "" } else { ":" },
                &url[at + 1..]
            )
        }
        _ => url.to_owned(),
    }
}

/// The jobs of a listing that this version can read; the others are logged and left out
/// (a listing must not fail because of one record; `get_job` on it gives the error).
fn readable(jobs: Vec<Result<Job>>) -> Vec<Job> {
    jobs.into_iter()
        .filter_map(|j| {
            j.map_err(|e| tracing::warn!(error = %e, "unreadable job record left out of a listing"))
                .ok()
        })
        .collect()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Backend("expected an integer".into())),
        other => Err(Error::Backend(format!("expected an integer, got {other:?}"))),
    }
}

fn bytes(v: &Value) -> Result<&[u8]> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(Error::Backend(format!("expected a string, got {other:?}"))),
    }
}

fn text(v: &Value) -> Result<&str> {
    std::str::from_utf8(bytes(v)?).map_err(|_| Error::Backend("reply is not UTF-8".into()))
}

fn status_letter(v: Option<&Value>) -> crate::job::JobStatus {
    v.and_then(|v| bytes(v).ok())
        .and_then(|b| b.first().copied())
        .and_then(record::status_from_letter)
        .unwrap_or(crate::job::JobStatus::Pending)
}

#[derive(Serialize)]
struct MetaOut<'a> {
    n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Encode everything first: a job that cannot be encoded fails the call before
        // anything reaches Redis.
        let mut enc = Vec::with_capacity(jobs.len());
        for j in jobs {
            let meta = serde_json::to_string(&MetaOut { n: &j.name, u: j.user_id.as_deref() })?;
            let payload = serde_json::to_string(&j.args)?;
            let (run_at, delay) = match j.run_at {
                RunAt::Now => (0, 0),
                RunAt::Time(t) => (t.timestamp_millis().max(0), 0),
                // Rounded up, as in the memory backend: any positive delay delays.
                RunAt::Delay(d) => {
                    (0, i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX))
                }
            };
            enc.push((j, meta, payload, run_at, delay));
        }
        let reply: Vec<i64> = self
            .run(&SCRIPTS.enqueue, |inv| {
                inv.arg(jobs.len());
                for (j, meta, payload, run_at, delay) in &enc {
                    inv.arg(j.id.to_string())
                        .arg(j.priority.index())
                        .arg(*run_at)
                        .arg(*delay)
                        .arg(j.max_retries)
                        .arg(duration_ms(j.timeout))
                        .arg(meta)
                        .arg(payload);
                }
            })
            .await?;
        if reply.len() != jobs.len() {
            return Err(Error::Backend("enqueue answered for a different number of jobs".into()));
        }
        Ok(reply
            .into_iter()
            .map(|r| if r == 1 { EnqueueOutcome::Created } else { EnqueueOutcome::Duplicate })
            .collect())
    }

    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> {
        let reply: Vec<Value> = self
            .run(&SCRIPTS.fetch, |inv| {
                inv.arg(req.max)
                    .arg(&req.worker_id)
                    .arg(duration_ms(req.lease))
                    .arg(duration_ms(req.grace))
                    .arg(PROMOTE_LIMIT);
            })
            .await?;
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
                    tracing::error!(job.id = sid, "job id in redis is not a uuid; skipped");
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
            tracing::error!(job.id = %lease.id, error = %e, "unreadable job dead-lettered");
            let failure = Failure {
                lease,
                error: e.to_string(),
                retryable: false,
                retry: crate::RetryPolicy::default(),
            };
            self.fail(&failure).await?;
        }
        Ok(out)
    }

    async fn wait_for_work(&self, max: Duration) -> Result<()> {
        let t = max.min(MAX_BLOCK);
        if t.is_zero() {
            return Ok(());
        }
        let b = self.blocking_conn().await?;
        // Redis checks blocking timeouts only about every 100 ms (hz 10), which would make a
        // delayed job start up to 100 ms late. So the server-side timeout is only a backstop:
        // our own timer ends the wait on time, through CLIENT UNBLOCK from the shared
        // connection. (Never a zero timeout: BZPOPMIN 0 blocks forever.)
        let mut cmd = ::redis::cmd("BZPOPMIN");
        cmd.arg(self.keys.marker()).arg((t + UNBLOCK_SLACK).as_secs_f64());
        let mut conn = b.conn.clone();
        let pop = cmd.query_async::<Value>(&mut conn);
        tokio::pin!(pop);
        let r = tokio::select! {
            r = &mut pop => r,
            _ = tokio::time::sleep(t) => {
                let mut c = self.conn.clone();
                let unblocked: ::redis::RedisResult<i64> = c
                    .on_node_of(::redis::cmd("CLIENT").arg("UNBLOCK").arg(b.id), self.keys.marker())
                    .await;
                if let Err(e) = unblocked {
                    // The connection is dropped with its command outstanding; the server
                    // times it out by itself.
                    return Err(e.into());
                }
                (&mut pop).await
            }
        };
        match r {
            Ok(_) => {
                self.blocking.lock().unwrap_or_else(|e| e.into_inner()).push(b);
                Ok(())
            }
            // The connection is dropped: it may be in an unknown state.
            Err(e) => Err(e.into()),
        }
    }

    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply> {
        let info = serde_json::to_string(&beat.info)?;
        let (lost, cancel): (Vec<String>, Vec<String>) = self
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

    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let results = items
            .iter()
            .map(|c| serde_json::to_string(&c.result))
            .collect::<Result<Vec<_>, _>>()?;
        let reply: Vec<i64> = self
            .run(&SCRIPTS.complete, |inv| {
                inv.arg(self.ttl_ms()).arg(PURGE_ON_COMPLETE).arg(items.len());
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
                _ => AckOutcome::Stale,
            })
            .collect())
    }

    async fn fail(&self, f: &Failure) -> Result<FailOutcome> {
        let reply: Vec<Value> = self
            .run(&SCRIPTS.fail, |inv| {
                inv.arg(f.lease.id.to_string())
                    .arg(f.lease.attempt)
                    .arg(truncate_error(&f.error))
                    .arg(if f.retryable { 1 } else { 0 });
                self.policy_args(inv, &f.retry);
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

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        self.run(&SCRIPTS.release, |inv| {
            inv.arg(self.ttl_ms()).arg(leases.len());
            for l in leases {
                inv.arg(l.id.to_string()).arg(l.attempt);
            }
        })
        .await
    }

    async fn reap(&self, o: &ReapOptions) -> Result<ReapReport> {
        let r: Vec<u64> = self
            .run(&SCRIPTS.reap, |inv| {
                inv.arg(duration_ms(o.interval))
                    .arg(duration_ms(o.grace))
                    .arg(o.limit)
                    .arg(o.max_stalls)
                    .arg(duration_ms(o.worker_ttl));
                self.policy_args(inv, &o.retry);
                inv.arg(ERR_TIMEOUT).arg(ERR_WORKER_LOST);
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

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let reply: Vec<Value> = self
            .run(&SCRIPTS.cancel, |inv| {
                inv.arg(id.to_string()).arg(self.ttl_ms());
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

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.read_jobs(&[id.to_string()], true).await?.pop().transpose()
    }

    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>> {
        let prios: Vec<JobPriority> = match priority {
            Some(p) => vec![p],
            None => JobPriority::ALL.to_vec(),
        };
        let mut out = Vec::new();
        let mut conn = self.conn.clone();
        let ghosts: Vec<Option<i64>> = ::redis::cmd("HMGET")
            .arg(self.keys.counters())
            .arg(&["ghost0", "ghost1", "ghost2", "ghost3"])
            .query_async(&mut conn)
            .await?;
        for p in prios {
            if out.len() >= limit {
                break;
            }
            // Reading `want + ghosts` entries is enough to find `want` live ones: at most
            // `ghosts` entries of the list are cancelled leftovers.
            let want = limit - out.len();
            let g = ghosts.get(p.index()).copied().flatten().unwrap_or(0).max(0) as usize;
            let stop = (want + g).saturating_sub(1);
            let ids: Vec<String> = ::redis::cmd("LRANGE")
                .arg(self.keys.pending(p.index()))
                .arg(0)
                .arg(stop)
                .query_async(&mut conn)
                .await?;
            let jobs = readable(self.read_jobs(&ids, false).await?);
            out.extend(
                jobs.into_iter().filter(|j| j.status == crate::job::JobStatus::Pending).take(want),
            );
        }
        Ok(out)
    }

    async fn list_dead(&self, offset: usize, limit: usize) -> Result<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = ::redis::cmd("ZREVRANGE")
            .arg(self.keys.dead())
            .arg(offset)
            .arg(offset + limit - 1)
            .query_async(&mut conn)
            .await?;
        Ok(readable(self.read_jobs(&ids, false).await?))
    }

    async fn retry_dead(&self, id: JobId) -> Result<()> {
        let reply: Vec<Value> = self
            .run(&SCRIPTS.retry_dead, |inv| {
                inv.arg(id.to_string());
            })
            .await?;
        match reply.first().map(text).transpose()? {
            Some("OK") => Ok(()),
            Some("NOTFOUND") => Err(Error::NotFound { id }),
            Some("STATE") => {
                Err(Error::InvalidState { id, status: status_letter(reply.get(1)), op: "retry" })
            }
            other => Err(Error::Backend(format!("unexpected retry reply {other:?}"))),
        }
    }

    async fn clear_dead(&self) -> Result<u64> {
        let mut total = 0;
        // Bounded script calls keep Redis responsive while a large DLQ is cleared.
        loop {
            let n: u64 = self
                .run(&SCRIPTS.clear_dead, |inv| {
                    inv.arg(CLEAR_CHUNK);
                })
                .await?;
            total += n;
            if n < CLEAR_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats> {
        let k = &self.keys;
        let mut pipe = ::redis::pipe();
        for p in 0..4 {
            pipe.cmd("LLEN").arg(k.pending(p));
        }
        pipe.cmd("ZCARD").arg(k.scheduled());
        pipe.cmd("ZCARD").arg(k.retry());
        pipe.cmd("ZCARD").arg(k.active());
        pipe.cmd("ZCARD").arg(k.dead());
        let mut conn = self.conn.clone();
        let (lens, counters): (Vec<u64>, std::collections::HashMap<String, i64>) = {
            pipe.cmd("HGETALL").arg(k.counters());
            let mut v: Vec<Value> = pipe.query_async(&mut conn).await?;
            let c = v.pop().ok_or_else(|| Error::Backend("short stats reply".into()))?;
            let lens = v.iter().map(|x| int(x).map(|i| i.max(0) as u64)).collect::<Result<_>>()?;
            (lens, ::redis::from_redis_value(c).map_err(|e| Error::Backend(e.to_string()))?)
        };
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
        };
        Ok(s)
    }

    async fn purge(&self, limit: usize) -> Result<u64> {
        self.run(&SCRIPTS.purge, |inv| {
            inv.arg(limit);
        })
        .await
    }

    async fn throughput(&self) -> Result<Vec<ThroughputBucket>> {
        let reply: Vec<Value> = self.run(&SCRIPTS.throughput, |_| {}).await?;
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

    async fn list_workers(&self, ttl: Duration) -> Result<Vec<WorkerEntry>> {
        let reply: Vec<Value> = self
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

    async fn time(&self) -> Result<DateTime<Utc>> {
        let mut conn = self.conn.clone();
        // The clock of the node that runs this namespace's scripts.
        let (secs, micros): (i64, i64) =
            conn.on_node_of(&::redis::cmd("TIME"), self.keys.jobs()).await?;
        DateTime::from_timestamp(secs, u32::try_from(micros * 1000).unwrap_or(0))
            .ok_or_else(|| Error::Backend("TIME out of range".into()))
    }

    async fn schedule_upsert(
        &self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<UpsertOutcome> {
        check_schedule_hash(hash)?;
        let def = serde_json::to_string(entry)?;
        let reply: String = self
            .run(&SCHED_SCRIPTS.upsert, |inv| {
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

    async fn schedule_set_enabled(
        &self,
        name: &str,
        enabled: bool,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<StoredSchedule> {
        let reply: Vec<Value> = self
            .run(&SCHED_SCRIPTS.enable, |inv| {
                inv.arg(name).arg(if enabled { "1" } else { "0" }).arg(opt_ms(first_next));
            })
            .await?;
        match reply.as_slice() {
            [] => Err(Error::ScheduleNotFound { name: name.to_owned() }),
            [rec, next] => schedule_from(name, bytes(rec)?, int(next)?),
            _ => Err(Error::Backend("malformed sched_enable reply".into())),
        }
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool> {
        let n: i64 = self
            .run(&SCHED_SCRIPTS.remove, |inv| {
                inv.arg(name);
            })
            .await?;
        Ok(n == 1)
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>> {
        if name.is_empty() {
            // The script reads '' as "every schedule"; no schedule has an empty name.
            return Ok(None);
        }
        Ok(self.read_schedules(name).await?.pop())
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>> {
        let mut all = self.read_schedules("").await?;
        all.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        Ok(all)
    }

    async fn schedule_due(&self, limit: usize) -> Result<DueSchedules> {
        let reply: Vec<Value> = self
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
                    tracing::error!(schedule = name, error = %e, "unreadable schedule skipped")
                }
            }
        }
        Ok(DueSchedules { now, due, next_run })
    }

    async fn schedule_fire(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        fire.check()?;
        let job = &fire.job;
        let meta = serde_json::to_string(&MetaOut { n: &job.name, u: job.user_id.as_deref() })?;
        let payload = serde_json::to_string(&job.args)?;
        let claim = fire.claim.as_ref();
        let reply: Vec<Value> = self
            .run(&SCHED_SCRIPTS.fire, |inv| {
                inv.arg(&fire.name)
                    .arg(
                        claim
                            .map(|c| c.expected.timestamp_millis().to_string())
                            .unwrap_or_default(),
                    )
                    .arg(opt_ms(claim.and_then(|c| c.next)))
                    .arg(claim.map(|c| c.hash.as_str()).unwrap_or_default())
                    .arg(job.id.to_string())
                    .arg(job.priority.index())
                    .arg(job.max_retries)
                    .arg(duration_ms(job.timeout))
                    .arg(&meta)
                    .arg(&payload);
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

/// Reads a schedule record, `<en>:<runs>:<last>:<hash>:<job>|<definition JSON>` (see
/// `scripts/sched_lib.lua`), with its next run (`-1`: none).
fn schedule_from(name: &str, rec: &[u8], next: i64) -> Result<StoredSchedule> {
    let corrupt = |reason: &str| Error::CorruptRecord {
        id: format!("schedule {name}"),
        reason: reason.into(),
    };
    let bar = rec.iter().position(|&b| b == b'|').ok_or_else(|| corrupt("no state separator"))?;
    let head = std::str::from_utf8(&rec[..bar]).map_err(|_| corrupt("state is not text"))?;
    let mut f = head.split(':');
    let (Some(en), Some(runs), Some(last), Some(hash), Some(job), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(corrupt("state has the wrong number of fields"));
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
        },
    })
}
