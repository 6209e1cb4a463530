//! What a handler is once the macros have erased its types: [`HandlerFn`], its error type
//! [`JobError`], the traits its argument and result types must satisfy, and the
//! [`JobDefinition`] trait behind typed enqueue.

use std::any::type_name;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::JobContext;
use crate::marks::{Marks, scan};
#[cfg(any(feature = "anyhow", feature = "eyre"))]
use crate::marks::{Permanent, RetryAfter};
use crate::options::HandlerDefaults;

/// A boxed, `Send` future, as erased handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A handler with its types erased: JSON arguments in, JSON result out.
///
/// This is what the worker calls. The macros generate one per handler; it decodes the
/// arguments (a decoding failure is a [permanent](JobError::permanent) error), calls the
/// function as written and encodes its result.
pub type HandlerFn =
    fn(serde_json::Value, JobContext) -> BoxFuture<Result<serde_json::Value, JobError>>;

/// Why a job's attempt failed: any error, plus whether retrying could help.
///
/// Works like `anyhow::Error`: `?` converts every `std::error::Error + Send + Sync + 'static`
/// into it, so handlers can return `Result<R, JobError>` and use `?` on anything. (A handler
/// may also return other error types directly, `anyhow::Error` among them: see
/// [`IntoJobError`].) Errors are
/// retryable by default; wrap one with [`JobError::permanent`] (or [`Permanent`], which is
/// found anywhere in an error's chain) to send the job straight to the dead-letter queue, and
/// with [`JobError::retry_after`] (or [`RetryAfter`]) to have its next attempt after a given
/// delay instead of the backoff.
///
/// `JobError` deliberately does not implement `std::error::Error` itself (that would make the
/// blanket `From` impl overlap with `From<T> for T`). For the same reason, and because
/// `String` might implement `Error` one day, plain strings convert through
/// [`JobError::msg`] and [`JobError::permanent_msg`] rather than `?` (coherence forbids
/// `From<String>` next to the blanket impl).
///
/// ```
/// use jobs_core::JobError;
///
/// fn parse(s: &str) -> Result<u32, JobError> {
///     let n: u32 = s.parse()?; // ParseIntError -> JobError, retryable
///     if n == 0 {
///         return Err(JobError::permanent_msg("zero is not a valid quantity"));
///     }
///     Ok(n)
/// }
///
/// assert!(parse("x").unwrap_err().is_retryable());
/// assert!(!parse("0").unwrap_err().is_retryable());
/// assert_eq!(parse("0").unwrap_err().to_string(), "zero is not a valid quantity");
/// ```
pub struct JobError {
    error: Box<dyn StdError + Send + Sync + 'static>,
    retryable: bool,
    retry_after: Option<Duration>,
    /// Sent back by [`rate_limited`](Self::rate_limited): `retry_after` is the delay.
    rate_limited: bool,
}

