//! Rate and concurrency limits (`NewJob::limits`, `backend::limits`): a job over a limit is
//! parked, never handed out, and never blocks other keys; every way out of `running` frees
//! its concurrency slot and hands it to the next parked job; a rate limiter lets parked jobs
//! go when its next slot opens; `throttle` (a handler's `ctx.rate_limited`) closes the rate
//! limiters for a while without using a retry; `limits()` shows it all.

use std::time::Duration;

use jobs_core::backend::{
    AckOutcome, CancelOutcome, FailOutcome, GiveBack, GiveBackOutcome, ThrottleOutcome,
};
use jobs_core::{Error, JobId, JobLimits, JobStatus, Limiter, LimiterKind, NewJob};
use serde_json::json;

use crate::{Env, HOUR, Kind, LEASE, TestResult, failure, late_retry, leased_ids, ms, reap_now};

conformance!(
    a_concurrency_limit_parks_the_excess_without_blocking_other_keys,
    every_way_out_of_running_frees_the_slot_for_the_next_parked_job,
    with_max_one_the_jobs_of_a_key_run_in_enqueue_order,
    a_rate_limit_starts_at_most_max_per_window_and_wakes_the_parked,
    throttle_parks_the_job_and_closes_its_rate_limiters,
    throttle_without_a_rate_limit_delays_the_job_and_a_stale_lease_changes_nothing,
    cancelling_a_parked_job_or_one_holding_a_reservation_frees_what_it_held,
    bad_limits_are_refused_before_anything_is_written,
);

fn conc(key: &str, max: u32) -> Limiter {
    Limiter::Concurrency { key: key.into(), max }
}

fn rate(key: &str, max: u32, per: Duration) -> Limiter {
    Limiter::Rate { key: key.into(), max, per }
}

/// A job `name` held to `limiters`.
fn limited(name: &str, limiters: Vec<Limiter>) -> NewJob {
    NewJob { limits: Some(JobLimits { limiters }), ..NewJob::new(name, json!({ "n": name })) }
}

impl Env {
    /// Enqueues jobs `names` held to `limiters` each; their ids.
    async fn limited(&self, names: &[&str], limiters: &[Limiter]) -> Result<Vec<JobId>, String> {
        let mut out = Vec::new();
        for n in names {
            out.push(self.add_job(limited(n, limiters.to_vec())).await.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    async fn usage(&self, name: &str) -> Result<jobs_core::LimiterUsage, String> {
        let all = self.b.limits(100).await.map_err(|e| e.to_string())?;
        all.into_iter().find(|l| l.name == name).ok_or_else(|| format!("no limiter {name} in use"))
    }
}

async fn a_concurrency_limit_parks_the_excess_without_blocking_other_keys(
    kind: Kind,
) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.limited(&["a1", "a2", "a3"], &[conc("A", 1)]).await?;
    let b = env.limited(&["b1"], &[conc("B", 1)]).await?;
    let free = env.add_job(NewJob::new("free", json!({}))).await?;
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), vec![a[0], b[0], free], "one of each key, and the unlimited job");
    let s = env.stats().await?;
    assert_eq!((s.parked, s.total_pending, s.processing), (2, 0, 3), "{s:?}");
    assert_eq!(env.job(a[1]).await?.status, JobStatus::Pending, "a parked job is pending");
    let u = env.usage("c:A").await?;
    assert_eq!(
        (u.kind, u.key.as_str(), u.max, u.in_use, u.parked),
        (LimiterKind::Concurrency, "A", 1, 1, 2)
    );
    assert_eq!((u.per_ms, u.next_slot_at, u.blocked_until), (None, None, None));
    assert!(env.fetch(10).await?.jobs.is_empty(), "nothing more may start");
    // A slot frees: the first parked job gets it, and only it.
    assert_eq!(env.complete(f.jobs[0].lease, json!(1)).await?, AckOutcome::Completed);
    assert_eq!(env.stats().await?.parked, 1);
    let g = env.fetch(10).await?;
    assert_eq!(leased_ids(&g), vec![a[1]]);
    assert_eq!(env.usage("c:A").await?.in_use, 1);
    Ok(())
}

