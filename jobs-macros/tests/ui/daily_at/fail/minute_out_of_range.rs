use jobs_core::prelude::*;

#[daily_at(8, 60)]
async fn morning() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
