//! What the handler linked into this process declares for a job it enqueues: its arguments
//! check, its uniqueness lock, its named queue and its rate and concurrency limits
//! ([`JobQueue`](crate::JobQueue)'s enqueue calls fill a job in with them).

use crate::error::Result;
use crate::flow::UniqueLock;
use crate::job::NewJob;
use crate::registry::linked_handler;

/// The lock a linked handler's `unique(...)` gives `job`, when nothing set one.
pub(crate) fn declared_unique(job: &NewJob) -> Result<Option<UniqueLock>> {
    if job.unique.is_some() {
        return Ok(None);
    }
    match linked_handler(&job.name).and_then(|h| h.flow().unique) {
        Some(spec) => UniqueLock::declared(&spec, &job.name, &job.args).map(Some),
        None => Ok(None),
    }
}

/// The limits a linked handler's `rate_limit(...)` and `concurrency(...)` give `job`
/// (`None`: none declared, or no such handler linked here).
pub(crate) fn declared_limits(job: &NewJob) -> Result<Option<crate::job::JobLimits>> {
    match linked_handler(&job.name) {
        Some(h) => crate::job::JobLimits::declared(&h.flow(), &job.name, &job.args),
        None => Ok(None),
    }
}

/// The queue a linked handler's `queue = ..` names for `job` (`None`: the default queue,
/// or no such handler linked here).
pub(crate) fn declared_queue(job: &NewJob) -> Option<String> {
    let q = linked_handler(&job.name)?.flow().queue;
    (q != crate::flow::DEFAULT_QUEUE).then(|| q.to_owned())
}

/// The arguments must fit the handler when one of that name is linked into this process;
/// unknown names pass (another process may handle them).
pub(crate) fn check_linked_args(job: &NewJob) -> Result<()> {
    match linked_handler(&job.name) {
        Some(h) => h.check_args(&job.args),
        None => Ok(()),
    }
}
