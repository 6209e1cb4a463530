//! Signals to child processes a test started (runners it stops as an operator would).

use std::io;
use std::process::Child;

/// Sends SIGTERM to `child`, as `kill PID` or a service manager would.
///
/// # Errors
///
/// What `kill(2)` reports (for instance, the process is gone and has been waited for).
#[allow(unsafe_code)]
pub fn sigterm(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid does not fit pid_t"))?;
    // SAFETY: `kill` has no memory-safety preconditions; `pid` is a child of ours that the
    // caller still holds, so it has not been waited for and the id cannot have been reused.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
