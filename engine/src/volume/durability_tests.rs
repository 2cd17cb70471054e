//! The durability defects found in review (issue 10), each as a scenario that reproduces it
//! deterministically: a local-file layer that can hold one thread at a chosen fsync stands in
//! for the scheduler, and [`SimFs`] for the power cut.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::format::{CLUSTER_SIZE, CLUSTER_SIZE_U64};
use super::tests::{dir, evicted_volume, fresh, mt_rt, read_vec, FailPuts, VOL};
use super::*;
use crate::error::Error;

/// Where [`GateFs`] holds a thread: its next `sync_dir` of `dir`.
#[derive(Debug, Default)]
struct Gate {
    /// (thread, directory) to hold at; cleared when reached.
    armed: Option<(ThreadId, PathBuf)>,
    /// The armed thread is held.
    reached: bool,
    /// The held thread may go on.
    released: bool,
}

/// A [`LocalFs`] over [`SimFs`] that can hold one thread at one directory fsync until the test
/// releases it: a deterministic interleaving of a commit round with other threads.
#[derive(Debug, Clone)]
struct GateFs {
    sim: SimFs,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl GateFs {
    fn new(sim: SimFs) -> GateFs {
        GateFs {
            sim,
            gate: Arc::new((Mutex::new(Gate::default()), Condvar::new())),
        }
    }

    fn arm(&self, thread: ThreadId, dir: &Path) {
        let mut g = self.gate.0.lock();
        *g = Gate {
            armed: Some((thread, dir.to_path_buf())),
            ..Gate::default()
        };
    }

    /// Waits (bounded) until the armed thread is held.
    fn wait_reached(&self) {
        let mut g = self.gate.0.lock();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !g.reached {
            assert!(
                !self.gate.1.wait_until(&mut g, deadline).timed_out(),
                "the armed thread never reached the gate"
            );
        }
    }

    fn release(&self) {
        self.gate.0.lock().released = true;
        self.gate.1.notify_all();
    }
}

impl LocalFs for GateFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Arc<dyn LocalFile>> {
        self.sim.create_new(path)
    }
    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn LocalFile>> {
        self.sim.open(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn list_dirs(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.sim.list_dirs(dir)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.sim.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.sim.rename(from, to)
    }
    fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.sim.remove_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let me = std::thread::current().id();
        let mut g = self.gate.0.lock();
        if g.armed.as_ref().is_some_and(|(t, d)| *t == me && d == dir) {
            g.armed = None;
            g.reached = true;
            self.gate.1.notify_all();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !g.released {
                if self.gate.1.wait_until(&mut g, deadline).timed_out() {
                    return Err(std::io::Error::other("gate never released"));
                }
            }
        }
        drop(g);
        self.sim.sync_dir(dir)
    }
}

fn clusters(n: u64, byte: u8) -> Vec<u8> {
    vec![byte; (n * CLUSTER_SIZE_U64) as usize]
}

/// Defect 1: a commit round took "sco/ needs an fsync" at its start and fsynced `sco/` only at
/// its end; a TLog roll in between saw the flag clear, skipped the directory fsync and closed
/// the TLog. Power lost before the round's fsync: the closed TLog names a SCO whose name never
/// reached the disk, and the volume no longer opens. Here the round is held just before its
/// `sco/` fsync while another thread seals the SCO that fills the TLog; then the power fails.
#[test]
fn a_tlog_roll_during_a_commit_round_makes_the_sco_names_durable_itself() {
    let opts = VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 2,
        checkpoint_tlogs: 64,
    };
    let sim = SimFs::new();
    let gfs = GateFs::new(sim.clone());
    let lfs: Arc<dyn LocalFs> = Arc::new(gfs.clone());
    let vol = Arc::new(Volume::create(lfs.clone(), &dir(), VOL, opts, 0).expect("create"));
    // SCO 1, full and committed: everything so far is durable, names included.
    let committed = clusters(16, 0xc1);
    vol.write(0, &committed, true).expect("committed write");
    // Seals SCO 1 (the TLog's first) and creates SCO 2: `sco/` must be fsynced again.
    vol.write(16 * CLUSTER_SIZE_U64, &clusters(1, 0x02), false)
        .expect("write");
    let committer = {
        let vol = vol.clone();
        let gfs = gfs.clone();
        std::thread::spawn(move || {
            gfs.arm(std::thread::current().id(), &dir().join("sco"));
            vol.sync()
        })
    };
    gfs.wait_reached();
    // The round is held before its `sco/` fsync. This writer fills SCO 2 and seals it: the TLog
    // now covers two SCOs and is closed (and fdatasynced) on the spot.
    vol.write(17 * CLUSTER_SIZE_U64, &clusters(16, 0x03), false)
        .expect("write that rolls the TLog");
    // The machine dies before the held round's directory fsync.
    sim.cut_power_after(0);
    gfs.release();
    assert!(committer.join().expect("committer").is_err());
    drop(vol);
    sim.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, opts)
        .unwrap_or_else(|e| panic!("the volume no longer opens after the power cut: {e}"));
    assert_eq!(read_vec(&vol, 0, committed.len()), committed);
}

