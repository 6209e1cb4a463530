//! A uniqueness lock as one enqueue asks the backend for it ([`UniqueLock`]), and the two
//! choices of a `unique(...)` declaration it carries ([`UniqueUntil`], [`OnConflict`]).
//! The declaration itself is [`UniqueSpec`](crate::UniqueSpec), in `flow`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::flow::UniqueSpec;

/// The longest uniqueness key stored as it is, in bytes; a longer one (the whole arguments
/// of a big job, say) is stored as the handler's name and a digest of the key.
pub const MAX_UNIQUE_KEY_LEN: usize = 512;

/// The longest a uniqueness window may be (`for`, or `unique_for`): ten years.
pub const MAX_UNIQUE_WINDOW: Duration = crate::job::MAX_DELAY;

/// A uniqueness lock, as one enqueue asks the backend for it ([`NewJob::unique`]).
///
/// While the job that holds the lock of `key` is in its window (queued, running or waiting
/// for a retry with [`UniqueUntil::Done`]; queued with [`UniqueUntil::Started`]) and for at
/// most `window` after it took the lock, an enqueue with the same key creates no job: it is
/// answered [`EnqueueOutcome::Unique`] with the holder's id, and with
/// [`OnConflict::Replace`] a holder that has not started yet takes the new arguments.
/// The backend releases the lock in the same atomic step as the transition that ends the
/// window (completed, dead-lettered, cancelled, started), so no exit path leaves it behind.
///
/// [`NewJob::unique`]: crate::NewJob::unique
/// [`EnqueueOutcome::Unique`]: crate::EnqueueOutcome::Unique
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueLock {
    /// The key: jobs with equal keys exclude each other, whatever their handler.
    pub key: String,
    /// The lock's upper bound: after this long it no longer excludes anything.
    pub window: Duration,
    /// Which transition ends the window.
    pub until: UniqueUntil,
    /// What a duplicate enqueue does.
    pub on_conflict: OnConflict,
}

impl UniqueLock {
    /// The lock a handler's `unique(...)` declaration gives a job of `handler` with `args`
    /// (its key is [`UniqueSpec::key`], digested past [`MAX_UNIQUE_KEY_LEN`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobs_core::flow::{OnConflict, UniqueLock, UniqueSpec, UniqueUntil};
    ///
    /// let spec = UniqueSpec {
    ///     by: &["user_id"],
    ///     window: Duration::from_secs(600),
    ///     until: UniqueUntil::Done,
    ///     on_conflict: OnConflict::Keep,
    /// };
    /// let lock = UniqueLock::declared(&spec, "sync", &serde_json::json!({"user_id": "u1"}))?;
    /// assert_eq!(lock.key, r#"["sync","u1"]"#);
    /// assert_eq!(lock.window, Duration::from_secs(600));
    /// # Ok::<(), jobs_core::Error>(())
    /// ```
    pub fn declared(spec: &UniqueSpec, handler: &str, args: &Value) -> Result<Self, Error> {
        Ok(UniqueLock {
            key: bounded_key(handler, spec.key(handler, args)?),
            window: spec.window,
            until: spec.until,
            on_conflict: spec.on_conflict,
        })
    }

    /// A lock the caller names (the API's `unique_key`, [`Enqueue::unique_key`]): the key
    /// is `key` within `handler`'s jobs (`["<handler>","<key>"]`), held until the job is
    /// done, duplicates kept out.
    ///
    /// [`Enqueue::unique_key`]: crate::Enqueue::unique_key
    pub fn named(handler: &str, key: &str, window: Duration) -> Self {
        let key = Value::Array(vec![Value::from(handler), Value::from(key)]).to_string();
        UniqueLock {
            key: bounded_key(handler, key),
            window,
            until: UniqueUntil::Done,
            on_conflict: OnConflict::Keep,
        }
    }

    /// Checks the key (1 to [`MAX_UNIQUE_KEY_LEN`] bytes) and the window (1 ms to
    /// [`MAX_UNIQUE_WINDOW`]).
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidJob { reason });
        if self.key.is_empty() || self.key.len() > MAX_UNIQUE_KEY_LEN {
            return invalid(format!(
                "a uniqueness key must be 1 to {MAX_UNIQUE_KEY_LEN} bytes long, found {}",
                self.key.len()
            ));
        }
        if self.window < Duration::from_millis(1) || self.window > MAX_UNIQUE_WINDOW {
            return invalid(format!(
                "a uniqueness window must be between 1 ms and {} days, found {:?}",
                MAX_UNIQUE_WINDOW.as_secs() / 86_400,
                self.window
            ));
        }
        Ok(())
    }
}

/// `key`, or past [`MAX_UNIQUE_KEY_LEN`] the handler's name and a digest of it (a UUID v5,
/// SHA-1 based: the same on every process and version).
pub(crate) fn bounded_key(handler: &str, key: String) -> String {
    if key.len() <= MAX_UNIQUE_KEY_LEN {
        return key;
    }
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes());
    let name: String = handler.chars().take(200).collect();
    Value::Array(vec![Value::from(name), Value::from(format!("#{digest}"))]).to_string()
}

/// When the window of a [`UniqueSpec`] ends (before its `for` bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UniqueUntil {
    /// `until = "done"` (the default): while the job is queued, running or waiting for a
    /// retry; the window ends when it completes, is dead-lettered, cancelled or purged.
    #[default]
    Done,
    /// `until = "started"`: while the job is queued; the window ends when it starts.
    Started,
}

impl UniqueUntil {
    /// The name the attribute uses (`"done"`, `"started"`).
    pub fn as_str(self) -> &'static str {
        match self {
            UniqueUntil::Done => "done",
            UniqueUntil::Started => "started",
        }
    }
}

/// What an enqueue does when a job with its uniqueness key holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// `on_conflict = "keep"` (the default): no new job; the enqueue returns the existing
    /// job's id, marked as a duplicate.
    #[default]
    Keep,
    /// `on_conflict = "replace"` (debounce): a queued duplicate takes the new arguments.
    Replace,
}

impl OnConflict {
    /// The name the attribute uses (`"keep"`, `"replace"`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Keep => "keep",
            OnConflict::Replace => "replace",
        }
    }
}
