//! Job transitions on the in-memory state: enqueue, fetch (with promotion of due jobs),
//! heartbeat, complete, fail, release, reap and cancel, each one critical section.

use std::time::Duration;

use super::state::{Place, Record, State, UniqueHold};
use crate::backend::{
    AckOutcome, CANCEL_LOG_MAX, CANCEL_READ_LIMIT, CancelOutcome, Completion, ERR_TIMEOUT,
    ERR_WORKER_LOST, FETCH_SKIP_LIMIT, FailOutcome, Failure, FetchRequest, Fetched, Heartbeat,
    HeartbeatReply, Lease, LeasedJob, PROMOTE_LIMIT, PURGE_ON_COMPLETE, ProgressUpdate,
    ReapOptions, ReapReport, truncate_error,
};
use crate::error::{Error, Result};
use crate::flow::{OnConflict, UniqueUntil};
use crate::job::{EnqueueOutcome, JobId, JobStatus, NewJob, RunAt};
use crate::retry::RetryPolicy;
use crate::time::{duration_ms_i64, ms_duration, ms_to_time};

impl State {
    /// The `fail` path of a running job whose lease has been checked (or that `reap` took
    /// back): cancelled, retrying, or dead.
    pub(super) fn fail_running(
        &mut self,
        id: JobId,
        now: i64,
        error: &str,
        retryable: bool,
        retry: &RetryPolicy,
        retry_after: Option<Duration>,
    ) -> FailOutcome {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return FailOutcome::Stale;
        };
        rec.error = Some(truncate_error(error).to_owned());
        if rec.cancel_requested {
            self.finish_cancelled(id, now);
            return FailOutcome::Cancelled;
        }
        if retryable && rec.retry_count < rec.max_retries {
            rec.retry_count += 1;
            // The job's own backoff where it has one (as lib.lua's fail_job reads it).
            let policy = RetryPolicy {
                base: rec.retry_base.unwrap_or(retry.base),
                cap: rec.retry_cap.unwrap_or(retry.cap),
                jitter: retry.jitter,
            };
            let delay = retry_after.unwrap_or_else(|| policy.delay_with_jitter(rec.retry_count));
            let due = now.saturating_add(duration_ms_i64(delay));
            self.unlink(id);
            self.schedule(id, due, true);
            self.counters.failed += 1;
            self.bump_minute(now, true);
            self.counters.retried += 1;
            return FailOutcome::Retrying { at: ms_to_time(due).unwrap_or_default() };
        }
        rec.status = JobStatus::Failed;
        rec.completed = Some(now);
        self.unlock(id);
        self.unlink(id);
        if let Some(rec) = self.jobs.get_mut(&id) {
            rec.place = Place::Dead { died: now };
        }
        self.dead.insert((now, id));
        self.counters.failed += 1;
        self.bump_minute(now, true);
        self.counters.dead += 1;
        self.trim_dead(now);
        FailOutcome::Dead
    }

    /// Writes each job whose id is free and whose uniqueness key no job holds; per job,
    /// what became of it.
    pub(super) fn enqueue(&mut self, jobs: &[NewJob]) -> Vec<EnqueueOutcome> {
        let now = self.now();
        let mut out = Vec::with_capacity(jobs.len());
        for new in jobs {
            // Checking as we insert also catches an id repeated within the batch.
            if self.jobs.contains_key(&new.id) {
                out.push(new.outcome(false));
                continue;
            }
            let replace = new.unique.as_ref().is_some_and(|u| u.on_conflict == OnConflict::Replace);
            if let Some(holder) = new.unique.as_ref().and_then(|u| self.unique_holder(&u.key, now))
            {
                let rec = self.jobs.get_mut(&holder);
                match rec {
                    Some(rec) if replace && rec.status == JobStatus::Pending => {
                        // Replace (debounce): the holder, not started yet, takes these args.
                        rec.args = new.args.clone();
                        out.push(EnqueueOutcome::Unique { existing: holder, replaced: true });
                        continue;
                    }
                    // With replace, a holder that started lets a new job in, which takes
                    // the lock: at most one queued and one running per key.
                    Some(_) if replace => {}
                    _ => {
                        out.push(EnqueueOutcome::Unique { existing: holder, replaced: false });
                        continue;
                    }
                }
            }
            let due = match new.run_at {
                RunAt::Now => None,
                RunAt::Time(t) => Some(t.timestamp_millis()).filter(|&t| t > now),
                RunAt::Delay(d) if d.is_zero() => None,
                RunAt::Delay(d) => Some(now.saturating_add(duration_ms_i64(d))),
            };
            let generation = self.next_seq();
            // A named queue is listed from its first job on, as Redis's `queues` hash.
            self.lists_mut(new.queue_name());
            if let Some(journal) = &mut self.journal {
                journal.push((new.id, new.name.clone(), new.args.clone()));
            }
            self.jobs.insert(
                new.id,
                Record {
                    name: new.name.clone(),
                    args: new.args.clone(),
                    status: JobStatus::Pending,
                    priority: new.priority,
                    created: now,
                    scheduled: None,
                    started: None,
                    completed: None,
                    error: None,
                    result: None,
                    retry_count: 0,
                    max_retries: new.max_retries,
                    timeout: new.timeout,
                    user_id: new.user_id.clone(),
                    attempt: 0,
                    stalls: 0,
                    cancel_requested: false,
                    generation,
                    retry_base: new.retry_base,
                    retry_cap: new.retry_cap,
                    progress: None,
                    unique: new.unique.as_ref().map(|u| UniqueHold {
                        key: u.key.clone(),
                        until_started: u.until == UniqueUntil::Started,
                    }),
                    trace: new.trace.clone(),
                    queue: new.queue_name().to_owned(),
                    // As Redis: only a job with some limiter is held to limits.
                    limits: new.limits.clone().filter(|l| !l.limiters.is_empty()),
                    place: Place::Unlinked,
                },
            );
            if let Some(u) = &new.unique {
                let expiry = now.saturating_add(duration_ms_i64(u.window).max(1));
                self.unique.insert(u.key.clone(), (expiry, new.id));
            }
            match due {
                Some(due) => self.schedule(new.id, due, false),
                None => {
                    self.push_ready(new.id, false);
                    self.wake = true;
                }
            }
            self.counters.enqueued += 1;
            out.push(EnqueueOutcome::Created);
        }
        out
    }

    /// Moves up to [`PROMOTE_LIMIT`] due jobs (delayed first, then retrying, each by due
    /// time) to the tail of their ready queue. The limit is shared by the two sets.
    fn promote(&mut self, now: i64) -> usize {
        let mut n = 0;
        for retry in [false, true] {
            while n < PROMOTE_LIMIT {
                let set = if retry { &mut self.retrying } else { &mut self.delayed };
                let Some(entry) = set.first_entry() else {
                    break;
                };
                if entry.key().0 > now {
                    break;
                }
                let due = entry.key().0;
                let id = entry.remove();
                let by_id = if retry { &mut self.retrying_by_id } else { &mut self.delayed_by_id };
                by_id.remove(&(due, id));
                // `scheduled` keeps the due time: the contract shows when the job was due.
                if let Some(rec) = self.jobs.get_mut(&id) {
                    rec.place = Place::Unlinked;
                }
                self.push_ready(id, false);
                n += 1;
            }
        }
        n
    }

    pub(super) fn fetch(&mut self, req: &FetchRequest) -> Fetched {
        let now = self.now();
        let promoted = self.promote(now);
        // 1b. Limiters whose time has come give their parked jobs back to their lists' heads.
        self.unpark_due(now, PROMOTE_LIMIT.saturating_sub(promoted));
        let lease_ms = duration_ms_i64(req.lease);
        let grace_ms = duration_ms_i64(req.grace);
        let mut jobs = Vec::new();
        let mut skipped = 0;
        let served: Vec<String> =
            super::state::served(&req.queues).into_iter().map(str::to_owned).collect();
        for (queue, q) in served.iter().flat_map(|s| (0..4).map(move |p| (s, p))) {
            if self.lists.get(queue).is_none_or(|l| l.paused) {
                continue;
            }
            // As Redis: at most FETCH_SKIP_LIMIT ghosts per call; the rest waits for the next.
            while jobs.len() < req.max && skipped < FETCH_SKIP_LIMIT {
                let lists = self.lists_mut(queue);
                let Some(entry) = lists.ready[q].pop_front() else {
                    break;
                };
                if !self.is_live(&entry) {
                    // Left behind by a cancel (the record may be gone, or be a later job
                    // enqueued under the same id).
                    let lists = self.lists_mut(queue);
                    lists.ghosts[q] = lists.ghosts[q].saturating_sub(1);
                    skipped += 1;
                    continue;
                }
                let id = entry.0;
                let Some(rec) = self.jobs.get(&id) else {
                    continue;
                };
                let deadline = now
                    .saturating_add(lease_ms)
                    .min(now.saturating_add(duration_ms_i64(rec.timeout)).saturating_add(grace_ms));
                if let Some(limits) = rec.limits.clone()
                    && let Some((idx, due)) = self.admit(id, &limits, now, grace_ms, deadline)
                {
                    // Over a limit: parked until the limiter has a slot (no head-of-line
                    // blocking); it counts against the skip budget.
                    self.park(id, idx, due, false);
                    skipped += 1;
                    continue;
                }
                let Some(rec) = self.jobs.get_mut(&id) else {
                    continue;
                };
                rec.status = JobStatus::Running;
                rec.attempt = rec.attempt.saturating_add(1);
                rec.started = Some(now);
                rec.place = Place::Running { deadline };
                let started_ends_window = rec.unique.as_ref().is_some_and(|u| u.until_started);
                self.active.insert((deadline, id));
                if started_ends_window {
                    self.unlock(id);
                }
                let Some(rec) = self.jobs.get(&id) else {
                    continue;
                };
                jobs.push(LeasedJob {
                    job: rec.to_job(id),
                    lease: Lease { id, attempt: rec.attempt },
                });
            }
        }
        // Promoted work this caller did not take is new to every other waiter.
        if promoted > 0 && self.has_ready() {
            self.wake = true;
        }
        let next_due_in = self.earliest_due().map(|due| ms_duration(due.saturating_sub(now)));
        Fetched { jobs, next_due_in }
    }

    /// How long `wait_for_work` may sleep: zero if work is ready or due now.
    pub(super) fn time_until_work(&mut self, max: Duration, queues: &[String]) -> Duration {
        let now = self.now();
        if self.has_ready_in(queues) {
            return Duration::ZERO;
        }
        match self.earliest_due() {
            Some(due) => max.min(ms_duration(due.saturating_sub(now))),
            None => max,
        }
    }

    pub(super) fn heartbeat(&mut self, beat: &Heartbeat) -> HeartbeatReply {
        let now = self.now();
        let mut reply = HeartbeatReply::default();
        for lease in &beat.leases {
            match self.extend(lease, now, beat.lease, beat.grace) {
                Some(true) => reply.cancel.push(lease.id),
                Some(false) => {}
                None => reply.lost.push(lease.id),
            }
        }
        self.workers.insert(beat.worker_id.clone(), (now, beat.info.clone()));
        reply
    }

    /// Extends `lease` to `min(now + lease_for, started + timeout + grace)` if it is held:
    /// then whether a cancel was requested; `None` if it is not held.
    fn extend(
        &mut self,
        lease: &Lease,
        now: i64,
        lease_for: Duration,
        grace: Duration,
    ) -> Option<bool> {
        let rec = self.jobs.get_mut(&lease.id).filter(|r| r.is_held_by(lease))?;
        let cap = rec
            .started
            .unwrap_or(now)
            .saturating_add(duration_ms_i64(rec.timeout))
            .saturating_add(duration_ms_i64(grace));
        let deadline = now.saturating_add(duration_ms_i64(lease_for)).min(cap);
        if let Place::Running { deadline: old } = rec.place {
            self.active.remove(&(old, lease.id));
        }
        rec.place = Place::Running { deadline };
        let cancel = rec.cancel_requested;
        self.active.insert((deadline, lease.id));
        // Its concurrency slot follows the lease.
        self.extend_slot(lease.id, deadline);
        Some(cancel)
    }

    /// A progress report of the current delivery: stored, and its lease extended.
    pub(super) fn progress(&mut self, u: &ProgressUpdate) -> bool {
        let now = self.now();
        if self.extend(&u.lease, now, u.lease_for, u.grace).is_none() {
            return false;
        }
        if let Some(rec) = self.jobs.get_mut(&u.lease.id) {
            rec.progress = Some(u.progress.clone());
        }
        true
    }

    pub(super) fn complete(&mut self, items: &[Completion]) -> Vec<AckOutcome> {
        let now = self.now();
        let expire = now.saturating_add(duration_ms_i64(self.config.result_ttl));
        let mut out = Vec::with_capacity(items.len());
        // The jobs that leave `running`, for their concurrency slots (freed after the batch).
        let mut left = Vec::new();
        for item in items {
            let id = item.lease.id;
            let (outcome, cancel_now) = match self.jobs.get(&id) {
                // Asked to cancel while running: it ends cancelled, whatever the handler
                // returned.
                Some(rec) if rec.is_held_by(&item.lease) && rec.cancel_requested => {
                    (AckOutcome::Cancelled, true)
                }
                Some(rec) if rec.is_held_by(&item.lease) => (AckOutcome::Completed, false),
                Some(rec)
                    if rec.status == JobStatus::Completed && rec.attempt == item.lease.attempt =>
                {
                    (AckOutcome::Already, false)
                }
                Some(rec)
                    if rec.status == JobStatus::Cancelled && rec.attempt == item.lease.attempt =>
                {
                    (AckOutcome::Cancelled, false)
                }
                _ => (AckOutcome::Stale, false),
            };
            if cancel_now {
                self.finish_cancelled(id, now);
                left.push(id);
            }
            if outcome == AckOutcome::Completed {
                left.push(id);
                self.unlock(id);
                self.unlink(id);
                if let Some(rec) = self.jobs.get_mut(&id) {
                    rec.status = JobStatus::Completed;
                    rec.completed = Some(now);
                    rec.result = Some(item.result.clone());
                    rec.place = Place::Finished { expire };
                }
                self.finished.insert((expire, id));
                self.counters.completed += 1;
                self.bump_minute(now, false);
            }
            out.push(outcome);
        }
        for id in left {
            self.free_slots(id, now);
        }
        self.purge(now, PURGE_ON_COMPLETE);
        out
    }

    pub(super) fn fail(&mut self, failure: &Failure) -> FailOutcome {
        let now = self.now();
        let lease = &failure.lease;
        if !self.jobs.get(&lease.id).is_some_and(|r| r.is_held_by(lease)) {
            return FailOutcome::Stale;
        }
        self.free_slots(lease.id, now);
        self.fail_running(
            lease.id,
            now,
            &failure.error,
            failure.retryable,
            &failure.retry,
            failure.retry_after,
        )
    }

    pub(super) fn release(&mut self, leases: &[Lease]) -> u64 {
        let now = self.now();
        let mut n = 0u64;
        // Backwards, each to the head: the first lease given ends up first in line (and a
        // lease given twice counts where it was given last, as in Redis).
        for lease in leases.iter().rev() {
            let Some(rec) = self.jobs.get(&lease.id).filter(|r| r.is_held_by(lease)) else {
                continue;
            };
            let cancel = rec.cancel_requested;
            n += 1;
            self.unlink(lease.id);
            if cancel {
                self.free_slots(lease.id, now);
                self.finish_cancelled(lease.id, now);
                continue;
            }
            // Back at the head: its concurrency slot stays its own, as a reservation.
            self.keep_slot(lease.id, now);
            self.push_ready(lease.id, true);
            self.wake = true;
        }
        n
    }

    pub(super) fn reap(&mut self, opts: &ReapOptions) -> ReapReport {
        let now = self.now();
        if !opts.interval.is_zero() {
            if now < self.reap_locked_until {
                return ReapReport::default();
            }
            self.reap_locked_until = now.saturating_add(duration_ms_i64(opts.interval));
        }
        let grace_ms = duration_ms_i64(opts.grace);
        let cutoff = now.saturating_sub(grace_ms);
        let lapsed: Vec<(i64, JobId)> = self
            .active
            .iter()
            .take_while(|(deadline, _)| *deadline <= cutoff)
            .take(opts.limit)
            .copied()
            .collect();
        let mut report = ReapReport { ran: true, ..ReapReport::default() };
        for (deadline, id) in lapsed {
            if !self.jobs.contains_key(&id) {
                // An index entry without a record would otherwise be found by every reap.
                self.active.remove(&(deadline, id));
                continue;
            }
            let Some(rec) = self.jobs.get_mut(&id) else {
                continue;
            };
            let hard_deadline = rec
                .started
                .unwrap_or(now)
                .saturating_add(duration_ms_i64(rec.timeout))
                .saturating_add(grace_ms);
            // Its concurrency slot: kept by a job requeued at the head, else freed.
            let requeue = !rec.cancel_requested
                && now < hard_deadline
                && rec.stalls.saturating_add(1) <= opts.max_stalls;
            let cancel = rec.cancel_requested;
            if requeue {
                self.keep_slot(id, now);
            } else {
                self.free_slots(id, now);
            }
            let Some(rec) = self.jobs.get_mut(&id) else {
                continue;
            };
            if cancel {
                self.finish_cancelled(id, now);
                report.cancelled += 1;
                continue;
            }
            if now >= hard_deadline {
                self.fail_running(id, now, ERR_TIMEOUT, true, &opts.retry, None);
                report.failed += 1;
                continue;
            }
            self.counters.stalled += 1;
            rec.stalls = rec.stalls.saturating_add(1);
            if rec.stalls > opts.max_stalls {
                self.fail_running(id, now, ERR_WORKER_LOST, true, &opts.retry, None);
                report.failed += 1;
            } else {
                // Each to the head in deadline order, so the last processed is fetched first.
                self.unlink(id);
                self.push_ready(id, true);
                self.wake = true;
                report.requeued += 1;
            }
        }
        // The DLQ's limits hold even when no job dies: the reaper's timer trims it.
        self.trim_dead(now);
        let seen_after = now.saturating_sub(duration_ms_i64(opts.worker_ttl));
        self.workers.retain(|_, (seen, _)| *seen >= seen_after);
        report
    }

    /// Appends a notice for `watch_cancels`, as `cancel.lua`'s `XADD … MAXLEN` does.
    fn log_cancel(&mut self, lease: Lease) {
        self.cancel_seq += 1;
        self.cancel_log.push_back((self.cancel_seq, lease));
        while self.cancel_log.len() > CANCEL_LOG_MAX {
            self.cancel_log.pop_front();
        }
        self.cancel_wake = true;
    }

    /// The notices after `after` (at most [`CANCEL_READ_LIMIT`]) and the cursor past them.
    pub(super) fn cancels_after(&self, after: u64) -> (Vec<Lease>, u64) {
        // Seqs grow by one, so the first notice after `after` is found by arithmetic.
        let first = self.cancel_log.front().map_or(0, |(s, _)| *s);
        let skip =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let taken: Vec<(u64, Lease)> =
            self.cancel_log.iter().skip(skip).take(CANCEL_READ_LIMIT).copied().collect();
        let cursor = taken.last().map_or(after, |(s, _)| *s);
        (taken.into_iter().map(|(_, l)| l).collect(), cursor)
    }

    pub(super) fn cancel(&mut self, id: JobId) -> Result<CancelOutcome> {
        let now = self.now();
        let Some(rec) = self.jobs.get_mut(&id) else {
            return Err(Error::NotFound { id });
        };
        let status = rec.status;
        match status {
            JobStatus::Pending | JobStatus::Retrying => {
                // A slot reserved for it goes to the next job parked; a parked one only
                // leaves its limiter's jobs (its `unlink`), as cancel.lua does.
                let parked = matches!(rec.place, Place::Parked { .. });
                if status == JobStatus::Pending && !parked {
                    self.free_slots(id, now);
                }
                self.finish_cancelled(id, now);
                Ok(CancelOutcome::Cancelled)
            }
            JobStatus::Running => {
                rec.cancel_requested = true;
                let lease = Lease { id, attempt: rec.attempt };
                self.log_cancel(lease);
                Ok(CancelOutcome::Requested)
            }
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => {
                Err(Error::InvalidState { id, status, op: "cancel" })
            }
        }
    }
}
