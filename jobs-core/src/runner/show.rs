//! The operator commands' human output: a record as aligned `label: value` lines, a list as
//! a table under a header, and a sentence for an empty list. (`--json` prints the value
//! itself instead; see `operate`.)

use chrono::{DateTime, SecondsFormat, Utc};

use crate::job::Job;
use crate::stats::{HandlerInfo, QueueInfo, QueueStats};

/// `label: value` lines, the values aligned in one column.
pub(super) fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(label, value)| format!("{:<width$} {value}", format!("{label}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table: the header, then one line a row, each column as wide as its widest cell (the
/// last one unpadded, so that lines carry no trailing blanks). `empty` instead when there
/// are no rows.
pub(super) fn table(header: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return empty.to_owned();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    lines.join("\n")
}

/// An instant as RFC 3339 to the second, or `-`.
pub(super) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Seconds as `30s` or `0.5s`.
fn secs(s: f64) -> String {
    format!("{s}s")
}

/// JSON on one line, or `-` for none.
fn json(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `job <id>`; a `progress` line only for a job whose handler reported some.
pub(super) fn job(j: &Job) -> String {
    let progress = j.progress.as_ref().map(|p| {
        let pct = format!("{}%", (p.percent * 10.0).round() / 10.0);
        ("progress", if p.message.is_empty() { pct } else { format!("{pct} {}", p.message) })
    });
    let mut rows = vec![
        ("id", j.id.to_string()),
        ("name", j.name.clone()),
        ("status", j.status.to_string()),
        ("priority", j.priority.to_string()),
        ("queue", j.queue.clone()),
        ("user", j.user_id.clone().unwrap_or_else(|| "-".into())),
        ("created", time(Some(j.created_at))),
        ("scheduled", time(j.scheduled_at)),
        ("started", time(j.started_at)),
        ("finished", time(j.completed_at)),
        ("attempt", j.attempt.to_string()),
        ("retries", format!("{} of {}", j.retry_count, j.max_retries)),
        ("timeout", secs(j.timeout.as_secs_f64())),
        ("args", json(Some(&j.args))),
        ("result", json(j.result.as_ref())),
        ("error", j.error.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(p) = progress {
        rows.insert(10, p);
    }
    fields(&rows)
}

/// `bulk`: what was done, each job not acted on, and where the next page starts.
pub(super) fn bulk(r: &crate::bulk::BulkReport) -> String {
    let mut out = format!(
        "{}: {} of {} matching {} jobs",
        r.action.as_str(),
        r.succeeded,
        r.matched,
        r.state
    );
    for f in &r.failures {
        out.push_str(&format!("\n  {}: {}", f.job_id, f.error));
    }
    if let Some(c) = &r.next_cursor {
        out.push_str(&format!("\nnext page: --cursor {c}"));
    }
    out
}

/// `queues`: each queue's ready jobs per priority, and whether it is paused.
pub(super) fn queues(qs: &[QueueInfo]) -> String {
    let rows: Vec<Vec<String>> = qs
        .iter()
        .map(|q| {
            let p = &q.pending;
            let state = if q.paused { "paused" } else { "active" };
            [q.name.clone(), state.into()]
                .into_iter()
                .chain(
                    [q.total_pending, p.critical, p.high, p.normal, p.low].map(|n| n.to_string()),
                )
                .collect()
        })
        .collect();
    table(&["QUEUE", "STATE", "READY", "CRITICAL", "HIGH", "NORMAL", "LOW"], &rows, "no queues")
}

/// `limits`: one row per limiter in use.
pub(super) fn limits(ls: &[crate::job::LimiterUsage]) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S%.3f").to_string())
    };
    let rows: Vec<Vec<String>> = ls
        .iter()
        .map(|l| {
            let bound = match l.per_ms {
                Some(per) => format!("{}/{per}ms", l.max),
                None => format!("{} at once", l.max),
            };
            vec![
                l.key.clone(),
                bound,
                l.in_use.to_string(),
                l.parked.to_string(),
                time(l.next_slot_at),
                time(l.blocked_until),
            ]
        })
        .collect();
    table(
        &["KEY", "LIMIT", "IN USE", "PARKED", "NEXT SLOT", "HELD UNTIL"],
        &rows,
        "no limiter in use",
    )
}

/// `stats`: the queue's states, then the counters.
pub(super) fn stats(s: &QueueStats) -> String {
    let n = |v: u64| v.to_string();
    let states = table(
        &["STATE", "JOBS"],
        &[
            vec!["pending".into(), n(s.total_pending)],
            vec!["  critical".into(), n(s.pending.critical)],
            vec!["  high".into(), n(s.pending.high)],
            vec!["  normal".into(), n(s.pending.normal)],
            vec!["  low".into(), n(s.pending.low)],
            vec!["scheduled".into(), n(s.scheduled)],
            vec!["  retrying".into(), n(s.retrying)],
            vec!["processing".into(), n(s.processing)],
            vec!["parked".into(), n(s.parked)],
            vec!["dead letter".into(), n(s.dead_letter)],
        ],
        "",
    );
    let c = &s.counters;
    let counters = table(
        &["COUNTER", "TOTAL"],
        &[
            vec!["enqueued".into(), n(c.enqueued)],
            vec!["completed".into(), n(c.completed)],
            vec!["failed".into(), n(c.failed)],
            vec!["retried".into(), n(c.retried)],
            vec!["dead".into(), n(c.dead)],
            vec!["cancelled".into(), n(c.cancelled)],
            vec!["stalled".into(), n(c.stalled)],
            vec!["dead dropped".into(), n(c.dead_dropped)],
            vec!["purged".into(), n(c.purged)],
            vec!["throttled".into(), n(c.throttled)],
        ],
        "",
    );
    let mut out = format!("{states}\n\n{counters}");
    if !s.unhandled.is_empty() {
        let rows: Vec<Vec<String>> = s
            .unhandled
            .iter()
            .map(|(name, u)| vec![name.clone(), n(u.given_back), time(u.last_given_back_at)])
            .collect();
        let t = table(&["NO HANDLER", "GIVEN BACK", "LAST"], &rows, "");
        out.push_str(&format!("\n\n{t}"));
    }
    out
}

/// `handlers`.
pub(super) fn handlers(hs: &[HandlerInfo]) -> String {
    let rows: Vec<Vec<String>> = hs
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.queue.clone(),
                h.priority.to_string(),
                h.max_retries.to_string(),
                secs(h.timeout),
                h.args_type.clone(),
                h.limits.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "QUEUE", "PRIORITY", "MAX RETRIES", "TIMEOUT", "ARGS", "LIMITS"],
        &rows,
        "no handlers are linked into this binary",
    )
}

/// `dlq list`.
pub(super) fn dead_jobs(jobs: &[Job]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.name.clone(),
                time(j.completed_at),
                j.retry_count.to_string(),
                j.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "DIED", "RETRIES", "ERROR"], &rows, "the dead-letter queue is empty")
}

