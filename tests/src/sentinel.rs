//! [`RedisSentinel`]: a master, a replica and three sentinels, all private processes on
//! loopback, for failover tests.

use std::thread;
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;
use crate::relay::Relay;

/// The name the sentinels know the master by.
pub const MASTER_NAME: &str = "jobsmaster";
/// How long the sentinels wait before they call a silent master down.
const DOWN_AFTER_MS: u64 = 1000;
/// How long one failover attempt may take before another sentinel tries.
const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// How long the group may take to form (replica in sync, sentinels know each other).
const FORM_TIMEOUT: Duration = Duration::from_secs(20);

/// One master and one replica (`redis-server --replicaof`), watched by three sentinels
/// (`redis-server --sentinel`, quorum 2, a master is down after 1 s of silence, a failover
/// times out after 3 s). Every process is a [`RedisServer`] on a free loopback port, killed
/// by its pid when the value is dropped or the test process dies.
///
/// ```no_run
/// use jobs_test_support::RedisSentinel;
///
/// let mut group = RedisSentinel::start();
/// println!("REDIS_URL={}", group.url());
/// let old = group.kill_master();
/// let took = group.wait_for_failover(old, std::time::Duration::from_secs(15));
/// # drop(took);
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// The data servers: index 0 was the master at start, 1 its replica.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    password: Option<String>,
    /// The replica's link to the first master goes through this relay.
    relay: Relay,
}

impl RedisSentinel {
    /// Starts the group without passwords and waits (up to 20 s) until the replica is in
    /// sync and every sentinel knows the replica and the other two sentinels.
    ///
    /// # Panics
    ///
    /// If a process does not start or the group does not form in time.
    pub fn start() -> RedisSentinel {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), with `password` required by the master and the replica
    /// (the sentinels themselves ask none).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_password(password: &str) -> RedisSentinel {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> RedisSentinel {
        let data = |extra: Vec<String>| {
            let mut b = RedisServer::builder()
                .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
                .args(extra);
            if let Some(pw) = &password {
                b = b.password(pw.clone()).args(["--masterauth", pw]);
            }
            b.start()
        };
        let master = data(Vec::new());
        let relay = Relay::start(master.port())
            .unwrap_or_else(|e| panic!("cannot start the replication relay: {e}"));
        let replica =
            data(vec!["--replicaof".into(), "127.0.0.1".into(), relay.port().to_string()]);
        let mut conf = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            master.port()
        );
        if let Some(pw) = &password {
            conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
        }
        let sentinels =
            (0..3).map(|_| RedisServer::builder().sentinel(conf.clone()).start()).collect();
        let group = RedisSentinel { servers: vec![master, replica], sentinels, password, relay };
        if let Err(e) = group.wait_formed() {
            panic!("the Sentinel group did not form: {e}");
        }
        group
    }

    fn wait_formed(&self) -> Result<(), String> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        let mut last = String::new();
        loop {
            match self.formed() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!("not formed within {FORM_TIMEOUT:?} (last error: {last})"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn formed(&self) -> redis::RedisResult<bool> {
        let info: String =
            redis::cmd("INFO").arg("replication").query(&mut self.servers[1].connection()?)?;
        if !info.lines().any(|l| l.trim() == "master_link_status:up") {
            return Ok(false);
        }
        for s in &self.sentinels {
            let mut c = s.connection()?;
            let peers: Vec<redis::Value> =
                redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER_NAME).query(&mut c)?;
            let replicas: Vec<redis::Value> =
                redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME).query(&mut c)?;
            if peers.len() != 2 || replicas.len() != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/jobsmaster` (with the
    /// password, if one was set): the `REDIS_URL` of a deployment on this group.
    pub fn url(&self) -> String {
        let hosts: Vec<String> =
            self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let auth = self.password.as_ref().map(|pw| format!(":{pw}@")).unwrap_or_default();
        format!("redis+sentinel://{auth}{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The data servers: index 0 was the master at start, 1 its replica.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The index (into [`servers`](Self::servers)) of the server the first answering
    /// sentinel names as master, if any answers.
    pub fn master_index(&self) -> Option<usize> {
        let port = self.sentinels.iter().find_map(|s| {
            let mut c = s.connection().ok()?;
            let (_, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut c)
                .ok()?;
            Some(port)
        })?;
        self.servers.iter().position(|s| s.port() == port)
    }

    /// Kills the current master with `SIGKILL` (by its pid) and returns its index.
    ///
    /// # Panics
    ///
    /// If no sentinel names a master of this group.
    pub fn kill_master(&mut self) -> usize {
        let Some(i) = self.master_index() else {
            panic!("no sentinel names a master");
        };
        self.servers[i].kill();
        i
    }

    /// Starts server `i` again after a kill, on its port with its options, as a replica of
    /// the current master (`REPLICAOF`, as an operator would bring a crashed master's machine
    /// back; the sentinels would do the same by themselves, only some 10 s later), and waits
    /// (up to 20 s) until it is in sync.
    ///
    /// # Panics
    ///
    /// If it does not start, no sentinel names a master, or it does not sync in time.
    pub fn restart_as_replica(&mut self, i: usize) {
        let Some(m) = self.master_index() else {
            panic!("no sentinel names a master");
        };
        self.servers[i].restart();
        let master_port = self.servers[m].port().to_string();
        let server = &self.servers[i];
        let synced = server.connection().and_then(|mut c| {
            redis::cmd("REPLICAOF").arg("127.0.0.1").arg(&master_port).exec(&mut c)?;
            let deadline = Instant::now() + FORM_TIMEOUT;
            loop {
                let info: String = redis::cmd("INFO").arg("replication").query(&mut c)?;
                if info.lines().any(|l| l.trim() == "master_link_status:up") {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        match synced {
            Ok(true) => {}
            Ok(false) => panic!("server {i} did not sync with the master in {FORM_TIMEOUT:?}"),
            Err(e) => panic!("server {i} as a replica: {e}\n{}", server.log_tail()),
        }
    }

    /// Holds back (`true`) the replication stream from the first master to its replica,
    /// or lets it through again: the replica lags behind by as long as it is held.
    pub fn hold_replication(&self, on: bool) {
        self.relay.hold(on);
    }

    /// Cuts the first master's replication link, dropping what was held back (as a crash of
    /// the master's machine loses what its buffers still had).
    pub fn cut_replication(&self) {
        self.relay.cut();
    }

    /// Waits (bounded by `limit`) until every sentinel names a server other than `old` as
    /// master and that server answers as one (`ROLE` master); returns how long it took.
    ///
    /// # Errors
    ///
    /// If that does not happen within `limit`, with the sentinels' logs.
    pub fn wait_for_failover(&self, old: usize, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let old_port = self.servers[old].port();
        loop {
            if self.promoted_other_than(old_port) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= limit {
                let logs: Vec<String> = self.sentinels.iter().map(RedisServer::log_tail).collect();
                return Err(format!("no failover within {limit:?}:\n{}", logs.join("\n---\n")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn promoted_other_than(&self, old_port: u16) -> bool {
        let mut named = None;
        for s in &self.sentinels {
            let Ok(mut c) = s.connection() else { return false };
            let addr: redis::RedisResult<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut c);
            match addr {
                Ok((_, p)) if p != old_port && named.is_none_or(|n| n == p) => named = Some(p),
                _ => return false,
            }
        }
        let Some(server) = named.and_then(|p| self.servers.iter().find(|s| s.port() == p)) else {
            return false;
        };
        let role: redis::RedisResult<Vec<redis::Value>> =
            server.connection().and_then(|mut c| redis::cmd("ROLE").query(&mut c));
        matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"master")
    }
}
