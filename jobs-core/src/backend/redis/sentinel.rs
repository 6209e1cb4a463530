//! Redis Sentinel: the master is whichever server the sentinels name now.
//!
//! `redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/db]` (or
//! `rediss+sentinel://…` for TLS to the sentinels and the master) lists the sentinels and
//! the name of the master they watch; the credentials and the database are the master's.
//!
//! A single-server `ConnectionManager` reconnects to the address it started with, which
//! after a failover is the old master (dead, or a read-only replica). So the shared
//! connection here is a multiplexed connection that is dropped when it breaks (an I/O
//! error, a timeout, or `READONLY` from a demoted master), and the next command asks the
//! sentinels for the current master again. Dedicated connections (blocking waits) are asked
//! for the same way each time one is opened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::RedisConfig;
use crate::error::{Error, Result};

/// The CA and client certificates for `rediss+sentinel://`, read by the caller from the
/// configuration's TLS files (`None`: the system's roots).
#[cfg(feature = "tls")]
pub(super) type Certificates = Option<::redis::TlsCertificates>;
/// Without the `tls` feature there are none.
#[cfg(not(feature = "tls"))]
pub(super) type Certificates = ();

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// Whether `url` names sentinels rather than a server or cluster nodes.
pub(super) fn is_sentinel_url(url: &str) -> bool {
    let url = url.trim_start();
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// A sentinel URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    tls: bool,
    sentinels: Vec<(String, u16)>,
    master: String,
    /// `user:password` as written in the URL (still percent-encoded).
    userinfo: Option<String>,
    db: i64,
}

fn parse(url: &str) -> Result<SentinelUrl> {
    let bad = |why: &str| {
        Error::Config(format!(
            "bad Sentinel URL `{}`: {why} (expected redis+sentinel://[user:password@]host:port[,host:port…]/<master-name>[/db])",
            redacted(url)
        ))
    };
    let url = url.trim();
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
        (true, r)
    } else {
        return Err(bad("not a redis+sentinel:// or rediss+sentinel:// URL"));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()).filter(|u| !u.is_empty()), h),
        None => (None, authority),
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                (host, port.parse().map_err(|_| bad(&format!("bad port in `{h}`")))?)
            }
            _ => (h, SENTINEL_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad(&format!("no host in `{h}`")));
        }
        sentinels.push((host.to_owned(), port));
    }
    if sentinels.is_empty() {
        return Err(bad("no sentinel listed"));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts.next().ok_or_else(|| bad("no master name"))?.to_owned();
    let db = match parts.next() {
        Some(d) => d.parse().map_err(|_| bad(&format!("bad database `{d}`")))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(bad("too many path segments"));
    }
    Ok(SentinelUrl { tls, sentinels, master, userinfo, db })
}

/// The sentinels of one master and the connection to it that commands share.
pub(super) struct Sentinels {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The current shared connection, with its generation (so that only the failure of the
    /// connection in use drops it, not a late failure of one already replaced).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: std::sync::atomic::AtomicU64,
    connect_timeout: Duration,
    response_timeout: Duration,
    db: i64,
    /// The URL without its password, for errors.
    url: String,
}

impl Sentinels {
    /// The sentinels of `cfg.url` (nothing is contacted yet), with `certs` for TLS.
    pub(super) fn new(cfg: &RedisConfig, certs: Certificates) -> Result<Self> {
        let u = parse(&cfg.url)?;
        let redacted = redacted(&cfg.url);
        let client = build_client(&u, certs)
            .map_err(|source| Error::Connect { url: redacted.clone(), source })?;
        Ok(Sentinels {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            db: u.db,
            url: redacted,
        })
    }

    /// The URL without its password.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to the master the sentinels name now, with `response_timeout`.
    pub(super) async fn master(
        &self,
        response_timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let mut client = self.client.lock().await;
        self.ask(&mut client, response_timeout).await
    }

