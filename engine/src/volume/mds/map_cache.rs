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
//! Eviction is a second chance (CLOCK): a hit only marks its page as used, so a READ never
//! reorders anything; the bound's hand passes over a marked page once, clearing its mark.
//!
//! Each shard keeps its pages in one array of fixed-size slots, grown as pages are kept up to
//! its bound: a random READ looks up a page nobody touched lately, and finds its location in
//! one cache line of one allocation (not an LRU node pointing to a vector of locations).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::store::Loc;
use crate::volume::int::usize_of;

/// Cluster addresses per page (256 KiB of a volume).
pub(in crate::volume) const PAGE: u64 = 64;
/// Shards of the cache (each with its own lock and a share of the bound).
const SHARDS: usize = 8;
/// [`PAGE`] as an array length.
const SLOTS: usize = 64;
const _: () = assert!(SLOTS as u64 == PAGE);
/// Bytes one kept page costs: its slot, and its entry in the shard's index.
const PAGE_BYTES: usize = std::mem::size_of::<Slot>() + 32;

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

/// The map entries of one page: the location of each of its [`PAGE`] addresses (address
/// `page * PAGE + i` at `i`), or none. A lookup reads one cache line.
#[derive(Debug, Clone)]
pub(in crate::volume) struct MapPage {
    locs: [Option<Loc>; SLOTS],
}

impl Default for MapPage {
    fn default() -> Self {
        MapPage {
            locs: [None; SLOTS],
        }
    }
}

impl MapPage {
    /// A page from its entries (`(address, location)`; those outside page `page` are ignored,
    /// the last of an address wins).
    pub(in crate::volume) fn new(page: u64, entries: impl IntoIterator<Item = (u64, Loc)>) -> Self {
        let base = page * PAGE;
        let mut p = MapPage::default();
        for (a, l) in entries {
            if let Some(i) = a.checked_sub(base).filter(|i| *i < PAGE) {
                p.locs[usize_of(i)] = Some(l);
            }
        }
        p
    }

    /// The location of address `a` (in this page `page`), if mapped.
    pub(in crate::volume) fn get(&self, page: u64, a: u64) -> Option<Loc> {
        let i = a.checked_sub(page * PAGE).filter(|i| *i < PAGE)?;
        self.locs[usize_of(i)]
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
        let lo = from.clamp(base, base + PAGE);
        let hi = to.clamp(lo, base + PAGE);
        for a in lo..hi {
            if let Some(l) = self.locs[usize_of(a - base)] {
                out.push((a, l));
            }
        }
    }
}

/// A kept page and its key (none while the slot is free).
struct Slot {
    key: Option<(u64, u64)>,
    page: MapPage,
}

/// Where a kept page is, and the volume's epoch when it was kept.
#[derive(Clone, Copy)]
struct Entry {
    slot: u32,
    epoch: u64,
}

/// (volume database id, page) -> the kept page.
struct Shard {
    index: FxHashMap<(u64, u64), Entry>,
    slots: Vec<Slot>,
    /// The most slots it holds.
    bound: usize,
    /// Per slot: a lookup used it since the hand last passed.
    used: Vec<bool>,
    /// Slots whose page was forgotten.
    free: Vec<u32>,
    /// The next slot the bound looks at.
    hand: usize,
    /// Counted under the lock: no counter shared by every READ.
    hits: u64,
    misses: u64,
}

