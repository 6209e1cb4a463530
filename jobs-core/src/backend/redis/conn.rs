//! Connections to a single Redis server or to a Redis Cluster, behind one type.
//!
//! Every key of a namespace carries the same hash tag ([`super::keys`]), so on a cluster all
//! of a namespace's keys live on one node and every script runs there unchanged. What
//! differs is only how a command reaches that node: keyed commands and scripts are routed by
//! redis-rs, and the few keyless commands that must reach the same node (`TIME`,
//! `CLIENT ID`, `CLIENT UNBLOCK`) go through [`RedisConnection::on_node_of`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value,
};

use super::RedisConfig;
use super::sentinel::{Certificates, SentinelConnection, Sentinels, is_sentinel_url};
use crate::error::{Error, Result};

/// Files for TLS (`rediss://`) beyond the system's trust store; all optional.
///
/// Without any of them a `rediss://` URL verifies the server against the system's root
/// certificates. Paths are read when the backend connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA that signed the server's certificate (`REDIS_CA_CERT`).
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this client's certificate, for servers that require client
    /// certificates (`REDIS_CLIENT_CERT`; needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM file of this client's private key (`REDIS_CLIENT_KEY`; needs `client_cert`).
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// A connection to the namespace's Redis: a single server or a cluster. Cheap to clone
/// (clones share the underlying multiplexed connections).
///
/// It implements redis-rs's [`ConnectionLike`], so raw commands, pipelines and scripts run on
/// it as on any redis-rs connection.
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    /// The shared connection to a single server: reconnects by itself.
    Manager(ConnectionManager),
    /// A dedicated connection to a single server (for blocking commands).
    Plain(MultiplexedConnection),
    /// A cluster: one multiplexed connection per node, commands routed by key slot.
    Cluster(ClusterConnection),
    /// The master the sentinels name: asked again after every lost connection.
    Sentinel(SentinelConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Inner::Manager(_) | Inner::Plain(_) => "single",
            Inner::Cluster(_) => "cluster",
            Inner::Sentinel(_) => "sentinel",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_command(cmd),
            Inner::Plain(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
            Inner::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Manager(c) => c.get_db(),
            Inner::Plain(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(c) => c.get_db(),
        }
    }
}

impl RedisConnection {
    /// Connects as `cfg` says (URL, cluster discovery, TLS files) and checks the server
    /// answers: for application data kept beside the queue, on the same Redis. The
    /// namespace and prefix of `cfg` are not used.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when no server answers or it refuses the credentials, and
    /// [`Error::Config`] for unreadable TLS files.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        Ok(Connector::open(cfg).await?.1)
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// Runs a keyless command on the node that serves `key` (on a single server: the
    /// server). `TIME` must come from the node whose clock the scripts use, and
    /// `CLIENT UNBLOCK` must reach the node where the client blocks.
    pub async fn on_node_of<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str) -> RedisResult<T> {
        if let Inner::Cluster(c) = &mut self.0 {
            let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            let v = c.route_command(cmd.clone(), routing).await?;
            return ::redis::from_redis_value(v).map_err(Into::into);
        }
        cmd.query_async(self).await
    }
}

/// Opens connections: the shared one at start, and dedicated ones for blocking waits.
pub(super) enum Connector {
    Single(Box<::redis::Client>),
    /// Dedicated cluster connections are built from the configuration, with their own
    /// response timeout.
    Cluster,
    /// Dedicated connections go to the master the sentinels name at that moment.
    Sentinel(Arc<Sentinels>),
}

/// How many times the cluster client retries a command (redirects, reconnects) before it
/// gives up: few, so that an unreachable cluster is one clear error, not minutes of retries.
const CLUSTER_RETRIES: u32 = 3;

