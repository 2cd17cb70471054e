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
//!
//! Eviction is a second chance over insertion order (CLOCK): a hit only marks its page as used,
//! so a READ never reorders the shard's list (a reorder touches three nodes scattered in memory
//! under the shard's lock); the bound passes over a marked page once, clearing its mark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

use super::store::Loc;
use crate::volume::int::usize_of;

/// Cluster addresses per page (256 KiB of a volume).
pub(in crate::volume) const PAGE: u64 = 64;
/// Shards of the cache (each with its own lock and a share of the bound).
const SHARDS: usize = 8;
/// Bytes a page costs besides its locations (the LRU node with the key and the page).
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

/// The map entries of one page: which of its [`PAGE`] addresses are mapped (bit `i` for
/// address `page * PAGE + i`), and their locations in address order. A lookup reads the bitmap
/// and one location: a READ of a cold page touches two cache lines, not a binary search's six.
#[derive(Debug, Default, Clone)]
pub(in crate::volume) struct MapPage {
    mapped: u64,
    locs: Vec<Loc>,
}

/// [`PAGE`] as an array length.
const SLOTS: usize = 64;
// One bit of `MapPage::mapped` per address of a page.
const _: () = assert!(PAGE == u64::BITS as u64 && SLOTS as u64 == PAGE);

impl MapPage {
    /// A page from its entries (`(address, location)`; those outside page `page` are ignored,
    /// the last of an address wins).
    pub(in crate::volume) fn new(page: u64, entries: impl IntoIterator<Item = (u64, Loc)>) -> Self {
        let base = page * PAGE;
        let mut all: [Option<Loc>; SLOTS] = [None; SLOTS];
        for (a, l) in entries {
            if let Some(i) = a.checked_sub(base).filter(|i| *i < PAGE) {
                all[usize_of(i)] = Some(l);
            }
        }
        let mut mapped = 0u64;
        let mut locs = Vec::new();
        for (i, l) in all.iter().enumerate() {
            if let Some(l) = l {
                mapped |= 1 << i;
                locs.push(*l);
            }
        }
        MapPage { mapped, locs }
    }

    /// The location of address `a` (in this page `page`), if mapped.
    pub(in crate::volume) fn get(&self, page: u64, a: u64) -> Option<Loc> {
        let i = a.checked_sub(page * PAGE).filter(|i| *i < PAGE)?;
        if self.mapped & (1 << i) == 0 {
            return None;
        }
        let before = (self.mapped & ((1u64 << i) - 1)).count_ones() as usize;
        self.locs.get(before).copied()
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
        let mut bits = self.mapped;
        let mut at = 0;
        while bits != 0 {
            let i = u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            let a = base + i;
            if a >= to {
                break;
            }
            if a >= from {
                if let Some(l) = self.locs.get(at) {
                    out.push((a, *l));
                }
            }
            at += 1;
        }
    }

    fn bytes(&self) -> usize {
        PAGE_OVERHEAD + self.locs.capacity() * std::mem::size_of::<Loc>()
    }
}

/// A cached page: the volume's epoch when inserted, whether a lookup used it since the bound
/// last passed over it, the page.
struct Cached {
    epoch: u64,
    used: bool,
    page: MapPage,
}

