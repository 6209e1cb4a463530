use jobs_core::prelude::*;

#[job_handler("flaky", retry_base = "soon")]
async fn flaky() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("instant", retry_base = "0s", retry_cap = 5)]
async fn instant() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("forever", retry_cap = "400d")]
async fn forever() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