/// Defect 2: a restart after a process crash (the page cache survives) trusted what it read and
/// never made it durable: SCOs sealed in the open TLog, and the names of files created before
/// the crash, could still be only in the page cache. A COMMIT acknowledged after that restart
/// was then lost by a power cut (the next restart cut the log before it).
#[test]
fn a_commit_after_a_process_restart_survives_a_power_cut() {
    let opts = VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 4,
        checkpoint_tlogs: 64,
    };
    let (sim, lfs, vol) = fresh(opts);
    let committed = clusters(4, 0xc1);
    vol.write(0, &committed, true).expect("committed write");
    // Unstable: fills SCO 1, seals it (data in the page cache only), starts SCO 2.
    vol.write(4 * CLUSTER_SIZE_U64, &clusters(13, 0x02), false)
        .expect("unstable write");
    // The process dies (SIGKILL): nothing is synced, but the page cache keeps every byte.
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("restart after SIGKILL");
    let acked = clusters(2, 0xac);
    let at = 100 * CLUSTER_SIZE_U64;
    vol.write(at, &acked, true).expect("acknowledged write");
    drop(vol);
    // Now the machine loses power.
    sim.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, opts).expect("restart after the power cut");
    assert_eq!(read_vec(&vol, 0, committed.len()), committed);
    assert_eq!(
        read_vec(&vol, at, acked.len()),
        acked,
        "a write acknowledged after a process restart was lost by a power cut"
    );
}

/// Defect 2, the closed-TLog case: the process died after a TLog's TLogClosed entry was
/// written but before it was fdatasynced. The restart sees a closed TLog (in the page cache)
/// and starts the next one; unless the restart makes the closed one durable, a power cut then
/// leaves an unclosed TLog followed by a later one, and the volume no longer opens.
#[test]
fn a_tlog_closed_only_in_the_page_cache_is_made_durable_by_the_restart() {
    let opts = VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 1,
        checkpoint_tlogs: 64,
    };
    let (sim, lfs, vol) = fresh(opts);
    let committed = clusters(4, 0xc1);
    vol.write(0, &committed, true).expect("committed write");
    // Fills SCO 1; the next write seals it and closes TLog 1, fully synced.
    vol.write(4 * CLUSTER_SIZE_U64, &clusters(12, 0x02), false)
        .expect("write");
    vol.write(16 * CLUSTER_SIZE_U64, &clusters(1, 0x03), false)
        .expect("write that rolls");
    drop(vol);
    // Back to the moment the process died between writing TLog 1's closing entry and its
    // fdatasync: the next TLog and SCO were not created yet, and the closing entry (the last
    // entry) is in the page cache only.
    for p in [
        super::tests::tlog_path(2),
        dir().join("sco").join(super::format::sco_name(2)),
    ] {
        lfs.remove_file(&p).expect("remove");
        lfs.sync_dir(p.parent().expect("parent")).expect("sync dir");
    }
    let t1 = super::tests::tlog_path(1);
    let whole = sim.read_file(&t1).expect("TLog 1");
    let cut = whole.len() - super::format::TLOG_ENTRY_LEN;
    sim.overwrite_durably(&t1, &whole[..cut])
        .expect("durable part");
    let f = sim.open(&t1).expect("open TLog 1");
    f.write_at(&whole[cut..], cut as u64)
        .expect("page cache part");
    drop(f);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("restart after SIGKILL");
    let acked = clusters(1, 0xac);
    let at = 40 * CLUSTER_SIZE_U64;
    vol.write(at, &acked, true).expect("acknowledged write");
    drop(vol);
    sim.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, opts)
        .unwrap_or_else(|e| panic!("the volume no longer opens after the power cut: {e}"));
    assert_eq!(read_vec(&vol, 0, committed.len()), committed);
    assert_eq!(read_vec(&vol, at, acked.len()), acked);
}

