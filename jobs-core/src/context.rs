//! [`JobContext`]: what a running handler knows about its job and its surroundings, and
//! [`State`], the typed application state a service shares with every handler.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::backend::Backend;
use crate::job::JobId;
use crate::options::JobDefaults;

/// Application state shared with handlers, one value per type (a type map).
///
/// Build it once at startup, give it to the service (which keeps it in an `Arc`), and read it
/// in handlers with [`JobContext::state`]. Values are shared, not cloned: put connection pools
/// and clients in it, which are cheap to share.
///
/// ```
/// use jobs_core::State;
///
/// struct Db { url: String }
///
/// let state = State::new().with(Db { url: "postgres://…".into() }).with(42u32);
/// assert_eq!(state.get::<Db>().map(|d| d.url.as_str()), Some("postgres://…"));
/// assert_eq!(state.get::<u32>(), Some(&42));
/// assert!(state.get::<String>().is_none());
/// ```
#[derive(Default, Clone)]
pub struct State {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value, replacing any earlier value of the same type.
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Adds a value; returns whether one of the same type was replaced.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> bool {
        self.values.insert(TypeId::of::<T>(), Arc::new(value)).is_some()
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>())
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").field("len", &self.values.len()).finish_non_exhaustive()
    }
}

/// [`JobContext::state`] found no value of the type asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no application state of type `{type_name}` is registered on the service")]
pub struct MissingState {
    type_name: &'static str,
}

/// What a handler knows about the job it runs: its id, name and attempt, a cancellation
/// token, the queue (to enqueue follow-up jobs) and the application [`State`].
///
/// Take it as the last parameter of a handler (`ctx: JobContext`). Cheap to clone.
///
/// ```rust,standalone_crate
/// use jobs_core::prelude::*;
/// use jobs_core::{JobId, State};
///
/// struct Mailer { from: &'static str }
///
/// #[derive(Serialize, Deserialize)]
/// struct Welcome { user_id: String }
///
/// #[job_handler("send_welcome")]
/// async fn send_welcome(args: Welcome, ctx: JobContext) -> Result<String, JobError> {
///     if ctx.is_cancelled() {
///         return Err(JobError::msg("cancelled"));
///     }
///     let mailer = ctx.state::<Mailer>()?;
///     Ok(format!("{} -> {} (attempt {})", mailer.from, args.user_id, ctx.attempt()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), JobError> {
/// // A context as the worker builds it, here for a unit test of the handler.
/// let state = std::sync::Arc::new(State::new().with(Mailer { from: "noreply@example.com" }));
/// let ctx = JobContext::new(JobId::new(), "send_welcome", 1, JobQueue::memory()).with_state(state);
/// let out = send_welcome(Welcome { user_id: "u1".into() }, ctx).await?;
/// assert_eq!(out, "noreply@example.com -> u1 (attempt 1)");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JobContext {
    id: JobId,
    name: Arc<str>,
    attempt: u32,
    user_id: Option<Arc<str>>,
    /// When this delivery started, by the backend's clock (`None` for a context no fetch made).
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    cancel: CancellationToken,
    /// The queue's parts ([`JobContext::queue`] rebuilds it): the context sits below the
    /// queue in the module graph, so it holds what the queue is made of, not the queue.
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) defaults: JobDefaults,
    state: Arc<State>,
    /// The worker's lease length and grace: what a progress report extends the lease by.
    lease_terms: (Duration, Duration),
}

/// The lease terms of a context no worker made (the worker's defaults: 30 s, 5 s grace).
const DEFAULT_LEASE_TERMS: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(5));

impl JobContext {
    /// The context's own parts; the public constructors ([`JobContext::new`],
    /// [`JobContext::for_job`]) take a [`JobQueue`](crate::JobQueue) and live beside it.
    pub(crate) fn from_parts(
        id: JobId,
        name: Arc<str>,
        attempt: u32,
        user_id: Option<Arc<str>>,
        backend: Arc<dyn Backend>,
        defaults: JobDefaults,
    ) -> Self {
        JobContext {
            id,
            name,
            attempt,
            user_id,
            started_at: None,
            cancel: CancellationToken::new(),
            backend,
            defaults,
            state: Arc::new(State::new()),
            lease_terms: DEFAULT_LEASE_TERMS,
        }
    }

