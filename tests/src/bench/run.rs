//! The benchmark run: systems, workloads, repetitions, peak RSS.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use strata_ganesha_conf::conf::{Export, FsalBlock, GaneshaConf};
use strata_tests::{kv_line, vfs_conf, TestGateway};

use super::report::{median, Measurement, Unit};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Ganesha MEM keeps at most this much data per file (its `Inode_Size` maximum).
pub(crate) const MEM_INODE_SIZE: u64 = 2 * MIB;
/// A COMMIT after this many writes in the "with commits" random-write workloads, and the
/// flush interval of the qemu-img flush workload.
pub(crate) const COMMIT_EVERY: u64 = 16;

/// One of the systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum System {
    /// Ganesha with our FSAL, local backend, fresh data directory.
    Strata,
    /// Ganesha's VFS FSAL exporting a fresh directory on the same disk.
    Vfs,
    /// Ganesha's MEM FSAL: the protocol ceiling, no storage behind it.
    Mem,
}

impl System {
    /// All systems, in table order.
    pub(crate) const ALL: [System; 3] = [System::Strata, System::Vfs, System::Mem];

    /// Short name (table column, JSON key).
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Strata => "strata",
            System::Vfs => "vfs",
            System::Mem => "mem",
        }
    }

    /// Column heading.
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Strata => "Strata",
            System::Vfs => "Ganesha VFS",
            System::Mem => "Ganesha MEM*",
        }
    }

    /// Parses a short name.
    pub(crate) fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Quick mode: one repetition, smaller sizes, shorter durations.
    pub quick: bool,
    /// Repetitions per workload (the table shows the median).
    pub runs: usize,
    /// Systems to run.
    pub systems: Vec<System>,
    /// Directory holding `libfsalstrata.so`.
    pub plugin_dir: PathBuf,
    /// Parent of the per-system temp directories (data dirs; all on one disk).
    pub tmp_base: PathBuf,
    /// Volume / image size for Strata and VFS.
    pub image_size: u64,
    /// Duration of one random I/O job.
    pub rand_secs: f64,
    /// Files in the small-file workload.
    pub small_files: u64,
    /// Bound for one client command.
    pub cmd_timeout: Duration,
    /// The `strata` CLI (for `strata sync --wait`); None: Strata runs are not settled.
    pub strata_cli: Option<PathBuf>,
}

impl Settings {
    /// Defaults for quick or full mode.
    pub(crate) fn new(quick: bool, plugin_dir: PathBuf, tmp_base: PathBuf) -> Settings {
        Settings {
            quick,
            runs: if quick { 1 } else { 3 },
            systems: System::ALL.to_vec(),
            plugin_dir,
            tmp_base,
            image_size: if quick { 256 * MIB } else { GIB },
            rand_secs: if quick { 2.0 } else { 5.0 },
            small_files: if quick { 500 } else { 2000 },
            cmd_timeout: Duration::from_secs(if quick { 60 } else { 180 }),
            strata_cli: None,
        }
    }
}

/// A `qemu-img bench` workload.
struct QemuWork {
    id: &'static str,
    write: bool,
    bs: u64,
    depth: u32,
    flush_every: u64,
    /// Bytes moved per run; on MEM the same requests wrap inside its 2 MiB image.
    bytes: u64,
}

fn qemu_workloads(s: &Settings) -> Vec<QemuWork> {
    let w = |id, write, bs, depth, flush_every, bytes| QemuWork {
        id,
        write,
        bs,
        depth,
        flush_every,
        bytes,
    };
    let image = s.image_size;
    // 4 KiB runs: long enough for qemu-img's millisecond timer, short enough for --quick.
    let small = if s.quick { 16 * MIB } else { 32 * MIB };
    vec![
        // The image was filled (untimed) first: these write rows overwrite data.
        w("qemu seq write 1M qd8", true, MIB, 8, 0, image),
        w("qemu seq read 1M qd8", false, MIB, 8, 0, image),
        w("qemu seq write 64K qd16", true, 64 << 10, 16, 0, image / 2),
        w("qemu seq read 64K qd16", false, 64 << 10, 16, 0, image / 2),
        w("qemu seq write 4K qd1", true, 4096, 1, 0, small),
        w("qemu seq write 4K qd16", true, 4096, 16, 0, 4 * small),
        w("qemu seq read 4K qd1", false, 4096, 1, 0, small),
        w("qemu seq read 4K qd16", false, 4096, 16, 0, 4 * small),
        w(
            "qemu seq write 4K qd16 flush/16",
            true,
            4096,
            16,
            COMMIT_EVERY,
            small / 4,
        ),
    ]
}