/// (volume database id, page) -> the cached page, oldest first (the order of insertion and of
/// second chances, not of hits).
struct Shard {
    pages: LruCache<(u64, u64), Cached, FxBuildHasher>,
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
                        pages: LruCache::unbounded_with_hasher(FxBuildHasher),
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
        let r = match s.pages.peek_mut(&(id, page)) {
            Some(c) if c.epoch == epoch => {
                c.used = true;
                Some(f(&c.page))
            }
            _ => None,
        };
        if r.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        r
    }

    /// Keeps `p` as page `page` of database `id` at `epoch`, evicting beyond the bound the
    /// oldest pages no lookup used since the bound last passed over them. Called under the
    /// database's lock (rule 1 above).
    pub(in crate::volume) fn insert(&self, id: u64, page: u64, epoch: u64, p: MapPage) {
        let need = p.bytes();
        if need > self.shard_budget {
            return;
        }
        let mut s = self.shard(id, page).lock();
        if let Some(old) = s.pages.pop(&(id, page)) {
            s.bytes -= old.page.bytes();
        }
        // Room first, so the new page is never its own victim. A second chance clears the
        // mark: at most one pass over the shard before an unmarked page goes.
        while s.bytes + need > self.shard_budget {
            let Some((k, mut c)) = s.pages.pop_lru() else {
                break;
            };
            if c.used {
                c.used = false;
                s.pages.push(k, c);
            } else {
                s.bytes -= c.page.bytes();
            }
        }
        s.bytes += need;
        let new = Cached {
            epoch,
            used: false,
            page: p,
        };
        s.pages.push((id, page), new);
    }

    /// Forgets page `page` of database `id` (rule 2 above).
    pub(in crate::volume) fn remove(&self, id: u64, page: u64) {
        let mut s = self.shard(id, page).lock();
        if let Some(old) = s.pages.pop(&(id, page)) {
            s.bytes -= old.page.bytes();
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

    proptest::proptest! {
        #[test]
        fn a_page_answers_as_the_map_it_was_built_from(
            page in 0u64..4,
            entries in proptest::collection::vec((0u64..6 * PAGE, 0u64..1000), 0..100),
            from in 0u64..6 * PAGE,
            len in 0u64..2 * PAGE,
        ) {
            let p = MapPage::new(page, entries.iter().map(|(a, s)| (*a, loc(*s))));
            let mut model = std::collections::BTreeMap::new();
            for (a, s) in &entries {
                if a / PAGE == page {
                    model.insert(*a, loc(*s));
                }
            }
            for a in page * PAGE..(page + 1) * PAGE {
                proptest::prop_assert_eq!(p.get(page, a), model.get(&a).copied());
            }
            let mut out = Vec::new();
            p.extend_range(page, from, from + len, &mut out);
            let want: Vec<(u64, Loc)> =
                model.range(from..from + len).map(|(a, l)| (*a, *l)).collect();
            proptest::prop_assert_eq!(out, want);
        }
    }

    #[test]
    fn an_older_epoch_misses_and_the_bound_evicts_the_oldest_unused_pages() {
        let one = MapPage::new(0, (0..PAGE).map(|a| (a, loc(a)))).bytes();
        let c = MapCache::new((one * SHARDS * 2) as u64).expect("on");
        let page = |i: u64| MapPage::new(i, (i * PAGE..(i + 1) * PAGE).map(|a| (a, loc(a))));
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

    #[test]
    fn a_page_used_since_the_last_pass_outlives_an_older_unused_one() {
        let page = |i: u64| MapPage::new(i, (i * PAGE..(i + 1) * PAGE).map(|a| (a, loc(a))));
        // Room for two pages in each shard; three pages of one shard.
        let c = MapCache::new((page(0).bytes() * SHARDS * 2) as u64).expect("on");
        let same: Vec<u64> = (0..)
            .filter(|p| std::ptr::eq(c.shard(1, *p), c.shard(1, 0)))
            .take(3)
            .collect();
        let get = |p| c.with(1, p, 0, |_| ()).is_some();
        c.insert(1, same[0], 0, page(same[0]));
        c.insert(1, same[1], 0, page(same[1]));
        assert!(get(same[0]), "a hit marks the oldest page as used");
        c.insert(1, same[2], 0, page(same[2]));
        assert!(!get(same[1]), "the older unused page went");
        assert!(get(same[0]), "the used one had a second chance");
        assert!(get(same[2]));
        // Both are marked now: one pass clears the marks, then the older of them goes; the
        // new page stays.
        c.insert(1, same[1], 0, page(same[1]));
        assert!(get(same[1]), "the page just inserted stays");
        assert!(get(same[2]));
        assert!(!get(same[0]), "after the pass, the oldest went");
        let bytes = c.shard(1, 0).lock().bytes;
        assert!(bytes <= c.shard_budget, "{bytes} > {}", c.shard_budget);
    }
}
