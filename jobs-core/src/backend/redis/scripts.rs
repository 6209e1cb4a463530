//! The Lua scripts, one per atomic transition, each prefixed with `lib.lua`.
//!
//! `::redis::Script` sends `EVALSHA` and falls back to loading the script on `NOSCRIPT`
//! (after a Redis restart or failover), so callers never see a missing script.
//!
//! ## Request ids: a retried call has the effect of one
//!
//! A call whose reply is lost (a reset, a timeout) is sent again, by the cluster client or
//! by the backend ([`RedisBackend::run_retried`](super::RedisBackend)), although it may
//! have run. Each such call carries a request id, passed as the key `KEYS[23]`
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
/// Helpers of the schedule scripts (the schedule record format), prepended after `LIB`.
const SCHED_LIB: &str = include_str!("scripts/sched_lib.lua");

fn with_lib(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

fn with_sched_lib(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{SCHED_LIB}\n{body}"))
}

/// `body` run so that a repeat of one call (same request key, `KEYS[23]`) answers what
/// the first run answered and does nothing else. Without the key the body runs as it is.
/// With it, the last argument (after the body's own) is how long the reply is kept, ms.
/// The body becomes a function; its replies (tables, numbers, strings, error replies) are
/// stored with `cmsgpack`, which keeps integers exact.
fn with_replay(prelude: &str, body: &str) -> Script {
    Script::new(&format!(
        "{prelude}\n\
         local K_REQ = KEYS[23]\n\
         if K_REQ then\n  \
           local prev = redis.call('GET', K_REQ)\n  \
           if prev then return cmsgpack.unpack(prev) end\n\
         end\n\
         local reply = (function()\n{body}\nend)()\n\
         if K_REQ then\n  \
           redis.call('SET', K_REQ, cmsgpack.pack(reply), 'PX', tonumber(ARGV[#ARGV]))\n\
         end\n\
         return reply\n"
    ))
}

/// The schedule scripts (`sched_*.lua`), loaded once per process.
pub(crate) struct SchedScripts {
    pub(crate) upsert: Script,
    pub(crate) enable: Script,
    pub(crate) remove: Script,
    pub(crate) read: Script,
    pub(crate) due: Script,
    pub(crate) fire: Script,
}

pub(crate) static SCHED_SCRIPTS: LazyLock<SchedScripts> = LazyLock::new(|| {
    let libs = format!("{LIB}\n{SCHED_LIB}");
    SchedScripts {
        upsert: with_replay(&libs, include_str!("scripts/sched_upsert.lua")),
        enable: with_replay(&libs, include_str!("scripts/sched_enable.lua")),
        remove: with_replay(&libs, include_str!("scripts/sched_remove.lua")),
        read: with_sched_lib(include_str!("scripts/sched_read.lua")),
        due: with_sched_lib(include_str!("scripts/sched_due.lua")),
        fire: with_replay(&libs, include_str!("scripts/sched_fire.lua")),
    }
});

/// The job scripts whose reply is stored for a retry of the call ([`with_replay`]); with
/// `fetch` (which keeps its leases its own way) and the schedule scripts that write, every
/// call whose repeat would answer otherwise than the first. Not here: `complete` (the hot
/// path; fenced by the attempt, a repeat answers `Already`, or `Cancelled` again),
/// `heartbeat` (a repeat extends the same leases and answers the same), `reap` (its lock
/// makes a repeat within the interval a no-op), and `purge` (a repeat purges what a later
/// call would).
const REPLAYED: &[&str] =
    &["enqueue.lua", "cancel.lua", "retry_dead.lua", "fail.lua", "release.lua", "clear_dead.lua"];

fn job_script(file: &str, body: &str) -> Script {
    if REPLAYED.contains(&file) { with_replay(LIB, body) } else { with_lib(body) }
}

macro_rules! scripts {
    ($($name:ident => $file:literal),* $(,)?) => {
        /// Every script, loaded once per process.
        pub(crate) struct Scripts { $(pub(crate) $name: Script,)* }
        pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
            $($name: job_script($file, include_str!(concat!("scripts/", $file))),)*
        });
    };
}

scripts! {
    enqueue => "enqueue.lua",
    fetch => "fetch.lua",
    heartbeat => "heartbeat.lua",
    complete => "complete.lua",
    fail => "fail.lua",
    release => "release.lua",
    give_back => "give_back.lua",
    reap => "reap.lua",
    cancel => "cancel.lua",
    retry_dead => "retry_dead.lua",
    clear_dead => "clear_dead.lua",
    purge => "purge.lua",
    workers => "workers.lua",
    throughput => "throughput.lua",
    stats => "stats.lua",
}
