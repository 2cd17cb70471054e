//! Tests of the VolumeDriver core: random I/O against an oracle with simulated machine crashes,
//! fault injection proving each fsync matters, group commit, torn and corrupted TLogs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{md5, tlog_name, CLUSTER_SIZE, CLUSTER_SIZE_U64, TLOG_ENTRY_LEN};
use super::*;
use crate::error::Error;

const VOL: VolumeId = VolumeId([0x5a; 16]);
/// The address space the random workload uses: a 4 MiB volume.
const SPACE: u64 = 4 << 20;
const SPACE_CLUSTERS: u64 = SPACE / CLUSTER_SIZE_U64;

fn small_opts() -> VolumeOptions {
    // 64 KiB SCOs, 2 SCOs per TLog: seals and TLog rolls happen often.
    VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 2,
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/vol")
}

/// What the volume must hold. `content` is the logical content of the whole address space
/// (zeros past the size). After a crash, each cluster must hold its value at the last completed
/// commit or a value written to it since; the size likewise.
struct Oracle {
    content: Vec<u8>,
    size: u64,
    committed: Vec<u8>,
    committed_size: u64,
    /// MD5s of the values each cluster took since the last commit.
    alts: HashMap<u64, Vec<[u8; 16]>>,
    alt_sizes: Vec<u64>,
}

impl Oracle {
    fn new(size: u64) -> Oracle {
        Oracle {
            content: vec![0; SPACE as usize],
            size,
            committed: vec![0; SPACE as usize],
            committed_size: size,
            alts: HashMap::new(),
            alt_sizes: Vec::new(),
        }
    }

    fn touched(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        for ca in from / CLUSTER_SIZE_U64..=(to - 1) / CLUSTER_SIZE_U64 {
            let s = (ca * CLUSTER_SIZE_U64) as usize;
            let m = md5(&self.content[s..s + CLUSTER_SIZE]);
            self.alts.entry(ca).or_default().push(m);
        }
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        self.content[off as usize..off as usize + data.len()].copy_from_slice(data);
        let end = off + data.len() as u64;
        if end > self.size {
            self.size = end;
            self.alt_sizes.push(end);
        }
        self.touched(off, end);
    }

    fn resize(&mut self, size: u64) {
        if size < self.size {
            let old = self.size;
            self.content[size as usize..old as usize].fill(0);
            self.size = size;
            self.touched(size, old);
        }
        self.size = size;
        self.alt_sizes.push(size);
    }

    fn commit(&mut self) {
        self.committed.copy_from_slice(&self.content);
        self.committed_size = self.size;
        self.alts.clear();
        self.alt_sizes.clear();
    }

    /// Checks a volume just reopened after a crash, then adopts its state as the new truth
    /// (reopening makes the recovered state durable).
    fn check_recovered(&mut self, vol: &Volume) -> Result<(), String> {
        let size = vol.size();
        if size != self.committed_size && !self.alt_sizes.contains(&size) {
            return Err(format!(
                "size {size} after crash; committed {} and later {:?}",
                self.committed_size, self.alt_sizes
            ));
        }
        let mut now = vec![0u8; SPACE as usize];
        for ca in 0..SPACE_CLUSTERS {
            let c = vol
                .raw_cluster(ca)
                .map_err(|e| format!("read cluster {ca}: {e}"))?;
            let s = (ca * CLUSTER_SIZE_U64) as usize;
            let m = md5(&c);
            if m != md5(&self.committed[s..s + CLUSTER_SIZE])
                && !self.alts.get(&ca).is_some_and(|v| v.contains(&m))
            {
                let first_diff = c.iter().zip(&self.committed[s..]).position(|(a, b)| a != b);
                return Err(format!(
                    "cluster {ca} lost committed data (first differing byte {first_diff:?}; {} later values)",
                    self.alts.get(&ca).map_or(0, |v| v.len())
                ));
            }
            now[s..s + CLUSTER_SIZE].copy_from_slice(&c);
        }
        // Past the size, the volume holds nothing (zeros): the invariant shrink relies on.
        if now[size.min(SPACE) as usize..].iter().any(|b| *b != 0) {
            return Err(format!("non-zero bytes past the size {size}"));
        }
        let mut via_read = vec![0u8; size as usize];
        let n = vol
            .read(0, &mut via_read)
            .map_err(|e| format!("read: {e}"))?;
        if n != size as usize || via_read[..] != now[..size as usize] {
            return Err("read() disagrees with the MetaDataStore".into());
        }
        self.content = now;
        self.size = size;
        self.commit();
        Ok(())
    }
}

/// How a workload crashes.
#[derive(Clone, Copy, Debug)]
enum Crashes {
    DropAll,
    Random,
    /// Alternate both.
    Mixed,
}

