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
//! there too.
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
//! let added: i64 = redis::cmd("HSET")
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
