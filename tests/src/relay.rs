//! [`Relay`]: a TCP relay on loopback whose one direction can be held back, to put a
//! replica behind its master on demand.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// How often a relay thread looks at its flags while no data flows.
const TICK: Duration = Duration::from_millis(20);

/// Relays every connection made to its port to `127.0.0.1:<target>`, in both directions,
/// each on its own threads. While [`hold`](Self::hold) is on, what the target sends is kept
/// back (read and buffered, not forwarded), as over a slow link; [`cut`](Self::cut) closes
/// every connection and drops what was held, as a crash of the target's machine loses what
/// was still in its buffers.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    held: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl Relay {
    /// Starts a relay to `target` on a free loopback port.
    ///
    /// # Errors
    ///
    /// If no port can be bound or the accepting thread cannot start.
    pub fn start(target: u16) -> io::Result<Relay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let held = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (h, c) = (held.clone(), cut.clone());
        thread::Builder::new().name(format!("relay-{port}")).spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, target)) else {
                    continue;
                };
                let pair = client.try_clone().and_then(|cl| Ok((cl, upstream.try_clone()?)));
                let Ok((client2, upstream2)) = pair else { continue };
                let never = Arc::new(AtomicBool::new(false));
                spawn_pipe(client, upstream, never, c.clone());
                spawn_pipe(upstream2, client2, h.clone(), c.clone());
            }
        })?;
        Ok(Relay { port, held, cut })
    }

    /// The port to connect to instead of the target's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Holds back (`true`) or lets through (`false`, with what was held) what the target
    /// sends.
    pub fn hold(&self, on: bool) {
        self.held.store(on, Ordering::SeqCst);
    }

    /// Closes every relayed connection, dropping what was held, and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies `from` to `to` until either end closes or `cut`; while `held`, keeps the data.
fn spawn_pipe(mut from: TcpStream, mut to: TcpStream, held: Arc<AtomicBool>, cut: Arc<AtomicBool>) {
    let _ = thread::Builder::new().name("relay-pipe".into()).spawn(move || {
        let _ = from.set_read_timeout(Some(TICK));
        let mut kept = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if cut.load(Ordering::SeqCst) {
                break;
            }
            if !held.load(Ordering::SeqCst) && !kept.is_empty() {
                if to.write_all(&kept).is_err() {
                    break;
                }
                kept.clear();
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if held.load(Ordering::SeqCst) => kept.extend_from_slice(&buf[..n]),
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
