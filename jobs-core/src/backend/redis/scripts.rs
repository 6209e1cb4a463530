//! The Lua scripts, one per atomic transition, sent two ways: as one Redis Functions
//! library ([`LIBRARY`], `FCALL`; Redis 7 and later), or, on a server without Functions,
//! as scripts each prefixed with `lib.lua` (`EVALSHA`).
//!
//! ## The library
//!
//! `lib.lua`, `sched_lib.lua` and every script become one library, `jobs_<hash>`, whose
//! helpers are defined once when it is loaded instead of at every call (most of a call's
//! time in the Lua interpreter was spent re-running them). Each script's body becomes a
//! local function, registered as `jobs_<hash>_<op>`: it sets `KEYS` and `ARGV` (library
//! locals, so the bodies read as scripts do) and the key names (`bind()` in `lib.lua`),
//! then runs the body. The hash is of the sources, so two versions of this crate load two
//! libraries side by side and never replace each other's (a rolling deploy works between
//! versions that share the record format: not across the change to the binary hot state,
//! which older versions cannot read; see the README's "Upgrading"). The backend
//! loads it at connect and again on a node that answers `Function not found` (a restarted
//! server, a new cluster master); see `call.rs`.
//!
//! ## Scripts
//!
//! `::redis::Script` sends `EVALSHA` and falls back to loading the script on `NOSCRIPT`
//! (after a Redis restart or failover), so callers never see a missing script.
//!
//! ## Request ids: a retried call has the effect of one
//!
//! A call whose reply is lost (a reset, a timeout) is sent again, by the cluster client or
//! by the backend ([`RedisBackend::run_retried`](super::RedisBackend)), although it may
//! have run. Each such call carries a request id, passed as the key `KEYS[2]`
//! ([`Keys::request`](super::keys::Keys::request), in the namespace's hash slot). The
//! scripts in [`REPLAYED`] are wrapped by [`with_replay`]: the first run stores its reply
//! there (`SET PX`, in the same atomic step as its writes), and a run that finds it
//! returns it and changes nothing. `fetch` keeps only the leases it handed out, and a retry
//! gets those still held (`fetch.lua`). Both keep what they store as long as the backend
//! may still send the call again (`RedisBackend::reply_ttl`), no longer: memory grows with
//! the call rate times that, and every key expires by itself.

use std::sync::LazyLock;

use ::redis::Script;

const LIB: &str = include_str!("scripts/lib.lua");
/// Helpers of the schedule scripts (the schedule record format), after `LIB`.
const SCHED_LIB: &str = include_str!("scripts/sched_lib.lua");
/// Rate and concurrency limits (`limits_lib.lua`), after `LIB`, for every script.
const LIMITS_LIB: &str = include_str!("scripts/limits_lib.lua");

/// One atomic transition: its script (for `EVALSHA`) and its name in [`LIBRARY`].
pub(crate) struct Op {
    pub(crate) script: Script,
    pub(crate) function: String,
}

/// `body` run so that a repeat of one call (same request key, `KEYS[2]`) answers what
/// the first run answered and does nothing else. Without the key the body runs as it is.
/// With it, the last argument (after the body's own) is how long the reply is kept, ms.
/// The body becomes a function; its replies (tables, numbers, strings, error replies) are
/// stored with `cmsgpack`, which keeps integers exact.
fn with_replay(body: &str) -> String {
    format!(
        "local K_REQ = KEYS[2]\n\
         if K_REQ then\n  \
           local prev = redis.call('GET', K_REQ)\n  \
           if prev then return cmsgpack.unpack(prev) end\n\
         end\n\
         local reply = (function()\n{body}\nend)()\n\
         if K_REQ then\n  \
           redis.call('SET', K_REQ, cmsgpack.pack(reply), 'PX', tonumber(ARGV[#ARGV]))\n\
         end\n\
         return reply\n"
    )
}

/// The job scripts whose reply is stored for a retry of the call ([`with_replay`]); with
/// `fetch` (which keeps its leases its own way) and the schedule scripts that write, every
/// call whose repeat would answer otherwise than the first. Not here: `complete` (the hot
/// path; fenced by the attempt, a repeat answers `Already`, or `Cancelled` again),
/// `heartbeat` (a repeat extends the same leases and answers the same), `reap` (its lock
/// makes a repeat within the interval a no-op), and `purge` (a repeat purges what a later
/// call would).
const REPLAYED: &[&str] = &[
    "enqueue.lua",
    "cancel.lua",
    "retry_dead.lua",
    "retry_now.lua",
    "fail.lua",
    "release.lua",
    "clear_dead.lua",
    "delete.lua",
    "throttle.lua",
    "queue_pause.lua",
    "sched_upsert.lua",
    "sched_enable.lua",
    "sched_remove.lua",
    "sched_fire.lua",
];

