//! Self-fencing on a timer: a job whose lease this worker can no longer be sure of is
//! stopped before another process may take it back, whatever the calls in flight are doing.
//!
//! Every running job remembers when the last call that extended its lease was *sent* (the
//! fetch that leased it, then each heartbeat that was answered without listing it as lost).
//! The backend extends a lease to its own `now + lease`, and its `now` is no earlier than
//! that send, so the lease lasts at least until `sent + lease` on this process's clock; the
//! reaper takes it back only after a further `grace`. The fence stops the job at
//! `sent + lease - margin`: its handler's cancellation token is cancelled, and its task is
//! aborted `margin / 2` later if it has not returned. Its outcome is not reported: the
//! delivery may already be someone else's.
//!
//! A heartbeat that hangs (reconnecting, waiting for a reply that never comes) therefore
//! delays nothing: the timer does not wait for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Fate, Inner, WorkerConfig, lock};
use crate::backend::Lease;

/// When, after the send of the last call that extended a lease, the fence stops the job
/// (`cancel`), and how long after that it aborts a handler that ignored its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FenceTimes {
    pub(super) cancel: Duration,
    pub(super) abort_grace: Duration,
}

impl FenceTimes {
    /// `margin` is a fifth of the lease, but at most half of what the lease leaves after a
    /// heartbeat interval, so that healthy heartbeats (sent every interval, each with the
    /// rest of that half to be answered) never trip it. Defaults (lease 30 s, heartbeats
    /// every 10 s): cancel 24 s and abort 27 s after the last answered heartbeat was sent;
    /// the reaper takes a job back 35 s after it at the earliest.
    pub(super) fn of(cfg: &WorkerConfig) -> FenceTimes {
        let lease = cfg.lease;
        let slack = lease.saturating_sub(cfg.heartbeat_interval) / 2;
        let margin = (lease / 5).min(slack);
        FenceTimes { cancel: lease - margin, abort_grace: margin / 2 }
    }
}

/// Stops every running job whose lease is past its fence time, sleeping until the next one
/// is due (woken early when a job is added, so a new earliest time is never missed).
pub(super) async fn fence_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let times = FenceTimes::of(&inner.cfg);
    loop {
        let now = Instant::now();
        let mut fenced: Vec<Lease> = Vec::new();
        let next = {
            let mut map = lock(&inner.in_flight);
            let mut next: Option<Instant> = None;
            for f in map.values_mut().filter(|f| f.fate == Fate::Running) {
                let at = f.renewed + times.cancel;
                if at <= now {
                    tracing::warn!(job.id = %f.lease.id, job.attempt = f.lease.attempt,
                        since_renewed_ms = now.duration_since(f.renewed).as_millis() as u64,
                        "lease not renewed in time; stopping the job (fenced)");
                    f.fate = Fate::Lost;
                    f.token.cancel();
                    fenced.push(f.lease);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            next
        };
        if !fenced.is_empty() {
            tokio::spawn(abort_after(inner.clone(), fenced, times.abort_grace));
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = inner.fence_wake.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Aborts the fenced deliveries whose handlers are still running after `grace`.
async fn abort_after(inner: Arc<Inner>, fenced: Vec<Lease>, grace: Duration) {
    tokio::time::sleep(grace).await;
    let map = lock(&inner.in_flight);
    for lease in fenced {
        if let Some(f) = map.get(&lease.id).filter(|f| f.lease == lease && f.fate == Fate::Lost)
            && let Some(a) = &f.abort
        {
            tracing::warn!(job.id = %lease.id, "fenced handler ignored its cancellation; aborting it");
            a.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(lease: u64, interval: u64) -> FenceTimes {
        FenceTimes::of(&WorkerConfig {
            lease: Duration::from_millis(lease),
            heartbeat_interval: Duration::from_millis(interval),
            ..WorkerConfig::default()
        })
    }

    #[test]
    fn fence_times_leave_room_for_heartbeats_and_stop_before_the_lease_ends() {
        let ms = Duration::from_millis;
        // Defaults: a fifth of the lease.
        assert_eq!(
            times(30_000, 10_000),
            FenceTimes { cancel: ms(24_000), abort_grace: ms(3_000) }
        );
        // Heartbeats close to the lease: half of what is left after one interval.
        assert_eq!(times(10_000, 9_000), FenceTimes { cancel: ms(9_500), abort_grace: ms(250) });
        for (lease, interval) in [(1_000, 250), (2_000, 1_999), (30_000, 10_000), (60_000, 1_000)] {
            let t = times(lease, interval);
            // A heartbeat sent one interval after the last answered one can still renew.
            assert!(t.cancel > ms(interval), "{lease}/{interval}: {t:?}");
            // Stopped (aborted at the latest) before the lease can lapse.
            assert!(t.cancel + t.abort_grace < ms(lease), "{lease}/{interval}: {t:?}");
        }
    }
}
