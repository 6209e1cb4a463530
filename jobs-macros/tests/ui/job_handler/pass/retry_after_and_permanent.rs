//! Asking for a retry after a delay, and for no retry, from every error type a handler may
//! return: `JobError::retry_after` over each of them, and the `Permanent` and `RetryAfter`
//! wrappers found anywhere in a `source()` chain or an anyhow/eyre context.

use std::time::Duration;

use jobs_core::prelude::*;
use jobs_core::IntoJobError;

#[derive(Debug)]
struct Outer(Permanent);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn io() -> std::io::Error {
    std::io::Error::other("root")
}

#[job_handler("anyhow_permanent")]
async fn anyhow_permanent(args: String) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if args.is_empty() {
        return Err(Permanent::new("empty").into());
    }
    let _: u32 = args.parse().context(Permanent::new("not a number"))?;
    Ok(())
}

#[job_handler("anyhow_retry_after")]
async fn anyhow_retry_after() -> anyhow::Result<()> {
    Err(RetryAfter::new(Duration::from_secs(30), "rate limited").into())
}

#[job_handler("eyre_retry_after")]
async fn eyre_retry_after() -> eyre::Result<()> {
    use eyre::WrapErr as _;
    Err(io()).wrap_err(RetryAfter::new(Duration::from_secs(5), "busy"))
}

#[job_handler("std_permanent")]
async fn std_permanent() -> Result<(), Outer> {
    Err(Outer(Permanent::new(io())))
}

#[job_handler("boxed_retry_after")]
async fn boxed_retry_after() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err(Box::new(RetryAfter::new(Duration::from_secs(1), io())))
}

#[job_handler("job_error_retry_after")]
async fn job_error_retry_after() -> Result<(), JobError> {
    Err(JobError::retry_after(Duration::from_secs(60), io()))
}

fn check<M>(e: impl IntoJobError<M>) -> (bool, Option<Duration>, String) {
    let e = e.into_job_error();
    (e.is_retryable(), e.retry_delay(), format!("{e:#}"))
}

fn main() {
    let s = Duration::from_secs;
    // `JobError::retry_after` takes every kind, and keeps the chain.
    let boxed: Box<dyn std::error::Error + Send + Sync> = "x".into();
    for e in [
        JobError::retry_after(s(2), anyhow::anyhow!("a")),
        JobError::retry_after(s(2), eyre::eyre!("e")),
        JobError::retry_after(s(2), boxed),
        JobError::retry_after(s(2), io()),
        JobError::retry_after(s(2), JobError::msg("m")),
    ] {
        assert!(e.is_retryable());
        assert_eq!(e.retry_delay(), Some(s(2)));
    }
    // A permanent error stays permanent.
    assert!(!JobError::retry_after(s(2), JobError::permanent_msg("no")).is_retryable());

    // Marks found as the error, as a context, deep in a source chain.
    assert_eq!(check(anyhow::Error::from(Permanent::new("empty"))), (false, None, "empty".into()));
    let ctx = anyhow::Error::from(io()).context(Permanent::new("bad input")).context("top");
    assert_eq!(check(ctx), (false, None, "top: bad input: root".into()));
    let ra = anyhow::Error::from(RetryAfter::new(s(30), io())).context("calling the api");
    assert_eq!(check(ra), (true, Some(s(30)), "calling the api: root".into()));
    let ey = eyre::Report::new(io()).wrap_err(RetryAfter::new(s(5), "busy"));
    assert_eq!(check(ey), (true, Some(s(5)), "busy: root".into()));
    assert_eq!(check(Outer(Permanent::new(io()))), (false, None, "outer: root".into()));
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Outer(Permanent::new(io())));
    assert!(!check(boxed).0);
    // `?` into a JobError finds them too.
    let q = || -> Result<(), JobError> {
        let r: Result<(), RetryAfter> = Err(RetryAfter::new(s(9), io()));
        r?;
        Ok(())
    };
    assert_eq!(q().unwrap_err().retry_delay(), Some(s(9)));
    // Both: no retry.
    let both = anyhow::Error::from(RetryAfter::new(s(1), Permanent::new("gone")));
    assert!(!check(both).0);
}
