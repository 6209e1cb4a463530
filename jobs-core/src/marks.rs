//! Errors that tell the worker what to do with the job, wherever they sit in a handler's
//! error: [`Permanent`] (no retry) and [`RetryAfter`] (the next attempt after a given
//! delay, instead of the backoff). They are found in a `source()` chain and in anyhow's and
//! eyre's contexts, so that a handler returning `anyhow::Result` can use them too.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Marks an error as one that retrying cannot fix: the job goes to the dead-letter queue at
/// once, whatever retries it has left. It shows as the error it wraps (same message, same
/// causes), and is found anywhere in the error a handler returns: as the error itself, as a
/// `source()` of another error, or as an `anyhow`/`eyre` context.
///
/// ```
/// use jobs_core::{IntoJobError, Permanent};
///
/// fn check(id: &str) -> Result<(), Permanent> {
///     if id.is_empty() {
///         return Err(Permanent::new("an empty id cannot be looked up"));
///     }
///     Ok(())
/// }
///
/// let e = check("").unwrap_err().into_job_error();
/// assert!(!e.is_retryable());
/// assert_eq!(e.to_string(), "an empty id cannot be looked up");
/// ```
///
/// With anyhow (feature `anyhow`): `return Err(Permanent::new(e).into())`, or
/// `result.context(Permanent::new("bad input"))`.
pub struct Permanent(BoxError);

impl Permanent {
    /// Wraps an error, or a message (`&str`, `String`), or an `anyhow::Error`.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent(error.into())
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Permanent").field(&self.0).finish()
    }
}

impl StdError for Permanent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Asks for the job's next attempt after `delay` instead of after the retry backoff (a
/// rate limit's `Retry-After`, a resource known to come back at a given time). The attempt
/// still counts: the job is retried only while it has retries left, and goes to the
/// dead-letter queue otherwise. A delay beyond [`MAX_DELAY`](crate::MAX_DELAY) is cut to
/// it (the stored error says so). Shows as the error it wraps, and is found wherever
/// [`Permanent`] is; a permanent error is not retried, whatever delay it asks for.
///
/// ```
/// use std::time::Duration;
/// use jobs_core::{IntoJobError, RetryAfter};
///
/// let e = RetryAfter::new(Duration::from_secs(30), "rate limited").into_job_error();
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_delay(), Some(Duration::from_secs(30)));
/// ```
pub struct RetryAfter {
    delay: Duration,
    error: BoxError,
}

impl RetryAfter {
    /// Wraps an error (or a message), asking for a retry after `delay`.
    pub fn new(delay: Duration, error: impl Into<BoxError>) -> Self {
        RetryAfter { delay, error: error.into() }
    }

    /// The delay asked for.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryAfter")
            .field("delay", &self.delay)
            .field("error", &self.error)
            .finish()
    }
}

impl StdError for RetryAfter {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// What the marks found in one error say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) permanent: bool,
    /// The outermost [`RetryAfter`]'s delay.
    pub(crate) retry_after: Option<Duration>,
}

impl Marks {
    /// Adds what `other` found (the outer delay wins).
    pub(crate) fn or(self, other: Marks) -> Marks {
        Marks {
            permanent: self.permanent || other.permanent,
            retry_after: self.retry_after.or(other.retry_after),
        }
    }

    #[cfg(any(feature = "anyhow", feature = "eyre"))]
    pub(crate) fn of_permanent(p: Option<&Permanent>) -> Marks {
        match p {
            Some(p) => Marks { permanent: true, retry_after: None }.or(scan(p.inner())),
            None => Marks::default(),
        }
    }

    #[cfg(any(feature = "anyhow", feature = "eyre"))]
    pub(crate) fn of_retry_after(r: Option<&RetryAfter>) -> Marks {
        match r {
            Some(r) => Marks { permanent: false, retry_after: Some(r.delay) }.or(scan(r.inner())),
            None => Marks::default(),
        }
    }
}

/// The longest chain walked (a cycle of `source()`s must not hang the worker).
const MAX_DEPTH: usize = 64;

/// Walks `error` and its `source()`s, and the errors the marks wrap, for marks.
pub(crate) fn scan(error: &(dyn StdError + 'static)) -> Marks {
    let mut marks = Marks::default();
    let mut next = Some(error);
    for _ in 0..MAX_DEPTH {
        let Some(e) = next else { break };
        if let Some(p) = e.downcast_ref::<Permanent>() {
            marks.permanent = true;
            // Its inner error is hidden from the chain (it shows as the wrapper).
            marks = marks.or(scan_shallow(p.inner()));
        }
        if let Some(r) = e.downcast_ref::<RetryAfter>() {
            marks.retry_after = marks.retry_after.or(Some(r.delay));
            marks = marks.or(scan_shallow(r.inner()));
        }
        next = e.source();
    }
    marks
}

/// The marks of one error itself (not of its sources, which its wrapper's chain walks).
fn scan_shallow(e: &(dyn StdError + 'static)) -> Marks {
    let mut marks = Marks::default();
    if e.is::<Permanent>() {
        marks.permanent = true;
    }
    if let Some(r) = e.downcast_ref::<RetryAfter>() {
        marks.retry_after = Some(r.delay);
    }
    marks
}
