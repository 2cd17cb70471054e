//! The VAAI-NAS-style offload verbs, for an ESXi host plugin: `offload_clone` (fast: a
//! snapshot and a clone; full: then a flatten job), `offload_reserve` (ALLOCATE over the whole
//! volume), `offload_stats` (used bytes, and how many of them the volume shares with the
//! volumes it was cloned from). Each composes the handlers and facade calls the other
//! requests use; a bad path is refused as they refuse it, changing nothing.

use std::sync::Arc;

use super::clone::clone;
use super::engine_error;
use super::volume::{volume_handle, volume_info};
use crate::mgmt::{spawn_job, ErrorBody, OffloadCloneReport, OffloadStatsReport, Reply, Shared};

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
    // The clone stands (a fast one) if what follows fails: say so, and how to finish it.
    let linked = |e: ErrorBody| ErrorBody {
        kind: e.kind,
        message: format!(
            "{path} was cloned from {source} but not flattened ({}); it still reads \
             {source}: `strata volume flatten {path}` finishes the full clone",
            e.message
        ),
    };
    let src = volume_handle(shared, &source).map_err(linked)?;
    let h = volume_handle(shared, &path).map_err(linked)?;
    // A template's own snapshot stays; one taken for this clone goes once the flatten is done
    // (kept, it would hold the source's data of that moment forever).
    let template = shared
        .fs
        .volume_clone_info(src)
        .map_err(|e| linked(engine_error(e, &source)))?
        .template;
    let taken =
        (template.as_deref() != Some(made.snapshot.as_str())).then(|| made.snapshot.clone());
    let fs = shared.fs.clone();
    let (p, s) = (path.clone(), source.clone());
    let job = spawn_job(shared, "full_clone", path.clone(), move |job| {
        fs.volume_flatten_with(h, job)
            .map_err(|e| engine_error(e, &format!("flattening {p}")))?;
        if let Some(snap) = taken {
            if let Err(e) = fs.snapshot_delete(src, &snap) {
                tracing::warn!(source = %s, snapshot = %snap, error = %e,
                    "a full clone is done, but the snapshot taken for it was not deleted");
            }
        }
        Ok(())
    })
    .map_err(linked)?;
    if wait {
        job.wait().map_err(linked)?;
    }
    let job = job.report();
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
