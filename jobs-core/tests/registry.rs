//! Two application modules linked into one binary: every handler and schedule is in the
//! registry with its metadata, handlers run through their erased functions, and typed
//! enqueue round-trips through the in-memory backend.

use std::time::Duration;

use jobs_core::backend::FetchRequest;
use jobs_core::prelude::*;
use jobs_core::{Error, JobId, Registry, ScheduleKind};
use serde_json::json;

mod app_a {
    use jobs_core::prelude::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SyncPortfolio {
        pub user_id: String,
        pub full: bool,
    }

    #[derive(Debug, Serialize)]
    pub struct Report {
        pub user_id: String,
        pub attempt: u32,
        pub full: bool,
    }

    /// The line of `sync_portfolio`'s name.
    pub const SYNC_LINE: u32 = line!() + 3;

    #[job_handler("sync_portfolio", max_retries = 5, timeout = "30s", priority = "high")]
    pub async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<Report, JobError> {
        Ok(Report { user_id: args.user_id, attempt: ctx.attempt(), full: args.full })
    }

    #[every_minutes(5)]
    pub async fn sync_all_portfolios(ctx: JobContext) -> Result<(), JobError> {
        let _ = ctx;
        Ok(())
    }
}

mod app_b {
    use jobs_core::prelude::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct Summary {
        pub recipients: Vec<String>,
    }

    /// The line of the `#[daily_at]` attribute.
    pub const DAILY_LINE: u32 = line!() + 2;

    #[daily_at(8, 0)]
    #[job_handler("send_daily_summary_emails", timeout = 600)]
    pub async fn send_daily_summary_emails(args: Summary) -> Result<usize, JobError> {
        Ok(args.recipients.len())
    }

    #[cron("0 3 * * 0", name = "weekly_cleanup", priority = "low", args = {"recipients": ["ops"]})]
    pub async fn cleanup(args: Summary) -> Result<(), JobError> {
        if args.recipients.is_empty() {
            return Err(JobError::permanent_msg("nobody to tell"));
        }
        Ok(())
    }
}

#[test]
fn every_handler_and_schedule_is_registered_with_its_metadata()
-> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::global()?;
    let names: Vec<&str> = registry.handlers().map(|h| h.name()).collect();
    assert_eq!(
        names,
        ["cleanup", "send_daily_summary_emails", "sync_all_portfolios", "sync_portfolio"]
    );

    let h = registry.handler("sync_portfolio").ok_or("sync_portfolio")?;
    assert_eq!(h.defaults().max_retries, Some(5));
    assert_eq!(h.defaults().timeout, Some(Duration::from_secs(30)));
    assert_eq!(h.defaults().priority, Some(JobPriority::High));
    assert_eq!(h.args_type(), "registry::app_a::SyncPortfolio");
    assert!(h.takes_args());
    assert_eq!(h.location().file, "jobs-core/tests/registry.rs");
    assert_eq!(h.location().module_path, "registry::app_a");
    assert_eq!(h.location().line, app_a::SYNC_LINE, "the line of the function's name");

    let h = registry.handler("sync_all_portfolios").ok_or("sync_all_portfolios")?;
    assert_eq!(h.args_type(), "()");
    assert!(!h.takes_args());
    assert_eq!(h.defaults(), jobs_core::HandlerDefaults::NONE);

    let h = registry.handler("send_daily_summary_emails").ok_or("send_daily_summary_emails")?;
    assert_eq!(h.defaults().timeout, Some(Duration::from_secs(600)));

    let schedules: Vec<(&str, &str)> = registry.schedules().map(|s| (s.name, s.handler)).collect();
    assert_eq!(
        schedules,
        [
            ("send_daily_summary_emails", "send_daily_summary_emails"),
            ("sync_all_portfolios", "sync_all_portfolios"),
            ("weekly_cleanup", "cleanup"),
        ]
    );
    let s = registry.schedule("sync_all_portfolios").ok_or("schedule")?;
    assert_eq!(s.kind, ScheduleKind::Interval { secs: 300 });
    assert_eq!(s.args, serde_json::Value::Null);
    assert_eq!(s.priority, None);
    let s = registry.schedule("send_daily_summary_emails").ok_or("schedule")?;
    assert_eq!(s.kind, ScheduleKind::Cron { expr: "0 8 * * *" });
    assert_eq!(s.args, json!({"recipients": []}));
    assert_eq!(s.location.line, app_b::DAILY_LINE, "the line of the schedule attribute");
    let s = registry.schedule("weekly_cleanup").ok_or("schedule")?;
    assert_eq!(s.kind, ScheduleKind::Cron { expr: "0 3 * * 0" });
    assert_eq!(s.priority, Some(JobPriority::Low));
    assert_eq!(s.args, json!({"recipients": ["ops"]}));
    Ok(())
}

fn context(name: &str, attempt: u32) -> JobContext {
    JobContext::new(JobId::new(), name, attempt, JobQueue::memory())
}

