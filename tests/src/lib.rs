//! Helpers for Strata's end-to-end tests: start a gateway (Ganesha with our FSAL, or Ganesha's
//! own VFS FSAL) in a private namespace with fresh temp directories, run real NFS clients inside
//! it with bounded time, and check tools are present (failing under `CI=true`, skipping loudly
//! otherwise).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub mod commitlog;
pub mod nfs42;
pub mod nfs_rs;
pub mod s3;
pub mod soak_model;

use strata_ganesha_conf::conf::{Export, FsalBlock, GaneshaConf};
use strata_ganesha_conf::launcher::{self, Gateway, LaunchOptions, NamespaceMode};

/// How long Ganesha gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound for one client command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// The pseudo path of the default Strata export.
pub const STRATA_PSEUDO: &str = "/strata";
/// The pseudo path used for VFS exports in tests.
pub const VFS_PSEUDO: &str = "/vfs";

/// True when running under CI (`CI=true`): missing components fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks that `tool` is installed. Missing: panics under `CI=true`, otherwise prints a loud
/// SKIP line and returns false (the caller returns early).
pub fn require_tool(tool: &str) -> bool {
    if launcher::find_in_path(tool).is_some() {
        return true;
    }
    let msg = format!("{tool} is not installed (run scripts/setup)");
    if in_ci() {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIP: {msg}");
    false
}

/// [`require_tool`] for several tools; true only if all are present.
pub fn require_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| require_tool(t))
}

/// The tools every gateway test needs.
pub const GATEWAY_TOOLS: &[&str] = &[
    "ganesha.nfsd",
    "rpcbind",
    "rpcinfo",
    "unshare",
    "nsenter",
    "ip",
];

/// The directory of the cargo profile the tests were built in (`target/debug`), derived from
/// the test executable's path (`target/debug/deps/<test>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir
}

/// The directory holding `libfsalstrata.so`: `$STRATA_PLUGIN_DIR`, else the tests' own
/// profile directory. Panics with a clear message when the plugin is not there.
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(profile_dir);
    let lib = dir.join("libfsalstrata.so");
    assert!(
        lib.is_file(),
        "{} not found: run `cargo build --workspace` (scripts/test does) or set STRATA_PLUGIN_DIR",
        lib.display()
    );
    dir
}

