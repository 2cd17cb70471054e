//! `strata fsck`'s check of one volume's backend namespace: a backend restart into a scratch
//! directory (which reads and verifies the manifest, the metadata checkpoint and every TLog
//! after it, CRCs included), then, `deep`, every byte of the volume read back through the
//! read path (ranged GETs of the SCOs, each cluster checked against its hash; no cluster cache,
//! so every read goes to the backend).

use std::path::Path;
use std::sync::Arc;

use super::{volume_id, VolumeRegistry};
use crate::error::{io_err, Error, Result};
use crate::progress::Progress;
use crate::types::Ino;
use crate::volume::{LocalFs, StdFs, Volume};

/// Bytes read per call in a deep check.
const READ_CHUNK: usize = 1 << 20;

impl VolumeRegistry {
    /// Checks volume `ino` in `scratch` (removed afterwards); returns the bytes read back, or
    /// `None` when it has no manifest on the backend. Cancelling stops a deep read.
    pub(crate) fn check_volume(
        &self,
        ino: Ino,
        deep: bool,
        scratch: &Path,
        p: &dyn Progress,
    ) -> Result<Option<u64>> {
        let fs: Arc<dyn LocalFs> = Arc::new(StdFs);
        if scratch.exists() {
            std::fs::remove_dir_all(scratch).map_err(|e| io_err(scratch.display(), e))?;
        }
        let store = self.store_of(ino)?;
        let restored = self.rt.block_on(Volume::restore(
            &*store,
            fs,
            scratch,
            volume_id(self.fsid, ino),
            self.cfg.opts,
        ));
        let vol = match restored {
            Ok(v) => v,
            Err(Error::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Epoch 0: it never uploads (nothing is written to it).
        vol.set_backend(store, self.rt.clone(), 0);
        vol.set_ancestor_stores(self.ancestor_stores());
        let r = if deep { read_all(&vol, p) } else { Ok(0) };
        drop(vol);
        let _ = std::fs::remove_dir_all(scratch);
        r.map(Some)
    }
}

fn read_all(vol: &Volume, p: &dyn Progress) -> Result<u64> {
    let size = vol.size();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut at = 0u64;
    while at < size {
        if p.cancelled() {
            return Err(crate::progress::cancelled_error());
        }
        let n = vol.read(at, &mut buf)?;
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    Ok(at)
}
