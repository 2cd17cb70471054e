//! `snapshot_*`: a volume's snapshots — create, list, info, rollback, delete.

use std::sync::Arc;

use super::engine_error;
use super::volume::volume_handle;
use crate::error::Error;
use crate::mgmt::{
    spawn_job, ErrorBody, ErrorKind, Reply, Shared, SnapshotDeleteReport, SnapshotListReport,
    SnapshotReport,
};
use crate::types::Snapshot;

fn report(path: &str, s: Snapshot) -> SnapshotReport {
    SnapshotReport {
        path: path.to_string(),
        name: s.name,
        id: s.id,
        tlog: s.tlog,
        created_secs: s.created.secs,
        created_nsecs: s.created.nsecs,
        meta: s.meta,
        bytes_since_previous: s.bytes_since_previous,
        on_backend: s.on_backend,
    }
}

/// A snapshot operation's error, saying which snapshot of which volume.
fn snapshot_error(e: Error, path: &str, name: &str) -> ErrorBody {
    match e {
        Error::NotFound => ErrorBody {
            kind: ErrorKind::NotFound,
            message: format!("{path} has no snapshot {name:?}"),
        },
        Error::Exists => ErrorBody {
            kind: ErrorKind::Exists,
            message: format!("{path} already has a snapshot {name:?}"),
        },
        e => engine_error(e, &format!("snapshot {name:?} of {path}")),
    }
}

/// [`crate::mgmt::Request::SnapshotCreate`].
pub(super) fn create(
    shared: &Arc<Shared>,
    path: String,
    name: String,
    meta: Vec<(String, String)>,
) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let s = shared
        .fs
        .snapshot_create(h, &name, meta)
        .map_err(|e| snapshot_error(e, &path, &name))?;
    Ok(Reply::Snapshot(report(&path, s)))
}

/// [`crate::mgmt::Request::SnapshotList`].
pub(super) fn list(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let all = shared
        .fs
        .snapshot_list(h)
        .map_err(|e| engine_error(e, &format!("snapshots of {path}")))?;
    Ok(Reply::SnapshotList(SnapshotListReport {
        snapshots: all.into_iter().map(|s| report(&path, s)).collect(),
        path,
    }))
}

/// [`crate::mgmt::Request::SnapshotInfo`].
pub(super) fn info(shared: &Arc<Shared>, path: String, name: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let s = shared
        .fs
        .snapshot_info(h, &name)
        .map_err(|e| snapshot_error(e, &path, &name))?;
    Ok(Reply::Snapshot(report(&path, s)))
}

/// [`crate::mgmt::Request::SnapshotDelete`].
pub(super) fn delete(shared: &Arc<Shared>, path: String, name: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    shared
        .fs
        .snapshot_delete(h, &name)
        .map_err(|e| snapshot_error(e, &path, &name))?;
    Ok(Reply::SnapshotDelete(SnapshotDeleteReport { path, name }))
}

/// [`crate::mgmt::Request::SnapshotRollback`]: a job; with `wait`, answered once it ended.
pub(super) fn rollback(
    shared: &Arc<Shared>,
    path: String,
    name: String,
    force: bool,
    wait: bool,
) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    // Checked before the job starts, so that a missing snapshot is the request's error.
    shared
        .fs
        .snapshot_info(h, &name)
        .map_err(|e| snapshot_error(e, &path, &name))?;
    let fs = shared.fs.clone();
    let (p, n) = (path.clone(), name.clone());
    let job = spawn_job(shared, "rollback", format!("{path}@{name}"), move |job| {
        fs.snapshot_rollback_with(h, &n, force, job)
            .map(drop)
            .map_err(|e| snapshot_error(e, &p, &n))
    })?;
    if !wait {
        return Ok(Reply::Job(job.report()));
    }
    job.wait()?;
    let s = shared
        .fs
        .snapshot_info(h, &name)
        .map_err(|e| snapshot_error(e, &path, &name))?;
    Ok(Reply::Snapshot(report(&path, s)))
}
