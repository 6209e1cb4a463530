use std::time::Duration;

use jobs_core::prelude::*;
use jobs_core::{RateLimit, Registry};

#[derive(Serialize, Deserialize)]
struct Quotes {
    exchange: String,
    symbol: String,
}

#[job_handler("fetch_quotes", rate_limit(max = 10, per = "1s", by = [exchange]))]
async fn fetch_quotes(args: Quotes) {}

// Stacked: every one must allow a start.
#[job_handler(
    "stacked",
    queue = "market",
    rate_limit(max = 10, per = "1s", by = [exchange, symbol]),
    rate_limit(per = "1m", max = 500),
    max_retries = 2
)]
async fn stacked(args: Quotes, ctx: JobContext) -> Result<(), JobError> {
    Ok(())
}

// Without `by`: one limit for the handler, with or without arguments.
#[job_handler("ping", rate_limit(max = 1, per = "2h"))]
async fn ping() {}

fn main() {
    let reg = Registry::global().expect("registry builds");
    let rates = |name: &str| reg.handler(name).map(|h| h.flow().rate_limits);
    assert_eq!(
        rates("fetch_quotes"),
        Some(&[RateLimit { max: 10, per: Duration::from_secs(1), by: &["exchange"] }][..])
    );
    assert_eq!(
        rates("stacked"),
        Some(
            &[
                RateLimit { max: 10, per: Duration::from_secs(1), by: &["exchange", "symbol"] },
                RateLimit { max: 500, per: Duration::from_secs(60), by: &[] },
            ][..]
        )
    );
    assert_eq!(reg.handler("stacked").map(|h| h.queue()), Some("market"));
    assert_eq!(StackedJob::DEFAULTS.max_retries, Some(2));
    assert_eq!(
        rates("ping"),
        Some(&[RateLimit { max: 1, per: Duration::from_secs(7200), by: &[] }][..])
    );
}
