//! Waiting: idle workers block on `BZPOPMIN` of the marker ZSET instead of polling, and
//! every worker blocks on `XREAD` of the cancel stream, each wait on a connection of its own.
//!
//! Why a stream for cancel notices, not pub/sub: a pub/sub message reaches only the
//! subscribers connected at that instant, so a reconnecting worker would miss it, while a
//! stream entry stays readable and a reader that comes back with the id it had reached
//! gets everything after it. `XREAD` is an ordinary keyed command, so on a Redis Cluster it
//! is routed to the namespace's node like the scripts (`PUBLISH` would be broadcast to
//! every node, and subscriptions on the cluster client need RESP3 push messages); and
//! `XADD` runs inside `cancel.lua`, atomic with the cancel flag.

use std::time::Duration;

use ::redis::Value;

use super::{RedisBackend, RedisConnection};
use crate::backend::{CANCEL_READ_LIMIT, CancelCursor, CancelNotices, Lease};
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

/// One `XREAD` reply: per stream, its entries as (id, [field, value, …]).
type StreamReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

pub(super) async fn watch_cancels(
    backend: &RedisBackend,
    after: Option<&CancelCursor>,
    max: Duration,
) -> Result<CancelNotices> {
    let key = backend.keys.cancels();
    let Some(after) = after else {
        // The end of the log; "0-0" for an empty stream, so that the first entry counts.
        let mut conn = backend.conn.clone();
        let last: Vec<(String, Vec<String>)> = ::redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let end = last.into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id);
        return Ok(CancelNotices { leases: Vec::new(), cursor: CancelCursor::new(end) });
    };
    let mut cmd = ::redis::cmd("XREAD");
    cmd.arg("COUNT").arg(CANCEL_READ_LIMIT);
    let t = max.min(MAX_BLOCK);
    // Never BLOCK 0: that waits forever.
    let block_ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
    if block_ms > 0 {
        cmd.arg("BLOCK").arg(block_ms);
    }
    cmd.arg("STREAMS").arg(key).arg(after.as_str());
    let reply: StreamReply = if block_ms > 0 {
        // A blocking read holds its connection: one of the dedicated ones. Dropped with the
        // command outstanding if the caller gives up on it (the server ends it on its own).
        let b = backend.blocking_conn().await?;
        let mut conn = b.conn.clone();
        let r = cmd.query_async(&mut conn).await?;
        backend.blocking.lock().unwrap_or_else(|e| e.into_inner()).push(b);
        r
    } else {
        let mut conn = backend.conn.clone();
        cmd.query_async(&mut conn).await?
    };
    let mut out = CancelNotices { leases: Vec::new(), cursor: after.clone() };
    for (_, entries) in reply.unwrap_or_default() {
        for (entry_id, fields) in entries {
            match notice(&fields) {
                Some(lease) => out.leases.push(lease),
                None => {
                    tracing::warn!(entry = %crate::escape::Escaped(&entry_id), "unreadable cancel notice skipped")
                }
            }
            out.cursor = CancelCursor::new(entry_id);
        }
    }
    Ok(out)
}

/// The lease of a notice's fields `i <id> a <attempt>`.
fn notice(fields: &[String]) -> Option<Lease> {
    let (mut id, mut attempt) = (None, None);
    for kv in fields.chunks_exact(2) {
        match kv[0].as_str() {
            "i" => id = kv[1].parse().ok(),
            "a" => attempt = kv[1].parse().ok(),
            _ => {}
        }
    }
    Some(Lease { id: id?, attempt: attempt? })
}
