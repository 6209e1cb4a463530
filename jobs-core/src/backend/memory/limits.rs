//! Rate and concurrency limits on the in-memory state (the contract is in
//! [`backend::limits`](crate::backend::limits)): the same model and the same steps as the
//! Redis backend's `limits_lib.lua` (admit, park, unpark, free_slots, extend_slot,
//! unpark_due, unpark_remove), `throttle.lua` and `limits.lua`.
//!
//! Per limiter name, a [`LimiterState`](super::limiters::LimiterState) (in `limiters.rs`)
//! holds what Redis keeps under that name in separate keys: its bounds (`lim_keys`), its
//! starts or slot holders (`lim:<name>`), its parked jobs (`limp:<name>`) and its hold
//! (`lim_block`). When its parked jobs may go next (`lim_due`) is kept apart, in
//! [`Limits::due`](super::limiters::Limits::due), as Redis keeps it apart: it outlives a
//! limiter that `limits()` forgets.

use std::time::Duration;

use super::limiters::{Bounds, UNPARK_MAX, UNPARK_SKIP};
use super::state::{Place, State};
use crate::backend::Lease;
use crate::backend::limits::{LIMIT_RESERVATION, LIMITS_LIST_MAX, ThrottleOutcome};
use crate::job::{JobId, JobLimits, JobStatus, Limiter, LimiterKind, LimiterUsage};
use crate::time::{duration_ms_i64, ms_to_time};

/// The name of the concurrency limiter of `limits`, if it has one.
fn concurrency_of(limits: Option<&JobLimits>) -> Option<String> {
    limits?.limiters.iter().find(|l| matches!(l, Limiter::Concurrency { .. })).map(Limiter::name)
}

impl State {
    /// Sets a limiter's due time as
    /// [`Limits::set_due`](super::limiters::Limits::set_due) does, waking waiters if it is
    /// the earliest due time now (`mark_due`).
    fn set_limiter_due(&mut self, name: &str, due: i64, lower: bool) {
        let earliest = self.earliest_due();
        self.limits.set_due(name, due, lower);
        if earliest.is_none_or(|e| due < e) {
            self.wake = true;
        }
    }

    /// Whether job `id` may start now under `limits` (`admit`): if so its starts are logged
    /// and its slot taken (until `deadline`), and `None`. Else the index of the limiter that
    /// refuses it and when that one opens (`None`: when a slot frees). Slots held past their
    /// deadline plus `grace` are dropped first.
    pub(super) fn admit(
        &mut self,
        id: JobId,
        limits: &JobLimits,
        now: i64,
        grace: i64,
        deadline: i64,
    ) -> Option<(usize, Option<i64>)> {
        for (i, l) in limits.limiters.iter().enumerate() {
            let Limiter::Rate { max, per, .. } = l else { continue };
            let Some(lim) = self.limits.by_name.get_mut(&l.name()) else { continue };
            if let Some(block) = lim.block {
                if block > now {
                    return Some((i, Some(block)));
                }
                lim.block = None;
            }
            let per = duration_ms_i64(*per);
            lim.prune_starts(now, per);
            let (c, max) = (lim.starts.len(), *max as usize);
            if c >= max {
                // The start whose leaving makes room.
                return Some((i, Some(lim.starts[c - max].saturating_add(per))));
            }
        }
        for (i, l) in limits.limiters.iter().enumerate() {
            let Limiter::Concurrency { max, .. } = l else { continue };
            let Some(lim) = self.limits.by_name.get_mut(&l.name()) else { continue };
            let cutoff = now.saturating_sub(grace);
            lim.holders.retain(|_, d| *d > cutoff);
            if !lim.holders.contains_key(&id) && lim.holders.len() >= *max as usize {
                return Some((i, None));
            }
        }
        for l in &limits.limiters {
            let lim = self.limits.by_name.entry(l.name()).or_default();
            match l {
                Limiter::Rate { .. } => {
                    let at = lim.starts.partition_point(|&t| t <= now);
                    lim.starts.insert(at, now);
                }
                Limiter::Concurrency { .. } => {
                    lim.holders.insert(id, deadline);
                }
            }
            lim.bounds = Some(Bounds::of(l));
        }
        None
    }

    /// Parks job `id` (unlinked, or popped from its ready list) on its limiter number `idx`,
    /// at the tail of its jobs (at the head with `first`); `due`: when the limiter opens
    /// (`None`: when a slot frees).
    pub(super) fn park(&mut self, id: JobId, idx: usize, due: Option<i64>, first: bool) {
        let Some(rec) = self.jobs.get_mut(&id) else { return };
        let Some(l) = rec.limits.as_ref().and_then(|ls| ls.limiters.get(idx)) else { return };
        let name = l.name();
        let bounds = Bounds::of(l);
        rec.status = JobStatus::Pending;
        rec.place = Place::Parked { limiter: idx };
        let entry = (id, rec.generation);
        let lim = self.limits.by_name.entry(name.clone()).or_default();
        if first {
            lim.parked.push_front(entry);
        } else {
            lim.parked.push_back(entry);
        }
        lim.bounds = Some(bounds);
        if let Some(due) = due {
            self.set_limiter_due(&name, due, true);
        }
    }

