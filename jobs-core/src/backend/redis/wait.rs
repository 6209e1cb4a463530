//! Waiting for work: idle workers block on `BZPOPMIN` of the marker ZSET instead of
//! polling, each on a connection of its own.

use std::time::Duration;

use ::redis::Value;

use super::{RedisBackend, RedisConnection};
use crate::error::Result;

/// A connection reserved for `BZPOPMIN`, with its `CLIENT ID` so that a wait can be ended
/// early with `CLIENT UNBLOCK`.
pub(super) struct Blocker {
    conn: RedisConnection,
    id: i64,
}

/// The longest single BZPOPMIN: bounds how long a lost wake-up (e.g. a worker that died
/// holding the delayed-job marker) can delay work. REDIS.md §4.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// How much longer than our own timer the server-side BZPOPMIN timeout is.
const UNBLOCK_SLACK: Duration = Duration::from_secs(1);

impl RedisBackend {
    async fn blocking_conn(&self) -> Result<Blocker> {
        let pooled = self.blocking.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(c) = pooled {
            return Ok(c);
        }
        let timeout = MAX_BLOCK + UNBLOCK_SLACK + self.cfg.response_timeout;
        let mut conn = self.connector.dedicated(&self.cfg, timeout).await?;
        // On a cluster this asks the node of the marker key: the one BZPOPMIN blocks on.
        let id: i64 = conn.on_node_of(::redis::cmd("CLIENT").arg("ID"), self.keys.marker()).await?;
        Ok(Blocker { conn, id })
    }
}

pub(super) async fn wait_for_work(backend: &RedisBackend, max: Duration) -> Result<()> {
    let t = max.min(MAX_BLOCK);
    if t.is_zero() {
        return Ok(());
    }
    let b = backend.blocking_conn().await?;
    // Redis checks blocking timeouts only about every 100 ms (hz 10), which would make a
    // delayed job start up to 100 ms late. So the server-side timeout is only a backstop:
    // our own timer ends the wait on time, through CLIENT UNBLOCK from the shared
    // connection. (Never a zero timeout: BZPOPMIN 0 blocks forever.)
    let mut cmd = ::redis::cmd("BZPOPMIN");
    cmd.arg(backend.keys.marker()).arg((t + UNBLOCK_SLACK).as_secs_f64());
    let mut conn = b.conn.clone();
    let pop = cmd.query_async::<Value>(&mut conn);
    tokio::pin!(pop);
    let r = tokio::select! {
        r = &mut pop => r,
        _ = tokio::time::sleep(t) => {
            let mut c = backend.conn.clone();
            let unblocked: ::redis::RedisResult<i64> = c
                .on_node_of(::redis::cmd("CLIENT").arg("UNBLOCK").arg(b.id), backend.keys.marker())
                .await;
            if let Err(e) = unblocked {
                // The connection is dropped with its command outstanding; the server
                // times it out by itself.
                return Err(e.into());
            }
            (&mut pop).await
        }
    };
    match r {
        Ok(_) => {
            backend.blocking.lock().unwrap_or_else(|e| e.into_inner()).push(b);
            Ok(())
        }
        // The connection is dropped: it may be in an unknown state.
        Err(e) => Err(e.into()),
    }
}
