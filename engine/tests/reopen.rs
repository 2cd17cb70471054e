//! After a restart, volumes with local state are reopened by the engine itself: what the last
//! run could not upload goes to the backend, and their cached SCOs count towards (and are
//! evicted within) `SCO_Cache_Size`, although no client touches them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_backend::{FaultyStore, MemStore, ObjectStore};
use strata_engine::*;

const ME: Cred = Cred { uid: 0, gid: 0 };
const SCO: u64 = 64 * 1024;

fn config(dir: &Path, tlog_scos: u32) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.sco_size = SCO;
    cfg.tlog_scos = tlog_scos;
    cfg.sco_max_age = Duration::from_secs(1);
    cfg
}

fn open(cfg: EngineConfig, store: Arc<dyn ObjectStore>) -> Filesystem {
    Filesystem::open_with(
        cfg,
        OpenOptions {
            store: Some(store),
            ..OpenOptions::default()
        },
    )
    .expect("open engine")
}

/// Bytes of the files in `dir` (not recursive); 0 if it does not exist.
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

#[test]
fn an_untouched_volume_uploads_and_evicts_after_a_restart() {
    untouched_volume_after_restart(1);
}

/// With 16 SCOs per TLog, the restart seals the last SCO into a TLog that stays open: it must
/// still be closed and uploaded once `SCO_Max_Age` has passed, although nothing is written.
#[test]
fn an_untouched_volume_uploads_its_open_tlog_after_sco_max_age() {
    untouched_volume_after_restart(16);
}

fn untouched_volume_after_restart(tlog_scos: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let data = pattern(40 * SCO as usize, 3);
    // Run 1: the backend goes down after the create, so everything written stays local.
    let (ino, h) = {
        let faulty = Arc::new(FaultyStore::new(inner.clone()));
        let fs = open(config(dir.path(), tlog_scos), faulty.clone());
        let a = fs
            .create(fs.root(), b"idle-flat.vmdk", 0o644, ME, CreateMode::Guarded)
            .expect("create")
            .attr;
        assert_eq!(a.kind, Kind::Volume);
        faulty.set_failing(true);
        fs.write(a.handle, 0, &data, true).expect("write");
        (a.handle.ino, a.handle)
    };
    let key = format!("{VOLUMES_PREFIX}{ino:016x}/manifest.xml");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(
        rt.block_on(inner.head(&key)).is_err(),
        "nothing reached the backend in run 1"
    );
    let sco_dir = dir
        .path()
        .join(VOLUMES_DIR)
        .join(format!("{ino:016x}"))
        .join("sco");
    let local_before = bytes_in(&sco_dir);
    assert!(local_before >= data.len() as u64, "{local_before}");

    // Run 2: the backend is back; a cache of 8 SCOs. Nobody opens the volume.
    let mut cfg = config(dir.path(), tlog_scos);
    cfg.sco_cache_size = 8 * (SCO + 8192);
    let fs = open(cfg.clone(), inner.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let uploaded = rt.block_on(inner.head(&key)).is_ok();
        let local = bytes_in(&sco_dir);
        if uploaded && local <= cfg.sco_cache_size * 7 / 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s: manifest uploaded {uploaded}, local SCO bytes {local} (of {local_before})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Everything reads back: the evicted part from the backend.
    let mut buf = vec![0u8; data.len()];
    let (n, _) = fs.read(h, 0, &mut buf).expect("read");
    assert_eq!(n, data.len());
    assert!(buf == data, "the volume reads back after eviction");
    let s = fs.volume_stats(h).expect("stats");
    assert!(
        s.cache_misses > 0,
        "part of it came from the backend: {s:?}"
    );
    assert_eq!(s.pending_backend_bytes, 0, "{s:?}");
}

/// A VM disk can be created and written while the backend is down; it reaches the backend
/// once the backend is back.
#[test]
fn a_volume_is_created_and_written_while_the_backend_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let faulty = Arc::new(FaultyStore::new(inner.clone()));
    let fs = open(config(dir.path(), 16), faulty.clone());
    faulty.set_failing(true);
    let a = fs
        .create(fs.root(), b"down-flat.vmdk", 0o644, ME, CreateMode::Guarded)
        .expect("create while the backend is down")
        .attr;
    assert_eq!(a.kind, Kind::Volume);
    let data = pattern(3 * SCO as usize + 100, 9);
    fs.write(a.handle, 0, &data, true)
        .expect("stable write while the backend is down");
    assert!(fs.flush_to_backend().is_err(), "the backend is down");
    faulty.set_failing(false);
    fs.flush_to_backend()
        .expect("flush once the backend is back");
    let s = fs.volume_stats(a.handle).expect("stats");
    assert_eq!(s.pending_backend_bytes, 0, "{s:?}");
    let mut buf = vec![0u8; data.len()];
    assert_eq!(fs.read(a.handle, 0, &mut buf).expect("read").0, data.len());
    assert!(buf == data);
}

