//! Scrubbing and garbage collection (issue 17), at the volume level: after heavy overwrites,
//! a snapshot and a clone, a scrub with `GC_Grace = 0` leaves every view byte for byte and
//! the backend near the live data; crashes at every step; writes racing a scrub.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_backend::ObjectStore;

use super::clone_tests::{ns, World};
use super::localfs::SimRng;
use super::scrub::{Readers, ScrubOptions, ScrubReport};
use super::tests::whole;
use super::*;
use crate::progress::NoProgress;

const V: VolumeId = VolumeId([0x11; 16]);
const C: VolumeId = VolumeId([0x12; 16]);

/// 4 MiB volumes with 256 KiB SCOs, 4 SCOs per TLog.
const SPACE: usize = 4 << 20;

fn opts() -> VolumeOptions {
    VolumeOptions {
        sco_clusters: 64,
        tlog_scos: 4,
        checkpoint_tlogs: 8,
    }
}

fn scrub_opts() -> ScrubOptions {
    ScrubOptions {
        threshold: 0.75,
        grace: Duration::ZERO,
        bandwidth: 0,
    }
}

/// Random writes of 4..64 KiB (whole clusters) covering about `passes` times the volume;
/// each write's bytes are new. Applied to `vol` and to the oracle `want`.
fn overwrite(vol: &Volume, want: &mut [u8], rng: &mut SimRng, passes: usize) {
    let clusters = want.len() / 4096;
    let mut written = 0;
    while written < passes * clusters {
        let n = 1 + rng.below(16) as usize;
        let first = rng.below((clusters - n) as u64) as usize;
        let data: Vec<u8> = (0..n * 4096).map(|_| rng.next_u64() as u8).collect();
        vol.write((first * 4096) as u64, &data, false)
            .expect("write");
        want[first * 4096..(first + n) * 4096].copy_from_slice(&data);
        written += n;
    }
}

/// The distinct (address, content) clusters of the views: the live data, in bytes.
fn live_bytes(views: &[&[u8]]) -> u64 {
    let mut set = HashSet::new();
    for v in views {
        for (a, c) in v.chunks(4096).enumerate() {
            if c.iter().any(|b| *b != 0) {
                set.insert((a, format::ClusterHash::of(c)));
            }
        }
    }
    set.len() as u64 * 4096
}

/// Bytes of every object of the volumes' namespaces.
fn backend_bytes(w: &World, ids: &[VolumeId]) -> u64 {
    ids.iter()
        .map(|id| {
            w.rt.block_on(ns(&w.root, *id).list("", None, 1_000_000))
                .expect("list")
                .objects
                .iter()
                .map(|o| o.size)
                .sum::<u64>()
        })
        .sum()
}

/// The bound of the issue: backend bytes at most 1.25x the live data plus 2 MiB for metadata
/// (TLogs, checkpoints, manifests).
fn assert_near_live(after: u64, live: u64, what: &str) {
    assert!(
        after <= live + live / 4 + (2 << 20),
        "{what}: backend {after} bytes for {live} live"
    );
}

/// Every SCO of `v` evicted, so that reads go to the backend.
fn evict_all(v: &Volume) {
    for c in v.eviction_candidates() {
        v.evict_sco(c.sco).expect("evict");
    }
}

/// Snapshot `snap` of `v` as a rollback or a clone sees it: rebuilt from the backend as of
/// its TLog, every read going to the backend.
fn view_at(w: &World, v: &Volume, snap: &str) -> Vec<u8> {
    let n = v.snapshot_info(snap).expect("snapshot").record.tlog;
    let lfs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let r =
        w.rt.block_on(Volume::restore_at(
            &*ns(&w.root, v.id()),
            lfs,
            std::path::Path::new("/view"),
            v.id(),
            opts(),
            Some(n),
        ))
        .expect("rebuild at the snapshot");
    w.attach(&r);
    whole(&r)
}

fn scrub(v: &Volume) -> ScrubReport {
    v.scrub(&scrub_opts(), &NoProgress).expect("scrub")
}

