use jobs_core::prelude::*;
use jobs_core::{ConcurrencyLimit, Registry};

#[derive(Serialize, Deserialize)]
struct Rebalance {
    account_id: u64,
}

#[job_handler("rebalance", concurrency(max = 1, by = [account_id]))]
async fn rebalance(Rebalance { account_id }: Rebalance) {
    let _ = account_id;
}

#[job_handler("report", concurrency(max = 4))]
async fn report(ctx: JobContext) {}

// Every flow option at once, with a schedule.
#[derive(Serialize, Deserialize, Default)]
struct Sweep {
    account_id: u64,
}

#[every_minutes(5)]
#[job_handler(
    "sweep",
    queue = "ops",
    unique(for = "5m"),
    rate_limit(max = 2, per = "1s"),
    concurrency(max = 3, by = [account_id])
)]
async fn sweep(args: Sweep) {}

fn main() {
    let reg = Registry::global().expect("registry builds");
    let conc = |name: &str| reg.handler(name).and_then(|h| h.flow().concurrency);
    assert_eq!(conc("rebalance"), Some(ConcurrencyLimit { max: 1, by: &["account_id"] }));
    assert_eq!(conc("report"), Some(ConcurrencyLimit { max: 4, by: &[] }));
    let sweep = reg.handler("sweep").expect("linked").flow();
    assert_eq!(sweep.queue, "ops");
    assert!(sweep.unique.is_some());
    assert_eq!(sweep.rate_limits.len(), 1);
    assert_eq!(sweep.concurrency, Some(ConcurrencyLimit { max: 3, by: &["account_id"] }));
    assert!(reg.schedule("sweep").is_some());
}
