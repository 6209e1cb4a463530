//! The operator subcommands: `handlers` (this binary's), and against a deployment's Redis
//! `enqueue`, `job`, `cancel`, `delete`, `jobs`, `bulk`, `stats`, `queues …`, `dlq …` and
//! `schedules …`. Each prints a human line
//! per item, or one JSON document with `--json`.

use serde::Serialize;

use super::cli::{BulkArgs, Command, DlqOp, EnqueueArgs, JobsArgs, QueueOp, ScheduleOp};
use super::{RunnerEnv, backend, secs, show};
use crate::bulk::{BulkAction, SELECTION_STATES, Selection, SelectionError};
use crate::context::State;
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, JobId, JobPriority};
use crate::service::{BackendChoice, JobService, ServiceConfig};

/// Runs an operator command (`run` is [`super::serve`]'s).
pub(super) async fn operate(env: &RunnerEnv, json: bool, command: Command) -> Result<()> {
    if let Command::Handlers = command {
        return handlers(json);
    }
    let BackendChoice::Redis(rc) = backend(env) else {
        return Err(Error::Config(
            "operator commands need a shared backend: set REDIS_URL (the in-memory backend lives inside the running process)".into(),
        ));
    };
    let queue = crate::JobQueue::new(crate::backend::redis::RedisBackend::connect(rc).await?);
    match command {
        Command::Enqueue(args) => enqueue(&queue, json, *args).await,
        Command::Job { id } => {
            let id: JobId = id.parse()?;
            let job = queue.get_job(id).await?.ok_or(Error::NotFound { id })?;
            print(json, &job, || show::job(&job))
        }
        Command::Cancel { id } => cancel(&queue, json, &id).await,
        Command::Delete { id } => {
            let id: JobId = id.parse()?;
            queue.delete_job(id).await?;
            print(json, &serde_json::json!({ "id": id, "deleted": true }), || {
                format!("deleted {id}")
            })
        }
        Command::Bulk(args) => bulk(&queue, json, *args).await,
        Command::Stats => stats(&queue, json).await,
        Command::Limits => {
            let limits = queue.backend().limits(crate::backend::limits::LIMITS_LIST_MAX).await?;
            print(json, &limits, || show::limits(&limits))
        }
        Command::Queues { op } => queues(&queue, json, op.unwrap_or(QueueOp::List)).await,
        Command::Jobs(args) => jobs(&queue, json, *args).await,
        Command::Retry { id } => {
            let id: JobId = id.parse()?;
            queue.retry_job(id).await?;
            print(json, &serde_json::json!({ "id": id, "retried": true }), || {
                format!("{id} is pending again")
            })
        }
        Command::Dlq { op } => dlq(&queue, json, op).await,
        Command::Schedules { op } => schedules(queue, json, op).await,
        Command::Run(_) | Command::Handlers => Ok(()),
    }
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

/// `handlers`: what this binary links, no backend needed.
fn handlers(json: bool) -> Result<()> {
    let service = JobService::with_parts(
        ServiceConfig::default(),
        crate::JobQueue::memory(),
        std::sync::Arc::new(crate::Registry::global()?.clone()),
        State::new(),
    );
    let hs = service.handlers();
    print(json, &hs, || show::handlers(&hs))
}

/// `enqueue`: checked against this binary's handlers first (a name none has is an error
/// that names the closest ones, and nothing is enqueued), as the API's enqueue is.
async fn enqueue(queue: &crate::JobQueue, json: bool, a: EnqueueArgs) -> Result<()> {
    let args: serde_json::Value = serde_json::from_str(&a.args).map_err(|e| Error::InvalidJob {
        reason: format!(
            "--args is not JSON ({e}); give the arguments as a JSON object, e.g. --args '{{\"user_id\": \"user-1\"}}'"
        ),
    })?;
    let registry = crate::Registry::global()?;
    // A binary that links no handlers (an operator-only build) cannot tell; it enqueues.
    if registry.handlers().len() > 0 {
        let handler = registry.handler(&a.name).ok_or_else(|| {
            Error::unknown_handler(a.name.clone(), registry.handlers().map(|h| h.name()))
        })?;
        handler.check_args(&args)?;
    }
    let mut e = queue.enqueue(a.name, args);
    if let Some(p) = a.priority {
        e = e.priority(p.parse::<JobPriority>()?);
    }
    if let Some(n) = a.max_retries {
        e = e.max_retries(n);
    }
    if let Some(t) = a.timeout {
        e = e.timeout(duration(&t, "--timeout")?);
    }
    if let Some(id) = a.id {
        e = e.id(id.parse()?);
    }
    if let Some(user) = a.user_id {
        e = e.user_id(user);
    }
    if let Some(q) = a.queue {
        e = e.queue(q);
    }
    if let Some(key) = a.unique_key {
        e = e.unique_key(key);
    }
    if let Some(w) = a.unique_for {
        e = e.unique_for(duration(&w, "--unique-for")?);
    }
    if let Some(d) = a.delay {
        e = e.delay(secs(d, "--in")?);
    }
    if let Some(at) = a.at {
        let t = chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| Error::InvalidJob {
                reason: format!("--at is not an RFC 3339 time such as 2030-01-01T09:30:00Z: {e}"),
            })?
            .with_timezone(&chrono::Utc);
        // The server's clock decides when a job is due, so it decides what is past.
        let now = queue.backend().time().await?;
        if t <= now {
            tracing::warn!(
                at = %show::time(Some(t)),
                now = %show::time(Some(now)),
                "--at is in the past: the job will run now"
            );
        }
        e = e.scheduled_at(t);
    }
    let done = e.report().await?;
    let id = done.id;
    match done.outcome {
        EnqueueOutcome::Created => {
            print(json, &serde_json::json!({ "id": id }), || format!("enqueued {id}"))
        }
        EnqueueOutcome::Duplicate => {
            print(json, &serde_json::json!({ "id": id, "duplicate": true }), || {
                format!("not enqueued: job {id} exists already (same --id)")
            })
        }
        EnqueueOutcome::Unique { replaced, .. } => print(
            json,
            &serde_json::json!({ "id": id, "duplicate": true, "replaced": replaced }),
            || {
                if replaced {
                    format!("not enqueued: job {id} holds the uniqueness key and took these args")
                } else {
                    format!("not enqueued: job {id} holds the uniqueness key (a duplicate)")
                }
            },
        ),
    }
}

