//! Decoded pages of the volumes' cluster maps, shared by every volume of an engine and bounded
//! in bytes (`Map_Cache_Size`), so that a READ finds its clusters without walking `mds.redb`.
//!
//! A page holds a volume's map entries for [`PAGE`] consecutive cluster addresses as one commit
//! of its `mds.redb` left them. What keeps a page true is in `db.rs` (the only user):
//!
//! 1. A page is read from a snapshot of commit generation `g` and inserted only while the
//!    volume's generation is still `g`, under the lock that commits also take.
//! 2. A commit bumps the generation and, under that lock, removes the pages whose addresses it
//!    changed; a commit that cannot name them bumps the volume's epoch instead, and a page of
//!    an older epoch is never returned.
//!
//! The pages of a volume that closed stay until the bound evicts them: keys carry a volume id
//! no other open of any volume is given again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::store::Loc;

/// Cluster addresses per page (256 KiB of a volume).
pub(in crate::volume) const PAGE: u64 = 64;
/// Shards of the cache (each with its own lock and a share of the bound).
const SHARDS: usize = 8;
/// Bytes a page costs besides its entries (the page, its `Arc`, the LRU node and key).
const PAGE_OVERHEAD: usize = 128;

/// The page holding cluster address `a`.
pub(in crate::volume) fn page_of(a: u64) -> u64 {
    a / PAGE
}

/// Ids of opened volume databases (the cache's keys), never reused within a process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new id for an opened database.
pub(in crate::volume) fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The map entries of one page: (address within the page, location), by address.
#[derive(Debug, Default)]
pub(in crate::volume) struct MapPage {
    entries: Vec<(u8, Loc)>,
}

impl MapPage {
    /// A page from its entries (`(address, location)`, ascending, all in page `page`).
    pub(in crate::volume) fn new(page: u64, entries: impl IntoIterator<Item = (u64, Loc)>) -> Self {
        let base = page * PAGE;
        MapPage {
            entries: entries
                .into_iter()
                .filter_map(|(a, l)| {
                    let i = a.checked_sub(base).filter(|i| *i < PAGE)?;
                    Some((u8::try_from(i).ok()?, l))
                })
                .collect(),
        }
    }

    /// The location of address `a` (in this page `page`), if mapped.
    pub(in crate::volume) fn get(&self, page: u64, a: u64) -> Option<Loc> {
        let i = u8::try_from(a.checked_sub(page * PAGE)?).ok()?;
        self.entries
            .binary_search_by_key(&i, |(k, _)| *k)
            .ok()
            .map(|at| self.entries[at].1)
    }

    /// Appends to `out` the entries of this page (`page`) with an address in `from..to`.
    pub(in crate::volume) fn extend_range(
        &self,
        page: u64,
        from: u64,
        to: u64,
        out: &mut Vec<(u64, Loc)>,
    ) {
        let base = page * PAGE;
        let start = self
            .entries
            .partition_point(|(i, _)| base + u64::from(*i) < from);
        for (i, l) in &self.entries[start..] {
            let a = base + u64::from(*i);
            if a >= to {
                break;
            }
            out.push((a, *l));
        }
    }

    fn bytes(&self) -> usize {
        PAGE_OVERHEAD + self.entries.capacity() * std::mem::size_of::<(u8, Loc)>()
    }
}

/// (volume database id, page) -> (the volume's epoch when inserted, the page).
struct Shard {
    pages: LruCache<(u64, u64), (u64, Arc<MapPage>)>,
    bytes: usize,
    /// Counted under the lock: no counter shared by every READ.
    hits: u64,
    misses: u64,
}

/// Counters of the cache since the engine started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MapCacheStats {
    /// Page lookups answered from the cache.
    pub hits: u64,
    /// Page lookups that did not find the page (the caller read `mds.redb`).
    pub misses: u64,
    /// Bytes held now.
    pub bytes: u64,
}

/// The cache of decoded map pages shared by an engine's volumes.
pub(crate) struct MapCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

impl std::fmt::Debug for MapCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapCache")
            .field("budget", &(self.shard_budget * SHARDS))
            .finish()
    }
}

