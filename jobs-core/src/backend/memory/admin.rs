//! Administration on the in-memory state: the dead-letter queue (trim, retry, clear),
//! retention of finished jobs (purge), listings, stats and live workers.

use std::time::Duration;

use super::state::State;
use crate::backend::{DEAD_TRIM_LIMIT, WorkerEntry};
use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobPriority, JobStatus};
use crate::stats::{PendingByPriority, QueueInfo, QueueStats, UnhandledStats};
use crate::time::{duration_ms_i64, ms_to_time};

impl State {
    /// Drops DLQ entries past `dead_ttl` or beyond `dead_max`, oldest first. Expired entries
    /// are necessarily the oldest, so one pass from the old end does both steps in the
    /// contract's order.
    pub(super) fn trim_dead(&mut self, now: i64) {
        // "Kept for at most dead_ttl": an entry exactly dead_ttl old goes, as a finished
        // record exactly result_ttl old is purged (`expire <= now`).
        let cutoff = now.saturating_sub(duration_ms_i64(self.config.dead_ttl));
        let mut dropped = 0u64;
        while dropped < DEAD_TRIM_LIMIT as u64 {
            let Some(&(died, id)) = self.dead.first() else {
                break;
            };
            let too_many = self.dead.len() as u64 > self.config.dead_max;
            if died > cutoff && !too_many {
                break;
            }
            self.dead.pop_first();
            self.jobs.remove(&id);
            dropped += 1;
        }
        self.counters.dead_dropped += dropped;
    }

    pub(super) fn purge(&mut self, now: i64, limit: usize) -> u64 {
        let mut n = 0u64;
        while (n as usize) < limit {
            match self.finished.first() {
                Some(&(expire, id)) if expire <= now => {
                    self.finished.pop_first();
                    self.jobs.remove(&id);
                    n += 1;
                }
                _ => break,
            }
        }
        self.counters.purged += n;
        n
    }

    pub(super) fn retry_dead(&mut self, id: JobId) -> Result<()> {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return Err(Error::NotFound { id });
        };
        if rec.status != JobStatus::Failed {
            return Err(Error::InvalidState { id, status: rec.status, op: "retry" });
        }
        rec.completed = None;
        // As Redis: the stalls that dead-lettered it are not held against the new attempt.
        rec.stalls = 0;
        self.unlink(id);
        self.push_ready(id, false);
        self.wake = true;
        Ok(())
    }

    pub(super) fn retry_now(&mut self, id: JobId) -> Result<()> {
        let now = self.now();
        let Some(rec) = self.jobs.get_mut(&id) else {
            return Err(Error::NotFound { id });
        };
        if rec.status != JobStatus::Retrying {
            return Err(Error::InvalidState { id, status: rec.status, op: "retry" });
        }
        rec.scheduled = Some(now);
        self.unlink(id);
        self.push_ready(id, false);
        self.wake = true;
        Ok(())
    }

    /// Removes a finished job (completed, cancelled or dead) for good.
    pub(super) fn delete(&mut self, id: JobId) -> Result<()> {
        let Some(rec) = self.jobs.get(&id) else {
            return Err(Error::NotFound { id });
        };
        if !matches!(rec.status, JobStatus::Completed | JobStatus::Cancelled | JobStatus::Failed) {
            return Err(Error::InvalidState { id, status: rec.status, op: "delete" });
        }
        self.unlink(id);
        self.jobs.remove(&id);
        Ok(())
    }

    pub(super) fn clear_dead(&mut self) -> u64 {
        let dead = std::mem::take(&mut self.dead);
        for (_, id) in &dead {
            self.jobs.remove(id);
        }
        dead.len() as u64
    }

    pub(super) fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Vec<Job> {
        let queues: &[JobPriority] = match &priority {
            Some(p) => std::slice::from_ref(p),
            None => &JobPriority::ALL,
        };
        queues
            .iter()
            .flat_map(|p| self.lists.values().flat_map(move |l| l.ready[p.index()].iter()))
            .filter(|e| self.is_live(e))
            .filter_map(|(id, _)| self.jobs.get(id).map(|r| r.to_job(*id)))
            .take(limit)
            .collect()
    }

    /// Every queue, by name ([`Backend::queues`](crate::backend::Backend::queues)).
    pub(super) fn queues(&self) -> Vec<QueueInfo> {
        self.lists
            .iter()
            .map(|(name, l)| {
                let pending = l.pending();
                QueueInfo {
                    name: name.clone(),
                    paused: l.paused,
                    total_pending: pending.total(),
                    pending,
                }
            })
            .collect()
    }

    /// Pauses or resumes queue `name`; whether that changed it. A resume wakes waiters.
    /// Resuming a queue never seen changes nothing (as Redis: it is not listed after).
    pub(super) fn pause_queue(&mut self, name: &str, paused: bool) -> bool {
        if !paused && !self.lists.contains_key(name) {
            return false;
        }
        let l = self.lists_mut(name);
        if l.paused == paused {
            return false;
        }
        l.paused = paused;
        if !paused {
            self.wake = true;
        }
        true
    }

    pub(super) fn list_dead(&self, offset: usize, limit: usize) -> Vec<Job> {
        self.dead
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|(_, id)| self.jobs.get(id).map(|r| r.to_job(*id)))
            .collect()
    }

    pub(super) fn stats(&self) -> QueueStats {
        let mut pending = PendingByPriority::default();
        for l in self.lists.values() {
            let one = l.pending();
            for p in JobPriority::ALL {
                pending.set(p, pending.get(p) + one.get(p));
            }
        }
        QueueStats {
            pending,
            scheduled: (self.delayed.len() + self.retrying.len()) as u64,
            processing: self.active.len() as u64,
            dead_letter: self.dead.len() as u64,
            total_pending: pending.total(),
            retrying: self.retrying.len() as u64,
            unique_locks: self.unique.len() as u64,
            parked: self.limits.parked(),
            counters: self.counters,
            unhandled: self
                .unhandled
                .iter()
                .map(|(name, u)| {
                    let stats = UnhandledStats {
                        given_back: u.count,
                        last_given_back_at: ms_to_time(u.last),
                        no_live_worker_since: u.run.and_then(|(since, _)| ms_to_time(since)),
                    };
                    (name.clone(), stats)
                })
                .collect(),
        }
    }

    pub(super) fn list_workers(&mut self, ttl: Duration) -> Vec<WorkerEntry> {
        let seen_after = self.now().saturating_sub(duration_ms_i64(ttl));
        self.workers
            .iter()
            .filter(|(_, (seen, _))| *seen >= seen_after)
            .map(|(worker_id, (seen, info))| WorkerEntry {
                worker_id: worker_id.clone(),
                last_seen: ms_to_time(*seen).unwrap_or_default(),
                info: info.clone(),
            })
            .collect()
    }
}

impl super::state::Lists {
    /// Its live ready jobs per priority (entries less ghosts).
    pub(super) fn pending(&self) -> PendingByPriority {
        let mut out = PendingByPriority::default();
        for p in JobPriority::ALL {
            let q = p.index();
            out.set(p, (self.ready[q].len() as u64).saturating_sub(self.ghosts[q]));
        }
        out
    }
}
