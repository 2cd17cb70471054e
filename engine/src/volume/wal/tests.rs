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
    // A READ takes them from memory: the cluster alone, and across the SCO's file and memory.
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
        vol.lose_deferred();
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
    let record = 48u64;
    let entry = record + 48;
    let cluster = 4096 + record;
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
