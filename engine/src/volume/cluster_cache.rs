//! The cluster cache: 4 KiB clusters keyed by the hash of their content ([`ClusterHash`]:
//! algorithm and digest), least-recently-used eviction, bounded in bytes
//! (`Cluster_Cache_Size`), shared by every volume of the engine.
//!
//! It sits in front of the backend: a read of a cluster whose SCO is not in the local SCO
//! cache looks here first (by the hash the MetaDataStore holds), and a cluster fetched from the
//! backend (verified against that hash) is kept here. Because the key is the content, volumes
//! holding the same data (clones of one template, copies of one image) share cached clusters.
//!
//! Invariant: every entry's data has the hash of its key — callers insert only data they have
//! verified. The cache never holds anything that is not also on the backend, so it needs no
//! persistence and is empty after a restart.
//!
//! Clusters written since BLAKE3 are keyed by it, which resists deliberate collisions. Clusters
//! written before carry MD5, which does not: a guest that can craft an MD5 collision with
//! another volume's old cluster could make that volume read its data from here. Set
//! `Cluster_Cache_Size = 0` when volumes of mutually untrusting tenants share one gateway and
//! hold data written before BLAKE3.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

use super::format::{ClusterHash, CLUSTER_SIZE, CLUSTER_SIZE_U64};

/// Independent LRU lists, chosen by the first key byte, so concurrent readers rarely wait for
/// each other. Each holds an equal share of the capacity: the order is LRU per shard, which is
/// close to global LRU for uniformly distributed keys such as hashes.
const SHARDS: usize = 16;

type Shard = Mutex<LruCache<ClusterHash, Box<[u8]>>>;

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
    shards: Vec<Shard>,
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
    /// cluster disables it). Entries also cost about 100 bytes of bookkeeping each (~2.5 %).
    pub(crate) fn new(capacity: u64) -> ClusterCache {
        let clusters = usize::try_from(capacity / CLUSTER_SIZE_U64).unwrap_or(usize::MAX);
        // Fewer shards than clusters never: each shard holds at least one.
        let n = clusters.min(SHARDS);
        let shards = (0..n)
            .filter_map(|i| {
                // The first `clusters % n` shards take one more, so the shares add up exactly.
                let share = clusters / n + usize::from(i < clusters % n);
                NonZeroUsize::new(share).map(|c| Mutex::new(LruCache::new(c)))
            })
            .collect::<Vec<_>>();
        ClusterCache {
            capacity: clusters as u64 * CLUSTER_SIZE_U64,
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

    fn shard(&self, key: &ClusterHash) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        self.shards
            .get(usize::from(key.digest()[0]) % self.shards.len())
    }

    /// Copies `out.len()` bytes starting at `within` of the cluster with content hash `key`
    /// into `out` and marks it recently used. False (and `out` untouched) on a miss or when the
    /// range does not fit in a cluster.
    pub(crate) fn get(&self, key: &ClusterHash, within: usize, out: &mut [u8]) -> bool {
        let Some(shard) = self.shard(key) else {
            return false;
        };
        let end = within.saturating_add(out.len());
        if end > CLUSTER_SIZE {
            return false;
        }
        let hit = match shard.lock().get(key) {
            Some(data) => {
                out.copy_from_slice(&data[within..end]);
                true
            }
            None => false,
        };
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Keeps `data` (one whole cluster the caller verified against `key`), dropping the
    /// least recently used cluster of its shard when full. Data of another length is ignored.
    pub(crate) fn insert(&self, key: ClusterHash, data: &[u8]) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        if data.len() != CLUSTER_SIZE {
            return;
        }
        let mut s = shard.lock();
        if s.get(&key).is_some() {
            // Same key, same content: only its recency changes.
            return;
        }
        if s.push(key, data.into()).is_some() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters and current size.
    pub(crate) fn stats(&self) -> ClusterCacheStats {
        let entries: u64 = self.shards.iter().map(|s| s.lock().len() as u64).sum();
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

    fn cluster(tag: u32) -> Vec<u8> {
        let mut c: Vec<u8> = (0..CLUSTER_SIZE as u32)
            .map(|i| (i.wrapping_mul(31) ^ tag) as u8)
            .collect();
        c[..4].copy_from_slice(&tag.to_le_bytes());
        c
    }

    #[test]
    fn a_cluster_is_found_by_its_content_hash() {
        let c = ClusterCache::new(1 << 20);
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
        let c = ClusterCache::new(64 * CLUSTER_SIZE_U64 + 100);
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
            let c = ClusterCache::new(cap);
            assert!(!c.is_enabled());
            let a = cluster(7);
            c.insert(ClusterHash::of(&a), &a);
            let mut out = vec![0u8; 8];
            assert!(!c.get(&ClusterHash::of(&a), 0, &mut out));
            assert_eq!(c.stats().bytes, 0);
        }
        // A few clusters: fewer shards, the exact bound.
        let c = ClusterCache::new(3 * CLUSTER_SIZE_U64);
        for t in 0..50 {
            let d = cluster(t);
            c.insert(ClusterHash::of(&d), &d);
        }
        assert_eq!(c.stats().bytes, 3 * CLUSTER_SIZE_U64);
    }

    #[test]
    fn inserting_the_same_content_twice_keeps_one_copy() {
        let c = ClusterCache::new(1 << 20);
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
