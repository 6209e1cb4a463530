//! Rate and concurrency limits across real processes: four `test-worker` runners on one
//! private redis-server share every limiter, and one of them is SIGKILLed mid-run.
//!
//! * Concurrency: 1,000 jobs on 10 keys with `concurrency(max = 1, by = [key])`: the
//!   intervals the handlers record never overlap within a key (a killed runner's job ends
//!   at the kill), and every job completes.
//! * Rate: `rate_limit(max = 10, per = "1s", by = [key])` on 3 keys with work for
//!   `LIMITS_RATE_SECS` seconds each (default 6; the figure is 30): no sliding
//!   second holds more than 10 starts of a key (the starts as the backend counted them),
//!   and each key gets at least 95 % of its allowance while it has work.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::prelude::*;
use jobs_test_support::{RedisServer, wait_until};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Limited {
    key: u32,
    n: u32,
    ms: u64,
}

// The enqueuing process links the handlers (their declarations give the jobs their
// limits); the runners (`test-worker`) run them.
#[job_handler("limits_exclusive", concurrency(max = 1, by = [key]))]
async fn limits_exclusive(args: Limited) -> Result<(), JobError> {
    let _ = (args.key, args.n, args.ms);
    Ok(())
}

#[job_handler("limits_rated", rate_limit(max = 10, per = "1s", by = [key]))]
async fn limits_rated(args: Limited) -> Result<(), JobError> {
    let _ = (args.key, args.n, args.ms);
    Ok(())
}

const EVENTS: &str = "test:limits";

async fn queue_on(server: &RedisServer, ns: &str) -> JobQueue {
    let cfg = RedisConfig { namespace: ns.into(), ..RedisConfig::new(&server.url()) };
    JobQueue::new(RedisBackend::connect(cfg).await.expect("connect"))
}

fn spawn_runner(server: &RedisServer, ns: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_test-worker"))
        .args(["run", "--concurrency", "5", "--lease", "1", "--no-scheduler", "--no-api"])
        .env("REDIS_URL", server.url())
        .env("JOBS_NAMESPACE", ns)
        .env("TEST_STARTS_KEY", EVENTS)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the test-worker binary")
}

/// The recorded events, split into words.
fn events(server: &RedisServer) -> Vec<Vec<String>> {
    let mut c = server.connection().expect("connect");
    let lines: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{EVENTS}:events"))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .expect("events");
    lines.iter().map(|l| l.split_whitespace().map(str::to_owned).collect()).collect()
}

fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_runners_never_run_two_jobs_of_one_key_at_once_through_a_sigkill() {
    const JOBS: u32 = 1000;
    const KEYS: u32 = 10;
    let server = RedisServer::start();
    let ns = "limits-conc";
    let queue = queue_on(&server, ns).await;
    let jobs: Vec<_> = (0..JOBS)
        .map(|n| queue.new_job("limits_exclusive", json!({"key": n % KEYS, "n": n, "ms": 3})))
        .collect();
    for chunk in jobs.chunks(250) {
        queue.enqueue_many(chunk).await.expect("enqueue");
    }
    let mut runners: Vec<Child> = (0..4).map(|_| spawn_runner(&server, ns)).collect();
    wait_until("a third of the jobs done", Duration::from_secs(60), || async {
        queue.stats().await.ok().filter(|s| s.counters.completed >= u64::from(JOBS) / 3)
    })
    .await
    .expect("progress");
    runners[0].kill().expect("SIGKILL a runner");
    runners[0].wait().expect("reap it");
    let killed_at = local_ms();
    let stats = wait_until("every job done", Duration::from_secs(90), || async {
        queue.stats().await.ok().filter(|s| s.counters.completed >= u64::from(JOBS))
    })
    .await
    .expect("all complete");
    for r in &mut runners[1..] {
        r.kill().ok();
        r.wait().ok();
    }
    assert_eq!(
        (stats.counters.completed, stats.dead_letter, stats.parked),
        (u64::from(JOBS), 0, 0)
    );

    // Per key, every attempt's interval [start, end]; an attempt without an end ran in the
    // killed runner and ended at the kill.
    let mut spans: HashMap<(String, String), (String, i64, Option<i64>)> = HashMap::new();
    for e in events(&server) {
        let [kind, key, id, att, ms] = e.as_slice() else { panic!("bad event {e:?}") };
        let ms: i64 = ms.parse().expect("ms");
        let span = spans.entry((id.clone(), att.clone())).or_insert((key.clone(), 0, None));
        if kind == "s" { span.1 = ms } else { span.2 = Some(ms) }
    }
    let mut by_key: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let mut open = 0;
    for (key, start, end) in spans.into_values() {
        let end = end.unwrap_or_else(|| {
            open += 1;
            assert!(start <= killed_at, "an attempt without an end started after the kill");
            killed_at
        });
        by_key.entry(key).or_default().push((start, end));
    }
    assert!(open <= 5, "at most the killed runner's 5 jobs were cut short, found {open}");
    assert_eq!(by_key.len(), KEYS as usize);
    for (key, mut spans) in by_key {
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1, "key {key}: {:?} overlaps {:?}", w[1], w[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_runners_start_at_most_ten_a_second_per_key_and_use_the_allowance() {
    const KEYS: u32 = 3;
    let secs: u32 =
        std::env::var("LIMITS_RATE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let per_key = 10 * secs;
    let server = RedisServer::start();
    let ns = "limits-rate";
    let queue = queue_on(&server, ns).await;
    let jobs: Vec<_> = (0..per_key * KEYS)
        .map(|n| queue.new_job("limits_rated", json!({"key": n % KEYS, "n": n, "ms": 0})))
        .collect();
    let mut runners: Vec<Child> = (0..4).map(|_| spawn_runner(&server, ns)).collect();
    // Let the runners come up, so that the first second is not spent starting processes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for chunk in jobs.chunks(500) {
        queue.enqueue_many(chunk).await.expect("enqueue");
    }
    let total = u64::from(per_key * KEYS);
    wait_until("every job done", Duration::from_secs(u64::from(secs) * 3 + 30), || async {
        queue.stats().await.ok().filter(|s| s.counters.completed >= total)
    })
    .await
    .expect("all complete");
    for r in &mut runners {
        r.kill().ok();
        r.wait().ok();
    }
    let mut starts: HashMap<String, Vec<i64>> = HashMap::new();
    for e in events(&server) {
        let [_, key, _, _, ms] = e.as_slice() else { panic!("bad event {e:?}") };
        starts.entry(key.clone()).or_default().push(ms.parse().expect("ms"));
    }
    assert_eq!(starts.len(), KEYS as usize);
    for (key, mut s) in starts {
        s.sort_unstable();
        assert_eq!(s.len(), per_key as usize, "key {key}: every job started once");
        // No second holds more than 10 starts: the 11th after any start is a second later.
        for (i, w) in s.windows(11).enumerate() {
            assert!(
                w[10] - w[0] >= 1000,
                "key {key}: 11 starts within {} ms from #{i}",
                w[10] - w[0]
            );
        }
        // The allowance while it had work: 10 per second from its first start, the last
        // second's starts included.
        let span_s = (s[s.len() - 1] - s[0]) as f64 / 1000.0;
        let allowed = 10.0 * (span_s.floor() + 1.0);
        let used = s.len() as f64 / allowed;
        eprintln!(
            "key {key}: {} starts over {span_s:.3} s: {:.1} % of the allowance",
            s.len(),
            used * 100.0
        );
        assert!(used >= 0.95, "key {key}: {:.1} % of its allowance", used * 100.0);
    }
}
