use jobs_core::prelude::*;

#[job_handler("generic")]
async fn generic<T: serde::de::DeserializeOwned>(args: T) -> Result<(), JobError> {
    let _ = args;
    Ok(())
}

fn main() {}
