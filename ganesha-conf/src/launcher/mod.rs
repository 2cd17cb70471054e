//! The launcher: the one way Strata starts Ganesha (DESIGN §2).
//!
//! It renders a [`GaneshaConf`] into a work directory, starts `rpcbind` and `ganesha.nfsd`
//! either in the host's namespaces or in a private network + mount namespace, waits for
//! readiness by polling (never a fixed sleep), and stops everything it started by PID.
//!
//! Private mode follows `ganesha-fsal.md` §5: a holder process (`unshare --net --mount sleep
//! infinity`) owns the namespaces; everything else enters them with `nsenter`. Only the network
//! and mount namespaces are private (not the PID namespace), so each process is started in the
//! foreground (`rpcbind -f`, `ganesha.nfsd -F`) as our own child and killed by its PID.

mod daemons;
mod detached;
mod namespace;
mod process;
mod s3;
mod tools;

pub use self::detached::{detached_status, stop_detached, DetachedStatus};
use self::namespace::nsenter_command;
use self::process::{kill_now, terminate};
pub use self::process::{pid_alive, ProcStatus};
pub use self::s3::{Latency, S3ServerOptions};
use self::tools::{absolute, resolve, uses_strata_fsal};
pub use self::tools::{find_in_path, log_tail, require_tool};
use crate::conf::GaneshaConf;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The line Ganesha logs once it serves requests.
const READY_MARKER: &str = "NFS SERVER INITIALIZED";

/// How often readiness and exits are polled.
const POLL: Duration = Duration::from_millis(20);

/// How long a process gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// How long rpcbind and the namespace holder get to come up.
const AUX_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of the log quoted in errors.
const LOG_TAIL: u64 = 4096;

/// Name of the state file that a detached gateway leaves in its work directory.
pub const STATE_FILE: &str = "gateway.state";

/// Where the gateway's processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMode {
    /// In the caller's network and mount namespaces (for `strata up` on a machine without NFS
    /// services). rpcbind is started only if none answers on 127.0.0.1.
    Host,
    /// In a private network + mount namespace with its own loopback, `/run` and rpcbind, so
    /// standard ports are free and nothing touches the host (tests, benchmarks, trying it out).
    Private,
}

impl NamespaceMode {
    fn as_str(self) -> &'static str {
        match self {
            NamespaceMode::Host => "host",
            NamespaceMode::Private => "private",
        }
    }
}

/// What [`Gateway::start`] needs.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Directory for the rendered ganesha.conf, the log, pid and state files and the NFSv4
    /// recovery root. Created if missing.
    pub work_dir: PathBuf,
    /// The configuration. The launcher sets `core.plugins_dir` (from `plugin_dir`),
    /// `nfsv4.recovery_root` (`work_dir/recovery`) and `nfsv4.graceless = true`, unless the
    /// conf sets `nfsv4.grace_period`: a conf that asks for a grace period (so that NFSv4
    /// clients can reclaim their opens after a restart) keeps its `Graceless`.
    pub conf: GaneshaConf,
    /// The directory holding `libfsalstrata.so`; `None` keeps Debian's default plugin directory
    /// (enough for Ganesha's own VFS and MEM FSALs).
    pub plugin_dir: Option<PathBuf>,
    /// Host or private namespaces.
    pub namespace: NamespaceMode,
    /// How long to wait for "NFS SERVER INITIALIZED" after starting ganesha.nfsd.
    pub ready_timeout: Duration,
    /// An S3 test server to start in the gateway's namespaces before Ganesha (`None`: none).
    pub s3_server: Option<S3ServerOptions>,
}

