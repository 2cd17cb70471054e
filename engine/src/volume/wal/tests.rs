//! The write-ahead log through the volume: which commits it serves, what a power cut leaves,
//! what a new volume in an old directory sees. (The crash workload in `volume/tests.rs` covers
//! it at every step, and proves each of its fsyncs needed.)

use std::sync::atomic::Ordering;

use crate::volume::format::{sco_name, CLUSTER_SIZE_U64};
use crate::volume::layout;
use crate::volume::tests::{dir, fresh, read_vec, VOL};
use crate::volume::{CrashMode, LocalFs, Volume, VolumeOptions};

use super::WINDOW;

#[test]
fn a_small_commit_costs_one_fdatasync_and_its_replay_survives_a_power_cut() {
    let (fs, lfs, vol) = fresh(VolumeOptions::default());
    // The first commit also makes the new SCO's name durable (a directory fsync).
    vol.write(0, &[1u8; 4096], false).expect("write");
    vol.sync().expect("sync");
    let (data, dirs, rounds) = (
        fs.data_syncs(),
        fs.dir_syncs(),
        vol.counters.wal_rounds.load(Ordering::Relaxed),
    );
    vol.write(7 * CLUSTER_SIZE_U64, &[2u8; 4096], false)
        .expect("write");
    vol.write(3 * CLUSTER_SIZE_U64, &[3u8; 512], false)
        .expect("unaligned write");
    vol.sync().expect("sync");
    assert_eq!(fs.data_syncs() - data, 1, "one fdatasync, of the log");
    assert_eq!(fs.dir_syncs(), dirs, "no directory fsync");
    assert_eq!(vol.counters.wal_rounds.load(Ordering::Relaxed), rounds + 1);
    drop(vol);
    fs.crash(CrashMode::DropAll);
    // In place, the SCO holds none of the three clusters: they are in the log only.
    let sco = fs
        .read_file(&layout::sco_dir(&dir()).join(sco_name(1)))
        .expect("sco");
    assert!(sco.len() < 4096 + 4096, "{}", sco.len());
    let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
    assert_eq!(read_vec(&vol, 0, 4096), vec![1u8; 4096]);
    assert_eq!(read_vec(&vol, 7 * CLUSTER_SIZE_U64, 4096), vec![2u8; 4096]);
    let mut want = vec![0u8; 4096];
    want[..512].fill(3);
    assert_eq!(read_vec(&vol, 3 * CLUSTER_SIZE_U64, 4096), want);
}

#[test]
fn a_window_larger_than_the_log_takes_is_made_durable_in_place() {
    let (fs, lfs, vol) = fresh(VolumeOptions::default());
    let big = vec![9u8; usize::try_from(WINDOW).expect("small") + 4096];
    vol.write(0, &big, false).expect("write");
    let rounds = vol.counters.wal_rounds.load(Ordering::Relaxed);
    vol.sync().expect("sync");
    assert_eq!(vol.counters.wal_rounds.load(Ordering::Relaxed), rounds);
    drop(vol);
    fs.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
    assert_eq!(read_vec(&vol, 0, big.len()), big);
}

#[test]
fn a_new_volume_never_replays_the_log_an_earlier_one_left_in_its_directory() {
    let (fs, lfs, vol) = fresh(VolumeOptions::default());
    vol.write(0, &[5u8; 4096], true).expect("write");
    vol.write(4096, &[6u8; 4096], true).expect("write");
    drop(vol);
    // The earlier volume's files go, its log stays (a deletion cut short).
    for d in [layout::sco_dir(&dir()), layout::tlog_dir(&dir())] {
        for n in fs.list(&d).expect("list") {
            fs.remove_file(&d.join(n)).expect("remove");
        }
        fs.sync_dir(&d).expect("sync");
    }
    let vol =
        Volume::create(lfs.clone(), &dir(), VOL, VolumeOptions::default(), 0).expect("create");
    vol.write(0, &[7u8; 4096], true).expect("write");
    drop(vol);
    fs.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
    assert_eq!(vol.size(), 4096);
    assert_eq!(read_vec(&vol, 0, 4096), vec![7u8; 4096]);
}

