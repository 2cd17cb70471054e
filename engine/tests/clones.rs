//! Clones, templates and flatten through the facade (issue 16): a clone reads as its parent
//! did at the snapshot, neither sees the other's writes, clones of clones, restarts, a parent
//! removed while clones read it (hidden, then garbage with its last clone), flatten, and a
//! power cut at every step of a clone's creation (no clone, or the whole one).

mod support;

use std::path::Path;
use std::sync::Arc;

use strata_backend::{FaultyStore, MemStore, ObjectStore};
use strata_engine::volume::SimFs;
use strata_engine::*;
use support::crash_disk::CrashDisk;

fn open(dir: &Path) -> Filesystem {
    Filesystem::open(EngineConfig::new(dir)).expect("open engine")
}

use support::{pattern, read_all};

fn lookup(fs: &Filesystem, name: &str) -> Result<Attr> {
    fs.lookup(fs.root(), name.as_bytes())
}

fn create_volume(fs: &Filesystem, name: &str, data: &[u8]) -> Handle {
    let h = support::create_in_root(fs, name)
        .expect("create")
        .attr
        .handle;
    fs.write(h, 0, data, false).expect("write");
    fs.commit(h).expect("commit");
    h
}

fn backend_has(dir: &Path, ino: Ino) -> bool {
    let d = dir
        .join("backend")
        .join(VOLUMES_PREFIX)
        .join(format!("{ino:016x}"));
    std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some())
}

#[test]
fn clones_read_their_snapshot_and_a_removed_parent_stays_hidden_until_its_last_clone_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = open(dir.path());
    let gold = pattern(700_000, 1);
    let p = create_volume(&fs, "gold-flat.vmdk", &gold);
    // Without --snapshot: a snapshot is taken for the purpose.
    let (c1, snap) = fs
        .volume_clone(p, None, fs.root(), b"vm1-flat.vmdk")
        .expect("clone");
    assert!(snap.name.starts_with("clone-"), "{}", snap.name);
    assert_eq!(c1.kind, Kind::Volume);
    assert_eq!(read_all(&fs, c1.handle), gold);
    assert!(matches!(
        fs.volume_clone(p, None, fs.root(), b"vm1-flat.vmdk"),
        Err(Error::Exists)
    ));
    assert!(matches!(
        fs.volume_clone(p, None, fs.root(), b"not-a-volume.txt"),
        Err(Error::Invalid(_))
    ));
    // Writes on either side stay there.
    fs.write(p, 0, &[0xaa; 5000], false).expect("parent write");
    fs.commit(p).expect("commit");
    fs.write(c1.handle, 100_000, &[0xbb; 9000], false)
        .expect("clone write");
    fs.commit(c1.handle).expect("commit");
    let mut want1 = gold.clone();
    want1[100_000..109_000].fill(0xbb);
    assert_eq!(read_all(&fs, c1.handle), want1);
    let mut wantp = gold.clone();
    wantp[..5000].fill(0xaa);
    assert_eq!(read_all(&fs, p), wantp);
    // A clone of the clone, at a named snapshot.
    fs.snapshot_create(c1.handle, "base", Vec::new())
        .expect("snapshot");
    fs.write(c1.handle, 0, &[0xcc; 4096], true).expect("write");
    want1[..4096].fill(0xcc);
    let (c2, _) = fs
        .volume_clone(c1.handle, Some("base"), fs.root(), b"vm2-flat.vmdk")
        .expect("clone of a clone");
    let mut want2 = gold.clone();
    want2[100_000..109_000].fill(0xbb);
    assert_eq!(read_all(&fs, c2.handle), want2);
    let info = fs.volume_clone_info(c2.handle).expect("info");
    assert_eq!(
        info.ancestors.iter().map(|a| a.0).collect::<Vec<_>>(),
        [p.ino, c1.handle.ino]
    );
    fs.flush_to_backend().expect("flush");
    // After a restart, the same.
    drop(fs);
    let fs = open(dir.path());
    assert_eq!(read_all(&fs, p), wantp);
    assert_eq!(read_all(&fs, c1.handle), want1);
    assert_eq!(read_all(&fs, c2.handle), want2);
    // The parent's name goes at once; its data stays, hidden, while clones read it.
    fs.unlink(fs.root(), b"gold-flat.vmdk")
        .expect("remove parent");
    assert!(matches!(
        lookup(&fs, "gold-flat.vmdk"),
        Err(Error::NotFound)
    ));
    let hidden = fs.hidden_volumes().expect("hidden");
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].ino, p.ino);
    assert_eq!(hidden[0].readers, [c1.handle.ino, c2.handle.ino]);
    assert!(backend_has(dir.path(), p.ino));
    assert_eq!(read_all(&fs, c1.handle), want1);
    // Flatten the grandchild: it reads nothing of the others any more.
    let copied = fs.volume_flatten(c2.handle).expect("flatten");
    assert!(copied > 0);
    assert!(fs
        .volume_clone_info(c2.handle)
        .expect("info")
        .ancestors
        .is_empty());
    assert_eq!(read_all(&fs, c2.handle), want2);
    assert_eq!(
        fs.hidden_volumes().expect("hidden")[0].readers,
        [c1.handle.ino]
    );
    // The last clone reading the parent goes: the parent's data is garbage and goes too.
    fs.unlink(fs.root(), b"vm1-flat.vmdk")
        .expect("remove clone");
    fs.flush_to_backend().expect("flush waits for deletions");
    assert!(fs.hidden_volumes().expect("hidden").is_empty());
    assert!(!backend_has(dir.path(), p.ino));
    assert!(!backend_has(dir.path(), c1.handle.ino));
    assert_eq!(read_all(&fs, c2.handle), want2);
    // The flattened volume comes back from its own namespace alone.
    drop(fs);
    std::fs::remove_dir_all(dir.path().join(VOLUMES_DIR)).expect("lose the local cache");
    let fs = open(dir.path());
    assert_eq!(read_all(&fs, c2.handle), want2);
}

