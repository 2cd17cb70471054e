//! One handler per resource: `status` (the gateway), `sync` (everything to the backend),
//! `volume` (one volume's state), `snapshot` (a volume's snapshots), `job` (long operations),
//! `fsck` (the backend checked), `offload` (the VAAI-NAS-style verbs). Each takes the request's fields and the server's shared
//! state and returns the reply or the error to answer.

mod clone;
mod fsck;
mod job;
mod offload;
mod snapshot;
mod status;
mod sync;
mod volume;

use std::sync::Arc;

#[cfg(test)]
use std::sync::atomic::Ordering;

use super::{ErrorBody, ErrorKind, Reply, Request, Shared};
use crate::error::Error;

/// Runs the handler of `req`.
pub(super) fn dispatch(req: Request, shared: &Arc<Shared>) -> Result<Reply, ErrorBody> {
    #[cfg(test)]
    if shared.panic_next.swap(false, Ordering::SeqCst) {
        panic!("injected handler panic");
    }
    match req {
        Request::Status => status::status(shared),
        Request::Sync { wait } => sync::sync(shared, wait),
        Request::VolumeInfo { path } => volume::volume_info(shared, path),
        Request::Scrub { path, wait } => volume::scrub(shared, path, wait),
        Request::Fsck { deep, repair, wait } => fsck::fsck(shared, deep, repair, wait),
        Request::VolumeList { all } => volume::volume_list(shared, all),
        Request::VolumeClone {
            source,
            path,
            snapshot,
        } => clone::clone(shared, source, path, snapshot),
        Request::VolumeFlatten { path, wait } => clone::flatten(shared, path, wait),
        Request::VolumeTemplate { path } => clone::template(shared, path),
        Request::VolumeCreate { path, size } => volume::volume_create(shared, path, size),
        Request::SnapshotCreate { path, name, meta } => snapshot::create(shared, path, name, meta),
        Request::SnapshotList { path } => snapshot::list(shared, path),
        Request::SnapshotInfo { path, name } => snapshot::info(shared, path, name),
        Request::SnapshotDelete { path, name } => snapshot::delete(shared, path, name),
        Request::SnapshotRollback {
            path,
            name,
            force,
            wait,
        } => snapshot::rollback(shared, path, name, force, wait),
        Request::JobList => job::list(shared),
        Request::JobShow { id } => job::show(shared, id),
        Request::JobCancel { id } => job::cancel(shared, id),
        Request::OffloadClone {
            source,
            path,
            full,
            wait,
        } => offload::offload_clone(shared, source, path, full, wait),
        Request::OffloadReserve { path } => offload::offload_reserve(shared, path),
        Request::OffloadStats { path } => offload::offload_stats(shared, path),
    }
}

/// The kind of an engine error on the wire.
pub fn error_kind(e: &Error) -> ErrorKind {
    match e {
        Error::NotFound | Error::NoXattr => ErrorKind::NotFound,
        Error::XattrTooBig => ErrorKind::Invalid,
        Error::Exists => ErrorKind::Exists,
        Error::NotDir => ErrorKind::NotDir,
        Error::IsDir => ErrorKind::IsDir,
        Error::NotEmpty => ErrorKind::NotEmpty,
        Error::NameTooLong => ErrorKind::NameTooLong,
        Error::Invalid(_) => ErrorKind::Invalid,
        Error::Stale => ErrorKind::Stale,
        Error::NoSpace => ErrorKind::NoSpace,
        Error::Delay => ErrorKind::Delay,
        Error::ReadOnly(_) => ErrorKind::ReadOnly,
        Error::NotSupported(_) => ErrorKind::NotSupported,
        Error::Io(_) | Error::Format(_) | Error::Backend { .. } => ErrorKind::Io,
        Error::NotOwner(_) => ErrorKind::NotOwner,
    }
}

/// An engine error as an answer, with what was being done.
fn engine_error(e: Error, context: &str) -> ErrorBody {
    ErrorBody {
        kind: error_kind(&e),
        message: format!("{context}: {e}"),
    }
}
