//! The SCO cache shared by every open volume (`SCO_Cache_Size`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::types::Ino;
use crate::volume::Volume;

/// The SCO cache shared by every open volume: runs the eviction policy
/// ([`crate::volume::evict_lfu`]) over all of them, one run at a time.
#[derive(Debug)]
pub(super) struct ScoCache {
    pub(super) size: u64,
    pub(super) vols: Mutex<HashMap<Ino, std::sync::Weak<Volume>>>,
    pub(super) running: Mutex<()>,
}

impl ScoCache {
    /// Evicts disposable SCOs of the open volumes when they exceed the high watermark.
    /// Blocking: runs on a blocking thread (see [`ScoCache::run_async`]) or outside the runtime.
    pub(super) fn run(&self) {
        let _one = self.running.lock();
        let vols: Vec<Arc<Volume>> = self
            .vols
            .lock()
            .values()
            .filter_map(|w| w.upgrade())
            .collect();
        let r = crate::volume::evict_lfu(&vols, self.size);
        if r.scos > 0 {
            tracing::debug!(
                before = r.before,
                after = r.after,
                scos = r.scos,
                "SCO cache eviction"
            );
        }
    }

    /// [`ScoCache::run`] on a blocking thread, so async workers never wait on volume locks.
    pub(super) async fn run_async(self: &Arc<Self>) {
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.run()).await {
            tracing::warn!(error = %e, "SCO cache eviction task failed");
        }
    }
}
