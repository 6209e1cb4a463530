//! The Redis backend: every state change is one Lua script (see `scripts/`), every key is
//! built in [`keys`], every timestamp is the server's `TIME`.
//!
//! Layout and design: `shared/REDIS.md`. In short, per namespace:
//! ready jobs in one LIST per priority (cheaper than a ZSET in CPU and memory, and FIFO by
//! construction); delayed and retrying jobs, leases, the DLQ and finished jobs in ZSETs
//! scored by time; job records, payloads, results and errors as fields of four HASHes (so
//! scripts that find ids on the server never build a key name). Idle workers block on
//! `BZPOPMIN` of a marker ZSET instead of polling; every worker blocks on `XREAD` of the cancel
//! stream, which `cancel.lua` appends to when a running job is asked to cancel.
//!
//! The calls are grouped by concern: the job lifecycle in `jobs`, waiting for work in
//! `wait`, reading and operating the queue in `admin`, schedules in `schedules`. This
//! module holds the configuration and the backend type, whose [`Backend`] implementation
//! only forwards to them.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, NewJob};
use crate::stats::QueueStats;

mod admin;
mod call;
mod conn;
mod jobs;
pub mod keys;
mod record;
mod reply;
mod schedules;
mod scripts;
mod sentinel;
mod wait;

use call::Args;
use conn::Connector;
pub use conn::{RedisConnection, TlsFiles, redact_url};
use keys::Keys;
use scripts::Op;
use wait::Blocker;

/// How to reach Redis and where to keep this deployment's keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. A Redis Cluster
    /// is found by itself from the URL of any of its nodes; several seed nodes may be given
    /// as a comma-separated list (`redis://a:7000,redis://b:7001`). Redis Sentinel:
    /// `redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/db]`
    /// (`rediss+sentinel://` for TLS); the credentials and database are the master's, and
    /// every reconnect asks the sentinels for the current master.
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
    /// Durable writes (`JOBS_DURABLE_WRITES`): enqueues and schedule ticks are acknowledged
    /// only once this many replicas have them (`WAIT`), so that an acknowledged job survives
    /// a failover. 0 (the default) acknowledges as soon as the master has the write.
    pub durable_writes: u32,
    /// How long a durable write waits for its replicas before it fails with
    /// [`Error::NotReplicated`] (default 1 s; keep it below `response_timeout`).
    pub durable_timeout: Duration,
    /// Whether to call the scripts as Redis Functions (`FCALL` of one library loaded per
    /// server) where the server has them, Redis 7 and later (default true). Off, or on an
    /// older server, each call is an `EVALSHA` of a script that carries the shared Lua
    /// helpers, which Redis runs again at every call.
    pub use_functions: bool,
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
            durable_writes: 0,
            durable_timeout: Duration::from_secs(1),
            use_functions: true,
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
    /// Connections for `BZPOPMIN` and `XREAD BLOCK`. A blocking command holds its whole connection, so each
    /// concurrent waiter takes one of these instead of the shared multiplexed connection.
    blocking: Mutex<Vec<Blocker>>,
    /// Whether calls go as `FCALL` of the function library (else `EVALSHA`); see `call.rs`.
    functions: bool,
    /// Connections for durable writes: their `WAIT` holds the connection it is sent on
    /// until the replicas answer (up to `durable_timeout`), so it must not be the shared
    /// one, which every fetch, heartbeat and acknowledgement of the process goes through.
    durable: Mutex<Vec<RedisConnection>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("namespace", &self.cfg.namespace).finish()
    }
}

