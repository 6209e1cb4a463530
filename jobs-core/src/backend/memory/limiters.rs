//! The in-memory backend's limiter state (what Redis keeps under each limiter's keys), kept
//! apart from the steps on it (`limits.rs`) so that `State` can hold it without naming
//! those steps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::job::{JobId, Limiter};
use crate::time::duration_ms_i64;

/// The most jobs one unpark moves (the rest is left to the next fetch), and the most stray
/// entries it passes over (`UNPARK_MAX`, `UNPARK_SKIP` in limits_lib.lua).
pub(super) const UNPARK_MAX: usize = 1_000;
pub(super) const UNPARK_SKIP: usize = 100;

/// A limiter's bounds, as the job admitted or parked last on it gave them (`lim_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bounds {
    Rate { max: u32, per: i64 },
    Concurrency { max: u32 },
}

impl Bounds {
    pub(super) fn of(l: &Limiter) -> Self {
        match l {
            Limiter::Rate { max, per, .. } => {
                Bounds::Rate { max: *max, per: duration_ms_i64(*per) }
            }
            Limiter::Concurrency { max, .. } => Bounds::Concurrency { max: *max },
        }
    }
}

/// One limiter's state.
#[derive(Debug, Default)]
pub(super) struct LimiterState {
    /// Its bounds while it is in use (`None`: unknown, e.g. only a throttle's hold set it).
    pub(super) bounds: Option<Bounds>,
    /// A rate limiter's starts, sorted (pruned of those out of the window when it is looked
    /// at, as `ZREMRANGEBYSCORE` does).
    pub(super) starts: Vec<i64>,
    /// A concurrency limiter's slot holders: job → lease deadline or end of reservation.
    pub(super) holders: HashMap<JobId, i64>,
    /// Its parked jobs, oldest first, with the generation of the record they were parked for.
    pub(super) parked: VecDeque<(JobId, u64)>,
    /// Until when a throttle holds it closed.
    pub(super) block: Option<i64>,
}

impl LimiterState {
    /// Drops the starts at or before `now - per`.
    pub(super) fn prune_starts(&mut self, now: i64, per: i64) {
        let cutoff = now.saturating_sub(per);
        let old = self.starts.partition_point(|&t| t <= cutoff);
        self.starts.drain(..old);
    }

    /// Whether nothing at all is kept (the entry may go without anything observable).
    pub(super) fn is_empty(&self, now: i64) -> bool {
        self.bounds.is_none()
            && self.starts.is_empty()
            && self.holders.is_empty()
            && self.parked.is_empty()
            && self.block.is_none_or(|b| b <= now)
    }
}

/// Every limiter's state, and when the parked jobs of each may go next.
#[derive(Debug, Default)]
pub(super) struct Limits {
    pub(super) by_name: BTreeMap<String, LimiterState>,
    /// (due, name): the `lim_due` ZSET (ties by name), and `due_of` the same by name.
    pub(super) due: BTreeSet<(i64, String)>,
    pub(super) due_of: HashMap<String, i64>,
}

impl Limits {
    /// The earliest time a limiter's parked jobs may go.
    pub(super) fn earliest(&self) -> Option<i64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// The jobs parked, over every limiter (`stats().parked`).
    pub(super) fn parked(&self) -> u64 {
        self.by_name.values().map(|l| l.parked.len() as u64).sum()
    }

    /// Sets limiter `name`'s due time (`ZADD`), or only lowers it (`ZADD LT`) with `lower`.
    pub(super) fn set_due(&mut self, name: &str, due: i64, lower: bool) {
        if let Some(&old) = self.due_of.get(name) {
            if lower && old <= due {
                return;
            }
            self.due.remove(&(old, name.to_owned()));
        }
        self.due.insert((due, name.to_owned()));
        self.due_of.insert(name.to_owned(), due);
    }

    pub(super) fn clear_due(&mut self, name: &str) {
        if let Some(old) = self.due_of.remove(name) {
            self.due.remove(&(old, name.to_owned()));
        }
    }
}