/// The world of the main scenario: V (of `space` bytes) overwritten, snapshot `mid`, clone C
/// of it, more overwrites on both; everything uploaded. Returns the oracles (V, mid, C).
fn scenario(
    w: &World,
    rng: &mut SimRng,
    space: usize,
) -> (Volume, Volume, Vec<u8>, Vec<u8>, Vec<u8>) {
    let v = w.create_with(V, opts());
    v.resize(space as u64).expect("resize");
    let mut head = vec![0u8; space];
    overwrite(&v, &mut head, rng, 4);
    v.snapshot_create("mid", Vec::new()).expect("snapshot");
    let mid = head.clone();
    let c = w.clone_with(&v, "mid", C, opts());
    overwrite(&v, &mut head, rng, 4);
    let mut cview = mid.clone();
    overwrite(&c, &mut cview, rng, 1);
    w.backup(&v);
    w.backup(&c);
    (v, c, head, mid, cview)
}

#[test]
fn a_scrub_keeps_every_view_and_brings_the_backend_near_the_live_data() {
    let w = World::new();
    let mut rng = SimRng::new(17);
    let (v, c, head, mid, cview) = scenario(&w, &mut rng, SPACE);
    let before = backend_bytes(&w, &[V, C]);
    let live = live_bytes(&[&head, &mid, &cview]);
    let r = scrub(&v);
    let rc = scrub(&c);
    assert!(r.scos_compacted > 0, "{r:?}");
    assert!(r.objects_deleted > 0, "{r:?}");
    let after = backend_bytes(&w, &[V, C]);
    eprintln!("backend {before} -> {after} bytes, live {live}; {r:?} {rc:?}");
    assert_near_live(after, live, &format!("was {before}"));
    // Every view reads the same, from the backend.
    evict_all(&v);
    evict_all(&c);
    assert!(whole(&v) == head, "the volume changed");
    assert!(whole(&c) == cview, "the clone changed");
    assert!(view_at(&w, &v, "mid") == mid, "the snapshot changed");
    // A backend restart finds the compacted objects without the MetaDataStore's records.
    drop(v);
    let r = w.restore(V);
    assert!(
        whole(&r) == head,
        "the volume restored from the backend changed"
    );
    // A second pass finds nothing more to do.
    let again = scrub(&c);
    assert_eq!(again.scos_compacted, 0);
}

/// The keys and bytes of the TLog objects of volume `id` on the backend.
fn tlog_objects(w: &World, id: VolumeId) -> (Vec<String>, u64) {
    let objs =
        w.rt.block_on(ns(&w.root, id).list("tlog/", None, 1_000_000))
            .expect("list")
            .objects;
    let bytes = objs.iter().map(|o| o.size).sum();
    (objs.into_iter().map(|o| o.key).collect(), bytes)
}

#[test]
fn tlogs_lose_the_entries_of_dead_clusters_and_every_view_still_replays_from_them() {
    let w = World::new();
    let mut rng = SimRng::new(23);
    let (v, _c, head, mid, _cview) = scenario(&w, &mut rng, SPACE);
    let (_, before) = tlog_objects(&w, V);
    scrub(&v);
    let (keys, after) = tlog_objects(&w, V);
    eprintln!("TLogs {before} -> {after} bytes");
    // Written about eight times over: most entries are of dead clusters.
    assert!(after * 2 < before, "TLogs {before} -> {after} bytes");
    let compacted: Vec<&String> = keys.iter().filter(|k| k.split('.').count() == 4).collect();
    assert!(!compacted.is_empty(), "{keys:?}");
    // With GC_Grace 0 the originals they replace are gone.
    for k in &compacted {
        let original = k.split('.').take(2).collect::<Vec<_>>().join(".");
        let short = k.split('.').next().expect("seq");
        assert!(
            !keys.contains(&original) && !keys.iter().any(|o| o == short),
            "{k} and its original"
        );
    }
    // The snapshot rebuilt from TLog 1 (the checkpoint is newer), and a backend restart from
    // the checkpoint and the TLogs after it, read what they read before.
    assert!(view_at(&w, &v, "mid") == mid, "the snapshot changed");
    drop(v);
    let r = w.restore(V);
    assert!(whole(&r) == head, "the restored volume changed");
    // A second pass on the restored volume (it recounts from the compacted TLogs) keeps both.
    scrub(&r);
    evict_all(&r);
    assert!(whole(&r) == head);
    assert!(view_at(&w, &r, "mid") == mid);
}

