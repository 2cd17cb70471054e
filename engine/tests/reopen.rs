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

fn config(dir: &Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.sco_size = SCO;
    cfg.tlog_scos = 1;
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
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let data = pattern(40 * SCO as usize, 3);
    // Run 1: the backend goes down after the create, so everything written stays local.
    let (ino, h) = {
        let faulty = Arc::new(FaultyStore::new(inner.clone()));
        let fs = open(config(dir.path()), faulty.clone());
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
    let sco_dir = dir.path().join(VOLUMES_DIR).join(format!("{ino:016x}")).join("sco");
    let local_before = bytes_in(&sco_dir);
    assert!(local_before >= data.len() as u64, "{local_before}");

    // Run 2: the backend is back; a cache of 8 SCOs. Nobody opens the volume.
    let mut cfg = config(dir.path());
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
    assert!(s.cache_misses > 0, "part of it came from the backend: {s:?}");
    assert_eq!(s.pending_backend_bytes, 0, "{s:?}");
}