impl MapCache {
    /// A cache holding at most about `budget` bytes; `None` for 0 (off).
    pub(crate) fn new(budget: u64) -> Option<Arc<MapCache>> {
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        if budget == 0 {
            return None;
        }
        Some(Arc::new(MapCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        pages: LruCache::unbounded(),
                        bytes: 0,
                        hits: 0,
                        misses: 0,
                    })
                })
                .collect(),
            shard_budget: (budget / SHARDS).max(1),
        }))
    }

    fn shard(&self, id: u64, page: u64) -> &Mutex<Shard> {
        let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ page.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// `f` of page `page` of database `id`, if cached at `epoch` (called under the shard's
    /// lock: `f` only copies out).
    pub(in crate::volume) fn with<R>(
        &self,
        id: u64,
        page: u64,
        epoch: u64,
        f: impl FnOnce(&MapPage) -> R,
    ) -> Option<R> {
        let mut s = self.shard(id, page).lock();
        let r = match s.pages.get(&(id, page)) {
            Some((e, p)) if *e == epoch => Some(f(p)),
            _ => None,
        };
        if r.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        r
    }

    /// Keeps `p` as page `page` of database `id` at `epoch`, evicting the least recently used
    /// pages beyond the bound. Called under the database's lock (rule 1 above).
    pub(in crate::volume) fn insert(&self, id: u64, page: u64, epoch: u64, p: Arc<MapPage>) {
        let mut s = self.shard(id, page).lock();
        s.bytes += p.bytes();
        if let Some((_, old)) = s.pages.put((id, page), (epoch, p)) {
            s.bytes -= old.bytes();
        }
        while s.bytes > self.shard_budget {
            match s.pages.pop_lru() {
                Some((_, (_, old))) => s.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// Forgets page `page` of database `id` (rule 2 above).
    pub(in crate::volume) fn remove(&self, id: u64, page: u64) {
        let mut s = self.shard(id, page).lock();
        if let Some((_, old)) = s.pages.pop(&(id, page)) {
            s.bytes -= old.bytes();
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> MapCacheStats {
        let mut t = MapCacheStats::default();
        for s in &self.shards {
            let s = s.lock();
            t.hits += s.hits;
            t.misses += s.misses;
            t.bytes += s.bytes as u64;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::format::ClusterHash;

    fn loc(sco: u64) -> Loc {
        Loc {
            sco,
            offset: 0,
            hash: ClusterHash::of(&sco.to_le_bytes()),
        }
    }

    #[test]
    fn a_page_answers_for_its_own_addresses_only() {
        let p = MapPage::new(
            2,
            [(128, loc(1)), (130, loc(2)), (191, loc(3)), (192, loc(4))],
        );
        assert_eq!(p.get(2, 128), Some(loc(1)));
        assert_eq!(p.get(2, 129), None);
        assert_eq!(p.get(2, 191), Some(loc(3)));
        assert_eq!(p.get(2, 192), None, "another page's address");
        assert_eq!(p.get(2, 5), None);
        let mut out = Vec::new();
        p.extend_range(2, 129, 191, &mut out);
        assert_eq!(out, vec![(130, loc(2))]);
    }

    #[test]
    fn an_older_epoch_misses_and_the_bound_evicts_the_least_recently_used() {
        let one = MapPage::new(0, (0..PAGE).map(|a| (a, loc(a)))).bytes();
        let c = MapCache::new((one * SHARDS * 2) as u64).expect("on");
        let page = |i: u64| {
            Arc::new(MapPage::new(
                i,
                (i * PAGE..(i + 1) * PAGE).map(|a| (a, loc(a))),
            ))
        };
        let get = |id, p, epoch| c.with(id, p, epoch, |_| ()).is_some();
        c.insert(1, 0, 5, page(0));
        assert!(get(1, 0, 5));
        assert!(!get(1, 0, 6), "a page of an older epoch");
        assert!(!get(2, 0, 5), "another volume's page");
        c.remove(1, 0);
        assert!(!get(1, 0, 5));
        for i in 0..200 {
            c.insert(1, i, 0, page(i));
        }
        let s = c.stats();
        assert!(s.bytes <= (one * SHARDS * 2) as u64, "{s:?}");
        assert!(get(1, 199, 0), "the newest page stays");
        assert!(!get(1, 0, 0), "the oldest went");
        assert_eq!((c.stats().hits, c.stats().misses), (2, 4));
        assert!(MapCache::new(0).is_none());
    }
}
