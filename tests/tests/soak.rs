//! Issue 10's SIGKILL soak through `ganesha.nfsd` and our FSAL: many gateway lifetimes on one
//! data directory (and its local backend), each killed with SIGKILL at a random moment while
//! writers put 4 KiB blocks with COMMITs into volumes and regular files; every file of every
//! earlier lifetime is read back whole and checked in every later one.
//!
//! One lifetime: start the gateway (the launcher, in a private namespace) on the data directory;
//! list the root (exactly the files written so far) and read every file whole with `nfs-cp` (an
//! independent client), checking it block by block against its expected image
//! ([`strata_tests::soak_model`]): every block holds its last committed value, or one whole
//! value written to it since that commit — never a mix. Then create one new file (a volume in
//! even lifetimes, a regular file in odd ones) and run one writer per object at once: the
//! volumes `a-flat.vmdk` and `b.raw`, the regular files `x.vmx` and `y.log` (all four carried
//! over from lifetime 0 on), the new file, and one earlier new file picked at random. Each writer
//! is our client's `blocklog` (NFSv3 UNSTABLE 4 KiB writes at aligned random blocks, a COMMIT
//! every 1..16 writes, `committed=N` after each acknowledged COMMIT). Once the writers together
//! have reported a random number of COMMITs, `ganesha.nfsd` is SIGKILLed by PID, the writers
//! are stopped, the rest of the launcher's processes are stopped, and each file's image takes
//! in what its writer reported (writes up to its last `committed=N` are committed; the at most
//! `EVERY` writes after it may or may not have landed). A last start only verifies.
//!
//! Every random choice (kill point, commit intervals, which old file is written again, the
//! writers' data) comes from the seed, printed at the start. Environment:
//! `STRATA_SOAK_LIFETIMES` (default [`SHORT_LIFETIMES`]; `scripts/soak N` runs the long form) and
//! `STRATA_SOAK_SEED`. The last line is the summary (`soak: lifetimes=... losses=0`).
//!
//! The summary also counts blocks that read back holding an uncommitted value, and blocks whose
//! value changed between two verifications with no write in between (`changed_unwritten`:
//! allowed for uncommitted values by the contract, but a sign of an unsteady recovery).
//!
//! The check can fail: `soak_model`'s unit tests feed it a lost committed block, a torn block and
//! a value never sent. And by hand (2026-12-03, each change reverted): with a regular file's
//! COMMIT made a no-op in `Filesystem::commit`, lifetime 1 failed with 289 lost blocks in
//! `x.vmx` and `y.log`; with a volume's restart made to cut the last cluster entry of its open
//! TLog (a recovery that drops an acknowledged write), lifetime 4 failed with the lost block of
//! `n0002-flat.vmdk` named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use strata_ganesha_conf::conf::GaneshaConf;
use strata_tests::commitlog::Writer;
use strata_tests::soak_model::{Expected, Fault, RunReport};
use strata_tests::*;

/// Lifetimes of the short form (the suite).
const SHORT_LIFETIMES: u64 = 5;
/// The default seed.
const DEFAULT_SEED: u64 = 0x50a4;
const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;
/// Objects written in every lifetime: (path, size).
const FIXED: [(&str, u64); 4] = [
    ("/a-flat.vmdk", 4 * MIB),
    ("/b.raw", 4 * MIB),
    ("/x.vmx", 2 * MIB),
    ("/y.log", 2 * MIB),
];
/// The size of each lifetime's new file.
const NEW_SIZE: u64 = 512 * KIB;
/// Writes a writer is asked for (never reached before the kill).
const COUNT: u64 = 10_000_000;
/// The most writes between two COMMITs.
const MAX_EVERY: u64 = 16;
/// The kill comes after this many COMMITs of all writers together, at random.
const KILL_AFTER: std::ops::RangeInclusive<u64> = 4..=150;
/// Bound for reaching the kill point.
const WRITE_PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// A small deterministic generator (xorshift64*) for the soak's choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `range`.
    fn in_range(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.next() % (range.end() - range.start() + 1)
    }
}

/// A file the soak writes, and what it may hold.
struct Object {
    path: String,
    image: Expected,
}