impl RedisBackend {
    /// Connects and checks the server answers. An unreachable server or a refused password
    /// is an error here, not later.
    pub async fn connect(cfg: RedisConfig) -> Result<Self> {
        let keys = Keys::new(&cfg.prefix, &cfg.namespace)?;
        let (connector, mut conn) = Connector::open(&cfg).await?;
        let functions =
            call::functions_available(&mut conn, keys.jobs(), cfg.use_functions).await?;
        Ok(RedisBackend {
            connector,
            conn,
            keys,
            cfg,
            blocking: Mutex::new(Vec::new()),
            functions,
            durable: Mutex::new(Vec::new()),
        })
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

    /// Whether calls go as Redis Functions (`FCALL`) rather than scripts (`EVALSHA`): see
    /// [`RedisConfig::use_functions`].
    pub fn uses_functions(&self) -> bool {
        self.functions
    }

    async fn run<T: ::redis::FromRedisValue>(
        &self,
        op: &Op,
        args: impl FnOnce(&mut Args),
    ) -> Result<T> {
        let mut a = Args::default();
        args(&mut a);
        Ok(self.call(op, None, &a).await?)
    }

    /// Runs a script that changes state under a new request id (its key after the
    /// namespace's, `KEYS[2]`, and [`Self::reply_ttl`] as the last argument), and sends
    /// it again with the same id, up to [`LOST_REPLY_RETRIES`] times, when its reply is lost
    /// (an I/O error: reset, timeout): the call may have run, and the script answers a
    /// repeat with the first run's reply (see `scripts.rs`). The cluster client also
    /// retries such errors, with the same arguments and so the same id.
    async fn run_retried<T: ::redis::FromRedisValue>(
        &self,
        op: &Op,
        args: impl FnOnce(&mut Args),
    ) -> Result<T> {
        self.resend_lost(op, Send { request_key: true, durable: false }, args).await
    }

    /// Sends a script call again when its reply is lost, as [`Self::run_retried`] does;
    /// with `how.request_key`, under a request id whose reply the script keeps for a
    /// repeat (without, only for a call whose repeat answers as the first did by itself).
    /// With `how.durable` and [`RedisConfig::durable_writes`] set (enqueue, schedule
    /// ticks), the call succeeds only once that many replicas confirmed it (`WAIT`), and
    /// fails with [`Error::NotReplicated`] otherwise.
    async fn resend_lost<T: ::redis::FromRedisValue>(
        &self,
        op: &Op,
        how: Send,
        args: impl FnOnce(&mut Args),
    ) -> Result<T> {
        let (request, a) = self.request(how.request_key, args);
        self.resend(op, how, request.as_deref(), &a, false).await
    }

    /// A new request id (with `with_key`) and the call's arguments, the reply TTL last
    /// when there is an id.
    fn request(&self, with_key: bool, args: impl FnOnce(&mut Args)) -> (Option<String>, Args) {
        let request = with_key.then(|| self.new_request_key());
        let mut a = Args::default();
        args(&mut a);
        if request.is_some() {
            a.arg(crate::time::duration_ms(self.reply_ttl()));
        }
        (request, a)
    }

    /// The key of a new request id (`KEYS[2]`, see [`Self::run_retried`]).
    fn new_request_key(&self) -> String {
        self.keys.request(&uuid::Uuid::new_v4().simple().to_string())
    }

    /// The sending loop of [`Self::resend_lost`]; with `lost`, for a call already sent once
    /// under `request` whose reply was lost (it counts as the first send).
    async fn resend<T: ::redis::FromRedisValue>(
        &self,
        op: &Op,
        how: Send,
        request: Option<&str>,
        a: &Args,
        lost: bool,
    ) -> Result<T> {
        let wanted = if how.durable { self.cfg.durable_writes } else { 0 };
        let mut delay = Duration::from_millis(20);
        let mut retries = 0;
        if lost {
            retries = 1;
            tokio::time::sleep(delay).await;
            delay *= 4;
        }
        loop {
            match self.send_once(op, request, a, wanted).await {
                Ok((v, acked)) => {
                    if acked < wanted {
                        let timeout_ms = crate::time::duration_ms(self.cfg.durable_timeout);
                        return Err(Error::NotReplicated { wanted, acked, timeout_ms });
                    }
                    return Ok(v);
                }
                Err(e) if e.is_io_error() && retries < LOST_REPLY_RETRIES => {
                    retries += 1;
                    tracing::debug!(error = %e, retries, "script reply lost; sending the call again");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One send of `op`; with `wanted` replicas, followed by `WAIT` (how many replicas
    /// confirmed, or 0 when none was asked for).
    async fn send_once<T: ::redis::FromRedisValue>(
        &self,
        op: &Op,
        request: Option<&str>,
        a: &Args,
        wanted: u32,
    ) -> ::redis::RedisResult<(T, u32)> {
        if wanted == 0 {
            return Ok((self.call(op, request, a).await?, 0));
        }
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(wanted).arg(crate::time::duration_ms(self.cfg.durable_timeout));
        // A connection of the durable pool, or a new one (given back only after a call
        // that went through: one that failed may be broken).
        let pooled = self.durable.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let timeout = self.cfg.response_timeout + self.cfg.durable_timeout;
                self.connector.dedicated(&self.cfg, timeout).await.map_err(|e| match e {
                    Error::Redis(r) => r,
                    other => ::redis::RedisError::from((
                        ::redis::ErrorKind::Io,
                        "cannot open a connection for durable writes",
                        other.to_string(),
                    )),
                })?
            }
        };
        let reply = if conn.is_cluster() {
            // The namespace's node connection carries both, one after the other.
            match self.call_on(&mut conn, op, request, a).await {
                Ok(value) => match conn.on_node_of(&wait, self.keys.jobs()).await {
                    Ok(acked) => Ok((value, acked)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        } else {
            // One request on one connection: WAIT counts the replicas that have every
            // earlier write of that connection, the call's included, and a reconnect cannot
            // come between the two.
            self.call_then(&mut conn, op, request, a, &wait).await
        };
        if reply.is_ok() {
            self.durable.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
        reply
    }
}

impl RedisBackend {
    /// How long a script keeps a call's reply for a repeat of the call: as long as this
    /// backend may send it again (each send may wait a response timeout, plus the pauses
    /// between them), with a second to spare. 21 s with the default 5 s timeout. The
    /// cluster client's own retries fit in the same bound.
    fn reply_ttl(&self) -> Duration {
        let sends = LOST_REPLY_RETRIES + 1;
        self.cfg.response_timeout.saturating_mul(sends) + Duration::from_secs(1)
    }
}

/// How a state-changing script call is sent ([`RedisBackend::resend_lost`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Send {
    /// Under a request id whose reply the script keeps for a resend.
    pub(super) request_key: bool,
    /// Confirmed by [`RedisConfig::durable_writes`] replicas before it succeeds.
    pub(super) durable: bool,
}

/// How many times [`RedisBackend::run_retried`] sends a call again after losing its reply
/// (after 20, 80 and 320 ms, time for the shared connection to reconnect).
const LOST_REPLY_RETRIES: u32 = 3;

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn for_current_runtime(&self) -> Result<Option<std::sync::Arc<dyn Backend>>> {
        // Its own connections (and their driver tasks) on the caller's runtime.
        Ok(Some(std::sync::Arc::new(RedisBackend::connect(self.cfg.clone()).await?)))
    }

    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>> {
        jobs::enqueue(self, jobs).await
    }

    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> {
        jobs::fetch(self, req).await
    }

    async fn wait_for(&self, max: Duration, queues: &[String]) -> Result<()> {
        wait::wait_for_work(self, max, queues).await
    }

    async fn wait_then_fetch(
        &self,
        max: Duration,
        req: &FetchRequest,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(Fetched, std::time::Instant)> {
        wait::wait_then_fetch(self, max, req, stop).await
    }

    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply> {
        jobs::heartbeat(self, beat).await
    }

    async fn progress(&self, update: &ProgressUpdate) -> Result<bool> {
        jobs::progress(self, update).await
    }

    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>> {
        jobs::complete(self, items).await
    }

    async fn fail(&self, f: &Failure) -> Result<FailOutcome> {
        jobs::fail(self, f).await
    }

    async fn give_back(&self, give: &GiveBack) -> Result<GiveBackOutcome> {
        jobs::give_back(self, give).await
    }

    async fn throttle(
        &self,
        lease: &Lease,
        delay: Duration,
    ) -> Result<crate::backend::ThrottleOutcome> {
        jobs::throttle(self, lease, delay).await
    }

    async fn limits(&self, max: usize) -> Result<Vec<crate::job::LimiterUsage>> {
        admin::limits(self, max).await
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        jobs::release(self, leases).await
    }

    async fn reap(&self, o: &ReapOptions) -> Result<ReapReport> {
        jobs::reap(self, o).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        jobs::cancel(self, id).await
    }

    async fn watch_cancels(
        &self,
        after: Option<&CancelCursor>,
        max: Duration,
    ) -> Result<CancelNotices> {
        wait::watch_cancels(self, after, max).await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        admin::get_job(self, id).await
    }

    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>> {
        admin::list_pending(self, priority, limit).await
    }

    async fn retry_now(&self, id: JobId) -> Result<()> {
        admin::retry_now(self, id).await
    }

    async fn list_jobs(&self, req: &ListRequest) -> Result<JobPage> {
        admin::list_jobs(self, req).await
    }

    async fn list_dead(&self, offset: usize, limit: usize) -> Result<Vec<Job>> {
        admin::list_dead(self, offset, limit).await
    }

    async fn retry_dead(&self, id: JobId) -> Result<()> {
        admin::retry_dead(self, id).await
    }

    async fn clear_dead(&self) -> Result<u64> {
        admin::clear_dead(self).await
    }

    async fn delete(&self, id: JobId) -> Result<()> {
        admin::delete(self, id).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        admin::stats(self).await
    }

    async fn queues(&self) -> Result<Vec<crate::stats::QueueInfo>> {
        admin::queues(self).await
    }

    async fn pause_queue(&self, name: &str, paused: bool) -> Result<bool> {
        admin::pause_queue(self, name, paused).await
    }

    async fn purge(&self, limit: usize) -> Result<u64> {
        admin::purge(self, limit).await
    }

    async fn throughput(&self) -> Result<Vec<ThroughputBucket>> {
        admin::throughput(self).await
    }

    async fn list_workers(&self, ttl: Duration) -> Result<Vec<WorkerEntry>> {
        admin::list_workers(self, ttl).await
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
        schedules::schedule_upsert(self, entry, hash, enabled, first_next).await
    }

    async fn schedule_set_enabled(
        &self,
        name: &str,
        enabled: bool,
        first_next: Option<DateTime<Utc>>,
    ) -> Result<StoredSchedule> {
        schedules::schedule_set_enabled(self, name, enabled, first_next).await
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool> {
        schedules::schedule_remove(self, name).await
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>> {
        schedules::schedule_get(self, name).await
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>> {
        schedules::schedule_list(self).await
    }

    async fn schedule_due(&self, limit: usize) -> Result<DueSchedules> {
        schedules::schedule_due(self, limit).await
    }

    async fn schedule_fire(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        schedules::schedule_fire(self, fire).await
    }
}
