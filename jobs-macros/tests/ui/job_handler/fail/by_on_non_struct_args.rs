use jobs_core::prelude::*;

#[job_handler("fetch_quotes", rate_limit(max = 10, per = "1s", by = [exchange]))]
async fn fetch_quotes(_symbol: String) {}

fn main() {}