/// The soak's running totals (the summary line).
#[derive(Default)]
struct Totals {
    lifetimes: u64,
    files_verified: u64,
    bytes_verified: u64,
    commits: u64,
    committed_writes: u64,
    uncommitted_blocks: u64,
    changed_unwritten: u64,
    losses: u64,
}

impl Totals {
    fn line(&self, objects: usize, seed: u64, t0: Instant) -> String {
        format!(
            "soak: lifetimes={} objects={objects} files_verified={} bytes_verified={} \
             commits={} committed_writes={} uncommitted_blocks_read_new={} \
             changed_unwritten={} losses={} seed={seed:#x} seconds={}",
            self.lifetimes,
            self.files_verified,
            self.bytes_verified,
            self.commits,
            self.committed_writes,
            self.uncommitted_blocks,
            self.changed_unwritten,
            self.losses,
            t0.elapsed().as_secs()
        )
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

/// The conf of every lifetime: small SCOs and TLogs, frequent checkpoints and uploads, and
/// caches small enough that later lifetimes read evicted data back from the backend.
fn soak_conf(data_dir: &Path) -> GaneshaConf {
    let mut conf = GaneshaConf::strata_default(data_dir);
    if let Some(block) = conf.strata.as_mut() {
        for (k, v) in [
            ("SCO_Size", "64K"),
            ("TLog_SCOs", "2"),
            ("Checkpoint_TLogs", "2"),
            ("SCO_Max_Age", "1"),
            ("SCO_Cache_Size", "64M"),
            ("Extent_Cache_Size", "16M"),
            ("Cluster_Cache_Size", "2M"),
        ] {
            block.push((k.into(), v.into()));
        }
    }
    conf
}

/// See the module doc. Short by default; `STRATA_SOAK_LIFETIMES=100` (or `scripts/soak 100`)
/// for the long form.
#[test]
fn sigkill_soak_through_ganesha_loses_no_committed_block() {
    if !require_tools(GATEWAY_TOOLS) || !require_tools(&["nfs-cp"]) {
        return;
    }
    let lifetimes = env_u64("STRATA_SOAK_LIFETIMES", SHORT_LIFETIMES);
    let seed = env_u64("STRATA_SOAK_SEED", DEFAULT_SEED);
    assert!(lifetimes >= 1, "STRATA_SOAK_LIFETIMES must be at least 1");
    eprintln!("soak: {lifetimes} lifetimes, seed {seed:#x} (STRATA_SOAK_SEED to repeat)");
    let root = KeepOnPanic(Some(tempdir()));
    let data_dir = root.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data dir");
    let conf = soak_conf(&data_dir);

    let mut objects: Vec<Object> = Vec::new();
    let mut totals = Totals::default();
    let t0 = Instant::now();
    for life in 0..=lifetimes {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix(&format!("lifetime-{life:04}-"))
            .tempdir_in(root.path())
            .expect("lifetime dir");
        let mut tg = TestGateway::launch(dir, data_dir.clone(), conf.clone(), Some(plugin_dir()))
            .unwrap_or_else(|e| panic!("lifetime {life}: start the gateway: {e}"));
        let (files, uncommitted) = verify_all(&tg, &mut objects, &mut totals, life, seed, t0);
        let verify_secs = started.elapsed().as_secs_f64();
        if life == lifetimes {
            tg.stop();
            eprintln!(
                "lifetime {life}: verified {files} files ({uncommitted} blocks held an \
                 uncommitted value); no writers (the last start only verifies)"
            );
            break;
        }
        let written = write_and_kill(&mut tg, &mut objects, seed, life);
        tg.stop();
        totals.lifetimes += 1;
        totals.commits += written.commits;
        totals.committed_writes += written.committed_writes;
        eprintln!(
            "lifetime {life}: verified {files} files ({uncommitted} blocks held an uncommitted \
             value) in {verify_secs:.1} s; {} writers, SIGKILL after {} COMMITs (target {}), \
             {} writes committed; {:.1} s in all",
            written.writers,
            written.commits,
            written.target,
            written.committed_writes,
            started.elapsed().as_secs_f64()
        );
    }
    let summary = totals.line(objects.len(), seed, t0);
    eprintln!("{summary}");
    assert_eq!(totals.lifetimes, lifetimes);
    assert!(
        totals.committed_writes > 0,
        "nothing was committed: {summary}"
    );
}

/// Lists the root (exactly the objects' names) and reads every object whole, checking it
/// against its image. Panics with every fault of every file (after printing the summary with
/// the losses) if any block is wrong. Returns (files verified, blocks holding an uncommitted
/// value).
fn verify_all(
    tg: &TestGateway,
    objects: &mut [Object],
    totals: &mut Totals,
    life: u64,
    seed: u64,
    t0: Instant,
) -> (u64, u64) {
    let ls = tg.client(3, &["ls", "/"]).expect_ok("list the root");
    let names: BTreeSet<String> = ls
        .stdout
        .lines()
        .filter_map(|l| kv_line(l).remove("name"))
        .collect();
    let want: BTreeSet<String> = objects
        .iter()
        .map(|o| o.path.trim_start_matches('/').to_string())
        .collect();
    assert_eq!(names, want, "lifetime {life}: the root lists other names");

    let mut faults: Vec<(String, Vec<Fault>)> = Vec::new();
    let mut uncommitted = 0;
    for obj in objects.iter_mut() {
        let st = tg.client(3, &["stat", &obj.path]).expect_ok("stat");
        assert_eq!(
            st.num("size"),
            obj.image.size(),
            "lifetime {life}: {} has a wrong size",
            obj.path
        );
        let data = read_whole(tg, &obj.path);
        totals.files_verified += 1;
        totals.bytes_verified += data.len() as u64;
        match obj.image.verify(&data) {
            Ok(v) => {
                uncommitted += v.uncommitted_blocks;
                totals.uncommitted_blocks += v.uncommitted_blocks;
                totals.changed_unwritten += v.changed_unwritten;
            }
            Err(f) => faults.push((obj.path.clone(), f)),
        }
    }
    if !faults.is_empty() {
        totals.losses = faults.iter().map(|(_, f)| f.len() as u64).sum();
        eprintln!("{}", totals.line(objects.len(), seed, t0));
        let mut msg = format!(
            "lifetime {life}: {} blocks lost or torn (seed {seed:#x}):",
            totals.losses
        );
        for (path, f) in &faults {
            msg.push_str(&format!("\n  {path}: {} faulty blocks", f.len()));
            for x in f.iter().take(5) {
                msg.push_str(&format!("\n    {x}"));
            }
        }
        panic!("{msg}");
    }
    (objects.len() as u64, uncommitted)
}

/// The whole file, copied out over NFSv3 with `nfs-cp` into the lifetime's directory.
fn read_whole(tg: &TestGateway, path: &str) -> Vec<u8> {
    let local = tg.dir().join("read.bin");
    let local_s = local.display().to_string();
    let _ = std::fs::remove_file(&local);
    tg.run("nfs-cp", [tg.url(3, path).as_str(), &local_s])
        .expect_ok("nfs-cp a file out");
    std::fs::read(&local).unwrap_or_else(|e| panic!("read {local_s}: {e}"))
}

/// What one lifetime's write phase did.
struct Written {
    writers: usize,
    target: u64,
    commits: u64,
    committed_writes: u64,
}

/// Creates this lifetime's new file, runs the writers until they have reported a random number
/// of COMMITs, SIGKILLs `ganesha.nfsd`, stops the writers, and updates the images.
fn write_and_kill(
    tg: &mut TestGateway,
    objects: &mut Vec<Object>,
    seed: u64,
    life: u64,
) -> Written {
    let mut rng = Rng::new(seed ^ (life + 1).wrapping_mul(0x1234_5678_9abc_def1));
    if life == 0 {
        for (path, size) in FIXED {
            create(tg, path, size);
            objects.push(Object {
                path: path.to_string(),
                image: Expected::zeros(size),
            });
        }
    }
    let olds = objects.len() - FIXED.len();
    let name = if life.is_multiple_of(2) {
        format!("/n{life:04}-flat.vmdk")
    } else {
        format!("/n{life:04}.vmx")
    };
    create(tg, &name, NEW_SIZE);
    objects.push(Object {
        path: name,
        image: Expected::zeros(NEW_SIZE),
    });
    // The fixed four, the new file, and one earlier new file (if any).
    let mut chosen: Vec<usize> = (0..FIXED.len()).collect();
    chosen.push(objects.len() - 1);
    if olds > 0 {
        chosen.push(FIXED.len() + (rng.next() % olds as u64) as usize);
    }
    let target = rng.in_range(KILL_AFTER);
    let mut writers: Vec<(usize, u64, u64, Writer)> = chosen
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            // Distinct seeds: write j of a run carries seed + j + 1, j < COUNT < 2^24.
            let w_seed = ((seed & 0xffff) << 48) | ((life + 1) << 32) | ((k as u64 + 1) << 24);
            let every = rng.in_range(1..=MAX_EVERY);
            let obj = &objects[i];
            let w = start_writer(tg, &obj.path, obj.image.size(), w_seed, every);
            (i, w_seed, every, w)
        })
        .collect();

