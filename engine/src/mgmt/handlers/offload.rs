//! The VAAI-NAS-style offload verbs, for an ESXi host plugin: `offload_clone` (fast: a
//! snapshot and a clone; full: then a flatten job), `offload_reserve` (ALLOCATE over the whole
//! volume), `offload_stats` (used bytes, and how many of them the volume shares with the
//! volumes it was cloned from). Each composes the handlers and facade calls the other
//! requests use; a bad path is refused as they refuse it, changing nothing.

use std::sync::Arc;

use super::clone::{clone, flatten};
use super::engine_error;
use super::volume::{volume_handle, volume_info};
use crate::mgmt::{ErrorBody, OffloadCloneReport, OffloadStatsReport, Reply, Shared};

/// [`crate::mgmt::Request::OffloadClone`].
pub(super) fn offload_clone(
    shared: &Arc<Shared>,
    source: String,
    path: String,
    full: bool,
    wait: bool,
) -> Result<Reply, ErrorBody> {
    let Reply::VolumeClone(made) = clone(shared, source.clone(), path.clone(), None)? else {
        return Err(engine_error(
            crate::Error::Io("the clone answered something else".into()),
            &path,
        ));
    };
    if !full {
        return Ok(Reply::OffloadClone(OffloadCloneReport {
            clone: made,
            flatten: None,
        }));
    }
    let job = match flatten(shared, path.clone(), wait) {
        Ok(Reply::Job(j)) => j,
        Ok(_) => {
            return Err(engine_error(
                crate::Error::Io("the flatten answered something else".into()),
                &path,
            ))
        }
        Err(e) => {
            // The clone stands (a fast one): say so, and how to finish the full copy.
            return Err(ErrorBody {
                kind: e.kind,
                message: format!(
                    "{path} was cloned from {source} but not flattened ({}); it still reads \
                     {source}: `strata volume flatten {path}` finishes the full clone",
                    e.message
                ),
            });
        }
    };
    Ok(Reply::OffloadClone(OffloadCloneReport {
        clone: made,
        flatten: Some(job),
    }))
}

/// [`crate::mgmt::Request::OffloadReserve`]: the volume's state afterwards.
pub(super) fn offload_reserve(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let fs = &shared.fs;
    let size = fs.getattr(h).map_err(|e| engine_error(e, &path))?.size;
    fs.allocate(h, 0, size)
        .map_err(|e| engine_error(e, &format!("reserving {path}")))?;
    volume_info(shared, path)
}

/// [`crate::mgmt::Request::OffloadStats`].
pub(super) fn offload_stats(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let fs = &shared.fs;
    let e = |e| engine_error(e, &path);
    let info = fs.volume_stats(h).map_err(e)?;
    let sharing = fs.volume_sharing(h).map_err(e)?;
    let lineage = fs.volume_clone_info(h).map_err(e)?;
    Ok(Reply::OffloadStats(OffloadStatsReport {
        path,
        ino: h.ino,
        size: info.size,
        used_bytes: sharing.used_bytes,
        unshared_bytes: sharing.unshared_bytes,
        shared_bytes: sharing.used_bytes - sharing.unshared_bytes,
        reserved_bytes: info.reserved_bytes,
        ancestors: lineage.ancestors.len() as u64,
    }))
}
