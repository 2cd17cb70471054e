//! The cluster cache: 4 KiB clusters keyed by the hash of their content ([`ClusterHash`]:
//! algorithm and digest), least-recently-used eviction, bounded in bytes
//! (`Cluster_Cache_Size`), shared by every volume of the engine.
//!
//! It sits in front of the backend: a read of a cluster whose SCO is not in the local SCO
//! cache looks here first (by the hash the MetaDataStore holds), and a cluster fetched from the
//! backend (verified against that hash) is kept here. Because the key is the content, volumes
//! holding the same data (clones of one template, copies of one image) share cached clusters.
//!
//! The bytes live in one local file (`<Data_Dir>/cluster-cache`, [`CLUSTER_CACHE_FILE`]), in
//! slots of one cluster, and so in the OS page cache rather than in the gateway's memory: the
//! process keeps only the index (about 100 bytes per cluster, 2.5 % of the capacity), so a
//! 1 GiB cache costs about 26 MiB of RSS instead of 1 GiB. The file is recreated empty at every
//! start (the cache needs no persistence: everything in it is also on the backend), and every
//! cluster read from it is checked against its hash before use: a damaged slot is a miss.
//!
//! Clusters written since BLAKE3 are keyed by it, which resists deliberate collisions. Clusters
//! written before carry MD5, which does not: a guest that can craft an MD5 collision with
//! another volume's old cluster could make that volume read its data from here. Set
//! `Cluster_Cache_Size = 0` when volumes of mutually untrusting tenants share one gateway and
//! hold data written before BLAKE3.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::format::{ClusterHash, CLUSTER_SIZE, CLUSTER_SIZE_U64};
use super::localfs::{LocalFile, LocalFs};

/// The name of the cache's file, in `Data_Dir`.
pub(crate) const CLUSTER_CACHE_FILE: &str = "cluster-cache";

/// Independent LRU lists, chosen by the first key byte, so concurrent readers rarely wait for
/// each other. Each holds an equal share of the capacity (and of the file's slots): the order
/// is LRU per shard, which is close to global LRU for uniformly distributed keys such as
/// hashes.
const SHARDS: usize = 16;

/// One shard: its index (key -> slot) and the slots it owns, `first..first + share`.
struct Shard {
    index: LruCache<ClusterHash, u64>,
    first: u64,
    /// Slots handed out so far (the next free one is `first + used`, while below the share).
    used: u64,
}

/// Counters of the cluster cache since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCacheStats {
    /// The bound in bytes of cluster data (`Cluster_Cache_Size`, rounded down to whole clusters).
    pub capacity: u64,
    /// Bytes of cluster data held now.
    pub bytes: u64,
    /// Lookups that found the cluster.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Clusters added.
    pub inserts: u64,
    /// Clusters dropped to make room.
    pub evictions: u64,
}

/// The content-addressed cluster cache. Cheap to share: wrap it in an `Arc`.
pub(crate) struct ClusterCache {
    shards: Vec<Mutex<Shard>>,
    /// The slots' file (`None`: off).
    file: Option<Arc<dyn LocalFile>>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for ClusterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClusterCache {
    /// A cache holding at most `capacity` bytes of cluster data (whole clusters; less than one
    /// cluster disables it) in the file `path`, which is replaced by an empty one. A file that
    /// cannot be made turns the cache off, with a warning: reads then go to the backend.
    pub(crate) fn open(fs: &dyn LocalFs, path: &Path, capacity: u64) -> ClusterCache {
        let clusters = capacity / CLUSTER_SIZE_U64;
        let file = if clusters == 0 {
            None
        } else {
            let made = match fs.remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => path
                    .parent()
                    .map_or(Ok(()), |d| fs.create_dir_all(d))
                    .and_then(|()| fs.create_new(path)),
            };
            match made {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cluster cache off: its file cannot be made");
                    None
                }
            }
        };
        let clusters = if file.is_some() { clusters } else { 0 };
        // Fewer shards than clusters never: each shard holds at least one.
        let n = clusters.min(SHARDS as u64);
        let mut first = 0;
        let mut shards = Vec::new();
        for i in 0..n {
            // The first `clusters % n` shards take one more, so the shares add up exactly.
            let share = clusters / n + u64::from(i < clusters % n);
            let Some(cap) = usize::try_from(share).ok().and_then(NonZeroUsize::new) else {
                continue;
            };
            shards.push(Mutex::new(Shard {
                index: LruCache::new(cap),
                first,
                used: 0,
            }));
            first += share;
        }
        ClusterCache {
            capacity: first * CLUSTER_SIZE_U64,
            file,
            shards,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// False when the capacity is below one cluster: lookups always miss, inserts do nothing.
    #[cfg(test)]
    pub(crate) fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, key: &ClusterHash) -> Option<(&Mutex<Shard>, &Arc<dyn LocalFile>)> {
        let file = self.file.as_ref()?;
        let shard = self
            .shards
            .get(usize::from(key.digest()[0]) % self.shards.len().max(1))?;
        Some((shard, file))
    }

