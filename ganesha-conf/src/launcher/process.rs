//! Child and detached processes: signals, bounded waits, identity by start time.

use super::{io_err, LaunchError, Proc, POLL, TERM_GRACE};
use std::fs;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

pub(super) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

pub(super) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Polls our child until it exits or `timeout` passes; true if it exited (and was reaped).
pub(super) fn wait_child(child: &mut Child, timeout: Duration) -> Result<bool, LaunchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if child
            .try_wait()
            .map_err(io_err(format!("waiting for pid {}", child.id())))?
            .is_some()
        {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        thread::sleep(POLL);
    }
}

pub(super) fn kill_now(p: &mut Proc) -> Result<(), LaunchError> {
    if p.child.try_wait().ok().flatten().is_some() {
        return Ok(());
    }
    signal(p.pid(), nix::sys::signal::Signal::SIGKILL);
    if wait_child(&mut p.child, TERM_GRACE)? {
        Ok(())
    } else {
        Err(LaunchError::Unkillable(p.pid()))
    }
}

pub(super) fn terminate(mut p: Proc) -> Result<(), LaunchError> {
    if p.child.try_wait().ok().flatten().is_some() {
        return Ok(());
    }
    signal(p.pid(), nix::sys::signal::Signal::SIGTERM);
    if wait_child(&mut p.child, TERM_GRACE)? {
        return Ok(());
    }
    tracing::warn!(
        pid = p.pid(),
        name = p.name,
        "no exit after SIGTERM; sending SIGKILL"
    );
    kill_now(&mut p)
}

/// The start time (clock ticks since boot, field 22 of `/proc/PID/stat`) of a live,
/// non-zombie process; `None` if there is none.
pub(super) fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: parse after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is at index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True if a process with this PID runs and, when `start_time` is non-zero, is the same
/// process that was recorded (guards against PID reuse).
pub fn pid_alive(pid: u32, start_time: u64) -> bool {
    match proc_start_time(pid) {
        Some(t) => start_time == 0 || t == start_time,
        None => false,
    }
}

/// One process recorded for a detached gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// Its role: `ganesha`, `rpcbind` or `holder`.
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Whether that very process still runs.
    pub alive: bool,
}
