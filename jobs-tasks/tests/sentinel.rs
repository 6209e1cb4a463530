//! The trading store on Redis Sentinel: opened through a `redis+sentinel://` URL, it
//! follows the master when the sentinels promote the replica, with no reconnect by hand.

use std::time::{Duration, Instant};

use jobs_tasks::model::User;
use jobs_tasks::platform::Platform;
use jobs_test_support::{RedisSentinel, unique_namespace, wait_until};

fn user(id: &str) -> User {
    User { id: id.into(), email: format!("{id}@example.com"), name: id.to_uppercase() }
}

/// The replication offset in `INFO replication` (`master_repl_offset` on a master,
/// `slave_repl_offset` on a replica).
fn repl_offset(server: &jobs_test_support::RedisServer, field: &str) -> Option<u64> {
    let info: String =
        redis::cmd("INFO").arg("replication").query(&mut server.connection().ok()?).ok()?;
    info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trading_store_follows_the_master_through_a_failover() {
    let group = tokio::task::spawn_blocking(RedisSentinel::start).await.expect("start the group");
    let ns = unique_namespace("tasks-sentinel");
    let platform =
        Platform::redis(&group.url(), &ns).await.expect("open the store through the sentinels");
    let store = platform.store();
    store.put_user(&user("before")).await.expect("write on the first master");
    assert_eq!(store.user("before").await.expect("read").map(|u| u.name), Some("BEFORE".into()));

    // The write is on the replica before the kill (asynchronous replication is not what
    // this test is about): the replica's offset reaches the master's.
    let synced = wait_until("the replica has the write", Duration::from_secs(10), || async {
        let master = repl_offset(&group.servers()[0], "master_repl_offset")?;
        let replica = repl_offset(&group.servers()[1], "slave_repl_offset")?;
        (replica >= master).then_some(())
    })
    .await;
    synced.expect("the replica catches up");

    let (group, killed_at, failover) = tokio::task::spawn_blocking(move || {
        let mut group = group;
        let old = group.kill_master();
        let killed_at = Instant::now();
        let took = group.wait_for_failover(old, Duration::from_secs(15));
        (group, killed_at, took)
    })
    .await
    .expect("kill the master");
    let failover = failover.expect("the sentinels promote the replica");
    assert_eq!(group.master_index(), Some(1), "the replica is the master now");

    // The same store object: a write gets through within a bounded time (the first call
    // on a connection that sat idle through the switch may fail; the next goes to the new
    // master), then reads see it and what was there before.
    let wrote =
        wait_until("the store writes on the new master", Duration::from_secs(10), || async {
            store.put_user(&user("after")).await.ok()
        })
        .await;
    wrote.expect("the store follows the new master");
    let resumed = killed_at.elapsed();
    assert_eq!(store.user("after").await.expect("read").map(|u| u.name), Some("AFTER".into()));
    assert_eq!(store.user("before").await.expect("read").map(|u| u.name), Some("BEFORE".into()));
    let mut ids: Vec<String> =
        store.users().await.expect("list").into_iter().map(|u| u.id).collect();
    ids.sort();
    assert_eq!(ids, ["after", "before"]);
    println!(
        "trading store: promoted {failover:?} after the kill, wrote again {resumed:?} after it"
    );
}