/// A backend restart cut short (here: its marker and one TLog written, as a crash would leave
/// them) is thrown away and done again by the next open, instead of leaving the volume
/// unopenable.
#[test]
fn an_interrupted_backend_restart_is_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let data = pattern(5 * SCO as usize + 300, 4);
    let h = {
        let fs = open(config(dir.path(), 2), inner.clone());
        let a = fs
            .create(
                fs.root(),
                b"again-flat.vmdk",
                0o644,
                ME,
                CreateMode::Guarded,
            )
            .expect("create")
            .attr;
        fs.write(a.handle, 0, &data, true).expect("write");
        fs.flush_to_backend().expect("flush");
        a.handle
    };
    let vdir = dir.path().join(VOLUMES_DIR).join(format!("{:016x}", h.ino));
    std::fs::remove_dir_all(&vdir).expect("lose the local state");
    // What a restore interrupted after its first TLog leaves: the marker and the newest TLog.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let prefix = format!("{VOLUMES_PREFIX}{:016x}/tlog/", h.ino);
    let page = rt
        .block_on(inner.list(&prefix, None, 1000))
        .expect("list TLogs");
    let newest = page
        .objects
        .last()
        .expect("TLogs on the backend")
        .key
        .clone();
    let (t, _) = rt.block_on(inner.get(&newest)).expect("get TLog");
    std::fs::create_dir_all(vdir.join("tlog")).expect("mkdir");
    std::fs::create_dir_all(vdir.join("sco")).expect("mkdir");
    let name = newest.rsplit('/').next().expect("name");
    std::fs::write(vdir.join("tlog").join(name), &t).expect("write TLog");
    std::fs::write(vdir.join(strata_engine::volume::RESTORE_MARKER), b"").expect("marker");

    let fs = open(config(dir.path(), 2), inner.clone());
    let mut buf = vec![0u8; data.len()];
    let (n, _) = fs
        .read(h, 0, &mut buf)
        .expect("read after the restore was redone");
    assert_eq!(n, data.len());
    assert!(buf == data);
    assert!(
        !vdir.join(strata_engine::volume::RESTORE_MARKER).exists(),
        "the marker is gone once the restore completed"
    );
}

/// The deletion of a volume's backend objects survives a machine crash right after the REMOVE
/// was answered (its marker is durable before the answer): the next start finishes it. The
/// volumes' files are on a layer that loses every byte not synced.
#[test]
fn a_volume_deletion_survives_a_machine_crash() {
    use strata_engine::volume::{CrashMode, LocalFs, SimFs};
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let sim = SimFs::new();
    let open_sim = |store: Arc<dyn ObjectStore>| {
        let vfs: Arc<dyn LocalFs> = Arc::new(sim.clone());
        Filesystem::open_with(
            config(dir.path(), 16),
            OpenOptions {
                store: Some(store),
                volume_fs: Some(vfs),
                ..OpenOptions::default()
            },
        )
        .expect("open engine")
    };
    let faulty = Arc::new(FaultyStore::new(inner.clone()));
    let fs = open_sim(faulty.clone());
    let a = fs
        .create(
            fs.root(),
            b"crash-flat.vmdk",
            0o644,
            ME,
            CreateMode::Guarded,
        )
        .expect("create")
        .attr;
    fs.write(a.handle, 0, &pattern(5 * SCO as usize, 6), true)
        .expect("write");
    fs.flush_to_backend().expect("flush");
    let prefix = format!("{VOLUMES_PREFIX}{:016x}/", a.handle.ino);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let objects = |rt: &tokio::runtime::Runtime| {
        rt.block_on(inner.list(&prefix, None, 1000))
            .expect("list")
            .objects
            .len()
    };
    assert!(objects(&rt) > 0);
    // The backend refuses the deletes; the machine dies right after the REMOVE.
    faulty.set_failing(true);
    fs.unlink(fs.root(), b"crash-flat.vmdk").expect("unlink");
    fs.crash();
    sim.crash(CrashMode::DropAll);
    let fs = open_sim(inner.clone());
    fs.flush_to_backend().expect("sync");
    assert_eq!(objects(&rt), 0, "the deletion was resumed after the crash");
}
