//! What a clone shares with the volumes it was cloned from: of its mapped clusters, those in
//! an ancestor's SCOs (sealed in a TLog up to the lineage's base) are *shared*, those in its
//! own SCOs (written since the clone, or copied up by a flatten) are *unshared*. A volume that
//! is no clone shares nothing. The VAAI-style extended statistics report both.

use crate::error::Result;
use crate::volume::format::CLUSTER_SIZE_U64;
use crate::volume::state::Volume;

/// Clusters looked up per hold of the volume lock (256 MiB of the map), so that counting a
/// large volume never stalls its writers for long.
const WINDOW: u64 = 1 << 16;

/// A volume's mapped clusters by where they live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sharing {
    /// Clusters holding data (the volume's own and its ancestors').
    pub(crate) mapped: u64,
    /// Of those, the clusters in the volume's own SCOs.
    pub(crate) own: u64,
}

impl Volume {
    /// Counts the mapped clusters and those of them in the volume's own SCOs, a window of the
    /// map per hold of the lock (a concurrent write may land in a window already counted: the
    /// figures are a moment's, not a snapshot's).
    pub(crate) fn sharing(&self) -> Result<Sharing> {
        self.check_halted()?;
        let mut s = Sharing::default();
        let mut at = 0;
        loop {
            let st = self.state.read();
            let end = st.size.div_ceil(CLUSTER_SIZE_U64);
            if at >= end {
                return Ok(s);
            }
            let base = self.lineage.read().base_tlog();
            let hi = (at + WINDOW).min(end);
            for (_, l) in self.lookup_range(&st, at, hi)? {
                s.mapped += 1;
                if st.scos.get(&l.sco).is_none_or(|e| e.tlog > base) {
                    s.own += 1;
                }
            }
            at = hi;
        }
    }
}