impl JobError {
    /// An error from any error value: retryable, unless a [`Permanent`] is found in its
    /// chain of `source()`s (and retried after the delay of a [`RetryAfter`] found there).
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        JobError::from_boxed(Box::new(error), Marks::default())
    }

    /// `error` with what its chain's marks and `outer` (the marks found around it) say.
    fn from_boxed(error: Box<dyn StdError + Send + Sync + 'static>, outer: Marks) -> Self {
        let marks = outer.or(scan(&*error));
        JobError {
            error,
            retryable: !marks.permanent,
            retry_after: marks.retry_after,
            rate_limited: false,
        }
    }

    /// A retryable error with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        JobError {
            error: message.to_string().into(),
            retryable: true,
            retry_after: None,
            rate_limited: false,
        }
    }

    /// The job was refused by what it calls (an HTTP 429 from an exchange, say): it goes
    /// back without using a retry, and the rate limiters it is held to
    /// (`rate_limit(...)`) stay closed for `delay`, for every job of their keys; a job
    /// without a rate limit comes back after `delay`. The attempt is not a failure (no
    /// error stored, no retry used). [`JobContext::rate_limited`](crate::JobContext::rate_limited)
    /// makes the same.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobs_core::JobError;
    ///
    /// let e = JobError::rate_limited(Duration::from_secs(2));
    /// assert!(e.is_rate_limited());
    /// assert_eq!(e.retry_delay(), Some(Duration::from_secs(2)));
    /// ```
    pub fn rate_limited(delay: Duration) -> Self {
        JobError {
            error: format!("rate limited for {delay:?}").into(),
            retryable: true,
            retry_after: Some(delay),
            rate_limited: true,
        }
    }

    /// Whether the handler sent the job back as [`rate_limited`](Self::rate_limited).
    pub fn is_rate_limited(&self) -> bool {
        self.rate_limited
    }

    /// `error`, asking for the job's next attempt after `delay` instead of the retry
    /// backoff. The attempt still counts (no retry left: the job is dead-lettered), and a
    /// permanent error stays permanent. A delay beyond [`MAX_DELAY`](crate::MAX_DELAY) is cut
    /// to it. Takes whatever [`permanent`](Self::permanent) takes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobs_core::JobError;
    ///
    /// let e = JobError::retry_after(Duration::from_secs(30), JobError::msg("rate limited"));
    /// assert_eq!(e.retry_delay(), Some(Duration::from_secs(30)));
    /// assert!(e.is_retryable());
    /// ```
    pub fn retry_after<M>(delay: Duration, error: impl IntoJobError<M>) -> Self {
        let mut e = error.into_job_error();
        e.retry_after = Some(delay);
        e
    }

    /// The delay before the next attempt that the handler asked for, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// An error that retrying cannot fix: the job is dead-lettered at once, whatever retries
    /// it has left. Takes any error (or a `JobError`); for a plain message use
    /// [`permanent_msg`](Self::permanent_msg).
    ///
    /// Accepts whatever a handler may return as its error ([`IntoJobError`]): `JobError`,
    /// `std::error::Error` types, `Box<dyn Error + Send + Sync>`, `anyhow::Error` and
    /// `eyre::Report` (with their features).
    pub fn permanent<M>(error: impl IntoJobError<M>) -> Self {
        let mut e = error.into_job_error();
        e.retryable = false;
        e
    }

    /// A [permanent](Self::permanent) error with a message.
    pub fn permanent_msg(message: impl fmt::Display) -> Self {
        JobError {
            error: message.to_string().into(),
            retryable: false,
            retry_after: None,
            rate_limited: false,
        }
    }

    /// Whether the job may be retried after this error.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The underlying error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref::<E>()
    }

    /// The underlying error, boxed.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.error
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        JobError::new(error)
    }
}

impl From<JobError> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(e: JobError) -> Self {
        e.error
    }
}

impl From<JobError> for Box<dyn StdError + 'static> {
    fn from(e: JobError) -> Self {
        e.error
    }
}

/// `{}` shows the error's own message; `{:#}` adds its chain of causes,
/// `outer: inner: root` (as `anyhow` does). Workers store the `{:#}` form on the job.
impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if f.alternate() {
            let mut source = self.error.source();
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("error", &self.error)
            .field("retryable", &self.retryable)
            .field("retry_after", &self.retry_after)
            .field("rate_limited", &self.rate_limited)
            .finish()
    }
}

/// Types that can be a job's arguments: `Serialize + DeserializeOwned + Send + 'static`.
///
/// Implemented for every such type; derive `Serialize` and `Deserialize` on your argument
/// struct. `()` is the argument type of handlers that take none.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the arguments of a job",
    label = "job arguments must implement `Serialize` and `DeserializeOwned`",
    note = "derive both: `#[derive(serde::Serialize, serde::Deserialize)]`, and own your data (no borrowed fields)"
)]
pub trait JobArgs: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> JobArgs for T {}

/// Types a handler can return on success: anything `Serialize` (stored as the job's result).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the result of a job",
    label = "a job's result must implement `Serialize`",
    note = "derive it: `#[derive(serde::Serialize)]`, or return `()`"
)]
pub trait JobOutput: Serialize {}

