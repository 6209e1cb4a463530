//! Support for the integration tests of the jobs workspace.
//!
//! * [`RedisServer`]: a private `redis-server` on a free loopback port, killed on drop and
//!   when the test process dies; [`stop`](RedisServer::stop) and
//!   [`restart`](RedisServer::restart) for restart tests (with
//!   [`persistent(true)`](RedisServerBuilder::persistent)).
//! * [`shared`]: one server per test binary, and [`unique_namespace`] so that the tests of
//!   that binary run in parallel without seeing each other's keys.
//! * [`redis_backend`]: a [`RedisBackend`](jobs_core::backend::redis::RedisBackend) on the
//!   shared server.
//! * [`RedisCluster`]: a Redis Cluster of private servers; [`shared_cluster`] and
//!   [`cluster_backend`] as above.
//! * [`CutProxy`]: a loopback TCP proxy that lets a request reach the server and cuts the
//!   connection before its reply arrives (lost-reply tests).
//! * [`RedisSentinel`]: a master, a replica and three sentinels, for failover tests.
//! * [`wait_until`] (and [`try_wait_until`], [`wait_for_job`]): poll until a condition holds,
//!   bounded by a time limit, with a [`WaitTimeout`] that says what was awaited.
//!
//! `redis-server` must be on `PATH`; when it is not, starting a server panics with the
//! command that installs it. Tests never skip silently.
//!
//! ```no_run
//! use jobs_core::backend::BackendConfig;
//! use jobs_test_support::{redis_backend, unique_namespace};
//!
//! # async fn example() {
//! let backend = redis_backend(&unique_namespace("example"), BackendConfig::default()).await;
//! # drop(backend);
//! # }
//! ```

mod cluster;
mod process;
mod proxy;
mod redis_server;
mod relay;
mod sentinel;
mod shared;
mod wait;

pub use cluster::{RedisCluster, cluster_backend, shared_cluster};
pub use process::sigterm;
pub use proxy::CutProxy;
pub use redis_server::{RedisServer, RedisServerBuilder, free_port};
pub use relay::Relay;
pub use sentinel::{MASTER_NAME, RedisSentinel};
pub use shared::{
    SharedRedis, redis_backend, redis_config, shared, unique_namespace, use_functions,
};
pub use wait::{
    POLL_INTERVAL, WaitTimeout, try_wait_until, wait_for_command, wait_for_job, wait_until,
};
