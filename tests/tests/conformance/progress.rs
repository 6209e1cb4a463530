//! Progress (`Backend::progress`): the current delivery's report is stored with the job and
//! extends its lease as a heartbeat does; any other delivery's is refused and changes
//! nothing; the report stays with the record until it is purged.

use std::time::Duration;

use jobs_core::backend::{AckOutcome, BackendConfig, Lease, ProgressUpdate};
use jobs_core::{JobPriority, NewJob, Progress};
use serde_json::json;

use crate::{Env, Kind, LEASE, TestResult, failure, late_retry, ms, reap_now};

conformance!(
    the_current_delivery_reports_progress_shown_with_the_job,
    a_progress_report_extends_the_lease,
    a_stale_or_finished_delivery_cannot_report,
    a_purged_record_takes_its_progress_with_it,
);

fn report(lease: Lease, percent: f64, message: &str) -> ProgressUpdate {
    ProgressUpdate {
        lease,
        progress: Progress::new(percent, message).unwrap_or_else(|e| panic!("{e}")),
        lease_for: LEASE,
        grace: Duration::ZERO,
    }
}

async fn the_current_delivery_reports_progress_shown_with_the_job(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("import", JobPriority::Normal).await?;
    assert_eq!(env.job(id).await?.progress, None, "no report yet");
    let l = env.take(id, LEASE).await?;
    assert!(env.b.progress(&report(l.lease, 25.0, "batch 1 of 4")).await?);
    let shown = env.job(id).await?.progress;
    assert_eq!(shown, Some(Progress { percent: 25.0, message: "batch 1 of 4".into() }));
    // The latest report wins; it is kept once the job has completed.
    assert!(env.b.progress(&report(l.lease, 100.0, "")).await?);
    assert_eq!(env.complete(l.lease, json!(1)).await?, AckOutcome::Completed);
    let job = env.job(id).await?;
    assert_eq!(job.progress, Some(Progress { percent: 100.0, message: String::new() }));
    // Listings show it too.
    let other = env.add("other", JobPriority::Normal).await?;
    let l = env.take(other, LEASE).await?;
    assert!(env.b.progress(&report(l.lease, 50.0, "half")).await?);
    assert!(env.b.release(&[l.lease]).await? == 1);
    let listed = env.b.list_pending(None, 10).await?;
    assert_eq!(listed[0].progress.as_ref().map(|p| p.percent), Some(50.0), "{listed:?}");
    Ok(())
}

async fn a_progress_report_extends_the_lease(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("slow", JobPriority::Normal).await?;
    let l = env.take(id, ms(150)).await?;
    tokio::time::sleep(ms(50)).await;
    assert!(
        env.b.progress(&ProgressUpdate { lease_for: ms(500), ..report(l.lease, 10.0, "") }).await?
    );
    // Past the fetch's lease: a reap would have taken it back without the report.
    tokio::time::sleep(ms(200)).await;
    let r = env.reap(reap_now()).await?;
    assert_eq!((r.requeued, r.failed), (0, 0), "{r:?}");
    assert_eq!(env.job(id).await?.attempt, 1);
    // Never past started + timeout + grace, as a heartbeat.
    let short = env.q.enqueue("short", json!({})).timeout(ms(100)).await?;
    let l = env.take(short, LEASE).await?;
    assert!(
        env.b.progress(&ProgressUpdate { lease_for: LEASE, ..report(l.lease, 1.0, "") }).await?
    );
    tokio::time::sleep(ms(150)).await;
    let r = env.reap(reap_now()).await?;
    assert_eq!(r.failed, 1, "a hung handler still loses its lease: {r:?}");
    Ok(())
}

async fn a_stale_or_finished_delivery_cannot_report(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let id = env.add("flaky", JobPriority::Normal).await?;
    let first = env.take(id, ms(1)).await?;
    tokio::time::sleep(ms(5)).await;
    assert_eq!(env.reap(reap_now()).await?.requeued, 1);
    let second = env.take(id, LEASE).await?;
    assert!(!env.b.progress(&report(first.lease, 90.0, "old")).await?, "a lost delivery");
    assert_eq!(env.job(id).await?.progress, None, "nothing changed");
    assert!(env.b.progress(&report(second.lease, 10.0, "new")).await?);
    let out = env.fail(failure(second.lease, "boom", true, late_retry())).await?;
    assert!(matches!(out, jobs_core::backend::FailOutcome::Retrying { .. }), "{out:?}");
    assert!(!env.b.progress(&report(second.lease, 20.0, "late")).await?, "not running");
    let unknown = Lease { id: jobs_core::JobId::new(), attempt: 1 };
    assert!(!env.b.progress(&report(unknown, 20.0, "")).await?, "unknown job");
    assert_eq!(env.job(id).await?.progress.map(|p| p.message), Some("new".to_owned()));
    Ok(())
}

async fn a_purged_record_takes_its_progress_with_it(kind: Kind) -> TestResult {
    let cfg = BackendConfig { result_ttl: Duration::ZERO, ..BackendConfig::default() };
    let env = Env::with_config(kind, cfg).await;
    let job = NewJob::new("once", json!({}));
    let id = env.add_job(job.clone()).await?;
    let l = env.take(id, LEASE).await?;
    assert!(env.b.progress(&report(l.lease, 100.0, "done")).await?);
    assert_eq!(env.complete(l.lease, json!(1)).await?, AckOutcome::Completed);
    // Kept for no time: purged by the completion itself, or by the next purge.
    tokio::time::sleep(ms(5)).await;
    env.b.purge(10).await?;
    assert!(env.b.get_job(id).await?.is_none(), "purged");
    // The id enqueued again is a new job, without the old one's report.
    env.add_job(job).await?;
    assert_eq!(env.job(id).await?.progress, None);
    Ok(())
}