#[derive(Debug, Default)]
struct RunStats {
    crashes: u64,
    commits: u64,
    writes: u64,
}

/// Random reads, writes (aligned and unaligned, up to 64 KiB), resizes and commits on a 4 MiB
/// volume over SimFs, with simulated machine crashes; after each crash the volume is reopened
/// and checked against the oracle. Returns the first violation.
fn run_workload(
    seed: u64,
    steps: usize,
    crashes: Crashes,
    skip: Option<FsyncSite>,
) -> Result<RunStats, String> {
    let mut rng = SimRng::new(seed);
    let fs = SimFs::new();
    let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
    let opts = small_opts();
    let mut vol = Volume::create_inner(lfs.clone(), &dir(), VOL, opts, 1 << 20, skip)
        .map_err(|e| e.to_string())?;
    let mut oracle = Oracle::new(1 << 20);
    let mut st = RunStats::default();
    for step in 0..=steps {
        let r = rng.below(100);
        if step == steps || r < 3 {
            // Crash the machine and restart.
            let mode = match crashes {
                Crashes::DropAll => CrashMode::DropAll,
                Crashes::Random => CrashMode::Random(rng.next_u64()),
                Crashes::Mixed if st.crashes % 2 == 0 => CrashMode::DropAll,
                Crashes::Mixed => CrashMode::Random(rng.next_u64()),
            };
            drop(vol);
            fs.crash(mode);
            st.crashes += 1;
            vol = Volume::open_inner(lfs.clone(), &dir(), VOL, opts, skip)
                .map_err(|e| format!("step {step}: restart after crash ({mode:?}) failed: {e}"))?;
            oracle
                .check_recovered(&vol)
                .map_err(|e| format!("step {step} after crash {mode:?}: {e}"))?;
        } else if r < 13 {
            vol.sync().map_err(|e| e.to_string())?;
            oracle.commit();
            st.commits += 1;
        } else if r < 15 {
            let size = rng.below(SPACE + 1);
            vol.resize(size).map_err(|e| e.to_string())?;
            oracle.resize(size);
        } else if r < 35 {
            let off = rng.below(SPACE);
            let len = (1 + rng.below(64 << 10)).min(SPACE - off) as usize;
            let mut buf = vec![0u8; len];
            let n = vol.read(off, &mut buf).map_err(|e| e.to_string())?;
            let want = (oracle.size.saturating_sub(off) as usize).min(len);
            if n != want || buf[..n] != oracle.content[off as usize..off as usize + n] {
                return Err(format!(
                    "step {step}: read({off}, {len}) returned wrong data"
                ));
            }
        } else {
            let (off, len) = if rng.below(2) == 0 {
                let c = rng.below(SPACE_CLUSTERS);
                let n = 1 + rng.below(16).min(SPACE_CLUSTERS - c - 1);
                (c * CLUSTER_SIZE_U64, (n * CLUSTER_SIZE_U64) as usize)
            } else {
                let off = rng.below(SPACE);
                (off, (1 + rng.below(64 << 10)).min(SPACE - off) as usize)
            };
            let fill = rng.next_u64();
            let data: Vec<u8> = (0..len)
                .map(|i| (fill.wrapping_add(i as u64 * 31) >> (i % 7)) as u8)
                .collect();
            let stable = rng.below(10) == 0;
            vol.write(off, &data, stable).map_err(|e| e.to_string())?;
            oracle.write(off, &data);
            if stable {
                oracle.commit();
                st.commits += 1;
            }
            st.writes += 1;
        }
    }
    Ok(st)
}

#[test]
fn random_io_with_machine_crashes_keeps_every_committed_byte() {
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut total = RunStats::default();
    let mut seed = 1;
    while seed <= 12 || (Instant::now() < deadline && seed <= 40) {
        let mode = [Crashes::DropAll, Crashes::Random, Crashes::Mixed][seed as usize % 3];
        match run_workload(seed, 300, mode, None) {
            Ok(s) => {
                total.crashes += s.crashes;
                total.commits += s.commits;
                total.writes += s.writes;
            }
            Err(e) => panic!("seed {seed} ({mode:?}): {e}"),
        }
        seed += 1;
    }
    assert!(
        total.crashes > 20 && total.commits > 100 && total.writes > 500,
        "{total:?}"
    );
}

