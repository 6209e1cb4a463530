use jobs_core::prelude::*;

#[every_minutes(0)]
async fn never() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
