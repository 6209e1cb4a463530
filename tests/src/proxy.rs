//! [`CutProxy`]: a loopback TCP proxy in front of a Redis server that can lose a reply.
//!
//! It forwards bytes both ways unchanged. Armed with [`CutProxy::cut_reply_to`], it lets
//! the next request that contains a given byte string through to the server (so the server
//! runs it) and then drops the server's reply and closes that connection, as a reset or a
//! timeout would: the client sees its call fail although the call took effect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A TCP proxy on `127.0.0.1` that can cut the connection before a reply is delivered.
/// Stops accepting (and closes its connections) when dropped.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The bytes whose request is to lose its reply, while armed.
    needle: Mutex<Option<Vec<u8>>>,
    /// Replies dropped so far.
    cuts: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Wakes the connection tasks when the proxy is dropped.
    stop: Notify,
}

impl CutProxy {
    /// Starts a proxy on a free loopback port that forwards every connection to `target`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound, or `target` is not a loopback address.
    pub async fn start(target: SocketAddr) -> CutProxy {
        assert!(target.ip().is_loopback(), "the proxy forwards to loopback only");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind a loopback port for the proxy: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("proxy address: {e}"));
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, target, s.clone()));
            }
        });
        CutProxy { addr, shared, accept }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<port>/`, the URL that reaches the target through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Arms the proxy: the next request whose bytes contain `needle` reaches the server,
    /// and the server's next reply on that connection is dropped and the connection closed.
    /// One cut per arming.
    pub fn cut_reply_to(&self, needle: impl Into<Vec<u8>>) {
        *self.shared.needle.lock().unwrap_or_else(|e| e.into_inner()) = Some(needle.into());
    }

    /// How many replies the proxy has dropped.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// How many connections the proxy has accepted (a client that reconnects after a cut
    /// makes one more).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.stop.notify_waiters();
    }
}

/// Forwards one connection until either side closes, the proxy stops, or a cut.
async fn relay(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Set by the request direction when the reply to come is to be dropped.
    let pending = Arc::new(AtomicBool::new(false));
    let up = requests(cr, sw, shared.clone(), pending.clone());
    let down = replies(sr, cw, shared.clone(), pending);
    // Whichever direction ends (a close, or the cut) ends both: dropping the futures
    // closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = shared.stop.notified() => {}
    }
}

async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    pending: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        {
            let mut needle = shared.needle.lock().unwrap_or_else(|e| e.into_inner());
            let hit = needle
                .as_deref()
                .is_some_and(|k| !k.is_empty() && buf[..n].windows(k.len()).any(|w| w == k));
            if hit {
                *needle = None;
                pending.store(true, Ordering::SeqCst);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn replies(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    pending: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if pending.swap(false, Ordering::SeqCst) {
            // The server ran the request; its reply never reaches the client.
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
