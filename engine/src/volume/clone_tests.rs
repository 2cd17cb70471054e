//! Clones, templates and flatten (issue 16), at the volume level: a clone reads as its parent
//! did at the snapshot, shares its SCOs (nothing copied), writes into its own namespace, and
//! survives a local and a backend restart; clones of clones; flatten; templates; crashes at
//! every step.

use std::sync::Arc;

use strata_backend::{MemStore, Namespaced, ObjectStore};

use super::clone::AncestorStores;
use super::tests::{fill, mt_rt, small_opts, whole};
use super::*;
use crate::error::Error;
use crate::progress::NoProgress;

const P: VolumeId = VolumeId([1; 16]);
const C1: VolumeId = VolumeId([2; 16]);
const C2: VolumeId = VolumeId([3; 16]);

pub(super) fn ns(root: &Arc<MemStore>, id: VolumeId) -> Arc<dyn ObjectStore> {
    Arc::new(Namespaced::new(root.clone(), format!("volumes/{id}/")).expect("namespace"))
}

fn resolver(root: &Arc<MemStore>) -> AncestorStores {
    let root = root.clone();
    AncestorStores {
        store: Arc::new(move |id| Ok(ns(&root, id))),
        local_dir: Arc::new(vdir),
    }
}

fn vdir(id: VolumeId) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/v/{id}"))
}

pub(super) struct World {
    pub(super) sim: SimFs,
    pub(super) lfs: Arc<dyn LocalFs>,
    pub(super) root: Arc<MemStore>,
    pub(super) rt: tokio::runtime::Runtime,
}

impl World {
    pub(super) fn new() -> World {
        let sim = SimFs::new();
        World {
            lfs: Arc::new(sim.clone()),
            sim,
            root: Arc::new(MemStore::new()),
            rt: mt_rt(),
        }
    }

    pub(super) fn attach(&self, v: &Volume) {
        v.set_backend(ns(&self.root, v.id()), self.rt.handle().clone(), 1);
        v.set_ancestor_stores(resolver(&self.root));
    }

    pub(super) fn create(&self, id: VolumeId) -> Volume {
        self.create_with(id, small_opts())
    }

    pub(super) fn create_with(&self, id: VolumeId, opts: VolumeOptions) -> Volume {
        let v = Volume::create(self.lfs.clone(), &vdir(id), id, opts, 0).expect("create");
        self.attach(&v);
        v
    }

    pub(super) fn open(&self, id: VolumeId) -> Volume {
        let v = Volume::open(self.lfs.clone(), &vdir(id), id, small_opts()).expect("open");
        self.attach(&v);
        v
    }

    pub(super) fn backup(&self, v: &Volume) {
        self.rt
            .block_on(v.backup(&*ns(&self.root, v.id()), true))
            .expect("backup");
    }

    /// A clone of `parent` at its snapshot `snap`, the way the facade makes one.
    pub(super) fn clone_of(&self, parent: &Volume, snap: &str, id: VolumeId) -> Volume {
        self.clone_with(parent, snap, id, small_opts())
    }

    pub(super) fn clone_with(
        &self,
        parent: &Volume,
        snap: &str,
        id: VolumeId,
        opts: VolumeOptions,
    ) -> Volume {
        let n = parent.snapshot_info(snap).expect("snapshot").record.tlog;
        self.backup(parent);
        let lineage = parent.clone_lineage(n).expect("lineage");
        parent.pin_reader(n, true).expect("reader point");
        let tx = {
            let _held = parent.hold_uploads();
            parent
                .map_at(n)
                .expect("map")
                .expect("parent at the snapshot")
        };
        let c = Volume::create_clone(self.lfs.clone(), &vdir(id), id, opts, &tx, &lineage)
            .expect("clone");
        self.attach(&c);
        c
    }

    /// A backend restart of `id` onto a fresh disk.
    pub(super) fn restore(&self, id: VolumeId) -> Volume {
        let lfs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
        let v = self
            .rt
            .block_on(Volume::restore(
                &*ns(&self.root, id),
                lfs,
                &vdir(id),
                id,
                small_opts(),
            ))
            .expect("backend restart");
        self.attach(&v);
        v
    }