/// A random I/O workload of our libnfs client.
struct RandWork {
    id: &'static str,
    write: bool,
    qd: u32,
    commit_every: u64,
}

fn rand_workloads() -> Vec<RandWork> {
    let w = |id, write, qd, commit_every| RandWork {
        id,
        write,
        qd,
        commit_every,
    };
    vec![
        w("rand read 4K qd1", false, 1, 0),
        w("rand read 4K qd16", false, 16, 0),
        w("rand write 4K qd1", true, 1, 0),
        w("rand write 4K qd16", true, 16, 0),
        w("rand write 4K qd1 commit/16", true, 1, COMMIT_EVERY),
        w("rand write 4K qd16 commit/16", true, 16, COMMIT_EVERY),
    ]
}

/// Result of a bounded command.
/// What a bounded command printed.
pub(super) struct Out {
    pub(super) ok: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Runs `cmd` with a time bound; a timeout or a spawn failure is an error, not a panic.
pub(super) fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Out, String> {
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
    pub(super) tg: TestGateway,
    /// File (volume) the qemu and random workloads use, relative to the export root.
    file: &'static str,
    /// Its size.
    size: u64,
    /// Highest VmHWM seen over all ganesha.nfsd processes of this system, KiB.
    peak_rss_kib: u64,
    /// Strata only: the `strata` CLI, for `strata sync --wait` after write runs.
    pub(super) strata_cli: Option<PathBuf>,
    /// Seconds each `strata sync --wait` took since the last [`Target::take_sync_note`].
    syncs: Vec<f64>,
}

impl Target {
    fn start(system: System, s: &Settings) -> Result<Target, String> {
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
        };
        let tg = TestGateway::launch(dir, data_dir, conf, plugin_dir)
            .map_err(|e| format!("starting {}: {e}", system.label()))?;
        let mut t = Target {
            tg,
            // `.raw` is a default volume suffix: on Strata this is a volume.
            file: "/bench.raw",
            size,
            peak_rss_kib: 0,
            strata_cli: (system == System::Strata)
                .then(|| s.strata_cli.clone())
                .flatten(),
            syncs: Vec::new(),
        };
        t.sample_rss();
        Ok(t)
    }

    /// Strata: waits (untimed) until everything committed is on the backend, so the next run
    /// starts with an empty write buffer (`Write_Buffer_Size`) instead of paying for, or being
    /// throttled by, the upload of the runs before it. Other systems: nothing to do.
    pub(super) fn settle(&mut self, s: &Settings) -> Result<(), String> {
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
    fn take_sync_note(&mut self) -> Option<String> {
        let m = median(&std::mem::take(&mut self.syncs))?;
        Some(format!(
            "then the upload to the backend (`strata sync --wait`, untimed) took {m:.2} s (median)"
        ))
    }

    fn sample_rss(&mut self) {
        if let Some(kib) = vm_hwm_kib(self.tg.gw().ganesha_pid()) {
            self.peak_rss_kib = self.peak_rss_kib.max(kib);
        }
    }

    /// Bytes ganesha.nfsd has passed to write system calls (`/proc/PID/io` wchar: files,
    /// and its sockets). Not `write_bytes`: that counts whole page-cache folios when they are
    /// dirtied (up to 2 MiB per 4 KiB write on this kernel's ext4), far more than reaches disk.
    fn written_bytes(&self) -> Option<u64> {
        let pid = self.tg.gw().ganesha_pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse().ok())
    }

