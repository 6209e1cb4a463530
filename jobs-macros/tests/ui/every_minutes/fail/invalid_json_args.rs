use jobs_core::prelude::*;

#[derive(Serialize, Deserialize)]
struct Refresh {
    region: String,
}

#[every_minutes(5, args = r#"{"region": "eu""#)]
async fn refresh(args: Refresh) {
    let _ = args.region;
}

fn main() {}