impl<T: Serialize> JobOutput for T {}

/// Error types a handler can return, and [`JobError::permanent`] accepts: [`JobError`],
/// every `std::error::Error + Send + Sync + 'static`, `Box<dyn std::error::Error + Send +
/// Sync>`, and with the cargo features `anyhow` and `eyre`, `anyhow::Error` and
/// `eyre::Report`.
///
/// The conversion keeps the error's chain of causes (`source()`s, anyhow's and eyre's
/// context): the job's stored error is `top: cause: root`.
///
/// `M` tells the conversions apart (one marker type per kind of error); it is always
/// inferred, never written. (A single blanket impl over `std::error::Error` cannot sit next
/// to impls for `anyhow::Error` or `Box<dyn Error>`: coherence must allow for those types
/// implementing `Error` one day.)
///
/// ```
/// use jobs_core::{IntoJobError, JobError};
///
/// fn stored<M>(e: impl IntoJobError<M>) -> String {
///     format!("{:#}", e.into_job_error())
/// }
///
/// let boxed: Box<dyn std::error::Error + Send + Sync> = "disk full".into();
/// assert_eq!(stored(boxed), "disk full");
/// assert_eq!(stored("x".parse::<u8>().unwrap_err()), "invalid digit found in string");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error of a job handler",
    label = "not an error type a job handler can return",
    note = "a handler's error may be `JobError`, any `std::error::Error + Send + Sync + 'static`, `Box<dyn std::error::Error + Send + Sync>`, `anyhow::Error` (feature `anyhow` of jobs-core) or `eyre::Report` (feature `eyre`)",
    note = "for a plain message, return `JobError::msg(...)` or `JobError::permanent_msg(...)`"
)]
pub trait IntoJobError<M> {
    /// The conversion (retryable, unless `self` is a permanent [`JobError`]).
    fn into_job_error(self) -> JobError;
}

/// The markers that tell [`IntoJobError`]'s impls apart (inferred, never written).
#[doc(hidden)]
pub mod via {
    /// A [`JobError`](crate::JobError), as it is.
    #[derive(Debug)]
    pub enum Itself {}
    /// A `std::error::Error + Send + Sync + 'static`.
    #[derive(Debug)]
    pub enum StdError {}
    /// A `Box<dyn std::error::Error + Send + Sync>`.
    #[derive(Debug)]
    pub enum Boxed {}
    /// An `anyhow::Error` (feature `anyhow`).
    #[cfg(feature = "anyhow")]
    #[derive(Debug)]
    pub enum Anyhow {}
    /// An `eyre::Report` (feature `eyre`).
    #[cfg(feature = "eyre")]
    #[derive(Debug)]
    pub enum Eyre {}
}

impl IntoJobError<via::Itself> for JobError {
    fn into_job_error(self) -> JobError {
        self
    }
}

impl<E: StdError + Send + Sync + 'static> IntoJobError<via::StdError> for E {
    fn into_job_error(self) -> JobError {
        JobError::new(self)
    }
}

impl IntoJobError<via::Boxed> for Box<dyn StdError + Send + Sync + 'static> {
    fn into_job_error(self) -> JobError {
        JobError::from_boxed(self, Marks::default())
    }
}

#[cfg(feature = "anyhow")]
impl IntoJobError<via::Anyhow> for anyhow::Error {
    fn into_job_error(self) -> JobError {
        // anyhow finds a mark given as a context as well as the root error (which the
        // boxed chain below shows only by their messages).
        let outer = Marks::of_permanent(self.downcast_ref::<Permanent>())
            .or(Marks::of_retry_after(self.downcast_ref::<RetryAfter>()));
        // anyhow's box shows the outermost context and keeps the rest as `source()`s.
        JobError::from_boxed(self.into(), outer)
    }
}

