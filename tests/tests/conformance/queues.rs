//! Named queues: a job is in one queue (the default one unless named); a fetch takes jobs
//! only from the queues it serves, in their order, each in strict priority order, and
//! none from a paused queue; due jobs are promoted into their own queue whoever
//! promotes them; a job given back (release, reap, retry) returns to its own queue;
//! `queues` lists every queue with its ready jobs, and stats sum them all.

use std::time::Duration;

use jobs_core::backend::{FetchRequest, Lease};
use jobs_core::{JobPriority, NewJob, RunAt};
use serde_json::json;

use crate::{Env, Kind, LEASE, TestResult, fetch_req, leased_ids, reap_now};

conformance!(
    a_fetch_takes_only_the_queues_it_serves_in_their_order,
    a_paused_queue_keeps_its_jobs_until_it_is_resumed,
    due_and_given_back_jobs_return_to_their_own_queue,
    queues_are_listed_with_their_ready_jobs_and_stats_sum_them,
    a_bad_queue_name_is_refused_and_nothing_is_written,
    the_pending_listing_shows_every_queue_priority_by_priority,
);

fn in_queue(name: &str, queue: &str, priority: JobPriority) -> NewJob {
    NewJob { priority, queue: Some(queue.to_owned()), ..NewJob::new(name, json!({ "job": name })) }
}

fn serving(max: usize, queues: &[&str]) -> FetchRequest {
    FetchRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..fetch_req(max, LEASE)
    }
}

async fn a_fetch_takes_only_the_queues_it_serves_in_their_order(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let d = env.add("d", JobPriority::Critical).await?;
    let p_low = env.add_job(in_queue("p_low", "payments", JobPriority::Low)).await?;
    let p_high = env.add_job(in_queue("p_high", "payments", JobPriority::High)).await?;
    let m = env.add_job(in_queue("m", "market", JobPriority::Critical)).await?;
    assert_eq!(env.job(p_low).await?.queue, "payments");
    assert_eq!(env.job(d).await?.queue, "default");
    // The default request serves the default queue only.
    assert_eq!(leased_ids(&env.b.fetch(&fetch_req(10, LEASE)).await?), [d]);
    // Queue order first, priorities within a queue: payments' high, its low, then market.
    let got = env.b.fetch(&serving(10, &["payments", "market"])).await?;
    assert_eq!(leased_ids(&got), [p_high, p_low, m]);
    assert!(got.jobs.iter().all(|j| j.job.queue != "default"));
    // Nothing left anywhere.
    assert!(env.b.fetch(&serving(10, &["payments", "market", "default"])).await?.jobs.is_empty());
    Ok(())
}

