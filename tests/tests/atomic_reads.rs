//! Reads that combine several keys are one script on Redis, so that what they combine is
//! read at one moment: watched with `MONITOR` on the shared server, where every command a
//! script runs is shown as coming from `lua`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use jobs_core::backend::{Backend, BackendConfig};
use jobs_test_support::{redis_backend, shared, unique_namespace};

/// The commands the server ran between now and `f`'s end that name `ns`, as MONITOR lines.
async fn monitored<F: std::future::Future<Output = ()>>(ns: &str, f: F) -> Vec<String> {
    let mut mon = TcpStream::connect(("127.0.0.1", shared().port())).expect("connect");
    mon.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    mon.write_all(b"MONITOR\r\n").expect("monitor");
    let mut lines = BufReader::new(mon);
    let mut ok = String::new();
    lines.read_line(&mut ok).expect("+OK");
    assert_eq!(ok.trim(), "+OK");
    f.await;
    // A marker after the call: everything before it in the stream belongs to the call.
    let marker = format!("end-of-{ns}");
    let mut c = shared().connection().expect("connect");
    let _: String = redis::cmd("ECHO").arg(&marker).query(&mut c).expect("echo");
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let mut line = String::new();
        lines.read_line(&mut line).expect("a monitor line");
        if line.contains(&marker) {
            return out;
        }
        if line.contains(ns) {
            out.push(line.trim().to_owned());
        }
    }
    panic!("no end marker in the monitor stream");
}

// regression: `stats` read the list lengths and the ghost counts (which it subtracts from
// them) with separate commands, so a fetch or cancel between them made a count wrong for
// that read. All of them are read by one script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reads_lengths_and_ghost_counts_in_one_script() {
    let ns = unique_namespace("atomic-stats");
    let backend = redis_backend(&ns, BackendConfig::default()).await;
    backend.stats().await.expect("a first call loads the script");
    let lines = monitored(&ns, async {
        backend.stats().await.expect("stats");
    })
    .await;
    let reads: Vec<&String> = lines
        .iter()
        .filter(|l| {
            ["\"LLEN\"", "\"ZCARD\"", "\"HGETALL\"", "\"HMGET\""].iter().any(|c| l.contains(c))
        })
        .collect();
    assert!(reads.len() >= 9, "four lengths, four set sizes and the counters: {lines:#?}");
    for l in reads {
        assert!(l.contains("[0 lua]"), "a stats read outside the script: {l}");
    }
}
