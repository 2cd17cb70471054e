//! The upload pipeline of one volume: the only upload loop.

use std::sync::Arc;
use std::time::Duration;

use strata_backend::ObjectStore;
use tokio::sync::{watch, Semaphore};

use super::backlog::Backlog;
use super::sco_cache::ScoCache;
use crate::volume::Volume;

/// Longest wait between two failed pipeline passes.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The background pipeline of one volume, the only upload loop: a pass as soon as a TLog
/// closes and every `interval` (a quarter of `max_age`, between 100 ms and 5 s) uploads closed
/// TLogs, their SCOs and the manifest, sealing a partial SCO older than `max_age` first; failures back off exponentially
/// (from `interval`, doubling, capped at 30 s, plus up to a quarter of jitter) until the
/// backend answers again. Nothing is dropped meanwhile: what is not uploaded stays local. A
/// final error (the backend refused a conditional write: another writer) is never retried: the
/// loop stops, logging it. At most [`super::UPLOADS`] passes run at once over all volumes.
pub(super) async fn pipeline(
    vol: Arc<Volume>,
    store: Arc<dyn ObjectStore>,
    uploads: Arc<Semaphore>,
    backlog: Arc<Backlog>,
    cache: Arc<ScoCache>,
    max_age: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let interval = (max_age / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut delay = interval;
    // Retries of many volumes after one outage spread out instead of arriving together.
    // Seeded by the whole volume id: the fsid half alone is the same for every volume.
    let half =
        |r: std::ops::Range<usize>| u64::from_le_bytes(vol.id().0[r].try_into().unwrap_or([0; 8]));
    let seed = half(0..8) ^ half(8..16).rotate_left(32);
    let mut jitter = crate::volume::SimRng::new(seed ^ 0x5ca1_ab1e);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // A writer waits for room, or a TLog closed: a pass now, unless the backend is
            // failing (the backoff stands).
            _ = backlog.wanted(), if !failing => {}
            _ = vol.tlog_closed(), if !failing => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        if *stop.borrow() {
            return;
        }
        let Ok(_permit) = uploads.acquire().await else {
            return;
        };
        let mut pass = vol.backup_aged(&*store, max_age).await;
        if matches!(&pass, Ok(r) if r.tlogs == 0) && backlog.above_soft(vol.uploaded_bytes()) {
            // Above the soft mark with no closed TLog to upload: the backlog is all in the open
            // TLog (a write buffer smaller than a few TLogs), which would otherwise only go up
            // at SCO_Max_Age while writers wait. Close it now.
            pass = vol.backup(&*store, true).await;
        }
        failing = pass.is_err();
        match pass {
            // Something went up: go on at once while a backlog is left, so throttled writers
            // wait as little as possible.
            Ok(r) if r.bytes > 0 => delay = Duration::from_millis(1),
            Ok(_) => delay = interval,
            Err(e) if e.is_final() => {
                // Another writer changed this volume's objects on the backend: retrying would
                // overwrite its work. Uploads of this volume stop; writes go on locally up to
                // the write buffer, then get DELAY, and nothing is lost (it stays local).
                tracing::error!(volume = %vol.id(), error = %e, "volume upload stopped: another writer changed the backend; resolve it, then restart the gateway");
                return;
            }
            Err(e) => {
                let next = delay
                    .saturating_mul(2)
                    .clamp(interval, BACKOFF_CAP.max(interval));
                let spread = u64::try_from(next.as_millis() / 4).unwrap_or(u64::MAX);
                delay = next + Duration::from_millis(jitter.below(spread.saturating_add(1)));
                tracing::warn!(volume = %vol.id(), error = %e, retry_in = ?delay, "volume upload failed");
            }
        }
        backlog.refresh(&vol).await;
        // SCOs that just became disposable may be evicted now.
        cache.run_async().await;
    }
}
