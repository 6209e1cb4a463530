//! Differential (model-based) testing: random sequences of queue operations run against the
//! in-memory backend and the Redis backend side by side; every observable result must be
//! the same: what each call returns, which jobs are fetched and in which order, the job
//! records, the pending and dead-letter listings, the listings by state, and the stats.
//!
//! Time-based transitions are kept deterministic: delayed jobs and retries are due in an hour
//! (never during a case), and the only expiry is a lease of 1 ms, which a reap (after a
//! 10 ms pause) takes back in both backends alike. Half of the cases keep finished records
//! for no time at all (`result_ttl` zero), so that a purge can free an id for `EnqueueDup`
//! to use again: a cancelled job's leftover queue entry then meets a new job with its id.
//!
//! Jobs go to the default queue or to one of two named ones; fetches serve one or several
//! queues in order, and queues are paused and resumed in between (`PauseQueue`), so that the
//! listing of queues (`queues`) and the job's queue are compared too.
//!
//! Uniqueness locks (`EnqueueUnique`) use three keys in every mode, so that the holders of
//! a key meet every transition that ends a window, and the locks held are in the stats.
//!
//! Rate and concurrency limits (`EnqueueLimited`) use few keys, so that jobs collide on
//! them: rate limits of 2 starts per hour on two keys (an hour: time never opens a slot
//! during a case), concurrency limits of 1 on two keys, and jobs held to both. A throttle
//! (`Throttle`, `ctx.rate_limited`) closes a job's rate limiters for an hour. The limiters
//! in use (`limits`) and the jobs parked (in the stats) are compared after every step.
//!
//! `PROPTEST_CASES` sets the number of cases (default 48).

use std::time::Duration;

use jobs_core::backend::memory::MemoryBackend;
use jobs_core::backend::{
    Backend, BackendConfig, Completion, Failure, FetchRequest, GiveBack, GiveBackOutcome,
    Heartbeat, Lease, ListRequest, ListState, ReapOptions, ThrottleOutcome,
};
use jobs_core::{
    Job, JobId, JobLimits, JobPriority, Limiter, NewJob, OnConflict, RetryPolicy, RunAt,
    UniqueLock, UniqueUntil,
};
use jobs_test_support::{redis_backend, unique_namespace};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    /// Into queue `QUEUES[queue]` (`None`: the default one).
    Enqueue {
        prio: usize,
        delayed: bool,
        max_retries: u32,
        queue: usize,
    },
    EnqueueMany {
        n: usize,
        prio: usize,
        queue: usize,
    },
    /// Re-enqueue an existing id: must be a duplicate.
    EnqueueDup {
        job: usize,
    },
    /// Enqueue with a uniqueness lock on one of three keys, in one of the four modes
    /// (until done or started, keep or replace); `twice`: two of that key in one batch.
    EnqueueUnique {
        key: usize,
        mode: usize,
        twice: bool,
    },
    /// Serving the queues `SELECTIONS[queues]`.
    Fetch {
        n: usize,
        short_lease: bool,
        queues: usize,
    },
    /// Pause or resume queue `QUEUES[queue]` (the default one for `None`).
    PauseQueue {
        queue: usize,
        paused: bool,
    },
    Complete {
        lease: usize,
    },
    Fail {
        lease: usize,
        retryable: bool,
    },
    /// A failure whose handler asked for its retry in an hour (instead of the backoff).
    FailRetryAfter {
        lease: usize,
    },
    /// A delivery given back for want of its handler: re-offered in an hour, or (no live
    /// worker has the handler and `dead_after` is zero) dead-lettered.
    GiveBack {
        lease: usize,
        handled_elsewhere: bool,
        dead_now: bool,
    },
    Cancel {
        job: usize,
    },
    /// Delete a job (refused unless it is finished).
    Delete {
        job: usize,
    },
    Release {
        lease: usize,
    },
    RetryDead {
        job: usize,
    },
    /// Run a retrying job now (`retry_now`).
    RetryNow {
        job: usize,
    },
    ClearDead,
    /// Purge finished records past their retention.
    Purge,
    /// Cancel a job, purge, and enqueue a job under its id again (a new job when the
    /// cancelled record was purged: its leftover queue entry must not stand for it).
    Reincarnate {
        job: usize,
    },
    /// Pause 10 ms, then reap with no grace: takes back exactly the 1 ms leases.
    Reap,
    /// Enqueue `n` jobs held to the rate limits `RATES[rate]` and the concurrency limit
    /// `CONCURRENCY[conc]` (at least one limiter), into queue `QUEUES[queue]`.
    EnqueueLimited {
        n: usize,
        rate: usize,
        conc: usize,
        prio: usize,
        queue: usize,
    },
    /// A handler's `ctx.rate_limited(1 hour)` for a delivery.
    Throttle {
        lease: usize,
    },
    /// A heartbeat for a delivery, with a lease of a minute (a 1 ms lease's slot then
    /// follows it, and is no longer dropped as lapsed).
    Heartbeat {
        lease: usize,
    },
}

