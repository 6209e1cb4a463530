use jobs_core::prelude::*;

#[job_handler("settle", queue = "pay ments")]
async fn settle() {}

fn main() {}
