//! Schedules on the in-memory state: the `schedule_*` calls, the same steps as the Redis
//! backend's `sched_*.lua` scripts (the stored record, [`SchedRecord`], is in `state.rs`).

use super::state::{SchedRecord, State};
use crate::backend::{
    DueSchedules, FireOutcome, ScheduleEntry, ScheduleFire, StoredSchedule, UpsertOutcome,
};
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, NewJob, RunAt};
use crate::time::ms_to_time;

/// Schedules: the same steps as the `sched_*.lua` scripts, each one critical section.
impl State {
    /// Sets (or clears) a schedule's next run, keeping `sched_due` in step.
    fn set_next(&mut self, name: &str, next: Option<i64>) {
        let Some(rec) = self.schedules.get_mut(name) else {
            return;
        };
        if let Some(old) = rec.next.take() {
            self.sched_due.remove(&(old, name.to_owned()));
        }
        if let Some(n) = next {
            rec.next = Some(n);
            self.sched_due.insert((n, name.to_owned()));
        }
    }

    pub(super) fn schedule_upsert(
        &mut self,
        entry: &ScheduleEntry,
        hash: &str,
        enabled: Option<bool>,
        first: Option<i64>,
    ) -> UpsertOutcome {
        let name = entry.name.as_str();
        let Some(rec) = self.schedules.get_mut(name) else {
            let on = enabled.unwrap_or(true);
            self.schedules.insert(
                name.to_owned(),
                SchedRecord {
                    entry: entry.clone(),
                    hash: hash.to_owned(),
                    enabled: on,
                    next: None,
                    last_run: None,
                    run_count: 0,
                    last_job: None,
                    generation: 0,
                },
            );
            if on {
                self.set_next(name, first);
            }
            return UpsertOutcome::Created;
        };
        let was_on = rec.enabled;
        let on = enabled.unwrap_or(was_on);
        let same = rec.hash == hash;
        if same && on == was_on {
            return UpsertOutcome::Kept;
        }
        rec.entry = entry.clone();
        rec.hash = hash.to_owned();
        rec.enabled = on;
        rec.generation += 1;
        if !on {
            self.set_next(name, None);
        } else if !same || !was_on {
            self.set_next(name, first);
        }
        UpsertOutcome::Updated
    }

    pub(super) fn schedule_set_enabled(
        &mut self,
        name: &str,
        enabled: bool,
        first: Option<i64>,
    ) -> Result<StoredSchedule> {
        let rec = self
            .schedules
            .get_mut(name)
            .ok_or_else(|| Error::ScheduleNotFound { name: name.to_owned() })?;
        if rec.enabled != enabled {
            rec.enabled = enabled;
            if enabled {
                rec.generation += 1;
            }
            self.set_next(name, if enabled { first } else { None });
        }
        self.schedules
            .get(name)
            .map(SchedRecord::to_stored)
            .ok_or_else(|| Error::ScheduleNotFound { name: name.to_owned() })
    }

    pub(super) fn schedule_remove(&mut self, name: &str) -> bool {
        self.set_next(name, None);
        self.schedules.remove(name).is_some()
    }

    pub(super) fn schedule_due(&mut self, limit: usize) -> DueSchedules {
        let now = self.now();
        let due = self
            .sched_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(at, name)| {
                let rec = self.schedules.get(name)?;
                Some((ms_to_time(*at).unwrap_or_default(), rec.to_stored()))
            })
            .collect();
        DueSchedules {
            now: ms_to_time(now).unwrap_or_default(),
            due,
            next_run: self.sched_due.first().and_then(|(at, _)| ms_to_time(*at)),
        }
    }

    pub(super) fn schedule_fire(&mut self, fire: &ScheduleFire) -> FireOutcome {
        let now = self.now();
        let name = fire.name.as_str();
        let Some(rec) = self.schedules.get(name) else {
            return FireOutcome::NotFound;
        };
        let mut tick = None;
        if let Some(claim) = &fire.claim {
            let expected = claim.expected.timestamp_millis();
            let current = rec.next;
            if current != Some(expected)
                || rec.hash != claim.hash
                || rec.generation != claim.generation
            {
                return FireOutcome::Stale { current: current.and_then(ms_to_time) };
            }
            if expected > now {
                return FireOutcome::NotDue { now: ms_to_time(now).unwrap_or_default() };
            }
            // The claim: only one caller can see `next == expected` and move it.
            self.set_next(name, claim.next.map(|t| t.timestamp_millis()));
            tick = Some(expected);
        }
        // Written exactly as `enqueue` writes a ready job (counter, wake-up, duplicate check).
        let job = NewJob { run_at: RunAt::Now, unique: None, ..fire.job.clone() };
        let created = self.enqueue(std::slice::from_ref(&job));
        if created.first() != Some(&EnqueueOutcome::Created) {
            return FireOutcome::Duplicate;
        }
        if let Some(r) = self.jobs.get_mut(&job.id) {
            r.scheduled = tick;
        }
        if let Some(rec) = self.schedules.get_mut(name) {
            rec.run_count += 1;
            rec.last_run = Some(now);
            rec.last_job = Some(job.id);
        }
        FireOutcome::Fired
    }
}