impl Connector {
    /// Connects as `cfg` says and checks the server answers. A URL that is a comma-separated
    /// list of URLs names the seed nodes of a cluster; a single URL is a cluster when the
    /// server says so (`INFO cluster`), so pointing `REDIS_URL` at any node of a cluster
    /// works.
    pub(super) async fn open(cfg: &RedisConfig) -> Result<(Connector, RedisConnection)> {
        if is_sentinel_url(&cfg.url) {
            return Self::sentinel(cfg).await;
        }
        let urls = seed_urls(cfg);
        let [url] = urls.as_slice() else {
            if urls.is_empty() {
                return Err(Error::Config("the Redis URL is empty".into()));
            }
            return Self::cluster(cfg).await;
        };
        let client = single_client(url, &cfg.tls)?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.response_timeout))
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let mut conn =
            client.get_connection_manager_with_config(mgr_cfg).await.map_err(connect_err(url))?;
        let _: String =
            ::redis::cmd("PING").query_async(&mut conn).await.map_err(connect_err(url))?;
        // A user whose ACL forbids INFO gets the single-server path; a cluster would then
        // answer MOVED, which names the problem.
        let info: RedisResult<String> =
            ::redis::cmd("INFO").arg("cluster").query_async(&mut conn).await;
        if info.is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_enabled:1")) {
            drop(conn);
            return Self::cluster(cfg).await;
        }
        Ok((Connector::Single(Box::new(client)), RedisConnection(Inner::Manager(conn))))
    }

    async fn cluster(cfg: &RedisConfig) -> Result<(Connector, RedisConnection)> {
        let client = cluster_client(cfg, cfg.response_timeout)?;
        let mut conn = client.get_async_connection().await.map_err(connect_err(&cfg.url))?;
        let _: String =
            ::redis::cmd("PING").query_async(&mut conn).await.map_err(connect_err(&cfg.url))?;
        Ok((Connector::Cluster, RedisConnection(Inner::Cluster(conn))))
    }

    async fn sentinel(cfg: &RedisConfig) -> Result<(Connector, RedisConnection)> {
        let sentinels = Arc::new(Sentinels::new(cfg, sentinel_certificates(cfg)?)?);
        let mut conn = RedisConnection(Inner::Sentinel(SentinelConnection(sentinels.clone())));
        let _: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::Connect { url: sentinels.url().to_owned(), source })?;
        Ok((Connector::Sentinel(sentinels), conn))
    }

    /// A connection of its own for one blocking command at a time, whose responses may take
    /// up to `response_timeout`. On a cluster it is a cluster connection of its own, so the
    /// node connection it blocks is not shared with anything else.
    pub(super) async fn dedicated(
        &self,
        cfg: &RedisConfig,
        response_timeout: Duration,
    ) -> Result<RedisConnection> {
        Ok(match self {
            Connector::Single(client) => {
                let c = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(cfg.connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                RedisConnection(Inner::Plain(
                    client.get_multiplexed_async_connection_with_config(&c).await?,
                ))
            }
            Connector::Cluster => RedisConnection(Inner::Cluster(
                cluster_client(cfg, response_timeout)?.get_async_connection().await?,
            )),
            Connector::Sentinel(s) => {
                RedisConnection(Inner::Plain(s.master(response_timeout).await?))
            }
        })
    }
}

/// The URLs in `cfg.url`: one, or the comma-separated seed nodes of a cluster.
fn seed_urls(cfg: &RedisConfig) -> Vec<&str> {
    cfg.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// The URL with its password (if any) replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        // The seed nodes of a cluster, each with its own credentials.
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!(
                "{}://{}{}***@{}",
                &url[..s],
                user,
                if user.is_empty() { "" } else { ":" },
                &url[at + 1..]
            )
        }
        _ => url.to_owned(),
    }
}

/// The one error of a connection that failed: the server (without its password) and why.
fn connect_err(url: &str) -> impl Fn(::redis::RedisError) -> Error + '_ {
    move |source| Error::Connect { url: redact_url(url), source }
}

