use jobs_core::prelude::*;

#[job_handler("slow", timeout = "thirty seconds")]
async fn slow() -> Result<(), JobError> {
    Ok(())
}

// Under a millisecond: the runtime would store 0 and time out at once.
#[job_handler("instant", timeout = "0ms")]
async fn instant() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
