use jobs_core::prelude::*;
use jobs_core::{Registry, ScheduleKind};

#[cron("*/15 9-17 * * MON-FRI")]
async fn market_hours() {}

#[cron("0 0 * * 7", name = "sunday")]
#[cron("0 0 * * 0")]
async fn weekly() {}

fn main() {
    let registry = Registry::from_inventory().expect("registry");
    assert_eq!(
        registry.schedule("market_hours").map(|s| s.kind),
        Some(ScheduleKind::Cron { expr: "*/15 9-17 * * MON-FRI" })
    );
    assert!(registry.schedule("sunday").is_some());
    assert!(registry.schedule("weekly").is_some());
}
