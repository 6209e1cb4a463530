//! The worker's machinery thread: heartbeats, acknowledgements, fencing and reaping run on
//! a small current-thread tokio runtime on an OS thread of their own, owned by the worker
//! and stopped with it.
//!
//! Handlers run on the caller's runtime, where a handler that blocks its thread (a CPU
//! loop, blocking I/O, `std::thread::sleep`) stalls every task queued behind it, possibly
//! the whole runtime when it has few threads. Were the side loops tasks there too, such a
//! handler would stop the heartbeats of every other job: their leases would lapse, another
//! process would run them again, and the fence, a timer on that same runtime, could not
//! stop them. On this thread they keep going whatever the handlers do.
//!
//! That is only true if their backend calls do not depend on the caller's runtime either:
//! a Redis connection is driven by a task of the runtime it was opened on. So the thread
//! opens its own handle on the backend ([`Backend::for_current_runtime`]) and the loops
//! use it once it is there (until then, and if it cannot be opened, the caller's).
//!
//! [`Backend::for_current_runtime`]: crate::backend::Backend::for_current_runtime

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::fence::fence_loop;
use super::loops::{Backoff, ack_loop, heartbeat_loop, reap_loop, send_heartbeat};
use super::{Ack, Inner};
use crate::error::{Error, Result};
use crate::queue::JobQueue;

/// The running machinery thread. Dropping it stops the thread (without waiting).
pub(super) struct Machinery {
    stop: CancellationToken,
    done: Option<oneshot::Receiver<()>>,
}

impl Machinery {
    /// Starts the thread and its loops.
    pub(super) fn start(inner: Arc<Inner>, acks: mpsc::UnboundedReceiver<Ack>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("cannot build the worker's runtime: {e}")))?;
        let stop = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        // Logs from the thread go where the caller's go.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let span = tracing::Span::current();
        let token = stop.clone();
        std::thread::Builder::new()
            .name("jobs-worker".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = span.enter();
                    runtime.block_on(run(inner, acks, token));
                    // Ends the loops' connections and whatever task is left.
                    drop(runtime);
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::Backend(format!("cannot start the worker's thread: {e}")))?;
        Ok(Machinery { stop, done: Some(done) })
    }

    /// Stops the loops, sends a last heartbeat (with the worker's final stats), and waits
    /// until the thread has let go of everything.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Machinery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(inner: Arc<Inner>, acks: mpsc::UnboundedReceiver<Ack>, stop: CancellationToken) {
    let mut side = JoinSet::new();
    side.spawn(open_own_handle(inner.clone(), stop.clone()));
    side.spawn(ack_loop(inner.clone(), acks));
    side.spawn(heartbeat_loop(inner.clone(), stop.clone()));
    side.spawn(fence_loop(inner.clone(), stop.clone()));
    if inner.cfg.reap {
        side.spawn(reap_loop(inner.clone(), stop.clone()));
    }
    stop.cancelled().await;
    // Last heartbeat so that other processes see the final stats.
    if let Err(e) = send_heartbeat(&inner).await {
        tracing::debug!(error = %crate::escape::Escaped(&e), "final heartbeat failed");
    }
    // The ack loop ends once every sender is gone; the worker keeps one, so end it by
    // aborting: the worker stops this only after its job tasks (the only producers) are
    // done, and each of them waited for its acknowledgement.
    side.abort_all();
    while side.join_next().await.is_some() {}
}

/// Opens the backend handle the loops use on this thread, retrying (with backoff) until it
/// is open or the worker stops.
async fn open_own_handle(inner: Arc<Inner>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    loop {
        match inner.queue.backend().for_current_runtime().await {
            Ok(Some(backend)) => {
                let _ = inner.machinery_queue.set(JobQueue::from_backend(backend));
                return;
            }
            Ok(None) => return,
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(error = %crate::escape::Escaped(&e), retry_in_ms = wait.as_millis() as u64,
                    "cannot open the worker's own backend connection; using the shared one meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
