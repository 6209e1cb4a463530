use jobs_core::prelude::*;

#[derive(Serialize, Deserialize)]
struct Refresh {
    region: String,
}

#[every_minutes(5)]
async fn refresh(args: Refresh) -> Result<(), JobError> {
    let _ = args.region;
    Ok(())
}

fn main() {}