/// The rate-limit keys of a limited job: none, one of two keys, or both.
const RATES: [&[&str]; 4] = [&[], &["r0"], &["r1"], &["r0", "r1"]];

/// The concurrency-limit key of a limited job (`None`: none).
const CONCURRENCY: [Option<&str>; 3] = [None, Some("c0"), Some("c1")];

/// The queues jobs go to: the default one (named or not) and two named ones.
const QUEUES: [Option<&str>; 4] = [None, None, Some("a"), Some("b")];

/// What a fetch serves: the default queue, one named queue, or several in order.
const SELECTIONS: [&[&str]; 5] = [&[], &[], &["a"], &["a", "default"], &["b", "default", "a"]];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, proptest::bool::weighted(0.2), 0..3u32, 0..QUEUES.len())
            .prop_map(|(prio, delayed, max_retries, queue)| Op::Enqueue { prio, delayed, max_retries, queue }),
        1 => (1..5usize, 0..4usize, 0..QUEUES.len())
            .prop_map(|(n, prio, queue)| Op::EnqueueMany { n, prio, queue }),
        1 => (0..64usize).prop_map(|job| Op::EnqueueDup { job }),
        2 => (0..3usize, 0..4usize, any::<bool>())
            .prop_map(|(key, mode, twice)| Op::EnqueueUnique { key, mode, twice }),
        3 => (1..4usize, proptest::bool::weighted(0.25), 0..SELECTIONS.len())
            .prop_map(|(n, short_lease, queues)| Op::Fetch { n, short_lease, queues }),
        1 => (1..QUEUES.len(), proptest::bool::weighted(0.6))
            .prop_map(|(queue, paused)| Op::PauseQueue { queue, paused }),
        2 => (0..64usize).prop_map(|lease| Op::Complete { lease }),
        2 => (0..64usize, proptest::bool::weighted(0.7))
            .prop_map(|(lease, retryable)| Op::Fail { lease, retryable }),
        1 => (0..64usize).prop_map(|lease| Op::FailRetryAfter { lease }),
        2 => (0..64usize, any::<bool>(), any::<bool>()).prop_map(|(lease, handled_elsewhere, dead_now)| {
            Op::GiveBack { lease, handled_elsewhere, dead_now }
        }),
        1 => (0..64usize).prop_map(|job| Op::Cancel { job }),
        1 => (0..64usize).prop_map(|job| Op::Delete { job }),
        1 => (0..64usize).prop_map(|lease| Op::Release { lease }),
        1 => (0..64usize).prop_map(|job| Op::RetryDead { job }),
        1 => (0..64usize).prop_map(|job| Op::RetryNow { job }),
        1 => Just(Op::ClearDead),
        1 => Just(Op::Purge),
        1 => (0..64usize).prop_map(|job| Op::Reincarnate { job }),
        1 => Just(Op::Reap),
        5 => (1..4usize, 0..RATES.len(), 0..CONCURRENCY.len(), 0..4usize, 0..QUEUES.len())
            .prop_map(|(n, rate, conc, prio, queue)| Op::EnqueueLimited { n, rate, conc, prio, queue }),
        3 => (0..64usize).prop_map(|lease| Op::Throttle { lease }),
        1 => (0..64usize).prop_map(|lease| Op::Heartbeat { lease }),
    ]
}

/// A job as both backends must agree on it: timestamps reduced to "set or not".
fn shape(j: &Job) -> serde_json::Value {
    json!({
        "id": j.id, "name": j.name, "args": j.args, "status": j.status, "priority": j.priority,
        "scheduled": j.scheduled_at.is_some(), "started": j.started_at.is_some(),
        "completed": j.completed_at.is_some(), "error": j.error, "result": j.result,
        "retry_count": j.retry_count, "max_retries": j.max_retries, "attempt": j.attempt,
        "timeout_ms": j.timeout.as_millis() as u64, "user_id": j.user_id, "queue": j.queue,
    })
}

fn prio(i: usize) -> JobPriority {
    JobPriority::from_index(i).unwrap_or_default()
}

fn hour_retry() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_secs(3600), Duration::from_secs(7200))
}

