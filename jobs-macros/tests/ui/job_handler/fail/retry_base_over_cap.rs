use jobs_core::prelude::*;

#[job_handler("flaky", retry_base = "10m", retry_cap = "5m")]
async fn flaky() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
