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

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::conf::GaneshaConf;

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
    /// `nfsv4.recovery_root` (`work_dir/recovery`) and `nfsv4.graceless = true`.
    pub conf: GaneshaConf,
    /// The directory holding `libfsalstrata.so`; `None` keeps Debian's default plugin directory
    /// (enough for Ganesha's own VFS and MEM FSALs).
    pub plugin_dir: Option<PathBuf>,
    /// Host or private namespaces.
    pub namespace: NamespaceMode,
    /// How long to wait for "NFS SERVER INITIALIZED" after starting ganesha.nfsd.
    pub ready_timeout: Duration,
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
        conf.nfsv4.graceless = true;

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
            ganesha: None,
        };
        // On error `gw` is dropped, which stops whatever was started.
        if gw.mode == NamespaceMode::Private {
            gw.start_namespace()?;
        }
        gw.start_rpcbind()?;
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
        [&self.holder, &self.rpcbind, &self.ganesha]
            .into_iter()
            .flatten()
            .map(Proc::pid)
            .collect()
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

    /// Kills ganesha.nfsd with SIGKILL (a crash, for restart tests) and reaps it.
    pub fn kill_ganesha(&mut self) -> Result<(), LaunchError> {
        if let Some(mut p) = self.ganesha.take() {
            kill_now(&mut p)?;
        }
        Ok(())
    }

    /// Stops ganesha.nfsd if it runs (SIGTERM, bounded wait, SIGKILL), then starts it again
    /// with the same conf and waits until it is ready.
    pub fn restart_ganesha(&mut self) -> Result<(), LaunchError> {
        if let Some(p) = self.ganesha.take() {
            terminate(p)?;
        }
        self.start_ganesha()
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
        for p in [&self.ganesha, &self.rpcbind, &self.holder]
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
        self.rpcbind = None;
        self.holder = None;
        Ok(path)
    }

    fn stop_all(&mut self) -> Result<(), LaunchError> {
        let mut first_err = None;
        for p in [self.ganesha.take(), self.rpcbind.take()]
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

    fn start_namespace(&mut self) -> Result<(), LaunchError> {
        let child = Command::new(resolve(OsStr::new("unshare")))
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("starting unshare"))?;
        let pid = child.id();
        self.holder = Some(Proc {
            name: "holder",
            start_time: 0,
            child,
        });
        // unshare(2) happens after fork: poll until the holder really is in new namespaces,
        // or an nsenter would land in the host's.
        let deadline = Instant::now() + AUX_TIMEOUT;
        let own_net = fs::read_link("/proc/self/ns/net").ok();
        let own_mnt = fs::read_link("/proc/self/ns/mnt").ok();
        loop {
            let holder = self
                .holder
                .as_mut()
                .ok_or_else(|| setup_err("holder vanished"))?;
            if let Some(status) = holder
                .child
                .try_wait()
                .map_err(io_err("waiting for unshare"))?
            {
                let mut msg = String::new();
                if let Some(mut e) = holder.child.stderr.take() {
                    let _ = e.read_to_string(&mut msg);
                }
                return Err(setup_err(format!(
                    "unshare --net --mount exited ({status}): {} (root needed)",
                    msg.trim()
                )));
            }
            let net = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if net.is_some() && net != own_net && mnt != own_mnt && comm.trim() == "sleep" {
                break;
            }
            if Instant::now() > deadline {
                return Err(setup_err(
                    "the namespace holder did not enter new namespaces",
                ));
            }
            thread::sleep(POLL);
        }
        if let Some(h) = self.holder.as_mut() {
            h.start_time = proc_start_time(pid).unwrap_or(0);
        }
        self.run_in_ns(&["ip", "link", "set", "lo", "up"])?;
        // A private /run keeps rpcbind's socket and lock away from the host's.
        self.run_in_ns(&["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])?;
        Ok(())
    }

    fn run_in_ns(&self, argv: &[&str]) -> Result<(), LaunchError> {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!("running {}", argv.join(" "))))?;
        if !out.status.success() {
            return Err(setup_err(format!(
                "`{}` in the gateway namespace failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn rpcbind_answers(&self) -> bool {
        self.command("rpcinfo")
            .args(["-p", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn start_rpcbind(&mut self) -> Result<(), LaunchError> {
        if self.mode == NamespaceMode::Host && self.rpcbind_answers() {
            return Ok(());
        }
        let out = fs::File::create(self.work_dir.join("rpcbind.out"))
            .map_err(io_err("creating rpcbind.out"))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        // -f: stay in the foreground. A daemonizing rpcbind would escape our PID bookkeeping.
        let child = self
            .command("rpcbind")
            .args(["-f", "-w"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err("starting rpcbind"))?;
        let pid = child.id();
        self.rpcbind = Some(Proc {
            name: "rpcbind",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        let deadline = Instant::now() + AUX_TIMEOUT;
        loop {
            if self.rpcbind_answers() {
                return Ok(());
            }
            let rb = self
                .rpcbind
                .as_mut()
                .ok_or_else(|| setup_err("rpcbind vanished"))?;
            if let Some(status) = rb.child.try_wait().map_err(io_err("waiting for rpcbind"))? {
                self.rpcbind = None;
                let text =
                    fs::read_to_string(self.work_dir.join("rpcbind.out")).unwrap_or_default();
                return Err(setup_err(format!(
                    "rpcbind exited ({status}): {} (is another rpcbind running here?)",
                    text.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(setup_err(
                    "rpcbind did not answer `rpcinfo -p 127.0.0.1` in time",
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn start_ganesha(&mut self) -> Result<(), LaunchError> {
        let log_start = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        self.log_start = log_start;
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out_path)
            .map_err(io_err(format!("opening {}", self.out_path.display())))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        let child = self
            .command("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(&self.conf_path)
            .arg("-L")
            .arg(&self.log_path)
            .arg("-p")
            .arg(&self.pid_path)
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err("starting ganesha.nfsd"))?;
        let pid = child.id();
        self.ganesha = Some(Proc {
            name: "ganesha",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if log_contains_after(&self.log_path, log_start, READY_MARKER) {
                return Ok(());
            }
            let g = self
                .ganesha
                .as_mut()
                .ok_or_else(|| setup_err("ganesha vanished"))?;
            if let Some(status) = g.child.try_wait().map_err(io_err("waiting for ganesha"))? {
                self.ganesha = None;
                return Err(LaunchError::EarlyExit {
                    status: describe_status(status),
                    log: self.log_path.clone(),
                    tail: self.startup_tail(),
                });
            }
            if Instant::now() > deadline {
                if let Some(p) = self.ganesha.take() {
                    let _ = terminate(p);
                }
                return Err(LaunchError::Timeout {
                    timeout: self.ready_timeout,
                    log: self.log_path.clone(),
                    tail: self.startup_tail(),
                });
            }
            thread::sleep(POLL);
        }
    }

    fn startup_tail(&self) -> String {
        let mut tail = log_tail(&self.log_path);
        let out = log_tail(&self.out_path);
        if !out.trim().is_empty() {
            tail.push_str("\n--- ganesha.nfsd stdout/stderr ---\n");
            tail.push_str(&out);
        }
        tail
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

fn setup_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Setup(msg.into())
}

/// `program` as an absolute path when it is a bare name found by [`find_in_path`].
fn resolve(program: &OsStr) -> std::ffi::OsString {
    let bare = !program.as_encoded_bytes().contains(&b'/');
    match program.to_str().filter(|_| bare).and_then(find_in_path) {
        Some(p) => p.into_os_string(),
        None => program.to_os_string(),
    }
}

fn nsenter_command(target: u32, program: &OsStr) -> Command {
    let mut c = Command::new(resolve(OsStr::new("nsenter")));
    c.arg("--target")
        .arg(target.to_string())
        .args(["--net", "--mount", "--"])
        .arg(program);
    c
}

fn uses_strata_fsal(conf: &GaneshaConf) -> bool {
    conf.exports
        .iter()
        .any(|e| matches!(e.fsal, crate::conf::FsalBlock::Strata))
        || conf.strata.is_some()
}

fn absolute(p: &Path) -> Result<PathBuf, LaunchError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        let cwd = std::env::current_dir().map_err(io_err("reading the current directory"))?;
        Ok(cwd.join(p))
    }
}

/// Fails with [`LaunchError::MissingTool`] when `name` is not an executable file in `PATH`.
pub fn require_tool(name: &str) -> Result<PathBuf, LaunchError> {
    find_in_path(name).ok_or_else(|| LaunchError::MissingTool(name.to_string()))
}

/// The full path of `name` in `PATH`, then in the standard bin and sbin directories (which a
/// non-login or non-root `PATH` may lack).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).find_map(|dir| {
        let f = dir.join(name);
        let meta = fs::metadata(&f).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(f)
    })
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

fn log_contains_after(path: &Path, start: u64, needle: &str) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return false;
    }
    String::from_utf8_lossy(&buf).contains(needle)
}

/// The last few KiB of a text file (empty if unreadable).
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Polls our child until it exits or `timeout` passes; true if it exited (and was reaped).
fn wait_child(child: &mut Child, timeout: Duration) -> Result<bool, LaunchError> {
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

fn kill_now(p: &mut Proc) -> Result<(), LaunchError> {
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

fn terminate(mut p: Proc) -> Result<(), LaunchError> {
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
fn proc_start_time(pid: u32) -> Option<u64> {
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

struct StateRecord {
    namespace: NamespaceMode,
    conf: PathBuf,
    log: PathBuf,
    procs: Vec<(String, u32, u64)>,
}

fn read_state(work_dir: &Path) -> Result<(PathBuf, StateRecord), LaunchError> {
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
            "ganesha" | "rpcbind" | "holder" => {
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

/// Status of a gateway left running by [`Gateway::detach`] in `work_dir` (for `strata status`).
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

/// Stops a gateway left running by [`Gateway::detach`] in `work_dir` (for `strata down`):
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

fn wait_gone(pid: u32, start: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid, start) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}