/// Which instant of a job a listing shows.
type JobTime = fn(&Job) -> Option<DateTime<Utc>>;

/// `jobs --state <state>`: a table whose time column is the one that state is ordered by,
/// and, when more follow, how to get them.
pub(super) fn job_page(state: &str, jobs: &[Job], cursor: Option<&str>) -> String {
    let (label, when): (&str, JobTime) = match state {
        "scheduled" | "retrying" => ("DUE", |j| j.scheduled_at),
        "running" => ("STARTED", |j| j.started_at),
        "completed" | "cancelled" | "failed" => ("FINISHED", |j| j.completed_at),
        _ => ("CREATED", |j| Some(j.created_at)),
    };
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.name.clone(),
                j.user_id.clone().unwrap_or_else(|| "-".into()),
                time(when(j)),
                j.attempt.to_string(),
                format!("{}/{}", j.retry_count, j.max_retries),
                // The first line: a table row is one line.
                j.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    let empty = match cursor {
        Some(_) => format!("no matching {state} jobs among the 1,000 looked at"),
        None => format!("no {state} jobs found"),
    };
    let mut out =
        table(&["ID", "NAME", "USER", label, "ATTEMPT", "RETRIES", "ERROR"], &rows, &empty);
    if let Some(c) = cursor {
        out.push_str(&format!("\nmore: add --cursor {c}"));
    }
    out
}

/// `schedules list`.
pub(super) fn schedules(list: &[crate::ScheduleInfo]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let when = match (&s.cron_expression, s.interval_seconds) {
                (Some(c), _) => format!("cron {c}"),
                (None, Some(n)) => format!("every {n}s"),
                _ => "once".to_owned(),
            };
            vec![
                s.name.clone(),
                s.job_name.clone(),
                when,
                if s.enabled { "enabled" } else { "disabled" }.to_owned(),
                time(s.next_run),
                time(s.last_run),
                s.run_count.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "JOB", "WHEN", "STATE", "NEXT", "LAST", "RUNS"],
        &rows,
        "no schedules yet (each runner stores its schedules when it starts)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_shows_its_progress_only_when_it_has_some() {
        let mut j = Job {
            id: crate::JobId::new(),
            name: "import".into(),
            args: serde_json::json!({}),
            status: crate::JobStatus::Running,
            priority: crate::JobPriority::Normal,
            created_at: chrono::Utc::now(),
            scheduled_at: None,
            started_at: None,
            completed_at: None,
            error: None,
            result: None,
            retry_count: 0,
            max_retries: 3,
            timeout: std::time::Duration::from_secs(30),
            user_id: None,
            attempt: 1,
            progress: None,
            trace: None,
            queue: "default".into(),
        };
        assert!(!job(&j).contains("progress:"));
        j.progress = Some(crate::Progress { percent: 33.333, message: "rows".into() });
        let out = job(&j);
        let line = out.lines().find(|l| l.starts_with("progress:")).unwrap_or_default();
        assert!(line.ends_with(" 33.3% rows"), "{out}");
    }

    #[test]
    fn queues_show_their_state_and_depth_per_priority() {
        let pending = crate::stats::PendingByPriority { high: 2, low: 1, ..Default::default() };
        let q = |name: &str, paused| QueueInfo {
            name: name.into(),
            paused,
            total_pending: pending.total(),
            pending,
        };
        let out = queues(&[q("default", false), q("payments", true)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(cells(lines[2]), ["payments", "paused", "3", "0", "2", "0", "1"], "{out}");
        assert_eq!(cells(lines[1])[1], "active", "{out}");
    }

    #[test]
    fn fields_align_their_values() {
        let out = fields(&[("id", "1".into()), ("status", "completed".into())]);
        assert_eq!(out, "id:     1\nstatus: completed");
    }

    #[test]
    fn tables_align_columns_and_say_when_empty() {
        let rows = vec![vec!["a".to_owned(), "1".to_owned()], vec!["long".into(), "22".into()]];
        assert_eq!(table(&["NAME", "N"], &rows, "none"), "NAME  N\na     1\nlong  22");
        assert_eq!(table(&["NAME", "N"], &[], "none"), "none");
    }
}
