//! `jobs_core::testing`: the in-memory queue on a virtual clock that handler tests use.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use jobs_core::prelude::*;
use jobs_core::testing::{self, DrainError, RunOutcome, TestQueue};
use jobs_core::{JobStatus, ScheduleSpec, State};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flaky {
    key: String,
    succeed_on: u32,
}

#[job_handler("testing_flaky", max_retries = 3)]
async fn testing_flaky(args: Flaky, ctx: JobContext) -> Result<String, JobError> {
    if ctx.attempt() < args.succeed_on {
        return Err(JobError::msg(format!("{}: attempt {} failed", args.key, ctx.attempt())));
    }
    Ok(format!("{} done on attempt {}", args.key, ctx.attempt()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Parent {
    children: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Child {
    n: u32,
}

#[job_handler("testing_parent")]
async fn testing_parent(args: Parent, ctx: JobContext) -> Result<u32, JobError> {
    for n in 0..args.children {
        ctx.queue().enqueue_typed::<TestingChildJob>(Child { n }).await.map_err(JobError::new)?;
    }
    Ok(args.children)
}

#[job_handler("testing_child")]
async fn testing_child(args: Child) -> Result<u32, JobError> {
    Ok(args.n * 10)
}

#[job_handler("testing_forever")]
async fn testing_forever(ctx: JobContext) -> Result<(), JobError> {
    ctx.queue().enqueue_typed::<TestingForeverJob>(()).await.map_err(JobError::new)?;
    Ok(())
}

struct Greeting(&'static str);

#[job_handler("testing_greet", max_retries = 1)]
async fn testing_greet(ctx: JobContext) -> Result<String, JobError> {
    Ok(ctx.state::<Greeting>()?.0.to_owned())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rate limited on its first attempt: asks for the next one in 30 s.
#[job_handler("testing_rate_limited", max_retries = 3)]
async fn testing_rate_limited(ctx: JobContext) -> Result<u32, BoxError> {
    if ctx.attempt() == 1 {
        return Err(Box::new(RetryAfter::new(Duration::from_secs(30), "429 too many requests")));
    }
    Ok(ctx.attempt())
}

#[derive(Debug)]
struct Import(Permanent);

impl std::fmt::Display for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("importing row 3")
    }
}

impl std::error::Error for Import {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[job_handler("testing_bad_row", max_retries = 5)]
async fn testing_bad_row() -> Result<(), Import> {
    Err(Import(Permanent::new("column `price` is not a number")))
}

fn flaky(key: &str, succeed_on: u32) -> Flaky {
    Flaky { key: key.into(), succeed_on }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn retries_with_the_default_two_minute_backoff_drain_in_virtual_time() {
    let test = testing::queue();
    let q = test.queue();
    let recovers = q
        .enqueue_typed::<TestingFlakyJob>(flaky("recovers", 3))
        .await
        .expect("in-memory test queue");
    // max_retries = 3: four attempts, all failing, then the DLQ.
    let dies =
        q.enqueue_typed::<TestingFlakyJob>(flaky("dies", 99)).await.expect("in-memory test queue");

    let real = Instant::now();
    let start = test.clock().now();
    let drained = test.drain().await.expect("drain");
    let took = real.elapsed();
    assert!(took < Duration::from_secs(1), "drain took {took:?} of real time");

    assert_eq!(
        drained.outcome(recovers),
        Some(&RunOutcome::Completed(serde_json::json!("recovers done on attempt 3")))
    );
    assert!(matches!(drained.outcome(dies), Some(RunOutcome::DeadLettered { .. })));
    assert_eq!(drained.runs.iter().filter(|r| r.id == recovers).count(), 3);
    assert_eq!(drained.runs.iter().filter(|r| r.id == dies).count(), 4);
    assert_eq!((drained.completed(), drained.dead_lettered()), (1, 1));
    // The backoffs were applied on the virtual clock: 2 + 4 + 8 minutes before the last
    // attempt of the one that died.
    let last = drained.runs.iter().rfind(|r| r.id == dies).expect("in-memory test queue");
    assert_eq!(last.attempt, 4);
    assert!(last.at - start >= chrono::Duration::minutes(14), "{:?}", last.at - start);

    let job = q.get_job(dies).await.expect("in-memory test queue").expect("in-memory test queue");
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some("dies: attempt 4 failed"));
}

#[tokio::test]
async fn a_job_delayed_by_an_hour_runs_on_drain() {
    let test = testing::queue();
    let start = test.clock().now();
    let id = test
        .queue()
        .enqueue_typed::<TestingChildJob>(Child { n: 4 })
        .delay(Duration::from_secs(3600))
        .await
        .expect("in-memory test queue");
    assert_eq!(
        test.queue()
            .get_job(id)
            .await
            .expect("in-memory test queue")
            .expect("in-memory test queue")
            .status,
        JobStatus::Pending
    );
    let real = Instant::now();
    let drained = test.drain().await.expect("drain");
    assert!(real.elapsed() < Duration::from_secs(1));
    assert_eq!(drained.outcome(id), Some(&RunOutcome::Completed(serde_json::json!(40))));
    assert!(drained.runs[0].at - start >= chrono::Duration::hours(1));
    assert_eq!(
        test.queue()
            .get_job(id)
            .await
            .expect("in-memory test queue")
            .expect("in-memory test queue")
            .status,
        JobStatus::Completed
    );
}

#[tokio::test]
async fn jobs_enqueued_by_a_handler_run_in_the_same_drain() {
    let test = testing::queue();
    let parent = test
        .queue()
        .enqueue_typed::<TestingParentJob>(Parent { children: 3 })
        .await
        .expect("in-memory test queue");
    let drained = test.drain().await.expect("drain");
    assert_eq!(drained.outcome(parent), Some(&RunOutcome::Completed(serde_json::json!(3))));
    let children: Vec<_> = drained.of::<TestingChildJob>().map(|r| r.outcome.clone()).collect();
    assert_eq!(children, [0, 10, 20].map(|v| RunOutcome::Completed(serde_json::json!(v))).to_vec());
    test.assert_enqueued::<TestingChildJob>(|c| c.n == 2);
    assert_eq!(test.enqueued::<TestingChildJob>().len(), 3);
}

#[tokio::test]
async fn drain_stops_with_an_error_at_its_bound() {
    let test = testing::queue().with_max_runs(50);
    test.queue().enqueue_typed::<TestingForeverJob>(()).await.expect("in-memory test queue");
    match test.drain().await {
        Err(DrainError::Limit { limit, drained }) => {
            assert_eq!(limit, 50);
            assert_eq!(drained.runs.len(), 50);
            assert_eq!(drained.completed(), 50);
        }
        other => panic!("expected the bound to stop the drain, got {other:?}"),
    }
    // What is left is still queued, not stuck running.
    let left: Vec<_> =
        test.jobs().into_iter().filter(|j| j.status != Some(JobStatus::Completed)).collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, Some(JobStatus::Pending));
}

#[tokio::test]
async fn assert_enqueued_panics_listing_what_was_enqueued() {
    let test = testing::queue();
    test.queue()
        .enqueue_typed::<TestingChildJob>(Child { n: 7 })
        .await
        .expect("in-memory test queue");
    let failed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        test.assert_enqueued::<TestingChildJob>(|c| c.n == 8)
    }))
    .expect_err("no job matches");
    let msg = panic_text(failed.as_ref());
    assert!(msg.contains("no `testing_child` job matching"), "{msg}");
    assert!(msg.contains("`testing_child` (pending) args {\"n\":7}"), "{msg}");

    let empty = testing::queue();
    let failed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        empty.assert_enqueued::<TestingChildJob>(|_| true)
    }))
    .expect_err("nothing enqueued");
    let msg = panic_text(failed.as_ref());
    assert!(msg.contains("no job at all was enqueued"), "{msg}");
}

