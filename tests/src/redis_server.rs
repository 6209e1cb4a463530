//! [`RedisServer`]: a private `redis-server` process for one test (or one test binary).

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary started by [`RedisServer`].
const REDIS_SERVER: &str = "redis-server";
/// How long a start (or restart) may take until `PING` answers.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many ports a start tries before it gives up (a free port can be taken by someone
/// else between the probe and redis-server's own bind).
const START_TRIES: usize = 5;
/// The port of a developer's own Redis: never ours, never touched.
const DEFAULT_REDIS_PORT: u16 = 6379;
/// The log file name inside the server's directory.
const LOG_FILE: &str = "redis.log";

/// A private `redis-server` on `127.0.0.1` and a free port, in its own temporary directory.
///
/// By default nothing is persisted (`--save "" --appendonly no`). With
/// [`persistent(true)`](RedisServerBuilder::persistent) it writes an AOF with
/// `appendfsync always`, so that [`restart`](Self::restart) (or [`kill`](Self::kill) then
/// `restart`) keeps every acknowledged write.
///
/// The process is killed when the value is dropped, and also when the test process dies in
/// any way (even `SIGKILL`): every server is spawned by one helper thread that lives as long
/// as the process, with `PR_SET_PDEATHSIG = SIGKILL` set in the child.
///
/// ```no_run
/// use jobs_test_support::RedisServer;
///
/// let server = RedisServer::start();
/// println!("redis at {}", server.url());
/// let persistent = RedisServer::builder().persistent(true).start();
/// # drop((server, persistent));
/// ```
///
/// # Panics
///
/// Starting panics when `redis-server` is not on `PATH` (tests never skip silently) or when
/// it does not answer `PING` within 5 s.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    /// Everything after `redis-server` except the port, kept for `restart`.
    args: Vec<OsString>,
    /// A configuration file that goes before every other argument (sentinels need one).
    conf: Option<OsString>,
    // Removed (after `Drop` has killed the process) with everything a server wrote.
    dir: TempDir,
}

/// Options for a [`RedisServer`]; see [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct RedisServerBuilder {
    persistent: bool,
    password: Option<String>,
    extra: Vec<String>,
    /// Run as a sentinel with this configuration file text (see [`crate::RedisSentinel`]).
    sentinel_conf: Option<String>,
}

impl RedisServerBuilder {
    /// Persist to an append-only file with `appendfsync always` (for restart tests).
    pub fn persistent(mut self, on: bool) -> Self {
        self.persistent = on;
        self
    }

    /// Require this password (`requirepass`); [`RedisServer::url`] then carries it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// One extra command-line argument for `redis-server`, e.g. `"--maxmemory"`, `"10mb"`.
    /// A `"--requirepass", "<pw>"` pair works like [`password`](Self::password).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// Extra command-line arguments for `redis-server`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the server and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH` or does not come up within a few tries.
    pub fn start(self) -> RedisServer {
        self.start_in(tempfile::Builder::new().prefix("jobs-redis-").tempdir().unwrap_or_else(
            |e| panic!("cannot create a temporary directory for redis-server: {e}"),
        ))
    }

    /// Run in sentinel mode, with `conf` as its (writable) configuration file.
    pub(crate) fn sentinel(mut self, conf: String) -> Self {
        self.sentinel_conf = Some(conf);
        self
    }

    pub(crate) fn start_in(self, dir: TempDir) -> RedisServer {
        let conf = self.sentinel_conf.as_ref().map(|text| {
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            OsString::from(path)
        });
        let mut args: Vec<OsString> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--protected-mode".into(),
            "yes".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            dir.path().into(),
            "--logfile".into(),
            LOG_FILE.into(),
            "--save".into(),
            "".into(),
        ];
        if self.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(OsString::from));
        } else {
            args.extend(["--appendonly", "no"].map(OsString::from));
        }
        if let Some(pw) = &self.password {
            args.extend(["--requirepass".into(), pw.into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        // A password given as a raw `--requirepass <pw>` argument counts too (the last one
        // wins, as in redis-server): without it the readiness check could not log in.
        let password = self
            .extra
            .windows(2)
            .rev()
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].clone())
            .or(self.password);

        if conf.is_some() {
            args.push("--sentinel".into());
        }
        let mut server = RedisServer { child: None, port: 0, password, args, conf, dir };
        let mut errors = Vec::new();
        for _ in 0..START_TRIES {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    errors.push(format!("no free port: {e}"));
                    continue;
                }
            };
            server.port = port;
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => errors.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "redis-server did not start after {START_TRIES} tries:\n  {}\n--- {} ---\n{}",
            errors.join("\n  "),
            LOG_FILE,
            server.log_tail()
        );
    }
}

