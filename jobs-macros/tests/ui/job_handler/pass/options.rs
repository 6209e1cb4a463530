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

#[job_handler("quick_retry", retry_base = "10s", retry_cap = "5m", max_retries = 2)]
async fn quick_retry() -> Result<(), JobError> {
    Ok(())
}

#[job_handler("base_only", retry_base = 1)]
async fn base_only() -> Result<(), JobError> {
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
    let d = QuickRetryJob::DEFAULTS;
    assert_eq!(d.retry_base, Some(Duration::from_secs(10)));
    assert_eq!(d.retry_cap, Some(Duration::from_secs(300)));
    assert_eq!(d.max_retries, Some(2));
    assert_eq!(BaseOnlyJob::DEFAULTS.retry_base, Some(Duration::from_secs(1)));
    assert_eq!(BaseOnlyJob::DEFAULTS.retry_cap, None);
    assert_eq!(AllOptionsJob::DEFAULTS.retry_base, None);
}