#[tokio::test]
async fn handlers_find_the_state_the_test_gives() {
    let test = TestQueue::new().with_state(State::new().with(Greeting("hello")));
    let id = test.queue().enqueue_typed::<TestingGreetJob>(()).await.expect("in-memory test queue");
    let drained = test.drain().await.expect("in-memory test queue");
    assert_eq!(drained.outcome(id), Some(&RunOutcome::Completed(serde_json::json!("hello"))));

    // Without it the handler's error names what is missing.
    let bare = testing::queue();
    let id = bare.queue().enqueue_typed::<TestingGreetJob>(()).await.expect("in-memory test queue");
    let drained = bare.drain().await.expect("in-memory test queue");
    match drained.outcome(id) {
        Some(RunOutcome::DeadLettered { error }) => assert!(error.contains("Greeting"), "{error}"),
        other => panic!("expected the DLQ, got {other:?}"),
    }
}

#[tokio::test]
async fn schedules_fire_when_the_test_advances_the_clock() {
    let test = testing::queue();
    test.scheduler()
        .register(
            ScheduleSpec::interval("every_minute", "testing_child", 60)
                .args(serde_json::json!({"n": 1})),
        )
        .await
        .expect("in-memory test queue");
    assert_eq!(test.tick_schedules().await.expect("in-memory test queue"), 0, "not due yet");
    assert_eq!(test.advance(Duration::from_secs(60)).await.expect("in-memory test queue"), 1);
    assert_eq!(test.tick_schedules().await.expect("in-memory test queue"), 0, "a tick fires once");
    assert_eq!(test.advance(Duration::from_secs(60)).await.expect("in-memory test queue"), 1);
    let drained = test.drain().await.expect("in-memory test queue");
    assert_eq!(drained.completed(), 2);
}

#[tokio::test]
async fn a_handler_asks_for_its_retry_after_a_delay() {
    let test = testing::queue();
    let id = test.queue().enqueue_typed::<TestingRateLimitedJob>(()).await.expect("enqueue");
    let drained = test.drain().await.expect("drain");
    let runs: Vec<_> = drained.runs.iter().filter(|r| r.id == id).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // Not the two-minute backoff: the 30 s the handler asked for, on the virtual clock.
    let RunOutcome::Failed { retry_at, .. } = &runs[0].outcome else {
        panic!("first run: {:?}", runs[0].outcome)
    };
    assert_eq!(*retry_at - runs[0].at, chrono::Duration::seconds(30));
    assert_eq!(runs[1].at, *retry_at);
    assert_eq!(drained.outcome(id), Some(&RunOutcome::Completed(serde_json::json!(2))));
    let job = test.queue().get_job(id).await.expect("get").expect("the job");
    assert_eq!(job.retry_count, 1, "the asked-for delay still counts a retry");
}

#[tokio::test]
async fn a_permanent_error_deep_in_the_chain_stops_the_retries() {
    let test = testing::queue();
    let id = test.queue().enqueue_typed::<TestingBadRowJob>(()).await.expect("enqueue");
    let drained = test.drain().await.expect("drain");
    assert_eq!(drained.runs.iter().filter(|r| r.id == id).count(), 1);
    let error = "importing row 3: column `price` is not a number".to_owned();
    assert_eq!(drained.outcome(id), Some(&RunOutcome::DeadLettered { error }));
}
