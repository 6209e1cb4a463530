//! The dispatcher loop (fetch, wait for work, spawn), and running one job: its handler in
//! its own task (panics caught, timeout enforced), then acknowledging its outcome.

use crate::escape::Escaped;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::loops::{Backoff, retry_until};
use super::{Fate, InFlight, Inner, JobWorker, lock};
use crate::backend::{
    Completion, FailOutcome, Failure, FetchRequest, Lease, LeasedJob, ThrottleOutcome,
};
use crate::context::JobContext;
use crate::context::State;
use crate::error::Error;
use crate::handler::BoxFuture;
use crate::handler::JobError;
use crate::job::{Job, JobStatus, MAX_DELAY};
use crate::queue::JobQueue;
use crate::registry::Registry;
use crate::stats::WorkerStatus;
use tokio::task::JoinError;
use tokio::time::error::Elapsed;

/// The longest a busy worker waits for more free slots before it fetches anyway.
const BATCH_WAIT: Duration = Duration::from_millis(2);

impl JobWorker {
    pub(super) async fn dispatch(&self, jobs: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let inner = &self.inner;
        let backend = inner.queue.backend().clone();
        let mut backoff = Backoff::default();
        let mut batch_wait_over = false;
        // What a wait-and-fetch leased, with when its reply came: started next.
        let mut ready: Option<(crate::backend::Fetched, Instant)> = None;
        // The queues served, and whose turn it is to come first (weighted selections).
        let selection =
            inner.cfg.queues.clone().unwrap_or_else(|| inner.registry.queue_selection());
        let mut turns = super::queues::QueueTurns::new(&selection);
        loop {
            while jobs.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                if let Some((f, _)) = ready.take() {
                    release_fetched(&backend, &f).await;
                }
                return;
            }
            let free = inner.cfg.max_concurrent_jobs.saturating_sub(jobs.len());
            if free == 0 {
                tokio::select! {
                    _ = jobs.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            // Batching: while busy, fetch when a quarter of the slots are free, or after
            // a short moment, rather than one job per call as each one finishes. A fetch
            // costs Redis about the same for one job as for a dozen (REDIS.md §9).
            let low_water = (inner.cfg.max_concurrent_jobs / 4).max(1);
            if free < low_water && !jobs.is_empty() && !batch_wait_over && ready.is_none() {
                tokio::select! {
                    _ = jobs.join_next() => {}
                    _ = tokio::time::sleep(BATCH_WAIT) => batch_wait_over = true,
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            batch_wait_over = false;
            let req = FetchRequest {
                max: free.min(64),
                worker_id: inner.cfg.worker_id.clone(),
                lease: inner.cfg.lease,
                grace: inner.cfg.grace,
                queues: turns.next(&selection),
            };
            let (fetched, sent) = match ready.take() {
                Some(r) => r,
                None => {
                    let sent = Instant::now();
                    match backend.fetch(&req).await {
                        Ok(f) => {
                            backoff.reset();
                            (f, sent)
                        }
                        Err(e) => {
                            back_off(&mut backoff, shutdown, "fetch failed", &e).await;
                            continue;
                        }
                    }
                }
            };
            if !fetched.jobs.is_empty() {
                *lock(&inner.status) = WorkerStatus::Processing;
                // In flight from now on, before any of them runs: heartbeats renew them and
                // the fence times them from this fetch, even while their tasks wait for a
                // thread.
                let tokens: Vec<CancellationToken> = {
                    let mut map = lock(&inner.in_flight);
                    fetched
                        .jobs
                        .iter()
                        .map(|lj| {
                            let token = CancellationToken::new();
                            let f = InFlight {
                                lease: lj.lease,
                                token: token.clone(),
                                abort: None,
                                fate: Fate::Running,
                                renewed: sent,
                            };
                            map.insert(lj.lease.id, f);
                            token
                        })
                        .collect()
                };
                inner.fence_wake.notify_one();
                for (lj, token) in fetched.jobs.into_iter().zip(tokens) {
                    jobs.spawn(run_job(inner.clone(), lj, token));
                }
                continue;
            }
            if jobs.is_empty() {
                *lock(&inner.status) = WorkerStatus::Idle;
            }
            let wait = fetched
                .next_due_in
                .map_or(inner.cfg.poll_interval, |d| d.min(inner.cfg.poll_interval));
            // A job finishing frees a slot but does not make work ready; no need to wake.
            match backend.wait_then_fetch(wait, &req, shutdown).await {
                Ok((f, _)) if shutdown.is_cancelled() => {
                    release_fetched(&backend, &f).await;
                    return;
                }
                Ok(r) => {
                    backoff.reset();
                    ready = Some(r);
                }
                Err(e) => back_off(&mut backoff, shutdown, "waiting for work failed", &e).await,
            }
        }
    }
}

/// After a failed backend call: logs it and pauses for the backoff's next step (less if
/// the worker stops meanwhile).
async fn back_off(backoff: &mut Backoff, shutdown: &CancellationToken, what: &str, e: &Error) {
    let wait = backoff.next();
    tracing::warn!(error = %Escaped(e), retry_in_ms = wait.as_millis() as u64, "{what}");
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Stopping: what a fetch leased goes back at once, not when the reaper finds it.
async fn release_fetched(
    backend: &std::sync::Arc<dyn crate::backend::Backend>,
    f: &crate::backend::Fetched,
) {
    let leases: Vec<Lease> = f.jobs.iter().map(|lj| lj.lease).collect();
    if !leases.is_empty()
        && let Err(e) = backend.release(&leases).await
    {
        tracing::warn!(error = %Escaped(&e), "releasing jobs fetched at shutdown failed");
    }
}

/// What one attempt came to.
pub(crate) enum Outcome {
    Success(serde_json::Value),
    Failure {
        error: String,
        retryable: bool,
        /// The delay the handler asked for before the next attempt (within `MAX_DELAY`).
        retry_after: Option<Duration>,
    },
    /// Sent back by `ctx.rate_limited(delay)` (within `MAX_THROTTLE`).
    Throttled {
        delay: Duration,
    },
    /// Stopped from outside (lease lost, or released at shutdown): no acknowledgement.
    Abandoned,
    /// No handler of the job's name in this process: the job is given back.
    Unhandled,
    /// Cancelled, and aborted after `cancel_grace` because the handler did not return:
    /// reported through `fail`, which the backend turns into `cancelled`.
    CancelAborted {
        error: String,
    },
}

async fn run_job(inner: Arc<Inner>, lj: LeasedJob, token: CancellationToken) {
    let LeasedJob { job, lease } = lj;
    let name = job.name.clone();
    // Waited for a handler of this process (a job whose handler is missing here is given
    // back, not started), by the queue the job is in: one this worker serves, so the
    // label's values are bounded by its configuration.
    let handler = inner.registry.handler(&name);
    let waited = crate::metrics::queue_wait(&job);
    if let (Some(_), Some(waited)) = (handler, waited) {
        crate::metrics::observe_wait(&job.queue, job.priority, waited);
    }
    #[cfg(not(feature = "otel"))]
    let span = tracing::info_span!("job", job.id = %job.id, job.name = %Escaped(&job.name),
        job.attempt = lease.attempt, job.priority = %job.priority);
    // The same span as an OpenTelemetry consumer span, with the messaging conventions'
    // attributes, tied to the span that enqueued the job.
    #[cfg(feature = "otel")]
    let span = {
        let queue = job.queue.as_str();
        let span = tracing::info_span!("job",
            otel.name = %format_args!("process {queue}"),
            otel.kind = "consumer",
            messaging.system = crate::otel::MESSAGING_SYSTEM,
            messaging.destination.name = queue,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.operation = "process",
            messaging.message.id = %job.id,
            job.id = %job.id, job.name = %Escaped(&job.name),
            job.attempt = lease.attempt, job.priority = %job.priority,
            job.queue_wait_ms = waited.map(|w| w.as_millis() as u64),
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty);
        crate::otel::connect(
            &span,
            &job,
            inner.cfg.trace_parent == crate::worker::TraceParent::Child,
        );
        span
    };
    async move {
        tracing::debug!("job started");
        let started = Instant::now();
        let outcome = execute(&inner, job, lease, token).await;
        let fate = {
            let mut map = lock(&inner.in_flight);
            match map.get(&lease.id) {
                Some(f) if f.lease == lease => map.remove(&lease.id).map_or(Fate::Running, |f| f.fate),
                // A later delivery of the same job, fetched again after this one was lost.
                Some(_) => Fate::Lost,
                None => Fate::Running,
            }
        };
        if fate == Fate::Lost {
            crate::metrics::record(&name, crate::metrics::Event::LeaseLost);
        }
        let outcome = if fate == Fate::Running { outcome } else { Outcome::Abandoned };
        // The span's status: an error for a failed attempt, with its message.
        #[cfg(feature = "otel")]
        match &outcome {
            Outcome::Success(_) => {
                tracing::Span::current().record("otel.status_code", "OK");
            }
            Outcome::Failure { error, .. } | Outcome::CancelAborted { error } => {
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", crate::backend::truncate_error(error));
            }
            Outcome::Abandoned | Outcome::Unhandled | Outcome::Throttled { .. } => {}
        }
        let took = started.elapsed();
        match outcome {
            Outcome::Success(result) => {
                inner.record(true, took);
                crate::metrics::observe(&name, took);
                let (tx, rx) = oneshot::channel();
                if inner.acks.send((Completion { lease, result }, tx)).is_err() {
                    tracing::error!("acknowledgement channel closed; the job will be redelivered");
                    return;
                }
                match rx.await {
                    Ok(Ok(())) => {
                        crate::metrics::record(&name, crate::metrics::Event::Completed);
                        tracing::debug!(elapsed_ms = took.as_millis() as u64, "job completed")
                    }
                    Ok(Err(Error::InvalidState { status: JobStatus::Cancelled, .. })) => {
                        tracing::info!("job cancelled; its result was not recorded")
                    }
                    Ok(Err(Error::StaleLease { .. })) => {
                        crate::metrics::record(&name, crate::metrics::Event::LeaseLost);
                        tracing::warn!(
                            "job finished after its lease was taken back; its result was not recorded")
                    }
                    Ok(Err(e)) => tracing::error!(error = %Escaped(&e),
                        "could not record completion; the job will be redelivered"),
                    Err(_) => tracing::error!("acknowledgement dropped; the job will be redelivered"),
                }
            }
            Outcome::Failure { error, retryable, retry_after } => {
                inner.record(false, took);
                crate::metrics::observe(&name, took);
                crate::metrics::record(&name, crate::metrics::Event::Failed);
                let failure = Failure {
                    lease,
                    error: error.clone(),
                    retryable,
                    retry: inner.cfg.retry,
                    retry_after,
                };
                // Through the queue, which turns a stale outcome into `Error::StaleLease`.
                match retry_until(inner.cfg.lease, "fail", || inner.side_queue().fail(&failure)).await {
                    Ok(FailOutcome::Retrying { at }) => {
                        crate::metrics::record(&name, crate::metrics::Event::Retried);
                        tracing::warn!(error = %Escaped(&error), retry_at = %at, "job failed; will retry")
                    }
                    Ok(FailOutcome::Dead) => {
                        crate::metrics::record(&name, crate::metrics::Event::DeadLettered);
                        tracing::error!(error = %Escaped(&error), "job failed; moved to the dead-letter queue")
                    }
                    Ok(FailOutcome::Cancelled) => tracing::info!("job cancelled"),
                    // `Ok(Stale)` does not come back from the queue; named to complete the match.
                    Ok(FailOutcome::Stale) | Err(Error::StaleLease { .. }) => {
                        crate::metrics::record(&name, crate::metrics::Event::LeaseLost);
                        tracing::warn!(error = %Escaped(&error),
                            "job failed after its lease was taken back; not recorded")
                    }
                    Err(e) => tracing::error!(error = %Escaped(&e),
                        "could not record failure; the job will be redelivered"),
                }
            }
            Outcome::Throttled { delay } => {
                let backend = inner.side_queue().backend().clone();
                match retry_until(inner.cfg.lease, "throttle", || backend.throttle(&lease, delay)).await {
                    Ok(ThrottleOutcome::Parked { until }) => tracing::info!(%until,
                        "job rate limited by its handler; its rate limiters are closed until then"),
                    Ok(ThrottleOutcome::Delayed { at }) => {
                        tracing::info!(%at, "job rate limited by its handler; it comes back then")
                    }
                    Ok(ThrottleOutcome::Cancelled) => tracing::info!("job cancelled"),
                    Ok(ThrottleOutcome::Stale) => {
                        crate::metrics::record(&name, crate::metrics::Event::LeaseLost);
                        tracing::warn!("job rate limited after its lease was taken back; not recorded")
                    }
                    Err(e) => tracing::error!(error = %Escaped(&e),
                        "could not send the rate-limited job back; it will be redelivered"),
                }
            }
            Outcome::CancelAborted { error } => {
                inner.record(false, took);
                // Retryable only as a fallback: the backend, which asked for the cancel,
                // ends the job cancelled.
                let failure =
                    Failure { lease, error, retryable: true, retry: inner.cfg.retry, retry_after: None };
                match retry_until(inner.cfg.lease, "fail", || inner.queue.fail(&failure)).await {
                    Ok(FailOutcome::Cancelled) => tracing::info!(
                        "job cancelled; its handler did not return within the cancel grace and was aborted"),
                    Ok(other) => tracing::warn!(outcome = ?other,
                        "aborted a cancelled job's handler, but the backend did not cancel the job"),
                    Err(Error::StaleLease { .. }) => {
                        crate::metrics::record(&name, crate::metrics::Event::LeaseLost);
                        tracing::warn!(
                            "aborted a cancelled job's handler after its lease was taken back")
                    }
                    Err(e) => tracing::error!(error = %Escaped(&e),
                        "could not record the cancel; the job is cancelled when its lease lapses"),
                }
            }
            Outcome::Unhandled => super::unhandled::give_back(&inner, &name, lease).await,
            Outcome::Abandoned => {
                tracing::info!(?fate, "job stopped without acknowledgement")
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs the handler in its own task (so a panic is contained and a timeout can abort it).
/// The job is in `in_flight` already (put there at its fetch, with `token`).
async fn execute(
    inner: &Arc<Inner>,
    mut job: Job,
    lease: Lease,
    token: CancellationToken,
) -> Outcome {
    let call = match start_handler(
        &inner.registry,
        &mut job,
        inner.queue.clone(),
        inner.state.clone(),
        token.clone(),
        (inner.cfg.lease, inner.cfg.grace),
    ) {
        Ok(call) => call,
        Err(outcome) => return outcome,
    };
    // Its own task: a panic ends only that task (reported as a JoinError), and the
    // timeout below can abort it.
    // With `otel`, the handler runs in the attempt's span, so that what it enqueues carries
    // the trace on.
    #[cfg(feature = "otel")]
    let call = tracing::Instrument::in_current_span(call);
    let mut task = tokio::spawn(call);
    {
        let mut map = lock(&inner.in_flight);
        match map.get_mut(&lease.id) {
            Some(f) if f.fate == Fate::Running => f.abort = Some(task.abort_handle()),
            // Released or lost before the handler even started.
            _ => task.abort(),
        }
    }
    let timeout_at = tokio::time::Instant::now() + job.timeout;
    let joined = tokio::select! {
        biased;
        r = tokio::time::timeout_at(timeout_at, &mut task) => r,
        () = token.cancelled() => {
            // Asked to stop: a cancel request (a lost lease or a release also aborts the
            // task, which then ends at once). The handler gets `cancel_grace` to return,
            // within its timeout; then its task is aborted and the job recorded as
            // cancelled all the same.
            let grace_end = (tokio::time::Instant::now() + inner.cfg.cancel_grace).min(timeout_at);
            match tokio::time::timeout_at(grace_end, &mut task).await {
                Err(_) if grace_end < timeout_at => {
                    task.abort();
                    return Outcome::CancelAborted {
                        error: format!(
                            "cancelled: the handler did not stop within {:?} of the cancel request and was aborted",
                            inner.cfg.cancel_grace
                        ),
                    };
                }
                r => r,
            }
        }
    };
    if joined.is_err() {
        task.abort();
    }
    settle(joined, job.timeout)
}

/// Looks up `job`'s handler and starts its call (not yet polled) with the context every
/// handler gets, taking the arguments out of `job`; or, if no handler of that name is
/// registered, [`Outcome::Unhandled`]. Shared with [`testing`], so that
/// a test runs a handler exactly as a worker does.
///
/// [`testing`]: crate::testing
pub(crate) fn start_handler(
    registry: &Registry,
    job: &mut Job,
    queue: JobQueue,
    state: Arc<State>,
    token: CancellationToken,
    (lease, grace): (Duration, Duration),
) -> Result<BoxFuture<Result<serde_json::Value, JobError>>, Outcome> {
    let Some(handler) = registry.handler(&job.name).copied() else {
        // Another worker of the deployment may have it (a fleet mid-deploy).
        return Err(Outcome::Unhandled);
    };
    let args = std::mem::take(&mut job.args);
    let ctx = JobContext::for_job(job, queue)
        .with_cancellation(token)
        .with_state(state)
        .with_lease_terms(lease, grace);
    Ok(handler.call(args, ctx))
}

/// What a handler's task, run under a timeout of `timeout`, came to (a timed-out task must
/// be aborted by the caller). Shared with [`testing`].
///
/// [`testing`]: crate::testing
pub(crate) fn settle(
    joined: Result<Result<Result<serde_json::Value, JobError>, JoinError>, Elapsed>,
    timeout: Duration,
) -> Outcome {
    match joined {
        Ok(Ok(Ok(value))) => Outcome::Success(value),
        Ok(Ok(Err(e))) => failure_of(e),
        Ok(Err(join)) if join.is_panic() => Outcome::Failure {
            error: format!("handler panicked: {}", panic_message(join.into_panic().as_ref())),
            retryable: true,
            retry_after: None,
        },
        Ok(Err(join)) if join.is_cancelled() => Outcome::Abandoned,
        Ok(Err(join)) => Outcome::Failure {
            error: format!("handler task failed: {join}"),
            retryable: true,
            retry_after: None,
        },
        Err(_) => Outcome::Failure {
            error: format!("timeout: the job ran longer than {timeout:?}"),
            retryable: true,
            retry_after: None,
        },
    }
}

/// The stored error is the whole chain, `top: cause: root` (cut to `MAX_ERROR_LEN` by the
/// backend), not only the top line.
/// A delay asked for beyond the enqueue horizon is cut to it, and the stored error says so.
fn failure_of(e: JobError) -> Outcome {
    if e.is_rate_limited() {
        let delay = e.retry_delay().unwrap_or(Duration::from_secs(1));
        return Outcome::Throttled {
            delay: delay.clamp(Duration::from_millis(1), crate::backend::limits::MAX_THROTTLE),
        };
    }
    let mut error = format!("{e:#}");
    let retry_after = e.retry_delay().map(|d| {
        if d > MAX_DELAY {
            error = format!(
                "{error} (retry_after of {d:?} cut to {} days, the longest delay)",
                MAX_DELAY.as_secs() / 86_400
            );
        }
        d.min(MAX_DELAY)
    });
    Outcome::Failure { error, retryable: e.is_retryable(), retry_after }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
