//! Connection options: a password (`requirepass`), an ACL user, a database number, TLS
//! (`rediss://`) with a private CA and client certificates; and the mistakes operators
//! make — a wrong password, a server that is not there, a certificate the server does not
//! trust — each one clear error naming the server, without its password.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobs_core::backend::redis::keys::Keys;
use jobs_core::backend::redis::{RedisBackend, RedisConfig, TlsFiles};
use jobs_core::{Error, JobQueue};
use jobs_test_support::{RedisServer, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
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
    let jobs = Keys::new("jobq", "conn").expect("keys");
    let n: u64 = redis::cmd("HLEN").arg(jobs.jobs()).query(&mut admin).expect("hlen");
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

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: a leaf whose subject equals its issuer looks self-signed to OpenSSL.
        ca_params.distinguished_name.push(DnType::CommonName, "jobs test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        write("ca.pem", ca_params.self_signed(&ca_key).expect("ca cert").pem());
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, sans) in [("server", vec!["127.0.0.1", "localhost"]), ("client", vec!["app"])] {
            let mut params =
                CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>())
                    .expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().expect("key");
            write(&format!("{name}.pem"), params.signed_by(&key, &issuer).expect("sign").pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn tls_with_a_private_ca_and_client_certificates() {
    let pki = Pki::new();
    let tls_port = free_port().expect("free port");
    // The plain port stays open for the helper's readiness check; the queue uses TLS.
    let _server = RedisServer::builder()
        .args(["--tls-port".to_owned(), tls_port.to_string()])
        .args(["--tls-cert-file".to_owned(), arg(&pki.path("server.pem"))])
        .args(["--tls-key-file".to_owned(), arg(&pki.path("server.key"))])
        .args(["--tls-ca-cert-file".to_owned(), arg(&pki.path("ca.pem"))])
        .args(["--tls-auth-clients", "yes"])
        .start();
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let open = |tls: TlsFiles| {
        let cfg = RedisConfig { namespace: "tls".into(), tls, ..RedisConfig::new(&url) };
        async move { RedisBackend::connect(cfg).await.map(JobQueue::new) }
    };
    let full = TlsFiles {
        ca_cert: Some(pki.path("ca.pem")),
        client_cert: Some(pki.path("client.pem")),
        client_key: Some(pki.path("client.key")),
    };

    let q = open(full.clone()).await.expect("TLS with CA and client certificate");
    let id = q.enqueue("over_tls", json!({ "n": 1 })).await.expect("enqueue over TLS");
    assert_eq!(q.get_job(id).await.expect("get").map(|j| j.name), Some("over_tls".into()));

    // Each missing piece is one clear error line naming the server.
    let no_client_cert = TlsFiles { client_cert: None, client_key: None, ..full.clone() };
    let no_ca = TlsFiles { ca_cert: None, ..full.clone() };
    for (what, tls) in [("no client certificate", no_client_cert), ("CA not trusted", no_ca)] {
        let t = Instant::now();
        let err = open(tls).await.map(|_| ()).expect_err(what);
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: took {:?}", t.elapsed());
        let msg = jobs_core::runner::error_chain(&err);
        assert!(matches!(err, Error::Connect { .. }), "{what}: {err:?}");
        assert!(msg.contains(&format!("rediss://127.0.0.1:{tls_port}")), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: one line: {msg}");
    }

    // Certificates with a plain URL are a configuration mistake, said as such.
    let plain = format!("redis://127.0.0.1:{tls_port}/");
    let cfg = RedisConfig { tls: full.clone(), ..RedisConfig::new(&plain) };
    let err = RedisBackend::connect(cfg).await.map(|_| ()).expect_err("redis:// with certificates");
    assert!(matches!(&err, Error::Config(m) if m.contains("rediss://")), "{err:?}");
    // So is a client certificate without its key, or a file that is not there.
    let half = TlsFiles { client_key: None, ..full.clone() };
    let missing = TlsFiles { ca_cert: Some(pki.path("nope.pem")), ..full };
    for tls in [half, missing] {
        let err = open(tls).await.map(|_| ()).expect_err("bad TLS files");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}
