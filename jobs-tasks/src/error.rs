//! The crate's one error type.

/// Everything that can go wrong in the trading platform the tasks work on.
///
/// It converts into [`JobError`](jobs_core::JobError) with `?` (as every
/// `std::error::Error` does), so handlers can use the platform directly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// A Redis command failed.
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    /// A stored record is not valid JSON of the expected shape.
    #[error("corrupt record in the trading store")]
    Json(#[from] serde_json::Error),
    /// The job queue refused an operation (a follow-up enqueue, a purge).
    #[error("job queue operation failed")]
    Queue(#[from] jobs_core::Error),
    /// Invalid configuration (namespace, settings).
    #[error("invalid platform configuration: {0}")]
    Config(String),
    /// The market-data source failed.
    #[error("market data source `{source_name}` failed: {message}")]
    MarketData {
        /// The source's name.
        source_name: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result` with [`PlatformError`].
pub type Result<T, E = PlatformError> = std::result::Result<T, E>;