#[test]
fn a_template_is_read_only_and_cloned_without_naming_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = open(dir.path());
    let gold = pattern(300_000, 7);
    let t = create_volume(&fs, "tpl-flat.vmdk", &gold);
    let s = fs.volume_template(t).expect("template");
    assert_eq!(s.name, "template");
    assert!(matches!(
        fs.write(t, 0, &[1u8; 4096], true),
        Err(Error::ReadOnly(_))
    ));
    let grow = SetAttr {
        size: Some(1 << 20),
        ..SetAttr::default()
    };
    assert!(matches!(fs.setattr(t, &grow), Err(Error::ReadOnly(_))));
    assert!(matches!(
        fs.snapshot_rollback(t, "template", true),
        Err(Error::ReadOnly(_))
    ));
    for i in 0..3 {
        let name = format!("vm{i}-flat.vmdk");
        let (c, snap) = fs
            .volume_clone(t, None, fs.root(), name.as_bytes())
            .expect("clone of a template");
        assert_eq!(snap.name, "template");
        assert_eq!(read_all(&fs, c.handle), gold);
        if i == 0 {
            // A clone of a clone that wrote nothing yet: it reads the template only.
            let (cc, _) = fs
                .volume_clone(c.handle, None, fs.root(), b"vm0-copy-flat.vmdk")
                .expect("clone of a fresh clone");
            assert_eq!(read_all(&fs, cc.handle), gold);
            let info = fs.volume_clone_info(cc.handle).expect("info");
            assert_eq!(
                info.ancestors.iter().map(|a| a.0).collect::<Vec<_>>(),
                [t.ino]
            );
        }
        fs.write(c.handle, 0, &[i as u8; 4096], true)
            .expect("a clone writes");
    }
    assert_eq!(
        fs.volume_clone_info(t).expect("info").template.as_deref(),
        Some("template")
    );
    drop(fs);
    let fs = open(dir.path());
    assert!(matches!(
        fs.write(t, 0, &[1u8; 4096], true),
        Err(Error::ReadOnly(_))
    ));
    assert_eq!(read_all(&fs, t), gold);
}

struct World {
    sim: SimFs,
    disk: CrashDisk,
    mem: Arc<MemStore>,
    config: EngineConfig,
    _dir: tempfile::TempDir,
}

fn open_sim(w: &World) -> Filesystem {
    let store = Arc::new(FaultyStore::new(w.mem.clone()));
    let opts = OpenOptions {
        store: Some(store as Arc<dyn ObjectStore>),
        metadata_backend: Some(Box::new(w.disk.clone())),
        volume_fs: Some(Arc::new(w.sim.clone())),
    };
    Filesystem::open_with(w.config.clone(), opts).expect("engine start")
}

