//! Leases: reaping expired leases, fencing off stale acks, heartbeats, the poison-pill
//! and timeout paths of the reaper, release, unknown leases, and the worker registry.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use jobs_core::backend::{
    AckOutcome, CancelOutcome, ERR_TIMEOUT, ERR_WORKER_LOST, FailOutcome, Heartbeat, Lease,
    ReapOptions, ReapReport,
};
use jobs_core::{JobId, JobPriority, JobStatus, QueueCounters, QueueStats, RetryPolicy};
use serde_json::json;

use crate::{
    Env, HOUR, Kind, LEASE, TestResult, assert_not_found, assert_stale, assert_within, failure,
    ids, late_retry, leased_ids, ms, pending, reap_now, td,
};

conformance!(
    expired_lease_is_reaped_to_the_head_and_the_old_ack_is_stale,
    late_fail_from_an_old_lease_is_stale,
    reaped_jobs_go_to_the_head_latest_deadline_first,
    reap_cancels_a_lost_job_that_was_asked_to_cancel,
    reap_runs_at_most_once_per_interval,
    heartbeat_extends_the_lease_and_reports_lost_leases,
    poison_pill_takes_the_fail_path_after_max_stalls,
    timeout_reap_fails_a_job_past_its_timeout,
    release_puts_jobs_back_at_the_head_in_the_given_order,
    unknown_ids_are_none_not_found_or_stale,
    workers_are_listed_after_heartbeat_and_forgotten_after_ttl,
    reap_draws_a_jitter_per_job,
);

async fn expired_lease_is_reaped_to_the_head_and_the_old_ack_is_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let x = env.add("x", JobPriority::Normal).await?;
    let y = env.add("y", JobPriority::Normal).await?;
    let first = env.take(x, ms(100)).await?;
    assert_eq!(first.lease.attempt, 1);

    // Not yet expired: nothing to reap.
    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, ..Default::default() });

    tokio::time::sleep(ms(250)).await;
    // Lapsed, but not for the grace period yet.
    let report = env.reap(ReapOptions { grace: HOUR, ..reap_now() }).await?;
    assert_eq!(report.requeued, 0, "reaped within the grace period");

    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, requeued: 1, failed: 0, cancelled: 0 });
    let job = env.job(x).await?;
    assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Pending, 1, 0));
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [x, y], "a reaped job goes to the head");
    let stats = env.stats().await?;
    assert_eq!((stats.pending.normal, stats.processing, stats.counters.stalled), (2, 0, 1));
    assert_eq!(stats.counters.failed, 0, "a lost worker is not a failed attempt");

    let second = env.take(x, LEASE).await?;
    assert_eq!(second.lease.attempt, 2);

    // The old holder's ack is fenced off and changes nothing.
    assert_eq!(env.complete(first.lease, json!("old")).await?, AckOutcome::Stale);
    let err = env.q.complete(first.lease, json!("old")).await.err().ok_or("stale ack accepted")?;
    assert_stale(err, x, 1);
    let job = env.job(x).await?;
    assert_eq!((job.status, job.attempt, job.result), (JobStatus::Running, 2, None));

    assert_eq!(env.complete(second.lease, json!("new")).await?, AckOutcome::Completed);
    assert_eq!(env.complete(second.lease, json!("new")).await?, AckOutcome::Already);
    env.q.complete(second.lease, json!("new")).await?;
    assert_eq!(env.complete(first.lease, json!("old")).await?, AckOutcome::Stale);
    let job = env.job(x).await?;
    assert_eq!((job.status, job.result), (JobStatus::Completed, Some(json!("new"))));
    let c = env.stats().await?.counters;
    assert_eq!(c, QueueCounters { enqueued: 2, completed: 1, stalled: 1, ..Default::default() });
    Ok(())
}

async fn late_fail_from_an_old_lease_is_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("x", JobPriority::Normal).await?;
    let first = env.take(id, ms(50)).await?;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    let second = env.take(id, LEASE).await?;

    let old = failure(first.lease, "late", true, late_retry());
    assert_eq!(env.fail(old.clone()).await?, FailOutcome::Stale);
    let err = env.q.fail(&old).await.err().ok_or("stale fail accepted")?;
    assert_stale(err, id, 1);
    let job = env.job(id).await?;
    assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Running, 2, 0));
    assert_eq!(job.error, None);
    assert_eq!(env.b.release(&[first.lease]).await?, 0, "a stale release is skipped");
    assert_eq!(env.job(id).await?.status, JobStatus::Running);

    // A fail from the current delivery still works.
    let out = env.fail(failure(second.lease, "current", true, late_retry())).await?;
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert_eq!(
        env.fail(failure(second.lease, "twice", true, late_retry())).await?,
        FailOutcome::Stale
    );
    let job = env.job(id).await?;
    assert_eq!((job.retry_count, job.error.as_deref()), (1, Some("current")));
    let c = env.stats().await?.counters;
    assert_eq!((c.failed, c.retried, c.stalled), (1, 1, 1));
    Ok(())
}

