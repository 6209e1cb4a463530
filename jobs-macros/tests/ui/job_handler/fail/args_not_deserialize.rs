use jobs_core::prelude::*;

#[derive(Serialize)]
struct Args {
    user_id: String,
}

#[job_handler("send")]
async fn send(args: Args) -> Result<(), JobError> {
    let _ = args.user_id;
    Ok(())
}

fn main() {}
