use jobs_core::prelude::*;

struct Service;

impl Service {
    #[job_handler("method")]
    async fn method(&self) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
