//! A job whose handler this process lacks (a fleet mid-deploy): given back to the queue
//! without using a retry, counted for its name, and dead-lettered only once no live worker
//! of the deployment has had the handler for `unhandled_dead_after`
//! ([`Backend::give_back`](crate::backend::Backend::give_back)).
//!
//! Which handlers the deployment runs is read from the worker registry, where every worker
//! lists its handlers in its heartbeat (`WorkerStats::handlers`). The list is read at most
//! once per [`REFRESH`], whatever the number of jobs given back: O(workers), never
//! O(queue).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::loops::retry_until;
use super::{Inner, lock};
use crate::backend::{GiveBack, GiveBackOutcome, Lease};

/// How long a reading of the worker registry serves.
const REFRESH: Duration = Duration::from_secs(2);

/// The handlers the live workers of the deployment run, as last read.
#[derive(Debug, Default)]
pub(super) struct LiveHandlers {
    names: HashSet<String>,
    /// A live worker did not say which handlers it runs (an older version): it may have
    /// any of them.
    unknown: bool,
}

impl LiveHandlers {
    fn has(&self, name: &str) -> bool {
        self.unknown || self.names.contains(name)
    }
}

/// Whether some live worker other than this one has the handler `name`. When the registry
/// cannot be read, yes: a read error must not send jobs to the dead-letter queue.
async fn handled_elsewhere(inner: &Inner, name: &str) -> bool {
    if let Some((at, live)) = lock(&inner.live_handlers).as_ref()
        && at.elapsed() < REFRESH
    {
        return live.has(name);
    }
    let ttl = inner.cfg.reap_options.worker_ttl;
    let workers = match inner.side_queue().backend().list_workers(ttl).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the worker registry; assuming the handler runs elsewhere");
            return true;
        }
    };
    let mut live = LiveHandlers::default();
    for w in workers.iter().filter(|w| w.worker_id != inner.cfg.worker_id) {
        match w.info.get("handlers").and_then(|h| h.as_array()) {
            Some(names) => {
                live.names.extend(names.iter().filter_map(|n| n.as_str()).map(str::to_owned))
            }
            None => live.unknown = true,
        }
    }
    let has = live.has(name);
    *lock(&inner.live_handlers) = Some((Instant::now(), Arc::new(live)));
    has
}

/// Gives the delivery back (see the module docs) and logs what became of it.
pub(super) async fn give_back(inner: &Inner, name: &str, lease: Lease) {
    let give = GiveBack {
        lease,
        name: name.to_owned(),
        delay: inner.cfg.unhandled_delay,
        handled_elsewhere: handled_elsewhere(inner, name).await,
        dead_after: inner.cfg.unhandled_dead_after,
    };
    crate::metrics::record(name, crate::metrics::Event::Unhandled);
    let backend = inner.side_queue().backend().clone();
    match retry_until(inner.cfg.lease, "give_back", || backend.give_back(&give)).await {
        Ok(GiveBackOutcome::Delayed { at }) => tracing::info!(
            handled_elsewhere = give.handled_elsewhere, offered_again_at = %at,
            "no handler for this job in this process; given back without using a retry"),
        Ok(GiveBackOutcome::Dead) => {
            crate::metrics::record(name, crate::metrics::Event::DeadLettered);
            tracing::error!(dead_after = ?give.dead_after,
                "no live worker has had this job's handler; moved to the dead-letter queue")
        }
        Ok(GiveBackOutcome::Cancelled) => tracing::info!("job cancelled"),
        Ok(GiveBackOutcome::Stale) => {
            crate::metrics::record(name, crate::metrics::Event::LeaseLost);
            tracing::warn!("could not give the job back: its lease was taken back")
        }
        Err(e) => tracing::error!(error = %e,
            "could not give the job back; it is taken back when its lease lapses"),
    }
}
