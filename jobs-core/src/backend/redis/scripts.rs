//! The Lua scripts, one per atomic transition, each prefixed with `lib.lua`.
//!
//! `::redis::Script` sends `EVALSHA` and falls back to loading the script on `NOSCRIPT`
//! (after a Redis restart or failover), so callers never see a missing script.

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

/// The schedule scripts (`sched_*.lua`), loaded once per process.
pub(crate) struct SchedScripts {
    pub(crate) upsert: Script,
    pub(crate) enable: Script,
    pub(crate) remove: Script,
    pub(crate) read: Script,
    pub(crate) due: Script,
    pub(crate) fire: Script,
}

pub(crate) static SCHED_SCRIPTS: LazyLock<SchedScripts> = LazyLock::new(|| SchedScripts {
    upsert: with_sched_lib(include_str!("scripts/sched_upsert.lua")),
    enable: with_sched_lib(include_str!("scripts/sched_enable.lua")),
    remove: with_sched_lib(include_str!("scripts/sched_remove.lua")),
    read: with_sched_lib(include_str!("scripts/sched_read.lua")),
    due: with_sched_lib(include_str!("scripts/sched_due.lua")),
    fire: with_sched_lib(include_str!("scripts/sched_fire.lua")),
});

macro_rules! scripts {
    ($($name:ident => $file:literal),* $(,)?) => {
        /// Every script, loaded once per process.
        pub(crate) struct Scripts { $(pub(crate) $name: Script,)* }
        pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
            $($name: with_lib(include_str!(concat!("scripts/", $file))),)*
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