    pub(super) fn keys_under(&self, id: VolumeId) -> Vec<String> {
        self.rt
            .block_on(ns(&self.root, id).list("", None, 100_000))
            .expect("list")
            .objects
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}

#[test]
fn a_clone_reads_as_its_parent_did_and_neither_sees_the_others_writes() {
    let w = World::new();
    let p = w.create(P);
    let at_snap = fill(&p, 5 * 65_536 + 1000, 1);
    p.snapshot_create("gold", Vec::new()).expect("snapshot");
    let parent_scos = w.keys_under(P).len();
    let c = w.clone_of(&p, "gold", C1);
    assert_eq!(whole(&c), at_snap);
    assert_eq!(c.lineage().ancestors().len(), 1);
    // Nothing copied: the clone has no SCO of its own and its map names the parent's SCOs.
    assert_eq!(c.stats().scos_sealed, 0);
    // Writes on either side stay there.
    p.write(0, &[0xaa; 8192], true).expect("parent write");
    c.write(4096, &[0xbb; 4096], true).expect("clone write");
    let mut want_c = at_snap.clone();
    want_c[4096..8192].fill(0xbb);
    assert_eq!(whole(&c), want_c);
    let mut want_p = at_snap.clone();
    want_p[..8192].fill(0xaa);
    assert_eq!(whole(&p), want_p);
    // The clone uploads into its own namespace only: the parent's holds what it held, plus
    // its own later uploads.
    w.backup(&c);
    w.backup(&p);
    assert!(w.keys_under(C1).iter().any(|k| k.starts_with("mds/")));
    assert!(w.keys_under(P).len() >= parent_scos);
    // A local restart of the clone, then a backend restart of it (and of the parent).
    drop(c);
    let c = w.open(C1);
    assert_eq!(whole(&c), want_c);
    drop(c);
    let c = w.restore(C1);
    assert_eq!(whole(&c), want_c);
    assert_eq!(c.lineage().ancestors().len(), 1);
    drop(p);
    let p = w.restore(P);
    assert_eq!(whole(&p), want_p);
    // The clone's writes go on from its own TLogs after a backend restart.
    c.write(65_536, &[0xcc; 4096], true)
        .expect("write after restore");
    want_c[65_536..69_632].fill(0xcc);
    assert_eq!(whole(&c), want_c);
}

#[test]
fn clones_of_clones_read_through_every_ancestor_and_flatten_makes_them_independent() {
    let w = World::new();
    let p = w.create(P);
    let base = fill(&p, 4 * 65_536, 2);
    p.snapshot_create("s", Vec::new()).expect("snapshot");
    let c1 = w.clone_of(&p, "s", C1);
    c1.write(65_536, &[7u8; 65_536], false).expect("write");
    let mut v1 = base.clone();
    v1[65_536..131_072].fill(7);
    c1.snapshot_create("t", Vec::new()).expect("snapshot");
    let c2 = w.clone_of(&c1, "t", C2);
    assert_eq!(c2.lineage().ancestors().len(), 2);
    assert_eq!(whole(&c2), v1);
    c2.write(0, &[9u8; 4096], true).expect("write");
    let mut v2 = v1.clone();
    v2[..4096].fill(9);
    assert_eq!(whole(&c2), v2);
    // Backend restart of the grandchild: its data comes from three namespaces.
    w.backup(&c2);
    drop(c2);
    let c2 = w.restore(C2);
    assert_eq!(whole(&c2), v2);
    // Flatten: then the ancestors' namespaces can go entirely.
    // A clone's store is format 3 (a build before clones refuses it); a plain volume's 2.
    assert_eq!(c2.mds.format().expect("format"), 3);
    assert_eq!(p.mds.format().expect("format"), 2);
    let done = c2.flatten(&NoProgress).expect("flatten");
    assert_eq!(c2.mds.format().expect("format"), 2);
    assert!(done.clusters > 0);
    assert!(c2.lineage().is_empty());
    for id in [P, C1] {
        let keys = w.keys_under(id);
        w.rt.block_on(ns(&w.root, id).delete_many(&keys))
            .expect("delete");
    }
    drop((p, c1));
    assert_eq!(whole(&c2), v2);
    drop(c2);
    let c2 = w.restore(C2);
    assert!(c2.lineage().is_empty());
    assert_eq!(whole(&c2), v2);
    // A flatten of a volume that is no clone does nothing.
    assert_eq!(c2.flatten(&NoProgress).expect("again").clusters, 0);
}

#[test]
fn a_template_refuses_writes_and_is_cloned_at_its_snapshot() {
    let w = World::new();
    let t = w.create(P);
    let data = fill(&t, 3 * 65_536, 3);
    let snap = t.make_template("template").expect("template");
    assert_eq!(t.template_snapshot(), Some(snap.record.id));
    assert!(matches!(
        t.write(0, &[1u8; 4096], false),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(
        t.write(10, &[1u8; 10], false),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(t.resize(1 << 20), Err(Error::ReadOnly(_))));
    assert!(matches!(
        t.snapshot_delete("template"),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(t.make_template("again"), Err(Error::Invalid(_))));
    // A refused write does not halt the volume.
    assert_eq!(whole(&t), data);
    let c = w.clone_of(&t, "template", C1);
    c.write(0, &[2u8; 4096], true)
        .expect("a clone of a template writes");
    assert_eq!(whole(&c)[4096..], data[4096..]);
    // The mark survives a local and a backend restart.
    w.backup(&t);
    drop(t);
    let t = w.open(P);
    assert!(t.template_snapshot().is_some());
    drop(t);
    let t = w.restore(P);
    assert!(t.template_snapshot().is_some());
    assert!(matches!(
        t.write(0, &[1u8; 4096], false),
        Err(Error::ReadOnly(_))
    ));
}

/// A power cut at every step of a flatten and of making a template: after the restart the
/// volume reads the same, and is either as before (a clone; writable) or as after.
#[test]
fn a_power_cut_at_any_step_of_flatten_or_template_leaves_the_old_state_or_the_new() {
    for mode in [CrashMode::DropAll, CrashMode::Random(7)] {
        let (mut saw_old, mut saw_new) = (false, false);
        // Every step with nothing kept; every third with a random part of it kept.
        let stride = if matches!(mode, CrashMode::DropAll) {
            1
        } else {
            3
        };
        for step in (0..400).step_by(stride) {
            let w = World::new();
            let p = w.create(P);
            fill(&p, 2 * 65_536, 4);
            p.snapshot_create("s", Vec::new()).expect("snapshot");
            let c = w.clone_of(&p, "s", C1);
            c.write(4096, &[5u8; 4096], true).expect("write");
            let want = whole(&c);
            w.sim.cut_power_after(step);
            let r = c.flatten(&NoProgress).and_then(|_| c.make_template("gold"));
            let finished = !w.sim.power_is_cut();
            if finished {
                r.expect("flatten and template");
            }
            drop(c);
            w.sim.crash(mode);
            let c = w.open(C1);
            assert_eq!(whole(&c), want, "{mode:?} step {step}");
            if c.lineage().is_empty() {
                saw_new = true;
            } else {
                saw_old = true;
                assert!(c.template_snapshot().is_none(), "{mode:?} step {step}");
            }
            match c.template_snapshot() {
                Some(_) => {
                    assert!(c.snapshot_info("gold").is_ok(), "{mode:?} step {step}");
                    assert!(matches!(
                        c.write(0, &[1; 4096], false),
                        Err(Error::ReadOnly(_))
                    ));
                }
                None => {
                    assert!(c.snapshot_info("gold").is_err(), "{mode:?} step {step}");
                    c.write(0, &[1; 4096], true).expect("writable");
                }
            }
            // Whatever the state, a backup and a backend restart read the same.
            w.backup(&c);
            let r = w.restore(C1);
            assert_eq!(whole(&r)[4096..], want[4096..], "{mode:?} step {step}");
            if finished {
                break;
            }
        }
        assert!(saw_old && saw_new, "{mode:?}: both outcomes seen");
    }
}

/// A flatten whose upload writes an ordinary checkpoint at the TLog its own (due) checkpoint is
/// then written at: the second must not delete what the first wrote under the same keys (the
/// flattened clone is restored from them).
#[test]
fn a_flatten_never_deletes_the_checkpoint_it_writes() {
    let opts = VolumeOptions {
        checkpoint_tlogs: 1,
        ..small_opts()
    };
    let w = World::new();
    let p = w.create_with(P, opts);
    let data = fill(&p, 3 * 65_536, 9);
    p.snapshot_create("s", Vec::new()).expect("snapshot");
    let c = w.clone_with(&p, "s", C1, opts);
    c.flatten(&NoProgress).expect("flatten");
    let keys = w.keys_under(P);
    w.rt.block_on(ns(&w.root, P).delete_many(&keys))
        .expect("delete the parent");
    let r = w.restore(C1);
    assert!(r.lineage().is_empty());
    assert_eq!(whole(&r), data);
}

/// A clone reads its parent's SCOs from the parent's local SCO cache while they are whole
/// there (its reads then cost what the parent's do), and from the backend once evicted.
#[test]
fn a_clone_reads_its_parents_cached_scos_locally_and_evicted_ones_from_the_backend() {
    let w = World::new();
    let p = w.create(P);
    let data = fill(&p, 4 * 65_536, 5);
    p.snapshot_create("s", Vec::new()).expect("snapshot");
    let c = w.clone_of(&p, "s", C1);
    // The parent's SCO objects are away: the clone still reads, from the parent's files.
    let store = ns(&w.root, P);
    let scos: Vec<String> = w
        .keys_under(P)
        .into_iter()
        .filter(|k| k.starts_with("sco/"))
        .collect();
    assert!(!scos.is_empty());
    let saved: Vec<(String, bytes::Bytes)> = scos
        .iter()
        .map(|k| (k.clone(), w.rt.block_on(store.get(k)).expect("get").0))
        .collect();
    w.rt.block_on(store.delete_many(&scos)).expect("delete");
    assert_eq!(whole(&c), data);
    // Back on the backend, evicted from the parent's cache: read from the backend.
    for (k, b) in saved {
        w.rt.block_on(store.put(&k, b)).expect("put");
    }
    for e in p.eviction_candidates() {
        p.evict_sco(e.sco).expect("evict");
    }
    p.sync_evictions().expect("durable");
    let c2 = w.clone_of(&p, "s", C2);
    assert_eq!(whole(&c2), data);
    assert_eq!(whole(&c), data);
}