    /// Copies `out.len()` bytes starting at `within` of the cluster with content hash `key`
    /// into `out` and marks it recently used. False (and `out` untouched) on a miss, when the
    /// range does not fit in a cluster, or when the slot no longer holds what hashes to `key`
    /// (a damaged cache file: the entry is dropped).
    pub(crate) fn get(&self, key: &ClusterHash, within: usize, out: &mut [u8]) -> bool {
        let Some((shard, file)) = self.shard(key) else {
            return false;
        };
        let end = within.saturating_add(out.len());
        if end > CLUSTER_SIZE {
            return false;
        }
        let hit = {
            // The slot is read under the shard's lock: an insert cannot reuse it meanwhile.
            let mut s = shard.lock();
            match s.index.get(key).copied() {
                Some(slot) => {
                    let mut c = [0u8; CLUSTER_SIZE];
                    let ok = matches!(file.read_at(&mut c, slot * CLUSTER_SIZE_U64), Ok(n) if n == CLUSTER_SIZE)
                        && key.matches(&c);
                    if ok {
                        out.copy_from_slice(&c[within..end]);
                    } else {
                        tracing::warn!(
                            slot,
                            "cluster cache: a slot does not match its hash; dropped"
                        );
                        s.index.pop(key);
                        // The slot is lost to this run (not reused): a damaged cache shrinks.
                    }
                    ok
                }
                None => false,
            }
        };
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Keeps `data` (one whole cluster the caller verified against `key`), dropping the
    /// least recently used cluster of its shard when full. Data of another length is ignored;
    /// so is a cluster the file cannot take (a full disk): the cache is only an optimisation.
    pub(crate) fn insert(&self, key: ClusterHash, data: &[u8]) {
        let Some((shard, file)) = self.shard(&key) else {
            return;
        };
        if data.len() != CLUSTER_SIZE {
            return;
        }
        let mut s = shard.lock();
        if s.index.get(&key).is_some() {
            // Same key, same content: only its recency changes.
            return;
        }
        let share = s.index.cap().get() as u64;
        let slot = if s.used < share {
            s.used += 1;
            s.first + s.used - 1
        } else {
            match s.index.pop_lru() {
                Some((_, slot)) => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    slot
                }
                // Every slot given out and none indexed: slots dropped as damaged.
                None => return,
            }
        };
        if let Err(e) = file.write_at(data, slot * CLUSTER_SIZE_U64) {
            tracing::warn!(error = %e, "cluster cache: a cluster could not be written; not kept");
            return;
        }
        s.index.push(key, slot);
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters and current size.
    pub(crate) fn stats(&self) -> ClusterCacheStats {
        let entries: u64 = self
            .shards
            .iter()
            .map(|s| s.lock().index.len() as u64)
            .sum();
        ClusterCacheStats {
            capacity: self.capacity,
            bytes: entries * CLUSTER_SIZE_U64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::volume::SimFs;

    fn cache(capacity: u64) -> ClusterCache {
        ClusterCache::open(&SimFs::new(), Path::new("/c/cluster-cache"), capacity)
    }

    fn cluster(tag: u32) -> Vec<u8> {
        let mut c: Vec<u8> = (0..CLUSTER_SIZE as u32)
            .map(|i| (i.wrapping_mul(31) ^ tag) as u8)
            .collect();
        c[..4].copy_from_slice(&tag.to_le_bytes());
        c
    }

    #[test]
    fn a_cluster_is_found_by_its_content_hash() {
        let c = cache(1 << 20);
        let a = cluster(1);
        let ka = ClusterHash::of(&a);
        let mut out = vec![0u8; 100];
        assert!(!c.get(&ka, 0, &mut out));
        c.insert(ka, &a);
        assert!(c.get(&ka, 10, &mut out));
        assert_eq!(out, a[10..110]);
        let mut whole = vec![0u8; CLUSTER_SIZE];
        assert!(c.get(&ka, 0, &mut whole));
        assert_eq!(whole, a);
        // A range that leaves the cluster is a miss, not a panic.
        assert!(!c.get(&ka, CLUSTER_SIZE - 1, &mut out));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (2, 1, 1), "{s:?}");
        assert_eq!(s.bytes, CLUSTER_SIZE_U64);
        assert_eq!(s.capacity, 1 << 20);
    }

    #[test]
    fn the_bound_in_bytes_holds_and_the_least_recently_used_goes_first() {
        // 64 clusters: 16 shards of 4.
        let c = cache(64 * CLUSTER_SIZE_U64 + 100);
        assert_eq!(c.stats().capacity, 64 * CLUSTER_SIZE_U64);
        let data: Vec<Vec<u8>> = (0..1000).map(cluster).collect();
        let keys: Vec<ClusterHash> = data.iter().map(|d| ClusterHash::of(d)).collect();
        let mut out = vec![0u8; 1];
        for (i, (k, d)) in keys.iter().zip(&data).enumerate() {
            c.insert(*k, d);
            // Keep the first cluster in use: it must survive everything inserted after it.
            assert!(c.get(&keys[0], 0, &mut out), "cluster 0 evicted at {i}");
            assert!(c.stats().bytes <= 64 * CLUSTER_SIZE_U64);
        }
        let s = c.stats();
        assert_eq!(s.bytes, 64 * CLUSTER_SIZE_U64, "full: {s:?}");
        assert_eq!(s.inserts, 1000);
        assert_eq!(s.evictions, 1000 - 64);
        // The most recent insert of each shard is still there; the oldest ones are gone.
        assert!(c.get(&keys[999], 0, &mut out));
        let gone = keys[1..100]
            .iter()
            .filter(|k| !c.get(k, 0, &mut out))
            .count();
        assert!(gone >= 90, "only {gone} of the 99 oldest were evicted");
    }

    #[test]
    fn a_cache_smaller_than_a_cluster_is_off() {
        for cap in [0, CLUSTER_SIZE_U64 - 1] {
            let c = cache(cap);
            assert!(!c.is_enabled());
            let a = cluster(7);
            c.insert(ClusterHash::of(&a), &a);
            let mut out = vec![0u8; 8];
            assert!(!c.get(&ClusterHash::of(&a), 0, &mut out));
            assert_eq!(c.stats().bytes, 0);
        }
        // A few clusters: fewer shards, the exact bound.
        let c = cache(3 * CLUSTER_SIZE_U64);
        for t in 0..50 {
            let d = cluster(t);
            c.insert(ClusterHash::of(&d), &d);
        }
        assert_eq!(c.stats().bytes, 3 * CLUSTER_SIZE_U64);
    }

    #[test]
    fn inserting_the_same_content_twice_keeps_one_copy() {
        let c = cache(1 << 20);
        let a = cluster(3);
        c.insert(ClusterHash::of(&a), &a);
        c.insert(ClusterHash::of(&a), &a);
        let s = c.stats();
        assert_eq!((s.inserts, s.bytes), (1, CLUSTER_SIZE_U64));
        // Data of the wrong length is refused.
        c.insert(ClusterHash::of(b"x"), &a[..100]);
        assert_eq!(c.stats().inserts, 1);
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use crate::volume::SimFs;

    /// The bytes are in the file, not in memory, and a damaged slot is never served.
    #[test]
    fn clusters_live_in_the_file_and_a_damaged_slot_is_a_miss() {
        let fs = SimFs::new();
        let path = Path::new("/c/cluster-cache");
        fs.create_dir_all(Path::new("/c")).expect("dir");
        // A file left by an earlier run is replaced by an empty one.
        fs.create_new(path)
            .expect("old")
            .write_at(&[9u8; 8192], 0)
            .expect("old bytes");
        let c = ClusterCache::open(&fs, path, 16 * CLUSTER_SIZE_U64);
        assert_eq!(fs.open(path).expect("file").file_len().expect("len"), 0);
        let a = vec![0x61u8; CLUSTER_SIZE];
        let b = vec![0x62u8; CLUSTER_SIZE];
        c.insert(ClusterHash::of(&a), &a);
        c.insert(ClusterHash::of(&b), &b);
        let f = fs.open(path).expect("file");
        // Each of the 16 shards owns one slot: the two clusters are in their shards' slots.
        let mut on_disk = vec![0u8; 16 * CLUSTER_SIZE];
        assert!(f.read_at(&mut on_disk, 0).expect("read") >= 2 * CLUSTER_SIZE);
        assert!(on_disk.chunks(CLUSTER_SIZE).any(|s| s == a.as_slice()));
        assert!(on_disk.chunks(CLUSTER_SIZE).any(|s| s == b.as_slice()));
        // Damage the slot holding `a`: it is dropped, not served; `b` still is.
        let at = on_disk
            .chunks(CLUSTER_SIZE)
            .position(|s| s == a.as_slice())
            .expect("slot");
        f.write_at(&[0u8; 16], (at * CLUSTER_SIZE) as u64 + 100)
            .expect("damage");
        let mut out = vec![0u8; CLUSTER_SIZE];
        assert!(!c.get(&ClusterHash::of(&a), 0, &mut out));
        assert!(!c.get(&ClusterHash::of(&a), 0, &mut out), "dropped");
        assert!(c.get(&ClusterHash::of(&b), 0, &mut out));
        assert_eq!(out, b);
        assert_eq!(c.stats().bytes, CLUSTER_SIZE_U64);
    }

    /// A file that cannot be made turns the cache off (reads go to the backend).
    #[test]
    fn a_cache_without_its_file_is_off() {
        let t = tempfile::tempdir().expect("tempdir");
        let not_a_dir = t.path().join("file");
        std::fs::write(&not_a_dir, b"x").expect("a file");
        // Its directory is a file: nothing can be made there.
        let c = ClusterCache::open(
            &crate::volume::StdFs,
            &not_a_dir.join("cluster-cache"),
            1 << 20,
        );
        assert!(!c.is_enabled());
        let a = vec![1u8; CLUSTER_SIZE];
        c.insert(ClusterHash::of(&a), &a);
        assert!(!c.get(&ClusterHash::of(&a), 0, &mut [0u8; 1]));
    }
}
