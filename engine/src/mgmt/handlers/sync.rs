//! `sync`: everything committed so far to the backend, waited for or in the background.

use std::sync::Arc;
use std::time::Instant;

use super::engine_error;
use crate::mgmt::{ActiveGuard, ErrorBody, ErrorKind, Reply, Shared, SyncReport, MAX_CONNECTIONS};

/// [`crate::mgmt::Request::Sync`].
pub(super) fn sync(shared: &Arc<Shared>, wait: bool) -> Result<Reply, ErrorBody> {
    let fs = &shared.fs;
    if wait {
        let t = Instant::now();
        fs.flush_to_backend().map_err(|e| engine_error(e, "sync"))?;
        return Ok(Reply::Sync(SyncReport {
            waited: true,
            elapsed_ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
        }));
    }
    // One more than the connection limit: the connection asking holds a slot already.
    let guard = ActiveGuard::enter(shared, MAX_CONNECTIONS + 1).ok_or_else(|| ErrorBody {
        kind: ErrorKind::Busy,
        message: "too many management requests in progress; try again".into(),
    })?;
    let fs = fs.clone();
    std::thread::Builder::new()
        .name("strata-mgmt-sync".into())
        .spawn(move || {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fs.flush_to_backend()));
            match r {
                Ok(Ok(())) => tracing::info!("background sync done"),
                Ok(Err(e)) => tracing::warn!(error = %e, "background sync failed"),
                Err(_) => tracing::warn!("background sync panicked"),
            }
            drop(guard);
        })
        .map_err(|e| ErrorBody {
            kind: ErrorKind::Io,
            message: format!("cannot start the sync: {e}"),
        })?;
    Ok(Reply::Sync(SyncReport {
        waited: false,
        elapsed_ms: 0,
    }))
}