/// Each fsync site, switched off alone, must make the crash test fail: proof that the test
/// can see the loss each one prevents, and that none is superfluous.
#[test]
fn skipping_any_single_fsync_loses_committed_data() {
    for site in FsyncSite::ALL {
        let mut found = None;
        for seed in 1..=300u64 {
            let mode = if seed % 2 == 0 {
                Crashes::DropAll
            } else {
                Crashes::Random
            };
            if let Err(e) = run_workload(seed, 200, mode, Some(site)) {
                found = Some((seed, e));
                break;
            }
        }
        match found {
            Some((seed, e)) => eprintln!("{site:?}: detected with seed {seed}: {e}"),
            None => panic!("skipping the fsync at {site:?} went unnoticed by the crash test"),
        }
    }
}

#[test]
fn group_commit_shares_fsyncs_and_keeps_all_data() {
    let t = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let d = t.path().join("v");
    let threads = 8u64;
    let per = 40u64;
    let vol =
        Arc::new(Volume::create(fs.clone(), &d, VOL, VolumeOptions::default(), 0).expect("create"));
    let before = vol.stats();
    std::thread::scope(|s| {
        for th in 0..threads {
            let vol = vol.clone();
            s.spawn(move || {
                for i in 0..per {
                    let off = (th * per + i) * 8192 + 100; // unaligned, two clusters
                    let data = vec![(th * 13 + i) as u8 | 1; 6000];
                    vol.write(off, &data, false).expect("write");
                    vol.sync().expect("sync");
                }
            });
        }
    });
    let st = vol.stats();
    let commits = st.commits - before.commits;
    let rounds = st.commit_rounds - before.commit_rounds;
    eprintln!(
        "group commit: {commits} commits, {rounds} rounds, {} fsyncs",
        st.fsyncs - before.fsyncs
    );
    assert_eq!(commits, threads * per);
    assert!(
        rounds < commits,
        "no commit shared a round: {rounds} rounds for {commits} commits"
    );
    drop(vol);
    let vol = Volume::open(fs, &d, VOL, VolumeOptions::default()).expect("reopen");
    for th in 0..threads {
        for i in 0..per {
            let off = (th * per + i) * 8192 + 100;
            let mut b = vec![0u8; 6000];
            assert_eq!(vol.read(off, &mut b).expect("read"), 6000);
            assert!(
                b.iter().all(|x| *x == (th * 13 + i) as u8 | 1),
                "thread {th} write {i} wrong"
            );
        }
    }
}

fn tlog_path(seq: u64) -> PathBuf {
    dir().join("tlog").join(tlog_name(seq))
}

fn fresh(opts: VolumeOptions) -> (SimFs, Arc<dyn LocalFs>, Volume) {
    let fs = SimFs::new();
    let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
    let vol = Volume::create(lfs.clone(), &dir(), VOL, opts, 0).expect("create");
    (fs, lfs, vol)
}

fn read_vec(vol: &Volume, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let n = vol.read(off, &mut b).expect("read");
    b.truncate(n);
    b
}

#[test]
fn torn_tail_of_the_last_tlog_is_cut() {
    for damage in ["truncate", "flip"] {
        let (fs, lfs, vol) = fresh(VolumeOptions::default());
        vol.write(0, &[1u8; 8192], true).expect("write");
        vol.write(8192, &[2u8; 4096], false).expect("write");
        vol.sync().expect("sync");
        drop(vol);
        // Damage the last entry (the cluster at 8192) of the only TLog, durably.
        let mut t = fs.read_file(&tlog_path(1)).expect("tlog");
        let len = t.len();
        match damage {
            "truncate" => t.truncate(len - 10),
            _ => t[len - TLOG_ENTRY_LEN + 9] ^= 0x40,
        }
        fs.overwrite_durably(&tlog_path(1), &t).expect("damage");
        let vol = Volume::open(lfs.clone(), &dir(), VOL, VolumeOptions::default())
            .expect("open cuts the tail");
        assert_eq!(read_vec(&vol, 0, 8192), vec![1u8; 8192], "{damage}");
        // The cluster whose entry was cut reads as never written; the size entry survived.
        assert_eq!(vol.size(), 12288);
        assert_eq!(read_vec(&vol, 8192, 4096), vec![0u8; 4096], "{damage}");
        // The cut is durable and the volume usable.
        vol.write(8192, &[3u8; 4096], true)
            .expect("write after cut");
        drop(vol);
        fs.crash(CrashMode::DropAll);
        let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("reopen");
        assert_eq!(read_vec(&vol, 8192, 4096), vec![3u8; 4096], "{damage}");
    }
}

