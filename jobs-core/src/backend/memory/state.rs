//! The in-memory backend's `State`: the job records, the indexes that file them by status,
//! and the helpers that move a record between indexes, shared by every operation.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::backend::{BackendConfig, Lease, THROUGHPUT_MINUTES};
use crate::job::{Job, JobId, JobPriority, JobStatus};
use crate::schedule::{ScheduleEntry, ScheduleState, StoredSchedule};
use crate::stats::QueueCounters;
use crate::time::{duration_ms_i64, ms_to_time, wall_ms};

/// Which index holds a job, with the key it is filed under there, so that it can be
/// removed without a search (except from a ready queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// In no index: only while a transition is under way.
    Unlinked,
    /// In `ready[priority]`, under the record's generation.
    Ready,
    /// In `delayed` (status `pending`).
    Delayed { due: i64, seq: u64 },
    /// In `retrying` (status `retrying`).
    Retrying { due: i64, seq: u64 },
    /// In `active` (status `running`).
    Running { deadline: i64 },
    /// In `dead` (status `failed`).
    Dead { died: i64 },
    /// In `finished` (status `completed` or `cancelled`).
    Finished { expire: i64 },
    /// Parked (status `pending`) on the limiter of this index in the record's `limits`:
    /// in that limiter's jobs (see `limits.rs`).
    Parked { limiter: usize },
}

/// A job as stored: the public fields in milliseconds, plus the bookkeeping that
/// [`Job`] does not show.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) name: String,
    pub(super) args: Value,
    pub(super) status: JobStatus,
    pub(super) priority: JobPriority,
    pub(super) created: i64,
    pub(super) scheduled: Option<i64>,
    pub(super) started: Option<i64>,
    pub(super) completed: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) result: Option<Value>,
    pub(super) retry_count: u32,
    pub(super) max_retries: u32,
    pub(super) timeout: Duration,
    pub(super) user_id: Option<String>,
    pub(super) attempt: u32,
    /// Times the job was taken back from a lost worker (reset by `retry_dead`, as in Redis).
    pub(super) stalls: u32,
    /// A cancel arrived while the job was running; its worker learns of it by heartbeat.
    pub(super) cancel_requested: bool,
    /// Unique per enqueue: a ready-queue entry belongs to this record only if it carries the
    /// same generation (an entry a cancel left behind may outlive the record, and its id may
    /// be enqueued again).
    pub(super) generation: u64,
    /// The job's own backoff (`retry_base`, `retry_cap`), over the failing worker's policy.
    pub(super) retry_base: Option<Duration>,
    pub(super) retry_cap: Option<Duration>,
    /// What its handler last reported of its progress.
    pub(super) progress: Option<crate::job::Progress>,
    /// The uniqueness lock the job took, while its window lasts (Redis: `uq` in the hot
    /// state and the `j<id>` field of `unique`).
    pub(super) unique: Option<UniqueHold>,
    /// The trace context of the enqueuing span (Redis: `t` in the record's meta).
    pub(super) trace: Option<crate::job::TraceContext>,
    /// Its named queue (`"default"` for the default one).
    pub(super) queue: String,
    /// The rate and concurrency limits it is held to (Redis: `lm` and the `limits` hash).
    pub(super) limits: Option<crate::job::JobLimits>,
    pub(super) place: Place,
}

/// A job's hold on a uniqueness lock.
#[derive(Debug, Clone)]
pub(super) struct UniqueHold {
    pub(super) key: String,
    /// The window ends when the job starts (`until = "started"`), not when it is done.
    pub(super) until_started: bool,
}

impl Record {
    pub(super) fn to_job(&self, id: JobId) -> Job {
        Job {
            id,
            name: self.name.clone(),
            args: self.args.clone(),
            status: self.status,
            priority: self.priority,
            created_at: ms_to_time(self.created).unwrap_or_default(),
            scheduled_at: self.scheduled.and_then(ms_to_time),
            started_at: self.started.and_then(ms_to_time),
            completed_at: self.completed.and_then(ms_to_time),
            error: self.error.clone(),
            result: self.result.clone(),
            retry_count: self.retry_count,
            max_retries: self.max_retries,
            timeout: self.timeout,
            user_id: self.user_id.clone(),
            attempt: self.attempt,
            progress: self.progress.clone(),
            trace: self.trace.clone(),
            queue: self.queue.clone(),
        }
    }

    /// Whether `lease` is the current delivery of this job.
    pub(super) fn is_held_by(&self, lease: &Lease) -> bool {
        self.status == JobStatus::Running && self.attempt == lease.attempt
    }
}