/// The power is cut at every local-disk operation (of the volumes' disk, and at every sync of
/// the namespace's) of a clone's creation: after the restart the clone's name is absent, or
/// it reads the parent's snapshot whole; no half-made clone, and nothing of an abandoned one
/// is left behind.
#[test]
fn a_power_cut_at_any_step_of_a_clone_leaves_no_clone_or_the_whole_one() {
    let gold = pattern(200_000, 3);
    let (mut absent, mut whole) = (0, 0);
    let (mut done_on_volumes, mut done_on_namespace) = (false, false);
    for (on_volumes, step) in (0..400u64)
        .map(|s| (true, s))
        .chain((0..40u64).map(|s| (false, s)))
    {
        if on_volumes && done_on_volumes {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EngineConfig::new(dir.path());
        config.sco_max_age = std::time::Duration::from_secs(600);
        let sim = SimFs::new();
        let disk = CrashDisk::default();
        disk.revive_as_is(None, &sim);
        let w = World {
            sim,
            disk,
            mem: Arc::new(MemStore::new()),
            config,
            _dir: dir,
        };
        let fs = open_sim(&w);
        let p = create_volume(&fs, "gold-flat.vmdk", &gold);
        fs.snapshot_create(p, "s", Vec::new()).expect("snapshot");
        fs.flush_to_backend().expect("flush");
        if on_volumes {
            w.sim.cut_power_after(step);
        } else {
            w.disk.arm(step + 1);
        }
        let r = fs.volume_clone(p, Some("s"), fs.root(), b"vm-flat.vmdk");
        let finished = !w.sim.power_is_cut() && !w.disk.is_dead();
        if finished {
            r.expect("clone");
        }
        fs.crash();
        w.disk.crash();
        w.disk.revive(None, &w.sim);
        let fs = open_sim(&w);
        let ctx = format!(
            "cut on {} at {step}",
            if on_volumes { "volumes" } else { "namespace" }
        );
        match lookup(&fs, "vm-flat.vmdk") {
            Ok(a) => {
                assert_eq!(read_all(&fs, a.handle), gold, "{ctx}");
                whole += 1;
            }
            Err(Error::NotFound) => {
                absent += 1;
                assert!(!finished, "{ctx}: a clone that returned is gone");
            }
            Err(e) => panic!("{ctx}: {e}"),
        }
        assert_eq!(read_all(&fs, p), gold, "{ctx}");
        // Nothing of an abandoned clone is left: no marker, no directory, no rebuilt parent.
        let vols = w.config.data_dir.join(VOLUMES_DIR);
        let lfs: &dyn strata_engine::volume::LocalFs = &w.sim;
        let names = lfs.list(&vols).unwrap_or_default();
        assert!(
            !names.iter().any(|n| n.ends_with(".cloning")),
            "{ctx}: {names:?}"
        );
        let dirs = lfs.list_dirs(&vols).unwrap_or_default();
        let want = if lookup(&fs, "vm-flat.vmdk").is_ok() {
            2
        } else {
            1
        };
        assert_eq!(dirs.len(), want, "{ctx}: {dirs:?}");
        if finished {
            // Every step of this side was cut: on to the namespace's, or done.
            if on_volumes {
                done_on_volumes = true;
                continue;
            }
            done_on_namespace = true;
            break;
        }
    }
    assert!(
        done_on_volumes && done_on_namespace,
        "the clone needs more steps than the loop tries"
    );
    assert!(absent > 0 && whole > 0, "{absent} absent, {whole} whole");
}

/// A parent removed while an NFSv4 client holds it open is purged at the next start: it must
/// be hidden then too (its clones read its data), not deleted.
#[test]
fn a_parent_removed_while_open_stays_hidden_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = open(dir.path());
    let gold = pattern(300_000, 4);
    let p = create_volume(&fs, "gold-flat.vmdk", &gold);
    let (c, _) = fs
        .volume_clone(p, None, fs.root(), b"vm-flat.vmdk")
        .expect("clone");
    fs.flush_to_backend().expect("flush");
    fs.open_file(p).expect("an NFSv4 OPEN");
    fs.unlink(fs.root(), b"gold-flat.vmdk")
        .expect("remove while open");
    drop(fs);
    let fs = open(dir.path());
    fs.flush_to_backend().expect("flush waits for deletions");
    assert!(backend_has(dir.path(), p.ino), "the parent's data is kept");
    assert_eq!(fs.hidden_volumes().expect("hidden").len(), 1);
    drop(fs);
    std::fs::remove_dir_all(dir.path().join(VOLUMES_DIR)).expect("lose the local cache");
    let fs = open(dir.path());
    assert_eq!(read_all(&fs, c.handle), gold);
}
