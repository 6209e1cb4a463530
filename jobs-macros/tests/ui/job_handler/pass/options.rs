use std::time::Duration;

use jobs_core::prelude::*;

#[job_handler("all_options", max_retries = 5, timeout = "30s", priority = "high")]
async fn all_options() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("numeric_timeout", timeout = 45, priority = "Low")]
async fn numeric_timeout() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("millis", timeout = "250ms", max_retries = 0)]
async fn millis() -> Result<(), JobError> {
    Ok(())
}

fn main() {
    let d = AllOptionsJob::DEFAULTS;
    assert_eq!(d.max_retries, Some(5));
    assert_eq!(d.timeout, Some(Duration::from_secs(30)));
    assert_eq!(d.priority, Some(JobPriority::High));
    let d = NumericTimeoutJob::DEFAULTS;
    assert_eq!(d.timeout, Some(Duration::from_secs(45)));
    assert_eq!(d.priority, Some(JobPriority::Low));
    assert_eq!(d.max_retries, None);
    assert_eq!(MillisJob::DEFAULTS.timeout, Some(Duration::from_millis(250)));
    assert_eq!(MillisJob::DEFAULTS.max_retries, Some(0));
}
