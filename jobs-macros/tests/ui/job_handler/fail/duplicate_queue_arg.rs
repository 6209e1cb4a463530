use jobs_core::prelude::*;

#[job_handler("settle", queue = "payments", queue = "default")]
async fn settle() {}

fn main() {}