async fn reaped_jobs_go_to_the_head_latest_deadline_first(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add("a", JobPriority::Normal).await?;
    let b = env.add("b", JobPriority::Normal).await?;
    let c = env.add("c", JobPriority::Normal).await?;
    env.take(a, ms(50)).await?; // earliest deadline
    env.take(b, ms(120)).await?;
    tokio::time::sleep(ms(300)).await;
    let report = env.reap(reap_now()).await?;
    assert_eq!(report.requeued, 2);
    // Processed a then b, each pushed to the head: b is fetched first.
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [b, a, c]);
    assert_eq!(leased_ids(&env.fetch(10).await?), [b, a, c]);

    // A reap takes at most `limit` jobs, earliest deadline first.
    let d = env.add("d", JobPriority::High).await?;
    let e = env.add("e", JobPriority::High).await?;
    env.take(d, ms(50)).await?;
    env.take(e, ms(120)).await?;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(env.reap(ReapOptions { limit: 1, ..reap_now() }).await?.requeued, 1);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [d]);
    assert_eq!(env.reap(ReapOptions { limit: 1, ..reap_now() }).await?.requeued, 1);
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [e, d]);
    Ok(())
}

async fn reap_cancels_a_lost_job_that_was_asked_to_cancel(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("x", JobPriority::Normal).await?;
    env.take(id, ms(50)).await?;
    assert_eq!(env.q.cancel_job(id).await?, CancelOutcome::Requested);
    tokio::time::sleep(ms(200)).await;
    let report = env.reap(reap_now()).await?;
    assert_eq!(report, ReapReport { ran: true, requeued: 0, failed: 0, cancelled: 1 });
    let job = env.job(id).await?;
    assert_eq!((job.status, job.args), (JobStatus::Cancelled, json!({ "job": "x" })));
    assert!(env.fetch(1).await?.jobs.is_empty());
    let stats = env.stats().await?;
    assert_eq!(stats.counters, QueueCounters { enqueued: 1, cancelled: 1, ..Default::default() });
    assert_eq!(stats.processing, 0);
    Ok(())
}

async fn reap_runs_at_most_once_per_interval(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let opts = ReapOptions { interval: Duration::from_secs(30), ..reap_now() };
    assert!(env.reap(opts).await?.ran);
    let second = env.reap(opts).await?;
    assert_eq!(second, ReapReport { ran: false, ..Default::default() });
    // Another client of the same namespace shares the lock.
    let peer = env.peer().await;
    assert!(!peer.reap(&opts).await?.ran);
    Ok(())
}

async fn heartbeat_extends_the_lease_and_reports_lost_leases(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add("a", JobPriority::Normal).await?;
    let b = env.add("b", JobPriority::Normal).await?;
    let la = env.take(a, ms(500)).await?;
    let lb = env.take(b, LEASE).await?;
    let beat = |leases: Vec<Lease>| Heartbeat {
        worker_id: "worker-1".into(),
        info: json!({ "pid": 1 }),
        leases,
        lease: ms(500),
        grace: Duration::ZERO,
    };

    // Beating every 150 ms keeps a 500 ms lease alive well past its first deadline.
    let started = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(ms(150)).await;
        let reply = env.b.heartbeat(&beat(vec![la.lease])).await?;
        assert!(reply.lost.is_empty() && reply.cancel.is_empty(), "{reply:?}");
        assert_eq!(env.reap(reap_now()).await?.requeued, 0, "a renewed lease was reaped");
    }
    assert!(started.elapsed() > ms(1000));
    assert_eq!(env.job(a).await?.status, JobStatus::Running);

    // Without heartbeats it lapses.
    tokio::time::sleep(ms(700)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    let again = env.take(a, LEASE).await?;
    assert_eq!(again.lease.attempt, 2);

    let unknown = Lease { id: JobId::new(), attempt: 1 };
    let reply = env.b.heartbeat(&beat(vec![la.lease, lb.lease, unknown])).await?;
    let lost: HashSet<JobId> = reply.lost.iter().copied().collect();
    assert_eq!(lost, HashSet::from([a, unknown.id]));
    assert!(reply.cancel.is_empty());
    Ok(())
}

