//! Scrubbing and garbage collection on demand (the work is the volume's, `volume/scrub/`, the
//! registry's, `registry/scrub.rs`, which also runs the background passes, and for regular
//! files the extent sweep's, `extent_sweep.rs`).

use super::Filesystem;
use crate::error::Result;
use crate::progress::Progress;
use crate::types::{Handle, ScrubSummary};

impl Filesystem {
    /// One scrub and GC pass over volume `h`, or over every volume (`None`); `p` counts SCOs
    /// (one volume) or volumes, and cancelling stops between two of them.
    pub fn scrub_with(&self, h: Option<Handle>, p: &dyn Progress) -> Result<ScrubSummary> {
        let r = match h {
            Some(h) => {
                self.snapshot_volume(h)?;
                self.volumes.scrub_volume(h.ino, p)?
            }
            None => {
                // Regular files are swept even when a volume's pass failed.
                let volumes = self.volumes.scrub_all(p);
                let files = self.side.sweep_extents(self.config.gc_grace, p)?;
                let mut r = volumes?;
                r.objects_deleted += files.deleted;
                r
            }
        };
        Ok(ScrubSummary {
            scos_compacted: r.scos_compacted,
            bytes_reclaimed: r.bytes_reclaimed,
            objects_deleted: r.objects_deleted,
        })
    }

    /// Regular files' extent objects of an earlier run that the sweep found no map naming,
    /// waiting for `GC_Grace` before the collector deletes them.
    pub fn unnamed_extents(&self) -> Result<u64> {
        self.ns.unnamed_extents()
    }

    /// The background scrubber's pass over regular files (after its pass over every volume).
    pub(super) fn file_pass(&self) -> crate::registry::ExtraPass {
        let side = self.side.clone();
        let grace = self.config.gc_grace;
        Box::new(move |p| side.sweep_extents(grace, p).map(drop))
    }
}
