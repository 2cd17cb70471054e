//! Snapshots of a volume (issue 15): a TLog boundary and a record, durable at once, constant
//! time whatever the snapshot count, on the backend once their TLog is, and back after a
//! backend restart.

use std::sync::Arc;

use strata_backend::{MemStore, ObjectStore as _};

use super::tests::{dir, fill, fresh, keys, mt_rt, small_opts, whole, VOL};
use super::*;
use crate::error::Error;

fn names(vol: &Volume) -> Vec<String> {
    vol.snapshot_list()
        .expect("list")
        .into_iter()
        .map(|s| s.record.name)
        .collect()
}

#[test]
fn snapshots_are_created_listed_and_deleted_by_name() {
    let (_fs, _lfs, vol) = fresh(small_opts());
    fill(&vol, 3 * 65_536, 1);
    let s1 = vol
        .snapshot_create("s1", vec![("by".into(), "test".into())])
        .expect("s1");
    assert_eq!(s1.record.name, "s1");
    assert_eq!(s1.record.meta, vec![("by".to_string(), "test".to_string())]);
    assert_eq!(s1.bytes_since_previous, 3 * 65_536);
    assert!(!s1.on_backend);
    // The boundary: everything written before is in closed TLogs up to the snapshot's.
    assert_eq!(s1.record.tlog + 1, vol.open_tlog_seq());
    vol.write(0, &[5u8; 8192], false).expect("write");
    let s2 = vol.snapshot_create("s2", Vec::new()).expect("s2");
    assert!(s2.record.id > s1.record.id && s2.record.tlog > s1.record.tlog);
    assert_eq!(s2.bytes_since_previous, 8192);
    // Nothing written since: a snapshot of the same TLog.
    let s3 = vol.snapshot_create("s3", Vec::new()).expect("s3");
    assert_eq!(
        (s3.record.tlog, s3.bytes_since_previous),
        (s2.record.tlog, 0)
    );
    assert_eq!(names(&vol), ["s1", "s2", "s3"]);
    assert!(matches!(
        vol.snapshot_create("s2", Vec::new()),
        Err(Error::Exists)
    ));
    for bad in ["", "a/b"] {
        assert!(matches!(
            vol.snapshot_create(bad, Vec::new()),
            Err(Error::Invalid(_))
        ));
    }
    assert!(matches!(
        vol.snapshot_create("m", vec![("bad key".into(), "v".into())]),
        Err(Error::Invalid(_))
    ));
    vol.snapshot_delete("s2").expect("delete");
    assert!(matches!(vol.snapshot_delete("s2"), Err(Error::NotFound)));
    assert!(matches!(vol.snapshot_info("s2"), Err(Error::NotFound)));
    assert_eq!(names(&vol), ["s1", "s3"]);
    // s3 now counts from s1.
    assert_eq!(
        vol.snapshot_info("s3").expect("s3").bytes_since_previous,
        8192
    );
    // A name freed by a deletion can be taken again, with a new id.
    let again = vol.snapshot_create("s2", Vec::new()).expect("s2 again");
    assert!(again.record.id > s3.record.id);
}

