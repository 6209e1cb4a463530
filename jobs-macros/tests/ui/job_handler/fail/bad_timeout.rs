use jobs_core::prelude::*;

#[job_handler("slow", timeout = "thirty seconds")]
async fn slow() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
