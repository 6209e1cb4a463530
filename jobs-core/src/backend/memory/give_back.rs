//! `give_back` on the in-memory state: a delivery whose handler its worker lacks goes back
//! as a delayed job without using a retry, counted per name, or to the dead-letter queue
//! once no live worker has had the handler for the time given (lib.lua's `give_back`).

use super::state::State;
use crate::backend::{
    FailOutcome, GiveBack, GiveBackOutcome, UNHANDLED_GAP, UNHANDLED_NAMES_MAX, UNHANDLED_OTHER,
};
use crate::retry::RetryPolicy;
use crate::time::{duration_ms_i64, ms_to_time};

impl State {
    pub(super) fn give_back(&mut self, give: &GiveBack) -> GiveBackOutcome {
        let now = self.now();
        let lease = &give.lease;
        let Some(rec) = self.jobs.get(&lease.id).filter(|r| r.is_held_by(lease)) else {
            return GiveBackOutcome::Stale;
        };
        let cancel = rec.cancel_requested;
        // Out of `running`: its concurrency slot goes to the next parked job.
        self.free_slots(lease.id, now);
        if cancel {
            self.finish_cancelled(lease.id, now);
            return GiveBackOutcome::Cancelled;
        }
        let key = if self.unhandled.contains_key(&give.name)
            || self.unhandled.len() < UNHANDLED_NAMES_MAX
        {
            give.name.clone()
        } else {
            UNHANDLED_OTHER.to_owned()
        };
        let u = self.unhandled.entry(key).or_default();
        u.count += 1;
        u.last = now;
        if give.handled_elsewhere {
            u.run = None;
        } else {
            let since = match u.run {
                Some((since, seen)) if now - seen <= duration_ms_i64(UNHANDLED_GAP) => since,
                _ => now,
            };
            u.run = Some((since, now));
            if now - since >= duration_ms_i64(give.dead_after) {
                let out = self.fail_running(
                    lease.id,
                    now,
                    &give.dead_error(),
                    false,
                    &RetryPolicy::default(),
                    None,
                );
                return match out {
                    FailOutcome::Dead => GiveBackOutcome::Dead,
                    FailOutcome::Cancelled => GiveBackOutcome::Cancelled,
                    FailOutcome::Retrying { .. } | FailOutcome::Stale => GiveBackOutcome::Stale,
                };
            }
        }
        let due = now.saturating_add(duration_ms_i64(give.delay));
        self.unlink(lease.id);
        self.schedule(lease.id, due, false);
        GiveBackOutcome::Delayed { at: ms_to_time(due).unwrap_or_default() }
    }
}
