//! Jobs picked by state and filters ([`Selection`]), and one action on each of them
//! ([`JobQueue::bulk`]): what the API's `GET /jobs` and `POST /jobs/bulk`, and the CLI's
//! `jobs` and `bulk`, share.
//!
//! A bulk action is bounded: it acts on one page of the selection (at most
//! [`LIST_SCAN_LIMIT`] jobs looked at), each job in its own atomic step, and answers where
//! the next page starts. A job that changed state between the listing and its step is
//! reported, not acted on.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::{LIST_SCAN_LIMIT, ListCursor, ListRequest, ListState};
use crate::error::{Error, Result};
use crate::job::{Job, JobId};
use crate::queue::JobQueue;

/// How many of a bulk action's calls are in flight at once.
const BULK_IN_FLIGHT: usize = 32;

/// The states a selection takes, as errors list them.
pub const SELECTION_STATES: &str =
    "pending, scheduled, retrying, running, completed, cancelled or failed";

/// Which jobs: the ready ones (`Pending`: the first `limit` in the order they will run,
/// every queue and priority, no cursor), or one page of another state's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Ready jobs, filtered by handler and user.
    Pending {
        /// Only jobs of this handler.
        name: Option<String>,
        /// Only jobs of this user.
        user_id: Option<String>,
        /// How many are looked at.
        limit: usize,
    },
    /// One page of a state's index (see [`ListRequest`]).
    Page(ListRequest),
}

/// Why a selection's fields do not make one (each caller words it for its own fields).
#[derive(Debug)]
pub enum SelectionError {
    /// Not one of [`SELECTION_STATES`] (the text given, cut to 32 characters).
    UnknownState(String),
    /// `pending` takes no cursor.
    CursorForPending,
    /// A cursor that is not this state's ([`Error::InvalidCursor`]).
    Cursor(Error),
}

impl Selection {
    /// The selection of `state` (one of [`SELECTION_STATES`]), filtered by handler and
    /// user, after `cursor`, at most `limit` jobs (clamped to `1..=`[`LIST_SCAN_LIMIT`]).
    pub fn parse(
        state: &str,
        name: Option<String>,
        user_id: Option<String>,
        cursor: Option<&str>,
        limit: usize,
    ) -> std::result::Result<Self, SelectionError> {
        let limit = limit.clamp(1, LIST_SCAN_LIMIT);
        if state == "pending" {
            if cursor.is_some() {
                return Err(SelectionError::CursorForPending);
            }
            return Ok(Selection::Pending { name, user_id, limit });
        }
        let Some(st) = ListState::parse(state) else {
            return Err(SelectionError::UnknownState(state.chars().take(32).collect()));
        };
        let cursor =
            cursor.map(|c| ListCursor::parse(c, st)).transpose().map_err(SelectionError::Cursor)?;
        Ok(Selection::Page(ListRequest { name, user_id, cursor, ..ListRequest::new(st, limit) }))
    }

    /// The state's name (`"pending"`, `"retrying"`, …).
    pub fn state(&self) -> &'static str {
        match self {
            Selection::Pending { .. } => "pending",
            Selection::Page(r) => r.state.as_str(),
        }
    }
}

/// What [`JobQueue::bulk`] does to each selected job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Run now: a retrying job without waiting for its backoff, a dead one back in its
    /// queue ([`JobQueue::retry_job`]). For `retrying` and `failed`.
    Retry,
    /// Cancel ([`JobQueue::cancel_job`]): a waiting job never runs, a running one is asked
    /// to stop. For `pending`, `scheduled`, `retrying` and `running`.
    Cancel,
    /// Delete for good ([`JobQueue::delete_job`]). For `completed`, `cancelled` and
    /// `failed`.
    Delete,
}