/// Runs one operation on one backend; returns what it observed, as JSON.
async fn apply(
    b: &dyn Backend,
    op: &Op,
    jobs: &[NewJob],
    leases: &mut Vec<Lease>,
) -> serde_json::Value {
    let pick = |v: &[Lease], i: usize| if v.is_empty() { None } else { Some(v[i % v.len()]) };
    match op {
        Op::Enqueue { .. }
        | Op::EnqueueMany { .. }
        | Op::EnqueueDup { .. }
        | Op::EnqueueUnique { .. }
        | Op::EnqueueLimited { .. } => {
            // `jobs` holds the batch prepared by the caller (same ids for both backends).
            json!(format!("{:?}", b.enqueue(jobs).await))
        }
        Op::Fetch { n, short_lease, queues } => {
            let req = FetchRequest {
                queues: SELECTIONS[*queues].iter().map(|q| (*q).to_owned()).collect(),
                max: *n,
                worker_id: "diff".into(),
                lease: if *short_lease {
                    Duration::from_millis(1)
                } else {
                    Duration::from_secs(60)
                },
                grace: Duration::ZERO,
            };
            match b.fetch(&req).await {
                Ok(f) => {
                    leases.extend(f.jobs.iter().map(|j| j.lease));
                    json!(f.jobs.iter().map(|j| shape(&j.job)).collect::<Vec<_>>())
                }
                Err(e) => json!(format!("error {e}")),
            }
        }
        Op::Complete { lease } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => {
                let r = b
                    .complete(&[Completion { lease: l, result: json!({ "ok": l.attempt }) }])
                    .await;
                json!(format!("{r:?}"))
            }
        },
        Op::Fail { lease, retryable } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => {
                let f = Failure {
                    lease: l,
                    error: format!("failed attempt {}", l.attempt),
                    retryable: *retryable,
                    retry: hour_retry(),
                    retry_after: None,
                };
                // The retry time differs by the calls' own instants: compare the outcome kind.
                match b.fail(&f).await {
                    Ok(jobs_core::backend::FailOutcome::Retrying { .. }) => json!("retrying"),
                    other => json!(format!("{other:?}")),
                }
            }
        },
        Op::FailRetryAfter { lease } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => {
                let f = Failure {
                    lease: l,
                    error: format!("rate limited at attempt {}", l.attempt),
                    retryable: true,
                    retry: RetryPolicy::exponential(
                        Duration::from_millis(1),
                        Duration::from_millis(1),
                    ),
                    retry_after: Some(Duration::from_secs(3600)),
                };
                match b.fail(&f).await {
                    Ok(jobs_core::backend::FailOutcome::Retrying { .. }) => json!("retrying"),
                    other => json!(format!("{other:?}")),
                }
            }
        },
        Op::GiveBack { lease, handled_elsewhere, dead_now } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => {
                let g = GiveBack {
                    lease: l,
                    name: "diff_job".into(),
                    delay: Duration::from_secs(3600),
                    handled_elsewhere: *handled_elsewhere,
                    dead_after: if *dead_now { Duration::ZERO } else { Duration::from_secs(3600) },
                };
                match b.give_back(&g).await {
                    Ok(GiveBackOutcome::Delayed { .. }) => json!("delayed"),
                    other => json!(format!("{other:?}")),
                }
            }
        },
        Op::Cancel { job } => {
            let r = b.cancel(jobs[*job % jobs.len()].id).await.map_err(|e| e.to_string());
            json!(format!("{r:?}"))
        }
        Op::Delete { job } => {
            let r = b.delete(jobs[*job % jobs.len()].id).await.map_err(|e| e.to_string());
            json!(format!("{r:?}"))
        }
        Op::Release { lease } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => json!(format!("{:?}", b.release(&[l]).await)),
        },
        Op::RetryDead { job } => {
            let r = b.retry_dead(jobs[*job % jobs.len()].id).await.map_err(|e| e.to_string());
            json!(format!("{r:?}"))
        }
        Op::RetryNow { job } => {
            let r = b.retry_now(jobs[*job % jobs.len()].id).await.map_err(|e| e.to_string());
            json!(format!("{r:?}"))
        }
        Op::PauseQueue { queue, paused } => {
            let name = QUEUES[*queue].unwrap_or("default");
            json!(format!("{:?}", b.pause_queue(name, *paused).await))
        }
        Op::ClearDead => json!(format!("{:?}", b.clear_dead().await)),
        Op::Purge => json!(format!("{:?}", b.purge(100).await)),
        Op::Reincarnate { .. } => {
            // `jobs` holds the one job, prepared by the caller.
            let cancelled = b.cancel(jobs[0].id).await.map_err(|e| e.to_string());
            let purged = b.purge(100).await.map_err(|e| e.to_string());
            let again = b.enqueue(jobs).await.map_err(|e| e.to_string());
            json!(format!("{cancelled:?} {purged:?} {again:?}"))
        }
        Op::Throttle { lease } => match pick(leases, *lease) {
            None => json!(null),
            // The times are each backend's own instants: compare the outcome kind.
            Some(l) => match b.throttle(&l, Duration::from_secs(3600)).await {
                Ok(ThrottleOutcome::Parked { .. }) => json!("parked"),
                Ok(ThrottleOutcome::Delayed { .. }) => json!("delayed"),
                other => json!(format!("{other:?}")),
            },
        },
        Op::Heartbeat { lease } => match pick(leases, *lease) {
            None => json!(null),
            Some(l) => {
                let beat = Heartbeat {
                    worker_id: "diff".into(),
                    leases: vec![l],
                    lease: Duration::from_secs(60),
                    grace: Duration::ZERO,
                    info: json!({}),
                };
                json!(format!("{:?}", b.heartbeat(&beat).await))
            }
        },
        Op::Reap => {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let opts = ReapOptions {
                interval: Duration::ZERO,
                grace: Duration::ZERO,
                retry: hour_retry(),
                ..ReapOptions::default()
            };
            json!(format!("{:?}", b.reap(&opts).await))
        }
    }
}