    /// Takes parked job `id` out of the jobs of its limiter number `idx` (a cancel).
    pub(super) fn unpark_remove(&mut self, id: JobId, idx: usize) {
        let Some(name) = self
            .jobs
            .get(&id)
            .and_then(|r| r.limits.as_ref())
            .and_then(|ls| ls.limiters.get(idx))
            .map(Limiter::name)
        else {
            return;
        };
        if let Some(lim) = self.limits.by_name.get_mut(&name)
            && let Some(at) = lim.parked.iter().position(|(j, _)| *j == id)
        {
            lim.parked.remove(at);
        }
    }

    /// Moves parked jobs of limiter `name` back to the head of their ready lists, in the
    /// order they were parked, as many as it has slots free now; a concurrency limiter
    /// reserves each one its slot. If jobs stay parked, sets when it is looked at again.
    fn unpark(&mut self, name: &str, now: i64) {
        let Some(lim) = self.limits.by_name.get_mut(name) else {
            self.limits.clear_due(name);
            return;
        };
        let bounds = lim.bounds;
        let free = match bounds {
            Some(Bounds::Rate { max, per }) => {
                if let Some(block) = lim.block.filter(|&b| b > now) {
                    self.set_limiter_due(name, block, false);
                    return;
                }
                lim.prune_starts(now, per);
                i64::from(max) - lim.starts.len() as i64
            }
            Some(Bounds::Concurrency { max }) => i64::from(max) - lim.holders.len() as i64,
            None => 1,
        };
        let free = usize::try_from(free).unwrap_or(0).min(UNPARK_MAX);
        let (mut moved, mut skipped) = (Vec::new(), 0);
        while moved.len() < free && skipped < UNPARK_SKIP {
            let Some((id, generation)) = lim.parked.pop_front() else { break };
            let parked = self.jobs.get(&id).is_some_and(|r| {
                r.status == JobStatus::Pending
                    && matches!(r.place, Place::Parked { .. })
                    && r.generation == generation
            });
            if parked {
                moved.push(id);
                if matches!(bounds, Some(Bounds::Concurrency { .. })) {
                    let until = now.saturating_add(duration_ms_i64(LIMIT_RESERVATION));
                    lim.holders.insert(id, until);
                }
            } else {
                skipped += 1;
            }
        }
        let left = lim.parked.len();
        let c = lim.starts.len() as i64;
        let due = if left == 0 {
            None
        } else if skipped >= UNPARK_SKIP || moved.len() >= UNPARK_MAX {
            Some(now)
        } else if let Some(Bounds::Rate { max, per }) = bounds {
            // Its next slot once the jobs moved have started (at about now).
            let i = c + moved.len() as i64 - i64::from(max);
            Some(if i < 0 {
                now
            } else if i < c {
                lim.starts[i as usize].saturating_add(per)
            } else {
                now.saturating_add(per)
            })
        } else {
            None
        };
        // Pushed in reverse to the head: the first parked is fetched first.
        for &id in moved.iter().rev() {
            if let Some(rec) = self.jobs.get_mut(&id) {
                rec.place = Place::Unlinked;
            }
            self.push_ready(id, true);
            self.wake = true;
        }
        match due {
            Some(due) => self.set_limiter_due(name, due, false),
            None => self.limits.clear_due(name),
        }
    }

    /// Job `id` leaves `running` (or gives up a reservation): it frees its concurrency slot,
    /// and if jobs are parked on that limiter the first of them gets it (`free_slots`).
    pub(super) fn free_slots(&mut self, id: JobId, now: i64) {
        let Some(name) = concurrency_of(self.jobs.get(&id).and_then(|r| r.limits.as_ref())) else {
            return;
        };
        let Some(lim) = self.limits.by_name.get_mut(&name) else { return };
        if lim.holders.remove(&id).is_some() && !lim.parked.is_empty() {
            self.unpark(&name, now);
        }
    }

    /// A running job's concurrency slot follows its lease (heartbeat, progress).
    pub(super) fn extend_slot(&mut self, id: JobId, deadline: i64) {
        let Some(name) = concurrency_of(self.jobs.get(&id).and_then(|r| r.limits.as_ref())) else {
            return;
        };
        if let Some(d) = self.limits.by_name.get_mut(&name).and_then(|l| l.holders.get_mut(&id)) {
            *d = deadline;
        }
    }

