//! Eviction never changes a sealed SCO's file in place: a crash at any of its steps loses
//! nothing, and on the local store (which keeps the SCO file itself as the backend's object)
//! the object stays whole.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use strata_backend::{LocalStore, ObjectStore};

use super::format::{sco_name, SCO_HEADER_LEN, SCO_STUB_SUFFIX};
use super::tests::{dir, fail_puts, fill, fresh, mt_rt, small_opts, whole, VOL};
use super::*;

/// The names in a volume's SCO directory.
fn sco_dir_names(lfs: &dyn LocalFs, vol_dir: &Path) -> Vec<String> {
    lfs.list(&vol_dir.join("sco"))
        .expect("list the SCO directory")
}

/// A power cut after each step of an eviction (the stub written aside, made durable, renamed
/// over the SCO), whatever part of the unsynced steps survives: the restart finds the whole
/// SCO or its stub, removes a stray stub, and every byte reads back.
#[test]
fn an_eviction_cut_short_by_a_power_cut_at_any_step_loses_nothing() {
    let rt = mt_rt();
    for mode in [
        CrashMode::DropAll,
        CrashMode::Random(1),
        CrashMode::Random(2),
    ] {
        let mut finished = false;
        for step in 0..16 {
            let store = Arc::new(fail_puts());
            let (fs, lfs, vol) = fresh(small_opts());
            vol.set_backend(store.clone(), rt.handle().clone(), 1);
            let data = fill(&vol, 4 * 65_536, 5);
            rt.block_on(vol.backup(&*store, true)).expect("backup");
            let sco = vol
                .eviction_candidates()
                .iter()
                .map(|c| c.sco)
                .min()
                .expect("a SCO on the backend");
            fs.cut_power_after(step);
            let evicted = vol
                .evict_sco(sco)
                .and_then(|n| vol.sync_evictions().map(|()| n));
            finished = !fs.power_is_cut();
            if finished {
                assert!(evicted.expect("evict") > 0, "step {step}: evicted");
            }
            drop(vol);
            fs.crash(mode);
            let vol = Volume::open(lfs.clone(), &dir(), VOL, small_opts())
                .unwrap_or_else(|e| panic!("{mode:?} step {step}: restart: {e}"));
            vol.set_backend(store.clone(), rt.handle().clone(), 1);
            assert_eq!(whole(&vol), data, "{mode:?} step {step}");
            assert!(
                vol.verify().expect("verify").is_empty(),
                "{mode:?} step {step}"
            );
            let names = sco_dir_names(&*lfs, &dir());
            assert!(
                !names.iter().any(|n| n.ends_with(SCO_STUB_SUFFIX)),
                "{mode:?} step {step}: a stray stub survived the restart: {names:?}"
            );
            // The eviction can be done (again) after the restart.
            vol.evict_sco(sco).expect("evict after the restart");
            assert_eq!(whole(&vol), data, "{mode:?} step {step}: after evicting");
            if finished {
                break;
            }
        }
        assert!(
            finished,
            "{mode:?}: the eviction never finished within the steps tried"
        );
    }
}

/// On the local store a sealed SCO is handed over, not copied: the backend's object is the
/// local file itself (one inode: its bytes written once). Eviction puts a stub in the local
/// name and leaves the object whole; every byte reads back, through the backend, before and
/// after a restart.
#[test]
fn the_local_store_takes_sealed_scos_without_copying_and_eviction_leaves_them_whole() {
    let rt = mt_rt();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol_dir = tmp.path().join("vol");
    let lfs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let store = Arc::new(LocalStore::open(tmp.path().join("backend")).expect("local store"));
    let vol = Volume::create(lfs.clone(), &vol_dir, VOL, small_opts(), 0).expect("create");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    let data = fill(&vol, 8 * 65_536, 7);
    rt.block_on(vol.backup(&*store, true)).expect("backup");

    let scos: Vec<u64> = vol.eviction_candidates().iter().map(|c| c.sco).collect();
    assert!(scos.len() >= 8, "{scos:?}");
    assert!(
        store.linked_puts() >= scos.len() as u64,
        "every sealed SCO linked, none copied: {} links for {} SCOs",
        store.linked_puts(),
        scos.len()
    );
    let sco_path = |sco: u64| vol_dir.join("sco").join(sco_name(sco));
    let mut objects = Vec::new();
    for &sco in &scos {
        let meta = std::fs::metadata(sco_path(sco)).expect("SCO file");
        assert_eq!(
            meta.nlink(),
            2,
            "SCO {sco}: the local file is the object too"
        );
        let key = super::backend::keys::sco_key(sco, 1);
        let (body, _) = rt.block_on(store.get(&key)).expect("the object");
        assert_eq!(
            body.as_ref(),
            std::fs::read(sco_path(sco))
                .expect("read the SCO")
                .as_slice(),
            "SCO {sco}"
        );
        objects.push((key, body));
    }

    for &sco in &scos {
        assert!(vol.evict_sco(sco).expect("evict") > 0, "SCO {sco} evicted");
        let meta = std::fs::metadata(sco_path(sco)).expect("stub");
        assert_eq!(meta.len(), SCO_HEADER_LEN, "SCO {sco}: a stub");
        assert_eq!(meta.nlink(), 1, "SCO {sco}: the stub is a file of its own");
    }
    for (key, body) in &objects {
        let (now, _) = rt
            .block_on(store.get(key))
            .expect("the object after eviction");
        assert_eq!(now, *body, "{key}: eviction left the object whole");
    }
    assert_eq!(whole(&vol), data, "read through the backend");
    drop(vol);

    let vol = Volume::open(lfs.clone(), &vol_dir, VOL, small_opts()).expect("reopen");
    vol.set_backend(store.clone(), rt.handle().clone(), 1);
    assert_eq!(whole(&vol), data, "after the restart");
    assert!(vol.verify().expect("verify").is_empty());
}