/// Path of our libnfs client binary (built by cargo next to the test executables).
pub fn client_bin() -> PathBuf {
    let bin = profile_dir().join("strata-nfs-client");
    assert!(
        bin.is_file(),
        "{} not found: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Bytes of every file under `dir` (0 when it does not exist): a local backend's objects.
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Path of our NFSv4.2 client binary (built by cargo next to the test executables).
pub fn nfs42_client_bin() -> PathBuf {
    let bin = profile_dir().join("strata-nfs42-client");
    assert!(
        bin.is_file(),
        "{} not found: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// True if the command exited with 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// The exit code (-1 if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// `key=value` pairs of the last output line that has `key` (our client's format).
    pub fn get(&self, key: &str) -> Option<String> {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| kv_line(l).remove(key))
    }

    /// Like [`Run::get`], parsed as a number; panics with the output if absent.
    pub fn num(&self, key: &str) -> u64 {
        let v = self
            .get(key)
            .unwrap_or_else(|| panic!("no {key}= in output: {self}"));
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v} is not a number: {self}"))
    }

    /// The `op=` lines of a `strata-nfs42-client` run as maps, one per command (the open or
    /// `dir` first).
    pub fn op_lines(&self) -> Vec<BTreeMap<String, String>> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("op="))
            .map(kv_line)
            .collect()
    }

    /// Panics with the full output unless the command succeeded.
    pub fn expect_ok(self, what: &str) -> Run {
        assert!(self.ok(), "{what} failed: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Parses `a=1 b="x y" c=3` into a map.
pub fn kv_line(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let (val, tail) = if let Some(r) = rest.strip_prefix('"') {
            match r.find('"') {
                Some(end) => (&r[..end], &r[end + 1..]),
                None => (r, ""),
            }
        } else {
            match rest.find(' ') {
                Some(sp) => (&rest[..sp], &rest[sp..]),
                None => (rest, ""),
            }
        };
        out.insert(key, val.to_string());
        rest = tail.trim_start();
    }
    out
}

/// Runs `cmd` to completion with a bound on its run time (killed and reported as a panic if it
/// overruns). Stdin is closed; stdout and stderr are captured.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Run {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Run {
        status,
        stdout,
        stderr,
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns its last answer.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if a process with this PID exists (zombies count as gone).
pub fn pid_exists(pid: u32) -> bool {
    launcher::pid_alive(pid, 0)
}

/// A gateway started for one test, with its own temp directory (work dir, data dir) and its
/// own private namespace. Dropping it stops Ganesha; on a panicking test, the log's tail is
/// printed first.
pub struct TestGateway {
    /// The running gateway (None after [`TestGateway::stop`]).
    pub gw: Option<Gateway>,
    /// Strata's data directory (or the exported directory for VFS).
    pub data_dir: PathBuf,
    /// The pseudo path of the first export.
    pub pseudo: String,
    dir: tempfile::TempDir,
}

impl TestGateway {
    /// Ganesha with our FSAL: the default profile on a fresh data directory. None (skipped)
    /// when tools are missing outside CI.
    pub fn strata() -> Option<TestGateway> {
        Self::strata_with(|_| {})
    }

    /// Like [`TestGateway::strata`], with a chance to edit the conf first.
    pub fn strata_with(edit: impl FnOnce(&mut GaneshaConf)) -> Option<TestGateway> {
        if !require_tools(GATEWAY_TOOLS) {
            return None;
        }
        let dir = tempdir();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut conf = GaneshaConf::strata_default(&data_dir);
        edit(&mut conf);
        Some(
            Self::launch(dir, data_dir, conf, Some(plugin_dir())).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// Like [`TestGateway::strata`], with these `STRATA { }` parameters added.
    pub fn strata_with_params(params: &[(&str, &str)]) -> Option<TestGateway> {
        Self::strata_with(|c| {
            if let Some(pairs) = c.strata.as_mut() {
                pairs.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            }
        })
    }

    /// Ganesha's own VFS FSAL exporting a fresh temp directory at [`VFS_PSEUDO`].
    pub fn vfs() -> Option<TestGateway> {
        if !require_tools(GATEWAY_TOOLS) {
            return None;
        }
        let dir = tempdir();
        let data_dir = dir.path().join("export");
        std::fs::create_dir_all(&data_dir).expect("create export dir");
        let conf = vfs_conf(&data_dir);
        Some(Self::launch(dir, data_dir, conf, None).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts a gateway for `conf` in a private namespace, with work dir `dir/work`.
    pub fn launch(
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        conf: GaneshaConf,
        plugin_dir: Option<PathBuf>,
    ) -> Result<TestGateway, launcher::LaunchError> {
        Self::launch_with(dir, data_dir, conf, plugin_dir, None)
    }

    /// [`TestGateway::launch`] with an S3 test server started in the namespace first.
    pub fn launch_with(
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        conf: GaneshaConf,
        plugin_dir: Option<PathBuf>,
        s3_server: Option<launcher::S3ServerOptions>,
    ) -> Result<TestGateway, launcher::LaunchError> {
        let pseudo = conf
            .exports
            .first()
            .map_or_else(String::new, |e| e.pseudo.clone());
        let gw = Gateway::start(LaunchOptions {
            work_dir: dir.path().join("work"),
            conf,
            plugin_dir,
            namespace: NamespaceMode::Private,
            ready_timeout: READY_TIMEOUT,
            s3_server,
        })?;
        Ok(TestGateway {
            gw: Some(gw),
            data_dir,
            pseudo,
            dir,
        })
    }

    /// The gateway (panics after [`TestGateway::stop`]).
    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("gateway stopped")
    }

    /// The gateway, mutably.
    pub fn gw_mut(&mut self) -> &mut Gateway {
        self.gw.as_mut().expect("gateway stopped")
    }

    /// The test's temp directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nfs://127.0.0.1<pseudo><path>?version=V` for libnfs tools (`path` starts with '/').
    pub fn url(&self, version: u8, path: &str) -> String {
        format!("nfs://127.0.0.1{}{}?version={version}", self.pseudo, path)
    }

    /// The export URL with no version option (what QEMU's nfs driver accepts: NFSv3 only).
    pub fn qemu_url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1{}{}", self.pseudo, path)
    }

    /// Runs `program args` inside the gateway's namespace with [`CMD_TIMEOUT`].
    pub fn run<I, S>(&self, program: &str, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_timeout(program, args, CMD_TIMEOUT)
    }

    /// Runs `program args` inside the gateway's namespace with a given bound.
    pub fn run_timeout<I, S>(&self, program: impl AsRef<OsStr>, args: I, t: Duration) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.gw().command(program);
        cmd.args(args);
        run_bounded(cmd, t)
    }

    /// Runs our libnfs client against the export over NFS `version` (3 or 4).
    pub fn client(&self, version: u8, args: &[&str]) -> Run {
        let url = self.url(version, "");
        let mut all: Vec<&str> = vec![&url];
        all.extend_from_slice(args);
        self.run_timeout(client_bin(), all, CMD_TIMEOUT)
    }

    /// Runs the project's NFSv4.2 client (`strata-nfs42-client`) inside the gateway's
    /// namespace on `args[0]` (a path under the export) with the commands that follow.
    pub fn nfs42(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = vec!["127.0.0.1", &self.pseudo];
        all.extend_from_slice(args);
        self.run_timeout(nfs42_client_bin(), all, CMD_TIMEOUT)
    }

    /// Stops the gateway and returns the PIDs it had, for leak checks.
    pub fn stop(&mut self) -> Vec<u32> {
        match self.gw.take() {
            Some(gw) => {
                let pids = gw.pids();
                gw.stop().expect("stop gateway");
                pids
            }
            None => Vec::new(),
        }
    }

    /// Ganesha's log so far.
    pub fn log(&self) -> String {
        self.gw().log_text()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(gw) = &self.gw {
                eprintln!(
                    "--- tail of {} ---\n{}",
                    gw.log_path().display(),
                    launcher::log_tail(gw.log_path())
                );
            }
            if std::env::var_os("STRATA_KEEP_TEST_DIRS").is_some() {
                eprintln!("keeping {}", self.dir.path().display());
                let _ = std::mem::replace(&mut self.dir, tempdir()).keep();
            }
        }
        if let Some(gw) = self.gw.take() {
            let _ = gw.stop();
        }
    }
}

/// The `strata` CLI built next to the plugin; `None` (skip) when missing, a failure under CI.
pub fn strata_cli() -> Option<PathBuf> {
    let strata = plugin_dir().join("strata");
    if strata.exists() {
        return Some(strata);
    }
    assert!(
        !in_ci(),
        "{} missing (cargo build --workspace)",
        strata.display()
    );
    eprintln!("skipped: {} missing", strata.display());
    None
}

/// Runs `strata ARGS --data-dir DATA` (the CLI at `bin`), bounded by [`CMD_TIMEOUT`].
pub fn strata_at(bin: &Path, data: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--data-dir").arg(data);
    run_bounded(cmd, CMD_TIMEOUT)
}

/// A `--json` command's output, parsed (a panic naming the run when it is not JSON).
pub fn stdout_json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"))
}