async fn poison_pill_takes_the_fail_path_after_max_stalls(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.q.enqueue("poison", json!({})).max_retries(0).await?;
    let opts = ReapOptions { max_stalls: 1, ..reap_now() };

    env.take(id, ms(50)).await?;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(opts).await?, ReapReport { ran: true, requeued: 1, ..Default::default() });
    assert_eq!(env.job(id).await?.status, JobStatus::Pending);

    let l = env.take(id, ms(50)).await?;
    assert_eq!(l.lease.attempt, 2);
    tokio::time::sleep(ms(200)).await;
    assert_eq!(env.reap(opts).await?, ReapReport { ran: true, failed: 1, ..Default::default() });

    let job = env.job(id).await?;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some(ERR_WORKER_LOST));
    assert_eq!(ids(&env.b.list_dead(0, 10).await?), [id]);
    let stats = env.stats().await?;
    assert_eq!(stats.dead_letter, 1);
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 1, failed: 1, dead: 1, stalled: 2, ..Default::default() }
    );
    Ok(())
}

async fn timeout_reap_fails_a_job_past_its_timeout(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    // A lease never lasts past started + timeout + grace: not when fetched with a long
    // lease (a), and not when renewed with one (b).
    let a = env.q.enqueue("wedged_a", json!({})).timeout(ms(100)).await?;
    let la = env.take(a, Duration::from_secs(10)).await?;
    let b = env.q.enqueue("wedged_b", json!({})).timeout(ms(300)).await?;
    let lb = env.take(b, ms(50)).await?;
    let beat = Heartbeat {
        worker_id: "worker-1".into(),
        info: json!({}),
        leases: vec![lb.lease],
        lease: Duration::from_secs(10),
        grace: Duration::ZERO,
    };
    assert_eq!(env.b.heartbeat(&beat).await?.lost, Vec::<JobId>::new());
    assert_eq!(env.reap(reap_now()).await?.failed, 0, "reaped before its timeout");

    tokio::time::sleep(ms(500)).await;
    let backoff = RetryPolicy::exponential(HOUR, HOUR);
    let before = Utc::now();
    let report = env.reap(ReapOptions { retry: backoff, ..reap_now() }).await?;
    let after = Utc::now();
    assert_eq!(report, ReapReport { ran: true, failed: 2, ..Default::default() });

    for id in [a, b] {
        let job = env.job(id).await?;
        assert_eq!(job.status, JobStatus::Retrying);
        assert_eq!(job.error.as_deref(), Some(ERR_TIMEOUT));
        assert_eq!(job.retry_count, 1);
        let due = job.scheduled_at.ok_or("a retry has scheduled_at")?;
        assert_within("retry due", due, before + td(HOUR), after + td(HOUR));
    }
    let stats = env.stats().await?;
    assert_eq!((stats.processing, stats.scheduled, stats.retrying), (0, 2, 2));
    assert_eq!(
        stats.counters,
        QueueCounters { enqueued: 2, failed: 2, retried: 2, ..Default::default() }
    );
    assert_eq!(env.complete(la.lease, json!(null)).await?, AckOutcome::Stale);
    assert_eq!(env.complete(lb.lease, json!(null)).await?, AckOutcome::Stale);
    Ok(())
}

async fn release_puts_jobs_back_at_the_head_in_the_given_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let mut n = Vec::new();
    for name in ["a", "b", "c", "d"] {
        n.push(env.add(name, JobPriority::Normal).await?);
    }
    let (a, b, c, d) = (n[0], n[1], n[2], n[3]);
    let f = env.fetch(3).await?;
    assert_eq!(leased_ids(&f), [a, b, c]);
    let lease = |i: usize| f.jobs[i].lease;
    let e = env.add("e", JobPriority::Normal).await?;
    let h = env.add("h", JobPriority::High).await?;

    let stale_b = Lease { id: b, attempt: 7 };
    let unknown = Lease { id: JobId::new(), attempt: 1 };
    assert_eq!(env.b.release(&[lease(2), stale_b, lease(0), unknown]).await?, 2);
    for id in [c, a] {
        let job = env.job(id).await?;
        assert_eq!((job.status, job.attempt, job.retry_count), (JobStatus::Pending, 1, 0));
    }
    assert_eq!(env.job(b).await?.status, JobStatus::Running);
    // Head of their own priority: the high job still comes first.
    assert_eq!(ids(&env.b.list_pending(None, 10).await?), [h, c, a, d, e]);
    let stats = env.stats().await?;
    assert_eq!(stats.pending, pending(0, 1, 4, 0));
    assert_eq!((stats.processing, stats.counters.stalled, stats.counters.failed), (1, 0, 0));

    // A released delivery is stale.
    assert_eq!(env.complete(lease(2), json!(1)).await?, AckOutcome::Stale);
    assert_eq!(env.b.release(&[lease(2)]).await?, 0);

    // A job asked to cancel is cancelled instead of released.
    assert_eq!(env.q.cancel_job(b).await?, CancelOutcome::Requested);
    assert_eq!(env.b.release(&[lease(1)]).await?, 1);
    assert_eq!(env.job(b).await?.status, JobStatus::Cancelled);
    assert_eq!(env.stats().await?.counters.cancelled, 1);

    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), [h, c, a, d, e]);
    let attempts: Vec<u32> = f.jobs.iter().map(|l| l.lease.attempt).collect();
    assert_eq!(attempts, [1, 2, 2, 1, 1], "release keeps the attempt; the next fetch adds one");
    Ok(())
}

