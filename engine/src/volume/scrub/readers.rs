//! Reader points: the TLogs up to which clones read a volume. A clone's view of its ancestor
//! is a boundary like a snapshot's (`mds/liveness.rs`), recorded in the ancestor itself
//! before the clone's map is taken, so that no position the clone reads is ever found dead,
//! even once the snapshot it was made from is deleted.

use crate::error::{Error, Result};
use crate::volume::state::Volume;

impl Volume {
    /// A clone will read this volume as of TLog `n`: recorded durably. With `snapshot`, only
    /// while a snapshot of this volume stands at `n` (checked under the rollback lock, which a
    /// scrub holds while it finds positions dead): a snapshot deleted meanwhile is `NotFound`.
    pub(crate) fn pin_reader(&self, n: u64, snapshot: bool) -> Result<()> {
        let _views = self.rollback_lock.lock();
        if snapshot {
            let at_n = self
                .mds
                .snapshot_list()?
                .iter()
                .any(|(_, rec, _)| rec.get(36..44).is_some_and(|b| b == n.to_le_bytes()));
            if !at_n {
                return Err(Error::NotFound);
            }
        }
        self.mds.add_reader_point(n)
    }

    /// A clone that read this volume as of TLog `n` went (deleted or flattened).
    pub(crate) fn unpin_reader(&self, n: u64) -> Result<()> {
        self.mds.remove_reader_point(n)
    }
}
