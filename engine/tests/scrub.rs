//! Scrubbing through the facade (issue 17): the background scrubber runs every
//! `Scrub_Interval` by itself and reclaims what overwrites left, keeping a clone's view;
//! `Filesystem::scrub_with` on demand; the totals in `volume_stats`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use strata_engine::*;

fn config(dir: &Path, interval: u64) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.sco_size = 64 << 10;
    c.scrub_interval = Duration::from_secs(interval);
    c.gc_grace = Duration::ZERO;
    c
}

use support::{pattern, read_all};

#[test]
fn the_background_scrubber_reclaims_overwrites_by_itself_and_keeps_a_clones_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(config(dir.path(), 1)).expect("open");
    let h = support::create_in_root(&fs, "disk-flat.vmdk")
        .expect("create")
        .attr
        .handle;
    let len = 2 << 20;
    for seed in 1..=3 {
        fs.write(h, 0, &pattern(len, seed), false).expect("write");
    }
    fs.commit(h).expect("commit");
    fs.volume_clone(h, None, fs.root(), b"clone-flat.vmdk")
        .expect("clone");
    fs.write(h, 0, &pattern(len, 9), false).expect("write");
    fs.commit(h).expect("commit");
    fs.flush_to_backend().expect("flush");
    // Passes run every second: wait (bounded) until one has compacted something.
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let s = fs.volume_stats(h).expect("stats").scrub;
        if s.scos_compacted > 0 && s.objects_deleted > 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no background pass reclaimed anything: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(info.passes >= 1, "{info:?}");
    assert_eq!(read_all(&fs, h), pattern(len, 9));
    let c = fs
        .lookup(fs.root(), b"clone-flat.vmdk")
        .expect("clone")
        .handle;
    assert_eq!(read_all(&fs, c), pattern(len, 3));
    // On demand, over every volume: nothing left to do.
    let r = fs.scrub_with(None, &NoProgress).expect("scrub");
    assert_eq!(r.scos_compacted, 0, "{r:?}");
}

#[test]
fn without_an_interval_nothing_runs_in_the_background_and_a_pass_on_demand_does_the_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("open");
    let h = support::create_in_root(&fs, "disk-flat.vmdk")
        .expect("create")
        .attr
        .handle;
    for seed in 1..=3 {
        fs.write(h, 0, &pattern(1 << 20, seed), false)
            .expect("write");
    }
    fs.commit(h).expect("commit");
    fs.flush_to_backend().expect("flush");
    assert_eq!(fs.volume_stats(h).expect("stats").scrub.passes, 0);
    let r = fs.scrub_with(Some(h), &NoProgress).expect("scrub");
    assert!(
        r.scos_compacted > 0 && r.objects_deleted > 0,
        "{r:?} {:?}",
        fs.volume_stats(h).expect("stats")
    );
    let s = fs.volume_stats(h).expect("stats").scrub;
    assert_eq!(s.passes, 1);
    assert_eq!(s.scos_compacted, r.scos_compacted);
    assert_eq!(read_all(&fs, h), pattern(1 << 20, 3));
    // A directory is not a volume.
    assert!(fs.scrub_with(Some(fs.root()), &NoProgress).is_err());
}

#[test]
fn a_parent_restored_from_the_backend_learns_its_clones_again_before_anything_is_compacted() {
    // The clone's snapshot is deleted: only the parent's reader point protects what the clone
    // reads. A backend restart of the parent loses the points it recorded; the pass takes them
    // from the namespace again before it decides anything.
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 2 << 20;
    let (p_ino, c) = {
        let fs = Filesystem::open(config(dir.path(), 0)).expect("open");
        let h = support::create_in_root(&fs, "disk-flat.vmdk")
            .expect("create")
            .attr
            .handle;
        fs.write(h, 0, &pattern(len, 1), false).expect("write");
        fs.commit(h).expect("commit");
        let (c, snap) = fs
            .volume_clone(h, None, fs.root(), b"clone-flat.vmdk")
            .expect("clone");
        fs.snapshot_delete(h, &snap.name)
            .expect("delete the clone's snapshot");
        for seed in 2..=3 {
            fs.write(h, 0, &pattern(len, seed), false).expect("write");
        }
        fs.commit(h).expect("commit");
        fs.flush_to_backend().expect("flush");
        (h.ino, c.handle)
    };
    std::fs::remove_dir_all(dir.path().join(VOLUMES_DIR).join(format!("{p_ino:016x}")))
        .expect("drop the parent's local state");
    let fs = Filesystem::open(config(dir.path(), 0)).expect("reopen");
    let h = fs
        .lookup(fs.root(), b"disk-flat.vmdk")
        .expect("parent")
        .handle;
    assert_eq!(read_all(&fs, h), pattern(len, 3), "restored");
    let r = fs.scrub_with(Some(h), &NoProgress).expect("scrub");
    assert!(r.scos_compacted > 0, "{r:?}");
    assert_eq!(read_all(&fs, c), pattern(len, 1), "the clone's view");
    assert_eq!(read_all(&fs, h), pattern(len, 3));
}