impl RedisServer {
    /// Starts a server with the default options (no persistence, no password).
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH` or does not come up; see [`RedisServer`].
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// Options for a server: persistence, password, extra arguments.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:<port>/` (with the password, if one was set).
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, or `None` while the server is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (it has not been stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's working directory (where the AOF of a persistent server lives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A synchronous connection, for test set-up and inspection.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let conn = redis::Client::open(self.url())?.get_connection_with_timeout(READY_TIMEOUT)?;
        conn.set_read_timeout(Some(READY_TIMEOUT))?;
        conn.set_write_timeout(Some(READY_TIMEOUT))?;
        Ok(conn)
    }

    /// Stops the server gracefully (`SHUTDOWN NOSAVE`; the AOF of a persistent server is
    /// flushed), or kills it if it does not exit within 5 s. Does nothing if it is stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(mut conn) = self.connection() {
            // The server closes the connection instead of answering: the error is expected.
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut conn);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server with `SIGKILL`, as a crash would. Does nothing if it is stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port with the same
    /// directory and options (a persistent server reloads its AOF), and waits for `PING`.
    ///
    /// # Panics
    ///
    /// If the server does not come back within 5 s (for instance because another process
    /// took the port in the meantime).
    pub fn restart(&mut self) {
        self.stop();
        // A port freed a moment ago can still be held briefly; a few quick tries cover it.
        let mut last = String::new();
        for _ in 0..START_TRIES {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}: {last}\n--- {LOG_FILE} ---\n{}",
            self.port,
            self.log_tail()
        );
    }

    /// Spawns the process on `self.port` and waits until it answers as itself.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        debug_assert!(self.child.is_none());
        if self.port == DEFAULT_REDIS_PORT {
            return Err("refusing to use port 6379".into());
        }
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.args(&self.conf);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match spawn(cmd) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "redis-server not found on PATH; install it with `apt-get install -y redis-server`"
            ),
            Err(e) => return Err(format!("cannot spawn redis-server: {e}")),
        };
        self.child = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Polls (bounded by [`READY_TIMEOUT`]) until the server answers `PING` and reports our
    /// child's pid: another process on that port must never be mistaken for ours.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err("not started".into());
            };
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("redis-server exited during start-up ({status})"));
            }
            let last = match self.server_pid() {
                Ok(p) if p == pid => return Ok(()),
                Ok(p) => format!("port answered by another process (pid {p})"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!("no PING answer within {READY_TIMEOUT:?}: {last}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `PING`, then the `process_id` of `INFO server`.
    fn server_pid(&self) -> redis::RedisResult<u32> {
        let mut conn = redis::Client::open(self.url())?
            .get_connection_with_timeout(Duration::from_millis(500))?;
        conn.set_read_timeout(Some(Duration::from_millis(500)))?;
        let pong: String = redis::cmd("PING").query(&mut conn)?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .filter(|_| pong == "PONG")
            .ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "INFO has no process_id"))
            })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free on 127.0.0.1 a moment ago (the kernel picks it for port 0).
/// Never 6379.
///
/// # Errors
///
/// If no socket can be bound on loopback.
pub fn free_port() -> io::Result<u16> {
    for _ in 0..10 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        if port != DEFAULT_REDIS_PORT {
            return Ok(port);
        }
    }
    Err(io::Error::other("the kernel keeps handing out port 6379"))
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-long spawner thread, with a parent-death signal.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the process.
/// Test threads end all the time (and a server may outlive the test that started it), so
/// every server is forked by one dedicated thread that never returns: the signal then
/// fires exactly when the test process dies, however it dies.
fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        // The static sender is never dropped, so `rx` never disconnects and this thread
        // lives until the process exits.
        let spawned = thread::Builder::new().name("redis-spawner".into()).spawn(move || {
            for (mut cmd, reply) in rx {
                death_signal::kill_with_parent(&mut cmd);
                let _ = reply.send(cmd.spawn());
            }
        });
        if let Err(e) = spawned {
            panic!("cannot start the redis-spawner thread: {e}");
        }
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the redis-spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the redis-spawner thread did not answer"))?
}

// The one place this crate needs `unsafe`: `pre_exec` (code between fork and exec) and
// the two syscalls that make the kernel kill our redis-server when its parent dies.
#[allow(unsafe_code)]
mod death_signal {
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Makes the kernel send `SIGKILL` to the child when the forking thread ends.
    pub(super) fn kill_with_parent(cmd: &mut Command) {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would
                // ever send the signal, so exit now.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;

    /// Whether process `pid` is gone (a zombie waiting for its reaper counts as gone).
    fn is_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    fn wait_gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if is_gone(pid) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn set(server: &RedisServer, key: &str, value: &str) -> redis::RedisResult<()> {
        redis::cmd("SET").arg(key).arg(value).query(&mut server.connection()?)
    }

    fn get(server: &RedisServer, key: &str) -> redis::RedisResult<Option<String>> {
        redis::cmd("GET").arg(key).query(&mut server.connection()?)
    }

    #[test]
    fn start_answers_on_loopback_and_drop_kills_the_process() -> redis::RedisResult<()> {
        let server = RedisServer::start();
        assert_ne!(server.port(), DEFAULT_REDIS_PORT);
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}/", server.port()));
        let pid = server.pid().expect("a started server has a pid");
        set(&server, "k", "v")?;
        assert_eq!(get(&server, "k")?.as_deref(), Some("v"));
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(wait_gone(pid), "redis-server {pid} survived the drop of its RedisServer");
        assert!(!dir.exists(), "the temporary directory was not removed");
        Ok(())
    }