#[test]
fn deleting_the_snapshot_and_the_clone_frees_what_only_they_read() {
    let w = World::new();
    let mut rng = SimRng::new(18);
    let (v, c, head, _mid, _cview) = scenario(&w, &mut rng, SPACE);
    scrub(&v);
    let with_views = backend_bytes(&w, &[V]);
    // The clone still reads the snapshot's view: deleting the snapshot frees nothing yet.
    v.snapshot_delete("mid").expect("delete snapshot");
    w.backup(&v);
    let r = scrub(&v);
    assert_eq!(r.scos_compacted, 0, "a clone still reads it: {r:?}");
    // The clone goes (as the registry does when it is deleted): now it is garbage.
    let n = c.lineage().ancestors()[0].last_tlog;
    drop(c);
    v.unpin_reader(n).expect("unpin");
    let r = scrub(&v);
    assert!(r.scos_compacted > 0, "{r:?}");
    let after = backend_bytes(&w, &[V]);
    let live = live_bytes(&[&head]);
    assert!(after < with_views, "{after} < {with_views}");
    assert_near_live(after, live, "after the scrub");
    evict_all(&v);
    assert!(whole(&v) == head);
}

#[test]
fn writes_racing_a_scrub_keep_the_right_data() {
    let w = World::new();
    let mut rng = SimRng::new(19);
    let v = Arc::new(w.create_with(V, opts()));
    v.resize(SPACE as u64).expect("resize");
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 6);
    w.backup(&v);
    let head = std::sync::Mutex::new(head);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut rng = SimRng::new(20);
            for _ in 0..4 {
                let mut h = head.lock().expect("oracle");
                overwrite(&v, &mut h, &mut rng, 1);
                drop(h);
                w.backup(&v);
            }
        });
        for _ in 0..4 {
            scrub(&v);
        }
        writer.join().expect("writer");
    });
    scrub(&v);
    evict_all(&v);
    let head = head.into_inner().expect("oracle");
    assert!(
        whole(&v) == head,
        "a write racing the scrub was lost or a read went wrong"
    );
    let live = live_bytes(&[&head]);
    assert_near_live(backend_bytes(&w, &[V]), live, "after the scrub");
}

#[test]
fn a_power_cut_at_every_step_of_a_scrub_loses_nothing_and_a_later_pass_collects() {
    // Count the steps of one pass, then cut the power after each in turn (every one: the
    // scenario is small enough, ~180 steps).
    let steps = {
        let w = World::new();
        let mut rng = SimRng::new(21);
        let (v, _c, _, _, _) = scenario(&w, &mut rng, SPACE / 16);
        let before = w.sim.mutating_ops();
        let r = scrub(&v);
        // Small, and still every kind of step: compactions, records, marks, deletes.
        assert!(r.scos_compacted > 1 && r.objects_deleted > 1, "{r:?}");
        w.sim.mutating_ops() - before
    };
    assert!(steps > 10, "{steps}");
    eprintln!("{steps} mutating steps in a pass");
    for cut in 0..steps {
        let w = World::new();
        let mut rng = SimRng::new(21);
        let (v, c, head, mid, cview) = scenario(&w, &mut rng, SPACE / 16);
        w.sim.cut_power_after(cut);
        let _ = v.scrub(&scrub_opts(), &NoProgress);
        drop(v);
        drop(c);
        w.sim.crash(CrashMode::DropAll);
        let v = w.open(V);
        let c = w.open(C);
        scrub(&v);
        evict_all(&v);
        evict_all(&c);
        assert!(whole(&v) == head, "cut {cut}: the volume changed");
        assert!(whole(&c) == cview, "cut {cut}: the clone changed");
        assert!(
            view_at(&w, &v, "mid") == mid,
            "cut {cut}: the snapshot changed"
        );
        // Nothing left marked: the garbage was collected.
        assert!(v.mds.gc_pending().expect("pending").is_empty(), "cut {cut}");
        let live = live_bytes(&[&head, &mid, &cview]);
        let after = backend_bytes(&w, &[V, C]);
        assert_near_live(after, live, &format!("cut {cut}"));
    }
}

/// Fails every delete while `on`.
#[derive(Debug, Default)]
struct FailDeletes(std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl strata_backend::Hook for FailDeletes {
    async fn before(&self, call: &strata_backend::Call<'_>) -> Result<(), strata_backend::Error> {
        if matches!(call, strata_backend::Call::Delete { .. })
            && self.0.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(strata_backend::Error::Io {
                key: call.key().to_string(),
                source: std::io::Error::other("injected"),
            });
        }
        Ok(())
    }
}