pub(super) struct State {
    pub(super) config: BackendConfig,
    pub(super) jobs: HashMap<JobId, Record>,
    /// Each named queue's ready lists, by name (the default queue always there): Redis's
    /// `pending` lists and `queues` hash.
    pub(super) lists: BTreeMap<String, Lists>,
    /// Delayed jobs by (due, insertion seq): promotion order is due time, then insertion.
    pub(super) delayed: BTreeMap<(i64, u64), JobId>,
    /// Jobs waiting for a retry, keyed like `delayed`.
    pub(super) retrying: BTreeMap<(i64, u64), JobId>,
    /// `delayed` and `retrying` again, by (due, id): the Redis ZSETs' order, which
    /// `list_jobs` pages through (see `listing.rs`).
    pub(super) delayed_by_id: BTreeSet<(i64, JobId)>,
    pub(super) retrying_by_id: BTreeSet<(i64, JobId)>,
    /// Running jobs by lease deadline; ties by id, like a Redis ZSET's member order.
    pub(super) active: BTreeSet<(i64, JobId)>,
    /// The DLQ by death time; ties by id (a UUID's byte order equals its text order, so this
    /// is the Redis ZSET's order too).
    pub(super) dead: BTreeSet<(i64, JobId)>,
    /// Completed and cancelled jobs by the time their retention ends.
    pub(super) finished: BTreeSet<(i64, JobId)>,
    /// worker id → (last seen ms, info).
    pub(super) workers: BTreeMap<String, (i64, Value)>,
    pub(super) counters: QueueCounters,
    /// slot → (minute, completed, failed): the same 60-minute ring as Redis's.
    pub(super) throughput: HashMap<i64, (i64, u64, u64)>,
    pub(super) seq: u64,
    /// Mirrors Redis's `SET reap_lock NX PX interval`: no reap with an interval runs before
    /// this time.
    pub(super) reap_locked_until: i64,
    /// The latest time handed out, so that the backend's clock never runs backwards even if
    /// the system clock is stepped back (Redis `TIME` gives no such promise, but nothing
    /// here should depend on it either way).
    pub(super) clock: i64,
    /// Where `now` reads the time: the system clock unless a [`ManualClock`] was given.
    ///
    /// [`ManualClock`]: super::ManualClock
    pub(super) source: Option<super::ManualClock>,
    /// When on (for `testing`): every job enqueued, as enqueued (id, name, args), oldest
    /// first, whatever happened to the record since (purged, or the id enqueued again).
    pub(super) journal: Option<Vec<(JobId, String, Value)>>,
    /// Set by an operation that made work ready (or due earlier); consumed by `with_state`.
    pub(super) wake: bool,
    /// The log of cancel notices (Redis: the `cancels` stream): (seq, delivery), oldest
    /// first, at most `CANCEL_LOG_MAX`.
    pub(super) cancel_log: VecDeque<(u64, Lease)>,
    /// The seq of the last notice logged (0: none yet).
    pub(super) cancel_seq: u64,
    /// Set when a notice was logged; consumed by `with_state`.
    pub(super) cancel_wake: bool,
    /// Schedules by name.
    pub(super) schedules: BTreeMap<String, SchedRecord>,
    /// (next run ms, name) of every schedule that has a next run: the `cron_due` ZSET.
    pub(super) sched_due: BTreeSet<(i64, String)>,
    /// Give-backs per job name (Redis: the `unhandled*:<name>` fields of `counters`).
    pub(super) unhandled: BTreeMap<String, Unhandled>,
    /// Uniqueness locks: key → (expiry ms, holder) (Redis: the `k<key>` fields of `unique`).
    pub(super) unique: HashMap<String, (i64, JobId)>,
    /// Rate and concurrency limiters (see `limits.rs`).
    pub(super) limits: super::limiters::Limits,
}

/// One name's give-backs: how many, the last one, and the run of those that found no live
/// worker with the handler (its start and its last one).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Unhandled {
    pub(super) count: u64,
    pub(super) last: i64,
    pub(super) run: Option<(i64, i64)>,
}

/// One queue's ready lists.
#[derive(Debug, Default)]
pub(super) struct Lists {
    /// Ready jobs per priority (index = `JobPriority::index`), in fetch order, with the
    /// generation of the record they were queued for. A cancel leaves the entry in place (a
    /// "ghost", as in Redis, where removing it would be O(n)); fetch skips it.
    pub(super) ready: [VecDeque<(JobId, u64)>; 4],
    /// How many entries of each ready list are ghosts.
    pub(super) ghosts: [u64; 4],
    /// Paused: no fetch takes its jobs.
    pub(super) paused: bool,
}