#[cfg(feature = "eyre")]
impl IntoJobError<via::Eyre> for eyre::Report {
    fn into_job_error(self) -> JobError {
        let outer = Marks::of_permanent(self.downcast_ref::<Permanent>())
            .or(Marks::of_retry_after(self.downcast_ref::<RetryAfter>()));
        JobError::from_boxed(self.into(), outer)
    }
}

/// What a handler function may return: `Result<R, E>` with `R:` [`JobOutput`] and
/// `E:` [`IntoJobError`], or nothing (`()`). `M` is inferred, as for [`IntoJobError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a job handler",
    label = "expected `Result<R, E>` or `()`",
    note = "a handler returns `Result<R, E>` where `R: Serialize` and `E` is `JobError`, a `std::error::Error + Send + Sync + 'static`, `Box<dyn Error + Send + Sync>`, `anyhow::Error` or `eyre::Report`; or it returns nothing"
)]
pub trait IntoJobResult<M> {
    /// The result as the worker stores it.
    fn into_job_result(self) -> Result<serde_json::Value, JobError>;
}

impl IntoJobResult<()> for () {
    fn into_job_result(self) -> Result<serde_json::Value, JobError> {
        Ok(serde_json::Value::Null)
    }
}

impl<R: JobOutput, E: IntoJobError<M>, M> IntoJobResult<M> for Result<R, E> {
    fn into_job_result(self) -> Result<serde_json::Value, JobError> {
        match self {
            Ok(r) => serde_json::to_value(r).map_err(JobError::permanent),
            Err(e) => Err(e.into_job_error()),
        }
    }
}

/// A handler known by type, for typed enqueue. `#[job_handler]` implements it on a unit
/// struct named after the function (`sync_portfolio` → `SyncPortfolioJob`).
///
/// ```rust,standalone_crate
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize { width: u32 }
///
/// #[job_handler("resize_image", max_retries = 1)]
/// async fn resize_image(args: Resize) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// assert_eq!(ResizeImageJob::NAME, "resize_image");
/// assert_eq!(ResizeImageJob::DEFAULTS.max_retries, Some(1));
/// ```
pub trait JobDefinition: 'static {
    /// The handler's name, under which jobs are stored.
    const NAME: &'static str;
    /// Its argument type (`()` for handlers without arguments).
    type Args: JobArgs;
    /// The options set on the handler's attribute.
    const DEFAULTS: HandlerDefaults;
}

/// Decodes a job's arguments, naming the offending field in the message.
pub(crate) fn check_args<T: DeserializeOwned>(args: &serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(args).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.inner().to_string() } else { format!("field `{path}`: {}", e.inner()) }
    })
}

/// Generated-code helpers (reached through `jobs_core::__private`).
#[doc(hidden)]
pub mod rt {
    use super::*;

    /// The argument validator of a handler that takes `T`.
    pub fn validate<T: JobArgs>(args: &serde_json::Value) -> Result<(), String> {
        check_args::<T>(args).map(drop)
    }

    /// Probes whether a handler's argument type has a JSON Schema (derives
    /// [`schemars::JsonSchema`]), without requiring it: the generated code calls
    /// `(&&SchemaProbe::<T>::new()).args_schema()`, which method resolution sends to
    /// [`ViaJsonSchema`] when `T: JsonSchema` (its impl is on `&SchemaProbe<T>`, found at the
    /// first autoref step) and to [`NoJsonSchema`] otherwise ("autoref specialisation").
    pub struct SchemaProbe<T: ?Sized>(std::marker::PhantomData<T>);

