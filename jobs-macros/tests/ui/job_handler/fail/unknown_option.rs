use jobs_core::prelude::*;

#[job_handler("retrying", retries = 5)]
async fn retrying() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
