use jobs_core::prelude::*;
use jobs_core::{Registry, ScheduleKind};

#[daily_at(23, 59)]
async fn end_of_day() {}

#[daily_at(0, 0, name = "midnight_summary", priority = "critical")]
#[job_handler("summary")]
async fn summary(ctx: JobContext) -> Result<(), JobError> {
    let _ = ctx;
    Ok(())
}

fn main() {
    let registry = Registry::from_inventory().expect("registry");
    assert_eq!(
        registry.schedule("end_of_day").map(|s| s.kind),
        Some(ScheduleKind::Cron { expr: "59 23 * * *" })
    );
    let s = registry.schedule("midnight_summary").expect("schedule");
    assert_eq!(s.kind, ScheduleKind::Cron { expr: "0 0 * * *" });
    assert_eq!(s.handler, "summary");
    assert_eq!(s.priority, Some(JobPriority::Critical));
}
