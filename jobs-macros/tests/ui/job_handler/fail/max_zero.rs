use jobs_core::prelude::*;

#[job_handler("rebalance", concurrency(max = 0))]
async fn rebalance() {}

fn main() {}
