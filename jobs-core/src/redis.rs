//! Opening the same Redis connection the queue uses, for an application's own data.
//!
//! An application that keeps its own store on the deployment's Redis wants to reach it
//! exactly as the queue does: the same URL, the same TLS files, a Redis Cluster found the
//! same way (from any one node, or from a comma-separated list of seed nodes).
//! [`RedisConnection::connect`] does that from the [`RedisConfig`] the queue's
//! [`RedisBackend`](crate::backend::redis::RedisBackend) is built from (a runner gets it
//! from `runner::RunnerEnv::redis_config` with the `runner` feature), so one
//! configuration serves both and a deployment's Redis, Cluster or TLS setup is configured
//! once.
//!
//! The connection implements redis-rs's `ConnectionLike` (of the `redis` version this crate
//! depends on): commands, pipelines and scripts run on it as on any redis-rs connection.
//! `connect` does not use the namespace or prefix of the configuration; the application
//! names its own keys. On a cluster, keys that one script or transaction touches together
//! must share a hash tag (`app:{<namespace>}:…`), as the queue's keys do.
//!
//! These are the items of [`backend::redis`](crate::backend::redis), which stay available
//! there too. Beside them this module re-exports what a handler needs of the `redis` crate
//! (redis-rs) of the version the queue uses — `cmd`, `pipe`, `Script`, `AsyncCommands`,
//! `FromRedisValue`, `ToRedisArgs`, `RedisError`, … — so that an application that runs
//! commands on the deployment's Redis needs no `redis` dependency of its own, nor to keep
//! its version in step with this crate's.
//!
//! # From a handler
//!
//! A handler reaches the deployment's Redis through the application state: the runner's
//! [`main_with_state`](https://docs.rs/jobs-core/latest/jobs_core/runner/fn.main_with_state.html)
//! (feature `runner`) is given the deployment's configuration, opens a connection once at
//! start-up and registers it; each handler takes a clone (clones share the multiplexed
//! connection) with `ctx.state::<RedisConnection>()`.
//!
//! ```rust,no_run,standalone_crate
//! use jobs_core::prelude::*;
//! use jobs_core::redis::{AsyncCommands, RedisConnection};
//!
//! #[job_handler("count_visit")]
//! async fn count_visit(ctx: JobContext) -> Result<i64, JobError> {
//!     let mut conn = ctx.state::<RedisConnection>()?.clone();
//!     let visits: i64 = conn.incr("shop:{shop}:visits", 1).await?;
//!     Ok(visits)
//! }
//!
//! # #[cfg(feature = "runner")]
//! fn main() -> std::process::ExitCode {
//!     jobs_core::runner::main_with_state(|env| async move {
//!         let mut state = jobs_core::State::new();
//!         // `None` on the in-memory backend: no Redis to share.
//!         if let Some(cfg) = env.redis_config() {
//!             state.insert(RedisConnection::connect(&cfg).await?);
//!         }
//!         Ok(state)
//!     })
//! }
//! # #[cfg(not(feature = "runner"))]
//! # fn main() {}
//! ```
//!
//! # Opening a connection
//!
//! ```no_run
//! use jobs_core::redis::{RedisConfig, RedisConnection, TlsFiles, redact_url};
//!
//! # async fn open() -> jobs_core::Result<()> {
//! let cfg = RedisConfig {
//!     tls: TlsFiles { ca_cert: Some("/etc/redis/ca.pem".into()), ..TlsFiles::default() },
//!     ..RedisConfig::new("rediss://app:secret@redis.internal:6380").namespace("shop")
//! };
//! let mut conn = RedisConnection::connect(&cfg).await.inspect_err(|e| {
//!     // Never log the password.
//!     eprintln!("cannot open the shop store on {}: {e}", redact_url(&cfg.url));
//! })?;
//! let added: i64 = jobs_core::redis::cmd("HSET")
//!     .arg("shop:{shop}:carts")
//!     .arg("user-1")
//!     .arg("[]")
//!     .query_async(&mut conn)
//!     .await?;
//! # let _ = added;
//! # Ok(())
//! # }
//! ```

pub use crate::backend::redis::{RedisConfig, RedisConnection, TlsFiles, redact_url};
/// What a handler needs of the `redis` crate (redis-rs) this crate is built with, to run
/// commands, pipelines and scripts on a [`RedisConnection`]. Not the whole crate: its
/// `ValueType::String` (and `Value`, `ErrorKind`) would make rustc spell `String`,
/// `serde_json::Value` and `std::io::ErrorKind` in full in the compile errors of every
/// crate that depends on this one. For more, depend on `redis` at this crate's version.
#[doc(no_inline)]
pub use ::redis::{
    AsyncCommands, AsyncTypedCommands, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
    Script, ScriptInvocation, ToRedisArgs, cmd, pipe,
};