async fn every_way_out_of_running_frees_the_slot_for_the_next_parked_job(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    for path in ["complete", "retry", "dead", "release", "give_back", "reap", "throttle", "cancel"]
    {
        let key = format!("K-{path}");
        let ids = env.limited(&["first", "second"], &[conc(&key, 1)]).await?;
        let lease = if path == "reap" { ms(1) } else { LEASE };
        let f = env.b.fetch(&crate::fetch_req(10, lease)).await?;
        assert_eq!(leased_ids(&f), vec![ids[0]], "{path}: only the first starts");
        let l = f.jobs[0].lease;
        match path {
            "complete" => assert_eq!(env.complete(l, json!(1)).await?, AckOutcome::Completed),
            "retry" => {
                let out = env.fail(failure(l, "x", true, late_retry())).await?;
                assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
            }
            "dead" => {
                assert_eq!(env.fail(failure(l, "x", false, late_retry())).await?, FailOutcome::Dead)
            }
            "release" => assert_eq!(env.b.release(&[l]).await?, 1),
            "give_back" => {
                let g = GiveBack {
                    lease: l,
                    name: "first".into(),
                    delay: HOUR,
                    handled_elsewhere: true,
                    dead_after: HOUR,
                };
                assert!(matches!(env.b.give_back(&g).await?, GiveBackOutcome::Delayed { .. }));
            }
            "reap" => {
                tokio::time::sleep(ms(15)).await;
                let r = env.reap(reap_now()).await?;
                assert_eq!(r.requeued, 1, "{r:?}");
            }
            "throttle" => {
                let out = env.b.throttle(&l, HOUR).await?;
                assert!(matches!(out, ThrottleOutcome::Delayed { .. }), "{out:?}");
            }
            _ => {
                assert_eq!(env.b.cancel(ids[0]).await?, CancelOutcome::Requested);
                assert_eq!(env.complete(l, json!(1)).await?, AckOutcome::Cancelled);
            }
        }
        // Back at the head (release, a reap's requeue), the first keeps its slot and runs
        // again before the second.
        if path == "release" || path == "reap" {
            let again = env.fetch(10).await?;
            assert_eq!(leased_ids(&again), vec![ids[0]], "{path}: the first keeps its place");
            env.complete(again.jobs[0].lease, json!(null)).await?;
        }
        // The second job got the slot (reserved for it), whatever became of the first.
        let g = env.fetch(10).await?;
        assert!(
            leased_ids(&g).contains(&ids[1]),
            "{path}: the parked job starts: {:?}",
            leased_ids(&g)
        );
        assert_eq!(env.usage(&format!("c:{key}")).await?.parked, 0, "{path}");
        for j in &g.jobs {
            env.complete(j.lease, json!(null)).await?;
        }
    }
    assert_eq!(env.stats().await?.parked, 0);
    Ok(())
}

async fn with_max_one_the_jobs_of_a_key_run_in_enqueue_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let names: Vec<String> = (0..6).map(|i| format!("o{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = env.limited(&refs, &[conc("acct", 1)]).await?;
    let mut order = Vec::new();
    for _ in 0..ids.len() {
        let f = env.fetch(10).await?;
        assert_eq!(f.jobs.len(), 1, "one at a time: {:?}", leased_ids(&f));
        order.push(f.jobs[0].job.id);
        // A later job of the key arrives while one runs: it waits behind the parked ones.
        env.complete(f.jobs[0].lease, json!(null)).await?;
    }
    assert_eq!(order, ids);
    Ok(())
}

async fn a_rate_limit_starts_at_most_max_per_window_and_wakes_the_parked(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let per = ms(300);
    let ids = env.limited(&["r1", "r2", "r3", "r4", "r5"], &[rate("R", 2, per)]).await?;
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), ids[..2].to_vec());
    assert_eq!(env.stats().await?.parked, 3);
    let u = env.usage("r:2/300:R").await?;
    assert_eq!((u.kind, u.in_use, u.parked, u.per_ms), (LimiterKind::Rate, 2, 3, Some(300)));
    let first = f.jobs[0].job.started_at.ok_or("started")?;
    let next = u.next_slot_at.ok_or("a next slot")?;
    assert_eq!(
        next,
        first + crate::td(per),
        "the next slot opens when the oldest start leaves the window"
    );
    let d = f.next_due_in.ok_or("fetch tells when the limiter opens")?;
    assert!(d <= per, "{d:?}");
    // Fetch as a worker does (sleeping until told), until every job has started.
    let mut starts = vec![first, f.jobs[1].job.started_at.ok_or("started")?];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while starts.len() < ids.len() && std::time::Instant::now() < deadline {
        let f = env.fetch(10).await?;
        for j in &f.jobs {
            starts.push(j.job.started_at.ok_or("started")?);
        }
        if f.jobs.is_empty() {
            env.b.wait_for_work(f.next_due_in.unwrap_or(ms(50)).min(ms(100))).await?;
        }
    }
    assert_eq!(starts.len(), ids.len(), "every job starts in the end");
    // Never more than 2 starts in any 300 ms (the starts are the backend's own times).
    for (i, s) in starts.iter().enumerate() {
        let within = starts[i..].iter().filter(|t| **t < *s + crate::td(per)).count();
        assert!(within <= 2, "{within} starts within {per:?} of {s}: {starts:?}");
    }
    assert_eq!(env.stats().await?.parked, 0);
    Ok(())
}

