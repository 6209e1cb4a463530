//! A running job's progress report ([`Progress`]), which its handler sends with
//! [`JobContext::progress`](crate::JobContext::progress).

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How far a running job has come, as its handler reports it ([`JobContext::progress`]).
///
/// [`JobContext::progress`]: crate::JobContext::progress
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Progress {
    /// Done so far, 0 to 100.
    pub percent: f64,
    /// What it is doing (at most [`MAX_PROGRESS_MESSAGE`] bytes; may be empty).
    pub message: String,
}

/// The longest progress message kept, in bytes (a longer one is cut at a character
/// boundary).
pub const MAX_PROGRESS_MESSAGE: usize = 1000;

impl Progress {
    /// A progress report: `percent` must be a number from 0 to 100 (else
    /// [`Error::InvalidJob`]); `message` is cut to [`MAX_PROGRESS_MESSAGE`] bytes.
    pub fn new(percent: f64, message: impl Into<String>) -> Result<Self, Error> {
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(Error::InvalidJob {
                reason: format!("progress must be a percentage from 0 to 100, found {percent}"),
            });
        }
        let mut message = message.into();
        if message.len() > MAX_PROGRESS_MESSAGE {
            let mut end = MAX_PROGRESS_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Ok(Progress { percent, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_a_percentage_and_a_bounded_message() {
        assert!(Progress::new(0.0, "").is_ok() && Progress::new(100.0, "x").is_ok());
        for bad in [-0.1, 100.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(Progress::new(bad, ""), Err(Error::InvalidJob { .. })), "{bad}");
        }
        // Cut at a character boundary: "é" is two bytes.
        let long = "é".repeat(MAX_PROGRESS_MESSAGE);
        let p = Progress::new(1.0, long).map(|p| p.message.len());
        assert_eq!(p.ok(), Some(MAX_PROGRESS_MESSAGE));
        let odd = format!("a{}", "é".repeat(MAX_PROGRESS_MESSAGE));
        let p = Progress::new(1.0, odd).map(|p| p.message.len());
        assert_eq!(p.ok(), Some(MAX_PROGRESS_MESSAGE - 1));
    }
}
