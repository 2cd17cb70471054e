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
