//! How the Redis backend sends its calls: as Redis Functions (one library per server,
//! `FCALL`) where the server has them, loaded again on a node that lost it (a restart, a
//! failover, `FUNCTION FLUSH`), and as `EVALSHA` scripts when `use_functions` is off (the
//! path of servers before Redis 7, which the whole suite runs with `JOBS_TEST_SCRIPTS=1`).

use std::time::Duration;

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::backend::{Backend, Completion, FetchRequest};
use jobs_core::{JobStatus, NewJob};
use jobs_test_support::{RedisCluster, RedisServer, wait_for_command};
use serde_json::json;

async fn connect(url: &str, use_functions: bool) -> RedisBackend {
    let cfg = RedisConfig { use_functions, ..RedisConfig::new(url).namespace("fn") };
    RedisBackend::connect(cfg).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Enqueues, fetches and completes one job; panics if any step does not do its part.
async fn one_job_through(b: &RedisBackend) {
    let job = NewJob::new("fn_job", json!({"n": 1}));
    b.enqueue(std::slice::from_ref(&job)).await.unwrap_or_else(|e| panic!("enqueue: {e}"));
    let req = FetchRequest {
        queues: Vec::new(),
        max: 1,
        worker_id: "w".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    };
    let got = b.fetch(&req).await.unwrap_or_else(|e| panic!("fetch: {e}"));
    let lease = got.jobs.first().map(|j| j.lease).unwrap_or_else(|| panic!("fetched no job"));
    let done = Completion { lease, result: json!(1) };
    b.complete(&[done]).await.unwrap_or_else(|e| panic!("complete: {e}"));
    let stored = b.get_job(job.id).await.unwrap_or_else(|e| panic!("get_job: {e}"));
    assert_eq!(stored.map(|j| j.status), Some(JobStatus::Completed));
}

/// The names of the function libraries on `server`.
fn libraries(server: &RedisServer) -> Vec<String> {
    let mut c = server.connection().unwrap_or_else(|e| panic!("connection: {e}"));
    let list: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut c)
        .unwrap_or_else(|e| panic!("FUNCTION LIST: {e}"));
    names(&list)
}

