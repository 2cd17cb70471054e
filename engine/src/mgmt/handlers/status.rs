//! `status`: versions, uptime, data directory, backend, capacity, the cluster cache.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::engine_error;
use crate::fs::BackendConfig;
use crate::mgmt::{
    ClusterCacheReport, ErrorBody, MapCacheReport, RecoveryPointReport, Reply, Shared, SpaceReport,
    StatusReport, PROTOCOL_VERSION,
};

/// [`crate::mgmt::Request::Status`].
pub(super) fn status(shared: &Arc<Shared>) -> Result<Reply, ErrorBody> {
    let fs = &shared.fs;
    let s = fs.statfs().map_err(|e| engine_error(e, "statfs"))?;
    let backend = match &fs.config().backend {
        BackendConfig::Local { dir } => format!("local {}", dir.display()),
        BackendConfig::S3(s3) => format!("s3 {}", s3.location()),
    };
    let c = fs.cluster_cache_stats();
    let m = fs.map_cache_stats();
    let rp = fs.recovery_point();
    Ok(Reply::Status(StatusReport {
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        pid: std::process::id(),
        uptime_secs: shared.started.elapsed().as_secs(),
        data_dir: fs.config().data_dir.clone(),
        backend,
        fsid: fs.fsid(),
        space: SpaceReport {
            total_bytes: s.total_bytes,
            free_bytes: s.free_bytes,
            avail_bytes: s.avail_bytes,
            total_files: s.total_files,
            free_files: s.free_files,
        },
        requests: shared.requests.load(Ordering::Relaxed),
        cluster_cache: ClusterCacheReport {
            capacity: c.capacity,
            bytes: c.bytes,
            hits: c.hits,
            misses: c.misses,
        },
        map_cache: MapCacheReport {
            capacity: fs.config().map_cache_size,
            bytes: m.bytes,
            hits: m.hits,
            misses: m.misses,
        },
        not_on_backend: RecoveryPointReport {
            volume_bytes: rp.volume_bytes,
            volume_age_ms: rp.volumes_since.map(age_ms),
            file_bytes: rp.file_bytes,
            file_age_ms: rp.files_since.map(age_ms),
            namespace_image_age_ms: rp.namespace_image.map(age_ms),
            namespace_changed: rp.namespace_changed,
        },
    }))
}

/// Milliseconds since `t` (0 if the clock went back).
pub(super) fn age_ms(t: std::time::SystemTime) -> u64 {
    let age = std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or_default();
    u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
}
