//! Connection options: a password (`requirepass`), an ACL user, a database number; and the
//! two mistakes operators make — a wrong password, a server that is not there — each one
//! clear error naming the server, without its password.

use std::time::{Duration, Instant};

use jobs_core::backend::redis::{RedisBackend, RedisConfig};
use jobs_core::{Error, JobQueue};
use jobs_test_support::RedisServer;
use serde_json::json;

async fn connect(url: &str) -> jobs_core::Result<JobQueue> {
    let cfg = RedisConfig { namespace: "conn".into(), ..RedisConfig::new(url) };
    Ok(JobQueue::new(RedisBackend::connect(cfg).await?))
}

#[tokio::test]
async fn password_acl_user_and_database_number_work() {
    let server = RedisServer::builder().password("s3cret").start();
    let q = connect(&server.url()).await.expect("password in the URL");
    q.enqueue("x", json!({})).await.expect("enqueue");
    assert_eq!(q.stats().await.expect("stats").total_pending, 1);

    // An ACL user limited to this deployment's keys.
    let mut admin = server.connection().expect("admin connection");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-pw", "~jobq:*", "+@all"])
        .query(&mut admin)
        .expect("create ACL user");
    let url = format!("redis://app:app-pw@127.0.0.1:{}/3", server.port());
    let q = connect(&url).await.expect("ACL user and database 3");
    let id = q.enqueue("y", json!({})).await.expect("enqueue as app");
    assert!(q.get_job(id).await.expect("get").is_some());
    // The job is in database 3, not 0.
    let _: () = redis::cmd("SELECT").arg(3).query(&mut admin).expect("select 3");
    let n: u64 = redis::cmd("HLEN").arg("jobq:{conn}:jobs").query(&mut admin).expect("hlen");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn wrong_password_is_one_clear_error_without_the_password() {
    let server = RedisServer::builder().password("s3cret").start();
    let url = format!("redis://:wrong-pw@127.0.0.1:{}/", server.port());
    let t = Instant::now();
    let err = connect(&url).await.expect_err("a wrong password must fail");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    let msg = jobs_core::runner::error_chain(&err);
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(msg.contains(&format!("127.0.0.1:{}", server.port())), "{msg}");
    assert!(!msg.contains("wrong-pw"), "the password leaked: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[tokio::test]
async fn unreachable_server_is_one_clear_error() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let t = Instant::now();
    let err = connect(&url).await.expect_err("nobody listens");
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let msg = jobs_core::runner::error_chain(&err);
    assert!(msg.starts_with("cannot connect to redis at redis://127.0.0.1:"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}
