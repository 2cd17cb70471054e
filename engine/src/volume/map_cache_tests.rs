//! Reads through the map cache (`mds/map_cache.rs`) against a model of the volume: every change
//! a commit of the MetaDataStore applies (writes, holes, shrinks, restarts) is seen by the next
//! read, whether the cache held the page before or not: one cluster at a time (a READ's
//! single-address look-up) and unaligned runs across pages (the range walk).

use std::sync::Arc;

use super::mds::map_cache::MapCache;
use super::tests::{fail_puts, fresh, read_vec, rt, small_opts};
use super::SimRng;

const SIZE: u64 = 2 << 20;
const CLUSTER: u64 = 4096;

#[test]
fn reads_through_the_map_cache_see_every_change_the_store_applies() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    let (_fs, _lfs, vol) = fresh(small_opts());
    let cache = MapCache::new(1 << 20).expect("a cache");
    vol.set_map_cache(cache.clone());
    vol.resize(SIZE).expect("size");
    let mut model = vec![0u8; SIZE as usize];
    // Which clusters are mapped (hold data): what `space_used` counts, kept exact by the
    // write path's look-ups of the map (`Mds::contains`).
    let mut mapped = vec![false; (SIZE / CLUSTER) as usize];
    let mut rng = SimRng::new(0x3a9);
    for round in 0..60u64 {
        match rng.below(4) {
            0 | 1 => {
                // Whole clusters, so the map (not only the overlay) changes.
                let first = rng.below(SIZE / CLUSTER - 8);
                let n = 1 + rng.below(8);
                let b = (round as u8).wrapping_mul(7).wrapping_add(1);
                let off = first * CLUSTER;
                vol.write(off, &vec![b; (n * CLUSTER) as usize], false)
                    .expect("write");
                model[off as usize..(off + n * CLUSTER) as usize].fill(b);
                mapped[first as usize..(first + n) as usize].fill(true);
            }
            2 => {
                let first = rng.below(SIZE / CLUSTER - 16);
                let n = 1 + rng.below(16);
                vol.punch(first * CLUSTER, n * CLUSTER).expect("punch");
                model[(first * CLUSTER) as usize..((first + n) * CLUSTER) as usize].fill(0);
                mapped[first as usize..(first + n) as usize].fill(false);
            }
            _ => {
                // A shrink drops the tail's mappings; growing back reads zeros there.
                let keep = (SIZE / CLUSTER - 1 - rng.below(64)) * CLUSTER;
                vol.resize(keep).expect("shrink");
                vol.resize(SIZE).expect("grow");
                model[keep as usize..].fill(0);
                mapped[(keep / CLUSTER) as usize..].fill(false);
            }
        }
        if rng.below(2) == 0 {
            // Uploads and uncorks: the MetaDataStore commits what the overlay held.
            rt.block_on(vol.backup(&*store, true)).expect("backup");
        }
        let live = mapped.iter().filter(|m| **m).count() as u64;
        assert_eq!(vol.space_used(), live * CLUSTER, "round {round}");
        // Every cluster, one read each (a READ's lookup goes through the cache).
        for c in 0..SIZE / CLUSTER {
            let got = read_vec(&vol, c * CLUSTER, CLUSTER as usize);
            let want = &model[(c * CLUSTER) as usize..((c + 1) * CLUSTER) as usize];
            assert!(got == want, "round {round}: cluster {c} reads stale data");
        }
        // Runs across clusters and pages, unaligned (the range walk over cached pages).
        for _ in 0..16 {
            let off = rng.below(SIZE - 3 * 64 * CLUSTER);
            let len = 1 + rng.below(3 * 64 * CLUSTER);
            let got = read_vec(&vol, off, len as usize);
            let want = &model[off as usize..(off + len) as usize];
            assert!(
                got == want,
                "round {round}: {len} bytes at {off} read stale data"
            );
        }
    }
    let s = cache.stats();
    assert!(s.hits > 1000 && s.misses > 10, "the cache was used: {s:?}");
}
