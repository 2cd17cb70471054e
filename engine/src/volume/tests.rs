//! Tests of the VolumeDriver core: random I/O against an oracle with simulated machine crashes,
//! fault injection proving each fsync matters, group commit, torn and corrupted TLogs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{tlog_name, ClusterHash, CLUSTER_SIZE, CLUSTER_SIZE_U64, TLOG_ENTRY_LEN};
use super::*;
use super::{cache::EvictionReport, commit::FsyncSite, layout::MDS_FILE};
use crate::error::Error;

pub(super) const VOL: VolumeId = VolumeId([0x5a; 16]);
/// The address space the random workload uses: a 4 MiB volume.
const SPACE: u64 = 4 << 20;
const SPACE_CLUSTERS: u64 = SPACE / CLUSTER_SIZE_U64;

pub(super) fn small_opts() -> VolumeOptions {
    // 64 KiB SCOs, 2 SCOs per TLog: seals and TLog rolls happen often.
    VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 2,
        checkpoint_tlogs: 64,
    }
}

pub(super) fn dir() -> PathBuf {
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
    /// hashes of the values each cluster took since the last commit.
    alts: HashMap<u64, Vec<ClusterHash>>,
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
            let m = ClusterHash::of(&self.content[s..s + CLUSTER_SIZE]);
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
            if c[..] != self.committed[s..s + CLUSTER_SIZE]
                && !self
                    .alts
                    .get(&ca)
                    .is_some_and(|v| v.contains(&ClusterHash::of(&c)))
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
        let problems = vol.verify().map_err(|e| format!("verify: {e}"))?;
        if !problems.is_empty() {
            return Err(format!("verify after restart: {problems:?}"));
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
    /// Restarts that cut a torn or unsynced TLog tail.
    cuts: u64,
    /// Backups that uploaded (and uncorked) TLogs.
    backups: u64,
    /// Restarts that found a MetaDataStore with applied TLogs (local TLogs were deleted).
    uncorked_restarts: u64,
    /// Holes punched, and writes of zeros.
    punches: u64,
    zero_writes: u64,
}

/// Random reads, writes (aligned and unaligned, up to 64 KiB, some of zeros), holes punched,
/// resizes and commits on a 4 MiB
/// volume over SimFs, with simulated machine crashes — between calls, and (power cuts) in the
/// middle of a call or of the restart itself; after each crash the volume is reopened and checked
/// against the oracle. Returns the first violation.
fn run_workload(
    seed: u64,
    steps: usize,
    crashes: Crashes,
    skip: Option<FsyncSite>,
) -> Result<RunStats, String> {
    let mut rng = SimRng::new(seed);
    let fs = SimFs::new();
    let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
    // Frequent checkpoints, so that crashes also land in their writing.
    let opts = VolumeOptions {
        checkpoint_tlogs: 2,
        ..small_opts()
    };
    let mut vol = Volume::create_inner(lfs.clone(), &dir(), VOL, opts, 1 << 20, skip)
        .map_err(|e| e.to_string())?;
    let mut oracle = Oracle::new(1 << 20);
    let mut st = RunStats::default();
    // Backups lift the cork (redb commit, local TLogs deleted) at random points; the backend
    // survives every crash.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    let store = fail_puts();
    // A power cut is planned: the next failing call is the machine dying.
    let mut armed = false;
    for step in 0..=steps {
        let r = rng.below(100);
        let crash = step == steps || r < 3;
        if crash && !armed && step != steps && rng.below(2) == 0 {
            fs.cut_power_after(rng.below(12));
            armed = true;
            continue;
        }
        let res: Result<(), String> = if crash {
            Err("crash".into())
        } else if r < 13 {
            vol.sync()
                .map(|_| {
                    oracle.commit();
                    st.commits += 1;
                })
                .map_err(|e| e.to_string())
        } else if r < 15 {
            let size = rng.below(SPACE + 1);
            // Whether or not it completes, its effect may survive.
            oracle.resize(size);
            vol.resize(size).map_err(|e| e.to_string())
        } else if r < 18 {
            let everything = rng.below(2) == 0;
            // Now and then the backend refuses one kind of object, at any point of the upload.
            let fail = ["sco/", "tlog/", "manifest", "mds/"];
            let inject = (rng.below(4) == 0).then(|| fail[rng.below(4) as usize]);
            *store.hook().prefix.lock() = inject;
            let r = rt.block_on(vol.backup(&store, everything));
            *store.hook().prefix.lock() = None;
            match r {
                Ok(rep) => {
                    if rep.tlogs > 0 {
                        st.backups += 1;
                    }
                    // "Everything" commits first: all before it is durable.
                    if everything {
                        oracle.commit();
                    }
                    Ok(())
                }
                // An injected refusal leaves the cork on; nothing is lost.
                Err(_) if inject.is_some() && !fs.power_is_cut() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        } else if r < 21 {
            // A hole punched (DEALLOCATE): durable when it returns; the size never changes.
            let off = rng.below(SPACE);
            let len = 1 + rng.below(256 << 10);
            let end = (off + len).min(oracle.size);
            if off < end {
                oracle.write(off, &vec![0u8; (end - off) as usize]);
            }
            st.punches += 1;
            vol.punch(off, len).map_err(|e| e.to_string()).map(|_| {
                oracle.commit();
                st.commits += 1;
            })
        } else if r < 35 {
            let off = rng.below(SPACE);
            let len = (1 + rng.below(64 << 10)).min(SPACE - off) as usize;
            let mut buf = vec![0u8; len];
            vol.read(off, &mut buf)
                .map_err(|e| e.to_string())
                .and_then(|n| {
                    let want = (oracle.size.saturating_sub(off) as usize).min(len);
                    if n != want || buf[..n] != oracle.content[off as usize..off as usize + n] {
                        return Err(format!(
                            "step {step}: read({off}, {len}) returned wrong data"
                        ));
                    }
                    Ok(())
                })
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
            let mut data: Vec<u8> = (0..len)
                .map(|i| (fill.wrapping_add(i as u64 * 31) >> (i % 7)) as u8)
                .collect();
            if rng.below(5) == 0 {
                // Zeros: whole clusters of them are unmapped (zero detection).
                data.fill(0);
                st.zero_writes += 1;
            }
            let stable = rng.below(10) == 0;
            st.writes += 1;
            oracle.write(off, &data);
            vol.write(off, &data, stable)
                .map_err(|e| e.to_string())
                .map(|_| {
                    if stable {
                        oracle.commit();
                        st.commits += 1;
                    }
                })
        };
        let Err(e) = res else { continue };
        if !crash && !fs.power_is_cut() {
            return Err(format!("step {step}: {e}"));
        }
        // The machine dies (or died inside the call): crash, then restart — and the restart
        // itself may lose power a few times.
        let mut restarts = 0;
        vol = loop {
            let mode = match crashes {
                Crashes::DropAll => CrashMode::DropAll,
                Crashes::Random => CrashMode::Random(rng.next_u64()),
                Crashes::Mixed if st.crashes % 2 == 0 => CrashMode::DropAll,
                Crashes::Mixed => CrashMode::Random(rng.next_u64()),
            };
            fs.crash(mode);
            st.crashes += 1;
            restarts += 1;
            if restarts < 4 && rng.below(4) == 0 {
                fs.cut_power_after(rng.below(10));
            }
            match Volume::open_inner(lfs.clone(), &dir(), VOL, opts, skip) {
                Ok(v) if !fs.power_is_cut() => break v,
                Ok(_) => {}
                Err(_) if fs.power_is_cut() => {}
                Err(e) => {
                    return Err(format!(
                        "step {step}: restart after crash ({mode:?}) failed: {e}"
                    ))
                }
            }
        };
        armed = false;
        if vol.stats().restart_cut_bytes > 0 {
            st.cuts += 1;
        }
        if vol.stats().applied_tlog > 0 {
            st.uncorked_restarts += 1;
        }
        oracle
            .check_recovered(&vol)
            .map_err(|e| format!("step {step} after a crash: {e}"))?;
    }
    Ok(st)
}

#[test]
fn random_io_with_machine_crashes_keeps_every_committed_byte() {
    // At least 6 seeds (2 per crash mode), more while time allows; bounded either way.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut total = RunStats::default();
    let mut seed = 1;
    while seed <= 6 || (Instant::now() < deadline && seed <= 30) {
        let mode = [Crashes::DropAll, Crashes::Random, Crashes::Mixed][seed as usize % 3];
        match run_workload(seed, 300, mode, None) {
            Ok(s) => {
                total.crashes += s.crashes;
                total.commits += s.commits;
                total.writes += s.writes;
                total.cuts += s.cuts;
                total.backups += s.backups;
                total.uncorked_restarts += s.uncorked_restarts;
                total.punches += s.punches;
                total.zero_writes += s.zero_writes;
            }
            Err(e) => panic!("seed {seed} ({mode:?}): {e}"),
        }
        seed += 1;
    }
    eprintln!("{} seeds: {total:?}", seed - 1);
    assert!(
        total.crashes > 20 && total.commits > 100 && total.writes > 500,
        "{total:?}"
    );
    assert!(
        total.cuts > 0,
        "no restart had to cut a torn tail: {total:?}"
    );
    assert!(
        total.punches > 30 && total.zero_writes > 50,
        "holes and zeros: {total:?}"
    );
    assert!(
        total.backups > 20 && total.uncorked_restarts > 10,
        "the cork was rarely lifted before a crash: {total:?}"
    );
}

/// Each fsync site, switched off alone, must make the crash test fail: proof that the test
/// can see the loss each one prevents, and that none is superfluous.
#[test]
fn skipping_any_single_fsync_loses_committed_data() {
    for site in FsyncSite::ALL {
        let mut found = restart_window_scenario(Some(site)).err().map(|e| (0, e));
        for seed in 1..=300u64 {
            if found.is_some() {
                break;
            }
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

/// A targeted scenario: the last TLog holds entries of a write whose data never became
/// durable, so the restart must cut it; the power fails at each point of that restart in turn,
/// followed by a crash that keeps a random part of what was not synced; the next restart must
/// open and hold every committed byte.
fn restart_window_scenario(skip: Option<FsyncSite>) -> Result<(), String> {
    let opts = VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 1,
        checkpoint_tlogs: 64,
    };
    let a: Vec<u8> = (0..4 * 4096).map(|i| (i % 253) as u8 + 1).collect();
    let b = vec![0xeeu8; 4 * 4096];
    let e = |e: Error| e.to_string();
    for n in 0..16u64 {
        for seed in 0..12u64 {
            let fs = SimFs::new();
            let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
            let vol = Volume::create_inner(lfs.clone(), &dir(), VOL, opts, 0, skip).map_err(e)?;
            vol.write(0, &a, true).map_err(e)?;
            vol.write(4 * 4096, &b, false).map_err(e)?;
            // The TLog entries of `b` become durable, its data does not (both are written into
            // the files first: they may wait in memory, `deferred.rs`).
            vol.write_deferred().map_err(e)?;
            let t = fs.read_file(&tlog_path(1)).map_err(|e| e.to_string())?;
            fs.overwrite_durably(&tlog_path(1), &t)
                .map_err(|e| e.to_string())?;
            let sp = dir().join("sco").join(format::sco_name(1));
            let mut sd = fs.read_file(&sp).map_err(|e| e.to_string())?;
            sd.truncate(4096 + 4 * 4096);
            fs.overwrite_durably(&sp, &sd).map_err(|e| e.to_string())?;
            drop(vol);
            fs.crash(CrashMode::DropAll);
            fs.cut_power_after(n);
            if let Err(err) = Volume::open_inner(lfs.clone(), &dir(), VOL, opts, skip) {
                if !fs.power_is_cut() {
                    return Err(format!("n {n}: restart failed: {err}"));
                }
            }
            fs.crash(CrashMode::Random(seed));
            let vol = Volume::open_inner(lfs.clone(), &dir(), VOL, opts, skip)
                .map_err(|err| format!("n {n} seed {seed}: restart after a cut restart: {err}"))?;
            let got = read_vec(&vol, 0, 8 * 4096);
            if got.len() != 8 * 4096 || got[..4 * 4096] != a[..] {
                return Err(format!("n {n} seed {seed}: committed data lost"));
            }
            for c in got[4 * 4096..].chunks(4096) {
                if c != &b[..4096] && c.iter().any(|x| *x != 0) {
                    return Err(format!(
                        "n {n} seed {seed}: a cluster holds neither old nor new data"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn a_restart_cut_short_by_power_cuts_keeps_committed_data() {
    restart_window_scenario(None).unwrap_or_else(|e| panic!("{e}"));
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

pub(super) fn tlog_path(seq: u64) -> PathBuf {
    dir().join("tlog").join(tlog_name(seq))
}

pub(super) fn fresh(opts: VolumeOptions) -> (SimFs, Arc<dyn LocalFs>, Volume) {
    let fs = SimFs::new();
    let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
    let vol = Volume::create(lfs.clone(), &dir(), VOL, opts, 0).expect("create");
    (fs, lfs, vol)
}

/// [`fresh`], uploading to an in-memory store through a runtime of its own.
pub(super) fn fresh_backed(
    opts: VolumeOptions,
) -> (tokio::runtime::Runtime, Arc<MemStore>, SimFs, Volume) {
    let rt = mt_rt();
    let store = Arc::new(MemStore::new());
    let (fs, _lfs, vol) = fresh(opts);
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    (rt, store, fs, vol)
}

/// Removes the volume's write-ahead log durably: damage a test makes to a TLog or SCO then
/// stands, as it would if the log's records had been lost too (with them, a restart writes the
/// committed bytes back).
pub(super) fn forget_wal(fs: &SimFs) {
    fs.remove_file(&layout::wal_path(&dir()))
        .expect("remove the write-ahead log");
    fs.sync_dir(&dir()).expect("sync");
}

pub(super) fn read_vec(vol: &Volume, off: u64, len: usize) -> Vec<u8> {
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
        forget_wal(&fs);
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
        checkpoint_tlogs: 64,
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
    assert!(matches!(err, Error::Format(_)), "{err:?}");
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
        checkpoint_tlogs: 64,
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
    // A SCO sealed in a closed TLog whose footer is damaged: an error (closed TLogs are trusted
    // without reading their SCOs, so a damaged one must not pass).
    let (fs, lfs, vol) = fresh(opts);
    let data: Vec<u8> = (0..4096 * 17).map(|i| (i % 251) as u8).collect();
    vol.write(0, &data, true).expect("write");
    drop(vol);
    let damage_footer = |fs: &SimFs, seq: u64| {
        let p = dir().join("sco").join(format::sco_name(seq));
        let mut s = fs.read_file(&p).expect("sco");
        let l = s.len();
        s[l - 5] ^= 1;
        fs.overwrite_durably(&p, &s).expect("corrupt");
    };
    damage_footer(&fs, 1);
    let msg = Volume::open(lfs.clone(), &dir(), VOL, opts)
        .expect_err("bad footer")
        .to_string();
    assert!(msg.contains("SCO 0000000000000001 footer"), "{msg}");
    // A SCO sealed in the open TLog (a seal is made durable by the next commit, so a crash can
    // tear its footer): its data verifies, so the footer is written again and nothing is lost.
    let (fs, lfs, vol) = fresh(opts);
    vol.write(0, &data[..4096 * 5], true).expect("write");
    drop(vol);
    damage_footer(&fs, 1);
    let v = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("repaired");
    assert_eq!(whole(&v), data[..4096 * 5].to_vec());
    assert!(v.verify().expect("verify").is_empty());
    drop(v);
    // No volume at all.
    assert!(matches!(
        Volume::open(lfs.clone(), Path::new("/elsewhere"), VOL, opts),
        Err(Error::NotFound)
    ));
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
        checkpoint_tlogs: 64,
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

// ------------------------------------------------------------------------------------------------
// Backend pipeline and backend restart

use bytes::Bytes;
use strata_backend::{MemStore, ObjectStore};

/// A store that fails PUTs of keys starting with a chosen prefix (to cut the pipeline midway).
pub(super) type FailPuts = strata_backend::HookedStore<Faults>;

/// The hook of [`FailPuts`].
#[derive(Debug, Default)]
pub(super) struct Faults {
    prefix: parking_lot::Mutex<Option<&'static str>>,
    failed: std::sync::atomic::AtomicU64,
    /// Ranged GETs answered (cache misses reach the backend this way).
    range_gets: std::sync::atomic::AtomicU64,
    /// Ranged GETs fail (the backend is down for reads).
    pub(super) gets_down: std::sync::atomic::AtomicBool,
    /// Keys of every whole-object GET, and of every unconditional PUT, in order.
    gets: parking_lot::Mutex<Vec<String>>,
    puts: parking_lot::Mutex<Vec<String>>,
    /// When set, the next ranged GET is held: it sends a release handle here and waits for it.
    pub(super) hold_range_gets:
        parking_lot::Mutex<Option<std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>>>,
}

fn injected(key: &str, what: &str) -> strata_backend::Error {
    strata_backend::Error::Io {
        key: key.to_string(),
        source: std::io::Error::other(format!("injected {what} failure")),
    }
}

#[async_trait::async_trait]
impl strata_backend::Hook for Faults {
    async fn before(&self, call: &strata_backend::Call<'_>) -> strata_backend::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        use strata_backend::Call;
        match call {
            Call::Put { key, conditional } => {
                if self.prefix.lock().is_some_and(|p| key.starts_with(p)) {
                    self.failed.fetch_add(1, Relaxed);
                    return Err(injected(key, "PUT"));
                }
                if !conditional {
                    self.puts.lock().push(key.to_string());
                }
            }
            Call::Get { key } => self.gets.lock().push(key.to_string()),
            Call::GetRange { key, .. } => {
                let hold = self.hold_range_gets.lock().take();
                if let Some(tx) = hold {
                    let (release, released) = tokio::sync::oneshot::channel();
                    let _ = tx.send(release);
                    let _ = released.await;
                }
                if self.gets_down.load(Relaxed) {
                    return Err(injected(key, "GET"));
                }
                self.range_gets.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Faults {
    /// Fails every PUT of a key starting with `prefix` (`None`: none).
    pub(super) fn fail_puts_under(&self, prefix: Option<&'static str>) {
        *self.prefix.lock() = prefix;
    }

    /// The keys of every unconditional PUT, in order.
    pub(super) fn puts(&self) -> Vec<String> {
        self.puts.lock().clone()
    }
}

pub(super) fn fail_puts() -> FailPuts {
    strata_backend::HookedStore::new(Arc::new(MemStore::new()), Faults::default())
}

/// Backend restart, then reads of the (lazily restored) SCOs go to `store`.
pub(super) fn restore_from<S: ObjectStore + 'static>(
    rt: &tokio::runtime::Runtime,
    store: &Arc<S>,
    fs: Arc<dyn LocalFs>,
    opts: VolumeOptions,
) -> Result<Volume, Error> {
    let v = rt.block_on(Volume::restore(&**store, fs, &dir(), VOL, opts))?;
    v.set_backend(store.clone(), rt.handle().clone(), 1);
    Ok(v)
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

pub(super) fn whole(vol: &Volume) -> Vec<u8> {
    read_vec(vol, 0, vol.size() as usize)
}

fn scribble(vol: &Volume, rng: &mut SimRng, n: usize) {
    for _ in 0..n {
        let off = rng.below(SPACE - 70_000);
        let len = 1 + rng.below(65_536) as usize;
        let b = rng.next_u64() as u8;
        vol.write(off, &vec![b; len], false).expect("write");
    }
}

pub(super) async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix, None, 10_000)
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[test]
fn backend_restart_rebuilds_the_volume_from_the_backend_alone() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    let opts = small_opts();
    let (_fs, _lfs, vol) = fresh(opts);
    let mut rng = SimRng::new(7);
    scribble(&vol, &mut rng, 60);
    vol.resize(3 << 20).expect("shrink");
    let before = vol.bytes_not_on_backend();
    assert!(before >= 60 * 4096, "{before}");
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert!(rep.tlogs > 2 && rep.scos > 4, "{rep:?}");
    assert_eq!(vol.bytes_not_on_backend(), 0);
    let expect1 = whole(&vol);
    let scos = rt.block_on(keys(&*store, "sco/"));
    let tlogs = rt.block_on(keys(&*store, "tlog/"));
    assert_eq!(scos.len() as u64, rep.scos);
    assert_eq!(tlogs.len() as u64, rep.tlogs);
    assert!(rt.block_on(store.head("manifest.xml")).is_ok());

    // Local state gone: a fresh machine restores from the backend alone.
    let fs2: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol2 = restore_from(&rt, &store, fs2.clone(), opts).expect("restore");
    assert_eq!(vol2.size(), 3 << 20);
    assert_eq!(
        vol2.bytes_not_on_backend(),
        0,
        "restored data is on the backend"
    );
    assert_eq!(whole(&vol2), expect1);

    // The restored volume goes on; its next backup extends the manifest (conditional PUT).
    scribble(&vol2, &mut rng, 20);
    assert!(vol2.bytes_not_on_backend() > 0);
    let rep2 = rt
        .block_on(vol2.backup(&*store, true))
        .expect("second backup");
    assert_eq!(
        vol2.bytes_not_on_backend(),
        0,
        "the manifest read at the first backup counts"
    );
    assert_eq!(
        rep2.last_tlog,
        Some(rep.last_tlog.expect("tlogs") + rep2.tlogs)
    );
    let expect2 = whole(&vol2);

    // A backup cut before its manifest changes nothing a restore sees.
    scribble(&vol2, &mut rng, 20);
    *store.hook().prefix.lock() = Some("tlog/");
    assert!(rt.block_on(vol2.backup(&*store, true)).is_err());
    *store.hook().prefix.lock() = None;
    let fs3: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol3 = restore_from(&rt, &store, fs3, opts).expect("restore 3");
    assert_eq!(
        whole(&vol3),
        expect2,
        "only what the manifest names is restored"
    );
    // ...and the next backup uploads what was missed.
    let expect4 = whole(&vol2);
    rt.block_on(vol2.backup(&*store, true)).expect("retry");
    let fs4: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol4 = restore_from(&rt, &store, fs4, opts).expect("restore 4");
    assert_eq!(whole(&vol4), expect4);

    // Restoring over an existing volume is refused.
    assert!(matches!(
        restore_from(&rt, &store, fs2, opts),
        Err(Error::Exists)
    ));
}

#[test]
fn a_manifest_changed_by_another_writer_is_never_overwritten() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let (_fs, _lfs, vol) = fresh(small_opts());
    vol.write(0, &[1u8; 70_000], false).expect("write");
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let intruder = Bytes::from_static(b"<strata-volume/>");
    rt.block_on(store.put("manifest.xml", intruder.clone()))
        .expect("intruder");
    vol.write(0, &[2u8; 70_000], false).expect("write");
    let err = rt
        .block_on(vol.backup(&*store, true))
        .expect_err("must detect the other writer");
    assert!(
        err.to_string().contains("changed by another writer"),
        "{err}"
    );
    assert!(
        err.is_final(),
        "a lost manifest race is final, never retried: {err:?}"
    );
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(
        rt.block_on(store.get("manifest.xml")).expect("get").0,
        intruder
    );
    // For good: a later backup, or a scrub's fenced write before it deletes, does not read the
    // other writer's manifest and write over it.
    let again = rt.block_on(vol.backup(&*store, true)).expect_err("deposed");
    assert!(again.to_string().contains("another writer"), "{again:?}");
    // Halted: its writes are refused, saying why.
    let w = vol.write(0, &[3u8; 4096], false).expect_err("halted");
    assert!(w.to_string().contains("another writer"), "{w}");
    assert!(rt.block_on(vol.fence(&*store)).is_err());
    assert_eq!(
        rt.block_on(store.get("manifest.xml")).expect("get").0,
        intruder
    );
}

#[test]
fn a_corrupted_backend_sco_is_rejected_when_read_after_restore() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let (_fs, _lfs, vol) = fresh(small_opts());
    vol.write(0, &[1u8; 70_000], false).expect("write");
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let key = super::backend::keys::sco_key(1, 1);
    let (b, _) = rt.block_on(store.get(&key)).expect("get");
    let mut b = b.to_vec();
    b[format::ScoFooter::offset(1) as usize + 10] ^= 1;
    rt.block_on(store.put(&key, Bytes::from(b)))
        .expect("corrupt");
    let fs2: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    // Restore fetches metadata only; the damaged cluster is caught by its hash when read.
    let vol2 = restore_from(&rt, &store, fs2, small_opts()).expect("restore");
    assert_eq!(
        read_vec(&vol2, 0, 4096),
        vec![1u8; 4096],
        "an intact cluster"
    );
    let mut buf = vec![0u8; 4096];
    let err = vol2.read(4096, &mut buf).expect_err("corrupt cluster");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
}

/// Random writes (some of zeros), holes punched, resizes and "sync and wait" backups; at random
/// points the machine is lost and
/// the volume restored from the backend alone must equal its content at the last backup.
#[test]
fn random_backups_and_backend_restarts_restore_the_last_backup() {
    let rt = rt();
    let mut restores = 0;
    // Without checkpoints (every TLog replayed), and with frequent incremental ones.
    for seed in 1..=6u64 {
        let opts = VolumeOptions {
            checkpoint_tlogs: if seed % 2 == 0 { 1000 } else { 2 },
            ..small_opts()
        };
        let store = Arc::new(MemStore::new());
        let mut rng = SimRng::new(seed * 1000);
        let (_fs, _lfs, mut vol) = fresh(opts);
        let mut at_backup: Option<Vec<u8>> = None;
        for step in 0..120 {
            match rng.below(20) {
                0 | 1 => {
                    rt.block_on(vol.backup(&*store, true)).expect("backup");
                    at_backup = Some(whole(&vol));
                }
                2 => {
                    if let Some(expect) = &at_backup {
                        let fs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
                        vol = restore_from(&rt, &store, fs, opts).expect("restore");
                        assert_eq!(&whole(&vol), expect, "seed {seed} step {step}");
                        restores += 1;
                    }
                }
                3 => vol.resize(rng.below(SPACE)).expect("resize"),
                // Holes and zeros travel as Unmap entries (and checkpoint pages without them).
                4 => vol
                    .punch(rng.below(SPACE), rng.below(300_000))
                    .expect("punch"),
                5 => {
                    let off = rng.below(SPACE - 70_000);
                    vol.write(off, &vec![0u8; 1 + rng.below(65_536) as usize], false)
                        .expect("zeros");
                }
                _ => scribble(&vol, &mut rng, 1),
            }
        }
        let problems = vol.verify().expect("verify");
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    }
    assert!(restores >= 6, "only {restores} restores");
}

/// Polls `cond` until it holds or `secs` pass (no fixed sleeps as synchronisation).
/// The crash workload over many seeds (run by hand: `cargo test -p strata-engine --release --
/// --ignored soak`; `STRATA_SOAK_SEEDS` sets the count, default 300, `STRATA_SOAK_FIRST` the first
/// seed, default 1000).
#[test]
#[ignore = "long soak, run by hand"]
fn soak_random_io_with_machine_crashes() {
    let n: u64 = std::env::var("STRATA_SOAK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("STRATA_SOAK_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for seed in first..first + n {
        let mode = [Crashes::DropAll, Crashes::Random, Crashes::Mixed][seed as usize % 3];
        if let Err(e) = run_workload(seed, 400, mode, None) {
            panic!("seed {seed} ({mode:?}): {e}");
        }
    }
}

/// Rough numbers for the write and read paths on the real local filesystem (run by hand:
/// `cargo test -p strata-engine --release --lib -- --ignored --nocapture volume_speed`).
/// `STRATA_SPEED_DIR` picks the directory (default: a temporary one).
#[test]
#[ignore = "measurement, run by hand"]
fn volume_speed() {
    let t =
        tempfile::tempdir_in(std::env::var("STRATA_SPEED_DIR").unwrap_or_else(|_| "/tmp".into()))
            .expect("tempdir");
    let fs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let d = t.path().join("v");
    let size = 1u64 << 30;
    let vol = Volume::create(fs.clone(), &d, VOL, VolumeOptions::default(), size).expect("create");
    let mut rng = SimRng::new(5);
    let buf = vec![0x5au8; 4096];
    let n = 20_000u64;
    let t0 = Instant::now();
    for i in 0..n {
        vol.write(rng.below(size / 4096) * 4096, &buf, false)
            .expect("write");
        if i % 32 == 31 {
            vol.sync().expect("sync");
        }
    }
    vol.sync().expect("sync");
    let dt = t0.elapsed().as_secs_f64();
    eprintln!(
        "4K random writes, COMMIT every 32: {:.0} IOPS",
        n as f64 / dt
    );
    let t0 = Instant::now();
    for _ in 0..n {
        vol.write(rng.below(size / 4096) * 4096, &buf, true)
            .expect("write");
    }
    eprintln!(
        "4K random stable writes (QD1): {:.0} IOPS",
        n as f64 / t0.elapsed().as_secs_f64()
    );
    let big = vec![0xa5u8; 1 << 20];
    let t0 = Instant::now();
    for i in 0..256u64 {
        vol.write(i << 20, &big, false).expect("write");
    }
    vol.sync().expect("sync");
    eprintln!(
        "1 MiB sequential writes + COMMIT: {:.0} MB/s",
        256.0 / t0.elapsed().as_secs_f64()
    );
    let mut rb = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    for i in 0..256u64 {
        vol.read(i << 20, &mut rb).expect("read");
    }
    eprintln!(
        "1 MiB sequential reads (page cache): {:.0} MB/s",
        256.0 / t0.elapsed().as_secs_f64()
    );
    let mut rb = vec![0u8; 4096];
    let t0 = Instant::now();
    for _ in 0..n {
        vol.read(rng.below(256 << 8) * 4096, &mut rb).expect("read");
    }
    eprintln!(
        "4K random reads (page cache): {:.0} IOPS",
        n as f64 / t0.elapsed().as_secs_f64()
    );
    drop(vol);
    let t0 = Instant::now();
    let vol = Volume::open(fs.clone(), &d, VOL, VolumeOptions::default()).expect("open");
    eprintln!(
        "local restart with {} live clusters: {:.3} s",
        vol.space_used() / 4096,
        t0.elapsed().as_secs_f64()
    );
    // Everything on a (memory) backend: the MetaDataStore is in redb, the overlay empty.
    let rt = rt();
    let store = MemStore::new();
    let t0 = Instant::now();
    rt.block_on(vol.backup(&store, true)).expect("backup");
    eprintln!(
        "backup + uncork of {} clusters: {:.3} s",
        vol.space_used() / 4096,
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    for i in 0..n {
        vol.write(rng.below(size / 4096) * 4096, &buf, false)
            .expect("write");
        if i % 32 == 31 {
            vol.sync().expect("sync");
        }
    }
    vol.sync().expect("sync");
    eprintln!(
        "4K random writes over redb, COMMIT every 32: {:.0} IOPS",
        n as f64 / t0.elapsed().as_secs_f64()
    );
    rt.block_on(vol.backup(&store, true)).expect("backup");
    let t0 = Instant::now();
    for _ in 0..n {
        vol.read(rng.below(256 << 8) * 4096, &mut rb).expect("read");
    }
    eprintln!(
        "4K random reads over redb (page cache): {:.0} IOPS",
        n as f64 / t0.elapsed().as_secs_f64()
    );
    let mut big = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    for i in 0..256u64 {
        vol.read(i << 20, &mut big).expect("read");
    }
    eprintln!(
        "1 MiB sequential reads over redb: {:.0} MB/s",
        256.0 / t0.elapsed().as_secs_f64()
    );
    drop(vol);
    let t0 = Instant::now();
    let vol = Volume::open(fs, &d, VOL, VolumeOptions::default()).expect("open");
    eprintln!(
        "local restart after uncork ({} TLogs replayed): {:.3} s",
        vol.stats().tlogs_replayed,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn verify_finds_corruption_that_reads_cannot_see() {
    let opts = VolumeOptions {
        sco_clusters: 4,
        tlog_scos: 2,
        checkpoint_tlogs: 64,
    };
    let (fs, lfs, vol) = fresh(opts);
    vol.write(0, &vec![3u8; 4096 * 10], true).expect("write");
    assert_eq!(vol.verify().expect("verify"), Vec::<String>::new());
    drop(vol);
    // Flip one data byte of sealed SCO 2 (restart does not read sealed SCOs' data).
    let p = dir().join("sco").join(format::sco_name(2));
    let mut b = fs.read_file(&p).expect("sco");
    b[4096 + 100] ^= 0x80;
    fs.overwrite_durably(&p, &b).expect("corrupt");
    let vol = Volume::open(lfs, &dir(), VOL, opts).expect("open");
    let problems = vol.verify().expect("verify");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("SCO 0000000000000002 data: CRC32C mismatch")),
        "{problems:?}"
    );
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.contains("hash mismatch"))
            .count(),
        1,
        "{problems:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// SCO cache: eviction of disposable SCOs and ranged reads of evicted clusters

/// Bytes of an SCO of `small_opts()` on disk: header, 16 clusters, footer.
pub(super) const SMALL_SCO_BYTES: u64 = 4096 + 16 * 4096 + 32;

pub(super) fn mt_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `len` bytes of pseudo-random data from offset 0 in 64 KiB pieces; returns them.
pub(super) fn fill(vol: &Volume, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SimRng::new(seed);
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    for (i, piece) in data.chunks(65_536).enumerate() {
        vol.write(i as u64 * 65_536, piece, false).expect("write");
    }
    data
}

/// Sum of the lengths of the SCO files on the (simulated) disk.
fn sco_disk_bytes(lfs: &Arc<dyn LocalFs>) -> u64 {
    let d = dir().join("sco");
    lfs.list(&d)
        .expect("list")
        .iter()
        .map(|n| {
            lfs.open(&d.join(n))
                .and_then(|f| f.file_len())
                .expect("len")
        })
        .sum()
}

fn sco_file_len(lfs: &Arc<dyn LocalFs>, seq: u64) -> u64 {
    lfs.open(&dir().join("sco").join(format::sco_name(seq)))
        .and_then(|f| f.file_len())
        .expect("SCO file")
}

fn range_gets(store: &FailPuts) -> u64 {
    store
        .hook()
        .range_gets
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// A volume of 48 full SCOs, all on `store`, with SCO 1 read hot; then evicted down to a cache
/// of 10 SCOs.
pub(super) fn evicted_volume(
    rt: &tokio::runtime::Runtime,
    store: &Arc<FailPuts>,
) -> (SimFs, Arc<dyn LocalFs>, Volume, Vec<u8>, EvictionReport) {
    let (fs, lfs, vol) = fresh(small_opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    let vol = Arc::new(vol);
    let data = fill(&vol, 48 * 65_536, 11);
    rt.block_on(vol.backup(&**store, true)).expect("backup");
    assert_eq!(
        evict_lfu(std::slice::from_ref(&vol), 0).scos,
        0,
        "unbounded"
    );
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, small_opts()).expect("reopen");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    // After a restart, the SCOs whose TLogs the MetaDataStore applied are known to be on the
    // backend (the cork was lifted only once the manifest named them).
    assert_eq!(vol.eviction_candidates().len(), 48);
    assert_eq!(
        vol.stats().tlogs_replayed,
        1,
        "only the open TLog is replayed"
    );
    assert_eq!(vol.stats().corked_clusters, 0);
    rt.block_on(vol.backup(&**store, false))
        .expect("read the manifest");
    assert_eq!(vol.eviction_candidates().len(), 48);
    for _ in 0..5 {
        assert_eq!(read_vec(&vol, 0, 65_536), data[..65_536]);
    }
    let vol = Arc::new(vol);
    let rep = evict_lfu(std::slice::from_ref(&vol), 10 * SMALL_SCO_BYTES);
    let vol = Arc::try_unwrap(vol).expect("sole owner");
    (fs, lfs, vol, data, rep)
}

#[test]
fn eviction_keeps_the_sco_cache_bounded_and_every_byte_reads_back() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (_fs, lfs, vol, data, rep) = evicted_volume(&rt, &store);
    let cache = 10 * SMALL_SCO_BYTES;
    assert!(rep.before > cache && rep.scos > 30, "{rep:?}");
    assert!(rep.after <= cache * 7 / 10, "{rep:?}");
    // What the volume counts is what is on disk (evicted SCOs as 4 KiB header stubs).
    assert_eq!(sco_disk_bytes(&lfs), vol.sco_cache_bytes());
    assert_eq!(rep.after, vol.sco_cache_bytes());
    // Least-frequently-used first, oldest first among equals: the hot SCO 1 and the newest
    // SCOs stay, the oldest cold ones go.
    assert_eq!(sco_file_len(&lfs, 1), SMALL_SCO_BYTES, "hot SCO kept");
    assert_eq!(sco_file_len(&lfs, 48), SMALL_SCO_BYTES, "newest SCO kept");
    assert_eq!(sco_file_len(&lfs, 2), 4096, "oldest cold SCO evicted");
    assert_eq!(vol.stats().scos_evicted, rep.scos);

    // Every byte reads back: hits from the cache, misses by ranged GETs, one per run of
    // clusters contiguous in an evicted SCO (here a whole SCO, written sequentially).
    let gets0 = range_gets(&store);
    let s0 = vol.stats();
    assert_eq!(whole(&vol), data);
    let s1 = vol.stats();
    let misses = s1.cache_misses - s0.cache_misses;
    assert_eq!(misses, rep.scos * 16, "every cluster of the evicted SCOs");
    assert_eq!(
        range_gets(&store) - gets0,
        rep.scos,
        "one GET per evicted SCO"
    );
    assert!(s1.cache_hits > s0.cache_hits);
    // An unaligned read across cached and evicted clusters, and a read-modify-write of an
    // evicted cluster.
    assert_eq!(
        read_vec(&vol, 65_536 - 100, 9_000),
        data[65_536 - 100..65_536 + 8_900]
    );
    vol.write(2 * 65_536 + 10, b"patch", true)
        .expect("rmw of an evicted cluster");
    let mut want = data.clone();
    want[2 * 65_536 + 10..2 * 65_536 + 15].copy_from_slice(b"patch");
    assert_eq!(whole(&vol), want);
    assert!(vol.verify().expect("verify").is_empty());
}

#[test]
fn scos_not_on_the_backend_are_never_evicted() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (_fs, lfs, vol) = fresh(small_opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    let vol = Arc::new(vol);
    let data = fill(&vol, 20 * 65_536, 5);
    let tiny = SMALL_SCO_BYTES;
    // Nothing was uploaded yet.
    assert_eq!(evict_lfu(std::slice::from_ref(&vol), tiny).scos, 0);
    // SCOs and TLogs uploaded, but the manifest PUT fails: still not disposable.
    *store.hook().prefix.lock() = Some("manifest");
    assert!(rt.block_on(vol.backup(&*store, true)).is_err());
    assert!(rt.block_on(keys(&*store, "sco/")).len() >= 20);
    assert!(vol.eviction_candidates().is_empty());
    assert_eq!(evict_lfu(std::slice::from_ref(&vol), tiny).scos, 0);
    // The backend is down altogether.
    *store.hook().prefix.lock() = Some("");
    assert!(rt.block_on(vol.backup(&*store, true)).is_err());
    let before = sco_disk_bytes(&lfs);
    assert_eq!(evict_lfu(std::slice::from_ref(&vol), tiny).scos, 0);
    assert_eq!(sco_disk_bytes(&lfs), before);
    assert_eq!(whole(&vol), data);
    assert_eq!(range_gets(&store), 0);

    // Back up: what the manifest names becomes disposable, and only that.
    *store.hook().prefix.lock() = None;
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let last_backed = vol.stats().scos_sealed;
    let more = fill(&vol, 4 * 65_536, 6);
    vol.close_for_backup().expect("seal");
    let cands = vol.eviction_candidates();
    assert_eq!(cands.len() as u64, last_backed);
    assert!(cands.iter().all(|c| c.sco <= last_backed));
    let rep = evict_lfu(std::slice::from_ref(&vol), tiny);
    assert_eq!(rep.scos, last_backed);
    for seq in last_backed + 1..=vol.stats().scos_sealed {
        assert_eq!(
            sco_file_len(&lfs, seq),
            SMALL_SCO_BYTES,
            "SCO {seq} not on the backend"
        );
    }
    let mut want = data;
    want[..more.len()].copy_from_slice(&more);
    assert_eq!(whole(&vol), want);
}

#[test]
fn restart_after_eviction_reads_evicted_clusters_from_the_backend() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (fs, lfs, vol, data, rep) = evicted_volume(&rt, &store);
    assert!(rep.scos > 0);
    drop(vol);
    fs.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, small_opts()).expect("restart");
    // Without a backend an evicted cluster cannot be read: a clear error.
    let mut b = vec![0u8; 4096];
    let err = vol.read(2 * 65_536, &mut b).expect_err("no backend");
    assert!(err.to_string().contains("evicted"), "{err}");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    assert_eq!(whole(&vol), data);
    assert!(vol.verify().expect("verify").is_empty());
    // Writing, uploading and evicting go on after the restart.
    let vol = Arc::new(vol);
    let more = fill(&vol, 8 * 65_536, 9);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let r2 = evict_lfu(std::slice::from_ref(&vol), 10 * SMALL_SCO_BYTES);
    assert!(r2.scos > 0 && r2.after <= 7 * SMALL_SCO_BYTES, "{r2:?}");
    let mut want = data;
    want[..more.len()].copy_from_slice(&more);
    assert_eq!(whole(&vol), want);
}

#[test]
fn a_corrupt_or_unreachable_backend_cluster_is_a_clear_error() {
    let rt = mt_rt();
    let store = Arc::new(fail_puts());
    let (_fs, lfs, vol, data, _rep) = evicted_volume(&rt, &store);
    assert_eq!(sco_file_len(&lfs, 2), 4096);
    // Flip one byte of cluster 3 of SCO 2 (volume cluster 19) on the backend.
    let key = super::backend::keys::sco_key(2, 1);
    let (obj, _) = rt.block_on(store.get(&key)).expect("get");
    let mut obj = obj.to_vec();
    obj[4096 + 3 * 4096 + 10] ^= 0x40;
    rt.block_on(store.put(&key, Bytes::from(obj))).expect("put");
    let mut b = vec![0u8; 4096];
    let err = vol.read(19 * 4096, &mut b).expect_err("corrupt cluster");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    // The other clusters of that SCO still read.
    assert_eq!(read_vec(&vol, 18 * 4096, 4096), data[18 * 4096..19 * 4096]);
    // The backend unreachable: the client is told to retry later, and the volume is not halted.
    store
        .hook()
        .gets_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(vol.read(20 * 4096, &mut b), Err(Error::Delay)));
    assert!(matches!(
        vol.write(20 * 4096 + 1, b"x", false),
        Err(Error::Delay)
    ));
    store
        .hook()
        .gets_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(read_vec(&vol, 20 * 4096, 4096), data[20 * 4096..21 * 4096]);
    vol.write(20 * 4096 + 1, b"x", true)
        .expect("write after the backend is back");
}

// ------------------------------------------------------------------------------------------------
// The MetaDataStore in redb, the cork, metadata checkpoints

fn ckpt_opts(checkpoint_tlogs: u32) -> VolumeOptions {
    VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 1,
        checkpoint_tlogs,
    }
}

/// Writes one SCO's worth (16 clusters) at cluster `ca`, recording it in `oracle`.
fn write_sco(vol: &Volume, oracle: &mut HashMap<u64, Vec<u8>>, ca: u64, seed: u64) {
    let mut rng = SimRng::new(seed);
    let data: Vec<u8> = (0..16 * CLUSTER_SIZE)
        .map(|_| rng.next_u64() as u8)
        .collect();
    vol.write(ca * CLUSTER_SIZE_U64, &data, false)
        .expect("write");
    for (i, c) in data.chunks(CLUSTER_SIZE).enumerate() {
        oracle.insert(ca + i as u64, c.to_vec());
    }
}

fn check_oracle(vol: &Volume, oracle: &HashMap<u64, Vec<u8>>) {
    for (ca, want) in oracle {
        assert_eq!(
            &read_vec(vol, ca * CLUSTER_SIZE_U64, CLUSTER_SIZE),
            want,
            "cluster {ca}"
        );
    }
    assert_eq!(vol.space_used(), oracle.len() as u64 * CLUSTER_SIZE_U64);
}

/// Local SCO files holding more than a header (data that is not only on the backend).
fn local_sco_data_files(lfs: &Arc<dyn LocalFs>) -> usize {
    let d = dir().join("sco");
    lfs.list(&d)
        .expect("list")
        .iter()
        .filter(|n| {
            lfs.open(&d.join(n))
                .and_then(|f| f.file_len())
                .expect("len")
                > 4096
        })
        .count()
}

#[test]
fn the_cork_lifts_once_on_the_backend_and_local_restart_replays_only_later_tlogs() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let (_fs, lfs, vol) = fresh(ckpt_opts(1000));
    let mut oracle = HashMap::new();
    for i in 0..6 {
        write_sco(&vol, &mut oracle, (i % 4) * 16, i);
    }
    assert!(vol.stats().corked_clusters > 0, "nothing uploaded yet");
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
    let last = rep.last_tlog.expect("uploaded");
    let s = vol.stats();
    assert_eq!(s.corked_clusters, 0, "the overlay drained: {s:?}");
    assert_eq!(s.applied_tlog, last);
    // The applied TLogs are gone locally; only the open one is left.
    let tlogs = lfs.list(&dir().join("tlog")).expect("list");
    assert_eq!(tlogs, vec![tlog_name(last + 1)]);
    check_oracle(&vol, &oracle);
    // Corked again, then a shrink over redb entries and a grow: the trim floor hides them.
    write_sco(&vol, &mut oracle, 100, 99);
    vol.resize(40 * CLUSTER_SIZE_U64).expect("shrink");
    oracle.retain(|ca, _| *ca < 40);
    vol.resize(200 * CLUSTER_SIZE_U64).expect("grow");
    check_oracle(&vol, &oracle);
    vol.sync().expect("sync");
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, ckpt_opts(1000)).expect("reopen");
    assert_eq!(
        vol.stats().tlogs_replayed,
        1,
        "only the TLog after applied_tlog"
    );
    assert_eq!(vol.stats().applied_tlog, last);
    check_oracle(&vol, &oracle);
    assert!(vol.verify().expect("verify").is_empty());
    rt.block_on(vol.backup(&*store, true)).expect("backup 2");
    assert_eq!(vol.stats().corked_clusters, 0);
    check_oracle(&vol, &oracle);
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, ckpt_opts(1000)).expect("reopen 2");
    check_oracle(&vol, &oracle);
    assert!(vol.verify().expect("verify").is_empty());
}

#[test]
fn backend_restart_from_a_checkpoint_replays_only_later_tlogs_and_fetches_no_sco() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    let opts = ckpt_opts(4);
    let (_fs, _lfs, vol) = fresh(opts);
    let mut oracle = HashMap::new();
    // One TLog per backup (one SCO each, TLog_SCOs 1); checkpoints after TLogs 4 and 8.
    for i in 0..10u64 {
        write_sco(&vol, &mut oracle, (i * 16) % 96, i + 1);
        let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
        assert_eq!(rep.last_tlog, Some(i + 1));
    }
    let s = vol.stats();
    assert_eq!((s.checkpoints, s.checkpoint_tlog), (2, 8), "{s:?}");
    assert_eq!(s.corked_clusters, 0);
    store.hook().gets.lock().clear();
    let fs2: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol2 = restore_from(&rt, &store, fs2.clone(), opts).expect("restore");
    let gets = store.hook().gets.lock().clone();
    assert!(
        gets.iter().all(|k| !k.starts_with("sco/")),
        "no SCO was downloaded: {gets:?}"
    );
    let tlog_gets: Vec<_> = gets.iter().filter(|k| k.starts_with("tlog/")).collect();
    assert_eq!(tlog_gets.len(), 2, "only TLogs 9 and 10: {gets:?}");
    let s2 = vol2.stats();
    assert_eq!(s2.tlogs_replayed, 2, "10 TLogs, checkpoint at 8: {s2:?}");
    assert_eq!(s2.checkpoint_tlog, 8);
    assert_eq!(local_sco_data_files(&fs2), 0, "no SCO data is local");
    assert_eq!(
        vol2.sco_cache_bytes(),
        2 * 4096,
        "two stubs (the SCOs of TLogs 9 and 10); checkpointed SCOs have no file"
    );
    assert_eq!(range_gets(&store), 0);
    check_oracle(&vol2, &oracle);
    assert!(range_gets(&store) > 0, "reads faulted the data in");
    assert!(vol2.verify().expect("verify").is_empty());
    // The restored volume goes on: write, back up, restore again.
    write_sco(&vol2, &mut oracle, 200, 77);
    rt.block_on(vol2.backup(&*store, true))
        .expect("backup after restore");
    let fs3: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol3 = restore_from(&rt, &store, fs3, opts).expect("restore 3");
    check_oracle(&vol3, &oracle);
}

#[test]
fn incremental_checkpoints_upload_only_changed_pages_and_delete_superseded_ones() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    let opts = ckpt_opts(1);
    let (_fs, _lfs, vol) = fresh(opts);
    let mut oracle = HashMap::new();
    let page = super::mds::checkpoint::PAGE_CLUSTERS;
    write_sco(&vol, &mut oracle, 0, 1);
    write_sco(&vol, &mut oracle, 2 * page + 32, 2);
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup 1");
    let n1 = rep.last_tlog.expect("n1");
    let pages = |n: u64| -> Vec<String> {
        rt.block_on(keys(
            &*store,
            &format!("mds/{n:016x}.0000000000000001/page-"),
        ))
    };
    assert_eq!(pages(n1).len(), 2, "pages 0 and 2");
    store.hook().puts.lock().clear();
    write_sco(&vol, &mut oracle, 2 * page + 64, 3);
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup 2");
    let n2 = rep.last_tlog.expect("n2");
    let page_puts: Vec<String> = store
        .hook()
        .puts
        .lock()
        .iter()
        .filter(|k| k.contains("/page-"))
        .cloned()
        .collect();
    assert_eq!(
        page_puts,
        vec![format!("mds/{n2:016x}.0000000000000001/page-00000002")]
    );
    assert_eq!(
        pages(n1),
        vec![format!("mds/{n1:016x}.0000000000000001/page-00000000")],
        "the old page 2 is deleted, page 0 is still referenced"
    );
    let all = rt.block_on(keys(&*store, "mds/"));
    assert!(
        !all.contains(&format!("mds/{n1:016x}.0000000000000001/index"))
            && !all.contains(&format!("mds/{n1:016x}.0000000000000001/scos")),
        "{all:?}"
    );
    // A shrink empties page 2: the next checkpoint drops it from the index.
    vol.resize(page * CLUSTER_SIZE_U64).expect("shrink");
    oracle.retain(|ca, _| *ca < page);
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup 3");
    let n3 = rep.last_tlog.expect("n3");
    assert!(
        pages(n2).is_empty() && pages(n3).is_empty(),
        "{:?}",
        rt.block_on(keys(&*store, "mds/"))
    );
    let fs2: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol2 = restore_from(&rt, &store, fs2, opts).expect("restore");
    assert_eq!(vol2.stats().tlogs_replayed, 1, "just the fresh empty TLog");
    assert_eq!(vol2.size(), page * CLUSTER_SIZE_U64);
    check_oracle(&vol2, &oracle);
    assert!(vol2.verify().expect("verify").is_empty());
}

#[test]
fn corrupt_or_foreign_checkpoint_objects_fail_restore_and_leave_nothing_behind() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let opts = ckpt_opts(1);
    let (_fs, _lfs, vol) = fresh(opts);
    let mut oracle = HashMap::new();
    write_sco(&vol, &mut oracle, 0, 1);
    let n = rt
        .block_on(vol.backup(&*store, true))
        .expect("backup")
        .last_tlog
        .expect("n");
    // Written in epoch 1 (a volume uploaded without a registry).
    let page_key = format!("mds/{n:016x}.0000000000000001/page-00000000");
    let index_key = format!("mds/{n:016x}.0000000000000001/index");
    let (good_page, _) = rt.block_on(store.get(&page_key)).expect("page");
    let (good_index, _) = rt.block_on(store.get(&index_key)).expect("index");
    let expect_failure = |what: &str, needle: &str| {
        let fs2 = SimFs::new();
        let lfs2: Arc<dyn LocalFs> = Arc::new(fs2.clone());
        let err = restore_from(&rt, &store, lfs2.clone(), opts).expect_err(what);
        assert!(err.to_string().contains(needle), "{what}: {err}");
        for d in [dir().join("sco"), dir().join("tlog")] {
            assert!(
                lfs2.list(&d).expect("list").is_empty(),
                "{what}: files left"
            );
        }
        assert!(
            lfs2.open(&dir().join("mds.redb")).is_err(),
            "{what}: a MetaDataStore was left behind"
        );
        assert!(
            Volume::open(lfs2, &dir(), VOL, opts).is_err(),
            "{what}: a later open trusted something"
        );
    };
    let mut b = good_page.to_vec();
    b[60] ^= 1;
    rt.block_on(store.put(&page_key, Bytes::from(b)))
        .expect("corrupt");
    expect_failure("flipped page byte", &page_key);
    rt.block_on(store.put(&page_key, good_page))
        .expect("repair");
    let cid = super::mds::checkpoint::checkpoint_id(n, 1).expect("id");
    let ix = super::mds::checkpoint::decode_index("i", &good_index, VOL, cid).expect("decode");
    let foreign = super::mds::checkpoint::encode_index(VolumeId([1; 16]), cid, &ix);
    rt.block_on(store.put(&index_key, Bytes::from(foreign)))
        .expect("foreign");
    expect_failure("foreign index", "names volume");
    rt.block_on(store.put(&index_key, good_index))
        .expect("repair");
    let vol2 = restore_from(&rt, &store, Arc::new(SimFs::new()), opts).expect("restore");
    check_oracle(&vol2, &oracle);
}

/// A backend restart that loses power part-way never leaves a local state that opens with
/// less than the backup: after the crash, an open either fails or holds everything.
#[test]
fn a_backend_restart_cut_short_by_power_is_never_trusted_half_done() {
    let rt = rt();
    for checkpoint_tlogs in [3, 1000] {
        let store = Arc::new(MemStore::new());
        let opts = ckpt_opts(checkpoint_tlogs);
        let (_fs, _lfs, vol) = fresh(opts);
        let mut oracle = HashMap::new();
        for i in 0..5u64 {
            write_sco(&vol, &mut oracle, i * 16, i + 1);
            rt.block_on(vol.backup(&*store, true)).expect("backup");
        }
        let (mut full, mut refused) = (0, 0);
        for n in 0..150u64 {
            let fs = SimFs::new();
            let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
            fs.cut_power_after(n);
            let r = restore_from(&rt, &store, lfs.clone(), opts);
            if r.is_ok() && !fs.power_is_cut() {
                full += 1;
                continue;
            }
            drop(r);
            fs.crash(if n % 2 == 0 {
                CrashMode::DropAll
            } else {
                CrashMode::Random(n)
            });
            match Volume::open(lfs.clone(), &dir(), VOL, opts) {
                Ok(v) => {
                    v.set_backend(store.clone(), rt.handle().clone(), 1);
                    check_oracle(&v, &oracle);
                    full += 1;
                }
                Err(_) => {
                    refused += 1;
                    // What the registry does with it: an unfinished restore is thrown away
                    // and done again.
                    if super::restore_interrupted(&*lfs, &dir()).expect("marker") {
                        super::remove_local_state(&*lfs, &dir()).expect("remove");
                    }
                    let again =
                        restore_from(&rt, &store, lfs.clone(), opts).expect("restore again");
                    check_oracle(&again, &oracle);
                }
            }
        }
        assert!(full > 0 && refused > 0, "{full} full, {refused} refused");
    }
}

/// A local-file layer whose `mds.redb` writes fail with ENOSPC while `fail_mds` is set.
#[derive(Debug, Clone)]
struct MdsFaultFs {
    inner: SimFs,
    fail_mds: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct MdsFaultFile {
    inner: Arc<dyn LocalFile>,
    fail: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl MdsFaultFile {
    fn check(&self) -> std::io::Result<()> {
        if self
            .fail
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

impl LocalFile for MdsFaultFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&self, data: &[u8], off: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.write_at(data, off)
    }
    fn file_len(&self) -> std::io::Result<u64> {
        self.inner.file_len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
}

impl MdsFaultFs {
    fn wrap(&self, p: &Path, f: Arc<dyn LocalFile>) -> Arc<dyn LocalFile> {
        let fail = p.ends_with(MDS_FILE).then(|| self.fail_mds.clone());
        Arc::new(MdsFaultFile { inner: f, fail })
    }
}

impl LocalFs for MdsFaultFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Arc<dyn LocalFile>> {
        Ok(self.wrap(path, self.inner.create_new(path)?))
    }
    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn LocalFile>> {
        Ok(self.wrap(path, self.inner.open(path)?))
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn list_dirs(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dirs(dir)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.remove_dir(dir)
    }
}

/// A MetaDataStore write that fails while the cork is lifted (a full disk) halts the volume
/// instead of leaving corked entries and local TLogs to pile up behind a redb that refuses
/// every later commit; reopening (once there is space) replays the TLogs, still local, and the
/// pipeline goes on. Nothing committed is lost.
#[test]
fn a_failed_uncork_halts_the_volume_and_a_reopen_recovers() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let fs = MdsFaultFs {
        inner: SimFs::new(),
        fail_mds: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
    let opts = ckpt_opts(1000);
    let vol = Volume::create(lfs.clone(), &dir(), VOL, opts, 0).expect("create");
    let mut oracle = HashMap::new();
    write_sco(&vol, &mut oracle, 0, 1);
    rt.block_on(vol.backup(&*store, true)).expect("backup 1");
    write_sco(&vol, &mut oracle, 16, 2);
    fs.fail_mds
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(rt.block_on(vol.backup(&*store, true)).is_err());
    fs.fail_mds
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // Halted: no write is taken on top of a MetaDataStore in an unknown state.
    assert!(vol.write(0, &[1u8; 4096], true).is_err(), "halted");
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("reopen");
    check_oracle(&vol, &oracle);
    write_sco(&vol, &mut oracle, 32, 3);
    rt.block_on(vol.backup(&*store, true))
        .expect("backup after reopen");
    let s = vol.stats();
    assert_eq!(s.corked_clusters, 0, "{s:?}");
    assert_eq!(vol.bytes_not_on_backend(), 0);
    check_oracle(&vol, &oracle);
    drop(vol);
    let restored = restore_from(&rt, &store, Arc::new(SimFs::new()), opts).expect("restore");
    check_oracle(&restored, &oracle);
}

/// A checkpoint the backend refuses does not fail the backup (the data and the manifest are
/// on the backend; only a faster restart is missing): the report says why, the next pass tries
/// again, and a backend restart replays the TLogs instead.
#[test]
fn a_failing_checkpoint_does_not_fail_the_backup() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    *store.hook().prefix.lock() = Some("mds/");
    let opts = ckpt_opts(2);
    let (_fs, _lfs, vol) = fresh(opts);
    let mut oracle = HashMap::new();
    for i in 0..6 {
        write_sco(&vol, &mut oracle, 16 * i, i);
        let rep = rt
            .block_on(vol.backup(&*store, true))
            .expect("the backup succeeds");
        if i >= 1 {
            assert!(rep.checkpoint_error.is_some(), "pass {i}: {rep:?}");
        }
    }
    assert_eq!(vol.stats().checkpoint_tlog, 0);
    *store.hook().prefix.lock() = None;
    write_sco(&vol, &mut oracle, 200, 9);
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert_eq!(rep.checkpoint_error, None);
    assert!(vol.stats().checkpoint_tlog > 0);
    drop(vol);
    let restored = restore_from(&rt, &store, Arc::new(SimFs::new()), opts).expect("restore");
    check_oracle(&restored, &oracle);
}

/// A checkpoint never uploads more metadata than the data written since the last one: after a
/// large volume was checkpointed, a little new data does not trigger a rewrite of the whole
/// page; enough data does.
#[test]
fn a_checkpoint_waits_until_the_data_written_outweighs_it() {
    let rt = rt();
    let store = Arc::new(MemStore::new());
    let opts = ckpt_opts(1);
    let (_fs, _lfs, vol) = fresh(opts);
    let mut oracle = HashMap::new();
    // 4096 clusters (256 TLogs of one 16-cluster SCO each) in one page: checkpointed.
    for i in 0..256u64 {
        write_sco(&vol, &mut oracle, i * 16, i + 1);
    }
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let first = vol.stats().checkpoint_tlog;
    assert!(first > 0);
    // The page now holds 4096 entries (~147 KB); one TLog covers 64 KiB of data: deferred.
    write_sco(&vol, &mut oracle, 0, 1000);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert_eq!(vol.stats().checkpoint_tlog, first, "deferred after 64 KiB");
    write_sco(&vol, &mut oracle, 16, 1001);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert_eq!(vol.stats().checkpoint_tlog, first, "deferred after 128 KiB");
    write_sco(&vol, &mut oracle, 32, 1002);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert!(vol.stats().checkpoint_tlog > first, "written after 192 KiB");
    drop(vol);
    let restored = restore_from(&rt, &store, Arc::new(SimFs::new()), opts).expect("restore");
    check_oracle(&restored, &oracle);
}

/// Ranged GETs wait while `held` is set, telling the test when one started.
#[derive(Debug, Default)]
struct Hold {
    held: std::sync::atomic::AtomicBool,
    release: tokio::sync::Notify,
    started: parking_lot::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

#[async_trait::async_trait]
impl strata_backend::Hook for Hold {
    async fn before(&self, call: &strata_backend::Call<'_>) -> strata_backend::Result<()> {
        if matches!(call, strata_backend::Call::GetRange { .. })
            && self.held.load(std::sync::atomic::Ordering::SeqCst)
        {
            let wait = self.release.notified();
            if let Some(tx) = self.started.lock().take() {
                let _ = tx.send(());
            }
            wait.await;
        }
        Ok(())
    }
}

/// A read that waits for the backend (its SCO is not in the local cache) does not hold the
/// volume lock meanwhile: writes, commits and cached reads of the same volume go on.
#[test]
fn a_read_waiting_for_the_backend_does_not_block_writers() {
    let rt = mt_rt();
    let store = Arc::new(strata_backend::HookedStore::new(
        Arc::new(MemStore::new()),
        Hold::default(),
    ));
    let opts = ckpt_opts(1000);
    let mut oracle = HashMap::new();
    {
        let (_fs, _lfs, vol) = fresh(opts);
        write_sco(&vol, &mut oracle, 0, 7);
        rt.block_on(vol.backup(&*store, true)).expect("backup");
    }
    // Restored from the backend: every cluster is remote.
    let vol = Arc::new(restore_from(&rt, &store, Arc::new(SimFs::new()), opts).expect("restore"));
    let (tx, started) = std::sync::mpsc::channel();
    *store.hook().started.lock() = Some(tx);
    store
        .hook()
        .held
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reader = {
        let vol = vol.clone();
        std::thread::spawn(move || read_vec(&vol, 0, CLUSTER_SIZE))
    };
    started
        .recv_timeout(Duration::from_secs(30))
        .expect("the read reached the backend");
    let (done_tx, done) = std::sync::mpsc::channel();
    let writer = {
        let vol = vol.clone();
        std::thread::spawn(move || {
            vol.write(100 * CLUSTER_SIZE_U64, &[9u8; 4096], true)
                .expect("write");
            let _ = done_tx.send(read_vec(&vol, 100 * CLUSTER_SIZE_U64, 4096));
        })
    };
    let got = done
        .recv_timeout(Duration::from_secs(30))
        .expect("the write and its read went on while the other read waited for the backend");
    assert_eq!(got, vec![9u8; 4096]);
    store
        .hook()
        .held
        .store(false, std::sync::atomic::Ordering::SeqCst);
    store.hook().release.notify_waiters();
    assert_eq!(reader.join().expect("reader"), oracle[&0]);
    writer.join().expect("writer");
}

#[test]
fn reads_over_more_scos_than_the_open_file_bound_keep_most_files_open() {
    // One cluster per SCO: each cluster written is a SCO of its own.
    let opts = VolumeOptions {
        sco_clusters: 1,
        tlog_scos: 64,
        checkpoint_tlogs: 64,
    };
    let (_fs, _lfs, vol) = fresh(opts);
    let n = super::open_files::MAX_OPEN as u64 + 8;
    for a in 0..n {
        vol.write(a * CLUSTER_SIZE_U64, &[(a % 200) as u8 + 1; 16], false)
            .expect("write");
    }
    for round in 0..2 {
        for a in 0..n {
            assert_eq!(
                read_vec(&vol, a * CLUSTER_SIZE_U64, 16),
                vec![(a % 200) as u8 + 1; 16],
                "round {round}, cluster {a}"
            );
        }
        // At the bound, one file is closed for the next, not all of them.
        assert_eq!(vol.handles.lock().len(), super::open_files::MAX_OPEN);
    }
}
