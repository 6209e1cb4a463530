//! Every Redis key of a namespace is built here and nowhere else.
//!
//! Keys are `<prefix>:{<namespace>}:<suffix>`. The braces are a Redis Cluster hash tag: all
//! keys of one namespace hash to one slot, so every script can touch any of them, on a
//! single server and on a cluster alike. A script call declares one key, the jobs hash
//! ([`Keys::jobs`]: the slot it runs in), and a request key when it may be retried;
//! `lib.lua` builds the others from the same base and `SUFFIXES`, in this order ([`Keys::all`]
//! lists the same names for the client), and a named queue's own keys (its four pending
//! lists and its marker, [`Keys::queue_pending`], [`Keys::queue_marker`]) from the names in
//! the jobs' records and the worker's call.

use crate::error::{Error, Result};

/// Position of each key in [`Keys::all`]; `lib.lua` builds them in this order (`KK`), from
/// this list (the scripts' source is prefixed with it).
pub(super) const SUFFIXES: [&str; 31] = [
    "jobs",        // HASH id -> record: hot state '|' meta JSON [newline args JSON] (record.rs)
    "results",     // HASH id -> result JSON
    "errors",      // HASH id -> last error text
    "pending:0",   // LIST of ready ids, critical (RPUSH at the tail, LPOP at the head)
    "pending:1",   // LIST, high
    "pending:2",   // LIST, normal
    "pending:3",   // LIST, low
    "scheduled",   // ZSET id -> due ms (delayed jobs)
    "retry",       // ZSET id -> due ms (retrying jobs)
    "active",      // ZSET id -> lease deadline ms (running jobs)
    "dead",        // ZSET id -> died ms (the dead-letter queue)
    "finished",    // ZSET id -> expiry ms (completed and cancelled jobs; the retention index)
    "marker",      // ZSET "0" -> 0 (work ready) | "1" -> earliest due ms; the BZPOPMIN target
    "counters",    // HASH counter name -> integer (monotonic counters and ghost counts)
    "workers",     // ZSET worker id -> last heartbeat ms
    "worker_info", // HASH worker id -> JSON the worker reports about itself
    "reap_lock",   // STRING, SET NX PX: at most one reap per interval across processes
    "cron",        // HASH schedule name -> definition JSON (scheduler)
    "cron_due",    // ZSET schedule name -> next run ms (scheduler)
    "throughput",  // HASH 60-slot ring of per-minute counts: m<slot> minute, c<slot>, f<slot>
    "cancels",     // STREAM of cancel requests of running jobs: i <id> a <attempt>; XREAD target
    "ghosts",      // HASH id -> list entries a cancel left behind for it (ghosts), while any
    "unique",      // HASH uniqueness key -> "<expiry ms> <holder id>" (the locks held)
    "unique_jobs", // HASH id -> d|s<key>: the lock job id holds, and which transition ends it
    "progress",    // HASH id -> the progress its handler last reported, JSON
    "due",         // ZSET "1" -> earliest due ms of a delayed or retrying job; BZPOPMIN target
    "queues",      // HASH queue name -> 'a' | 'p' (paused): the named queues, and pauses
    "limits",      // HASH id -> its limiters, JSON [["r",name,max,per ms],["c",name,max]]
    "lim_due",     // ZSET limiter name -> when its parked jobs may go (a slot opens)
    "lim_keys",    // HASH limiter name -> "r <max> <per ms>" | "c <max>": limiters in use
    "lim_block",   // HASH limiter name -> ms until which ctx.rate_limited holds it closed
];

/// The key names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    all: Vec<String>,
    /// `<prefix>:{<namespace>}:`, the start of every key.
    base: String,
}