async fn unknown_ids_are_none_not_found_or_stale(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = JobId::new();
    let lease = Lease { id, attempt: 1 };
    assert_eq!(env.b.get_job(id).await?, None);
    assert_not_found(env.b.cancel(id).await.err().ok_or("cancel")?, id);
    assert_not_found(env.b.retry_dead(id).await.err().ok_or("retry_dead")?, id);
    assert_eq!(env.complete(lease, json!(1)).await?, AckOutcome::Stale);
    assert_eq!(env.fail(failure(lease, "x", true, late_retry())).await?, FailOutcome::Stale);
    assert_eq!(env.b.release(&[lease]).await?, 0);
    let reply = env
        .b
        .heartbeat(&Heartbeat {
            worker_id: "w".into(),
            info: json!({}),
            leases: vec![lease],
            lease: LEASE,
            grace: Duration::ZERO,
        })
        .await?;
    assert_eq!((reply.lost, reply.cancel), (vec![id], vec![]));
    assert_eq!(env.b.get_job(id).await?, None, "a call about an unknown id created it");
    assert_eq!(env.stats().await?, QueueStats::default());
    Ok(())
}

async fn workers_are_listed_after_heartbeat_and_forgotten_after_ttl(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let beat = |w: &str| Heartbeat {
        worker_id: w.into(),
        info: json!({ "host": w, "concurrency": 4 }),
        leases: vec![],
        lease: LEASE,
        grace: Duration::ZERO,
    };
    assert!(env.b.list_workers(HOUR).await?.is_empty());
    let before = Utc::now();
    env.b.heartbeat(&beat("w-b")).await?;
    env.b.heartbeat(&beat("w-a")).await?;
    let after = Utc::now();
    let workers = env.b.list_workers(Duration::from_secs(10)).await?;
    let names: Vec<&str> = workers.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(names, ["w-a", "w-b"], "sorted by worker id");
    for w in &workers {
        assert_within("last_seen", w.last_seen, before, after);
        assert_eq!(w.info, json!({ "host": w.worker_id, "concurrency": 4 }));
    }

    tokio::time::sleep(ms(300)).await;
    env.b.heartbeat(&beat("w-a")).await?;
    let recent = env.b.list_workers(ms(200)).await?;
    assert_eq!(recent.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["w-a"]);
    assert_eq!(env.b.list_workers(HOUR).await?.len(), 2, "listing does not forget anyone");

    // A reap forgets workers silent for worker_ttl.
    tokio::time::sleep(ms(300)).await;
    env.b.heartbeat(&beat("w-c")).await?;
    env.reap(ReapOptions { worker_ttl: ms(200), ..reap_now() }).await?;
    let left = env.b.list_workers(HOUR).await?;
    assert_eq!(left.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["w-c"]);
    Ok(())
}

// regression: `reap` drew one jitter for all the jobs it failed in a call, so jobs lost
// together came back at the same instant, which is what the jitter is there to prevent.
async fn reap_draws_a_jitter_per_job(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let n = 8;
    let mut want = HashSet::new();
    for i in 0..n {
        want.insert(env.q.enqueue(format!("lost-{i}"), json!({})).max_retries(1).await?);
    }
    let f = env.b.fetch(&crate::fetch_req(n, ms(1))).await?;
    assert_eq!(f.jobs.len(), n);
    tokio::time::sleep(ms(10)).await;
    let retry = RetryPolicy::exponential(HOUR, HOUR).with_jitter(HOUR);
    let before = Utc::now();
    let report = env.reap(ReapOptions { max_stalls: 0, retry, ..reap_now() }).await?;
    let after = Utc::now();
    assert_eq!(report, ReapReport { ran: true, failed: n as u64, ..ReapReport::default() });
    let mut due = HashSet::new();
    for id in want {
        let job = env.job(id).await?;
        assert_eq!(job.status, JobStatus::Retrying);
        let at = job.scheduled_at.ok_or("a retrying job has a due time")?;
        assert_within("retry due", at, before + td(HOUR), after + td(HOUR) + td(HOUR));
        due.insert(at);
    }
    assert!(due.len() > 1, "{n} jobs failed by one reap share one due time: {due:?}");
    Ok(())
}
