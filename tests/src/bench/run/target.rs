//! One system under test: started by the launcher in its own namespace, commands run inside
//! it with a bound, memory and disk usage measured.

use super::system::{brief, parse_qemu_secs};
use super::workloads::QemuWork;
use super::{Settings, System, MEM_INODE_SIZE, MIB, S3_DELAY_MS};
use crate::bench::report::median;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use strata_ganesha_conf::conf::{Export, FsalBlock, GaneshaConf};
use strata_ganesha_conf::launcher::{Latency, S3ServerOptions};
use strata_tests::{kv_line, vfs_conf, TestGateway};

/// The byte `qemu-img bench` writes (`--pattern`): 0xa5.
pub(crate) const QEMU_PATTERN: &str = "165";

/// The S3 column's setup: the S3 test server (`scripts/setup` installs it) behind
/// `strata-delay-proxy` (built next to the plugin) at [`S3_DELAY_MS`], and `conf` pointed at it.
fn s3_setup(
    mut conf: GaneshaConf,
    dir: &Path,
    plugin_dir: &Path,
) -> Result<(GaneshaConf, S3ServerOptions), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no repository root")?;
    let weed = S3ServerOptions::setup_weed(repo);
    if !weed.is_file() {
        return Err(format!("{} missing: run scripts/setup", weed.display()));
    }
    let mut s3 = S3ServerOptions::for_tests(weed);
    s3.latency = Some(Latency {
        proxy: plugin_dir.join("strata-delay-proxy"),
        delay_ms: S3_DELAY_MS,
    });
    let creds = dir.join("s3-credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key, s3.secret_key
        ),
    )
    .map_err(|e| format!("writing {}: {e}", creds.display()))?;
    if let Some(pairs) = conf.strata.as_mut() {
        for (k, v) in [
            ("Backend", "S3".to_string()),
            ("S3_Endpoint", s3.endpoint()),
            ("S3_Bucket", s3.bucket.clone()),
            ("S3_Credentials_File", creds.display().to_string()),
        ] {
            pairs.push((k.to_string(), v));
        }
    }
    Ok((conf, s3))
}