/// A duration flag: `30s`, `500ms`, `5m`, `1h 30m` (humantime's forms) or a number of
/// seconds.
fn duration(text: &str, flag: &str) -> Result<std::time::Duration> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(n) => secs(n, flag),
        Err(_) => humantime::parse_duration(t).map_err(|e| Error::InvalidJob {
            reason: format!(
                "{flag} `{text}` is not a duration ({e}); expected e.g. 30s, 500ms, 5m, 1h or a number of seconds"
            ),
        }),
    }
}

async fn cancel(queue: &crate::JobQueue, json: bool, id: &str) -> Result<()> {
    let id: JobId = id.parse()?;
    let out = queue.cancel_job(id).await?;
    print(json, &serde_json::json!({ "id": id, "outcome": out }), || match out {
        crate::backend::CancelOutcome::Cancelled => format!("cancelled {id}"),
        crate::backend::CancelOutcome::Requested => format!("{id} is running; asked it to stop"),
    })
}

/// `jobs --state …`: one page, as `GET /api/v1/jobs/jobs` lists it.
async fn jobs(queue: &crate::JobQueue, json: bool, a: JobsArgs) -> Result<()> {
    let sel = selection(&a.state, a.name, a.user_id, a.cursor.as_deref(), a.limit)?;
    let (jobs, cursor) = queue.select(&sel).await?;
    let value = serde_json::json!({ "state": a.state, "jobs": jobs, "next_cursor": cursor });
    print(json, &value, || show::job_page(&a.state, &jobs, cursor.as_deref()))
}