    /// The same context under a worker's lease length and grace (progress reports extend
    /// the lease by them, as heartbeats do).
    pub(crate) fn with_lease_terms(mut self, lease: Duration, grace: Duration) -> Self {
        self.lease_terms = (lease, grace);
        self
    }

    /// Reports how far the job has come: `percent` (0 to 100) and what it is doing. The
    /// report is stored with the job (its `progress`, shown by the API, the dashboard and
    /// the CLI) and counts as a heartbeat of this delivery: its lease is extended.
    ///
    /// [`Error::InvalidJob`](crate::Error::InvalidJob) for a percentage outside 0..=100 (nothing is stored);
    /// [`Error::StaleLease`](crate::Error::StaleLease) when this delivery's lease was taken back (the job is no
    /// longer this attempt's: the handler should stop).
    ///
    /// ```
    /// use jobs_core::prelude::*;
    ///
    /// #[job_handler("import_rows")]
    /// async fn import_rows(ctx: JobContext) -> Result<(), JobError> {
    ///     for batch in 0..4 {
    ///         // ... import a batch ...
    ///         ctx.progress(f64::from(batch + 1) * 25.0, format!("batch {} of 4", batch + 1)).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn progress(&self, percent: f64, message: impl Into<String>) -> crate::Result<()> {
        let update = crate::backend::ProgressUpdate {
            lease: crate::backend::Lease { id: self.id, attempt: self.attempt },
            progress: crate::job::Progress::new(percent, message)?,
            lease_for: self.lease_terms.0,
            grace: self.lease_terms.1,
        };
        if self.backend.progress(&update).await? {
            Ok(())
        } else {
            Err(crate::Error::StaleLease { id: self.id, attempt: self.attempt })
        }
    }

    /// The same context with this cancellation token.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The same context with this application state.
    pub fn with_state(mut self, state: Arc<State>) -> Self {
        self.state = state;
        self
    }

    /// The same context acting for this user.
    pub fn with_user_id(mut self, user_id: impl Into<Arc<str>>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.id
    }

    /// The job's (handler's) name.
    pub fn job_name(&self) -> &str {
        &self.name
    }

    /// Which delivery this is: 1 for the first, more after retries and lost workers.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When this delivery started, by the backend's clock (the fetch's instant: the time a
    /// rate limit counts), or `None` for a context no fetch made.
    pub fn started_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.started_at
    }

    /// The same context with the delivery's start (set by [`for_job`](Self::for_job)).
    pub(crate) fn with_started_at(mut self, t: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        self.started_at = t;
        self
    }

    /// The user the job acts for, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The token cancelled when the job is asked to stop (cancelled by an operator, or the
    /// worker shutting down). Long handlers should watch it, e.g. in a `tokio::select!`:
    /// after a cancel the handler has the worker's `cancel_grace` (default 5 s) to return
    /// before its task is aborted, and the job ends `cancelled` whatever it returns.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sends the job back because what it calls refused it (an HTTP 429, say): return the
    /// error this makes, `return Err(ctx.rate_limited(retry_after))`. The job goes back
    /// without using a retry, and its handler's rate limiters (`rate_limit(...)`) stay
    /// closed for `delay` for every job of their keys, across every process; a handler
    /// without a rate limit gets the job back after `delay`. See
    /// [`JobError::rate_limited`](crate::JobError::rate_limited).
    pub fn rate_limited(&self, delay: std::time::Duration) -> crate::JobError {
        crate::JobError::rate_limited(delay)
    }

    /// Whether the job has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the job is asked to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// The application state of type `T` registered on the service.
    ///
    /// Its error converts into [`JobError`](crate::JobError), so `ctx.state::<Db>()?` works
    /// in handlers.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, MissingState> {
        self.state.get::<T>().ok_or(MissingState { type_name: type_name::<T>() })
    }

    /// The whole application state.
    pub fn state_map(&self) -> &Arc<State> {
        &self.state
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}