impl Keys {
    /// Builds the keys of `namespace` under `prefix`. Both must be non-empty and free of
    /// braces (a brace would break the hash tag) and of whitespace.
    pub fn new(prefix: &str, namespace: &str) -> Result<Self> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && !s.contains(['{', '}'])
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !ok(prefix) {
            return Err(Error::Config(format!(
                "invalid redis key prefix `{prefix}`: 1-100 characters, no braces or spaces"
            )));
        }
        if !ok(namespace) {
            return Err(Error::Config(format!(
                "invalid namespace `{namespace}`: 1-100 characters, no braces or spaces"
            )));
        }
        let base = format!("{prefix}:{{{namespace}}}:");
        Ok(Keys { all: SUFFIXES.iter().map(|s| format!("{base}{s}")).collect(), base })
    }

    /// Every key, in the order the scripts expect them as `KEYS[1..]`.
    pub fn all(&self) -> &[String] {
        &self.all
    }

    fn at(&self, suffix: &str) -> &str {
        let i = SUFFIXES.iter().position(|s| *s == suffix).unwrap_or(0);
        &self.all[i]
    }

    /// HASH id → record.
    pub fn jobs(&self) -> &str {
        self.at("jobs")
    }
    /// HASH id → result JSON.
    pub fn results(&self) -> &str {
        self.at("results")
    }
    /// HASH id → last error.
    pub fn errors(&self) -> &str {
        self.at("errors")
    }
    /// LIST of ready ids of priority `p` (0 = critical … 3 = low).
    pub fn pending(&self, p: usize) -> &str {
        &self.all[3 + p.min(3)]
    }
    /// ZSET of delayed jobs.
    pub fn scheduled(&self) -> &str {
        self.at("scheduled")
    }
    /// ZSET of retrying jobs.
    pub fn retry(&self) -> &str {
        self.at("retry")
    }
    /// ZSET of running jobs by lease deadline.
    pub fn active(&self) -> &str {
        self.at("active")
    }
    /// ZSET, the dead-letter queue.
    pub fn dead(&self) -> &str {
        self.at("dead")
    }
    /// ZSET, finished jobs by expiry.
    pub fn finished(&self) -> &str {
        self.at("finished")
    }
    /// ZSET, the wake-up marker workers block on.
    pub fn marker(&self) -> &str {
        self.at("marker")
    }
    /// HASH of counters.
    pub fn counters(&self) -> &str {
        self.at("counters")
    }
    /// ZSET of workers by last heartbeat.
    pub fn workers(&self) -> &str {
        self.at("workers")
    }
    /// HASH worker → info JSON.
    pub fn worker_info(&self) -> &str {
        self.at("worker_info")
    }
    /// HASH of schedule definitions.
    pub fn cron(&self) -> &str {
        self.at("cron")
    }
    /// ZSET of schedules by next run.
    pub fn cron_due(&self) -> &str {
        self.at("cron_due")
    }
    /// HASH, the per-minute throughput ring.
    pub fn throughput(&self) -> &str {
        self.at("throughput")
    }
    /// STREAM, the cancel requests of running jobs that workers block on.
    pub fn cancels(&self) -> &str {
        self.at("cancels")
    }
    /// STRING, the stored reply of one state-changing call (`req:<request id>`), kept a
    /// short while so that a retry of the call answers what the call did (see `scripts.rs`).
    /// Not in [`Keys::all`]: a call that has one passes it as `KEYS[2]`, after the jobs key.
    pub fn request(&self, request_id: &str) -> String {
        format!("{}req:{request_id}", self.base)
    }
    /// HASH id → how many of its list entries are left behind by cancels (see `lib.lua`).
    pub fn ghosts(&self) -> &str {
        self.at("ghosts")
    }
    /// HASH of uniqueness locks: key → `"<expiry ms> <holder id>"` (see `lib.lua`).
    pub fn unique(&self) -> &str {
        self.at("unique")
    }
    /// HASH id → `d` or `s` (the window ends when the job is done, or starts) and the key
    /// of the lock job `id` holds.
    pub fn unique_jobs(&self) -> &str {
        self.at("unique_jobs")
    }
    /// HASH id → the job's last progress report, JSON (`{"percent":..,"message":..}`).
    pub fn progress(&self) -> &str {
        self.at("progress")
    }
    /// ZSET, the due-time marker every worker blocks on besides its queues' markers.
    pub fn due(&self) -> &str {
        self.at("due")
    }
    /// HASH queue name → `a` or `p` (paused): every named queue, and which are paused.
    pub fn queues(&self) -> &str {
        self.at("queues")
    }
    /// LIST of ready ids of queue `queue`, priority `p` ([`pending`](Self::pending) for
    /// the default queue, `""` or `"default"`). The name must have passed
    /// [`check_queue_name`](crate::flow::check_queue_name).
    pub fn queue_pending(&self, queue: &str, p: usize) -> String {
        if is_default(queue) {
            return self.pending(p).to_owned();
        }
        format!("{}q:{queue}:pending:{}", self.base, p.min(3))
    }
    /// ZSET, the wake-up marker of queue `queue`'s workers ([`marker`](Self::marker) for
    /// the default queue).
    pub fn queue_marker(&self, queue: &str) -> String {
        if is_default(queue) {
            return self.marker().to_owned();
        }
        format!("{}q:{queue}:marker", self.base)
    }
}

/// Whether `queue` names the default queue (`""` is how scripts spell it).
pub(crate) fn is_default(queue: &str) -> bool {
    queue.is_empty() || queue == crate::flow::DEFAULT_QUEUE
}

/// How scripts spell queue `queue`: `""` for the default one.
pub(crate) fn script_name(queue: &str) -> &str {
    if is_default(queue) { "" } else { queue }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_one_hash_tag() -> Result<()> {
        let k = Keys::new("jobq", "prod")?;
        assert_eq!(k.all().len(), 31);
        assert_eq!(k.queue_pending("pay", 1), "jobq:{prod}:q:pay:pending:1");
        assert_eq!(k.queue_pending("default", 1), "jobq:{prod}:pending:1");
        assert_eq!(k.queue_marker("pay"), "jobq:{prod}:q:pay:marker");
        assert_eq!(k.queue_marker(""), k.marker());
        assert_eq!(k.unique(), "jobq:{prod}:unique");
        assert!(k.all().iter().all(|s| s.starts_with("jobq:{prod}:")));
        assert_eq!(k.pending(2), "jobq:{prod}:pending:2");
        assert_eq!(k.jobs(), "jobq:{prod}:jobs");
        assert_eq!(k.cron_due(), "jobq:{prod}:cron_due");
        assert_eq!(k.cancels(), "jobq:{prod}:cancels");
        assert_eq!(k.request("r1"), "jobq:{prod}:req:r1");
        Ok(())
    }

    #[test]
    fn braces_and_blanks_are_refused() {
        assert!(Keys::new("jobq", "a{b").is_err());
        assert!(Keys::new("jobq", "a}b").is_err());
        assert!(Keys::new("jo{bq", "a").is_err());
        assert!(Keys::new("jobq", "").is_err());
        assert!(Keys::new("jobq", "a b").is_err());
    }
}
