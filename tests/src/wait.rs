//! Bounded polling: wait until a condition holds, for at most a given time.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use jobs_core::{Job, JobId, JobQueue};

/// How long [`wait_until`] sleeps between two checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A wait that ran out of time: names what was awaited, for how long, and (when the waiter
/// knows it) the last state seen.
///
/// `Debug` prints the same sentence as `Display`, so that `.expect(…)` and a test's
/// returned error read well.
#[derive(Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    what: String,
    limit: Duration,
    last: Option<String>,
}

impl WaitTimeout {
    /// The timeout of a wait for `what`, bounded by `limit`.
    pub fn new(what: &str, limit: Duration) -> WaitTimeout {
        WaitTimeout { what: what.to_owned(), limit, last: None }
    }

    /// The same, with the last state seen.
    pub fn last_seen(self, last: impl fmt::Display) -> WaitTimeout {
        WaitTimeout { last: Some(last.to_string()), ..self }
    }

    /// What was awaited.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// How long it was awaited.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?} waiting for {}", self.limit, self.what)?;
        if let Some(last) = &self.last {
            write!(f, "; last seen: {last}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for WaitTimeout {}

/// Calls `check` until it returns `Some`, every [`POLL_INTERVAL`], for at most `limit`.
///
/// `check` runs at least once, and once more at the deadline, so a condition that holds by
/// then is never reported as a timeout. `what` names the condition in the error.
///
/// ```no_run
/// use std::time::Duration;
/// use jobs_test_support::wait_until;
///
/// # async fn example(queue: jobs_core::JobQueue) -> Result<(), Box<dyn std::error::Error>> {
/// let stats = wait_until("a completed job", Duration::from_secs(10), || async {
///     queue.stats().await.ok().filter(|s| s.counters.completed > 0)
/// })
/// .await?;
/// # drop(stats);
/// # Ok(())
/// # }
/// ```
pub async fn wait_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    try_wait_until(what, limit, || {
        let checked = check();
        async move { Ok(checked.await) }
    })
    .await
}

/// [`wait_until`] for a `check` that can fail: its first error ends the wait and is
/// returned as is; a timeout is returned as `E::from(WaitTimeout)`.
pub async fn try_wait_until<T, E, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<WaitTimeout>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Err(WaitTimeout::new(what, limit).into());
        }
        tokio::time::sleep(POLL_INTERVAL.min(limit - elapsed)).await;
    }
}

/// Waits (for at most `limit`) until a client of the server at `url` is in `command`
/// (`CLIENT LIST`'s `cmd=`, e.g. `bzpopmin` or `wait`): what a test that acts on a blocked
/// call waits for, instead of a sleep. On a server shared with other tests, another test's
/// client counts too: use a private server.
///
/// # Panics
///
/// If the server cannot be reached.
pub async fn wait_for_command(
    url: &str,
    command: &str,
    limit: Duration,
) -> Result<(), WaitTimeout> {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("client for {url}: {e}"));
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connection to {url}: {e}"));
    let needle = format!("cmd={}", command.to_ascii_lowercase());
    wait_until(&format!("a client in {command}"), limit, || {
        let mut c = conn.clone();
        let needle = &needle;
        async move {
            let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await.ok()?;
            list.contains(needle.as_str()).then_some(())
        }
    })
    .await
}

/// Polls job `id` until `done` holds for it (for at most `limit`) and returns it; on a
/// timeout the error shows the job as last seen.
///
/// # Panics
///
/// If the queue cannot read the job, or the job does not exist: waiting cannot end well
/// then, and the panic says why at once.
pub async fn wait_for_job(
    queue: &JobQueue,
    id: JobId,
    limit: Duration,
    done: impl Fn(&Job) -> bool,
) -> Result<Job, WaitTimeout> {
    let read = || async {
        match queue.get_job(id).await {
            Ok(Some(job)) => job,
            Ok(None) => panic!("job {id} does not exist"),
            Err(e) => panic!("cannot read job {id}: {e}"),
        }
    };
    let what = format!("job {id} to reach the expected state");
    let waited = wait_until(&what, limit, || async {
        let job = read().await;
        done(&job).then_some(job)
    })
    .await;
    match waited {
        Ok(job) => Ok(job),
        Err(timeout) => Err(timeout.last_seen(format!("{:?}", read().await))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_some_and_stops_checking() {
        let calls = AtomicU32::new(0);
        let got = wait_until("the third call", Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn times_out_naming_what_and_the_limit() {
        let limit = Duration::from_millis(100);
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let err = wait_until("nothing", limit, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            None::<()>
        })
        .await
        .expect_err("never Some");
        assert!(started.elapsed() >= limit, "gave up early: {:?}", started.elapsed());
        assert!(calls.load(Ordering::SeqCst) >= 2, "checked again at the deadline");
        assert_eq!((err.what(), err.limit()), ("nothing", limit));
        assert_eq!(err.to_string(), "timed out after 100ms waiting for nothing");
        let err = err.last_seen(7);
        assert_eq!(format!("{err:?}"), "timed out after 100ms waiting for nothing; last seen: 7");
    }

    #[tokio::test]
    async fn a_zero_limit_still_checks_once() {
        assert_eq!(wait_until("now", Duration::ZERO, || async { Some(1) }).await, Ok(1));
    }

    #[tokio::test]
    async fn try_wait_until_returns_the_checks_error_at_once() {
        #[derive(Debug, PartialEq)]
        enum E {
            Check,
            Timeout,
        }
        impl From<WaitTimeout> for E {
            fn from(_: WaitTimeout) -> E {
                E::Timeout
            }
        }
        let got: Result<(), E> =
            try_wait_until("x", Duration::from_secs(5), || async { Err(E::Check) }).await;
        assert_eq!(got, Err(E::Check));
        let got: Result<(), E> =
            try_wait_until("x", Duration::from_millis(30), || async { Ok(None) }).await;
        assert_eq!(got, Err(E::Timeout));
    }
}
