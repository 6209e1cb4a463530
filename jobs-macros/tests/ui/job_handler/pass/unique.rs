use std::time::Duration;

use jobs_core::prelude::*;
use jobs_core::{OnConflict, Registry, UniqueSpec, UniqueUntil};

#[derive(Serialize, Deserialize)]
struct Sync {
    user_id: String,
    r#type: u8,
    note: String,
}

#[job_handler("sync_portfolio", unique(by = [user_id], for = "10m"))]
async fn sync_portfolio(args: Sync) {}

#[job_handler("debounce", unique(on_conflict = "replace", until = "started", for = "500ms", by = [r#type, user_id,]))]
async fn debounce(args: Sync, ctx: JobContext) {}

#[job_handler("whole_args", unique(for = 30, until = "done"))]
async fn whole_args(args: Sync) -> Result<(), JobError> {
    Ok(())
}

// A handler without arguments may still be unique: one job of it at a time.
#[job_handler("singleton", unique(for = "1d"))]
async fn singleton() {}

fn main() {
    let reg = Registry::global().expect("registry builds");
    let unique = |name: &str| reg.handler(name).and_then(|h| h.flow().unique);
    assert_eq!(
        unique("sync_portfolio"),
        Some(UniqueSpec {
            by: &["user_id"],
            window: Duration::from_secs(600),
            until: UniqueUntil::Done,
            on_conflict: OnConflict::Keep,
        })
    );
    assert_eq!(
        unique("debounce"),
        Some(UniqueSpec {
            by: &["type", "user_id"],
            window: Duration::from_millis(500),
            until: UniqueUntil::Started,
            on_conflict: OnConflict::Replace,
        })
    );
    let whole = unique("whole_args").expect("declared");
    assert_eq!((whole.by, whole.window), (&[][..], Duration::from_secs(30)));
    assert_eq!(unique("singleton").map(|u| u.window), Some(Duration::from_secs(86_400)));
    assert_eq!(reg.handler("singleton").map(|h| h.queue()), Some("default"));
}