#[test]
fn a_backend_failure_during_a_scrub_changes_nothing_and_the_next_pass_finishes() {
    let w = World::new();
    let mut rng = SimRng::new(22);
    let (v, _c, head, _mid, _cview) = scenario(&w, &mut rng, SPACE);
    // The namespace refuses deletes: compactions land, garbage stays marked.
    let hooked = Arc::new(strata_backend::HookedStore::new(
        ns(&w.root, V),
        FailDeletes::default(),
    ));
    hooked
        .hook()
        .0
        .store(true, std::sync::atomic::Ordering::SeqCst);
    v.set_backend(
        hooked.clone() as Arc<dyn ObjectStore>,
        w.rt.handle().clone(),
        1,
    );
    assert!(v.scrub(&scrub_opts(), &NoProgress).is_err());
    assert!(!v.mds.gc_pending().expect("pending").is_empty());
    evict_all(&v);
    assert!(whole(&v) == head);
    hooked
        .hook()
        .0
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let r = scrub(&v);
    assert!(r.objects_deleted > 0, "{r:?}");
    assert!(v.mds.gc_pending().expect("pending").is_empty());
    assert!(whole(&v) == head);
}

#[test]
fn holes_a_rollback_maps_to_one_zero_cluster_stay_readable_after_a_scrub() {
    // A rollback maps every cluster its snapshot did not have to ONE zero cluster: that
    // position backs many addresses, and overwriting some of them must not make it dead.
    let w = World::new();
    let mut rng = SimRng::new(23);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64 / 2).expect("resize");
    let mut small = vec![0u8; SPACE / 2];
    overwrite(&v, &mut small, &mut rng, 1);
    v.snapshot_create("small", Vec::new()).expect("snapshot");
    v.resize(SPACE as u64).expect("grow");
    let mut big = vec![0u8; SPACE];
    big[..SPACE / 2].copy_from_slice(&small);
    overwrite(&v, &mut big, &mut rng, 2);
    w.backup(&v);
    v.snapshot_rollback("small", &NoProgress).expect("rollback");
    v.resize(SPACE as u64).expect("grow again");
    // Clusters the snapshot did not have but the volume wrote since now map to the zero
    // cluster; overwrite a few of them, then scrub.
    let mut want = vec![0u8; SPACE];
    want[..SPACE / 2].copy_from_slice(&small);
    let holes: Vec<usize> = (0..SPACE / 2 / 4096)
        .filter(|c| {
            let r = c * 4096..(c + 1) * 4096;
            small[r.clone()].iter().all(|b| *b == 0) && big[r].iter().any(|b| *b != 0)
        })
        .collect();
    assert!(holes.len() > 16, "{} holes", holes.len());
    for (i, c) in holes.iter().take(holes.len() / 2).enumerate() {
        let data = vec![i as u8 | 1; 4096];
        v.write((c * 4096) as u64, &data, false).expect("write");
        want[c * 4096..(c + 1) * 4096].copy_from_slice(&data);
    }
    w.backup(&v);
    scrub(&v);
    evict_all(&v);
    assert!(whole(&v) == want, "a hole or a cluster changed");
    assert!(view_at(&w, &v, "small")[..SPACE / 2] == small[..]);
}

/// A snapshot's superseded positions are pinned while it exists; a rollback maps them again,
/// and that must drop their pinned rows: otherwise deleting the snapshot later finds them
/// read by no view, makes them dead, and the scrub removes clusters the map reads.
#[test]
fn positions_a_rollback_maps_again_stay_after_their_snapshot_is_deleted_and_a_scrub() {
    let w = World::new();
    let mut rng = SimRng::new(29);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    let mut old = vec![0u8; SPACE];
    overwrite(&v, &mut old, &mut rng, 1);
    v.snapshot_create("old", Vec::new()).expect("snapshot");
    let mut head = old.clone();
    overwrite(&v, &mut head, &mut rng, 2);
    w.backup(&v);
    assert!(v.mds.liveness_rows().expect("rows").1 > 0, "nothing pinned");
    v.snapshot_rollback("old", &NoProgress).expect("rollback");
    w.backup(&v);
    v.snapshot_delete("old").expect("delete the snapshot");
    w.backup(&v);
    scrub(&v);
    evict_all(&v);
    assert!(
        whole(&v) == old,
        "a cluster the rollback mapped back changed"
    );
}

