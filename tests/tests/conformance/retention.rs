//! Retention: finished records are purged after `result_ttl`, by `purge` and in passing
//! by `complete`.

use jobs_core::JobPriority;
use jobs_core::JobStatus;
use jobs_core::backend::BackendConfig;
use serde_json::json;

use crate::{Env, HOUR, Kind, LEASE, TestResult, kill_jobs, leased_ids, ms};

conformance!(
    finished_records_are_purged_after_result_ttl,
    complete_purges_expired_records_in_passing,
);

async fn finished_records_are_purged_after_result_ttl(kind: Kind) -> TestResult {
    // Long enough for the set-up to finish well within it, even on a slow machine.
    let cfg = BackendConfig { result_ttl: ms(400), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let done = env.add("done", JobPriority::Normal).await?;
    let l = env.take(done, LEASE).await?;
    env.q.complete(l.lease, json!(1)).await?;
    let cancelled = env.add("cancelled", JobPriority::Normal).await?;
    env.q.cancel_job(cancelled).await?;
    let dead = kill_jobs(&env, 1).await?[0];
    let waiting = env.q.enqueue("waiting", json!({})).delay(HOUR).await?;
    let extra = env.add("extra", JobPriority::Low).await?;
    let l = env.take(extra, LEASE).await?;
    env.q.complete(l.lease, json!(2)).await?;

    assert_eq!(env.b.purge(100).await?, 0, "purged before result_ttl");
    assert!(env.b.get_job(done).await?.is_some());

    tokio::time::sleep(ms(600)).await;
    assert_eq!(env.b.purge(2).await?, 2, "purge respects its limit");
    assert_eq!(env.b.purge(100).await?, 1);
    assert_eq!(env.b.purge(100).await?, 0);
    for id in [done, cancelled, extra] {
        assert_eq!(env.b.get_job(id).await?, None, "{id} was not purged");
    }
    // Dead and waiting jobs are not subject to result_ttl.
    assert_eq!(env.job(dead).await?.status, JobStatus::Failed);
    assert_eq!(env.job(waiting).await?.status, JobStatus::Pending);
    let stats = env.stats().await?;
    assert_eq!(stats.counters.purged, 3);
    assert_eq!((stats.dead_letter, stats.scheduled), (1, 1));
    Ok(())
}

async fn complete_purges_expired_records_in_passing(kind: Kind) -> TestResult {
    let cfg = BackendConfig { result_ttl: ms(100), ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let old = env.add("old", JobPriority::Normal).await?;
    let new = env.add("new", JobPriority::Normal).await?;
    let f = env.fetch(2).await?;
    assert_eq!(leased_ids(&f), [old, new]);
    env.q.complete(f.jobs[0].lease, json!("old")).await?;
    tokio::time::sleep(ms(250)).await;
    env.q.complete(f.jobs[1].lease, json!("new")).await?;
    assert_eq!(env.b.get_job(old).await?, None, "complete did not purge an expired record");
    assert_eq!(env.job(new).await?.result, Some(json!("new")));
    assert_eq!(env.stats().await?.counters.purged, 1);
    Ok(())
}