#[tokio::test]
async fn handlers_run_through_their_erased_functions() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::global()?;
    let h = registry.handler("sync_portfolio").ok_or("sync_portfolio")?;
    let out = h.call(json!({"user_id": "u-1", "full": true}), context("sync_portfolio", 2)).await?;
    assert_eq!(out, json!({"user_id": "u-1", "attempt": 2, "full": true}));

    // Arguments that do not fit fail permanently, naming the field.
    let err = h
        .call(json!({"user_id": 7, "full": true}), context("sync_portfolio", 1))
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "invalid arguments: field `user_id`: invalid type: integer `7`, expected a string"
    );

    // A handler's own permanent error stays permanent; its result is JSON.
    let cleanup = registry.handler("cleanup").ok_or("cleanup")?;
    let err = cleanup
        .call(json!({"recipients": []}), context("cleanup", 1))
        .await
        .err()
        .ok_or("error")?;
    assert!(!err.is_retryable());
    let n = registry
        .handler("send_daily_summary_emails")
        .ok_or("send")?
        .call(json!({"recipients": ["a", "b"]}), context("send_daily_summary_emails", 1))
        .await?;
    assert_eq!(n, json!(2));

    // Handlers without arguments accept `null` and `{}`.
    let h = registry.handler("sync_all_portfolios").ok_or("sync_all_portfolios")?;
    assert_eq!(
        h.call(json!({}), context("sync_all_portfolios", 1)).await?,
        serde_json::Value::Null
    );
    Ok(())
}

#[tokio::test]
async fn typed_enqueue_round_trips_through_the_memory_backend()
-> Result<(), Box<dyn std::error::Error>> {
    let queue = JobQueue::memory();
    let args = app_a::SyncPortfolio { user_id: "user-123".into(), full: false };
    let id = queue.enqueue_typed::<app_a::SyncPortfolioJob>(args.clone()).max_retries(7).await?;

    let fetched = queue
        .fetch(&FetchRequest {
            queues: Vec::new(),
            max: 1,
            worker_id: "w1".into(),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(5),
        })
        .await?;
    let leased = fetched.jobs.first().ok_or("no job fetched")?;
    assert_eq!(leased.job.id, id);
    assert_eq!(leased.job.name, "sync_portfolio");
    // Handler defaults, then the enqueue's override.
    assert_eq!(leased.job.priority, JobPriority::High);
    assert_eq!(leased.job.timeout, Duration::from_secs(30));
    assert_eq!(leased.job.max_retries, 7);
    let typed: app_a::SyncPortfolio = serde_json::from_value(leased.job.args.clone())?;
    assert_eq!(typed, args);

    // The worker's path: registry lookup, erased call with the fetched args and context.
    let handler = Registry::global()?.handler(&leased.job.name).ok_or("handler")?;
    let ctx = JobContext::for_job(&leased.job, queue.clone());
    let result = handler.call(leased.job.args.clone(), ctx).await?;
    assert_eq!(result, json!({"user_id": "user-123", "attempt": 1, "full": false}));
    queue.complete(leased.lease, result).await?;
    Ok(())
}

#[tokio::test]
async fn enqueue_by_name_validates_arguments_of_linked_handlers()
-> Result<(), Box<dyn std::error::Error>> {
    let queue = JobQueue::memory();
    let missing = queue.enqueue("sync_portfolio", json!({"user_id": "u"})).await;
    match missing {
        Err(Error::InvalidArgs { name, message }) => {
            assert_eq!(name, "sync_portfolio");
            assert_eq!(message, "missing field `full`");
        }
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
    let wrong = queue.enqueue("sync_portfolio", json!({"user_id": "u", "full": "yes"})).await;
    match wrong {
        Err(e @ Error::InvalidArgs { .. }) => assert_eq!(
            e.to_string(),
            "invalid arguments for job `sync_portfolio`: field `full`: invalid type: string \"yes\", expected a boolean"
        ),
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
    // Nothing was written.
    assert_eq!(queue.stats().await?.total_pending, 0);

    // Valid JSON passes, and names no process here knows pass too.
    queue.enqueue("sync_portfolio", json!({"user_id": "u", "full": true})).await?;
    queue.enqueue("handled_elsewhere", json!({"anything": 1})).await?;
    let batch = [queue.new_job("sync_all_portfolios", json!({"x": 1}))];
    assert!(matches!(queue.enqueue_many(&batch).await, Err(Error::InvalidArgs { .. })));
    Ok(())
}

#[tokio::test]
async fn context_carries_state_and_enqueues_follow_ups() -> Result<(), Box<dyn std::error::Error>> {
    struct Db(&'static str);
    let queue = JobQueue::memory();
    let state = std::sync::Arc::new(jobs_core::State::new().with(Db("main")));
    let ctx = JobContext::new(JobId::new(), "parent", 1, queue.clone()).with_state(state);
    assert_eq!(ctx.state::<Db>()?.0, "main");
    let missing = ctx.state::<String>().err().map(|e| e.to_string());
    assert_eq!(
        missing.as_deref(),
        Some("no application state of type `alloc::string::String` is registered on the service")
    );
    ctx.queue()
        .enqueue_typed::<app_b::SendDailySummaryEmailsJob>(app_b::Summary {
            recipients: vec!["x".into()],
        })
        .await?;
    assert_eq!(queue.stats().await?.total_pending, 1);
    assert!(!ctx.is_cancelled());
    ctx.cancellation_token().cancel();
    ctx.cancelled().await;
    Ok(())
}
