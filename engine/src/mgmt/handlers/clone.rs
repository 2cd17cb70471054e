//! `volume_clone`, `volume_flatten` (a job), `volume_template`: clones and templates.

use std::sync::Arc;

use super::engine_error;
use super::volume::volume_handle;
use crate::error::Error;
use crate::mgmt::{
    spawn_job, ErrorBody, ErrorKind, Reply, Shared, SnapshotReport, VolumeCloneReport,
};

/// [`crate::mgmt::Request::VolumeClone`].
pub(super) fn clone(
    shared: &Arc<Shared>,
    source: String,
    path: String,
    snapshot: Option<String>,
) -> Result<Reply, ErrorBody> {
    let fs = &shared.fs;
    let src = volume_handle(shared, &source)?;
    let invalid = |message: String| ErrorBody {
        kind: ErrorKind::Invalid,
        message,
    };
    let (parent, name) = path
        .rsplit_once('/')
        .filter(|(_, n)| !n.is_empty())
        .ok_or_else(|| invalid(format!("{path:?}: expected an absolute path to a file")))?;
    let parent = if parent.is_empty() { "/" } else { parent };
    let dir = fs
        .lookup_path(parent)
        .map_err(|e| engine_error(e, parent))?;
    let (attr, snap) = fs
        .volume_clone(src, snapshot.as_deref(), dir.handle, name.as_bytes())
        .map_err(|e| match (e, &snapshot) {
            (Error::NotFound, Some(s)) => ErrorBody {
                kind: ErrorKind::NotFound,
                message: format!("{source} has no snapshot {s:?}"),
            },
            (Error::Exists, _) => ErrorBody {
                kind: ErrorKind::Exists,
                message: format!("{path} exists already"),
            },
            (e, _) => engine_error(e, &format!("cloning {source} as {path}")),
        })?;
    Ok(Reply::VolumeClone(VolumeCloneReport {
        path,
        ino: attr.handle.ino,
        size: attr.size,
        source,
        snapshot: snap.name,
    }))
}

/// [`crate::mgmt::Request::VolumeFlatten`]: a job; with `wait`, answered once it ended.
pub(super) fn flatten(shared: &Arc<Shared>, path: String, wait: bool) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let fs = shared.fs.clone();
    let p = path.clone();
    let job = spawn_job(shared, "flatten", path, move |job| {
        fs.volume_flatten_with(h, job)
            .map(drop)
            .map_err(|e| engine_error(e, &format!("flattening {p}")))
    })?;
    if wait {
        job.wait()?;
    }
    Ok(Reply::Job(job.report()))
}

/// [`crate::mgmt::Request::VolumeTemplate`]: the template's snapshot.
pub(super) fn template(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let s = shared.fs.volume_template(h).map_err(|e| match e {
        Error::Exists => ErrorBody {
            kind: ErrorKind::Exists,
            message: format!("{path} has a snapshot named \"template\" already"),
        },
        e => engine_error(e, &format!("making {path} a template")),
    })?;
    Ok(Reply::Snapshot(SnapshotReport {
        path,
        name: s.name,
        id: s.id,
        tlog: s.tlog,
        created_secs: s.created.secs,
        created_nsecs: s.created.nsecs,
        meta: s.meta,
        bytes_since_previous: s.bytes_since_previous,
        on_backend: s.on_backend,
    }))
}