/// What a bounded command printed.
pub(crate) struct Out {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` with a time bound; a timeout or a spawn failure is an error, not a panic.
pub(crate) fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Out, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {desc}: {e}"))?;
    let mut so = child.stdout.take().ok_or("no stdout pipe")?;
    let mut se = child.stderr.take().ok_or("no stderr pipe")?;
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {desc}: {e}")),
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {timeout:?}: {desc}"));
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(Out {
        ok: status.success(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Peak RSS (`VmHWM`, KiB) of a process, if readable.
pub(crate) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One started system with what the workloads need.
/// One system under test, started in its own namespace.
pub(crate) struct Target {
    pub(crate) tg: TestGateway,
    /// File (volume) the qemu and random workloads use, relative to the export root.
    pub(crate) file: &'static str,
    /// Its size.
    pub(crate) size: u64,
    /// Highest VmHWM seen over all ganesha.nfsd processes of this system, KiB.
    pub(crate) peak_rss_kib: u64,
    /// Strata only: the `strata` CLI, for `strata sync --wait` after write runs.
    pub(crate) strata_cli: Option<PathBuf>,
    /// Seconds each `strata sync --wait` took since the last [`Target::take_sync_note`].
    pub(crate) syncs: Vec<f64>,
}

impl Target {
    pub(crate) fn start(system: System, s: &Settings) -> Result<Target, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("strata-bench-{}-", system.name()))
            .tempdir_in(&s.tmp_base)
            .map_err(|e| format!("temp dir in {}: {e}", s.tmp_base.display()))?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("mkdir data dir: {e}"))?;
        let (conf, plugin_dir, size) = match system {
            System::Strata => (
                GaneshaConf::strata_default(&data_dir),
                Some(s.plugin_dir.clone()),
                s.image_size,
            ),
            System::Vfs => (vfs_conf(&data_dir), None, s.image_size),
            System::Mem => (mem_conf(&data_dir), None, MEM_INODE_SIZE),
            System::StrataS3 => (
                GaneshaConf::strata_default(&data_dir),
                Some(s.plugin_dir.clone()),
                s.image_size,
            ),
        };
        // GC_Grace = 0: the scrub rows measure the backend once the replaced objects are
        // deleted (with the default they go 10 minutes later); no background passes.
        let mut conf = conf;
        if let Some(pairs) = conf.strata.as_mut() {
            pairs.push(("GC_Grace".into(), "0".into()));
            pairs.push(("Scrub_Interval".into(), "0".into()));
        }
        let (conf, s3) = match system {
            System::StrataS3 => {
                let (conf, s3) = s3_setup(conf, dir.path(), &s.plugin_dir)?;
                (conf, Some(s3))
            }
            _ => (conf, None),
        };
        let tg = TestGateway::launch_with(dir, data_dir, conf, plugin_dir, s3)
            .map_err(|e| format!("starting {}: {e}", system.label()))?;
        let mut t = Target {
            tg,
            // `.raw` is a default volume suffix: on Strata this is a volume.
            file: "/bench.raw",
            size,
            peak_rss_kib: 0,
            strata_cli: system.is_strata().then(|| s.strata_cli.clone()).flatten(),
            syncs: Vec::new(),
        };
        t.sample_rss();
        Ok(t)
    }

    /// Strata: waits (untimed) until everything committed is on the backend, so the next run
    /// starts with an empty write buffer (`Write_Buffer_Size`) instead of paying for, or being
    /// throttled by, the upload of the runs before it. Other systems: nothing to do.
    pub(crate) fn settle(&mut self, s: &Settings) -> Result<(), String> {
        let Some(cli) = &self.strata_cli else {
            return Ok(());
        };
        let mut c = self.cmd(cli);
        c.args(["sync", "--wait", "--timeout"])
            .arg(s.cmd_timeout.as_secs().to_string())
            .arg("--socket")
            .arg(self.tg.data_dir.join("mgmt.sock"));
        let t0 = Instant::now();
        let out = run_bounded(c, s.cmd_timeout + Duration::from_secs(5))?;
        if !out.ok {
            return Err(format!("strata sync --wait: {}", brief(&out)));
        }
        self.syncs.push(t0.elapsed().as_secs_f64());
        Ok(())
    }

    /// A note on how long the backend upload after each run took, if there were any.
    pub(crate) fn take_sync_note(&mut self) -> Option<String> {
        let m = median(&std::mem::take(&mut self.syncs))?;
        Some(format!(
            "then the upload to the backend (`strata sync --wait`, untimed) took {m:.2} s (median)"
        ))
    }

    pub(crate) fn sample_rss(&mut self) {
        if let Some(kib) = vm_hwm_kib(self.tg.gw().ganesha_pid()) {
            self.peak_rss_kib = self.peak_rss_kib.max(kib);
        }
    }

    /// Bytes ganesha.nfsd has passed to write system calls (`/proc/PID/io` wchar: files,
    /// and its sockets). Not `write_bytes`: that counts whole page-cache folios when they are
    /// dirtied (up to 2 MiB per 4 KiB write on this kernel's ext4), far more than reaches disk.
    pub(crate) fn written_bytes(&self) -> Option<u64> {
        let pid = self.tg.gw().ganesha_pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.tg.gw().command(program)
    }

    pub(crate) fn libnfs_url(&self) -> String {
        format!("nfs://127.0.0.1{}?version=3", self.tg.pseudo)
    }

    /// `qemu-img create -f raw` of the bench image.
    pub(crate) fn create_image(&self, s: &Settings) -> Result<(), String> {
        self.create_file(self.file, s)
    }

    /// `qemu-img create -f raw` of `file` with the image size.
    pub(crate) fn create_file(&self, file: &str, s: &Settings) -> Result<(), String> {
        let mut c = self.cmd("qemu-img");
        c.args(["create", "-q", "-f", "raw"])
            .arg(self.tg.qemu_url(file))
            .arg(self.size.to_string());
        let out = run_bounded(c, s.cmd_timeout)?;
        if !out.ok {
            return Err(format!("qemu-img create: {}{}", out.stdout, out.stderr));
        }
        Ok(())
    }

    /// One `qemu-img bench` run; returns seconds as qemu-img reports them.
    /// One `qemu-img bench` run on `file`; returns (seconds as qemu-img reports them, wall
    /// seconds of the whole process: connect, run, and the flush when it closes the image).
    pub(crate) fn qemu_bench_on(
        &self,
        file: &str,
        w: &QemuWork,
        s: &Settings,
    ) -> Result<(f64, f64), String> {
        let count = (w.bytes / w.bs).max(1);
        let mut c = self.cmd("qemu-img");
        c.args(["bench", "-f", "raw"])
            .args(["-c", &count.to_string()])
            .args(["-d", &w.depth.to_string()])
            .args(["-s", &w.bs.to_string()]);
        if w.write {
            // Data, not qemu-img's default of zeros: Strata stores no zeros (`Zero_Detect`),
            // so zeros would measure another path than a guest's writes of data.
            c.args(["-w", "--pattern", QEMU_PATTERN]);
            if w.flush_every > 0 {
                c.args(["--flush-interval", &w.flush_every.to_string()]);
            }
        }
        c.arg(self.tg.qemu_url(file));
        let t0 = Instant::now();
        let out = run_bounded(c, s.cmd_timeout)?;
        let wall = t0.elapsed().as_secs_f64();
        if !out.ok {
            return Err(format!("qemu-img bench: {}", brief(&out)));
        }
        let secs = parse_qemu_secs(&out.stdout)
            .ok_or_else(|| format!("no 'Run completed in' in qemu-img output: {}", out.stdout))?;
        Ok((secs, wall))
    }

    /// [`Target::qemu_bench_on`] the bench image, qemu-img's own time.
    pub(crate) fn qemu_bench(&self, w: &QemuWork, s: &Settings) -> Result<f64, String> {
        self.qemu_bench_on(self.file, w, s).map(|(secs, _)| secs)
    }

    /// Runs this binary's libnfs client inside the namespace; returns its last key=value line.
    pub(crate) fn client(
        &self,
        args: &[String],
        s: &Settings,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut c = self.cmd(exe);
        c.arg("client").arg(self.libnfs_url()).args(args);
        let out = run_bounded(c, s.cmd_timeout)?;
        let last = out.stdout.lines().last().unwrap_or_default().to_string();
        if !out.ok {
            return Err(format!("client {args:?}: {}{}", out.stdout, out.stderr));
        }
        Ok(kv_line(&last))
    }
}

/// A conf with one MEM export at `/mem` (Inode_Size 2 MiB: the most Ganesha allows).
pub(crate) fn mem_conf(dir: &Path) -> GaneshaConf {
    let mut conf = GaneshaConf::strata_default(dir);
    conf.strata = None;
    conf.exports = vec![Export {
        export_id: 9,
        path: "/mem".to_string(),
        pseudo: "/mem".to_string(),
        protocols: vec![3, 4],
        max_read: MIB,
        max_write: MIB,
        fsal: FsalBlock::Mem {
            inode_size: MEM_INODE_SIZE,
        },
    }];
    conf
}

/// Bytes written by ganesha.nfsd against bytes the client wrote, over repetitions.
#[derive(Default)]
pub(crate) struct IoTally {
    pub(crate) disk: u64,
    pub(crate) client: u64,
    pub(crate) complete: bool,
    pub(crate) runs: u32,
}

impl IoTally {
    pub(crate) fn add(&mut self, before: Option<u64>, after: Option<u64>, client: u64) {
        match (before, after) {
            (Some(b), Some(a)) if a >= b => {
                self.complete = self.runs == 0 || self.complete;
                self.disk += a - b;
                self.client += client;
            }
            _ => self.complete = false,
        }
        self.runs += 1;
    }

    /// Server bytes per client byte, if every run could be measured.
    pub(crate) fn ratio(&self) -> Option<f64> {
        (self.complete && self.client > 0).then(|| self.disk as f64 / self.client as f64)
    }
}

/// Sizes of what sits in a Strata data directory besides the local backend, e.g.
/// `volumes/ 1090 MiB, extent-cache/ 0 MiB`.
pub(crate) fn local_state(data_dir: &Path) -> String {
    let Ok(rd) = std::fs::read_dir(data_dir) else {
        return "unreadable".to_string();
    };
    let mut parts: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_name() != "backend")
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.metadata() {
                Ok(m) if m.is_dir() => format!("{name}/ {} MiB", dir_usage(&e.path()).1 / MIB),
                Ok(m) => format!("{name} {} MiB", m.len() / MIB),
                Err(_) => format!("{name} ?"),
            }
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

/// (files, bytes, allocated bytes) under a directory, recursively; zeros if it does not exist.
pub(crate) fn dir_usage(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut files, mut bytes, mut alloc) = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    files += 1;
                    bytes += m.len();
                    alloc += m.blocks() * 512;
                }
                Err(_) => {}
            }
        }
    }
    (files, bytes, alloc)
}