/// The queues a call serves (empty: the default queue).
pub(super) fn served(queues: &[String]) -> Vec<&str> {
    if queues.is_empty() {
        vec![crate::flow::DEFAULT_QUEUE]
    } else {
        queues.iter().map(String::as_str).collect()
    }
}

impl State {
    pub(super) fn new(config: BackendConfig) -> Self {
        State {
            config,
            jobs: HashMap::new(),
            lists: BTreeMap::from([(crate::flow::DEFAULT_QUEUE.to_owned(), Lists::default())]),
            delayed: BTreeMap::new(),
            retrying: BTreeMap::new(),
            delayed_by_id: BTreeSet::new(),
            retrying_by_id: BTreeSet::new(),
            active: BTreeSet::new(),
            dead: BTreeSet::new(),
            finished: BTreeSet::new(),
            workers: BTreeMap::new(),
            counters: QueueCounters::default(),
            throughput: HashMap::new(),
            seq: 0,
            cancel_log: VecDeque::new(),
            cancel_seq: 0,
            cancel_wake: false,
            reap_locked_until: i64::MIN,
            clock: i64::MIN,
            source: None,
            journal: None,
            wake: false,
            schedules: BTreeMap::new(),
            sched_due: BTreeSet::new(),
            unhandled: BTreeMap::new(),
            unique: HashMap::new(),
            limits: super::limiters::Limits::default(),
        }
    }

    pub(super) fn now(&mut self) -> i64 {
        let t = self.source.as_ref().map_or_else(wall_ms, super::ManualClock::now_ms);
        self.clock = self.clock.max(t);
        self.clock
    }