#[test]
fn corrupt_middle_entry_of_a_closed_tlog_is_a_clear_error() {
    let opts = VolumeOptions {
        sco_clusters: 4,
        tlog_scos: 1,
    };
    let (fs, lfs, vol) = fresh(opts);
    vol.write(0, &vec![7u8; 4 * 4096 * 3], true).expect("write");
    drop(vol);
    let mut t = fs.read_file(&tlog_path(1)).expect("tlog 1");
    assert!(
        fs.read_file(&tlog_path(2)).is_ok(),
        "the write spans several TLogs"
    );
    t[64 + TLOG_ENTRY_LEN * 2 + 20] ^= 1;
    fs.overwrite_durably(&tlog_path(1), &t).expect("corrupt");
    let err =
        Volume::open(lfs, &dir(), VOL, opts).expect_err("a corrupted closed TLog must not open");
    let msg = err.to_string();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(
        msg.contains(&tlog_name(1)) && msg.contains("CRC32C mismatch"),
        "{msg}"
    );
}

#[test]
fn damaged_headers_and_sealed_scos_are_clear_errors() {
    let opts = VolumeOptions {
        sco_clusters: 4,
        tlog_scos: 4,
    };
    // A bad TLog header (even of the last TLog: headers are fsynced at creation).
    let (fs, lfs, vol) = fresh(opts);
    vol.write(0, &[1u8; 4096], true).expect("write");
    drop(vol);
    let mut t = fs.read_file(&tlog_path(1)).expect("tlog");
    t[0] = b'X';
    fs.overwrite_durably(&tlog_path(1), &t).expect("corrupt");
    let msg = Volume::open(lfs, &dir(), VOL, opts)
        .expect_err("bad magic")
        .to_string();
    assert!(msg.contains("bad magic"), "{msg}");
    // A sealed SCO whose footer is damaged.
    let (fs, lfs, vol) = fresh(opts);
    vol.write(0, &vec![1u8; 4096 * 5], true).expect("write");
    drop(vol);
    let p = dir().join("sco").join(format::sco_name(1));
    let mut s = fs.read_file(&p).expect("sco 1");
    let l = s.len();
    s[l - 5] ^= 1;
    fs.overwrite_durably(&p, &s).expect("corrupt");
    let msg = Volume::open(lfs.clone(), &dir(), VOL, opts)
        .expect_err("bad footer")
        .to_string();
    assert!(msg.contains("SCO 0000000000000001 footer"), "{msg}");
    // A volume opened under the wrong id.
    let msg = Volume::open(lfs, &dir(), VolumeId([1; 16]), opts)
        .expect_err("wrong id")
        .to_string();
    assert!(msg.contains("expected volume"), "{msg}");
}

#[test]
fn sparse_reads_resize_and_space_used() {
    let (_fs, lfs, vol) = fresh(VolumeOptions::default());
    vol.resize(1 << 30).expect("grow");
    assert_eq!(vol.size(), 1 << 30);
    assert_eq!(vol.space_used(), 0, "growing is sparse");
    assert_eq!(read_vec(&vol, 12345, 100), vec![0u8; 100]);
    vol.write(10_000, b"hello", false).expect("write");
    assert_eq!(vol.space_used(), CLUSTER_SIZE_U64);
    assert_eq!(read_vec(&vol, 9_998, 9), b"\0\0hello\0\0");
    vol.write((1 << 30) - 2, b"tail!", false)
        .expect("write past the end grows");
    assert_eq!(vol.size(), (1 << 30) + 3);
    assert_eq!(read_vec(&vol, (1 << 30) - 2, 100), b"tail!");
    // Shrink into the middle of the written cluster: the tail is zeroed, later clusters dropped.
    vol.resize(10_002).expect("shrink");
    assert_eq!(vol.space_used(), CLUSTER_SIZE_U64);
    vol.resize(20_000).expect("grow again");
    assert_eq!(read_vec(&vol, 9_998, 9), b"\0\0he\0\0\0\0\0");
    vol.sync().expect("sync");
    drop(vol);
    let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("reopen");
    assert_eq!(vol.size(), 20_000);
    assert_eq!(read_vec(&vol, 9_998, 9), b"\0\0he\0\0\0\0\0");
    assert_eq!(
        read_vec(&vol, 19_990, 100).len(),
        10,
        "reads stop at the size"
    );
}

#[test]
fn real_files_survive_reopen() {
    let t = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let d = t.path().join("v");
    let opts = VolumeOptions {
        sco_clusters: 8,
        tlog_scos: 2,
    };
    let vol = Volume::create(fs.clone(), &d, VOL, opts, 0).expect("create");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    vol.write(777, &data, true).expect("write");
    assert!(
        Volume::create(fs.clone(), &d, VOL, opts, 0).is_err(),
        "create over an existing volume"
    );
    drop(vol);
    let vol = Volume::open(fs, &d, VOL, opts).expect("open");
    assert_eq!(read_vec(&vol, 777, data.len()), data);
    assert!(std::fs::read_dir(d.join("sco")).expect("sco dir").count() > 5);
    assert!(Path::new(&d.join("tlog").join(tlog_name(3))).exists());
}
