//! How a script call is sent: `FCALL` of the function library where the server has Redis
//! Functions, `EVALSHA` of the script elsewhere (see `scripts.rs`), decided once per
//! backend at connect.

use ::redis::{Cmd, FromRedisValue, RedisError, RedisResult, ToRedisArgs};

use super::RedisBackend;
use super::conn::RedisConnection;
use super::scripts::{LIBRARY, Op};
use crate::error::{Error, Result};

/// A call's arguments (`ARGV`), written by the backend's operations.
#[derive(Default)]
pub(super) struct Args(Vec<Vec<u8>>);

impl Args {
    /// Appends `arg` (several arguments for a list).
    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.0);
        self
    }
}

/// Whether `e` says the function called is not on the node (its library is not loaded).
fn is_missing_function(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// Loads the library on the node of `key` (the namespace's node). A library already there
/// (another client loaded it first) is no error.
async fn load_library(conn: &mut RedisConnection, key: &str) -> RedisResult<()> {
    let mut load = ::redis::cmd("FUNCTION");
    load.arg("LOAD").arg(&LIBRARY.source);
    match conn.on_node_of::<String>(&load, key).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Loads the library on the namespace's node and says whether calls use it: not when the
/// server has no Functions (Redis before 7: an unknown command) or refuses them (an ACL
/// without `FUNCTION`), nor when `use_functions` is off. Other errors are the caller's.
pub(super) async fn functions_available(
    conn: &mut RedisConnection,
    key: &str,
    use_functions: bool,
) -> Result<bool> {
    if !use_functions {
        return Ok(false);
    }
    match load_library(conn, key).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_io_error() => Err(e.into()),
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("unknown command") || msg.contains("unknown subcommand") {
                tracing::debug!("no Redis Functions on this server; using EVALSHA scripts");
                Ok(false)
            } else if msg.contains("NOPERM") {
                tracing::warn!(error = %e, "FUNCTION refused; using EVALSHA scripts");
                Ok(false)
            } else {
                Err(Error::Backend(format!("cannot load the function library: {e}")))
            }
        }
    }
}

impl RedisBackend {
    /// Sends one call of `op` with the namespace's jobs key, `request` as `KEYS[2]` if given,
    /// and `args`. A node that does not have the library (restarted, failed over to a
    /// server that never had it) gets it loaded, and the call is sent once more: it did not
    /// run.
    pub(super) async fn call<T: FromRedisValue>(
        &self,
        op: &Op,
        request: Option<&str>,
        args: &Args,
    ) -> RedisResult<T> {
        self.call_on(&mut self.conn.clone(), op, request, args).await
    }

    /// [`call`](Self::call) on the connection `conn`.
    pub(super) async fn call_on<T: FromRedisValue>(
        &self,
        conn: &mut RedisConnection,
        op: &Op,
        request: Option<&str>,
        args: &Args,
    ) -> RedisResult<T> {
        if !self.functions {
            return self.invocation(op, request, args).invoke_async(conn).await;
        }
        let cmd = self.fcall(op, request, args);
        match cmd.query_async(conn).await {
            Err(e) if is_missing_function(&e) => {
                tracing::debug!(function = %op.function, "function library missing; loading it");
                load_library(conn, self.keys.jobs()).await?;
                cmd.query_async(conn).await
            }
            r => r,
        }
    }

    /// The `EVALSHA` of `op`'s script with the namespace's jobs key, `request` and `args`.
    fn invocation<'a>(
        &self,
        op: &'a Op,
        request: Option<&str>,
        args: &Args,
    ) -> ::redis::ScriptInvocation<'a> {
        let mut inv = op.script.prepare_invoke();
        inv.key(self.keys.jobs());
        if let Some(request) = request {
            inv.key(request);
        }
        for a in &args.0 {
            inv.arg(a.as_slice());
        }
        inv
    }

    /// The `FCALL` of `op` with the namespace's jobs key, `request` and `args`.
    fn fcall(&self, op: &Op, request: Option<&str>, args: &Args) -> Cmd {
        let mut cmd: Cmd = ::redis::cmd("FCALL");
        cmd.arg(&op.function).arg(1 + usize::from(request.is_some())).arg(self.keys.jobs());
        if let Some(request) = request {
            cmd.arg(request);
        }
        for a in &args.0 {
            cmd.arg(a.as_slice());
        }
        cmd
    }

    /// Appends the call of `op` (`FCALL`, or `EVALSHA` without functions) to `pipe`. A
    /// missing library or script is an error reply in the pipeline's answer: the caller
    /// sends the call on its own, as [`call`](Self::call), which loads it.
    pub(super) fn add_call(
        &self,
        pipe: &mut ::redis::Pipeline,
        op: &Op,
        request: Option<&str>,
        args: &Args,
    ) {
        if self.functions {
            pipe.add_command(self.fcall(op, request, args));
        } else {
            pipe.invoke_script(&self.invocation(op, request, args));
        }
    }

    /// [`call`](Self::call) and then `then`, in one pipeline on `conn` (a single server),
    /// so that nothing comes between them: `WAIT` after a durable write. Returns both
    /// replies. A missing library or script is loaded and the pair sent once more (the
    /// call did not run).
    pub(super) async fn call_then<T: FromRedisValue, U: FromRedisValue>(
        &self,
        conn: &mut RedisConnection,
        op: &Op,
        request: Option<&str>,
        args: &Args,
        then: &Cmd,
    ) -> RedisResult<(T, U)> {
        let mut pipe = ::redis::pipe();
        if self.functions {
            pipe.add_command(self.fcall(op, request, args)).add_command(then.clone());
            return match pipe.query_async(conn).await {
                Err(e) if is_missing_function(&e) => {
                    load_library(conn, self.keys.jobs()).await?;
                    pipe.query_async(conn).await
                }
                r => r,
            };
        }
        let inv = self.invocation(op, request, args);
        pipe.invoke_script(&inv).add_command(then.clone());
        match pipe.query_async(conn).await {
            Err(e) if e.kind() == ::redis::ServerErrorKind::NoScript.into() => {
                inv.load_async(conn).await?;
                pipe.query_async(conn).await
            }
            r => r,
        }
    }
}
