//! Listing jobs by state ([`Backend::list_jobs`](super::Backend::list_jobs)): the states
//! an index holds, the request, the page and its opaque cursor. Both backends read the
//! same index order and examine at most [`LIST_SCAN_LIMIT`] entries per call, so that a
//! page costs the same bounded work whatever the size of the index and however few jobs
//! match the filter.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobStatus};

/// Most index entries one [`Backend::list_jobs`](super::Backend::list_jobs) examines
/// (matching or not); also the most jobs one page holds.
pub const LIST_SCAN_LIMIT: usize = 1_000;

/// A state whose jobs sit in an index that [`Backend::list_jobs`](super::Backend::list_jobs)
/// can page through. Ready (`pending`) jobs are listed by
/// [`Backend::list_pending`](super::Backend::list_pending), in fetch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub enum ListState {
    /// Delayed jobs (`pending` with a due time in the future), by due time.
    Scheduled,
    /// Jobs waiting for the backoff of a retry (`retrying`), by due time.
    Retrying,
    /// Running jobs, by lease deadline.
    Running,
    /// Completed jobs within retention, by retention end (the finish time plus `result_ttl`).
    Completed,
    /// Cancelled jobs within retention, by retention end (as completed ones: one index).
    Cancelled,
    /// Dead-letter jobs (`failed`), by death time.
    Failed,
}

impl ListState {
    /// Every listable state.
    pub const ALL: [ListState; 6] = [
        ListState::Scheduled,
        ListState::Retrying,
        ListState::Running,
        ListState::Completed,
        ListState::Cancelled,
        ListState::Failed,
    ];

    /// The lowercase name (`"retrying"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ListState::Scheduled => "scheduled",
            ListState::Retrying => "retrying",
            ListState::Running => "running",
            ListState::Completed => "completed",
            ListState::Cancelled => "cancelled",
            ListState::Failed => "failed",
        }
    }

    /// The state named `s` (the names of [`as_str`](Self::as_str)).
    pub fn parse(s: &str) -> Option<Self> {
        ListState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status a job of the index must have to be listed, where the index holds more
    /// than one (the retention index holds completed and cancelled jobs).
    pub fn required_status(self) -> Option<JobStatus> {
        match self {
            ListState::Completed => Some(JobStatus::Completed),
            ListState::Cancelled => Some(JobStatus::Cancelled),
            _ => None,
        }
    }

    fn letter(self) -> char {
        match self {
            ListState::Scheduled => 's',
            ListState::Retrying => 'y',
            ListState::Running => 'r',
            ListState::Completed => 'c',
            ListState::Cancelled => 'x',
            ListState::Failed => 'f',
        }
    }
}

impl std::fmt::Display for ListState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a listing stands: the index position (score, id) of the last entry examined, for
/// one state. Opaque to callers: its text is only ever handed back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListCursor {
    state: ListState,
    score: i64,
    id: JobId,
}

impl ListCursor {
    pub(crate) fn new(state: ListState, score: i64, id: JobId) -> Self {
        ListCursor { state, score, id }
    }

    /// Reads a cursor handed out for `state`. Errors: [`Error::InvalidCursor`] for text
    /// that is not a cursor, or one of another state.
    pub fn parse(text: &str, state: ListState) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidCursor { reason: reason.to_owned() };
        let mut parts = text.splitn(3, '.');
        let (Some(l), Some(score), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not a cursor this server handed out"));
        };
        let Some(st) = ListState::ALL.into_iter().find(|s| s.letter().to_string() == l) else {
            return Err(bad("not a cursor this server handed out"));
        };
        if st != state {
            return Err(bad(&format!("a cursor of state {st}, not {state}")));
        }
        let score: i64 = score.parse().map_err(|_| bad("not a cursor this server handed out"))?;
        let id: JobId = id.parse().map_err(|_| bad("not a cursor this server handed out"))?;
        Ok(ListCursor { state, score, id })
    }

    /// The state it pages through.
    pub fn state(&self) -> ListState {
        self.state
    }

    /// The index score of the last entry examined.
    pub(crate) fn score(&self) -> i64 {
        self.score
    }

    /// The id of the last entry examined.
    pub(crate) fn id(&self) -> JobId {
        self.id
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.state.letter(), self.score, self.id)
    }
}

/// What [`Backend::list_jobs`](super::Backend::list_jobs) is to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The state.
    pub state: ListState,
    /// Only jobs of this handler.
    pub name: Option<String>,
    /// Only jobs of this user.
    pub user_id: Option<String>,
    /// Go on after this position (`None`: from the newest).
    pub cursor: Option<ListCursor>,
    /// The most jobs returned, clamped to `1..=`[`LIST_SCAN_LIMIT`].
    pub limit: usize,
}

impl ListRequest {
    /// The first page of `state`, unfiltered, up to `limit` jobs.
    pub fn new(state: ListState, limit: usize) -> Self {
        ListRequest { state, name: None, user_id: None, cursor: None, limit }
    }

    /// Whether `job` passes the filters.
    pub(crate) fn matches(&self, name: &str, user_id: Option<&str>) -> bool {
        self.name.as_deref().is_none_or(|n| n == name)
            && self.user_id.as_deref().is_none_or(|u| user_id == Some(u))
    }

    /// The limit as applied.
    pub(crate) fn clamped_limit(&self) -> usize {
        self.limit.clamp(1, LIST_SCAN_LIMIT)
    }
}

/// One page of [`Backend::list_jobs`](super::Backend::list_jobs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPage {
    /// The matching jobs, newest first (highest index score first; ties: larger id first).
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` when the index has no entry after the last one
    /// examined. A page may hold fewer than `limit` jobs (even none) and still have one:
    /// the call stopped at [`LIST_SCAN_LIMIT`] entries examined.
    pub cursor: Option<ListCursor>,
}
