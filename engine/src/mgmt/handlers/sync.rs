//! `sync`: everything committed so far to the backend, as a job; waited for or not.

use std::sync::Arc;
use std::time::Instant;

use super::engine_error;
use crate::mgmt::{spawn_job, ErrorBody, Reply, Shared, SyncReport};

/// [`crate::mgmt::Request::Sync`].
pub(super) fn sync(shared: &Arc<Shared>, wait: bool) -> Result<Reply, ErrorBody> {
    let t = Instant::now();
    let fs = shared.fs.clone();
    let job = spawn_job(shared, "sync", "/".into(), move |job| {
        fs.flush_to_backend_with(job)
            .map_err(|e| engine_error(e, "sync"))
    })?;
    if wait {
        job.wait()?;
    }
    Ok(Reply::Sync(SyncReport {
        waited: wait,
        elapsed_ms: if wait {
            u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        },
        job: Some(job.report().id),
    }))
}
