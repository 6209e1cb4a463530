use jobs_core::prelude::*;

#[job_handler("too_many")]
async fn too_many(a: u32, ctx: JobContext, extra: String) -> Result<(), JobError> {
    let _ = (a, ctx, extra);
    Ok(())
}

fn main() {}