/// Errors of the launcher. Startup errors carry the tail of Ganesha's log.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A filesystem or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A required program is not installed.
    #[error("{0} not found in PATH (run scripts/setup)")]
    MissingTool(String),
    /// The plugin directory has no `libfsalstrata.so` although the conf uses FSAL STRATA.
    #[error(
        "{0} does not exist: build the workspace (cargo build) or pass the right plugin directory"
    )]
    MissingPlugin(PathBuf),
    /// A helper step (namespace setup, rpcbind) failed.
    #[error("{0}")]
    Setup(String),
    /// ganesha.nfsd exited before it was ready.
    #[error("ganesha.nfsd exited during startup ({status}); log {log}:\n{tail}")]
    EarlyExit {
        /// Its exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// ganesha.nfsd did not become ready in time (it has been stopped).
    #[error("ganesha.nfsd not ready after {timeout:?}; log {log}:\n{tail}")]
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
        /// The log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// No detached gateway is recorded in this work directory.
    #[error("no gateway recorded in {0} (not started, or already stopped)")]
    NotRunning(PathBuf),
    /// The state file of a detached gateway is unreadable.
    #[error("bad state file {path}: {reason}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A process did not exit after SIGKILL within the bound.
    #[error("process {0} did not exit after SIGKILL")]
    Unkillable(u32),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// A process we started: the child handle plus its identity for PID-reuse checks.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    start_time: u64,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A running gateway: rpcbind + ganesha.nfsd (+ the namespace holder in private mode).
/// Dropping it stops everything it started.
#[derive(Debug)]
pub struct Gateway {
    work_dir: PathBuf,
    conf_path: PathBuf,
    log_path: PathBuf,
    pid_path: PathBuf,
    out_path: PathBuf,
    mode: NamespaceMode,
    ready_timeout: Duration,
    /// Where the current ganesha.nfsd run's part of the log starts.
    log_start: u64,
    holder: Option<Proc>,
    rpcbind: Option<Proc>,
    s3: Option<Proc>,
    /// The S3 server's delaying proxy.
    s3_proxy: Option<Proc>,
    /// The S3 server's options, kept to restart it.
    s3_options: Option<S3ServerOptions>,
    ganesha: Option<Proc>,
}

impl Gateway {
    /// Renders the conf into `opts.work_dir`, starts rpcbind and ganesha.nfsd and waits until
    /// Ganesha logs "NFS SERVER INITIALIZED". On any failure, everything started so far is
    /// stopped again and the error carries the log's tail.
    pub fn start(opts: LaunchOptions) -> Result<Gateway, LaunchError> {
        for tool in ["ganesha.nfsd", "rpcbind", "rpcinfo"] {
            require_tool(tool)?;
        }
        if opts.namespace == NamespaceMode::Private {
            for tool in ["unshare", "nsenter", "ip", "mount", "sleep"] {
                require_tool(tool)?;
            }
        }
        let work_dir = absolute(&opts.work_dir)?;
        let recovery = work_dir.join("recovery");
        fs::create_dir_all(&recovery)
            .map_err(io_err(format!("creating {}", recovery.display())))?;

        let mut conf = opts.conf;
        if let Some(dir) = &opts.plugin_dir {
            let dir = absolute(dir)?;
            if uses_strata_fsal(&conf) {
                let lib = dir.join("libfsalstrata.so");
                if !lib.is_file() {
                    return Err(LaunchError::MissingPlugin(lib));
                }
            }
            conf.core.plugins_dir = Some(dir);
        }
        conf.nfsv4.recovery_root = Some(recovery);
        if conf.nfsv4.grace_period.is_none() {
            conf.nfsv4.graceless = true;
        }

        let conf_path = work_dir.join("ganesha.conf");
        fs::write(&conf_path, conf.render())
            .map_err(io_err(format!("writing {}", conf_path.display())))?;

        let mut gw = Gateway {
            log_path: work_dir.join("ganesha.log"),
            pid_path: work_dir.join("ganesha.pid"),
            out_path: work_dir.join("ganesha.out"),
            conf_path,
            work_dir,
            mode: opts.namespace,
            ready_timeout: opts.ready_timeout,
            log_start: 0,
            holder: None,
            rpcbind: None,
            s3: None,
            s3_proxy: None,
            s3_options: opts.s3_server.clone(),
            ganesha: None,
        };
        // On error `gw` is dropped, which stops whatever was started.
        if gw.mode == NamespaceMode::Private {
            gw.start_namespace()?;
        }
        gw.start_rpcbind()?;
        if let Some(s3) = &opts.s3_server {
            require_tool("curl")?;
            gw.start_s3(s3, true)?;
        }
        gw.start_ganesha()?;
        Ok(gw)
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Ganesha's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The rendered ganesha.conf.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// The namespace mode.
    pub fn namespace(&self) -> NamespaceMode {
        self.mode
    }

    /// PID of ganesha.nfsd (0 if it is not running, e.g. after [`Gateway::kill_ganesha`]).
    pub fn ganesha_pid(&self) -> u32 {
        self.ganesha.as_ref().map_or(0, Proc::pid)
    }

    /// PIDs of every process this gateway started and still owns (holder, rpcbind, ganesha),
    /// for leak checks.
    pub fn pids(&self) -> Vec<u32> {
        [
            &self.holder,
            &self.rpcbind,
            &self.s3,
            &self.s3_proxy,
            &self.ganesha,
        ]
        .into_iter()
        .flatten()
        .map(Proc::pid)
        .collect()
    }

    /// The network namespace the gateway's processes share (`/proc/<holder>/ns/net`); None in
    /// host mode. A test thread that `setns(2)`s into it reaches the gateway's loopback (the
    /// S3 test server, Ganesha) with its own sockets.
    pub fn net_namespace(&self) -> Option<PathBuf> {
        self.holder
            .as_ref()
            .map(|h| PathBuf::from(format!("/proc/{}/ns/net", h.pid())))
    }

    /// A Command that runs `program` inside the gateway's namespaces (`nsenter` in private
    /// mode, the program itself in host mode).
    /// A bare program name is looked up in `PATH` plus the sbin directories (see
    /// [`find_in_path`]), so `rpcbind` or `showmount` work from a non-root `PATH` too.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let program = resolve(program.as_ref());
        match &self.holder {
            Some(h) => nsenter_command(h.pid(), &program),
            None => Command::new(program),
        }
    }

    /// The whole text of Ganesha's log so far (empty if it does not exist yet).
    pub fn log_text(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Configuration and export errors that the current ganesha.nfsd run logged. Ganesha 4.3
    /// still starts (and logs "NFS SERVER INITIALIZED") when an export fails, e.g. an unloadable
    /// FSAL or a STRATA block our FSAL refuses, so callers that need their exports (such as
    /// `strata up`) check that this is empty. Each entry is one log line.
    pub fn export_errors(&self) -> Vec<String> {
        let Ok(mut f) = fs::File::open(&self.log_path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.log_start)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| {
                l.contains(":CONFIG :CRIT")
                    || l.contains(":FSAL :CRIT")
                    || l.contains("Failed to call create_export")
                    || l.contains("No export entries found")
            })
            .map(str::to_string)
            .collect()
    }

    /// Stops everything: ganesha.nfsd (SIGTERM, bounded wait, SIGKILL), then rpcbind, then the
    /// namespace holder; every child is reaped.
    pub fn stop(mut self) -> Result<(), LaunchError> {
        self.stop_all()
    }

    /// Leaves the processes running (for `strata up`) and records them in
    /// `work_dir/gateway.state`; returns that file's path. [`stop_detached`] stops them.
    pub fn detach(mut self) -> Result<PathBuf, LaunchError> {
        let path = self.work_dir.join(STATE_FILE);
        let mut text = String::new();
        text.push_str(&format!("namespace={}\n", self.mode.as_str()));
        text.push_str(&format!("conf={}\n", self.conf_path.display()));
        text.push_str(&format!("log={}\n", self.log_path.display()));
        for p in [
            &self.ganesha,
            &self.s3,
            &self.s3_proxy,
            &self.rpcbind,
            &self.holder,
        ]
        .into_iter()
        .flatten()
        {
            text.push_str(&format!("{}={} {}\n", p.name, p.pid(), p.start_time));
        }
        let tmp = self.work_dir.join(format!("{STATE_FILE}.tmp"));
        fs::write(&tmp, text).map_err(io_err(format!("writing {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("writing {}", path.display())))?;
        // Forget the children: they keep running; init reaps them once we exit.
        self.ganesha = None;
        self.s3 = None;
        self.s3_proxy = None;
        self.rpcbind = None;
        self.holder = None;
        Ok(path)
    }

    fn stop_all(&mut self) -> Result<(), LaunchError> {
        let mut first_err = None;
        for p in [
            self.ganesha.take(),
            self.s3_proxy.take(),
            self.s3.take(),
            self.rpcbind.take(),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = terminate(p) {
                first_err.get_or_insert(e);
            }
        }
        // The holder is `sleep`: nothing to shut down gracefully.
        if let Some(mut p) = self.holder.take() {
            if let Err(e) = kill_now(&mut p) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}