    impl<T: ?Sized> SchemaProbe<T> {
        /// The probe.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            SchemaProbe(std::marker::PhantomData)
        }
    }

    /// The schema of an argument type that has one.
    pub trait ViaJsonSchema {
        /// The JSON Schema (draft 2020-12) of the argument type.
        fn args_schema(&self) -> Option<serde_json::Value>;
    }

    impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for &SchemaProbe<T> {
        fn args_schema(&self) -> Option<serde_json::Value> {
            serde_json::to_value(schemars::schema_for!(T)).ok()
        }
    }

    /// The fallback for argument types without a schema: none.
    pub trait NoJsonSchema {
        /// `None`.
        fn args_schema(&self) -> Option<serde_json::Value>;
    }

    impl<T: ?Sized> NoJsonSchema for SchemaProbe<T> {
        fn args_schema(&self) -> Option<serde_json::Value> {
            None
        }
    }

    /// The argument validator of a handler without arguments: `null` or `{}`.
    pub fn validate_none(args: &serde_json::Value) -> Result<(), String> {
        match args {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(m) if m.is_empty() => Ok(()),
            _ => Err("this job takes no arguments (expected `null` or `{}`)".to_owned()),
        }
    }

    /// Decodes the arguments for a call: a mismatch is a permanent error.
    pub fn decode<T: JobArgs>(args: serde_json::Value) -> Result<T, JobError> {
        check_args::<T>(&args)
            .map_err(|m| JobError::permanent_msg(format_args!("invalid arguments: {m}")))
    }

    /// The arguments type's name, for the registry.
    pub fn type_name_of<T: ?Sized>() -> &'static str {
        type_name::<T>()
    }

    /// Default schedule arguments: `T::default()`, encoded.
    pub fn default_args<T: ScheduleDefaultArgs>() -> Result<serde_json::Value, String> {
        serde_json::to_value(T::default()).map_err(|e| e.to_string())
    }

    /// What the generated code needs of a handler's argument type. A blanket impl over
    /// [`JobDefinition`], so that calls through it do not re-check `Args: JobArgs` (that
    /// check is reported once, at the user's type in the `JobDefinition` impl).
    pub trait HandlerArgs: JobDefinition {
        /// Decodes the arguments for a call: a mismatch is a permanent error.
        fn decode(args: serde_json::Value) -> Result<Self::Args, JobError> {
            decode::<Self::Args>(args)
        }
        /// Checks JSON arguments without keeping them.
        fn validate(args: &serde_json::Value) -> Result<(), String> {
            validate::<Self::Args>(args)
        }
        /// The argument type's name.
        fn args_type() -> &'static str {
            type_name::<Self::Args>()
        }
        /// Encodes schedule arguments given as a typed expression.
        fn encode(args: Self::Args) -> Result<serde_json::Value, String> {
            serde_json::to_value(args).map_err(|e| e.to_string())
        }
    }

    impl<J: JobDefinition> HandlerArgs for J {}

    /// A handler returning `Result<Ok, Err>`, spelled so; implemented by the macro on the
    /// handler's type so that a bad `Ok` or `Err` is reported once, at the user's type.
    pub trait ReturnsResult {
        /// The success type.
        type Ok: JobOutput;
        /// The error type (an [`IntoJobError`], checked where the result is encoded).
        type Err;
        /// Encodes the return value.
        fn finish<M>(out: Result<Self::Ok, Self::Err>) -> Result<serde_json::Value, JobError>
        where
            Self::Err: IntoJobError<M>,
        {
            out.into_job_result()
        }
    }

    /// A handler returning anything else (checked as a whole).
    pub trait ReturnsOther {
        /// The return type (an [`IntoJobResult`], checked where it is encoded).
        type Output;
        /// Encodes the return value.
        fn finish<M>(out: Self::Output) -> Result<serde_json::Value, JobError>
        where
            Self::Output: IntoJobResult<M>,
        {
            out.into_job_result()
        }
    }

    /// Schedule arguments given as a JSON string (validated by the macro already).
    pub fn json_str_args(json: &str) -> Result<serde_json::Value, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    /// Argument types a schedule without `args = ...` can build: `Default` ones.
    #[diagnostic::on_unimplemented(
        message = "a schedule needs arguments for `{Self}`, which has no `Default`",
        label = "`{Self}` does not implement `Default`",
        note = "derive or implement `Default` for the argument type, or give the schedule its arguments: `args = {{\"field\": ...}}`"
    )]
    pub trait ScheduleDefaultArgs: Serialize + Default {}

    impl<T: Serialize + Default> ScheduleDefaultArgs for T {}
}