    let total = |ws: &[(usize, u64, u64, Writer)]| -> u64 {
        ws.iter().map(|(_, _, _, w)| commits(&w.output()).0).sum()
    };
    let reached = poll_until(WRITE_PHASE_TIMEOUT, || {
        total(&writers) >= target || writers.iter_mut().any(|(_, _, _, w)| !w.running())
    });
    let all_running = writers.iter_mut().all(|(_, _, _, w)| w.running());
    if !(reached && all_running) {
        let outs: Vec<String> = writers
            .iter()
            .map(|(i, _, _, w)| format!("{}: {}", objects[*i].path, tail(&w.output())))
            .collect();
        panic!(
            "lifetime {life}: the writers did not reach {target} COMMITs while all ran \
             (reached {reached}):\n{}\n--- ganesha log ---\n{}",
            outs.join("\n"),
            tg.log()
        );
    }
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha.nfsd");

    let mut out = Written {
        writers: writers.len(),
        target,
        commits: 0,
        committed_writes: 0,
    };
    for (i, w_seed, every, w) in writers.drain(..) {
        let text = w.kill();
        let (n_commits, committed) = commits(&text);
        assert!(
            !text.contains("done=1"),
            "lifetime {life}: a writer finished before the kill: {}",
            tail(&text)
        );
        out.commits += n_commits;
        out.committed_writes += committed;
        objects[i].image.apply(&RunReport {
            seed: w_seed,
            committed,
            // After its last acknowledged COMMIT a writer sends at most `every` writes.
            sent: (committed + every).min(COUNT),
        });
    }
    out
}