/// The selection of `--state`, `--name`, `--user-id`, `--cursor` and `--limit`, or an
/// error naming the flag.
fn selection(
    state: &str,
    name: Option<String>,
    user_id: Option<String>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Selection> {
    use crate::backend::LIST_SCAN_LIMIT;
    if !(1..=LIST_SCAN_LIMIT).contains(&limit) {
        return Err(Error::InvalidJob {
            reason: format!("--limit must be between 1 and {LIST_SCAN_LIMIT}, found {limit}"),
        });
    }
    Selection::parse(state, name, user_id, cursor, limit).map_err(|e| match e {
        SelectionError::UnknownState(shown) => Error::InvalidJob {
            reason: format!("--state `{shown}` is not a state; expected {SELECTION_STATES}"),
        },
        SelectionError::CursorForPending => Error::InvalidJob {
            reason: "pending jobs are listed in the order they will run, without --cursor".into(),
        },
        SelectionError::Cursor(e) => e,
    })
}

/// `bulk <action> --state …`: the action on each job of one page of the selection.
async fn bulk(queue: &crate::JobQueue, json: bool, a: BulkArgs) -> Result<()> {
    let action = BulkAction::parse(&a.action).ok_or_else(|| Error::InvalidJob {
        reason: format!("`{}` is not a bulk action; expected retry, cancel or delete", a.action),
    })?;
    let j = a.jobs;
    let sel = selection(&j.state, j.name, j.user_id, j.cursor.as_deref(), j.limit)?;
    let report = queue.bulk(action, &sel).await?;
    print(json, &report, || show::bulk(&report))
}

async fn stats(queue: &crate::JobQueue, json: bool) -> Result<()> {
    let s = queue.stats().await?;
    print(json, &s, || show::stats(&s))
}

async fn queues(queue: &crate::JobQueue, json: bool, op: QueueOp) -> Result<()> {
    let (name, paused) = match op {
        QueueOp::List => {
            let qs = queue.queues().await?;
            return print(json, &qs, || show::queues(&qs));
        }
        QueueOp::Pause { name } => (name, true),
        QueueOp::Resume { name } => (name, false),
    };
    let changed = queue.backend().pause_queue(&name, paused).await?;
    let value = serde_json::json!({ "name": name, "paused": paused, "changed": changed });
    print(json, &value, || match (paused, changed) {
        (true, true) => format!("{name} paused"),
        (true, false) => format!("{name} was paused already"),
        (false, true) => format!("{name} resumed"),
        (false, false) => format!("{name} was not paused"),
    })
}

async fn dlq(queue: &crate::JobQueue, json: bool, op: DlqOp) -> Result<()> {
    match op {
        DlqOp::List { limit } => {
            let jobs = queue.get_dead_letter_jobs(limit).await?;
            print(json, &jobs, || show::dead_jobs(&jobs))
        }
        DlqOp::Retry { id } => {
            let id: JobId = id.parse()?;
            queue.retry_dead_letter_job(id).await?;
            print(json, &serde_json::json!({ "id": id, "retried": true }), || {
                format!("{id} is pending again")
            })
        }
        DlqOp::Clear => {
            let n = queue.clear_dead_letter_queue().await?;
            print(json, &serde_json::json!({ "cleared": n }), || format!("cleared {n} dead jobs"))
        }
    }
}

async fn schedules(queue: crate::JobQueue, json: bool, op: ScheduleOp) -> Result<()> {
    let registry = std::sync::Arc::new(crate::Registry::global()?.clone());
    let sched = crate::Scheduler::new(queue, registry, crate::SchedulerConfig::default());
    match op {
        ScheduleOp::List => {
            let list = sched.list().await?;
            print(json, &list, || show::schedules(&list))
        }
        ScheduleOp::Enable { name } => {
            let s = sched.enable(&name).await?;
            print(json, &s, || format!("{name} enabled"))
        }
        ScheduleOp::Disable { name } => {
            let s = sched.disable(&name).await?;
            print(json, &s, || format!("{name} disabled"))
        }
        ScheduleOp::Run { name } => {
            let id = sched.run_now(&name).await?;
            print(json, &serde_json::json!({ "schedule": name, "job_id": id }), || {
                format!("enqueued {id} for {name}")
            })
        }
    }
}
