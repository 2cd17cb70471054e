//! Scrubbing and garbage collection of volumes, on demand (the work is the volume's,
//! `volume/scrub/`, and the registry's, `registry/scrub.rs`, which also runs the background
//! passes).

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
            None => self.volumes.scrub_all(p)?,
        };
        Ok(ScrubSummary {
            scos_compacted: r.scos_compacted,
            bytes_reclaimed: r.bytes_reclaimed,
            objects_deleted: r.objects_deleted,
        })
    }
}