/// Defect 3: an unaligned write that grows the volume logged the resize and changed the size
/// before its read-modify-write fetched a cluster of an evicted SCO; with the backend down the
/// write answered Delay, yet the size had changed. Now nothing changes before the write is sure
/// to be accepted.
#[test]
fn a_write_answered_delay_changes_nothing() {
    let rt = mt_rt();
    let store: Arc<FailPuts> = Arc::new(super::tests::fail_puts());
    let (_sim, lfs, vol, _data, _rep) = evicted_volume(&rt, &store);
    // The volume ends inside the evicted SCO 2 (clusters 16..32): its last cluster is remote.
    let size = 24 * CLUSTER_SIZE_U64;
    vol.resize(size)
        .expect("shrink (aligned: no read-modify-write)");
    let before = read_vec(&vol, 0, size as usize);
    store
        .hook()
        .gets_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let off = 23 * CLUSTER_SIZE_U64 + 100;
    let grow = vec![0x77u8; 2 * CLUSTER_SIZE];
    let r = vol.write(off, &grow, false);
    assert!(matches!(r, Err(Error::Delay)), "{r:?}");
    assert_eq!(vol.size(), size, "a write answered Delay changed the size");
    // A shrink to an unaligned size needs the same read-modify-write of its last cluster.
    let r = vol.resize(size - 100);
    assert!(matches!(r, Err(Error::Delay)), "{r:?}");
    assert_eq!(vol.size(), size, "a resize answered Delay changed the size");
    vol.sync().expect("commit");
    drop(vol);
    let vol = Volume::open(lfs, &dir(), VOL, small()).expect("reopen");
    assert_eq!(vol.size(), size, "the refused write's resize was logged");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    store
        .hook()
        .gets_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(read_vec(&vol, 0, size as usize), before);
    vol.write(off, &grow, true)
        .expect("the same write once the backend is back");
    assert_eq!(vol.size(), off + grow.len() as u64);
}

fn small() -> VolumeOptions {
    super::tests::small_opts()
}