    /// Job `id` goes back to the head of its list (release, a reap's requeue): it keeps its
    /// concurrency slot, if it still holds it, as a reservation (`keep_slots`).
    pub(super) fn keep_slot(&mut self, id: JobId, now: i64) {
        let Some(name) = concurrency_of(self.jobs.get(&id).and_then(|r| r.limits.as_ref())) else {
            return;
        };
        if let Some(d) = self.limits.by_name.get_mut(&name).and_then(|l| l.holders.get_mut(&id)) {
            *d = now.saturating_add(duration_ms_i64(LIMIT_RESERVATION));
        }
    }

    /// Unparks the jobs of up to `limit` limiters whose time has come (fetch's step 1b);
    /// how many limiters it looked at.
    pub(super) fn unpark_due(&mut self, now: i64, limit: usize) -> usize {
        let due: Vec<String> = self
            .limits
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .map(|(_, n)| n.clone())
            .collect();
        for name in &due {
            self.limits.clear_due(name);
            self.unpark(name, now);
        }
        due.len()
    }

    /// A handler's `ctx.rate_limited(delay)` (`throttle.lua`).
    pub(super) fn throttle(&mut self, lease: &Lease, delay: Duration) -> ThrottleOutcome {
        let now = self.now();
        let Some(rec) = self.jobs.get(&lease.id).filter(|r| r.is_held_by(lease)) else {
            return ThrottleOutcome::Stale;
        };
        let cancel = rec.cancel_requested;
        let limits = rec.limits.clone();
        let id = lease.id;
        self.unlink(id);
        self.free_slots(id, now);
        if cancel {
            self.finish_cancelled(id, now);
            return ThrottleOutcome::Cancelled;
        }
        self.counters.throttled += 1;
        let until = now.saturating_add(duration_ms_i64(delay));
        let mut first = None;
        for (i, l) in limits.iter().flat_map(|ls| ls.limiters.iter()).enumerate() {
            if !matches!(l, Limiter::Rate { .. }) {
                continue;
            }
            let lim = self.limits.by_name.entry(l.name()).or_default();
            let b = match lim.block {
                Some(b) if b >= until => b,
                _ => {
                    lim.block = Some(until);
                    until
                }
            };
            first = first.or(Some((i, b)));
        }
        if let Some((i, b)) = first {
            self.park(id, i, Some(b), true);
            return ThrottleOutcome::Parked { until: ms_to_time(b).unwrap_or_default() };
        }
        self.schedule(id, until, false);
        ThrottleOutcome::Delayed { at: ms_to_time(until).unwrap_or_default() }
    }

    /// The limiters in use, by name, at most `max` (`limits.lua`); forgets the idle ones.
    pub(super) fn limits_usage(&mut self, max: usize) -> Vec<LimiterUsage> {
        let max = max.min(LIMITS_LIST_MAX);
        if max == 0 {
            return Vec::new();
        }
        let now = self.now();
        let mut out = Vec::new();
        let mut idle = Vec::new();
        for (name, lim) in &self.limits.by_name {
            let Some(bounds) = lim.bounds else {
                if lim.is_empty(now) {
                    idle.push(name.clone());
                }
                continue;
            };
            let (kind, lmax, per_ms, in_use, next_slot) = match bounds {
                Bounds::Rate { max: m, per } => {
                    let cutoff = now.saturating_sub(per);
                    let window = &lim.starts[lim.starts.partition_point(|&t| t <= cutoff)..];
                    let used = window.len();
                    let next = (m > 0 && used >= m as usize)
                        .then(|| window[used - m as usize].saturating_add(per));
                    (LimiterKind::Rate, m, Some(u64::try_from(per).unwrap_or(0)), used, next)
                }
                Bounds::Concurrency { max: m } => {
                    (LimiterKind::Concurrency, m, None, lim.holders.len(), None)
                }
            };
            let held = lim.block.filter(|&b| b > now);
            if in_use == 0 && lim.parked.is_empty() && held.is_none() {
                idle.push(name.clone());
                continue;
            }
            let key = match kind {
                LimiterKind::Concurrency => name.split_once(':').map_or("", |(_, k)| k),
                LimiterKind::Rate => name
                    .split_once(':')
                    .and_then(|(_, rest)| rest.split_once(':'))
                    .map_or("", |(_, k)| k),
            };
            out.push(LimiterUsage {
                name: name.clone(),
                kind,
                key: key.to_owned(),
                max: lmax,
                per_ms,
                in_use: in_use as u64,
                parked: lim.parked.len() as u64,
                next_slot_at: next_slot.filter(|&t| t > 0).and_then(ms_to_time),
                blocked_until: held.filter(|&t| t > 0).and_then(ms_to_time),
            });
        }
        for name in idle {
            self.limits.by_name.remove(&name);
        }
        out.truncate(max);
        out
    }
}
