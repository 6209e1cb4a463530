//! Queue names: the default queue, and the rule every name is held to (at compile time by
//! `queue = "..."`, at run time here).

use crate::error::Error;

/// The queue of a handler that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// The longest queue name, in bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 64;

/// Checks a queue name: 1 to [`MAX_QUEUE_NAME_LEN`] bytes of ASCII letters, digits, `_`,
/// `.` and `-` (the rule `queue = "..."` is held to at compile time); else
/// [`Error::InvalidQueue`].
///
/// ```
/// assert!(jobs_core::flow::check_queue_name("payments.eu-1").is_ok());
/// assert!(jobs_core::flow::check_queue_name("pay ments").is_err());
/// ```
pub fn check_queue_name(name: &str) -> Result<(), Error> {
    let bad = |reason| Err(Error::InvalidQueue { name: name.chars().take(64).collect(), reason });
    if name.is_empty() || name.len() > MAX_QUEUE_NAME_LEN {
        return bad("must be 1 to 64 bytes long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return bad("only ASCII letters, digits, `_`, `.` and `-` are allowed");
    }
    Ok(())
}