#[test]
fn after_a_backend_restart_a_pass_recounts_older_tlogs_and_reclaims_their_garbage() {
    // A backend restart loads the map from a checkpoint: what the TLogs before it superseded
    // is not in the liveness tables until a pass replays them.
    let w = World::new();
    let mut rng = SimRng::new(24);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 3);
    v.snapshot_create("s", Vec::new()).expect("snapshot");
    let snap = head.clone();
    overwrite(&v, &mut head, &mut rng, 3);
    w.backup(&v);
    drop(v);
    let v = w.restore(V);
    assert!(
        v.mds.liveness_from().expect("meta") > 0,
        "restored from a checkpoint"
    );
    let before = backend_bytes(&w, &[V]);
    let r = scrub(&v);
    assert!(r.scos_compacted > 0, "{r:?}");
    assert_eq!(v.mds.liveness_from().expect("meta"), 0);
    let live = live_bytes(&[&head, &snap]);
    let after = backend_bytes(&w, &[V]);
    assert_near_live(after, live, &format!("was {before}"));
    evict_all(&v);
    assert!(whole(&v) == head);
    assert!(view_at(&w, &v, "s") == snap);
}

/// Fails the manifest PUT that would name a new checkpoint (one after any `mds/` object was
/// put) while on.
#[derive(Debug, Default)]
struct FailCheckpointManifest {
    on: std::sync::atomic::AtomicBool,
    pages: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl strata_backend::Hook for FailCheckpointManifest {
    async fn before(&self, call: &strata_backend::Call<'_>) -> Result<(), strata_backend::Error> {
        use std::sync::atomic::Ordering::SeqCst;
        if let strata_backend::Call::Put { key, .. } = call {
            if key.starts_with("mds/") {
                self.pages.fetch_add(1, SeqCst);
            } else if key.ends_with("manifest.xml")
                && self.on.load(SeqCst)
                && self.pages.load(SeqCst) > 0
            {
                return Err(strata_backend::Error::Io {
                    key: key.to_string(),
                    source: std::io::Error::other("injected"),
                });
            }
        }
        Ok(())
    }
}

#[test]
fn the_pages_of_a_failed_checkpoint_are_collected_and_the_named_one_is_kept() {
    let w = World::new();
    let mut rng = SimRng::new(25);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 2);
    w.backup(&v);
    let hooked = Arc::new(strata_backend::HookedStore::new(
        ns(&w.root, V),
        FailCheckpointManifest::default(),
    ));
    v.set_backend(
        hooked.clone() as Arc<dyn ObjectStore>,
        w.rt.handle().clone(),
        1,
    );
    hooked
        .hook()
        .on
        .store(true, std::sync::atomic::Ordering::SeqCst);
    overwrite(&v, &mut head, &mut rng, 2);
    let rep =
        w.rt.block_on(v.backup(&*hooked, true))
            .expect("the data upload succeeds");
    assert!(rep.checkpoint_error.is_some(), "{rep:?}");
    let mds_keys = || -> Vec<String> {
        w.keys_under(V)
            .into_iter()
            .filter(|k| k.starts_with("mds/"))
            .collect()
    };
    let with_failed = mds_keys();
    hooked
        .hook()
        .on
        .store(false, std::sync::atomic::Ordering::SeqCst);
    scrub(&v);
    let after = mds_keys();
    assert!(
        after.len() < with_failed.len(),
        "{after:?} of {with_failed:?}"
    );
    // What is left is exactly what the manifest's checkpoint needs: a backend restart works.
    drop(v);
    let r = w.restore(V);
    evict_all(&r);
    assert!(whole(&r) == head);
}

#[test]
fn overwritten_clusters_of_zeros_are_reclaimed_like_any_other() {
    // Benchmarks and guests write zeros (`qemu-img bench` does): only a position a rollback
    // remapped may back several addresses, not every zero cluster.
    let w = World::new();
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    for _ in 0..3 {
        for off in (0..SPACE).step_by(1 << 20) {
            v.write(off as u64, &vec![0u8; 1 << 20], false)
                .expect("write zeros");
        }
    }
    let mut rng = SimRng::new(26);
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 1);
    w.backup(&v);
    let r = scrub(&v);
    assert!(r.scos_compacted > 0, "{r:?}");
    // Live: every cluster (those never rewritten still hold zeros that were written).
    let live = SPACE as u64;
    let after = backend_bytes(&w, &[V]);
    assert_near_live(after, live, "after the scrub");
    evict_all(&v);
    assert!(whole(&v) == head);
}

