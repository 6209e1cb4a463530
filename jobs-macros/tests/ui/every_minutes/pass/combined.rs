use jobs_core::prelude::*;
use jobs_core::{Registry, ScheduleKind};

#[derive(Serialize, Deserialize, Default)]
struct Refresh {
    region: String,
}

// Schedule first, handler second.
#[every_minutes(5, priority = "low")]
#[job_handler("refresh_prices", max_retries = 1)]
async fn refresh_prices(args: Refresh) -> Result<(), JobError> {
    let _ = args.region;
    Ok(())
}

// Handler first, schedule second, two schedules on one function.
#[job_handler("rebalance")]
#[every_minutes(60, args = {"region": "eu"})]
#[every_minutes(30, name = "rebalance_us", args = Refresh { region: "us".into() })]
async fn rebalance(args: Refresh, ctx: JobContext) -> Result<(), JobError> {
    let _ = (args, ctx);
    Ok(())
}

// A schedule alone registers the handler, named after the function.
#[every_minutes(1, args = r#"{"region": "ap"}"#)]
async fn heartbeat(args: Refresh) {
    let _ = args;
}

fn main() {
    let registry = Registry::from_inventory().expect("no duplicates");
    assert_eq!(registry.handlers().len(), 3);
    let s = registry.schedule("refresh_prices").expect("schedule");
    assert_eq!(s.kind, ScheduleKind::Interval { secs: 300 });
    assert_eq!(s.priority, Some(JobPriority::Low));
    assert_eq!(s.args, serde_json::json!({"region": ""}));
    assert_eq!(registry.handler("refresh_prices").map(|h| h.defaults().max_retries), Some(Some(1)));
    assert_eq!(
        registry.schedule("rebalance").map(|s| s.args.clone()),
        Some(serde_json::json!({"region": "eu"}))
    );
    assert_eq!(
        registry.schedule("rebalance_us").map(|s| s.args.clone()),
        Some(serde_json::json!({"region": "us"}))
    );
    assert_eq!(registry.schedule("heartbeat").map(|s| s.handler), Some("heartbeat"));
}