    #[test]
    fn a_volatile_server_forgets_everything_on_restart() -> redis::RedisResult<()> {
        let mut server = RedisServer::start();
        let port = server.port();
        set(&server, "k", "v")?;
        server.restart();
        assert_eq!(server.port(), port);
        assert_eq!(get(&server, "k")?, None);
        Ok(())
    }

    #[test]
    fn a_persistent_server_keeps_its_data_across_stop_kill_and_restart() -> redis::RedisResult<()> {
        let mut server = RedisServer::builder().persistent(true).start();
        let port = server.port();
        let first_pid = server.pid().expect("running");
        set(&server, "graceful", "1")?;

        server.stop();
        assert_eq!(server.pid(), None);
        assert!(!server.is_running());
        assert!(wait_gone(first_pid));
        assert!(server.connection().is_err(), "a stopped server still answers");

        server.restart();
        assert_eq!(server.port(), port, "restart must keep the port");
        assert_ne!(server.pid(), Some(first_pid));
        assert_eq!(get(&server, "graceful")?.as_deref(), Some("1"));

        // appendfsync always: an acknowledged write survives a crash.
        set(&server, "crash", "2")?;
        server.kill();
        server.restart();
        assert_eq!(get(&server, "graceful")?.as_deref(), Some("1"));
        assert_eq!(get(&server, "crash")?.as_deref(), Some("2"));
        Ok(())
    }

    #[test]
    fn password_and_extra_arguments_are_applied() -> redis::RedisResult<()> {
        let server = RedisServer::builder()
            .password("s3cret")
            .args(["--maxmemory-policy", "noeviction"])
            .start();
        assert_eq!(server.url(), format!("redis://:s3cret@127.0.0.1:{}/", server.port()));
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut server.connection()?)?;
        assert_eq!(policy, ["maxmemory-policy", "noeviction"]);
        let anonymous = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port()))?;
        let denied: redis::RedisResult<String> =
            anonymous.get_connection().and_then(|mut c| redis::cmd("GET").arg("k").query(&mut c));
        assert!(denied.is_err(), "the password was not required");

        let raw = RedisServer::builder().args(["--requirepass", "raw-pw"]).start();
        assert_eq!(raw.url(), format!("redis://:raw-pw@127.0.0.1:{}/", raw.port()));
        let pong: String = redis::cmd("PING").query(&mut raw.connection()?)?;
        assert_eq!(pong, "PONG");
        Ok(())
    }

    #[test]
    fn unique_namespaces_differ() {
        let a = crate::unique_namespace("t");
        let b = crate::unique_namespace("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t-"));
        assert!(!a.contains(['{', '}']));
    }

    const CHILD_ENV: &str = "JOBS_TEST_SUPPORT_CHILD";

    /// Run as a child process by the test below, never on its own: starts the shared server,
    /// prints its pid and port, then waits to be killed.
    #[test]
    #[ignore = "helper process for shared_server_dies_with_the_test_process"]
    fn child_holding_the_shared_server() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let shared = crate::shared();
        println!("SHARED_REDIS pid={} port={}", shared.pid().unwrap_or(0), shared.port());
        // Bounded: the parent kills us long before this ends.
        thread::sleep(Duration::from_secs(30));
    }

    #[test]
    fn shared_server_dies_with_the_test_process() -> Result<(), Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", "redis_server::tests::child_holding_the_shared_server"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // The reader ends at EOF, i.e. when the child dies; the child sleeps at most 30 s.
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test <name> ... " on the same line first.
            .find_map(|l| l.split_once("SHARED_REDIS ").map(|(_, rest)| rest.to_owned()));
        let Some(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the child did not report its shared server".into());
        };
        let field = |name: &str| -> Option<u32> {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)?.parse().ok())
        };
        let (pid, port) = (field("pid=").ok_or("no pid")?, field("port=").ok_or("no port")?);
        assert!(!is_gone(pid), "the shared server is not running");

        // SIGKILL: no destructor, no atexit; only the kernel's parent-death signal is left.
        child.kill()?;
        child.wait()?;
        assert!(
            wait_gone(pid),
            "shared redis-server {pid} (port {port}) outlived its test process"
        );
        // (The port itself is not checked: a server of a parallel test may take it at once.)
        Ok(())
    }
}
