//! Statistics, serialised exactly as the spec's JSON.

use serde::{Deserialize, Serialize};

use crate::job::JobPriority;

/// Pending jobs per priority (the spec's `pending` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingByPriority {
    /// Critical jobs ready to run.
    pub critical: u64,
    /// High-priority jobs ready to run.
    pub high: u64,
    /// Normal jobs ready to run.
    pub normal: u64,
    /// Low-priority jobs ready to run.
    pub low: u64,
}

impl PendingByPriority {
    /// The count for one priority.
    pub fn get(&self, p: JobPriority) -> u64 {
        match p {
            JobPriority::Critical => self.critical,
            JobPriority::High => self.high,
            JobPriority::Normal => self.normal,
            JobPriority::Low => self.low,
        }
    }

    /// Sets the count for one priority.
    pub fn set(&mut self, p: JobPriority, n: u64) {
        match p {
            JobPriority::Critical => self.critical = n,
            JobPriority::High => self.high = n,
            JobPriority::Normal => self.normal = n,
            JobPriority::Low => self.low = n,
        }
    }

    /// Sum over the four priorities.
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.normal + self.low
    }
}

/// Monotonic counters since the namespace was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// Jobs created.
    pub enqueued: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts (each retry and each dead-lettering counts once).
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Jobs moved to the dead-letter queue.
    pub dead: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Leases that expired and were taken back from a lost worker.
    pub stalled: u64,
    /// Dead-letter entries dropped by the DLQ's size or age cap.
    pub dead_dropped: u64,
    /// Finished records removed after their retention.
    pub purged: u64,
}

/// Queue statistics: the spec's "Queue Statistics" object, plus `retrying` and `counters`.
///
/// ```json
/// {"pending": {"critical": 0, "high": 2, "normal": 5, "low": 10},
///  "scheduled": 3, "processing": 1, "dead_letter": 0, "total_pending": 17, ...}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Jobs ready to run, per priority.
    pub pending: PendingByPriority,
    /// Jobs that will be ready at a later time (delayed jobs and retries waiting).
    pub scheduled: u64,
    /// Jobs currently leased to a worker.
    pub processing: u64,
    /// Jobs in the dead-letter queue.
    pub dead_letter: u64,
    /// Sum of `pending`.
    pub total_pending: u64,
    /// Of `scheduled`, the failed jobs waiting for their next attempt.
    pub retrying: u64,
    /// Monotonic counters.
    pub counters: QueueCounters,
}
