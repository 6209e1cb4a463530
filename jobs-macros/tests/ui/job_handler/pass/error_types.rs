//! Every error type a handler may return: anyhow, eyre (features of jobs-core), a boxed
//! `dyn Error`, a std error type, `JobError`; and `JobError::permanent` over each of them.

use jobs_core::prelude::*;

#[derive(Debug)]
struct Outer(std::io::Error);

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

#[job_handler("with_anyhow")]
async fn with_anyhow() -> anyhow::Result<u32> {
    use anyhow::Context as _;
    let n: u32 = "7".parse().context("parsing")?;
    Ok(n)
}

#[job_handler("with_anyhow_error")]
async fn with_anyhow_error() -> Result<(), anyhow::Error> {
    anyhow::bail!("nope")
}

#[job_handler("with_eyre")]
async fn with_eyre() -> eyre::Result<()> {
    use eyre::WrapErr as _;
    "7".parse::<u32>().wrap_err("parsing")?;
    Ok(())
}

#[job_handler("with_boxed")]
async fn with_boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _: u32 = "7".parse()?;
    Err("a message".into())
}

#[job_handler("with_std_error")]
async fn with_std_error() -> Result<(), Outer> {
    Err(Outer(std::io::Error::other("root")))
}

#[job_handler("with_io_error")]
async fn with_io_error() -> std::io::Result<()> {
    Ok(())
}

#[job_handler("with_job_error")]
async fn with_job_error() -> Result<(), JobError> {
    Err(JobError::permanent(anyhow::anyhow!("give up")))
}

fn main() {
    // `permanent` takes every kind.
    let boxed: Box<dyn std::error::Error + Send + Sync> = "x".into();
    for e in [
        JobError::permanent(anyhow::anyhow!("a")),
        JobError::permanent(eyre::eyre!("e")),
        JobError::permanent(boxed),
        JobError::permanent(Outer(std::io::Error::other("root"))),
        JobError::permanent(JobError::msg("m")),
    ] {
        assert!(!e.is_retryable());
    }
    // The chain is kept: `{:#}` is what the worker stores.
    let e = JobError::permanent(Outer(std::io::Error::other("root")));
    assert_eq!(format!("{e:#}"), "outer: root");
    let e = JobError::permanent(anyhow::anyhow!("root").context("middle").context("top"));
    assert_eq!(format!("{e:#}"), "top: middle: root");
    let e = JobError::permanent(eyre::eyre!("root").wrap_err("top"));
    assert_eq!(format!("{e:#}"), "top: root");
}