/// The open SCO's and TLog's bytes as the files hold them now.
fn files_now(fs: &crate::volume::SimFs) -> (usize, usize) {
    let sco = fs
        .read_file(&layout::sco_dir(&dir()).join(sco_name(1)))
        .expect("sco");
    let tlog = fs
        .read_file(&crate::volume::tests::tlog_path(1))
        .expect("tlog");
    (sco.len(), tlog.len())
}

#[test]
fn a_small_write_costs_one_pwrite_of_the_log_its_files_copies_wait_and_reads_see_them() {
    let (fs, _lfs, vol) = fresh(VolumeOptions::default());
    // Sized first: a write past the end would log a resize entry too.
    vol.write(0, &[1u8; 8 * 4096], false).expect("write");
    vol.sync().expect("sync");
    let before = files_now(&fs);
    let ops = fs.mutating_ops();
    vol.write(5 * CLUSTER_SIZE_U64, &[2u8; 4096], false)
        .expect("write");
    // The cluster's and its entry's records in the log; nothing into the SCO or the TLog.
    assert_eq!(fs.mutating_ops() - ops, 1, "one pwrite, of the log");
    assert_eq!(files_now(&fs), before, "the files' copies wait in memory");
    // A READ takes them from memory: one cluster, and a run of two (the straddle of the file
    // and memory is `deferred.rs`'s unit test).
    assert_eq!(read_vec(&vol, 5 * CLUSTER_SIZE_U64, 4096), vec![2u8; 4096]);
    vol.write(6 * CLUSTER_SIZE_U64, &[3u8; 4096], false)
        .expect("write");
    let mut want = vec![2u8; 4096];
    want.extend_from_slice(&[3u8; 4096]);
    assert_eq!(read_vec(&vol, 5 * CLUSTER_SIZE_U64, 8192), want);
    // A commit of a whole window fdatasyncs the log only: the copies still wait.
    vol.sync().expect("sync");
    assert_eq!(files_now(&fs), before);
    // A clean close writes them.
    drop(vol);
    let (sco, tlog) = files_now(&fs);
    assert_eq!(sco, before.0 + 2 * 4096);
    assert!(tlog > before.1);
}

#[test]
fn what_waits_in_memory_dies_with_the_process_and_the_log_brings_it_back() {
    for machine in [false, true] {
        let (fs, lfs, vol) = fresh(VolumeOptions::default());
        vol.write(0, &[1u8; 3 * 4096], false).expect("write");
        vol.write(4096, &[2u8; 4096], false).expect("write");
        vol.sync().expect("commit");
        // Not committed: only in the log's page cache (and in memory).
        vol.write(8192, &[3u8; 4096], false).expect("write");
        // The process dies: nothing of its memory reaches the files.
        fs.cut_power_after(0);
        drop(vol);
        if machine {
            fs.crash(CrashMode::DropAll);
        } else {
            fs.restart_process();
        }
        let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
        assert_eq!(
            read_vec(&vol, 0, 4096),
            vec![1u8; 4096],
            "machine {machine}"
        );
        assert_eq!(
            read_vec(&vol, 4096, 4096),
            vec![2u8; 4096],
            "machine {machine}"
        );
        // The uncommitted write survives a process's death (the log's page cache does), not
        // a machine's.
        let third = if machine { 1u8 } else { 3u8 };
        assert_eq!(
            read_vec(&vol, 8192, 4096),
            vec![third; 4096],
            "machine {machine}"
        );
        vol.verify().expect("verify");
    }
}

