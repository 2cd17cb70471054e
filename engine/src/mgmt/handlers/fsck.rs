//! [`crate::mgmt::Request::Fsck`]: the backend checked against the namespace, as a job whose
//! result is the [`crate::mgmt::FsckReport`].

use std::sync::Arc;

use super::engine_error;
use crate::fs::FsckOptions;
use crate::mgmt::{spawn_job, ErrorBody, Reply, Shared};

/// Starts the job; with `wait`, answers once it ended.
pub(super) fn fsck(
    shared: &Arc<Shared>,
    deep: bool,
    repair: bool,
    wait: bool,
) -> Result<Reply, ErrorBody> {
    let fs = shared.fs.clone();
    let job = spawn_job(shared, "fsck", "/".into(), move |job| {
        let rep = fs
            .fsck_with(FsckOptions { deep, repair }, job)
            .map_err(|e| engine_error(e, "fsck"))?;
        let v = serde_json::to_value(&rep).map_err(|e| ErrorBody {
            kind: crate::mgmt::ErrorKind::Internal,
            message: format!("fsck report: {e}"),
        })?;
        job.set_result(v);
        Ok(())
    })?;
    if wait {
        job.wait()?;
    }
    Ok(Reply::Job(job.report()))
}