/// The `library_name` of each entry of a `FUNCTION LIST` reply (RESP2: flat arrays).
fn names(list: &[redis::Value]) -> Vec<String> {
    let mut out = Vec::new();
    for lib in list {
        if let redis::Value::Array(kv) = lib {
            for pair in kv.chunks(2) {
                if let [redis::Value::BulkString(k), redis::Value::BulkString(v)] = pair
                    && k.as_slice() == b"library_name"
                {
                    out.push(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
    }
    out
}

/// How many times `server` ran `command` (from `INFO commandstats`).
fn calls_of(server: &RedisServer, command: &str) -> u64 {
    let mut c = server.connection().unwrap_or_else(|e| panic!("connection: {e}"));
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap_or_else(|e| panic!("INFO: {e}"));
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn flush_functions(server: &RedisServer) {
    let mut c = server.connection().unwrap_or_else(|e| panic!("connection: {e}"));
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .exec(&mut c)
        .unwrap_or_else(|e| panic!("FUNCTION FLUSH: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_as_functions_of_one_library_loaded_at_connect() {
    let server = RedisServer::start();
    let b = connect(&server.url(), true).await;
    assert!(b.uses_functions(), "Redis 7 has Functions");
    let libs = libraries(&server);
    assert_eq!(libs.len(), 1, "one library, not {libs:?}");
    assert!(libs[0].starts_with("jobs_"), "the library is named jobs_<hash>: {libs:?}");
    one_job_through(&b).await;
    assert!(calls_of(&server, "fcall") >= 3, "enqueue, fetch and complete are FCALLs");
    assert_eq!(calls_of(&server, "evalsha"), 0, "and no script runs");
    // A second backend (another process of the same version) finds the library there.
    let again = connect(&server.url(), true).await;
    one_job_through(&again).await;
    assert_eq!(libraries(&server), libs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_the_library_gets_it_again_and_the_call_runs_once() {
    let server = RedisServer::start();
    let b = connect(&server.url(), true).await;
    let libs = libraries(&server);
    flush_functions(&server);
    assert!(libraries(&server).is_empty());
    one_job_through(&b).await;
    assert_eq!(libraries(&server), libs, "the library is loaded again");
    let stats = b.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(stats.counters.completed, 1, "the call that found no function ran once: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_functions_off_calls_are_scripts_and_load_no_library() {
    let server = RedisServer::start();
    let b = connect(&server.url(), false).await;
    assert!(!b.uses_functions());
    one_job_through(&b).await;
    assert!(libraries(&server).is_empty(), "no library loaded");
    assert_eq!(calls_of(&server, "fcall"), 0);
    assert!(calls_of(&server, "evalsha") >= 3, "enqueue, fetch and complete are EVALSHAs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_namespace_node_gets_the_library_again_after_losing_it() {
    let cluster = RedisCluster::start(3);
    let b = connect(&cluster.url(), true).await;
    assert!(b.is_cluster() && b.uses_functions());
    let node = &cluster.nodes()[cluster.node_of(b.keys().jobs())];
    assert_eq!(libraries(node).len(), 1, "loaded on the namespace's node at connect");
    for n in cluster.nodes() {
        flush_functions(n);
    }
    one_job_through(&b).await;
    assert_eq!(libraries(node).len(), 1, "loaded again on the namespace's node");
}

// The fetch an idle worker queues behind its wait (`wait_then_fetch`) finds no function when
// the library vanished while it was blocked: the error reply is not the end of it, the fetch
// is sent again (loading the library) and leases the job that woke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_and_fetch_whose_library_vanished_still_leases_the_job() {
    let server = RedisServer::start();
    let b = connect(&server.url(), true).await;
    let job = NewJob::new("fn_job", json!({"n": 1}));
    b.enqueue(std::slice::from_ref(&job)).await.unwrap_or_else(|e| panic!("enqueue: {e}"));
    // The enqueue's wake-up is taken by a wait of its own: the next wait blocks.
    b.wait_for_work(Duration::from_millis(200)).await.unwrap_or_else(|e| panic!("wait: {e}"));
    let req = FetchRequest {
        queues: Vec::new(),
        max: 4,
        worker_id: "w".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let wake = async {
        wait_for_command(&server.url(), "bzpopmin", Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("the pop never blocked: {e}"));
        flush_functions(&server);
        // Wakes the blocked pop by hand (an enqueue would load the library first).
        let mut c = server.connection().unwrap_or_else(|e| panic!("connection: {e}"));
        redis::cmd("ZADD")
            .arg(b.keys().marker())
            .arg(0)
            .arg("0")
            .exec(&mut c)
            .unwrap_or_else(|e| panic!("ZADD: {e}"));
    };
    let (got, ()) = tokio::join!(b.wait_then_fetch(Duration::from_secs(3), &req, &stop), wake);
    let (got, _) = got.unwrap_or_else(|e| panic!("wait then fetch: {e}"));
    let ids: Vec<_> = got.jobs.iter().map(|l| l.job.id).collect();
    assert_eq!(ids, [job.id], "the job that woke the wait is leased");
    assert_eq!(libraries(&server).len(), 1, "the library is loaded again");
}

/// The library keeps the key names it built for the last call's namespace: calls that
/// alternate between two namespaces, one by one, each see only their own jobs and counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_alternating_between_namespaces_each_touch_only_their_own_keys() {
    let server = RedisServer::start();
    let open = |ns: &'static str| {
        let cfg = RedisConfig::new(&server.url()).namespace(ns);
        async move { RedisBackend::connect(cfg).await.unwrap_or_else(|e| panic!("{ns}: {e}")) }
    };
    let (a, b) = (open("alt-a").await, open("alt-b").await);
    let req = FetchRequest {
        queues: Vec::new(),
        max: 10,
        worker_id: "w".into(),
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    };
    for round in 0..5 {
        let ja = NewJob::new("in_a", json!({ "round": round }));
        a.enqueue(std::slice::from_ref(&ja)).await.expect("enqueue a");
        for _ in 0..2 {
            b.enqueue(&[NewJob::new("in_b", json!({ "round": round }))]).await.expect("enqueue b");
        }
        let got = a.fetch(&req).await.expect("fetch a");
        let names: Vec<&str> = got.jobs.iter().map(|j| j.job.name.as_str()).collect();
        assert_eq!(names, ["in_a"], "round {round}");
        assert_eq!(got.jobs[0].job.id, ja.id);
    }
    let (sa, sb) = (a.stats().await.expect("stats a"), b.stats().await.expect("stats b"));
    assert_eq!((sa.counters.enqueued, sa.processing, sa.total_pending), (5, 5, 0));
    assert_eq!((sb.counters.enqueued, sb.processing, sb.total_pending), (10, 0, 10));
}
