//! `volume_info`: one volume's size, space, commits, caches, MetaDataStore, pacing and upload.

use std::sync::Arc;

use super::engine_error;
use crate::mgmt::{ErrorBody, ErrorKind, Reply, Shared, VolumeReport};
use crate::types::{Handle, Kind};

/// The handle of the volume at `path` (`not_a_volume` for anything else).
pub(super) fn volume_handle(shared: &Arc<Shared>, path: &str) -> Result<Handle, ErrorBody> {
    let attr = shared
        .fs
        .lookup_path(path)
        .map_err(|e| engine_error(e, path))?;
    if attr.kind != Kind::Volume {
        let what = match attr.kind {
            Kind::Directory => "a directory",
            Kind::File => "a regular file (not created with a volume suffix)",
            Kind::Symlink => "a symbolic link",
            Kind::Volume => "a volume",
        };
        return Err(ErrorBody {
            kind: ErrorKind::NotAVolume,
            message: format!("{path} is not a volume: it is {what}"),
        });
    }
    Ok(attr.handle)
}

/// [`crate::mgmt::Request::VolumeInfo`].
pub(super) fn volume_info(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let v = shared
        .fs
        .volume_stats(h)
        .map_err(|e| engine_error(e, &path))?;
    let looked = v.cache_hits + v.cache_misses;
    Ok(Reply::VolumeInfo(VolumeReport {
        path,
        ino: h.ino,
        size: v.size,
        space_used: v.space_used,
        pending_backend_bytes: v.pending_backend_bytes,
        commits: v.commits,
        commit_rounds: v.commit_rounds,
        clusters_written: v.clusters_written,
        scos_sealed: v.scos_sealed,
        cache_hits: v.cache_hits,
        cache_misses: v.cache_misses,
        cache_hit_rate: (looked > 0).then(|| v.cache_hits as f64 / looked as f64),
        cluster_cache_hits: v.cluster_cache_hits,
        tlogs_replayed: v.tlogs_replayed,
        applied_tlog: v.applied_tlog,
        checkpoint_tlog: v.checkpoint_tlog,
        corked_clusters: v.corked_clusters,
        writes_paced: v.writes_paced,
        pacing_delay_ms: v.pacing_delay_ms,
        writes_refused: v.writes_refused,
        peak_backlog: v.peak_backlog,
        upload_rate: v.upload_rate,
    }))
}
