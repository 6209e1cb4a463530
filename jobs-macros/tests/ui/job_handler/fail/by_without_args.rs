use jobs_core::prelude::*;

#[job_handler("cleanup", unique(by = [user_id], for = "10m"))]
async fn cleanup(_ctx: JobContext) {}

fn main() {}