async fn a_paused_queue_keeps_its_jobs_until_it_is_resumed(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let a = env.add_job(in_queue("a", "payments", JobPriority::Normal)).await?;
    let b = env.add_job(in_queue("b", "payments", JobPriority::Normal)).await?;
    let d = env.add("d", JobPriority::Normal).await?;
    assert!(env.b.pause_queue("payments", true).await?);
    assert!(!env.b.pause_queue("payments", true).await?, "paused already");
    let q = env.b.queues().await?;
    let pay = q.iter().find(|q| q.name == "payments").ok_or("payments listed")?;
    assert!(pay.paused && pay.total_pending == 2, "{q:?}");
    // Nothing of a paused queue is taken; the other queues go on.
    let got = env.b.fetch(&serving(10, &["payments", "default"])).await?;
    assert_eq!(leased_ids(&got), [d]);
    // Enqueues into a paused queue go on.
    let c = env.add_job(in_queue("c", "payments", JobPriority::Critical)).await?;
    // Resumed, a waiting worker of the queue is woken and takes them, in order.
    let waiter = env.peer().await;
    let wait = tokio::spawn(async move {
        let t = std::time::Instant::now();
        waiter
            .wait_for(Duration::from_secs(5), &["payments".to_owned()])
            .await
            .map(|()| t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(env.b.pause_queue("payments", false).await?);
    let waited = wait.await??;
    assert!(waited < Duration::from_secs(3), "a resume wakes the queue's workers: {waited:?}");
    assert_eq!(leased_ids(&env.b.fetch(&serving(10, &["payments"])).await?), [c, a, b]);
    assert!(!env.b.pause_queue("payments", false).await?, "running already");
    // The default queue can be paused too.
    assert!(env.b.pause_queue("default", true).await?);
    let e = env.add("e", JobPriority::Normal).await?;
    assert!(env.b.fetch(&fetch_req(10, LEASE)).await?.jobs.is_empty());
    assert!(env.b.pause_queue("default", false).await?);
    assert_eq!(leased_ids(&env.b.fetch(&fetch_req(10, LEASE)).await?), [e]);
    Ok(())
}

async fn due_and_given_back_jobs_return_to_their_own_queue(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let delayed = NewJob {
        run_at: RunAt::Delay(Duration::from_millis(50)),
        ..in_queue("later", "payments", JobPriority::Normal)
    };
    let later = env.add_job(delayed).await?;
    tokio::time::sleep(Duration::from_millis(120)).await;
    // A fetch of another queue promotes it, into its own queue (not taken here).
    assert!(env.b.fetch(&serving(10, &["market"])).await?.jobs.is_empty());
    assert_eq!(env.job(later).await?.queue, "payments");
    let got = env.b.fetch(&serving(10, &["payments"])).await?;
    assert_eq!(leased_ids(&got), [later]);
    // Released: back into payments, not the default queue.
    let lease = Lease { id: later, attempt: 1 };
    assert_eq!(env.b.release(&[lease]).await?, 1);
    assert!(env.b.fetch(&fetch_req(10, LEASE)).await?.jobs.is_empty(), "not in default");
    let again = env.b.fetch(&serving(10, &["payments"])).await?;
    assert_eq!(leased_ids(&again), [later]);
    // A lease that lapses is reaped back into payments too.
    let short = env.add_job(in_queue("short", "payments", JobPriority::High)).await?;
    let l = env
        .b
        .fetch(&FetchRequest { lease: Duration::from_millis(30), ..serving(1, &["payments"]) })
        .await?;
    assert_eq!(leased_ids(&l), [short]);
    tokio::time::sleep(Duration::from_millis(80)).await;
    env.reap(reap_now()).await?;
    assert!(env.b.fetch(&fetch_req(10, LEASE)).await?.jobs.is_empty(), "not in default");
    assert_eq!(leased_ids(&env.b.fetch(&serving(10, &["payments"])).await?), [short]);
    Ok(())
}

async fn queues_are_listed_with_their_ready_jobs_and_stats_sum_them(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let q = env.b.queues().await?;
    assert_eq!(q.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["default"]);
    env.add("d", JobPriority::Low).await?;
    env.add_job(in_queue("a", "payments", JobPriority::High)).await?;
    let gone = env.add_job(in_queue("b", "payments", JobPriority::High)).await?;
    env.add_job(in_queue("c", "market", JobPriority::Critical)).await?;
    // A cancelled ready job is not counted (its list entry is a ghost).
    env.b.cancel(gone).await?;
    let q = env.b.queues().await?;
    let names: Vec<&str> = q.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["default", "market", "payments"]);
    let by = |n: &str| q.iter().find(|q| q.name == n).cloned().ok_or("listed");
    assert_eq!((by("payments")?.pending.high, by("payments")?.total_pending), (1, 1));
    assert_eq!((by("market")?.pending.critical, by("default")?.pending.low), (1, 1));
    assert!(q.iter().all(|q| !q.paused));
    let s = env.stats().await?;
    assert_eq!((s.pending.critical, s.pending.high, s.pending.low, s.total_pending), (1, 1, 1, 3));
    Ok(())
}

async fn a_bad_queue_name_is_refused_and_nothing_is_written(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    for bad in ["", "pay ments", "a:b", "x{y}"] {
        let job = in_queue("j", bad, JobPriority::Normal);
        let refused = |r: &jobs_core::Error| matches!(r, jobs_core::Error::InvalidQueue { .. });
        let e = env.b.enqueue(&[job]).await.expect_err("a bad name is refused");
        assert!(refused(&e), "{bad:?}: {e}");
        let e = env.b.pause_queue(bad, true).await.expect_err("a bad name is refused");
        assert!(refused(&e), "{bad:?}: {e}");
    }
    assert_eq!(env.stats().await?.counters.enqueued, 0);
    assert_eq!(env.b.queues().await?.len(), 1);
    Ok(())
}

async fn the_pending_listing_shows_every_queue_priority_by_priority(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let d_low = env.add("d_low", JobPriority::Low).await?;
    let p_high = env.add_job(in_queue("p_high", "payments", JobPriority::High)).await?;
    let d_high = env.add("d_high", JobPriority::High).await?;
    let a_high = env.add_job(in_queue("a_high", "audit", JobPriority::High)).await?;
    let p_low = env.add_job(in_queue("p_low", "payments", JobPriority::Low)).await?;
    let ids = |v: Vec<jobs_core::Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    // Priority first; within one, queue by name (audit, default, payments).
    let all = ids(env.b.list_pending(None, 100).await?);
    assert_eq!(all, [a_high, d_high, p_high, d_low, p_low]);
    assert_eq!(ids(env.b.list_pending(Some(JobPriority::Low), 100).await?), [d_low, p_low]);
    assert_eq!(ids(env.b.list_pending(None, 2).await?), [a_high, d_high]);
    // A paused queue's jobs are still listed: they are waiting, not gone.
    env.b.pause_queue("payments", true).await?;
    assert_eq!(ids(env.b.list_pending(None, 100).await?), all);
    Ok(())
}
