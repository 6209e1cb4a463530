//! The Redis backend on a Redis Cluster, beyond the conformance suite (which runs every
//! backend case on the shared cluster too): discovery from one node or a seed list, two
//! namespaces served by different nodes with workers on both, and a clear error when no
//! seed node answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::prelude::*;
use jobs_core::worker::{WorkerConfig, WorkerPool};
use jobs_core::{Error, JobStatus, Registry, State};
use jobs_test_support::{RedisCluster, free_port, shared_cluster, unique_namespace, wait_until};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Square {
    n: u64,
}

#[job_handler("cluster_square")]
async fn square(args: Square) -> Result<u64, JobError> {
    Ok(args.n * args.n)
}

async fn connect(url: &str, ns: &str) -> RedisBackend {
    let cfg = RedisConfig::new(url).namespace(ns);
    match RedisBackend::connect(cfg).await {
        Ok(b) => b,
        Err(e) => panic!("connect to {url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_found_from_any_node_or_a_seed_list() {
    let cluster = shared_cluster();
    let ns = unique_namespace("discover");
    // Through the last node: it may not serve the namespace, so this also checks that
    // commands follow the slot map instead of going to the node in the URL.
    let via_node = connect(&cluster.nodes()[2].url(), &ns).await;
    let via_seeds = connect(&cluster.seed_urls(), &ns).await;
    assert!(via_node.is_cluster() && via_seeds.is_cluster());
    let q1 = JobQueue::new(via_node);
    let q2 = JobQueue::new(via_seeds);
    let id = q1.enqueue("cluster_square", json!({ "n": 3 })).await.expect("enqueue");
    let seen = q2.get_job(id).await.expect("get_job").expect("the job is visible");
    assert_eq!((seen.name.as_str(), seen.status), ("cluster_square", JobStatus::Pending));
}

/// A namespace whose keys live on node `want` of `cluster`.
fn namespace_on(cluster: &RedisCluster, want: usize) -> String {
    for _ in 0..1000 {
        let ns = unique_namespace("node");
        if cluster.node_of(&format!("{{{ns}}}")) == want {
            return ns;
        }
    }
    panic!("no namespace on node {want} in 1000 tries");
}

fn keys_on(node: &jobs_test_support::RedisServer) -> Vec<String> {
    let mut c = node.connection().expect("node connection");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_different_nodes_run_side_by_side() {
    // A cluster of its own, so that each node's keys can be listed.
    let cluster = RedisCluster::start(3);
    let (ns_a, ns_b) = (namespace_on(&cluster, 0), namespace_on(&cluster, 2));
    let registry = Arc::new(Registry::global().expect("handlers register").clone());
    let mut queues = Vec::new();
    let mut pools = Vec::new();
    for ns in [&ns_a, &ns_b] {
        let q = JobQueue::new(connect(&cluster.url(), ns).await);
        let cfg = WorkerConfig { worker_id: format!("w-{ns}"), ..WorkerConfig::default() };
        let pool = WorkerPool::new(q.clone(), registry.clone(), Arc::new(State::new()), 2, 4, cfg)
            .expect("pool");
        pools.push(pool.start());
        queues.push(q);
    }
    const N: u64 = 200;
    const LIMIT: Duration = Duration::from_secs(30);
    let mut ids = Vec::new();
    for (k, q) in queues.iter().enumerate() {
        let jobs: Vec<_> = (0..N)
            .map(|n| q.new_job("cluster_square", json!({ "n": n + 1000 * k as u64 })))
            .collect();
        q.enqueue_many(&jobs).await.expect("enqueue");
        ids.push(jobs.iter().map(|j| j.id).collect::<Vec<_>>());
    }
    let all_done = wait_until("every job completed in both namespaces", LIMIT, || async {
        for q in &queues {
            if q.stats().await.expect("stats").counters.completed != N {
                return None;
            }
        }
        Some(())
    })
    .await;
    if let Err(e) = all_done {
        let mut stats = Vec::new();
        for q in &queues {
            stats.push(q.stats().await.expect("stats"));
        }
        panic!("{}", e.last_seen(format!("{stats:?}")));
    }
    for (k, (q, ids)) in queues.iter().zip(&ids).enumerate() {
        for (n, id) in ids.iter().enumerate() {
            let job = q.get_job(*id).await.expect("get_job").expect("job");
            let x = n as u64 + 1000 * k as u64;
            assert_eq!((job.status, job.result), (JobStatus::Completed, Some(json!(x * x))));
        }
    }
    for p in pools {
        p.stop().await.expect("stop");
    }
    // Each namespace's keys are on its own node, and only there.
    let (a, b, middle) =
        (keys_on(&cluster.nodes()[0]), keys_on(&cluster.nodes()[2]), keys_on(&cluster.nodes()[1]));
    assert!(!a.is_empty() && a.iter().all(|k| k.contains(&format!("{{{ns_a}}}"))), "node 0: {a:?}");
    assert!(!b.is_empty() && b.iter().all(|k| k.contains(&format!("{{{ns_b}}}"))), "node 2: {b:?}");
    assert!(middle.is_empty(), "node 1 serves neither namespace: {middle:?}");
}

#[tokio::test]
async fn no_answering_seed_is_one_clear_error() {
    let urls = format!(
        "redis://127.0.0.1:{}/,redis://127.0.0.1:{}/",
        free_port().expect("port"),
        free_port().expect("port")
    );
    let started = Instant::now();
    let err = RedisBackend::connect(RedisConfig::new(&urls)).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let line = err.to_string();
    assert!(!line.contains('\n') && line.contains("127.0.0.1"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