async fn throttle_parks_the_job_and_closes_its_rate_limiters(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let ids = env.limited(&["t1", "t2"], &[rate("T", 10, HOUR), conc("T", 5)]).await?;
    let f = env.fetch(1).await?;
    assert_eq!(leased_ids(&f), vec![ids[0]]);
    let before = chrono::Utc::now();
    let out = env.b.throttle(&f.jobs[0].lease, ms(300)).await?;
    let ThrottleOutcome::Parked { until } = out else { return Err(format!("{out:?}").into()) };
    crate::assert_within(
        "held until",
        until,
        before + crate::td(ms(300)),
        chrono::Utc::now() + crate::td(ms(300)),
    );
    let s = env.stats().await?;
    assert_eq!(
        (s.parked, s.processing, s.counters.throttled, s.counters.failed),
        (1, 0, 1, 0),
        "{s:?}"
    );
    // The other job of the key is refused too while the limiter is closed.
    let g = env.fetch(10).await?;
    assert!(g.jobs.is_empty(), "{:?}", leased_ids(&g));
    assert!(g.next_due_in.is_some_and(|d| d <= ms(300)), "{:?}", g.next_due_in);
    let u = env.usage("r:10/3600000:T").await?;
    assert_eq!((u.parked, u.blocked_until), (2, Some(until)));
    let c = env.b.limits(100).await?.into_iter().find(|l| l.name == "c:T");
    assert!(
        c.as_ref().is_none_or(|c| c.in_use == 0),
        "the throttled job gave its slot back: {c:?}"
    );
    // Once it opens, the throttled job goes first, without having used a retry.
    let (l, _) = env.fetch_when_due(ids[0], Duration::from_secs(5)).await?;
    assert_eq!((l.job.attempt, l.job.retry_count), (2, 0));
    assert!(chrono::Utc::now() >= until - crate::TOL);
    let h = env.fetch(10).await?;
    assert_eq!(leased_ids(&h), vec![ids[1]]);
    Ok(())
}

async fn throttle_without_a_rate_limit_delays_the_job_and_a_stale_lease_changes_nothing(
    kind: Kind,
) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add_job(NewJob::new("plain", json!({}))).await?;
    let l = env.take(id, LEASE).await?;
    let out = env.b.throttle(&l.lease, HOUR).await?;
    let ThrottleOutcome::Delayed { at } = out else { return Err(format!("{out:?}").into()) };
    let j = env.job(id).await?;
    assert_eq!((j.status, j.scheduled_at, j.retry_count), (JobStatus::Pending, Some(at), 0));
    assert_eq!(env.b.throttle(&l.lease, HOUR).await?, ThrottleOutcome::Stale);
    assert!(matches!(
        env.b.throttle(&l.lease, Duration::ZERO).await,
        Err(Error::InvalidJob { .. })
    ));
    assert_eq!(env.stats().await?.counters.throttled, 1);
    Ok(())
}

async fn cancelling_a_parked_job_or_one_holding_a_reservation_frees_what_it_held(
    kind: Kind,
) -> TestResult {
    let env = Env::open(kind).await;
    let ids = env.limited(&["c1", "c2", "c3", "c4"], &[conc("C", 1)]).await?;
    let f = env.fetch(10).await?;
    assert_eq!(leased_ids(&f), vec![ids[0]]);
    // A parked job cancelled is out of its limiter's jobs.
    assert_eq!(env.b.cancel(ids[3]).await?, CancelOutcome::Cancelled);
    assert_eq!(env.stats().await?.parked, 2);
    assert_eq!(env.usage("c:C").await?.parked, 2);
    // The slot goes to c2 (reserved); c2 cancelled before it starts passes it on to c3.
    env.complete(f.jobs[0].lease, json!(null)).await?;
    assert_eq!(env.b.cancel(ids[1]).await?, CancelOutcome::Cancelled);
    let g = env.fetch(10).await?;
    assert_eq!(leased_ids(&g), vec![ids[2]]);
    env.complete(g.jobs[0].lease, json!(null)).await?;
    assert!(env.fetch(10).await?.jobs.is_empty());
    assert_eq!(env.stats().await?.parked, 0);
    assert_eq!(env.job(ids[3]).await?.status, JobStatus::Cancelled);
    Ok(())
}

async fn bad_limits_are_refused_before_anything_is_written(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let ok = limited("ok", vec![conc("k", 1)]);
    let bad = limited("bad", vec![conc("k", 0)]);
    let Err(err) = env.b.enqueue(&[ok.clone(), bad]).await else {
        return Err("a batch with a bad limit was accepted".into());
    };
    assert!(
        matches!(&err, Error::InvalidJob { reason } if reason.contains("concurrency")),
        "{err:?}"
    );
    assert!(env.b.get_job(ok.id).await?.is_none(), "the batch wrote nothing");
    Ok(())
}
