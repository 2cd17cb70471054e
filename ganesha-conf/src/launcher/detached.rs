//! A gateway left running by `strata up` (its state file): status and stop from another
//! process.

use super::process::{pid_alive, signal, ProcStatus};
use super::{io_err, LaunchError, NamespaceMode, POLL, STATE_FILE, TERM_GRACE};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Status of a detached gateway, from its state file.
#[derive(Debug, Clone)]
pub struct DetachedStatus {
    /// The state file.
    pub state_file: PathBuf,
    /// Host or private namespaces.
    pub namespace: NamespaceMode,
    /// The rendered ganesha.conf.
    pub conf_path: PathBuf,
    /// Ganesha's log.
    pub log_path: PathBuf,
    /// The recorded processes (ganesha first).
    pub processes: Vec<ProcStatus>,
}

impl DetachedStatus {
    /// True if ganesha.nfsd (and everything else recorded) still runs.
    pub fn running(&self) -> bool {
        !self.processes.is_empty() && self.processes.iter().all(|p| p.alive)
    }

    /// PID of ganesha.nfsd as recorded.
    pub fn ganesha_pid(&self) -> Option<u32> {
        self.processes
            .iter()
            .find(|p| p.name == "ganesha")
            .map(|p| p.pid)
    }
}

impl fmt::Display for DetachedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.running() {
            "running"
        } else {
            "not running"
        };
        writeln!(
            f,
            "gateway: {state} ({} namespace)",
            self.namespace.as_str()
        )?;
        for p in &self.processes {
            let a = if p.alive { "alive" } else { "gone" };
            writeln!(f, "  {:<8} pid {:<8} {a}", p.name, p.pid)?;
        }
        writeln!(f, "  conf     {}", self.conf_path.display())?;
        write!(f, "  log      {}", self.log_path.display())
    }
}

pub(super) struct StateRecord {
    pub(super) namespace: NamespaceMode,
    pub(super) conf: PathBuf,
    pub(super) log: PathBuf,
    pub(super) procs: Vec<(String, u32, u64)>,
}

pub(super) fn read_state(work_dir: &Path) -> Result<(PathBuf, StateRecord), LaunchError> {
    let path = work_dir.join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LaunchError::NotRunning(work_dir.to_path_buf()))
        }
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let bad = |reason: String| LaunchError::BadState {
        path: path.clone(),
        reason,
    };
    let mut rec = StateRecord {
        namespace: NamespaceMode::Host,
        conf: PathBuf::new(),
        log: PathBuf::new(),
        procs: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once('=') else {
            return Err(bad(format!("line {}: no '='", n + 1)));
        };
        match k {
            "namespace" => {
                rec.namespace = match v {
                    "host" => NamespaceMode::Host,
                    "private" => NamespaceMode::Private,
                    _ => return Err(bad(format!("line {}: namespace {v:?}", n + 1))),
                }
            }
            "conf" => rec.conf = PathBuf::from(v),
            "log" => rec.log = PathBuf::from(v),
            "ganesha" | "rpcbind" | "holder" | "s3" | "s3-proxy" => {
                let mut it = v.split_whitespace().map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(pid)), Some(Ok(start))) if pid > 0 && pid <= u64::from(u32::MAX) => {
                        rec.procs.push((k.to_string(), pid as u32, start))
                    }
                    _ => return Err(bad(format!("line {}: bad pid record {v:?}", n + 1))),
                }
            }
            _ => return Err(bad(format!("line {}: unknown key {k:?}", n + 1))),
        }
    }
    Ok((path, rec))
}

/// Status of a gateway left running by [`Gateway::detach`](crate::launcher::Gateway::detach) in `work_dir` (for `strata status`).
pub fn detached_status(work_dir: &Path) -> Result<DetachedStatus, LaunchError> {
    let (state_file, rec) = read_state(work_dir)?;
    Ok(DetachedStatus {
        state_file,
        namespace: rec.namespace,
        conf_path: rec.conf,
        log_path: rec.log,
        processes: rec
            .procs
            .iter()
            .map(|(name, pid, start)| ProcStatus {
                name: name.clone(),
                pid: *pid,
                alive: pid_alive(*pid, *start),
            })
            .collect(),
    })
}

/// Stops a gateway left running by [`Gateway::detach`](crate::launcher::Gateway::detach) in `work_dir` (for `strata down`):
/// SIGTERM to ganesha.nfsd with a bounded wait, then SIGKILL; then rpcbind; then the namespace
/// holder. Only processes whose PID and start time match the record are signalled. The state
/// file is removed once all are gone.
pub fn stop_detached(work_dir: &Path) -> Result<(), LaunchError> {
    let (path, rec) = read_state(work_dir)?;
    for (name, pid, start) in &rec.procs {
        if !pid_alive(*pid, *start) {
            continue;
        }
        let first = if name == "holder" {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        signal(*pid, first);
        if !wait_gone(*pid, *start, TERM_GRACE) {
            signal(*pid, nix::sys::signal::Signal::SIGKILL);
            if !wait_gone(*pid, *start, TERM_GRACE) {
                return Err(LaunchError::Unkillable(*pid));
            }
        }
    }
    fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
    Ok(())
}

pub(super) fn wait_gone(pid: u32, start: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid, start) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}
