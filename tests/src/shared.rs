//! One `redis-server` per test binary, shared by its tests, each in its own namespace.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use jobs_core::backend::BackendConfig;
use jobs_core::backend::redis::{RedisBackend, RedisConfig};

use crate::redis_server::RedisServer;

/// Temporary directories of shared servers are named `<this><pid>-…`.
const SHARED_DIR_PREFIX: &str = "jobs-redis-shared-";

/// The server that all tests of one test binary share; see [`shared`].
///
/// It only hands out its address: stopping or restarting a server that other tests use
/// would break them, so restart tests start their own [`RedisServer`].
#[derive(Debug)]
pub struct SharedRedis {
    server: RedisServer,
}

impl SharedRedis {
    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// A synchronous connection, for set-up and inspection.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        self.server.connection()
    }
}

/// The test binary's shared `redis-server`, started on first use.
///
/// A static is never dropped, so the server cannot be stopped by `Drop`; instead it is
/// spawned with a parent-death signal (see [`RedisServer`]) and the kernel kills it when
/// the test process exits, however it exits. Its temporary directory cannot be removed by
/// the dying process either, so each start removes the directories left by shared servers
/// of test processes that are gone.
///
/// # Panics
///
/// If `redis-server` is missing or does not start (see [`RedisServer::start`]).
pub fn shared() -> &'static SharedRedis {
    static SHARED: OnceLock<SharedRedis> = OnceLock::new();
    SHARED.get_or_init(|| SharedRedis { server: RedisServer::builder().start_in(shared_dir()) })
}

/// A temporary directory for a server that lives as long as the test process (see
/// [`shared`]): named so that a later test process removes it once this one is gone.
pub(crate) fn shared_dir() -> tempfile::TempDir {
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(remove_stale_dirs);
    tempfile::Builder::new()
        .prefix(&format!("{SHARED_DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for redis-server: {e}"))
}

/// Removes `jobs-redis-shared-<pid>-*` directories whose process no longer exists.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SHARED_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A namespace no other test (of this process or another) uses: `<prefix>-<n>-<random>`.
pub fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{n}-{}", &random[..8])
}

/// A [`RedisConfig`] for namespace `ns` on the shared server.
pub fn redis_config(ns: &str, cfg: BackendConfig) -> RedisConfig {
    RedisConfig {
        namespace: ns.to_owned(),
        backend: cfg,
        use_functions: use_functions(),
        ..RedisConfig::new(&shared().url())
    }
}

/// Whether the test backends call Redis Functions: yes, unless `JOBS_TEST_SCRIPTS=1`,
/// which runs a suite through the `EVALSHA` scripts instead (the path of servers before
/// Redis 7, which this machine does not have).
pub fn use_functions() -> bool {
    std::env::var("JOBS_TEST_SCRIPTS").map_or(true, |v| v != "1")
}

/// A [`RedisBackend`] on the shared server, in namespace `ns`.
///
/// # Panics
///
/// If the server cannot be started or the backend cannot connect.
pub async fn redis_backend(ns: &str, cfg: BackendConfig) -> RedisBackend {
    let config = redis_config(ns, cfg);
    match RedisBackend::connect(config).await {
        Ok(b) => b,
        Err(e) => {
            panic!("cannot connect a RedisBackend to {} (namespace {ns}): {e}", shared().url())
        }
    }
}
