//! `crate = "..."`: a crate that re-exports jobs-core from its own facade names the path.

mod my_facade {
    pub mod reexport {
        pub use jobs_core;
    }
}

// No `jobs_core` in scope under that name from here on: only through the facade.
use my_facade::reexport::jobs_core as engine;

#[engine::job_handler("via_facade", crate = "my_facade::reexport::jobs_core")]
async fn via_facade() -> Result<(), engine::JobError> {
    Ok(())
}

#[engine::every_minutes(5, crate = "crate::my_facade::reexport::jobs_core")]
#[engine::job_handler("scheduled_via_facade", crate = "crate::my_facade::reexport::jobs_core")]
async fn scheduled_via_facade() {}

#[engine::cron("0 3 * * *", name = "nightly", crate = "my_facade::reexport::jobs_core")]
async fn nightly() {}

fn main() {
    use engine::JobDefinition as _;
    assert_eq!(ViaFacadeJob::NAME, "via_facade");
    assert_eq!(NightlyJob::NAME, "nightly");
    let _ = ScheduledViaFacadeJob;
}
