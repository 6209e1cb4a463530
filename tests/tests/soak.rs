//! The chaos soak: three runner processes on one Redis (persistence on), thousands of jobs of
//! which some fail, panic or time out, and a one-second schedule running throughout; every
//! few seconds one runner is killed with SIGKILL and restarted, and once Redis itself is
//! restarted. At the end: every job is completed or in the dead-letter queue, none lost;
//! only jobs in flight at a kill or a restart ran twice; each schedule tick was enqueued
//! once; the stats add up. Prints a summary table.
//!
//! `SOAK_JOBS` (default 5,000) and `SOAK_KILL_EVERY_MS` (default 2,000) size it; CI runs
//! it with 50,000 jobs.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobs_core::backend::redis::keys::Keys;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::{JobId, JobQueue, JobStatus, Registry, Scheduler, SchedulerConfig};
use jobs_test_support::RedisServer;
use serde_json::json;

const NS: &str = "soak";
const STARTS: &str = "soak:starts";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spawn_runner(server: &RedisServer, n: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_test-worker"))
        .args(["run", "--concurrency", "20", "--lease", "2", "--shutdown-grace", "2", "--no-api"])
        .env("REDIS_URL", server.url())
        .env("JOBS_NAMESPACE", NS)
        .env("TEST_STARTS_KEY", STARTS)
        .env("RUST_LOG", "error")
        .env("JOBS_RUNNER_INDEX", n.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test-worker binary")
}

async fn queue(server: &RedisServer) -> JobQueue {
    let cfg = RedisConfig { namespace: NS.into(), ..RedisConfig::new(&server.url()) };
    JobQueue::new(RedisBackend::connect(cfg).await.expect("connect"))
}

/// Ids of jobs that are running now (read after a kill or a restart: the in-flight set).
fn running_now(server: &RedisServer) -> HashSet<String> {
    let Ok(mut c) = server.connection() else { return HashSet::new() };
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(Keys::new("jobq", NS).expect("keys").active())
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap_or_default();
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak() {
    let jobs_n = env_usize("SOAK_JOBS", 5_000);
    let kill_every = Duration::from_millis(env_usize("SOAK_KILL_EVERY_MS", 2_000) as u64);
    let mut server = RedisServer::builder().persistent(true).start();
    let q = queue(&server).await;

    let kinds = |i: usize| match i % 100 {
        0 => "panic",
        1 => "hang",
        2..=6 => "fail",
        _ => "ok",
    };
    let mut all = Vec::with_capacity(jobs_n);
    for i in 0..jobs_n {
        let mut j = q.new_job("soak_job", json!({ "kind": kinds(i), "ms": 5 + (i % 20) as u64 }));
        j.max_retries = 0;
        // Only the hanging kind has a short timeout: a killed runner's job whose timeout has
        // passed by the time its lease is reaped counts as timed out, not as lost.
        j.timeout = Duration::from_secs(if kinds(i) == "hang" { 1 } else { 60 });
        all.push(j);
    }
    let ids: Vec<JobId> = all.iter().map(|j| j.id).collect();
    for chunk in all.chunks(1000) {
        q.enqueue_many(chunk).await.expect("enqueue");
    }
    let expect_ok = (0..jobs_n).filter(|i| kinds(*i) == "ok").count() as u64;

    let started = Instant::now();
    let mut runners: Vec<Child> = (0..3).map(|n| spawn_runner(&server, n)).collect();
    let (mut kills, mut redis_restarts) = (0usize, 0usize);
    let mut in_flight: HashSet<String> = HashSet::new();
    let deadline = started + Duration::from_secs(300);
    let mut next_kill = Instant::now() + kill_every;
    loop {
        let s = q.stats().await;
        let finished = s.as_ref().map(|s| s.counters.completed + s.dead_letter).unwrap_or(0);
        // Soak jobs plus schedule ticks: finished when every soak job is accounted for.
        let done = match &s {
            Ok(s) => s.total_pending == 0 && s.processing == 0 && finished >= jobs_n as u64,
            Err(_) => false,
        };
        if done && kills >= 3 && redis_restarts == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "soak did not finish in 5 minutes: {s:?}");
        if Instant::now() >= next_kill {
            if kills == 4 && redis_restarts == 0 {
                // Once: Redis itself goes down and comes back (AOF, fsync always).
                server = tokio::task::spawn_blocking(move || {
                    server.restart();
                    server
                })
                .await
                .expect("restart redis");
                redis_restarts += 1;
                in_flight.extend(running_now(&server));
            } else {
                let victim = kills % runners.len();
                let _ = runners[victim].kill();
                let _ = runners[victim].wait();
                in_flight.extend(running_now(&server));
                runners[victim] = spawn_runner(&server, victim + 1);
                kills += 1;
            }
            next_kill = Instant::now() + kill_every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    // Stop the schedule first so that no new tick appears while we count.
    for r in &runners {
        jobs_test_support::sigterm(r).expect("SIGTERM a runner");
    }
    for r in &mut runners {
        let status = r.wait().expect("wait for a runner");
        assert!(status.success(), "a runner did not stop cleanly: {status}");
    }

    // Every soak job is completed or dead; none lost.
    let mut by_status: HashMap<JobStatus, u64> = HashMap::new();
    for id in &ids {
        let job = q.get_job(*id).await.expect("get").unwrap_or_else(|| panic!("job {id} lost"));
        *by_status.entry(job.status).or_default() += 1;
    }
    let completed = by_status.get(&JobStatus::Completed).copied().unwrap_or(0);
    let dead = by_status.get(&JobStatus::Failed).copied().unwrap_or(0);
    assert_eq!(completed + dead, jobs_n as u64, "every job completed or dead: {by_status:?}");
    // A job killed more than max_stalls times is dead-lettered as "worker lost", so a few ok
    // jobs may be dead; every other ok job completed.
    assert!(completed <= expect_ok);

    // Duplicates only among jobs in flight at a kill or the restart.
    let mut c = server.connection().expect("connect");
    let starts: HashMap<String, u32> =
        redis::cmd("HGETALL").arg(STARTS).query(&mut c).expect("starts");
    let mut duplicates = 0;
    for id in &ids {
        let n = starts.get(&id.to_string()).copied().unwrap_or(0);
        if n > 1 {
            duplicates += 1;
            assert!(
                in_flight.contains(&id.to_string()),
                "job {id} ran {n} times but was never in flight at a kill"
            );
        }
    }

    // Schedule ticks: each tick's job id is derived from the tick, so a tick enqueued twice
    // would show as a second start of one id outside the in-flight sets.
    let registry = std::sync::Arc::new(Registry::global().expect("registry").clone());
    let sched = Scheduler::new(q.clone(), registry, SchedulerConfig::default());
    let tick = sched.get("soak_tick").await.expect("the soak schedule exists");
    let soak_ids: HashSet<String> = ids.iter().map(|j| j.to_string()).collect();
    let mut tick_dups = 0;
    for (id, n) in &starts {
        if !soak_ids.contains(id) && *n > 1 && !in_flight.contains(id) {
            tick_dups += 1;
        }
    }
    assert_eq!(tick_dups, 0, "a schedule tick ran twice");
    let secs = elapsed.as_secs();
    assert!(
        tick.run_count + 3 >= secs && tick.run_count <= secs + 3,
        "{} ticks in {secs} s",
        tick.run_count
    );

    // The stats add up.
    let s = q.stats().await.expect("stats");
    assert_eq!(s.dead_letter, dead);
    assert_eq!((s.total_pending, s.processing), (0, 0));

    println!();
    println!("| chaos soak | value |");
    println!("|---|---:|");
    println!("| jobs | {jobs_n} |");
    println!("| runner processes | 3 |");
    println!("| SIGKILLs (runner restarted each time) | {kills} |");
    println!("| Redis restarts | {redis_restarts} |");
    println!("| completed | {completed} |");
    println!("| dead-lettered (fail, panic, timeout, worker lost) | {dead} |");
    println!("| lost | 0 |");
    println!("| ran twice (all in flight at a kill/restart) | {duplicates} |");
    println!("| in flight at kills/restart | {} |", in_flight.len());
    println!("| schedule ticks fired / seconds | {} / {secs} |", tick.run_count);
    println!("| schedule ticks run twice | {tick_dups} |");
    println!("| duration | {:.1} s |", elapsed.as_secs_f64());
}