/// A power cut after each step of a create and of a delete (whatever part of the unsynced
/// writes survives): after the restart the snapshot is there whole or not at all, and the data
/// reads back.
#[test]
fn a_power_cut_at_any_step_of_create_or_delete_leaves_the_old_state_or_the_new() {
    for mode in [
        CrashMode::DropAll,
        CrashMode::Random(1),
        CrashMode::Random(2),
    ] {
        let mut finished = (false, false);
        for step in 0..40 {
            let (fs, lfs, vol) = fresh(small_opts());
            fill(&vol, 2 * 65_536 + 100, 3);
            vol.sync().expect("sync");
            vol.snapshot_create("kept", Vec::new()).expect("kept");
            vol.write(70_000, &[9u8; 5000], true).expect("write");
            let data = whole(&vol);
            fs.cut_power_after(step);
            let created = vol.snapshot_create("new", Vec::new());
            let deleted = created.as_ref().ok().map(|_| vol.snapshot_delete("kept"));
            let done = !fs.power_is_cut();
            if done {
                created.as_ref().expect("create");
            }
            drop(vol);
            fs.crash(mode);
            let vol = Volume::open(lfs.clone(), &dir(), VOL, small_opts())
                .unwrap_or_else(|e| panic!("{mode:?} step {step}: restart: {e}"));
            assert_eq!(whole(&vol), data, "{mode:?} step {step}");
            let now = names(&vol);
            match vol.snapshot_info("new") {
                // Clusters 17 and 18 were written since "kept"; 35 since the volume was created.
                Ok(s) => {
                    let since = if now.contains(&"kept".to_string()) {
                        2
                    } else {
                        35
                    };
                    assert_eq!(s.bytes_since_previous, since * 4096, "{mode:?} step {step}");
                    assert_eq!(s.record.logged_clusters, 35, "{mode:?} step {step}");
                }
                Err(Error::NotFound) => {}
                Err(e) => panic!("{mode:?} step {step}: {e}"),
            }
            // "kept" goes only with a delete that returned, and only after "new" exists.
            assert!(
                now == ["kept"] || now == ["kept", "new"] || now == ["new"],
                "{mode:?} step {step}: {now:?}"
            );
            if done {
                assert!(matches!(deleted, Some(Ok(()))));
                assert_eq!(now, ["new"], "{mode:?} step {step}: both done");
                finished.0 = true;
            } else {
                finished.1 = true;
            }
        }
        assert!(finished.0 && finished.1, "{mode:?}: both outcomes reached");
    }
}

/// 10,000 snapshots: creating, deleting and the manifest uploaded per TLog cost the same with
/// one snapshot and with 10,000 (counted in fsyncs and bytes, not seconds).
#[test]
fn ten_thousand_snapshots_cost_the_same_per_operation() {
    let rt = mt_rt();
    let store = Arc::new(MemStore::new());
    // Real files, on tmpfs where there is one: the crash simulator copies a file at every
    // fsync, and 10,000 durable commits of a growing MetaDataStore would take minutes there.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let lfs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let vol = Volume::create(lfs, tmp.path(), VOL, small_opts(), 0).expect("create");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    fill(&vol, 65_536, 1);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let manifest_len = |s: &MemStore| {
        rt.block_on(s.get("manifest.xml"))
            .expect("manifest")
            .0
            .len()
    };
    let before = manifest_len(&store);
    let syncs = |v: &Volume| v.stats().fsyncs;
    let cost = |v: &Volume, name: &str| {
        let s0 = syncs(v);
        v.snapshot_create(name, Vec::new()).expect("create");
        syncs(v) - s0
    };
    let first = cost(&vol, "s0");
    for i in 1..10_000 {
        vol.snapshot_create(&format!("s{i}"), Vec::new())
            .expect("create");
    }
    assert_eq!(cost(&vol, "last"), first, "a create with 10,000 snapshots");
    let s0 = syncs(&vol);
    vol.snapshot_delete("s5000").expect("delete");
    let delete_cost = syncs(&vol) - s0;
    assert!(delete_cost <= first, "{delete_cost} fsyncs to delete");
    assert_eq!(vol.snapshot_list().expect("list").len(), 10_000);
    // The records go up as objects of their own; the manifest stays as it was.
    vol.write(0, &[1u8; 4096], false).expect("write");
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert_eq!(rep.snapshot_error, None);
    assert_eq!(manifest_len(&store), before, "the manifest does not grow");
    assert_eq!(rt.block_on(keys(&*store, "snap/")).len(), 10_000);
}

