//! `list_jobs` on the in-memory state: the same index order, cursor and bound as
//! `list_jobs.lua`.

use std::collections::BTreeSet;

use super::state::State;
use crate::backend::{JobPage, LIST_SCAN_LIMIT, ListCursor, ListRequest, ListState};
use crate::error::{Error, Result};
use crate::job::JobId;

impl State {
    fn index_of(&self, state: ListState) -> &BTreeSet<(i64, JobId)> {
        match state {
            ListState::Scheduled => &self.delayed_by_id,
            ListState::Retrying => &self.retrying_by_id,
            ListState::Running => &self.active,
            ListState::Failed => &self.dead,
            ListState::Completed | ListState::Cancelled => &self.finished,
        }
    }

    pub(super) fn list_jobs(&self, req: &ListRequest) -> Result<JobPage> {
        if let Some(c) = &req.cursor
            && c.state() != req.state
        {
            return Err(Error::InvalidCursor {
                reason: format!("a cursor of state {}, not {}", c.state(), req.state),
            });
        }
        let index = self.index_of(req.state);
        // Highest first, ties by larger id first: the reverse of the set's order, strictly
        // after the cursor's position.
        let mut entries: Box<dyn Iterator<Item = &(i64, JobId)>> = match &req.cursor {
            Some(c) => Box::new(index.range(..(c.score(), c.id())).rev()),
            None => Box::new(index.iter().rev()),
        };
        let limit = req.clamped_limit();
        let want = req.state.required_status();
        let mut jobs = Vec::new();
        let mut examined = 0;
        let mut last = None;
        while jobs.len() < limit && examined < LIST_SCAN_LIMIT {
            let Some(&(score, id)) = entries.next() else {
                break;
            };
            examined += 1;
            last = Some((score, id));
            let Some(rec) = self.jobs.get(&id) else {
                continue;
            };
            if want.is_some_and(|s| s != rec.status)
                || !req.matches(&rec.name, rec.user_id.as_deref())
            {
                continue;
            }
            let mut job = rec.to_job(id);
            job.result = None;
            jobs.push(job);
        }
        let cursor = match (last, entries.next()) {
            (Some((score, id)), Some(_)) => Some(ListCursor::new(req.state, score, id)),
            _ => None,
        };
        Ok(JobPage { jobs, cursor })
    }
}
