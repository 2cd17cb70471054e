//! Capacity (statfs), making everything durable (`sync_all`) and everything uploaded
//! (`flush_to_backend`), cache and volume statistics.

use super::live::Live;
use super::Filesystem;
use crate::error::{io_err, Error, Result};
use crate::types::*;
use std::sync::Arc;

impl Filesystem {
    /// Capacity of the data directory.
    pub fn statfs(&self) -> Result<StatFs> {
        statvfs(&self.config.data_dir)
    }

    /// Makes everything written so far durable (shutdown, management "sync").
    pub fn sync_all(&self) -> Result<()> {
        let lives: Vec<(Ino, Arc<Live>)> = self
            .live
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut first_err = None;
        for (ino, live) in lives {
            if let Err(e) = self.commit_live(ino, &live) {
                if !matches!(e, Error::Stale) && first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Returns once everything committed so far (files and volumes) is on the object backend:
    /// files' journal records are uploaded and recorded (a round of the uploader); volumes
    /// upload every SCO and TLog (including the open ones) and their manifest; the objects of
    /// deleted volumes are gone from the backend.
    pub fn flush_to_backend(&self) -> Result<()> {
        self.flush_to_backend_with(&crate::progress::NoProgress)
    }

    /// [`Filesystem::flush_to_backend`], reporting its steps (the files' round, each volume,
    /// the deletions) to `p`; a cancel is honoured between volumes (what was flushed stays).
    pub fn flush_to_backend_with(&self, p: &dyn crate::progress::Progress) -> Result<()> {
        self.sync_all()?;
        let mut first_err = None;
        if let Err(e) = self.side.round(true) {
            tracing::warn!(error = %e, "uploading regular files' data failed");
            first_err.get_or_insert(e);
        } else if !self.side.all_applied() {
            // Written meanwhile: uploaded by the next round; what was committed before the
            // call is not covered by this check alone, so run one more round.
            if let Err(e) = self.side.round(true) {
                first_err.get_or_insert(e);
            }
        }
        // Every volume with local state, also those not opened by this run: a previous run may
        // have left data that never reached the backend.
        let inos = self.volumes.local_inos()?;
        let total = inos.len() as u64 + 2;
        p.step(1, total);
        for (i, ino) in inos.into_iter().enumerate() {
            if p.cancelled() {
                return Err(crate::progress::cancelled_error());
            }
            p.step(i as u64 + 1, total);
            let inode = match self.ns.get_ino(ino)? {
                Some(i) if i.kind == Kind::Volume => i,
                _ => continue,
            };
            let r = self
                .open_volume(ino, &inode)
                .and_then(|v| self.volumes.flush(&v));
            // A volume deleted meanwhile has nothing to flush (its deletion is waited for below).
            if matches!(r, Err(Error::Stale)) || self.volumes.is_deleted(ino).unwrap_or(false) {
                continue;
            }
            if let Err(e) = r {
                tracing::warn!(ino, error = %e, "flushing a volume to the backend failed");
                first_err.get_or_insert(e);
            }
        }
        // The namespace as it is now on the backend (the volumes flushed above are named by
        // it after their data), then deleted volumes' objects go from the backend too.
        p.step(total - 1, total);
        if let Err(e) = self.side.images.step(true) {
            tracing::warn!(error = %e, "uploading the namespace image failed");
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.volumes.finish_deletions() {
            tracing::warn!(error = %e, "deleting removed volumes' backend objects failed");
            first_err.get_or_insert(e);
        }
        p.step(total, total);
        first_err.map_or(Ok(()), Err)
    }

    /// What losing the local disk now would lose: committed data not yet on the backend.
    pub fn recovery_point(&self) -> RecoveryPoint {
        let (volume_bytes, volumes_since) = self.volumes.not_on_backend();
        let (file_bytes, files_since) = self
            .files
            .journal
            .not_applied()
            .map_or((0, None), |(b, t)| (b, Some(t)));
        let (taken, namespace_changed) = self.side.images.image_state();
        RecoveryPoint {
            volume_bytes,
            volumes_since,
            file_bytes,
            files_since,
            namespace_image: taken
                .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)),
            namespace_changed,
        }
    }

    /// Counters of the content-addressed cluster cache shared by all volumes.
    pub fn cluster_cache_stats(&self) -> crate::volume::cluster_cache::ClusterCacheStats {
        self.volumes.cluster_cache_stats()
    }

    /// Counters of the decoded map pages shared by all volumes (`Map_Cache_Size`).
    pub fn map_cache_stats(&self) -> crate::volume::MapCacheStats {
        self.volumes.map_cache_stats()
    }

    /// State of the volume `h` (`Invalid` if `h` is not a volume).
    pub fn volume_stats(&self, h: Handle) -> Result<VolumeInfo> {
        let inode = self.get_valid(h)?;
        if inode.kind != Kind::Volume {
            return Err(Error::Invalid("not a volume".into()));
        }
        let v = self.open_volume(h.ino, &inode)?;
        Ok(self.volumes.info(&v))
    }
}

/// This machine's name, for the owner record's label ("unknown" if it cannot be read).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// statvfs of a directory.
pub(super) fn statvfs(path: &std::path::Path) -> Result<StatFs> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| io_err("statvfs", std::io::Error::from(e)))?;
    let frsize = st.fragment_size();
    Ok(StatFs {
        total_bytes: st.blocks().saturating_mul(frsize),
        free_bytes: st.blocks_free().saturating_mul(frsize),
        avail_bytes: st.blocks_available().saturating_mul(frsize),
        total_files: st.files(),
        free_files: st.files_free(),
        avail_files: st.files_available(),
    })
}
