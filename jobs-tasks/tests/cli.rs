//! The operator's command line, by running the `jobs-runner` binary: `enqueue` checks the
//! name and takes the job's options, `run`'s flags work at the top level, the output is
//! for people (and `--json` for machines), and errors say what to do.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output, Stdio};

use jobs_test_support::{free_port, shared, unique_namespace};
use serde_json::Value;

const RUNNER: &str = env!("CARGO_BIN_EXE_jobs-runner");

/// `jobs-runner <args>` against namespace `ns` of the shared private Redis, with no
/// `RUST_LOG` (the runner's own default level) and stderr piped (not a terminal).
fn cli(ns: &str, args: &[&str]) -> Output {
    Command::new(RUNNER)
        .args(args)
        .env("REDIS_URL", shared().url())
        .env("JOBS_NAMESPACE", ns)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run jobs-runner")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects success; returns stdout.
fn ok(ns: &str, args: &[&str]) -> String {
    let out = cli(ns, args);
    assert!(out.status.success(), "jobs-runner {args:?}: {}\n{}", out.status, text(&out.stderr));
    text(&out.stdout)
}

/// Runs and expects failure; returns stderr.
fn fails(ns: &str, args: &[&str]) -> String {
    let out = cli(ns, args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "jobs-runner {args:?} succeeded: {}", text(&out.stdout));
    assert!(!err.contains('\u{1b}'), "no colours on a pipe: {err:?}");
    err
}

fn json(ns: &str, args: &[&str]) -> Value {
    let out = ok(ns, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

fn pending(ns: &str) -> u64 {
    json(ns, &["stats", "--json"])["total_pending"].as_u64().expect("total_pending")
}

#[test]
fn enqueue_of_an_unknown_name_names_the_closest_handlers_and_enqueues_nothing() {
    let ns = unique_namespace("cli-unknown");
    let err = fails(&ns, &["enqueue", "sync_portfolo", "--args", r#"{"user_id":"u"}"#]);
    assert!(err.contains("no handler registered for job `sync_portfolo`"), "{err}");
    assert!(err.contains("did you mean `sync_portfolio`"), "{err}");
    let err = fails(&ns, &["enqueue", "zzzz"]);
    assert!(!err.contains("did you mean"), "nothing is close to zzzz: {err}");
    // Arguments that do not fit the handler are refused before anything is written too.
    let err = fails(&ns, &["enqueue", "sync_portfolio", "--args", r#"{"user":1}"#]);
    assert!(err.contains("invalid arguments for job `sync_portfolio`"), "{err}");
    assert_eq!(pending(&ns), 0);
}

#[test]
fn enqueue_takes_the_jobs_options() {
    let ns = unique_namespace("cli-options");
    let id = "0190f5c2-7a3b-7c1d-9e2f-0123456789ab";
    let args = r#"{"user_id":"user-007"}"#;
    let flags = ["--max-retries", "7", "--timeout", "45s", "--id", id, "--user-id", "user-007"];
    let mut argv = vec!["enqueue", "sync_portfolio", "--args", args, "--json"];
    argv.extend(flags);
    assert_eq!(json(&ns, &argv)["id"], id);
    let job = json(&ns, &["job", id, "--json"]);
    assert_eq!(job["max_retries"], 7, "{job}");
    assert_eq!(job["timeout"], 45, "{job}");
    assert_eq!(job["user_id"], "user-007", "{job}");
    // The same id again is the same job; a number is seconds.
    let again = ["enqueue", "sync_portfolio", "--args", args, "--id", id, "--timeout", "90"];
    ok(&ns, &again);
    assert_eq!(pending(&ns), 1);
    let err = fails(&ns, &["enqueue", "sync_portfolio", "--args", args, "--timeout", "soon"]);
    assert!(err.contains("--timeout") && err.contains("30s"), "{err}");
}

#[test]
fn enqueue_says_when_a_unique_job_is_there_already() {
    let ns = unique_namespace("cli-unique");
    let args = r#"{"user_id":"user-001"}"#;
    // sync_portfolio is unique per user: the second enqueue points at the first job.
    let first = ok(&ns, &["enqueue", "sync_portfolio", "--args", args]);
    let id = first.trim().strip_prefix("enqueued ").expect("enqueued <id>").to_owned();
    let again = ok(&ns, &["enqueue", "sync_portfolio", "--args", args]);
    assert_eq!(
        again.trim(),
        format!("not enqueued: job {id} holds the uniqueness key (a duplicate)")
    );
    let v = json(&ns, &["enqueue", "sync_portfolio", "--args", args, "--json"]);
    assert_eq!(
        (v["id"].as_str(), v["duplicate"].as_bool()),
        (Some(id.as_str()), Some(true)),
        "{v}"
    );
    // A key given on the command line makes any handler's jobs unique.
    let flags = ["--unique-key", "nightly", "--unique-for", "10m"];
    let mut argv = vec!["enqueue", "update_24h_stats"];
    argv.extend(flags);
    let made = ok(&ns, &argv);
    assert!(made.starts_with("enqueued "), "{made}");
    assert!(ok(&ns, &argv).starts_with("not enqueued: job "), "a second one is a duplicate");
    assert_eq!(pending(&ns), 2);
    let err =
        fails(&ns, &["enqueue", "update_24h_stats", "--unique-key", "k", "--unique-for", "soon"]);
    assert!(err.contains("--unique-for"), "{err}");
}

#[test]
fn human_output_is_aligned_fields_and_tables() {
    let ns = unique_namespace("cli-human");
    assert_eq!(ok(&ns, &["dlq", "list"]).trim(), "the dead-letter queue is empty");
    let out = ok(&ns, &["enqueue", "update_24h_stats", "--priority", "high"]);
    let id = out.trim().strip_prefix("enqueued ").expect("enqueued <id>").to_owned();
    let job = ok(&ns, &["job", &id]);
    assert!(!job.contains('{') || job.contains("args:"), "not JSON: {job}");
    let line = |label: &str| {
        job.lines().find(|l| l.starts_with(&format!("{label}:"))).unwrap_or_else(|| {
            panic!("no `{label}:` line in\n{job}");
        })
    };
    assert!(line("status").ends_with(" pending"), "{job}");
    assert!(line("priority").ends_with(" high"), "{job}");
    // The values start in one column.
    let col = |l: &str| l.find(':').map(|i| i + l[i + 1..].find(|c| c != ' ').unwrap_or(0));
    assert_eq!(col(line("id")), col(line("priority")), "{job}");
    assert_eq!(job.lines().count(), 16, "{job}");
    assert!(line("queue").ends_with(" default"), "{job}");

    let stats = ok(&ns, &["stats"]);
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["STATE", "JOBS"], "{stats}");
    assert!(lines.iter().any(|l| l.split_whitespace().eq(["high", "1"])), "{stats}");
    assert!(stats.contains("COUNTER"), "{stats}");

    // `handlers`: the table alone on stdout, no registration log on either stream.
    let out = cli(&ns, &["handlers"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("sync_portfolio ")), "{table}");
    assert_eq!(text(&out.stderr), "", "one-shot commands log warnings only");
}

/// `jobs-runner --workers 2`, as the README's configuration table has it.
#[test]
fn run_flags_work_at_the_top_level_and_are_in_help() {
    let help = text(&Command::new(RUNNER).arg("--help").output().expect("run").stdout);
    for flag in ["--workers", "--concurrency", "--bind", "--no-api", "--redis-url"] {
        assert!(help.contains(flag), "`{flag}` missing from --help:\n{help}");
    }
    // Parsed and checked as `run --workers 0` is (an error before anything starts).
    for argv in [&["--workers", "0"][..], &["run", "--workers", "0"]] {
        let out = Command::new(RUNNER)
            .args(argv)
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = text(&out.stderr);
        assert!(err.contains("--workers and --concurrency must be at least 1"), "{argv:?}: {err}");
    }
    // A run flag beside a subcommand is a mistake, said as one.
    let err = fails("x", &["--workers", "2", "stats"]);
    assert!(err.contains("--workers"), "{err}");
    // ... but its variable set for a runner does not stop one-shot commands.
    let out = Command::new(RUNNER)
        .arg("handlers")
        .env("JOBS_WORKERS", "4")
        .env("JOBS_BIND", "127.0.0.1:1")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn errors_name_the_fix() {
    let ns = unique_namespace("cli-errors");
    let err = fails(&ns, &["enqueue", "sync_portfolio", "--args", "user_id=1"]);
    assert!(err.contains("--args is not JSON"), "{err}");
    assert!(!err.contains("invalid configuration"), "{err}");

    // A port in use.
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = held.local_addr().expect("addr").port();
    let out = Command::new(RUNNER)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--no-scheduler", "--no-workers"])
        .env_remove("REDIS_URL")
        .env_remove("JOBS_BIND")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--bind") && err.contains("JOBS_BIND"), "{err}");
    drop(held);

    // A Redis URL without a scheme (on a port where nothing listens).
    let bare = format!("127.0.0.1:{}", free_port().expect("a free port"));
    let out = Command::new(RUNNER)
        .arg("stats")
        .env("REDIS_URL", &bare)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("redis://host:port") && err.contains(&bare), "{err}");

    // `--at` in the past: a warning, then the job, which runs now.
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let out = cli(&ns, &["enqueue", "update_24h_stats", "--at", &hour_ago]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("in the past") && err.contains("will run now"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colours on a pipe: {err:?}");
    assert_eq!(pending(&ns), 1);
}

#[test]
fn jobs_lists_a_state_filtered_and_paged() {
    let ns = unique_namespace("cli-jobs");
    let mut ids = Vec::new();
    // sync_portfolio is unique per `user_id` of its args: three portfolios, two owners.
    for (delay, user, portfolio) in
        [("3600", "u1", "p1"), ("3700", "u2", "p2"), ("3800", "u1", "p3")]
    {
        let args = format!(r#"{{"user_id":"{portfolio}"}}"#);
        let argv = [
            "enqueue",
            "sync_portfolio",
            "--args",
            &args,
            "--in",
            delay,
            "--user-id",
            user,
            "--json",
        ];
        ids.push(json(&ns, &argv)["id"].as_str().expect("id").to_owned());
    }
    // Human: a table, latest due first, with a DUE column.
    let out =
        ok(&ns, &["jobs", "--state", "scheduled", "--name", "sync_portfolio", "--user-id", "u1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("DUE"), "{out}");
    assert_eq!(lines.len(), 3, "a header and the two jobs of u1: {out}");
    assert!(lines[1].starts_with(&ids[2]) && lines[2].starts_with(&ids[0]), "{out}");
    assert!(!out.contains(&ids[1]), "{out}");

    // JSON, paged by the cursor it prints.
    let page = json(&ns, &["jobs", "--state", "scheduled", "--limit", "2", "--json"]);
    let got: Vec<&str> =
        page["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().expect("more follow").to_owned();
    let out = ok(&ns, &["jobs", "--state", "scheduled", "--limit", "2"]);
    assert!(out.contains(&format!("more: add --cursor {cursor}")), "{out}");
    let rest =
        json(&ns, &["jobs", "--state", "scheduled", "--limit", "2", "--cursor", &cursor, "--json"]);
    assert_eq!(rest["jobs"][0]["id"], ids[0].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);

    assert_eq!(ok(&ns, &["jobs", "--state", "retrying"]).trim(), "no retrying jobs found");
    let err = fails(&ns, &["jobs", "--state", "dead"]);
    assert!(err.contains("--state `dead`") && err.contains("retrying"), "{err}");
    let err = fails(&ns, &["jobs", "--state", "failed", "--cursor", &cursor]);
    assert!(err.contains("cursor"), "{err}");
    // A delayed job is neither retrying nor dead: `retry` refuses it, naming its status.
    let err = fails(&ns, &["retry", &ids[0]]);
    assert!(err.contains("cannot retry") && err.contains("pending"), "{err}");
}

#[test]
fn queues_are_listed_paused_and_resumed_and_enqueue_takes_a_queue() {
    let ns = unique_namespace("cli-queues");
    let args = r#"{"user_id":"user-1"}"#;
    let id = json(&ns, &["enqueue", "sync_portfolio", "--args", args, "--queue", "bulk", "--json"]);
    let id = id["id"].as_str().expect("an id").to_owned();
    assert_eq!(json(&ns, &["job", &id, "--json"])["queue"], "bulk");
    assert!(ok(&ns, &["job", &id]).lines().any(|l| l.starts_with("queue:") && l.ends_with("bulk")));

    let table = ok(&ns, &["queues"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("QUEUE") && lines[0].contains("READY"), "{table}");
    let bulk = lines.iter().find(|l| l.starts_with("bulk")).expect("bulk listed");
    let cells: Vec<&str> = bulk.split_whitespace().collect();
    assert_eq!(cells, ["bulk", "active", "1", "0", "0", "1", "0"], "{table}");

    assert_eq!(ok(&ns, &["queues", "pause", "bulk"]).trim(), "bulk paused");
    assert_eq!(ok(&ns, &["queues", "pause", "bulk"]).trim(), "bulk was paused already");
    let listed = json(&ns, &["queues", "list", "--json"]);
    let all = listed.as_array().expect("a list");
    let q = all.iter().find(|q| q["name"] == "bulk").expect("bulk listed");
    assert_eq!((q["paused"].as_bool(), q["total_pending"].as_u64()), (Some(true), Some(1)));
    let resumed = json(&ns, &["queues", "resume", "bulk", "--json"]);
    assert_eq!(resumed, serde_json::json!({"name": "bulk", "paused": false, "changed": true}));

    // A bad name is an error saying what a name may hold, and nothing is written.
    for argv in [
        &["queues", "pause", "a:b"][..],
        &["enqueue", "sync_portfolio", "--args", args, "--queue", "a b"],
    ] {
        let err = fails(&ns, argv);
        assert!(err.contains("invalid queue name") && err.contains("ASCII letters"), "{err}");
    }
    assert_eq!(pending(&ns), 1);
}

#[test]
fn bulk_acts_on_a_filtered_page_and_delete_removes_a_finished_job() {
    let ns = unique_namespace("cli-bulk");
    let mut ids = Vec::new();
    for n in 0..3 {
        let args = format!(r#"{{"user_id":"u{n}"}}"#);
        let flags = ["--in", "3600", "--user-id", "bulk-user", "--json"];
        let mut argv = vec!["enqueue", "sync_portfolio", "--args", &args];
        argv.extend(flags);
        ids.push(json(&ns, &argv)["id"].as_str().expect("an id").to_owned());
    }
    let out = ok(
        &ns,
        &["bulk", "cancel", "--state", "scheduled", "--user-id", "bulk-user", "--limit", "2"],
    );
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(first, "cancel: 2 of 2 matching scheduled jobs", "{out}");
    let cursor =
        out.lines().find_map(|l| l.strip_prefix("next page: --cursor ")).expect("a cursor");
    let report =
        json(&ns, &["bulk", "cancel", "--state", "scheduled", "--cursor", cursor, "--json"]);
    assert_eq!((report["matched"].as_u64(), report["succeeded"].as_u64()), (Some(1), Some(1)));
    assert!(report["next_cursor"].is_null(), "{report}");

    assert_eq!(ok(&ns, &["delete", &ids[0]]).trim(), format!("deleted {}", ids[0]));
    let err = fails(&ns, &["job", &ids[0]]);
    assert!(err.contains("not found"), "{err}");
    let report = json(&ns, &["bulk", "delete", "--state", "cancelled", "--limit", "100", "--json"]);
    assert_eq!(report["succeeded"], 2, "{report}");

    // What does not fit is an error naming the fix, and nothing is done.
    let err = fails(&ns, &["bulk", "delete", "--state", "pending"]);
    assert!(err.contains("delete applies to completed, cancelled, failed jobs"), "{err}");
    let err = fails(&ns, &["bulk", "purge", "--state", "failed"]);
    assert!(err.contains("retry, cancel or delete"), "{err}");
    let live = json(&ns, &["enqueue", "sync_portfolio", "--args", r#"{"user_id":"z"}"#, "--json"]);
    let err = fails(&ns, &["delete", live["id"].as_str().expect("an id")]);
    assert!(err.contains("cannot delete") && err.contains("pending"), "{err}");
}
