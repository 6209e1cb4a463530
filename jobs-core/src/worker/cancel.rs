//! Cancel delivery: a side loop that blocks on the backend's cancel notices
//! ([`Backend::watch_cancels`](crate::backend::Backend::watch_cancels)) and cancels the
//! token of each running job named there at once, instead of at the next heartbeat (which
//! still reports cancels, as a backstop). What happens to the handler then (its grace, the
//! abort) is `dispatch::execute`'s.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::loops::Backoff;
use super::{Fate, Inner, lock};
use crate::backend::{CancelCursor, Lease};

/// The longest single wait for notices (the Redis backend caps it at its own block time).
const WATCH_MAX: Duration = Duration::from_secs(5);

/// Reads the notices from `cursor` on (`None`: from the log's end, once read) until `stop`.
/// A failed read is retried with backoff from the same cursor, so a reconnect loses
/// nothing the backend still keeps.
pub(super) async fn cancel_loop(
    inner: Arc<Inner>,
    mut cursor: Option<CancelCursor>,
    stop: CancellationToken,
) {
    let backend = inner.queue.backend().clone();
    let mut backoff = Backoff::default();
    loop {
        let read = tokio::select! {
            r = backend.watch_cancels(cursor.as_ref(), WATCH_MAX) => r,
            _ = stop.cancelled() => return,
        };
        match read {
            Ok(notices) => {
                backoff.reset();
                inner.cancel_requested(&notices.leases);
                cursor = Some(notices.cursor);
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(error = %crate::escape::Escaped(&e), retry_in_ms = wait.as_millis() as u64,
                    "waiting for cancel requests failed; heartbeats still report them");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

impl Inner {
    /// Cancels the token of each of these deliveries that this worker runs.
    pub(super) fn cancel_requested(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
        let map = &mut *lock(&self.in_flight);
        for lease in leases {
            if let Some(f) = map.get_mut(&lease.id)
                && f.lease == *lease
                && f.fate == Fate::Running
                && !f.token.is_cancelled()
            {
                tracing::info!(job.id = %lease.id, "cancel requested");
                f.token.cancel();
            }
        }
    }
}