/// Everything observable about the backend's state.
async fn observe(b: &dyn Backend, ids: &[JobId]) -> serde_json::Value {
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(b.get_job(*id).await.ok().flatten().map(|j| shape(&j)));
    }
    let pending: Vec<JobId> = b
        .list_pending(None, 1000)
        .await
        .map(|v| v.iter().map(|j| j.id).collect())
        .unwrap_or_default();
    let dead: Vec<JobId> =
        b.list_dead(0, 1000).await.map(|v| v.iter().map(|j| j.id).collect()).unwrap_or_default();
    // The give-back times are each backend's own instants: compare "set or not".
    let stats = b.stats().await.map_or(json!("stats failed"), |mut s| {
        let unhandled: serde_json::Map<String, serde_json::Value> =
            std::mem::take(&mut s.unhandled)
                .into_iter()
                .map(|(name, u)| {
                    let shape = json!([
                        u.given_back,
                        u.last_given_back_at.is_some(),
                        u.no_live_worker_since.is_some()
                    ]);
                    (name, shape)
                })
                .collect();
        json!({ "queue": s, "unhandled": unhandled })
    });
    let queues = b.queues().await.map_or(json!("queues failed"), |q| json!(q));
    // The limiters in use; their times are each backend's own instants: "set or not".
    let limits = b.limits(100).await.map_or(json!("limits failed"), |ls| {
        json!(
            ls.iter()
                .map(|l| json!({
                    "name": l.name, "kind": l.kind, "key": l.key, "max": l.max, "per_ms": l.per_ms,
                    "in_use": l.in_use, "parked": l.parked,
                    "next_slot": l.next_slot_at.is_some(), "blocked": l.blocked_until.is_some(),
                }))
                .collect::<Vec<_>>()
        )
    });
    json!({
        "jobs": jobs, "pending": pending, "dead": dead, "stats": stats, "queues": queues,
        "by_state": by_state(b).await, "limits": limits,
    })
}

/// Every listable state's jobs (`list_jobs`), as sets: the order is by each backend's own
/// instants (due times, deadlines), which differ between the two, so each listing is
/// checked here to page in order (pages of two, one after another, are the whole listing)
/// and only its members are compared.
async fn by_state(b: &dyn Backend) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for state in ListState::ALL {
        let whole = match b.list_jobs(&ListRequest::new(state, 1000)).await {
            Ok(p) if p.cursor.is_none() => p.jobs,
            other => return json!(format!("{state}: {other:?}")),
        };
        let mut paged = Vec::new();
        let mut req = ListRequest::new(state, 2);
        for _ in 0..1000 {
            match b.list_jobs(&req).await {
                Ok(p) => {
                    paged.extend(p.jobs.iter().map(|j| j.id));
                    match p.cursor {
                        Some(c) => req.cursor = Some(c),
                        None => break,
                    }
                }
                Err(e) => return json!(format!("{state}: {e}")),
            }
        }
        let ids: Vec<JobId> = whole.iter().map(|j| j.id).collect();
        if paged != ids {
            return json!(format!("{state}: pages {paged:?} are not the listing {ids:?}"));
        }
        let mut shapes: Vec<serde_json::Value> = whole.iter().map(shape).collect();
        shapes.sort_by_key(|j| j["id"].to_string());
        out.insert(state.to_string(), json!(shapes));
    }
    serde_json::Value::Object(out)
}

