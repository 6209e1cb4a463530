//! The worker's side loops: acknowledgements (batched), heartbeats (lease renewal, lost
//! leases, cancel requests; self-fencing is the fence loop's, in `fence.rs`), reaping; and the backoff and retry helpers they
//! and the dispatcher share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ack, Fate, Inner, lock};
use crate::backend::{Completion, Heartbeat, Lease, ReapOptions};
use crate::error::{Error, Result};

/// Sends completions in batches: whatever is queued while one call is in flight goes out in
/// the next, so acknowledgements cost one round trip per batch, not per job, without a
/// timer adding latency.
pub(super) async fn ack_loop(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Ack>) {
    const MAX_BATCH: usize = 128;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<Completion>, Vec<_>) = batch.drain(..).unzip();
        // Through the queue, so that a stale lease means the same here as for a caller of
        // `JobQueue::complete`.
        let r =
            retry_until(inner.cfg.lease, "complete", || inner.side_queue().complete_many(&items))
                .await;
        match r {
            Ok(outs) => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(out);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(Error::Backend(msg.clone())));
                }
            }
        }
    }
}

pub(super) async fn send_heartbeat(inner: &Inner) -> Result<crate::backend::HeartbeatReply> {
    let leases: Vec<Lease> = lock(&inner.in_flight)
        .values()
        .filter(|f| f.fate == Fate::Running)
        .map(|f| f.lease)
        .collect();
    let info = serde_json::to_value(inner.stats())?;
    let beat = Heartbeat {
        worker_id: inner.cfg.worker_id.clone(),
        info,
        leases,
        lease: inner.cfg.lease,
        grace: inner.cfg.grace,
    };
    let sent = Instant::now();
    let reply = inner.side_queue().backend().heartbeat(&beat).await?;
    renewed(inner, &beat.leases, &reply.lost, sent);
    Ok(reply)
}

/// The leases a heartbeat sent at `sent` extended (all it carried but the lost ones) last
/// at least until `sent + lease`: the fence times their stop from there.
fn renewed(inner: &Inner, leases: &[Lease], lost: &[crate::job::JobId], sent: Instant) {
    let map = &mut *lock(&inner.in_flight);
    for lease in leases.iter().filter(|l| !lost.contains(&l.id)) {
        if let Some(f) = map.get_mut(&lease.id).filter(|f| f.lease == *lease) {
            f.renewed = f.renewed.max(sent);
        }
    }
}

pub(super) async fn heartbeat_loop(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        match send_heartbeat(&inner).await {
            Ok(reply) => {
                let map = &mut *lock(&inner.in_flight);
                for id in reply.lost {
                    if let Some(f) = map.get_mut(&id) {
                        tracing::warn!(job.id = %id, "lease lost; stopping the job");
                        f.fate = Fate::Lost;
                        f.token.cancel();
                        if let Some(a) = &f.abort {
                            a.abort();
                        }
                    }
                }
                for id in reply.cancel {
                    if let Some(f) = map.get_mut(&id) {
                        if !f.token.is_cancelled() {
                            tracing::info!(job.id = %id, "cancel requested");
                        }
                        f.token.cancel();
                    }
                }
            }
            Err(e) => {
                // No fencing here: a call may hang rather than fail. The fence loop stops
                // jobs on a timer from their last renewal (`fence.rs`).
                tracing::warn!(error = %crate::escape::Escaped(&e), "heartbeat failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.cfg.heartbeat_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

pub(super) async fn reap_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let opts =
        ReapOptions { retry: inner.cfg.retry, grace: inner.cfg.grace, ..inner.cfg.reap_options };
    loop {
        // Jitter spreads the processes' attempts; the backend's lock keeps one run per interval.
        let jitter = Duration::from_millis(rand::random::<u64>() % 250);
        tokio::select! {
            _ = tokio::time::sleep(opts.interval.max(Duration::from_millis(50)) + jitter) => {}
            _ = stop.cancelled() => return,
        }
        match inner.side_queue().backend().reap(&opts).await {
            Ok(r) if r.requeued + r.failed + r.cancelled > 0 => tracing::info!(
                requeued = r.requeued,
                failed = r.failed,
                cancelled = r.cancelled,
                "took back jobs from lost workers"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %crate::escape::Escaped(&e), "reap failed"),
        }
    }
}

/// Exponential backoff for reconnects: 50 ms doubling to 5 s.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    n: u32,
}

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let d = Duration::from_millis(50).saturating_mul(1 << self.n.min(7));
        self.n += 1;
        d.min(Duration::from_secs(5))
    }
    pub(super) fn reset(&mut self) {
        self.n = 0;
    }
}

/// Retries a backend call on infrastructure errors until `budget` has passed (the lease:
/// after that another process will have taken the job back anyway). Client errors (bad
/// state, unknown id) are returned at once.
pub(super) async fn retry_until<T, F, Fut>(budget: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e @ (Error::Redis(_) | Error::Backend(_))) if start.elapsed() < budget => {
                let wait = backoff.next();
                tracing::warn!(error = %crate::escape::Escaped(&e), op = what, retry_in_ms = wait.as_millis() as u64, "backend call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
