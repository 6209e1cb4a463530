use jobs_core::prelude::*;
use jobs_core::{Registry, ScheduleKind};

#[every_seconds(15)]
async fn poll(ctx: JobContext) -> Result<(), JobError> {
    let _ = ctx;
    Ok(())
}

fn main() {
    let registry = Registry::from_inventory().expect("registry");
    let s = registry.schedule("poll").expect("schedule");
    assert_eq!(s.kind, ScheduleKind::Interval { secs: 15 });
    assert_eq!(s.args, serde_json::Value::Null);
}