fn cluster_client(cfg: &RedisConfig, response: Duration) -> Result<ClusterClient> {
    let urls = seed_urls(cfg);
    let mut b = ClusterClientBuilder::new(urls.clone())
        .retries(CLUSTER_RETRIES)
        .connection_timeout(cfg.connect_timeout)
        .response_timeout(response);
    if !cfg.tls.is_empty() {
        b = with_certs(b, &cfg.tls, &urls)?;
    }
    b.build().map_err(connect_err(&cfg.url))
}

fn single_client(url: &str, tls: &TlsFiles) -> Result<::redis::Client> {
    if tls.is_empty() {
        return ::redis::Client::open(url).map_err(connect_err(url));
    }
    require_rediss(&[url])?;
    build_tls_client(url, tls)
}

fn require_rediss(urls: &[&str]) -> Result<()> {
    match urls.iter().find(|u| !u.starts_with("rediss://")) {
        Some(u) => Err(Error::Config(format!(
            "TLS certificate files are set but `{}` is not a rediss:// URL",
            redact_url(u)
        ))),
        None => Ok(()),
    }
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read the {what} `{}`: {e}", path.display())))
}

/// The certificates of a Sentinel URL's TLS files (which need `rediss+sentinel://`).
#[cfg(feature = "tls")]
fn sentinel_certificates(cfg: &RedisConfig) -> Result<Certificates> {
    if cfg.tls.is_empty() {
        return Ok(None);
    }
    if !cfg.url.trim_start().starts_with("rediss+sentinel://") {
        return Err(Error::Config(format!(
            "TLS certificate files are set but `{}` is not a rediss+sentinel:// URL",
            redact_url(&cfg.url)
        )));
    }
    Ok(Some(certificates(&cfg.tls)?))
}

#[cfg(not(feature = "tls"))]
fn sentinel_certificates(cfg: &RedisConfig) -> Result<Certificates> {
    if cfg.tls.is_empty() { Ok(()) } else { Err(no_tls()) }
}

#[cfg(feature = "tls")]
fn certificates(tls: &TlsFiles) -> Result<::redis::TlsCertificates> {
    // redis-rs builds its rustls configuration with the process-wide crypto provider.
    // Installing ring here makes that choice explicit (it fails harmlessly when a provider
    // is already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(::redis::ClientTlsConfig {
            client_cert: read_pem("client certificate", cert)?,
            client_key: read_pem("client key", key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "a client certificate needs its key and a key its certificate (REDIS_CLIENT_CERT and REDIS_CLIENT_KEY)".into(),
            ));
        }
    };
    let root_cert = tls.ca_cert.as_deref().map(|p| read_pem("CA certificate", p)).transpose()?;
    Ok(::redis::TlsCertificates { client_tls, root_cert })
}

#[cfg(feature = "tls")]
fn build_tls_client(url: &str, tls: &TlsFiles) -> Result<::redis::Client> {
    ::redis::Client::build_with_tls(url, certificates(tls)?).map_err(connect_err(url))
}

#[cfg(feature = "tls")]
fn with_certs(
    b: ClusterClientBuilder,
    tls: &TlsFiles,
    urls: &[&str],
) -> Result<ClusterClientBuilder> {
    require_rediss(urls)?;
    Ok(b.certs(certificates(tls)?))
}

#[cfg(not(feature = "tls"))]
fn build_tls_client(_: &str, _: &TlsFiles) -> Result<::redis::Client> {
    Err(no_tls())
}

#[cfg(not(feature = "tls"))]
fn with_certs(_: ClusterClientBuilder, _: &TlsFiles, _: &[&str]) -> Result<ClusterClientBuilder> {
    Err(no_tls())
}

#[cfg(not(feature = "tls"))]
fn no_tls() -> Error {
    Error::Config(
        "TLS certificate files are set but jobs-core was built without its `tls` feature".into(),
    )
}
