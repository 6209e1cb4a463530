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
    /// `replicas[i]` replicates `nodes[i]` (empty: a cluster without replicas).
    replicas: Vec<RedisServer>,
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
        let cluster = RedisCluster { nodes, replicas: Vec::new() };
        if let Err(e) = cluster.form(&buses) {
            panic!("the Redis Cluster did not form: {e}");
        }
        cluster
    }

    /// Starts `masters` masters as [`start`](Self::start) does, and one replica for each
    /// (`CLUSTER REPLICATE`), with a node timeout of 1 s so that a replica takes over a dead
    /// master within a few seconds; waits (up to 20 s) until every replica is in sync.
    ///
    /// # Panics
    ///
    /// If a node does not start or the cluster does not form in time.
    ///
    /// With `full_coverage` false the nodes run `cluster-require-full-coverage no`: the
    /// other masters keep serving while a dead master's slots have no node yet (with the
    /// default, `yes`, the whole cluster refuses commands until the replica takes over).
    pub fn start_with_replicas(masters: usize, full_coverage: bool) -> RedisCluster {
        let full_coverage = if full_coverage { "yes" } else { "no" };
        assert!(masters > 0, "a cluster needs at least one master");
        let node = |bus: u16| {
            RedisServer::builder()
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "1000", "--cluster-port", &bus.to_string()])
                .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
                .args(["--cluster-require-full-coverage", full_coverage])
                .start_in(tempfile_dir())
        };
        let port = || free_port().unwrap_or_else(|e| panic!("no free port for a cluster bus: {e}"));
        let buses: Vec<u16> = (0..masters * 2).map(|_| port()).collect();
        let nodes = buses[..masters].iter().map(|b| node(*b)).collect();
        let replicas = buses[masters..].iter().map(|b| node(*b)).collect();
        let mut cluster = RedisCluster { nodes, replicas: Vec::new() };
        if let Err(e) = cluster.form(&buses[..masters]) {
            panic!("the Redis Cluster did not form: {e}");
        }
        cluster.replicas = replicas;
        if let Err(e) = cluster.add_replicas(&buses[masters..]) {
            panic!("the replicas did not join: {e}");
        }
        cluster
    }

    /// Introduces each replica, makes it replicate its master, and waits until all are in
    /// sync and every node knows every other.
    fn add_replicas(&self, buses: &[u16]) -> redis::RedisResult<()> {
        let mut first = self.nodes[0].connection()?;
        for (r, bus) in self.replicas.iter().zip(buses) {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(r.port())
                .arg(*bus)
                .exec(&mut first)?;
        }
        let deadline = Instant::now() + FORM_TIMEOUT;
        let total = self.nodes.len() + self.replicas.len();
        let mut pending: Vec<usize> = (0..self.replicas.len()).collect();
        loop {
            pending.retain(|&i| {
                let replicate = || -> redis::RedisResult<()> {
                    let id: String = redis::cmd("CLUSTER")
                        .arg("MYID")
                        .query(&mut self.nodes[i].connection()?)?;
                    redis::cmd("CLUSTER")
                        .arg("REPLICATE")
                        .arg(id)
                        .exec(&mut self.replicas[i].connection()?)
                };
                // Fails until the replica has heard of its master through the bus.
                replicate().is_err()
            });
            let mut ready = pending.is_empty();
            for r in &self.replicas {
                if !ready {
                    break;
                }
                let info: String =
                    redis::cmd("INFO").arg("replication").query(&mut r.connection()?)?;
                ready &= info.lines().any(|l| l.trim() == "master_link_status:up");
            }
            for n in self.nodes.iter().chain(&self.replicas) {
                if !ready {
                    break;
                }
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n.connection()?)?;
                ready &= info.lines().any(|l| l.trim() == format!("cluster_known_nodes:{total}"))
                    && info.lines().any(|l| l.trim() == "cluster_state:ok");
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "replicas not in sync in time",
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The replicas, `replicas()[i]` of `nodes()[i]` (empty without replicas).
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    /// Kills master `i` with `SIGKILL`, as a crash would.
    pub fn kill_master(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Waits (bounded by `limit`) until replica `i` reports itself a master (it took over
    /// its dead master's slots) and the cluster is ok again; returns how long it took.
    ///
    /// # Errors
    ///
    /// If that does not happen in time, with the replica's log.
    pub fn wait_for_promotion(&self, i: usize, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let promoted = self.replicas[i].connection().and_then(|mut c| {
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c)?;
                Ok(matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
                    && info.lines().any(|l| l.trim() == "cluster_state:ok"))
            });
            if promoted.unwrap_or(false) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= limit {
                return Err(format!(
                    "replica {i} not promoted within {limit:?}:\n{}",
                    self.replicas[i].log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
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
