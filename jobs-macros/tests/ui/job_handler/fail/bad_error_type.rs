use jobs_core::prelude::*;

#[job_handler("stringly")]
async fn stringly() -> Result<(), String> {
    Err("no".to_owned())
}

fn main() {}