#[test]
fn a_window_that_stops_being_whole_between_a_cluster_and_its_entry_is_made_durable_whole() {
    // Each resize logs one TLog record (an entry and its record header): k of them place the
    // window's end so that, for one k, a 4 KiB cluster still fits in the window and its entry
    // no longer does. The cluster then waited in memory while the round made the window
    // durable in place: it must have been written into the SCO first.
    let record = super::record::RECORD_HEADER_LEN as u64;
    let entry = record + crate::volume::format::TLOG_ENTRY_LEN as u64;
    let cluster = CLUSTER_SIZE_U64 + record;
    let most = WINDOW.div_ceil(entry) + 1;
    let mut met = false;
    for k in 0..most {
        let (fs, lfs, vol) = fresh(VolumeOptions::default());
        vol.write(0, &[1u8; 4096], false).expect("write");
        vol.sync().expect("the first round, in place");
        for i in 0..k {
            vol.resize(8192 + i * 4096).expect("resize");
        }
        let before = vol.counters.wal_rounds.load(Ordering::Relaxed);
        vol.write(0, &[2u8; 4096], false).expect("write");
        vol.sync().expect("commit");
        let fits_cluster_only =
            k * entry + cluster <= WINDOW && k * entry + cluster + entry > WINDOW;
        met |= fits_cluster_only && vol.counters.wal_rounds.load(Ordering::Relaxed) == before;
        // A later whole window's fdatasync makes the head that moved past the round durable.
        vol.write(4096, &[3u8; 4096], false).expect("write");
        vol.sync().expect("commit");
        drop(vol);
        fs.crash(CrashMode::DropAll);
        let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
        assert_eq!(read_vec(&vol, 0, 4096), vec![2u8; 4096], "k {k}");
        assert_eq!(read_vec(&vol, 4096, 4096), vec![3u8; 4096], "k {k}");
    }
    assert!(met, "no k left room for the cluster and not its entry");
}

#[test]
fn a_hole_punched_in_a_whole_window_survives_a_power_cut() {
    let (fs, lfs, vol) = fresh(VolumeOptions::default());
    vol.write(0, &[4u8; 3 * 4096], false).expect("write");
    vol.sync().expect("commit");
    let rounds = vol.counters.wal_rounds.load(Ordering::Relaxed);
    // Its Unmap entries are logged (no write of the volume follows to write them out): the
    // punch's own commit must.
    vol.punch(4096, 4096).expect("punch");
    assert_eq!(
        vol.counters.wal_rounds.load(Ordering::Relaxed),
        rounds + 1,
        "the punch's commit was the log's"
    );
    drop(vol);
    fs.crash(CrashMode::DropAll);
    let vol = Volume::open(lfs, &dir(), VOL, VolumeOptions::default()).expect("open");
    assert_eq!(read_vec(&vol, 0, 4096), vec![4u8; 4096]);
    assert_eq!(read_vec(&vol, 4096, 4096), vec![0u8; 4096]);
    assert_eq!(read_vec(&vol, 8192, 4096), vec![4u8; 4096]);
}

#[test]
fn records_staged_across_the_ring_end_are_written_in_their_own_laps() {
    use super::record::{HEADER_AREA, RECORD_HEADER_LEN};
    use super::{Target, Wal, RING};
    let fs = crate::volume::SimFs::new();
    fs.create_dir_all(&dir()).expect("dir");
    let mut w = Wal::create(&fs, &dir(), VOL, None).expect("create");
    // Records of 4096 bytes, the head moved along by rounds made in place, up to one record
    // before the ring's end.
    let payload = vec![7u8; 4096 - RECORD_HEADER_LEN];
    let per_lap = RING / 4096;
    for i in 0..per_lap - 1 {
        if i % 4 == 0 {
            let win = w.take_window().expect("window");
            w.advance_head(win.end).expect("head");
            w.synced(win.end);
        }
        assert!(w.log(Target::Sco(1), i * 4096, &payload).expect("log"));
        w.flush().expect("flush");
    }
    let win = w.take_window().expect("window");
    w.advance_head(win.end).expect("head");
    w.synced(win.end);
    assert_eq!(RING - w.pos % RING, 4096);
    // One write of the volume: its first record ends exactly at the ring's end, its second
    // starts the next lap; one flush.
    assert!(w.log(Target::Sco(1), 0, &payload).expect("log"));
    assert!(w.log(Target::Tlog(1), 64, &[1u8; 48]).expect("log"));
    w.flush().expect("flush");
    let path = layout::wal_path(&dir());
    let file = fs.read_file(&path).expect("wal");
    assert_eq!(
        file.len() as u64,
        HEADER_AREA + RING,
        "nothing past the ring"
    );
    // The second record is at the start of the ring, where a replay looks for it.
    let start = usize::try_from(HEADER_AREA).expect("small");
    assert_eq!(&file[start..start + 4], b"WREC");
}

