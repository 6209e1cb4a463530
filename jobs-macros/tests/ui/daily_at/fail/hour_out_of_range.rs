use jobs_core::prelude::*;

#[daily_at(24, 0)]
async fn midnight() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