#[test]
fn a_volume_scrubbed_before_a_backend_restart_is_scrubbed_again_after_it() {
    // The restart forgets which SCOs were compacted: a pass finds their newest compacted
    // object by listing instead of failing on the original that is gone.
    let w = World::new();
    let mut rng = SimRng::new(27);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 3);
    w.backup(&v);
    assert!(scrub(&v).scos_compacted > 0);
    drop(v);
    let v = w.restore(V);
    overwrite(&v, &mut head, &mut rng, 2);
    w.backup(&v);
    let r = scrub(&v);
    assert!(r.scos_compacted > 0, "{r:?}");
    let again = scrub(&v);
    assert_eq!(again.scos_compacted, 0, "{again:?}");
    evict_all(&v);
    assert!(whole(&v) == head);
    let live = live_bytes(&[&head]);
    assert_near_live(backend_bytes(&w, &[V]), live, "after the scrub");
}

#[test]
fn a_power_cut_while_a_pass_corrects_lost_reader_points_and_recounts_loses_nothing() {
    // Only the clone's reader point protects what it reads (its snapshot is deleted), and the
    // volume lost that point: the pass takes it from the namespace (here: given), drops what
    // was found dead and recounts every TLog from the backend. The power fails at sampled
    // steps of that pass; after the restart another pass must converge.
    let setup = |w: &World| {
        let mut rng = SimRng::new(28);
        let (v, c, head, _mid, cview) = scenario(w, &mut rng, SPACE / 4);
        let n = c.lineage().ancestors()[0].last_tlog;
        v.snapshot_delete("mid").expect("delete the snapshot");
        w.backup(&v);
        v.mds.remove_reader_point(n).expect("lose the point");
        let readers = Readers::Known([(n, 1)].into_iter().collect());
        (v, c, head, cview, readers)
    };
    let steps = {
        let w = World::new();
        let (v, _c, _, _, readers) = setup(&w);
        let before = w.sim.mutating_ops();
        v.scrub_with(&scrub_opts(), &readers, &NoProgress, &|| false)
            .expect("scrub");
        w.sim.mutating_ops() - before
    };
    assert!(steps > 10, "{steps}");
    for cut in (0..steps).step_by((steps / 16).max(1) as usize) {
        let w = World::new();
        let (v, c, head, cview, readers) = setup(&w);
        w.sim.cut_power_after(cut);
        let _ = v.scrub_with(&scrub_opts(), &readers, &NoProgress, &|| false);
        drop(v);
        drop(c);
        w.sim.crash(CrashMode::DropAll);
        let v = w.open(V);
        let c = w.open(C);
        v.scrub_with(&scrub_opts(), &readers, &NoProgress, &|| false)
            .expect("the next pass");
        evict_all(&v);
        evict_all(&c);
        assert!(whole(&v) == head, "cut {cut}: the volume changed");
        assert!(whole(&c) == cview, "cut {cut}: the clone changed");
        assert_eq!(v.mds.liveness_from().expect("meta"), 0, "cut {cut}");
    }
}

#[test]
fn copies_a_crash_left_under_another_epoch_and_older_generations_are_swept() {
    let w = World::new();
    let mut rng = SimRng::new(29);
    let (v, c, head, mid, cview) = scenario(&w, &mut rng, SPACE / 4);
    scrub(&v);
    let store = ns(&w.root, V);
    let keys = w.keys_under(V);
    let copy = |from: &str, to: &str| {
        let (b, _) = w.rt.block_on(store.get(from)).expect("get");
        w.rt.block_on(store.put(to, b)).expect("put");
    };
    let with_epoch = |k: &str, e: u64| format!("{}.{e:016x}", &k[..k.find('.').unwrap_or(k.len())]);
    let original = keys
        .iter()
        .find(|k| k.starts_with("sco/") && k.matches('.').count() == 1)
        .expect("an original SCO")
        .clone();
    let tlog = keys
        .iter()
        .find(|k| k.starts_with("tlog/"))
        .expect("a TLog")
        .clone();
    let compacted = keys
        .iter()
        .find(|k| k.starts_with("sco/") && k.matches('.').count() == 3)
        .expect("a compacted SCO")
        .clone();
    let older = format!(
        "{}.0000000000000000",
        &compacted[..compacted.rfind('.').unwrap_or(0)]
    );
    let planted = [with_epoch(&original, 9), with_epoch(&tlog, 9), older];
    copy(&original, &planted[0]);
    copy(&tlog, &planted[1]);
    copy(&compacted, &planted[2]);
    // A new run of the volume sweeps once.
    drop(v);
    drop(c);
    let v = w.open(V);
    let c = w.open(C);
    let r = scrub(&v);
    let left = w.keys_under(V);
    for p in &planted {
        assert!(!left.contains(p), "{p} was not collected ({r:?})");
    }
    for k in &keys {
        assert!(
            left.contains(k) || !k.starts_with("tlog/"),
            "a TLog went: {k}"
        );
    }
    evict_all(&v);
    evict_all(&c);
    assert!(whole(&v) == head);
    assert!(whole(&c) == cview);
    assert!(view_at(&w, &v, "mid") == mid);
    drop(v);
    let r = w.restore(V);
    assert!(whole(&r) == head, "a backend restart after the sweep");
}