impl Shard {
    /// A shard of at most `bound` pages.
    fn new(bound: usize) -> Shard {
        Shard {
            index: FxHashMap::default(),
            used: Vec::new(),
            slots: Vec::new(),
            bound,
            free: Vec::new(),
            hand: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// A slot for a new page: a free one, a new one below the bound, or the first unmarked one
    /// from the hand on (a marked one loses its mark: at most one pass before a victim). Called
    /// only with a bound above 0.
    fn take_slot(&mut self, page: MapPage) -> usize {
        if let Some(i) = self.free.pop() {
            let i = i as usize;
            self.slots[i].page = page;
            return i;
        }
        if self.slots.len() < self.bound {
            if self.slots.len() == self.slots.capacity() {
                // Doubling, but never past the bound.
                let more = self.slots.len().max(16).min(self.bound - self.slots.len());
                self.slots.reserve_exact(more);
                self.used.reserve_exact(more);
            }
            self.slots.push(Slot { key: None, page });
            self.used.push(false);
            return self.slots.len() - 1;
        }
        loop {
            let i = self.hand;
            self.hand = (i + 1) % self.slots.len();
            if std::mem::take(&mut self.used[i]) {
                continue;
            }
            if let Some(k) = self.slots[i].key.take() {
                self.index.remove(&k);
            }
            self.slots[i].page = page;
            return i;
        }
    }
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
    /// Pages each shard keeps at most.
    shard_pages: usize,
}

impl std::fmt::Debug for MapCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapCache")
            .field("pages", &(self.shard_pages * SHARDS))
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
        // Slots are numbered in 32 bits.
        let shard_pages = (budget / SHARDS / PAGE_BYTES).min(u32::MAX as usize);
        Some(Arc::new(MapCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(shard_pages)))
                .collect(),
            shard_pages,
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
        let mut g = self.shard(id, page).lock();
        let s = &mut *g;
        let r = match s.index.get(&(id, page)) {
            Some(e) if e.epoch == epoch => {
                let i = e.slot as usize;
                s.used[i] = true;
                Some(f(&s.slots[i].page))
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

    /// Keeps `p` as page `page` of database `id` at `epoch`; at the bound, the first page from
    /// the hand on that no lookup used since the hand last passed goes. Called under the
    /// database's lock (rule 1 above).
    pub(in crate::volume) fn insert(&self, id: u64, page: u64, epoch: u64, p: MapPage) {
        let key = (id, page);
        let mut g = self.shard(id, page).lock();
        let s = &mut *g;
        if s.bound == 0 {
            return;
        }
        let i = match s.index.get(&key) {
            Some(e) => {
                let i = e.slot as usize;
                s.slots[i].page = p;
                i
            }
            None => s.take_slot(p),
        };
        s.slots[i].key = Some(key);
        s.used[i] = false;
        let slot = u32::try_from(i).unwrap_or(u32::MAX);
        s.index.insert(key, Entry { slot, epoch });
    }

    /// Forgets page `page` of database `id` (rule 2 above).
    pub(in crate::volume) fn remove(&self, id: u64, page: u64) {
        let mut g = self.shard(id, page).lock();
        let s = &mut *g;
        if let Some(e) = s.index.remove(&(id, page)) {
            let i = e.slot as usize;
            s.slots[i].key = None;
            s.used[i] = false;
            s.free.push(e.slot);
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> MapCacheStats {
        let mut t = MapCacheStats::default();
        for s in &self.shards {
            let s = s.lock();
            t.hits += s.hits;
            t.misses += s.misses;
            t.bytes += (s.index.len() * PAGE_BYTES) as u64;
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
        let one = PAGE_BYTES;
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
        let c = MapCache::new((PAGE_BYTES * SHARDS * 2) as u64).expect("on");
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
        let kept = c.shard(1, 0).lock().index.len();
        assert!(kept <= c.shard_pages, "{kept} > {}", c.shard_pages);
    }

    proptest::proptest! {
        /// Inserts, removes and lookups in any order: a lookup finds the page last kept under
        /// its key and epoch or nothing, never another key's page (slots are reused by the
        /// hand and by forgotten pages), and no shard holds more than its bound.
        #[test]
        fn the_cache_answers_only_with_the_page_last_kept_under_a_key(
            ops in proptest::collection::vec((0u8..3, 0u64..2, 0u64..24, 0u64..2), 1..300),
        ) {
            let c = MapCache::new((PAGE_BYTES * SHARDS * 3) as u64).expect("on");
            let mut model = std::collections::HashMap::new();
            for (n, (op, id, page, epoch)) in ops.into_iter().enumerate() {
                let key = (id, page);
                match op {
                    0 => {
                        let sco = n as u64;
                        let p = MapPage::new(page, [(page * PAGE + page % PAGE, loc(sco))]);
                        c.insert(id, page, epoch, p);
                        model.insert(key, (epoch, sco));
                    }
                    1 => {
                        c.remove(id, page);
                        model.remove(&key);
                    }
                    _ => {
                        let got = c.with(id, page, epoch, |p| p.get(page, page * PAGE + page % PAGE));
                        if let Some(got) = got {
                            let want = model.get(&key).filter(|(e, _)| *e == epoch).map(|(_, s)| loc(*s));
                            proptest::prop_assert!(want.is_some(), "{key:?} found after it went");
                            proptest::prop_assert_eq!(got, want);
                        }
                    }
                }
                for s in &c.shards {
                    proptest::prop_assert!(s.lock().index.len() <= c.shard_pages);
                }
            }
        }
    }
}
