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

use std::time::{Duration, Instant};

use ::redis::Value;

use tokio_util::sync::CancellationToken;

use super::scripts::SCRIPTS;
use super::{Args, RedisBackend, RedisConnection, Send, jobs};
use crate::backend::{
    CANCEL_READ_LIMIT, CancelCursor, CancelNotices, FetchRequest, Fetched, Lease,
};
use crate::error::Result;
use crate::time::duration_ms;

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

/// The `BZPOPMIN` of a wait for work in `queues` (empty: the default queue): their markers
/// in order, then the due-time marker, with the server-side timeout `t`.
fn pop_cmd(backend: &RedisBackend, queues: &[String], t: Duration) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("BZPOPMIN");
    if queues.is_empty() {
        cmd.arg(backend.keys.marker());
    }
    for q in queues {
        cmd.arg(backend.keys.queue_marker(q));
    }
    cmd.arg(backend.keys.due()).arg((t + UNBLOCK_SLACK).as_secs_f64());
    cmd
}

pub(super) async fn wait_for_work(
    backend: &RedisBackend,
    max: Duration,
    queues: &[String],
) -> Result<()> {
    for q in queues {
        crate::flow::check_queue_name(q)?;
    }
    let t = max.min(MAX_BLOCK);
    if t.is_zero() {
        return Ok(());
    }
    let b = backend.blocking_conn().await?;
    // Redis checks blocking timeouts only about every 100 ms (hz 10), which would make a
    // delayed job start up to 100 ms late. So the server-side timeout is only a backstop:
    // our own timer ends the wait on time, through CLIENT UNBLOCK from the shared
    // connection. (Never a zero timeout: BZPOPMIN 0 blocks forever.)
    let cmd = pop_cmd(backend, queues, t);
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

/// `BZPOPMIN` and the fetch in one pipeline on a blocking connection: Redis keeps the fetch
/// in the connection's buffer while the pop blocks and runs it the moment the pop returns,
/// so a wake-up costs no second round trip. Ended early (our timer, as in
/// [`wait_for_work`], or `stop`) by `CLIENT UNBLOCK`: the fetch still runs and its leases
/// are returned. On a cluster, where the pipeline would be split by node, the two go one
/// after the other.
pub(super) async fn wait_then_fetch(
    backend: &RedisBackend,
    max: Duration,
    req: &FetchRequest,
    stop: &CancellationToken,
) -> Result<(Fetched, Instant)> {
    let t = max.min(MAX_BLOCK);
    if stop.is_cancelled() {
        return Ok((Fetched::default(), Instant::now()));
    }
    if backend.is_cluster() || t.is_zero() {
        return crate::backend::wait_then_fetch_apart(backend, max, req, stop).await;
    }
    let b = backend.blocking_conn().await?;
    let request = backend.new_request_key();
    let mut args = Args::default();
    jobs::fetch_args(&mut args, req);
    // Kept for a resend as long as this first send may take (its wait included).
    args.arg(duration_ms(backend.reply_ttl() + MAX_BLOCK + UNBLOCK_SLACK));
    let op = &SCRIPTS.fetch;
    let mut pipe = ::redis::pipe();
    pipe.add_command(pop_cmd(backend, &req.queues, t));
    backend.add_call(&mut pipe, op, Some(&request), &args);
    let mut conn = b.conn.clone();
    let sent = Instant::now();
    let call = pipe.query_async::<(Value, Vec<Value>)>(&mut conn);
    tokio::pin!(call);
    let r = tokio::select! {
        biased;
        r = &mut call => r,
        _ = tokio::time::sleep(t) => unblock_then(backend, b.id, &mut call).await,
        _ = stop.cancelled() => unblock_then(backend, b.id, &mut call).await,
    };
    match r {
        // The fetch ran the moment the pop returned, and its reply followed at once: the
        // leases began at most that reply's way back before now.
        Ok((_, reply)) => {
            backend.blocking.lock().unwrap_or_else(|e| e.into_inner()).push(b);
            Ok((jobs::read_fetched(backend, reply).await?, Instant::now()))
        }
        // The fetch may have run (the reply is lost) or not (an error reply: the library
        // missing after a restart, a pop refused by a demoted master, …). Sent again under
        // the same request id, the script answers with the leases it handed out, or runs now
        // (loading what is missing). The connection is dropped: it may be in an unknown state,
        // or on the wrong server. Leases replayed may be as old as this call's send.
        Err(e) => {
            tracing::debug!(error = %e, "wait-and-fetch failed; sending the fetch again");
            let how = Send { request_key: true, durable: false };
            let reply: Vec<Value> =
                backend.resend(op, how, Some(&request), &args, e.is_io_error()).await?;
            Ok((jobs::read_fetched(backend, reply).await?, sent))
        }
    }
}

/// Ends the blocked command of client `id` with `CLIENT UNBLOCK`, then waits for `call`'s
/// reply. A command sent a moment ago may not be blocked yet (the unblock then finds
/// nothing and it would block for its whole timeout): until one unblock ends it, or its
/// reply comes, the unblock is repeated every few milliseconds, at most [`UNBLOCK_TRIES`]
/// times. If an unblock fails (the shared connection is down), the reply is awaited as it
/// comes: the server ends the pop at its own timeout, a second later, and the fetch behind
/// it must not be dropped (its leases would wait for the reaper).
async fn unblock_then<F: std::future::Future<Output = T> + Unpin, T>(
    backend: &RedisBackend,
    id: i64,
    call: &mut F,
) -> T {
    let mut c = backend.conn.clone();
    let mut unblock = ::redis::cmd("CLIENT");
    unblock.arg("UNBLOCK").arg(id);
    for _ in 0..UNBLOCK_TRIES {
        match c.on_node_of::<i64>(&unblock, backend.keys.marker()).await {
            Ok(0) => {}
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "CLIENT UNBLOCK failed; waiting for the server's timeout");
                break;
            }
        }
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(5), &mut *call).await {
            return r;
        }
    }
    call.await
}

/// How many times [`unblock_then`] sends `CLIENT UNBLOCK` (5 ms apart) while it finds
/// nothing blocked.
const UNBLOCK_TRIES: usize = 100;

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