/// Holds the first compacted SCO put at a gate until it opens; counts puts that landed.
#[derive(Debug)]
struct GatedCompaction {
    gate: tokio::sync::watch::Receiver<bool>,
    held: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    landed: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl strata_backend::Hook for GatedCompaction {
    async fn before(&self, call: &strata_backend::Call<'_>) -> Result<(), strata_backend::Error> {
        let compacted = matches!(call, strata_backend::Call::Put { key, .. }
            if key.starts_with("sco/") && key.split('.').count() == 4);
        if compacted {
            let first = self.held.lock().expect("held").take();
            if let Some(tx) = first {
                let _ = tx.send(());
                let mut gate = self.gate.clone();
                let _ = gate.wait_for(|open| *open).await;
            }
        }
        Ok(())
    }

    async fn after(&self, call: &strata_backend::Call<'_>) {
        if matches!(call, strata_backend::Call::Put { .. }) {
            self.landed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn deleting_a_volume_waits_for_a_scrub_pass_in_flight_and_stops_it() {
    // The deletion then lists and deletes the volume's objects: a compaction landing after
    // it would stay on the backend for ever.
    let w = World::new();
    let mut rng = SimRng::new(24);
    let (v, _c, _, _, _) = scenario(&w, &mut rng, SPACE / 4);
    let (open, gate) = tokio::sync::watch::channel(false);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let hooked = Arc::new(strata_backend::HookedStore::new(
        ns(&w.root, V),
        GatedCompaction {
            gate,
            held: std::sync::Mutex::new(Some(held_tx)),
            landed: Default::default(),
        },
    ));
    v.set_backend(
        hooked.clone() as Arc<dyn ObjectStore>,
        w.rt.handle().clone(),
        1,
    );
    let v = Arc::new(v);
    let landed = |h: &strata_backend::HookedStore<GatedCompaction>| {
        h.hook().landed.load(std::sync::atomic::Ordering::SeqCst)
    };
    std::thread::scope(|s| {
        let pass = s.spawn(|| v.scrub(&scrub_opts(), &NoProgress));
        held_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a compaction reached its put");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (v, hooked) = (&v, &hooked);
        let deletion = s.spawn(move || {
            v.destroy().expect("destroy");
            let n = landed(hooked);
            let _ = done_tx.send(());
            n
        });
        // The deletion must not end while the put is held; if it does (the bug), the put
        // lands after it. Either way the gate opens: at once once it ended, else after 2 s.
        let _ = done_rx.recv_timeout(Duration::from_secs(2));
        open.send_replace(true);
        let at_deletion = deletion.join().expect("deletion");
        assert!(pass.join().expect("pass").is_err(), "the pass stops");
        assert_eq!(
            landed(hooked),
            at_deletion,
            "an object landed on the backend after the deletion returned"
        );
    });
}

/// Fails every delete of a snapshot record.
#[derive(Debug, Default)]
struct FailSnapDeletes;

#[async_trait::async_trait]
impl strata_backend::Hook for FailSnapDeletes {
    async fn before(&self, call: &strata_backend::Call<'_>) -> Result<(), strata_backend::Error> {
        match call {
            strata_backend::Call::Delete { key } if key.starts_with("snap/") => {
                Err(strata_backend::Error::Io {
                    key: key.to_string(),
                    source: std::io::Error::other("injected"),
                })
            }
            _ => Ok(()),
        }
    }
}

#[test]
fn a_deleted_snapshot_whose_record_is_still_on_the_backend_keeps_what_it_reads() {
    // A backend restart takes back every snapshot record it finds: until the record is
    // gone, what the snapshot reads is not garbage.
    let w = World::new();
    let mut rng = SimRng::new(25);
    let v = w.create_with(V, opts());
    let space = SPACE / 4;
    v.resize(space as u64).expect("resize");
    let mut head = vec![0u8; space];
    overwrite(&v, &mut head, &mut rng, 2);
    v.snapshot_create("s", Vec::new()).expect("snapshot");
    let seen = head.clone();
    overwrite(&v, &mut head, &mut rng, 6);
    w.backup(&v);
    let hooked = Arc::new(strata_backend::HookedStore::new(
        ns(&w.root, V),
        FailSnapDeletes,
    ));
    v.set_backend(
        hooked.clone() as Arc<dyn ObjectStore>,
        w.rt.handle().clone(),
        1,
    );
    v.snapshot_delete("s").expect("delete the snapshot");
    w.rt.block_on(v.backup(&*hooked, true))
        .expect("a backup (the record's delete fails, logged)");
    let r = scrub(&v);
    assert!(r.scos_compacted > 0, "{r:?}");
    drop(v);
    let r = w.restore(V);
    assert!(whole(&r) == head, "the volume");
    assert!(view_at(&w, &r, "s") == seen, "the snapshot brought back");
    // Once the record can go, the next pass reclaims what only it read.
    let before = backend_bytes(&w, &[V]);
    r.snapshot_delete("s").expect("delete it again");
    w.backup(&r);
    scrub(&r);
    assert!(backend_bytes(&w, &[V]) < before);
    assert!(whole(&r) == head);
}

#[test]
fn a_recount_after_the_reader_points_are_corrected_passes_over_scos_already_dropped_whole() {
    // The correction drops what was found dead and recounts every TLog: positions of a SCO a
    // compaction dropped whole come back as dead rows, with nothing of it on the backend (its
    // TLog, three quarters live, was not compacted and still names them).
    let w = World::new();
    let v = w.create_with(V, opts());
    let sco = 64 * 4096;
    v.resize(3 * sco as u64).expect("resize");
    let mut head = vec![0u8; 3 * sco];
    for (seed, (off, len)) in [(0, sco), (0, sco), (sco, 2 * sco)].into_iter().enumerate() {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8) ^ (seed as u8 * 61 + 1))
            .collect();
        v.write(off as u64, &data, false).expect("write");
        head[off..off + len].copy_from_slice(&data);
    }
    w.backup(&v);
    let r = scrub(&v);
    assert_eq!(r.scos_compacted, 1, "the first SCO, dropped whole: {r:?}");
    // The volume says a clone reads it (at TLog 1), the namespace says none does.
    let points = std::collections::BTreeMap::from([(1u64, 1u64)]);
    v.scrub_with(&scrub_opts(), &Readers::Known(points), &NoProgress, &|| {
        false
    })
    .expect("a pass that records the point");
    v.scrub_with(
        &scrub_opts(),
        &Readers::Known(Default::default()),
        &NoProgress,
        &|| false,
    )
    .expect("a pass after the correction");
    evict_all(&v);
    assert!(whole(&v) == head);
    let again = scrub(&v);
    assert_eq!(again.scos_compacted, 0, "{again:?}");
}

#[test]
fn a_paced_pass_yields_to_waiting_clients_before_each_compaction_and_still_ends() {
    let w = World::new();
    let mut rng = SimRng::new(29);
    let v = w.create_with(V, opts());
    v.resize(SPACE as u64).expect("resize");
    let mut head = vec![0u8; SPACE];
    overwrite(&v, &mut head, &mut rng, 4);
    w.backup(&v);
    // Paced (a bandwidth no pass here reaches), clients waiting for the first few looks.
    let paced = ScrubOptions {
        bandwidth: u64::MAX,
        ..scrub_opts()
    };
    let looks = std::sync::atomic::AtomicU64::new(0);
    let waiting = || looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5;
    let r = v
        .scrub_with(&paced, &Readers::Recorded, &NoProgress, &waiting)
        .expect("a paced pass");
    assert!(r.scos_compacted > 0, "{r:?}");
    let looked = looks.load(std::sync::atomic::Ordering::Relaxed);
    // Each compaction looks at least once; the first waits through 5 looks.
    assert!(
        looked >= r.scos_compacted + 5,
        "{looked} looks for {} compactions",
        r.scos_compacted
    );
    evict_all(&v);
    assert!(whole(&v) == head, "the volume changed");
    // Unpaced, a pass never asks.
    overwrite(&v, &mut head, &mut rng, 2);
    w.backup(&v);
    let never = || -> bool { panic!("an unpaced pass asked whether clients wait") };
    let r = v
        .scrub_with(&scrub_opts(), &Readers::Recorded, &NoProgress, &never)
        .expect("an unpaced pass");
    assert!(r.scos_compacted > 0, "{r:?}");
    evict_all(&v);
    assert!(whole(&v) == head, "the volume changed");
}