/// Every script: (name, file, source).
const SOURCES: &[(&str, &str, &str)] = &[
    ("enqueue", "enqueue.lua", include_str!("scripts/enqueue.lua")),
    ("fetch", "fetch.lua", include_str!("scripts/fetch.lua")),
    ("heartbeat", "heartbeat.lua", include_str!("scripts/heartbeat.lua")),
    ("progress", "progress.lua", include_str!("scripts/progress.lua")),
    ("complete", "complete.lua", include_str!("scripts/complete.lua")),
    ("fail", "fail.lua", include_str!("scripts/fail.lua")),
    ("release", "release.lua", include_str!("scripts/release.lua")),
    ("give_back", "give_back.lua", include_str!("scripts/give_back.lua")),
    ("reap", "reap.lua", include_str!("scripts/reap.lua")),
    ("cancel", "cancel.lua", include_str!("scripts/cancel.lua")),
    ("retry_dead", "retry_dead.lua", include_str!("scripts/retry_dead.lua")),
    ("retry_now", "retry_now.lua", include_str!("scripts/retry_now.lua")),
    ("clear_dead", "clear_dead.lua", include_str!("scripts/clear_dead.lua")),
    ("delete", "delete.lua", include_str!("scripts/delete.lua")),
    ("purge", "purge.lua", include_str!("scripts/purge.lua")),
    ("workers", "workers.lua", include_str!("scripts/workers.lua")),
    ("throughput", "throughput.lua", include_str!("scripts/throughput.lua")),
    ("stats", "stats.lua", include_str!("scripts/stats.lua")),
    ("queues", "queues.lua", include_str!("scripts/queues.lua")),
    ("queue_pause", "queue_pause.lua", include_str!("scripts/queue_pause.lua")),
    ("throttle", "throttle.lua", include_str!("scripts/throttle.lua")),
    ("limits", "limits.lua", include_str!("scripts/limits.lua")),
    ("list_jobs", "list_jobs.lua", include_str!("scripts/list_jobs.lua")),
    ("sched_upsert", "sched_upsert.lua", include_str!("scripts/sched_upsert.lua")),
    ("sched_enable", "sched_enable.lua", include_str!("scripts/sched_enable.lua")),
    ("sched_remove", "sched_remove.lua", include_str!("scripts/sched_remove.lua")),
    ("sched_read", "sched_read.lua", include_str!("scripts/sched_read.lua")),
    ("sched_due", "sched_due.lua", include_str!("scripts/sched_due.lua")),
    ("sched_fire", "sched_fire.lua", include_str!("scripts/sched_fire.lua")),
];

/// The code a call runs after the prelude: the body, wrapped if its reply is replayed.
fn code(file: &str, body: &str) -> String {
    if REPLAYED.contains(&file) { with_replay(body) } else { body.to_owned() }
}

/// `local SUFFIXES = {...}`: the namespace's key suffixes in [`Keys`](super::keys::Keys)'
/// order, which `lib.lua`'s `bind()` builds the key names from.
fn suffixes() -> String {
    let list: Vec<String> = super::keys::SUFFIXES.iter().map(|s| format!("'{s}'")).collect();
    format!("local SUFFIXES = {{ {} }}\n", list.join(", "))
}

/// The library: its name and its source (for `FUNCTION LOAD`).
pub(crate) struct Library {
    pub(crate) name: String,
    pub(crate) source: String,
}

/// The one library of every script (see the module docs).
pub(crate) static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut defs = format!("local KEYS, ARGV\n{}{LIB}\n{LIMITS_LIB}\n{SCHED_LIB}\n", suffixes());
    for (name, file, body) in SOURCES {
        defs.push_str(&format!("local function op_{name}()\n{}\nend\n", code(file, body)));
    }
    for (op, _, _) in SOURCES {
        defs.push_str(&format!(
            "redis.register_function('@LIB@_{op}', function(keys, args)\n  \
               KEYS, ARGV = keys, args\n  bind()\n  return op_{op}()\nend)\n"
        ));
    }
    // The hash of everything but the name, which `@LIB@` stands for until it is known.
    let name = format!("jobs_{}", &Script::new(&defs).get_hash()[..8]);
    let source = format!("#!lua name={name}\n{}", defs.replace("@LIB@", &name));
    Library { name, source }
});

fn op(name: &str) -> Op {
    let (_, file, body) = SOURCES.iter().find(|(n, _, _)| *n == name).expect("a listed script");
    let lib = format!("{}{LIB}\n{LIMITS_LIB}", suffixes());
    let prelude = if name.starts_with("sched_") { format!("{lib}\n{SCHED_LIB}") } else { lib };
    Op {
        script: Script::new(&format!("{prelude}\nbind()\n{}", code(file, body))),
        function: format!("{}_{name}", LIBRARY.name),
    }
}

/// The schedule scripts (`sched_*.lua`), built once per process.
pub(crate) struct SchedScripts {
    pub(crate) upsert: Op,
    pub(crate) enable: Op,
    pub(crate) remove: Op,
    pub(crate) read: Op,
    pub(crate) due: Op,
    pub(crate) fire: Op,
}

pub(crate) static SCHED_SCRIPTS: LazyLock<SchedScripts> = LazyLock::new(|| SchedScripts {
    upsert: op("sched_upsert"),
    enable: op("sched_enable"),
    remove: op("sched_remove"),
    read: op("sched_read"),
    due: op("sched_due"),
    fire: op("sched_fire"),
});

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        /// Every job script, built once per process.
        pub(crate) struct Scripts { $(pub(crate) $name: Op,)* }
        pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
            $($name: op(stringify!($name)),)*
        });
    };
}

scripts! {
    enqueue, fetch, heartbeat, progress, complete, fail, release, give_back, reap, cancel,
    retry_dead, clear_dead, purge, workers, throughput, stats, list_jobs, retry_now, queues,
    queue_pause, delete, throttle, limits,
}
