use jobs_core::prelude::*;

#[job_handler("fetch_quotes", rate_limit(max = 10, per = "1 second"))]
async fn fetch_quotes() {}

fn main() {}