/// Defect 3, the lock: the read-modify-write of a cluster of an evicted SCO fetched it from
/// the backend with the volume's write lock held, so every writer (and reader) of the volume
/// waited for the backend. Now the fetch happens before the lock is taken.
#[test]
fn a_read_modify_write_waiting_for_the_backend_does_not_block_other_writers() {
    let rt = mt_rt();
    let store: Arc<FailPuts> = Arc::new(super::tests::fail_puts());
    let (_sim, _lfs, vol, data, _rep) = evicted_volume(&rt, &store);
    let vol = Arc::new(vol);
    let (tx, held) = std::sync::mpsc::channel();
    *store.hook().hold_range_gets.lock() = Some(tx);
    let rmw = {
        let vol = vol.clone();
        // Cluster 20 is in the evicted SCO 2: its old bytes must come from the backend.
        std::thread::spawn(move || vol.write(20 * CLUSTER_SIZE_U64 + 1, b"x", false))
    };
    let release = held
        .recv_timeout(Duration::from_secs(30))
        .expect("the read-modify-write reached the backend");
    let (done_tx, done) = std::sync::mpsc::channel();
    let other = {
        let vol = vol.clone();
        std::thread::spawn(move || {
            let r = vol.write(600 * CLUSTER_SIZE_U64, &[5u8; CLUSTER_SIZE], true);
            let _ = done_tx.send(r.is_ok());
        })
    };
    let ok = done
        .recv_timeout(Duration::from_secs(30))
        .expect("another writer went on while a read-modify-write waited for the backend");
    assert!(ok);
    let _ = release.send(());
    rmw.join().expect("rmw").expect("the read-modify-write");
    other.join().expect("other");
    let mut want = data[20 * CLUSTER_SIZE..21 * CLUSTER_SIZE].to_vec();
    want[1] = b'x';
    assert_eq!(read_vec(&vol, 20 * CLUSTER_SIZE_U64, CLUSTER_SIZE), want);
}

/// From the review of issue 10: a TLog was closed only by its SCO count, so resize entries (a
/// guest appending in small writes logs one per write; truncates fill no SCO) could grow it
/// past what a reader accepts, and the volume could then neither upload nor reopen. A long
/// TLog is now closed at the next change (the open SCO sealed first); everything reads back
/// after a restart and a power cut.
#[test]
fn a_tlog_long_with_resizes_is_closed_by_its_length() {
    let opts = VolumeOptions {
        sco_clusters: 1024,
        tlog_scos: 64,
        checkpoint_tlogs: 64,
    };
    let (sim, lfs, vol) = fresh(opts);
    vol.set_tlog_roll_len(16 << 10);
    let first = vol.open_tlog_seq();
    // 2000 appends of 100 bytes: one resize entry each, few clusters, no SCO filled.
    let mut want = Vec::new();
    for i in 0..2000u32 {
        let piece = vec![(i % 251) as u8; 100];
        vol.write(want.len() as u64, &piece, false).expect("append");
        want.extend_from_slice(&piece);
        // Truncates that change the size back and forth add entries without data.
        vol.resize(want.len() as u64 + 1).expect("grow");
        vol.resize(want.len() as u64).expect("shrink back");
    }
    vol.sync().expect("commit");
    assert!(
        vol.open_tlog_seq() > first + 10,
        "the TLog was not closed by its length ({} TLogs)",
        vol.open_tlog_seq() - first
    );
    drop(vol);
    sim.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, opts).expect("reopen");
    assert_eq!(vol.size(), want.len() as u64);
    assert_eq!(read_vec(&vol, 0, want.len()), want);
}

/// From the review of issue 10: a read-modify-write whose fetch from the backend fails (here a
/// corrupt object: hash mismatch) changed nothing, so it fails that write only; the volume is
/// not halted and other writes and COMMITs go on.
#[test]
fn a_failed_fetch_for_a_read_modify_write_does_not_halt_the_volume() {
    use bytes::Bytes;
    use strata_backend::ObjectStore;
    let rt = mt_rt();
    let store: Arc<FailPuts> = Arc::new(super::tests::fail_puts());
    let (_sim, _lfs, vol, _data, _rep) = evicted_volume(&rt, &store);
    // Cluster 19 is in the evicted SCO 2: flip a byte of it on the backend.
    let key = super::backend::keys::sco_key(2, 1);
    let (obj, _) = rt.block_on(store.get(&key)).expect("get");
    let mut obj = obj.to_vec();
    obj[4096 + 3 * 4096 + 10] ^= 0x40;
    rt.block_on(store.put(&key, Bytes::from(obj))).expect("put");
    let err = vol
        .write(19 * CLUSTER_SIZE_U64 + 1, b"x", false)
        .expect_err("the corrupt cluster cannot be read-modify-written");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    vol.write(600 * CLUSTER_SIZE_U64, &[1u8; CLUSTER_SIZE], true)
        .expect("the volume goes on after a failed fetch");
}