/// A process that dies (SIGKILL: nothing of its memory reaches the files, the page cache
/// stays) between random operations: every write that returned is there after the restart,
/// committed or not (the page cache kept them before anything waited in memory; now the
/// write-ahead log must).
#[test]
fn a_process_death_between_operations_keeps_every_write_that_returned() {
    use crate::volume::tests::small_opts;
    use crate::volume::SimRng;
    const SPACE: u64 = 96;
    let at = |x: u64| usize::try_from(x).expect("small");
    for seed in 1..=24u64 {
        let mut rng = SimRng::new(seed);
        let opts = if seed % 2 == 0 {
            small_opts()
        } else {
            VolumeOptions::default()
        };
        let (fs, lfs, first) = fresh(opts);
        let mut vol = Some(first);
        let mut content = vec![0u8; at(SPACE * 4096)];
        let mut size = 0u64;
        for step in 0..300u32 {
            let v = vol.as_ref().expect("volume");
            let byte = u8::try_from(rng.below(250) + 1).expect("byte");
            match rng.below(10) {
                0..=4 => {
                    let ca = rng.below(SPACE - 8);
                    let most = if rng.below(4) == 0 { 8 } else { 2 };
                    let n = 1 + rng.below(most);
                    let data = vec![byte; at(n * 4096)];
                    v.write(ca * 4096, &data, rng.below(8) == 0).expect("write");
                    content[at(ca * 4096)..at((ca + n) * 4096)].copy_from_slice(&data);
                    size = size.max((ca + n) * 4096);
                }
                5 => {
                    let off = rng.below(SPACE * 4096 - 5000);
                    let len = 1 + rng.below(4999);
                    v.write(off, &vec![byte; at(len)], false).expect("write");
                    content[at(off)..at(off + len)].fill(byte);
                    size = size.max(off + len);
                }
                6 => {
                    let new = rng.below(SPACE * 4096);
                    v.resize(new).expect("resize");
                    if new < size {
                        content[at(new)..].fill(0);
                    }
                    size = new;
                }
                7 if size > 0 => {
                    let off = rng.below(size);
                    let len = rng.below(3 * 4096);
                    v.punch(off, len).expect("punch");
                    content[at(off)..at((off + len).min(size))].fill(0);
                }
                8 => v.sync().expect("sync"),
                _ => {
                    // The process dies: its memory (what waits for the files) is lost.
                    fs.cut_power_after(0);
                    drop(vol.take());
                    fs.restart_process();
                    let nv = Volume::open(lfs.clone(), &dir(), VOL, opts)
                        .unwrap_or_else(|e| panic!("seed {seed} step {step}: open: {e}"));
                    assert_eq!(nv.size(), size, "seed {seed} step {step}: size");
                    let got = read_vec(&nv, 0, at(size));
                    let first = got.iter().zip(&content).position(|(a, b)| a != b);
                    assert_eq!(first, None, "seed {seed} step {step}: first difference");
                    let problems = nv.verify().expect("verify");
                    assert!(problems.is_empty(), "seed {seed} step {step}: {problems:?}");
                    vol = Some(nv);
                }
            }
        }
    }
}
