//! What a reader of the cancel notices gets ([`Backend::watch_cancels`](super::Backend::watch_cancels)).

use super::Lease;

/// Where a reader of the cancel notices stands ([`Backend::watch_cancels`](super::Backend::watch_cancels)). Opaque: only
/// the backend that handed it out can read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CancelCursor(String);

impl CancelCursor {
    /// A cursor with this backend-specific text.
    pub fn new(text: impl Into<String>) -> Self {
        CancelCursor(text.into())
    }

    /// The backend-specific text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer of [`Backend::watch_cancels`](super::Backend::watch_cancels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelNotices {
    /// Deliveries whose job was asked to cancel while they ran, in the order asked (a
    /// delivery asked twice is listed twice).
    pub leases: Vec<Lease>,
    /// Where the next call goes on from.
    pub cursor: CancelCursor,
}