/// `strata sync --wait` on the gateway with data directory `data_dir`: everything written so
/// far is on the backend when it returns.
pub fn strata_sync_wait(strata: &Path, data_dir: &Path) {
    let mut cmd = Command::new(strata);
    cmd.args(["sync", "--wait", "--timeout", "120", "--data-dir"])
        .arg(data_dir);
    run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata sync --wait");
}

/// A fresh temp directory (under `$TMPDIR`, default /tmp).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-e2e-")
        .tempdir()
        .expect("create temp dir")
}

/// The default Strata conf on `data`, with its backend in the directory `backend` (gateways
/// sharing a backend).
pub fn strata_conf_on(data: &Path, backend: &Path) -> GaneshaConf {
    let mut c = GaneshaConf::strata_default(data);
    if let Some(pairs) = c.strata.as_mut() {
        pairs.push(("Backend_Dir".into(), backend.display().to_string()));
    }
    c
}

/// A conf with one VFS export of `dir` at [`VFS_PSEUDO`] and no STRATA block.
pub fn vfs_conf(dir: &Path) -> GaneshaConf {
    let mut conf = GaneshaConf::strata_default(dir);
    conf.strata = None;
    conf.exports = vec![Export {
        export_id: 7,
        path: dir.display().to_string(),
        pseudo: VFS_PSEUDO.to_string(),
        protocols: vec![3, 4],
        max_read: 1 << 20,
        max_write: 1 << 20,
        fsal: FsalBlock::Vfs,
    }];
    conf
}

/// Deterministic test data: `len` bytes from a seed (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// SHA-256 of a file as hex, with coreutils' `sha256sum` (a real, independent tool).
pub fn sha256_file(path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let r = run_bounded(cmd, CMD_TIMEOUT).expect_ok("sha256sum");
    r.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
