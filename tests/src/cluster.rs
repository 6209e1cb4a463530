//! [`RedisCluster`]: a Redis Cluster of private `redis-server` processes on loopback.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use jobs_core::backend::BackendConfig;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};

use crate::redis_server::{RedisServer, free_port};
use crate::shared::shared_dir;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// How long the nodes may take to agree that the cluster is up.
const FORM_TIMEOUT: Duration = Duration::from_secs(20);

/// A Redis Cluster of `n` masters (no replicas), each a [`RedisServer`] on a free loopback
/// port with its cluster bus on another free port. Node `i` serves the `i`-th of `n` equal
/// ranges of hash slots. The servers are killed when the value is dropped or the test
/// process dies.
///
/// ```no_run
/// use jobs_test_support::RedisCluster;
///
/// let cluster = RedisCluster::start(3);
/// println!("seed node at {}", cluster.url());
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes, assigns the slots, joins them and waits (up to 20 s) until
    /// every node reports `cluster_state:ok` and knows all the others.
    ///
    /// # Panics
    ///
    /// If `masters` is 0, a node does not start, or the cluster does not form in time.
    pub fn start(masters: usize) -> RedisCluster {
        Self::start_with(masters, tempfile_dir)
    }

    fn start_with(masters: usize, dir: fn() -> tempfile::TempDir) -> RedisCluster {
        assert!(masters > 0, "a cluster needs at least one master");
        let mut nodes = Vec::with_capacity(masters);
        let mut buses = Vec::with_capacity(masters);
        for _ in 0..masters {
            let bus = free_port().unwrap_or_else(|e| panic!("no free port for a cluster bus: {e}"));
            let node = RedisServer::builder()
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000", "--cluster-port", &bus.to_string()])
                .start_in(dir());
            nodes.push(node);
            buses.push(bus);
        }
        let cluster = RedisCluster { nodes };
        if let Err(e) = cluster.form(&buses) {
            panic!("the Redis Cluster did not form: {e}");
        }
        cluster
    }

    /// Assigns slot ranges and config epochs, introduces every node to the first, and
    /// waits until all agree.
    fn form(&self, buses: &[u16]) -> redis::RedisResult<()> {
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            let (lo, hi) = self.slot_range(i);
            let mut c = node.connection()?;
            redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(lo).arg(hi).exec(&mut c)?;
            // Distinct epochs up front, as redis-cli does, instead of a collision round.
            redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1).exec(&mut c)?;
        }
        let mut first = self.nodes[0].connection()?;
        for (node, bus) in self.nodes.iter().zip(buses).skip(1) {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .arg(*bus)
                .exec(&mut first)?;
        }
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let mut ready = true;
            for node in &self.nodes {
                let info: String =
                    redis::cmd("CLUSTER").arg("INFO").query(&mut node.connection()?)?;
                let field = |name: &str| {
                    info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("")
                };
                let slots_seen: Vec<redis::Value> =
                    redis::cmd("CLUSTER").arg("SLOTS").query(&mut node.connection()?)?;
                ready &= field("cluster_state:") == "ok"
                    && field("cluster_known_nodes:") == n.to_string()
                    && slots_seen.len() == n;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.nodes.iter().map(RedisServer::log_tail).collect();
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "cluster not ok in time",
                    logs.join("\n---\n"),
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first and last slot of node `i`.
    fn slot_range(&self, i: usize) -> (u16, u16) {
        let n = self.nodes.len();
        let at = |k: usize| (usize::from(SLOTS) * k / n) as u16;
        (at(i), at(i + 1) - 1)
    }

    /// The URL of the first node: enough for a client, which finds the rest of the cluster
    /// from it.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node's URL, comma-separated (the seed list form of `REDIS_URL`).
    pub fn seed_urls(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// The nodes, in slot order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The index of the node that serves `key` (by its hash tag, as Redis computes it).
    ///
    /// # Panics
    ///
    /// If the first node does not answer `CLUSTER KEYSLOT`.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .connection()
            .and_then(|mut c| redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut c))
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        (0..self.nodes.len()).find(|&i| self.slot_range(i).1 >= slot).unwrap_or(0)
    }
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jobs-redis-cluster-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for redis-server: {e}"))
}

/// The three-master cluster that all tests of one test binary share, started on first use
/// (like [`shared`](crate::shared)); give each test its own namespace.
///
/// # Panics
///
/// If the cluster cannot be started.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start_with(3, shared_dir))
}

/// A [`RedisBackend`] on the [`shared_cluster`], in namespace `ns`, connected through the
/// URL of one node (the backend discovers the cluster by itself).
///
/// # Panics
///
/// If the cluster cannot be started or the backend cannot connect.
pub async fn cluster_backend(ns: &str, cfg: BackendConfig) -> RedisBackend {
    let url = shared_cluster().url();
    let config = RedisConfig {
        namespace: ns.to_owned(),
        backend: cfg,
        use_functions: crate::use_functions(),
        ..RedisConfig::new(&url)
    };
    match RedisBackend::connect(config).await {
        Ok(b) => b,
        Err(e) => panic!("cannot connect a RedisBackend to the cluster at {url} ({ns}): {e}"),
    }
}
