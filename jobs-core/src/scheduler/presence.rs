//! Schedules that the backend lost: a Redis restarted without persistence comes back
//! empty, and the loop would fire nothing, silently, until the next restart of a process.
//!
//! The loop checks that the schedules this process declares (`#[every_seconds]`, `#[cron]`,
//! …) are still stored: at least once per [`SchedulerConfig::max_sleep`](super::SchedulerConfig),
//! and at once when the backend answers again after failing. A declared schedule that is
//! missing is stored again at once, with a warning. Schedules registered through the API
//! (or [`Scheduler::register`](super::Scheduler::register)) that this process had seen and
//! that are missing together with a declared one were lost with the backend's data: their
//! definitions are gone, so they are reported (an error in the log, `lost_tasks` in the
//! scheduler statistics, the `jobs_schedules_lost` metric) until they are registered again.
//!
//! The check is one listing of the schedules per interval; an idle deployment makes one
//! more backend call per `max_sleep`. A deployment that declares no schedules cannot tell a
//! loss from an operator's deletes: nothing is reported there.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::escape::Escaped;

use super::Scheduler;

/// What the loop knows of the stored schedules, between checks.
#[derive(Debug, Default)]
pub(super) struct Presence {
    /// Schedules not declared by this process, as last seen in the backend.
    known: BTreeSet<String>,
    /// Schedules not declared here that were lost with the backend's data, until registered
    /// again.
    lost: BTreeSet<String>,
    /// Declared schedules stored again after they went missing, since start.
    restored: u64,
}

impl Presence {
    /// A schedule was registered through this scheduler: it is known, and no longer lost.
    pub(super) fn registered(&mut self, name: &str, declared: bool) {
        self.lost.remove(name);
        if !declared {
            self.known.insert(name.to_owned());
        }
    }

    /// A schedule was deleted through this scheduler: its absence is no loss.
    pub(super) fn removed(&mut self, name: &str) {
        self.known.remove(name);
        self.lost.remove(name);
    }

    /// The lost schedules, by name.
    pub(super) fn lost(&self) -> Vec<String> {
        self.lost.iter().cloned().collect()
    }

    /// Declared schedules stored again since start.
    pub(super) fn restored(&self) -> u64 {
        self.restored
    }
}

impl Scheduler {
    /// Checks that the declared schedules are stored; stores the missing ones again and
    /// reports the operator's schedules lost with them. Returns how many were stored again.
    pub async fn check_presence(&self) -> Result<usize> {
        let stored = self.backend().schedule_list().await?;
        let present: BTreeSet<String> = stored.into_iter().map(|s| s.entry.name).collect();
        let declared: BTreeSet<&str> = self.inner.registry.schedules().map(|d| d.name).collect();
        let missing: Vec<&str> =
            declared.iter().copied().filter(|n| !present.contains(*n)).collect();
        let lost_now: Vec<String> = {
            let mut p = self.presence();
            let lost_now: Vec<String> = if missing.is_empty() {
                Vec::new()
            } else {
                p.known.iter().filter(|n| !present.contains(*n)).cloned().collect()
            };
            p.lost.extend(lost_now.iter().cloned());
            // Registered again by another process: no longer lost.
            p.lost.retain(|n| !present.contains(n));
            p.known = present.iter().filter(|n| !declared.contains(n.as_str())).cloned().collect();
            lost_now
        };
        if missing.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = missing.iter().map(|n| Escaped(n).to_string()).collect();
        tracing::warn!(
            missing = names.len(),
            schedules = %names.join(", "),
            "declared schedules are missing from the backend (did it lose its data, e.g. a \
             Redis restarted without persistence?); storing them again"
        );
        if !lost_now.is_empty() {
            let names: Vec<String> = lost_now.iter().map(|n| Escaped(n).to_string()).collect();
            tracing::error!(
                lost = names.len(),
                schedules = %names.join(", "),
                "schedules registered through the API were lost with the backend's data and \
                 cannot be recreated here: register them again"
            );
        }
        self.sync_registry().await?;
        self.presence().restored += missing.len() as u64;
        Ok(missing.len())
    }

    /// The presence record, locked.
    pub(super) fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.inner.presence.lock().unwrap_or_else(|e| e.into_inner())
    }
}
