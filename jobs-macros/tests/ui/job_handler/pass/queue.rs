use jobs_core::prelude::*;
use jobs_core::Registry;

#[job_handler("settle", queue = "payments")]
async fn settle() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("odd_name", queue = "eu-west.1_x", priority = "high")]
async fn odd_name() {}

#[job_handler("unqueued")]
async fn unqueued() {}

fn main() {
    let reg = Registry::global().expect("registry builds");
    let queue = |name: &str| reg.handler(name).map(|h| h.queue());
    assert_eq!(queue("settle"), Some("payments"));
    assert_eq!(queue("odd_name"), Some("eu-west.1_x"));
    assert_eq!(queue("unqueued"), Some(jobs_core::DEFAULT_QUEUE));
    assert!(!reg.handler("settle").expect("linked").flow().has_limits());
}
