//! `job_*`: the long operations — list, show, cancel.

use std::sync::Arc;

use crate::mgmt::{ErrorBody, JobListReport, Reply, Shared};

/// [`crate::mgmt::Request::JobList`].
pub(super) fn list(shared: &Arc<Shared>) -> Result<Reply, ErrorBody> {
    Ok(Reply::JobList(JobListReport {
        jobs: shared.fs.jobs().list(),
    }))
}

/// [`crate::mgmt::Request::JobShow`].
pub(super) fn show(shared: &Arc<Shared>, id: u64) -> Result<Reply, ErrorBody> {
    Ok(Reply::Job(shared.fs.jobs().show(id)?))
}

/// [`crate::mgmt::Request::JobCancel`].
pub(super) fn cancel(shared: &Arc<Shared>, id: u64) -> Result<Reply, ErrorBody> {
    Ok(Reply::Job(shared.fs.jobs().cancel(id)?))
}
