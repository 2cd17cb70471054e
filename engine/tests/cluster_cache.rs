//! The content-addressed cluster cache through the facade: clusters that must come from the
//! backend (their SCO is not in the local SCO cache) are fetched once, with one ranged GET per
//! run of clusters, and then served from memory — also to another volume holding the same
//! content. With `Cluster_Cache_Size = 0` every such read goes to the backend.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_backend::{Call, Hook, HookedStore, MemStore, Result as StoreResult};
use strata_engine::*;

const ME: Cred = Cred { uid: 0, gid: 0 };
const MIB: usize = 1 << 20;

/// Counts ranged GETs of SCO objects.
#[derive(Debug, Default)]
struct ScoRanges(AtomicU64);

#[async_trait::async_trait]
impl Hook for ScoRanges {
    async fn before(&self, call: &Call<'_>) -> StoreResult<()> {
        if matches!(call, Call::GetRange { key, .. } if key.contains("/sco/")) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

type Counting = HookedStore<ScoRanges>;

fn counting() -> Arc<Counting> {
    Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        ScoRanges::default(),
    ))
}

/// Ranged GETs of SCOs so far.
fn sco_gets(store: &Counting) -> u64 {
    store.hook().0.load(Ordering::Relaxed)
}

fn open(dir: &Path, store: Arc<Counting>, cluster_cache: u64) -> Filesystem {
    let mut cfg = EngineConfig::new(dir);
    cfg.cluster_cache_size = cluster_cache;
    Filesystem::open_with(
        cfg,
        OpenOptions {
            store: Some(store),
            ..OpenOptions::default()
        },
    )
    .expect("open engine")
}

/// Every 4 KiB cluster different (its index in its first bytes).
fn pattern(len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7)).collect();
    for (k, c) in d.chunks_mut(4096).enumerate() {
        c[..8].copy_from_slice(&(k as u64).to_le_bytes());
    }
    d
}

/// Two volumes with the same 2 MiB, uploaded, then the local state lost: every read must come
/// from the backend (or the cluster cache).
fn two_volumes_on_the_backend_only(dir: &Path, store: &Arc<Counting>) -> (Handle, Handle) {
    let data = pattern(2 * MIB);
    let hs = {
        let fs = open(dir, store.clone(), 0);
        let mut hs = Vec::new();
        for name in ["a.raw", "b.raw"] {
            let a = fs
                .create(fs.root(), name.as_bytes(), 0o644, ME, CreateMode::Guarded)
                .expect("create")
                .attr;
            assert_eq!(a.kind, Kind::Volume);
            fs.write(a.handle, 0, &data, true).expect("write");
            hs.push(a.handle);
        }
        fs.flush_to_backend().expect("flush");
        hs
    };
    std::fs::remove_dir_all(dir.join(VOLUMES_DIR)).expect("lose the local volume state");
    (hs[0], hs[1])
}

fn read_whole(fs: &Filesystem, h: Handle) -> Vec<u8> {
    let mut buf = vec![0u8; 2 * MIB];
    let (n, _) = fs.read(h, 0, &mut buf).expect("read");
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn clusters_fetched_once_serve_every_volume_with_the_same_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = counting();
    let (a, b) = two_volumes_on_the_backend_only(dir.path(), &store);
    let fs = open(dir.path(), store.clone(), 64 << 20);
    let data = pattern(2 * MIB);

    let before = sco_gets(&store);
    assert!(read_whole(&fs, a) == data, "volume a reads back");
    let gets = sco_gets(&store) - before;
    // 512 clusters contiguous in one SCO: one GET per 1 MiB run, not one per cluster.
    assert_eq!(gets, 2, "ranged GETs for 2 MiB");
    let sa = fs.volume_stats(a).expect("stats a");
    assert_eq!((sa.cache_misses, sa.cluster_cache_hits), (512, 0), "{sa:?}");

    // The same content in another volume: served from memory, no backend read at all.
    assert!(read_whole(&fs, b) == data, "volume b reads back");
    assert_eq!(sco_gets(&store) - before, 2);
    let sb = fs.volume_stats(b).expect("stats b");
    assert_eq!((sb.cache_misses, sb.cluster_cache_hits), (0, 512), "{sb:?}");

    // Unaligned reads inside cached clusters.
    let mut part = vec![0u8; 10_000];
    let (n, _) = fs.read(b, 4096 * 3 + 17, &mut part).expect("read part");
    assert_eq!(n, part.len());
    assert!(part[..] == data[4096 * 3 + 17..4096 * 3 + 17 + 10_000]);
    let c = fs.cluster_cache_stats();
    assert_eq!(c.bytes, 2 * MIB as u64, "{c:?}");
    assert!(c.hits >= 512 + 3, "{c:?}");
}

#[test]
fn without_a_cluster_cache_every_read_of_an_evicted_cluster_goes_to_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = counting();
    let (a, b) = two_volumes_on_the_backend_only(dir.path(), &store);
    let fs = open(dir.path(), store.clone(), 0);
    let data = pattern(2 * MIB);
    let before = sco_gets(&store);
    for h in [a, b, a] {
        assert!(read_whole(&fs, h) == data);
    }
    assert_eq!(sco_gets(&store) - before, 6);
    let sb = fs.volume_stats(b).expect("stats b");
    assert_eq!((sb.cache_misses, sb.cluster_cache_hits), (512, 0), "{sb:?}");
    assert_eq!(fs.cluster_cache_stats().bytes, 0);
}
