//! The crate's one error type.

use crate::job::{JobId, JobStatus};

/// Everything that can go wrong in `jobs-core`.
///
/// Client mistakes (an unknown id, a transition the job's state forbids, invalid input) have
/// their own variants so that callers and the HTTP API can tell them apart from
/// infrastructure failures ([`Error::Redis`], [`Error::Backend`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No job with this id exists (never did, or its record has been purged).
    #[error("job {id} not found")]
    NotFound {
        /// The id asked for.
        id: JobId,
    },
    /// The job exists but its status forbids the operation.
    #[error("cannot {op} job {id}: it is {status}")]
    InvalidState {
        /// The job.
        id: JobId,
        /// Its current status.
        status: JobStatus,
        /// What was attempted (`"cancel"`, `"retry"`, …).
        op: &'static str,
    },
    /// The caller's lease on the job is no longer valid: the lease expired and the job was
    /// handed to another worker (or finished). The call changed nothing.
    #[error("lease on job {id} (attempt {attempt}) is stale; the job was not changed")]
    StaleLease {
        /// The job.
        id: JobId,
        /// The attempt the caller held.
        attempt: u32,
    },
    /// A string that is not a job id.
    #[error("invalid job id `{id}`")]
    InvalidJobId {
        /// What was given (cut to 64 characters).
        id: String,
    },
    /// A string that is not a priority.
    #[error("invalid priority `{value}`; expected critical, high, normal or low")]
    InvalidPriority {
        /// What was given (cut to 64 characters).
        value: String,
    },
    /// A job that cannot be enqueued as it is.
    #[error("invalid job: {reason}")]
    InvalidJob {
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not a queue name (1 to 64 bytes of ASCII letters, digits, `_`, `.`
    /// and `-`).
    #[error("invalid queue name `{name}`: {reason}")]
    InvalidQueue {
        /// What was given (cut to 64 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No handler is registered under this name. The message names the closest
    /// registered names (`did you mean `sync_portfolio`?`).
    #[error("no handler registered for job `{name}`{}", did_you_mean(suggestions))]
    UnknownHandler {
        /// The name asked for.
        name: String,
        /// The registered names closest to it, closest first (at most three; empty when
        /// none is close). See [`Error::unknown_handler`].
        suggestions: Vec<String>,
    },
    /// The arguments do not fit the handler's argument type.
    #[error("invalid arguments for job `{name}`: {message}")]
    InvalidArgs {
        /// The handler.
        name: String,
        /// What does not fit, naming the field where the decoder says.
        message: String,
    },
    /// No schedule is registered under this name.
    #[error("schedule `{name}` not found")]
    ScheduleNotFound {
        /// The name asked for.
        name: String,
    },
    /// A schedule that cannot be registered as it is: a bad cron expression or time zone,
    /// an interval of zero, a name out of bounds.
    #[error("invalid schedule: {reason}")]
    InvalidSchedule {
        /// What is wrong with it (names the schedule and the offending part).
        reason: String,
    },
    /// A listing cursor that is not one this backend handed out for that listing.
    #[error("invalid cursor: {reason}")]
    InvalidCursor {
        /// What is wrong with it.
        reason: String,
    },
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A record in the backend that this version cannot read.
    #[error("corrupt job record for {id}: {reason}")]
    CorruptRecord {
        /// The job whose record it is.
        id: String,
        /// What could not be read.
        reason: String,
    },
    /// Redis could not be reached, or refused the credentials, at start-up.
    #[error("cannot connect to redis at {url}")]
    Connect {
        /// The URL, with any password hidden.
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A write the master accepted was not confirmed by enough replicas in time (durable
    /// writes, `JOBS_DURABLE_WRITES`). The write is on the master (the job is enqueued, the
    /// tick fired) but a failover before it reaches a replica could lose it. Enqueueing the
    /// same job (same id) again is safe: it finds the job and waits for the replicas again.
    #[error(
        "only {acked} of {wanted} replicas confirmed the write within {timeout_ms} ms: it is on the master (the job is enqueued) but a failover could lose it; enqueue the same job id again to wait again"
    )]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that confirmed.
        acked: u32,
        /// How long it waited.
        timeout_ms: u64,
    },
    /// A Redis command failed.
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    /// JSON (de)serialisation failed.
    #[error("json encoding failed")]
    Json(#[from] serde_json::Error),
    /// The backend answered something this version does not understand.
    #[error("unexpected backend reply: {0}")]
    Backend(String),
}

impl Error {
    /// [`Error::UnknownHandler`] for `name`, suggesting the names among `known` that are
    /// close to it (Jaro-Winkler similarity, as cargo and clap suggest commands).
    pub fn unknown_handler<'a>(
        name: impl Into<String>,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let name = name.into();
        Error::UnknownHandler { suggestions: closest(&name, known), name }
    }
}

/// The candidates most like `name`, closest first, at most three.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    /// Below this, a name is not offered (clap offers commands from 0.7 on, with plain Jaro).
    const THRESHOLD: f64 = 0.8;
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, c)| *score >= THRESHOLD && *c != name)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

/// `; did you mean `a`?` (or `` `a` or `b` ``), or nothing.
fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|s| format!("`{s}`")).collect();
            format!("; did you mean {} or `{last}`?", rest.join(", "))
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_handlers_suggest_the_closest_names() {
        let known = ["sync_portfolio", "update_24h_stats", "check_alerts", "sync_portfolios_all"];
        let e = Error::unknown_handler("sync_portfolo", known);
        assert_eq!(
            e.to_string(),
            "no handler registered for job `sync_portfolo`; did you mean `sync_portfolio` or `sync_portfolios_all`?"
        );
        let e = Error::unknown_handler("check_alert", known);
        assert!(e.to_string().ends_with("did you mean `check_alerts`?"), "{e}");
        let e = Error::unknown_handler("zzz", known);
        assert_eq!(e.to_string(), "no handler registered for job `zzz`");
        let e = Error::unknown_handler("x", std::iter::empty());
        assert!(
            matches!(e, Error::UnknownHandler { ref suggestions, .. } if suggestions.is_empty())
        );
    }
}