async fn run_case(ops: Vec<Op>, keep_nothing: bool) -> Result<(), TestCaseError> {
    let cfg = if keep_nothing {
        BackendConfig { result_ttl: Duration::ZERO, ..BackendConfig::default() }
    } else {
        BackendConfig::default()
    };
    let mem = MemoryBackend::new(cfg);
    let red = redis_backend(&unique_namespace("diff"), cfg).await;
    let mut all: Vec<NewJob> = Vec::new();
    let (mut mem_leases, mut red_leases) = (Vec::new(), Vec::new());
    for (step, op) in ops.iter().enumerate() {
        // Prepare the batch once, so that both backends get the same ids.
        let mk = |p: usize, delayed: bool, mr: u32, q: usize| {
            let mut j = NewJob::new("diff_job", json!({ "p": p }));
            j.queue = QUEUES[q].map(str::to_owned);
            j.priority = prio(p);
            j.max_retries = mr;
            if delayed {
                j.run_at = RunAt::Delay(Duration::from_secs(3600));
            }
            j
        };
        let batch: Vec<NewJob> = match op {
            Op::Enqueue { prio, delayed, max_retries, queue } => {
                vec![mk(*prio, *delayed, *max_retries, *queue)]
            }
            Op::EnqueueMany { n, prio, queue } => {
                (0..*n).map(|_| mk(*prio, false, 1, *queue)).collect()
            }
            Op::EnqueueUnique { key, mode, twice } => {
                let locked = || {
                    let mut j = mk(2, false, 1, 0);
                    j.unique = Some(UniqueLock {
                        key: format!("k{key}"),
                        window: Duration::from_secs(3600),
                        until: if mode % 2 == 0 { UniqueUntil::Done } else { UniqueUntil::Started },
                        on_conflict: if mode / 2 == 0 {
                            OnConflict::Keep
                        } else {
                            OnConflict::Replace
                        },
                    });
                    j.args = json!({ "p": 2, "n": step });
                    j
                };
                if *twice { vec![locked(), locked()] } else { vec![locked()] }
            }
            Op::EnqueueLimited { n, rate, conc, prio, queue } => {
                let mut limiters: Vec<Limiter> = RATES[*rate]
                    .iter()
                    .map(|k| Limiter::Rate {
                        key: (*k).to_owned(),
                        max: 2,
                        per: Duration::from_secs(3600),
                    })
                    .collect();
                if let Some(k) = CONCURRENCY[*conc] {
                    limiters.push(Limiter::Concurrency { key: k.to_owned(), max: 1 });
                }
                if limiters.is_empty() {
                    limiters.push(Limiter::Concurrency { key: "c0".into(), max: 1 });
                }
                (0..*n)
                    .map(|i| {
                        let mut j = mk(*prio, false, 1, *queue);
                        j.limits = Some(JobLimits { limiters: limiters.clone() });
                        j.args = json!({ "p": prio, "n": step, "i": i });
                        j
                    })
                    .collect()
            }
            Op::EnqueueDup { job } if !all.is_empty() => vec![all[*job % all.len()].clone()],
            Op::EnqueueDup { .. } => continue,
            Op::Reincarnate { job } if !all.is_empty() => vec![all[*job % all.len()].clone()],
            Op::Reincarnate { .. } => continue,
            Op::Cancel { .. } | Op::Delete { .. } | Op::RetryDead { .. } | Op::RetryNow { .. }
                if all.is_empty() =>
            {
                continue;
            }
            _ => all.clone(),
        };
        let is_enqueue = matches!(
            op,
            Op::Enqueue { .. }
                | Op::EnqueueMany { .. }
                | Op::EnqueueUnique { .. }
                | Op::EnqueueLimited { .. }
        );
        let a = apply(&mem, op, &batch, &mut mem_leases).await;
        let b = apply(&red, op, &batch, &mut red_leases).await;
        prop_assert_eq!(&a, &b, "step {} {:?}: results differ", step, op);
        prop_assert_eq!(&mem_leases, &red_leases, "step {}: leases differ", step);
        if is_enqueue {
            all.extend(batch);
        }
        let ids: Vec<JobId> = all.iter().map(|j| j.id).collect();
        let (sa, sb) = (observe(&mem, &ids).await, observe(&red, &ids).await);
        prop_assert_eq!(sa, sb, "step {} {:?}: state differs", step, op);
    }
    Ok(())
}

#[test]
fn memory_and_redis_backends_agree() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..40), keep_nothing in any::<bool>())| {
        rt.block_on(run_case(ops, keep_nothing))?;
    });
}