    /// Counts a completion (`failed = false`) or a failed attempt in the current minute.
    pub(super) fn bump_minute(&mut self, now: i64, failed: bool) {
        let minute = now.div_euclid(60_000);
        let slot = self.throughput.entry(minute.rem_euclid(THROUGHPUT_MINUTES)).or_default();
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        if failed {
            slot.2 += 1;
        } else {
            slot.1 += 1;
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The earliest due time of a delayed or retrying job, or of a limiter whose parked
    /// jobs may go (as lib.lua's `next_due`).
    pub(super) fn earliest_due(&self) -> Option<i64> {
        let d = self.delayed.keys().next().map(|k| k.0);
        let r = self.retrying.keys().next().map(|k| k.0);
        [d, r, self.limits.earliest()].into_iter().flatten().min()
    }

    /// Whether any ready queue has an entry (live or not: like Redis's list lengths, which
    /// is what wakes a Redis waiter).
    pub(super) fn has_ready(&self) -> bool {
        self.lists.values().any(|l| l.ready.iter().any(|q| !q.is_empty()))
    }

    /// [`has_ready`](Self::has_ready) in the queues `queues` that are not paused (empty:
    /// the default queue).
    pub(super) fn has_ready_in(&self, queues: &[String]) -> bool {
        served(queues).iter().any(|q| {
            self.lists.get(*q).is_some_and(|l| !l.paused && l.ready.iter().any(|r| !r.is_empty()))
        })
    }

    /// Queue `q`'s lists, created on first use.
    pub(super) fn lists_mut(&mut self, q: &str) -> &mut Lists {
        self.lists.entry(q.to_owned()).or_default()
    }

    /// Whether a ready-queue entry stands for a job that can be fetched.
    pub(super) fn is_live(&self, &(id, generation): &(JobId, u64)) -> bool {
        self.jobs.get(&id).is_some_and(|r| {
            r.generation == generation && r.status == JobStatus::Pending && r.place == Place::Ready
        })
    }

    /// Removes the job from whichever index holds it.
    pub(super) fn unlink(&mut self, id: JobId) {
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        let place = std::mem::replace(&mut rec.place, Place::Unlinked);
        match place {
            Place::Unlinked => {}
            Place::Ready => {
                // The entry stays, as a ghost (only cancel takes a ready job out).
                let (q, p) = (rec.queue.clone(), rec.priority.index());
                self.lists_mut(&q).ghosts[p] += 1;
            }
            Place::Delayed { due, seq } => {
                self.delayed.remove(&(due, seq));
                self.delayed_by_id.remove(&(due, id));
            }
            Place::Retrying { due, seq } => {
                self.retrying.remove(&(due, seq));
                self.retrying_by_id.remove(&(due, id));
            }
            Place::Running { deadline } => {
                self.active.remove(&(deadline, id));
            }
            Place::Dead { died } => {
                self.dead.remove(&(died, id));
            }
            Place::Finished { expire } => {
                self.finished.remove(&(expire, id));
            }
            Place::Parked { limiter } => self.unpark_remove(id, limiter),
        }
    }

    /// Makes an unlinked job `pending` in its ready queue, without pushing it yet; returns
    /// the queue's index. Split from the push so that `release` can order a batch.
    pub(super) fn mark_ready(&mut self, id: JobId) -> Option<(String, usize)> {
        let rec = self.jobs.get_mut(&id)?;
        rec.status = JobStatus::Pending;
        rec.place = Place::Ready;
        Some((rec.queue.clone(), rec.priority.index()))
    }

    pub(super) fn push_ready(&mut self, id: JobId, at_head: bool) {
        if let Some((q, p)) = self.mark_ready(id) {
            let entry = (id, self.jobs.get(&id).map_or(0, |r| r.generation));
            let ready = &mut self.lists_mut(&q).ready[p];
            if at_head {
                ready.push_front(entry);
            } else {
                ready.push_back(entry);
            }
        }
    }

    /// Files an unlinked job as delayed (`pending`) or retrying, due at `due`.
    pub(super) fn schedule(&mut self, id: JobId, due: i64, retry: bool) {
        let earliest = self.earliest_due();
        let seq = self.next_seq();
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        rec.scheduled = Some(due);
        if retry {
            rec.status = JobStatus::Retrying;
            rec.place = Place::Retrying { due, seq };
            self.retrying.insert((due, seq), id);
            self.retrying_by_id.insert((due, id));
        } else {
            rec.status = JobStatus::Pending;
            rec.place = Place::Delayed { due, seq };
            self.delayed.insert((due, seq), id);
            self.delayed_by_id.insert((due, id));
        }
        // A waiter sleeps until the earliest due time it saw; an earlier one must wake it.
        if earliest.is_none_or(|e| due < e) {
            self.wake = true;
        }
    }

    /// Ends job `id`'s hold on its uniqueness lock, if it has one; the lock goes if the job
    /// still holds it (past its expiry a later job may have taken it). `lib.lua`'s `unlock`.
    pub(super) fn unlock(&mut self, id: JobId) {
        let Some(hold) = self.jobs.get_mut(&id).and_then(|r| r.unique.take()) else {
            return;
        };
        if self.unique.get(&hold.key).is_some_and(|(_, holder)| *holder == id) {
            self.unique.remove(&hold.key);
        }
    }

    /// The job holding the lock of `key` in its window, if one does (as `enqueue.lua`'s
    /// `holder`: the lock unexpired, its holder's record there, holding, and not finished).
    pub(super) fn unique_holder(&self, key: &str, now: i64) -> Option<JobId> {
        let &(expiry, holder) = self.unique.get(key)?;
        let rec = self.jobs.get(&holder)?;
        let live =
            matches!(rec.status, JobStatus::Pending | JobStatus::Running | JobStatus::Retrying);
        (expiry > now && rec.unique.is_some() && live).then_some(holder)
    }

    pub(super) fn finish_cancelled(&mut self, id: JobId, now: i64) {
        self.unlock(id);
        self.unlink(id);
        let expire = now.saturating_add(duration_ms_i64(self.config.result_ttl));
        let Some(rec) = self.jobs.get_mut(&id) else {
            return;
        };
        rec.status = JobStatus::Cancelled;
        rec.completed = Some(now);
        rec.place = Place::Finished { expire };
        self.finished.insert((expire, id));
        self.counters.cancelled += 1;
    }
}

/// A stored schedule, times in Unix milliseconds like everything else here.
#[derive(Debug, Clone)]
pub(super) struct SchedRecord {
    pub(super) entry: ScheduleEntry,
    pub(super) hash: String,
    pub(super) enabled: bool,
    /// Mirrors membership of `State::sched_due` (Redis: the `cron_due` ZSET).
    pub(super) next: Option<i64>,
    pub(super) last_run: Option<i64>,
    pub(super) run_count: u64,
    pub(super) last_job: Option<JobId>,
    /// Redis: the `<gen>` field of the record's state.
    pub(super) generation: u64,
}

impl SchedRecord {
    pub(super) fn to_stored(&self) -> StoredSchedule {
        StoredSchedule {
            entry: self.entry.clone(),
            hash: self.hash.clone(),
            state: ScheduleState {
                enabled: self.enabled,
                next_run: self.next.and_then(ms_to_time),
                last_run: self.last_run.and_then(ms_to_time),
                run_count: self.run_count,
                last_job_id: self.last_job,
                generation: self.generation,
            },
        }
    }
}