/// Snapshots reach the backend after their TLog; a deleted one leaves it; a backend restart
/// finds exactly the others, with their ids, names, TLogs and metadata.
#[test]
fn snapshots_survive_a_backend_restart_and_deleted_ones_stay_deleted() {
    let rt = mt_rt();
    let store = Arc::new(MemStore::new());
    let (_fs, _lfs, vol) = fresh(small_opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    fill(&vol, 3 * 65_536, 1);
    let a = vol
        .snapshot_create("a", vec![("k".into(), "v".into())])
        .expect("a");
    vol.write(0, &[2u8; 4096], false).expect("write");
    let b = vol.snapshot_create("b", Vec::new()).expect("b");
    vol.snapshot_create("c", Vec::new()).expect("c");
    assert!(!vol.snapshot_info("a").expect("a").on_backend);
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert!(vol
        .snapshot_list()
        .expect("list")
        .iter()
        .all(|s| s.on_backend));
    assert_eq!(rt.block_on(keys(&*store, "snap/")).len(), 3);
    vol.snapshot_delete("c").expect("delete c");
    let rep = rt.block_on(vol.backup(&*store, false)).expect("backup");
    assert_eq!(rep.snapshot_error, None);
    assert_eq!(rt.block_on(keys(&*store, "snap/")).len(), 2);
    let want = whole(&vol);
    drop(vol);

    let lfs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol = rt
        .block_on(Volume::restore(&*store, lfs, &dir(), VOL, small_opts()))
        .expect("restore");
    vol.set_backend(store.clone(), rt.handle().clone(), 2);
    assert_eq!(whole(&vol), want);
    let got = vol.snapshot_list().expect("list");
    assert_eq!(
        got.iter().map(|s| s.record.clone()).collect::<Vec<_>>(),
        vec![a.record, b.record.clone()]
    );
    assert!(got.iter().all(|s| s.on_backend));
    // New snapshots take new ids.
    let d = vol.snapshot_create("d", Vec::new()).expect("d");
    assert!(d.record.id > b.record.id);
}

/// A volume with a backend, and the contents it had at two snapshots: `s1` (two clusters
/// runs with a hole between, 192 KiB) and `s2` (the hole written, another run past the old
/// end); then more writes after `s2`.
fn rolled_volume(
    rt: &tokio::runtime::Runtime,
    store: &Arc<MemStore>,
) -> (SimFs, Arc<dyn LocalFs>, Volume, Vec<u8>, Vec<u8>) {
    let (fs, lfs, vol) = fresh(small_opts());
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    vol.write(0, &[1u8; 65_536], false).expect("write");
    vol.write(131_072, &[2u8; 65_536], false).expect("write");
    let at_s1 = whole(&vol);
    vol.snapshot_create("s1", Vec::new()).expect("s1");
    vol.write(65_536 + 100, &[3u8; 65_536], false)
        .expect("write");
    vol.write(300_000, &[4u8; 10_000], false).expect("write");
    let at_s2 = whole(&vol);
    vol.snapshot_create("s2", Vec::new()).expect("s2");
    vol.write(0, &[5u8; 200_000], false).expect("write");
    vol.resize(150_000).expect("shrink");
    (fs, lfs, vol, at_s1, at_s2)
}

/// Rollback: the volume reads exactly as at the snapshot (holes as zeros, the size), newer
/// snapshots still read as they did (a rollback to s2 after one to s1 and more writes), and
/// the same after a restart and after a backend restart; every snapshot is kept.
#[test]
fn a_rollback_reads_as_at_the_snapshot_and_keeps_newer_snapshots() {
    let rt = mt_rt();
    let store = Arc::new(MemStore::new());
    let (_fs, lfs, vol, at_s1, at_s2) = rolled_volume(&rt, &store);
    assert_ne!(whole(&vol), at_s1);
    vol.snapshot_rollback("s1", &crate::progress::NoProgress)
        .expect("rollback to s1");
    assert_eq!(whole(&vol), at_s1, "as at s1");
    assert_eq!(names(&vol), ["s1", "s2"]);
    vol.write(4096, &[6u8; 8192], false)
        .expect("write after the rollback");
    vol.snapshot_rollback("s2", &crate::progress::NoProgress)
        .expect("rollback to s2");
    assert_eq!(whole(&vol), at_s2, "s2 reads as it did");
    assert!(vol.verify().expect("verify").is_empty());
    drop(vol);

    let vol = Volume::open(lfs, &dir(), VOL, small_opts()).expect("restart");
    vol.set_backend(store.clone(), rt.handle().clone(), 2);
    assert_eq!(whole(&vol), at_s2, "after a restart");
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    drop(vol);
    let fresh_fs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol = rt
        .block_on(Volume::restore(
            &*store,
            fresh_fs,
            &dir(),
            VOL,
            small_opts(),
        ))
        .expect("backend restart");
    vol.set_backend(store.clone(), rt.handle().clone(), 3);
    assert_eq!(whole(&vol), at_s2, "after a backend restart");
    assert_eq!(names(&vol), ["s1", "s2"]);
    vol.snapshot_rollback("s1", &crate::progress::NoProgress)
        .expect("rollback after the backend restart");
    assert_eq!(whole(&vol), at_s1);
    assert!(matches!(
        vol.snapshot_rollback("nope", &crate::progress::NoProgress),
        Err(Error::NotFound)
    ));
}

/// A power cut at every step of a rollback (the upload before it, the rebuild, the entries,
/// the marker): after the restart the volume reads as before the rollback or as at the
/// snapshot, and a rollback that returned is never undone.
#[test]
fn a_power_cut_at_any_step_of_a_rollback_leaves_the_old_state_or_the_new() {
    let rt = mt_rt();
    for mode in [CrashMode::DropAll, CrashMode::Random(7)] {
        let mut outcomes = (false, false);
        let mut step = 0;
        loop {
            let store = Arc::new(MemStore::new());
            let (fs, lfs, vol, at_s1, _) = rolled_volume(&rt, &store);
            vol.sync().expect("sync");
            let before = whole(&vol);
            fs.cut_power_after(step);
            let r = vol.snapshot_rollback("s1", &crate::progress::NoProgress);
            let done = !fs.power_is_cut();
            if done {
                r.expect("rollback");
            }
            drop(vol);
            fs.crash(mode);
            let vol = Volume::open(lfs.clone(), &dir(), VOL, small_opts())
                .unwrap_or_else(|e| panic!("{mode:?} step {step}: restart: {e}"));
            vol.set_backend(store.clone(), rt.handle().clone(), 2);
            let now = whole(&vol);
            if done {
                assert_eq!(now, at_s1, "{mode:?} step {step}: a finished rollback");
                outcomes.1 = true;
                break;
            }
            assert!(
                now == before || now == at_s1,
                "{mode:?} step {step}: neither state"
            );
            outcomes.0 |= now == before;
            assert!(
                vol.verify().expect("verify").is_empty(),
                "{mode:?} step {step}"
            );
            assert!(
                lfs.open(&dir().join("rolling-back")).is_err(),
                "{mode:?} step {step}: the marker stayed"
            );
            step += 1;
            assert!(step < 2000, "{mode:?}: the rollback never finished");
        }
        assert!(outcomes.0 && outcomes.1, "{mode:?}: both outcomes reached");
    }
}

/// A Remap entry must name a cluster logged before (in the TLogs replayed or in a SCO the
/// MetaDataStore knows): one naming a SCO nobody logged makes the restart refuse the volume.
#[test]
fn a_remap_to_a_cluster_never_logged_is_refused_at_restart() {
    let (_fs, lfs, vol) = fresh(small_opts());
    vol.write(0, &[1u8; 8192], true).expect("write");
    {
        let mut st = vol.state.write();
        vol.tlog_append(
            &mut st,
            &[format::Entry::Remap {
                address: 0,
                sco: 999,
                offset: 0,
                hash: ClusterHash::of(b""),
            }],
        )
        .expect("append");
        st.write_gen += 1;
    }
    vol.sync().expect("sync");
    drop(vol);
    let err = Volume::open(lfs, &dir(), VOL, small_opts()).expect_err("refused");
    assert!(err.to_string().contains("not logged"), "{err}");
}
