use jobs_core::prelude::*;

#[cron("0 25 * * *")]
async fn nightly() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