impl BulkAction {
    /// Every action.
    pub const ALL: [BulkAction; 3] = [BulkAction::Retry, BulkAction::Cancel, BulkAction::Delete];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }

    /// The action named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether this action applies to jobs of `state`; if not, why, naming the states it
    /// applies to.
    pub fn check(self, state: &str) -> std::result::Result<(), String> {
        if self.states().contains(&state) {
            return Ok(());
        }
        Err(format!("{} applies to {} jobs, not {state}", self.as_str(), self.states().join(", ")))
    }

    /// The states whose jobs this action applies to.
    pub fn states(self) -> &'static [&'static str] {
        match self {
            BulkAction::Retry => &["retrying", "failed"],
            BulkAction::Cancel => &["pending", "scheduled", "retrying", "running"],
            BulkAction::Delete => &["completed", "cancelled", "failed"],
        }
    }
}

/// One job a bulk action did not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct BulkFailure {
    /// The job.
    pub job_id: JobId,
    /// Why (e.g. it changed state since it was listed).
    pub error: String,
}

/// What [`JobQueue::bulk`] did with one page of the selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct BulkReport {
    /// The action.
    pub action: BulkAction,
    /// The state selected.
    pub state: String,
    /// Jobs of the page that matched the filters.
    pub matched: u64,
    /// Jobs acted on.
    pub succeeded: u64,
    /// Jobs not acted on, each with why.
    pub failures: Vec<BulkFailure>,
    /// Where the next page starts (the same selection with this cursor); `None` at the end
    /// (and always for `pending`: call again while `matched` is not 0).
    pub next_cursor: Option<String>,
}

impl JobQueue {
    /// The jobs of `sel`, and the cursor of the next page (`None` at the end, and for
    /// `pending`).
    pub async fn select(&self, sel: &Selection) -> Result<(Vec<Job>, Option<String>)> {
        match sel {
            Selection::Pending { name, user_id, limit } => {
                let mut jobs = self.pending_jobs(None, *limit).await?;
                jobs.retain(|j| {
                    name.as_deref().is_none_or(|x| j.name == x)
                        && user_id.as_deref().is_none_or(|u| j.user_id.as_deref() == Some(u))
                });
                Ok((jobs, None))
            }
            Selection::Page(req) => {
                let page = self.list_jobs(req).await?;
                Ok((page.jobs, page.cursor.map(|c| c.to_string())))
            }
        }
    }

    /// Does `action` to each job of one page of `sel`, each in its own atomic step.
    /// [`Error::InvalidJob`] (nothing done) when the action does not apply to the state.
    pub async fn bulk(&self, action: BulkAction, sel: &Selection) -> Result<BulkReport> {
        let state = sel.state();
        action.check(state).map_err(|reason| Error::InvalidJob { reason })?;
        let (jobs, next_cursor) = self.select(sel).await?;
        let mut report = BulkReport {
            action,
            state: state.to_owned(),
            matched: jobs.len() as u64,
            succeeded: 0,
            failures: Vec::new(),
            next_cursor,
        };
        // One call per job, BULK_IN_FLIGHT of them in flight at once (pipelined on the
        // connection), their answers taken in the page's order.
        let done: Vec<(JobId, Result<()>)> = futures::stream::iter(jobs)
            .map(|job| async move {
                let r = match action {
                    BulkAction::Retry => self.retry_job(job.id).await,
                    BulkAction::Cancel => self.cancel_job(job.id).await.map(drop),
                    BulkAction::Delete => self.delete_job(job.id).await,
                };
                (job.id, r)
            })
            .buffered(BULK_IN_FLIGHT)
            .collect()
            .await;
        for (id, done) in done {
            match done {
                Ok(()) => report.succeeded += 1,
                // The job moved on since it was listed (or is gone): say so, go on.
                Err(e @ (Error::InvalidState { .. } | Error::NotFound { .. })) => {
                    report.failures.push(BulkFailure { job_id: id, error: e.to_string() });
                }
                // The backend failed: say so; what was done is done, each step atomic.
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
