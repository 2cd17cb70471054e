//! The SCO cache policy over all volumes: when the local SCO files of every volume together
//! exceed the high watermark of `SCO_Cache_Size`, disposable SCOs (sealed and on the backend)
//! are evicted, least-frequently-used first (ties: oldest first), until the total is below the
//! low watermark. Non-disposable SCOs are never evicted; `Write_Buffer_Size` bounds them.

use std::sync::Arc;

use super::state::Volume;

/// Eviction starts above this share of `SCO_Cache_Size` (percent).
pub(crate) const HIGH_WATERMARK_PERCENT: u64 = 90;
/// Eviction stops at or below this share of `SCO_Cache_Size` (percent).
pub(crate) const LOW_WATERMARK_PERCENT: u64 = 70;

/// What one [`evict_lfu`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EvictionReport {
    /// Local SCO bytes of all volumes before the call.
    pub before: u64,
    /// Local SCO bytes of all volumes after the call.
    pub after: u64,
    /// SCOs evicted.
    pub scos: u64,
}

fn percent(size: u64, p: u64) -> u64 {
    // At most `size` for p <= 100.
    u64::try_from(u128::from(size) * u128::from(p) / 100).unwrap_or(u64::MAX)
}

/// Applies the eviction policy to `vols` for a cache of `cache_size` bytes (0: unbounded, nothing
/// is evicted). Blocking (writes and fdatasyncs stubs, fsyncs directories): call it off the async workers. An SCO
/// that fails to evict is logged and skipped.
pub(crate) fn evict_lfu(vols: &[Arc<Volume>], cache_size: u64) -> EvictionReport {
    let before: u64 = vols.iter().map(|v| v.sco_cache_bytes()).sum();
    let mut rep = EvictionReport {
        before,
        after: before,
        scos: 0,
    };
    if cache_size == 0 || before <= percent(cache_size, HIGH_WATERMARK_PERCENT) {
        return rep;
    }
    let low = percent(cache_size, LOW_WATERMARK_PERCENT);
    let mut cands: Vec<_> = vols
        .iter()
        .flat_map(|v| v.eviction_candidates().into_iter().map(move |c| (v, c)))
        .collect();
    cands.sort_by_key(|(_, c)| (c.reads, c.since));
    let mut total = before;
    let mut touched: Vec<&Arc<Volume>> = Vec::new();
    for (v, c) in cands {
        if total <= low {
            break;
        }
        match v.evict_sco(c.sco) {
            Ok(0) => {}
            Ok(n) => {
                total = total.saturating_sub(n);
                rep.scos += 1;
                if !touched.iter().any(|t| Arc::ptr_eq(t, v)) {
                    touched.push(v);
                }
            }
            Err(e) => {
                tracing::warn!(volume = %v.id(), sco = c.sco, error = %e, "SCO eviction failed")
            }
        }
    }
    // One fsync of `sco/` per volume for the whole batch.
    for v in touched {
        if let Err(e) = v.sync_evictions() {
            tracing::warn!(volume = %v.id(), error = %e, "making SCO evictions durable failed");
        }
    }
    rep.after = total;
    if total > low {
        tracing::debug!(
            total,
            low,
            "SCO cache above its low watermark: the rest is not on the backend yet"
        );
    }
    rep
}