/// Creates `path` (NFSv3 CREATE; a volume by its suffix) and sets its size (reads as zeros).
fn create(tg: &TestGateway, path: &str, size: u64) {
    tg.client(3, &["create3", "guarded", path])
        .expect_ok("create a file");
    tg.client(3, &["truncate", path, &size.to_string()])
        .expect_ok("size a file");
}

/// (COMMITs acknowledged, the highest `committed=N`) in a writer's output.
fn commits(out: &str) -> (u64, u64) {
    let mut n = 0;
    let mut last = 0;
    for l in out.lines() {
        if let Some(c) = kv_line(l).get("committed").and_then(|v| v.parse().ok()) {
            n += 1;
            last = c;
        }
    }
    (n, last)
}

/// The last few lines of a writer's output.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Starts a `blocklog` writer in the gateway's namespace, its stdout collected as it comes.
fn start_writer(tg: &TestGateway, path: &str, size: u64, seed: u64, every: u64) -> Writer {
    let mut args = vec!["blocklog".to_string(), path.to_string()];
    args.extend([size, seed, COUNT, every].map(|v| v.to_string()));
    Writer::spawn(tg, &args)
}

/// The soak's temp directory, kept when the test fails and `STRATA_KEEP_TEST_DIRS` is set.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl KeepOnPanic {
    fn path(&self) -> PathBuf {
        self.0
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if thread::panicking() && std::env::var_os("STRATA_KEEP_TEST_DIRS").is_some() {
            if let Some(d) = self.0.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}