    pub(super) fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.tg.gw().command(program)
    }

    fn libnfs_url(&self) -> String {
        format!("nfs://127.0.0.1{}?version=3", self.tg.pseudo)
    }

    /// `qemu-img create -f raw` of the bench image.
    fn create_image(&self, s: &Settings) -> Result<(), String> {
        self.create_file(self.file, s)
    }

    /// `qemu-img create -f raw` of `file` with the image size.
    fn create_file(&self, file: &str, s: &Settings) -> Result<(), String> {
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
    fn qemu_bench_on(&self, file: &str, w: &QemuWork, s: &Settings) -> Result<(f64, f64), String> {
        let count = (w.bytes / w.bs).max(1);
        let mut c = self.cmd("qemu-img");
        c.args(["bench", "-f", "raw"])
            .args(["-c", &count.to_string()])
            .args(["-d", &w.depth.to_string()])
            .args(["-s", &w.bs.to_string()]);
        if w.write {
            c.arg("-w");
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
    fn qemu_bench(&self, w: &QemuWork, s: &Settings) -> Result<f64, String> {
        self.qemu_bench_on(self.file, w, s).map(|(secs, _)| secs)
    }

    /// Runs this binary's libnfs client inside the namespace; returns its last key=value line.
    pub(super) fn client(
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

/// Both notes, or either.
fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The error lines of a failed command (stderr first), on one line.
fn brief(out: &Out) -> String {
    let text: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Sending "))
        .collect();
    text.join(" / ")
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
struct IoTally {
    disk: u64,
    client: u64,
    complete: bool,
    runs: u32,
}

impl IoTally {
    fn add(&mut self, before: Option<u64>, after: Option<u64>, client: u64) {
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
    fn ratio(&self) -> Option<f64> {
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

/// Parses `Run completed in 1.234 seconds.`.
pub(crate) fn parse_qemu_secs(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Run completed in "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn num(kv: &std::collections::BTreeMap<String, String>, key: &str) -> Result<f64, String> {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("client output lacks {key}=: {kv:?}"))
}

/// Collects values of one workload on one system over the repetitions.
fn repeat(runs: usize, mut f: impl FnMut() -> Result<f64, String>) -> Result<Vec<f64>, String> {
    (0..runs).map(|_| f()).collect()
}

/// Runs everything on one system; appends to `out`. Progress goes to stderr.
fn bench_system(system: System, s: &Settings, out: &mut Vec<Measurement>) -> Result<u64, String> {
    let t0 = Instant::now();
    let mut t = Target::start(system, s)?;
    eprintln!(
        "bench: {} started ({:.1}s), file {} of {} MiB",
        system.label(),
        t0.elapsed().as_secs_f64(),
        t.file,
        t.size / MIB
    );
    let mem_note = |w: &str| {
        (system == System::Mem).then(|| format!("{w}: MEM file is 2 MiB; I/O wraps inside it"))
    };
    let mut push = |workload: &str,
                    unit: Unit,
                    r: Result<Vec<f64>, String>,
                    note: Option<String>,
                    amp: Option<f64>| {
        match &r {
            Ok(v) => eprintln!(
                "bench: {} | {workload}: {v:?} {}{}",
                system.name(),
                unit.name(),
                amp.map_or(String::new(), |a| format!(
                    ", server bytes written per client byte {a:.2}"
                ))
            ),
            Err(e) if e.starts_with("n/a") => {
                eprintln!("bench: {} | {workload}: {e}", system.name())
            }
            Err(e) => eprintln!("bench: {} | {workload}: FAILED: {e}", system.name()),
        }
        let mut m = Measurement::new(workload, system, unit, r, note);
        m.write_amp = amp;
        out.push(m);
    };

    // A fresh volume written once sequentially, timed to the end of the flush at close.
    let fresh = QemuWork {
        id: "fresh volume seq write 1M qd8, incl. flush at close",
        write: true,
        bs: MIB,
        depth: 8,
        flush_every: 0,
        bytes: s.image_size,
    };
    let mut io = IoTally::default();
    let mut run_no = 0;
    let r = repeat(s.runs, || {
        run_no += 1;
        let file = format!("/fresh{run_no}.raw");
        t.create_file(&file, s)?;
        let before = t.written_bytes();
        let (_, wall) = t.qemu_bench_on(&file, &fresh, s)?;
        t.settle(s)?;
        io.add(before, t.written_bytes(), fresh.bytes);
        t.client(&["unlink".into(), file], s)?;
        Ok(fresh.bytes as f64 / MIB as f64 / wall.max(0.0005))
    });
    let note = join_notes(
        Some(
            "wall time of the qemu-img process (connect, write, final flush on close), so the \
             data is durable; then the file is removed"
                .into(),
        ),
        t.take_sync_note(),
    );
    push(fresh.id, Unit::MibPerSec, r, note, io.ratio());
    t.sample_rss();

    // qemu-img bench on a filled image.
    match t.create_image(s).and_then(|()| {
        t.client(&["fill".into(), t.file.into(), t.size.to_string()], s)?;
        t.settle(s)?;
        t.syncs.clear();
        Ok(())
    }) {
        Ok(()) => {
            for w in qemu_workloads(s) {
                let unit = if w.bs >= 64 << 10 {
                    Unit::MibPerSec
                } else {
                    Unit::Iops
                };
                let count = (w.bytes / w.bs).max(1);
                let mut io = IoTally::default();
                let r = repeat(s.runs, || {
                    let before = t.written_bytes();
                    let secs = t.qemu_bench(&w, s)?;
                    if w.write {
                        t.settle(s)?;
                    }
                    io.add(before, t.written_bytes(), count * w.bs);
                    let ops = count as f64 / secs.max(0.0005);
                    Ok(match unit {
                        Unit::MibPerSec => ops * w.bs as f64 / MIB as f64,
                        _ => ops,
                    })
                });
                let amp = if w.write { io.ratio() } else { None };
                let note = join_notes(mem_note(w.id), t.take_sync_note());
                push(w.id, unit, r, note, amp);
                t.sample_rss();
            }
        }
        Err(e) => {
            for w in qemu_workloads(s) {
                push(w.id, Unit::Iops, Err(e.clone()), None, None);
            }
        }
    }

    // Random I/O with our libnfs client, on the file qemu filled.
    for w in rand_workloads() {
        let args: Vec<String> = vec![
            "randio".into(),
            if w.write { "write" } else { "read" }.into(),
            t.file.into(),
            t.size.to_string(),
            "4096".into(),
            w.qd.to_string(),
            w.commit_every.to_string(),
            s.rand_secs.to_string(),
        ];
        let mut io = IoTally::default();
        let mut final_commits = Vec::new();
        let r = repeat(s.runs, || {
            let before = t.written_bytes();
            let kv = t.client(&args, s)?;
            if w.write {
                t.settle(s)?;
            }
            io.add(before, t.written_bytes(), num(&kv, "ops")? as u64 * 4096);
            final_commits.push(num(&kv, "final_commit_secs")?);
            num(&kv, "iops")
        });
        let amp = if w.write { io.ratio() } else { None };
        let note = if w.write && w.commit_every == 0 && system != System::Mem {
            median(&final_commits).map(|c| {
                format!("the untimed COMMIT after each run (of what it left unstable) took {c:.2} s (median)")
            })
        } else {
            mem_note(w.id)
        };
        let note = join_notes(note, t.take_sync_note());
        push(w.id, Unit::Iops, r, note, amp);
        t.sample_rss();
    }

    // Small files.
    let n = s.small_files;
    let mut removes = Vec::new();
    let mut run_no = 0;
    let mut io = IoTally::default();
    let r = repeat(s.runs, || {
        run_no += 1;
        let before = t.written_bytes();
        let kv = t.client(
            &[
                "smallfiles".into(),
                format!("/small{run_no}"),
                n.to_string(),
            ],
            s,
        )?;
        t.settle(s)?;
        io.add(before, t.written_bytes(), n * 4096);
        removes.push(n as f64 / num(&kv, "remove_secs")?.max(1e-6));
        Ok(n as f64 / num(&kv, "create_secs")?.max(1e-6))
    });
    let rm = r.as_ref().map(|_| removes.clone()).map_err(Clone::clone);
    push(
        &format!("small files create+4K+commit ({n})"),
        Unit::FilesPerSec,
        r,
        t.take_sync_note(),
        io.ratio(),
    );
    push(
        &format!("small files remove ({n})"),
        Unit::FilesPerSec,
        rm,
        None,
        None,
    );
    t.sample_rss();

    // Cold read: restart Ganesha so its caches (and Strata's) are cold, then read it all.
    let cold_id = "cold seq read 1M qd8 after restart (Strata: from the backend)";
    match system {
        System::Mem => push(
            cold_id,
            Unit::MibPerSec,
            Err("n/a (MEM loses its data on restart)".into()),
            None,
            None,
        ),
        _ => {
            let w = QemuWork {
                id: cold_id,
                write: false,
                bs: MIB,
                depth: 8,
                flush_every: 0,
                bytes: t.size,
            };
            // What Strata keeps locally (outside the backend) when the read starts tells
            // where the "cold" data comes from: the FileDriver wipes its extent cache on open,
            // a volume's SCO cache stays.
            let data_dir = t.tg.data_dir.clone();
            let mut local_at_start = String::new();
            let strata = system == System::Strata;
            let r = repeat(s.runs, || {
                t.sample_rss();
                if strata {
                    // Only on the backend: everything committed is uploaded, then Ganesha
                    // stops and the volumes' local state (SCO cache, TLogs) is deleted, so the
                    // read pays for the backend restart of the volume.
                    t.settle(s)?;
                    t.tg.gw_mut()
                        .kill_ganesha()
                        .map_err(|e| format!("stop: {e}"))?;
                    let volumes = data_dir.join("volumes");
                    if volumes.exists() {
                        std::fs::remove_dir_all(&volumes)
                            .map_err(|e| format!("removing {}: {e}", volumes.display()))?;
                    }
                }
                t.tg.gw_mut()
                    .restart_ganesha()
                    .map_err(|e| format!("restart: {e}"))?;
                local_at_start = local_state(&data_dir);
                let secs = t.qemu_bench(&w, s)?;
                Ok(t.size as f64 / MIB as f64 / secs.max(0.0005))
            });
            let note = match system {
                System::Strata => format!(
                    "before each read: `strata sync --wait`, Ganesha stopped, the volumes' local \
                     state deleted, Ganesha started: on first access the volume is rebuilt \
                     from its metadata checkpoint and the TLogs after it, and its data is read \
                     from the backend as needed (ranged GETs of up to 1 MiB, through the \
                     cluster cache); local state when the (last) \
                     read began: {local_at_start}; the OS page cache is warm for the backend \
                     directory"
                ),
                _ => "Ganesha restarted before each read; OS page cache warm (it cannot be \
                      dropped per namespace)"
                    .to_string(),
            };
            push(cold_id, Unit::MibPerSec, r, Some(note), None);
            t.sample_rss();
        }
    }

    // The sustained import (MEM's 2 MiB file cannot hold it).
    let r = match system {
        System::Mem => Err("n/a (MEM file is 2 MiB)".into()),
        _ => super::sustained::run(&mut t, s),
    };
    let (r, note) = match r {
        Ok((rate, note)) => (Ok(vec![rate]), note),
        Err(e) => (Err(e), None),
    };
    push(super::sustained::ID, Unit::MibPerSec, r, note, None);
    t.sample_rss();

    push(
        "snapshot + clone of a volume",
        Unit::Secs,
        Err("n/a (not implemented)".into()),
        None,
        None,
    );

    // Space: what the system keeps on disk for what the client left there (the bench image;
    // the small files and fresh images were removed).
    let space_id = "disk space used at the end (allocated)";
    match system {
        System::Mem => push(
            space_id,
            Unit::MibStored,
            Err("n/a (no storage)".into()),
            None,
            None,
        ),
        _ => {
            let (_, _, total) = dir_usage(&t.tg.data_dir);
            let note = (system == System::Strata).then(|| {
                let (n, bytes, _) = dir_usage(&t.tg.data_dir.join("backend"));
                format!(
                    "backend: {n} objects, {} MiB; local state: {}; for a {} MiB volume",
                    bytes / MIB,
                    local_state(&t.tg.data_dir),
                    t.size / MIB
                )
            });
            push(
                space_id,
                Unit::MibStored,
                Ok(vec![total as f64 / MIB as f64]),
                note,
                None,
            );
        }
    }
    t.sample_rss();
    let rss = t.peak_rss_kib;
    if let Some(gw) = t.tg.gw.take() {
        gw.stop()
            .map_err(|e| format!("stopping {}: {e}", system.label()))?;
    }
    eprintln!(
        "bench: {} done in {:.1}s, peak ganesha.nfsd RSS {} MiB",
        system.label(),
        t0.elapsed().as_secs_f64(),
        rss / 1024
    );
    Ok(rss)
}

/// Everything the report needs.
pub(crate) struct Results {
    /// All measurements.
    pub measurements: Vec<Measurement>,
    /// Peak RSS of ganesha.nfsd per system (KiB), or the error that stopped the system.
    pub rss_kib: Vec<(System, Result<u64, String>)>,
    /// Wall time of the whole run.
    pub wall_secs: f64,
}

/// Runs all systems in order.
pub(crate) fn run_all(s: &Settings) -> Results {
    let t0 = Instant::now();
    let mut measurements = Vec::new();
    let mut rss_kib = Vec::new();
    for &system in &s.systems {
        let r = bench_system(system, s, &mut measurements);
        if let Err(e) = &r {
            eprintln!("bench: {}: {e}", system.label());
        }
        rss_kib.push((system, r));
    }
    Results {
        measurements,
        rss_kib,
        wall_secs: t0.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tests::{require_tools, GATEWAY_TOOLS};

    #[test]
    fn parses_qemu_img_bench_output() {
        let out = "Sending 100 write requests, 65536 bytes each, 16 in parallel (starting at \
                   offset 0, step size 65536)\nSending flush every 16 requests\n\
                   Run completed in 0.083 seconds.\n";
        assert_eq!(parse_qemu_secs(out), Some(0.083));
        assert_eq!(parse_qemu_secs("nothing"), None);
    }

    #[test]
    fn io_tally_needs_every_run() {
        let mut t = IoTally::default();
        t.add(Some(100), Some(300), 100);
        t.add(Some(300), Some(400), 100);
        assert_eq!(t.ratio(), Some(1.5));
        t.add(None, Some(1), 100);
        t.add(Some(0), Some(100), 100);
        assert_eq!(t.ratio(), None, "one unmeasured run spoils the total");
    }

    #[test]
    fn reads_own_peak_rss_and_dir_usage() {
        assert!(vm_hwm_kib(std::process::id()).is_some_and(|k| k > 0));
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
        std::fs::write(d.path().join("a/b/x"), [0u8; 10]).expect("write");
        std::fs::write(d.path().join("y"), [0u8; 5]).expect("write");
        let (files, bytes, alloc) = dir_usage(d.path());
        assert_eq!((files, bytes), (2, 15));
        assert!(alloc >= 15, "{alloc}");
        assert_eq!(dir_usage(&d.path().join("missing")), (0, 0, 0));
    }

    /// The MEM export as the benchmark renders it is accepted by ganesha.nfsd and keeps data:
    /// with Inode_Size not in effect (e.g. rendered into the export's FSAL block, where
    /// Ganesha does not read it), MEM would return filler bytes instead of what was written.
    #[test]
    fn mem_export_keeps_written_data() {
        if !require_tools(GATEWAY_TOOLS) || !require_tools(&["nfs-cp", "nfs-cat"]) {
            return;
        }
        let dir = strata_tests::tempdir();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("mkdir");
        let conf = mem_conf(&data_dir);
        let text = conf.render();
        assert!(
            text.contains("MEM {\n    Inode_Size = 2097152;\n}"),
            "{text}"
        );
        let src = dir.path().join("src.txt");
        std::fs::write(&src, b"strata bench MEM check\n").expect("write");
        let tg = TestGateway::launch(dir, data_dir, conf, None).expect("start MEM gateway");
        let url = tg.url(3, "/x.txt");
        tg.run("nfs-cp", [src.to_str().expect("utf-8 path"), &url])
            .expect_ok("nfs-cp");
        let r = tg.run("nfs-cat", [&url]).expect_ok("nfs-cat");
        assert_eq!(r.stdout, "strata bench MEM check\n");
    }
}
