//! The operator subcommands: `handlers` (this binary's), and against a deployment's Redis
//! `enqueue`, `job`, `cancel`, `stats`, `dlq …` and `schedules …`. Each prints a human line
//! per item, or one JSON document with `--json`.

use serde::Serialize;

use super::cli::{Command, DlqOp, EnqueueArgs, ScheduleOp};
use super::{RunnerEnv, backend, secs};
use crate::context::State;
use crate::error::{Error, Result};
use crate::job::{JobId, JobPriority};
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
        Command::Enqueue(args) => enqueue(&queue, json, args).await,
        Command::Job { id } => {
            let id: JobId = id.parse()?;
            let job = queue.get_job(id).await?.ok_or(Error::NotFound { id })?;
            print(json, &job, || serde_json::to_string_pretty(&job).unwrap_or_default())
        }
        Command::Cancel { id } => cancel(&queue, json, &id).await,
        Command::Stats => stats(&queue, json).await,
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
    print(json, &hs, || {
        hs.iter()
            .map(|h| {
                format!(
                    "{:<28} queue={:<10} priority={:<8} max_retries={:<3} timeout={}s  args={}  limits={}",
                    h.name, h.queue, h.priority, h.max_retries, h.timeout, h.args_type, h.limits
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

async fn enqueue(queue: &crate::JobQueue, json: bool, a: EnqueueArgs) -> Result<()> {
    let args: serde_json::Value = serde_json::from_str(&a.args)
        .map_err(|e| Error::Config(format!("--args is not valid JSON: {e}")))?;
    let mut e = queue.enqueue(a.name, args);
    if let Some(p) = a.priority {
        e = e.priority(p.parse::<JobPriority>()?);
    }
    if let Some(d) = a.delay {
        e = e.delay(secs(d, "--in")?);
    }
    if let Some(at) = a.at {
        let t = chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| Error::Config(format!("--at is not an RFC 3339 time: {e}")))?;
        e = e.scheduled_at(t.with_timezone(&chrono::Utc));
    }
    let id = e.await?;
    print(json, &serde_json::json!({ "id": id }), || format!("enqueued {id}"))
}

async fn cancel(queue: &crate::JobQueue, json: bool, id: &str) -> Result<()> {
    let id: JobId = id.parse()?;
    let out = queue.cancel_job(id).await?;
    print(json, &serde_json::json!({ "id": id, "outcome": out }), || match out {
        crate::backend::CancelOutcome::Cancelled => format!("cancelled {id}"),
        crate::backend::CancelOutcome::Requested => format!("{id} is running; asked it to stop"),
    })
}

async fn stats(queue: &crate::JobQueue, json: bool) -> Result<()> {
    let s = queue.stats().await?;
    print(json, &s, || {
        format!(
            "pending: critical={} high={} normal={} low={} (total {})\nscheduled: {} (retrying {})\nprocessing: {}\ndead letter: {}\ncounters: {}",
            s.pending.critical,
            s.pending.high,
            s.pending.normal,
            s.pending.low,
            s.total_pending,
            s.scheduled,
            s.retrying,
            s.processing,
            s.dead_letter,
            serde_json::to_string(&s.counters).unwrap_or_default()
        )
    })
}

async fn dlq(queue: &crate::JobQueue, json: bool, op: DlqOp) -> Result<()> {
    match op {
        DlqOp::List { limit } => {
            let jobs = queue.get_dead_letter_jobs(limit).await?;
            print(json, &jobs, || {
                jobs.iter()
                    .map(|j| {
                        format!(
                            "{}  {:<24} retries={} error={}",
                            j.id,
                            j.name,
                            j.retry_count,
                            j.error.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
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
            print(json, &list, || list.iter().map(schedule_line).collect::<Vec<_>>().join("\n"))
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

/// One line of `schedules list`.
fn schedule_line(s: &crate::ScheduleInfo) -> String {
    let when = match (&s.cron_expression, s.interval_seconds) {
        (Some(c), _) => format!("cron {c}"),
        (None, Some(n)) => format!("every {n}s"),
        _ => "once".to_owned(),
    };
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    format!(
        "{:<22} {:<28} {:<22} {:<8} next={} last={} runs={}",
        s.name,
        s.job_name,
        when,
        if s.enabled { "enabled" } else { "disabled" },
        time(s.next_run),
        time(s.last_run),
        s.run_count
    )
}
