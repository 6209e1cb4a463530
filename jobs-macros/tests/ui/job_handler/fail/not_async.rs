use jobs_core::prelude::*;

#[job_handler("not_async")]
fn not_async() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