    /// Asks the sentinels (through `client`, locked by the caller) and connects to the master
    /// they name; bounded as one connect.
    async fn ask(
        &self,
        client: &mut SentinelClient,
        response_timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let ask = async {
            let master = client.async_get_client().await?;
            master.get_multiplexed_async_connection_with_config(&cfg).await
        };
        match tokio::time::timeout(self.connect_timeout * 2, ask).await {
            Ok(r) => r,
            Err(_) => {
                Err(RedisError::from((ErrorKind::Io, "no master from the sentinels in time")))
            }
        }
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The shared connection, opened (through the sentinels) if there is none. Callers that
    /// find none wait for one lookup instead of each asking the sentinels.
    async fn shared(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let conn = self.ask(&mut client, self.response_timeout).await?;
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Forgets connection `generation` when `err` says it no longer reaches a master.
    fn check<T>(&self, generation: u64, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r
            && master_lost(e)
        {
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if cur.as_ref().is_some_and(|(g, _)| *g == generation) {
                tracing::warn!(url = %self.url, error = %e, "connection to the master lost; asking the sentinels again");
                *cur = None;
            }
        }
        r
    }
}

/// Whether an error means the connection is not to a working master any more: broken,
/// silent, or talking to a server that was demoted to a replica.
fn master_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.to_string().contains("READONLY")
}

/// The URL with the password of its credentials replaced by `***`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn build_client(u: &SentinelUrl, certs: Certificates) -> RedisResult<SentinelClient> {
    let scheme = if u.tls { "rediss" } else { "redis" };
    let mut addrs = Vec::with_capacity(u.sentinels.len());
    for (host, port) in &u.sentinels {
        addrs.push(if u.tls {
            format!("{scheme}://{host}:{port}").into_connection_info()?.addr().clone()
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        });
    }
    let mut b = SentinelClientBuilder::new(addrs, &u.master, SentinelServerType::Master)?
        .set_client_to_redis_db(u.db);
    if let Some(userinfo) = &u.userinfo {
        // redis-rs decodes the percent-encoded credentials of an ordinary URL.
        let info = format!("redis://{userinfo}@localhost/").into_connection_info()?;
        let settings = info.redis_settings();
        if let Some(user) = settings.username() {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(pw) = settings.password() {
            b = b.set_client_to_redis_password(pw);
        }
    }
    if u.tls {
        b = b.set_client_to_redis_tls_mode(::redis::TlsMode::Secure);
        b = with_certificates(b, certs)?;
    }
    b.build()
}

#[cfg(feature = "tls")]
fn with_certificates(
    b: SentinelClientBuilder,
    certs: Certificates,
) -> RedisResult<SentinelClientBuilder> {
    Ok(match certs {
        Some(c) => {
            b.set_client_to_sentinel_certificates(c.clone()).set_client_to_redis_certificates(c)
        }
        None => b,
    })
}

#[cfg(not(feature = "tls"))]
fn with_certificates(
    _: SentinelClientBuilder,
    _: Certificates,
) -> RedisResult<SentinelClientBuilder> {
    Err(RedisError::from((
        ErrorKind::InvalidClientConfig,
        "rediss+sentinel:// needs jobs-core's `tls` feature",
    )))
}

/// The shared connection through the sentinels: cheap to clone.
#[derive(Clone)]
pub(super) struct SentinelConnection(pub(super) Arc<Sentinels>);

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.0.shared().await?;
            let r = conn.req_packed_command(cmd).await;
            self.0.check(generation, r)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.0.shared().await?;
            let r = conn.req_packed_commands(pipeline, offset, count).await;
            self.0.check(generation, r)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_master_credentials_and_db() {
        let u =
            parse("redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2")
                .expect("parses");
        assert_eq!(
            u,
            SentinelUrl {
                tls: false,
                sentinels: vec![
                    ("10.0.0.1".into(), 26379),
                    ("10.0.0.2".into(), SENTINEL_PORT),
                    ("::1".into(), 26380)
                ],
                master: "mymaster".into(),
                userinfo: Some("app:s%40cret".into()),
                db: 2,
            }
        );
        let t = parse("rediss+sentinel://h:1/m").expect("parses");
        assert!(t.tls && t.db == 0 && t.userinfo.is_none());
    }

    #[test]
    fn rejects_what_it_cannot_use_naming_the_form() {
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel:///m",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1/m/notadb",
            "redis+sentinel://h:1/m/0/extra",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains("expected redis+sentinel://"), "{bad}: {e}");
        }
        let e = parse("redis+sentinel://u:hunter2@h:1").expect_err("no master").to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_demoted_master_counts_as_lost() {
        let ro = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(master_lost(&ro));
        let other =
            RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "WRONGTYPE"));
        assert!(!master_lost(&other));
    }
}
