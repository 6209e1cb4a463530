use jobs_core::prelude::*;

#[derive(Serialize, Deserialize)]
struct Sync {
    user_id: String,
}

#[job_handler("sync_portfolio", unique(by = [user], for = "10m"))]
async fn sync_portfolio(_args: Sync) {}

fn main() {}
