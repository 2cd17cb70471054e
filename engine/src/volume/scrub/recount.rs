//! Step 0 of a pass: when the MetaDataStore does not know what the TLogs up to
//! `liveness_from` superseded (a store from before scrubbing, or a backend restart from a
//! checkpoint), those TLogs are read back from the backend and replayed
//! (`mds/recount.rs`), so that garbage older than this run is found too.

use crate::error::Result;
use crate::volume::files::fmt_err;
use crate::volume::format::{parse_tlog, tlog_name, Entry};
use crate::volume::state::{Remote, Volume};

impl Volume {
    /// Replays the TLogs the liveness tables do not cover, if any; returns the positions
    /// found dead. Paced unless `bandwidth` is 0 (unbounded): the replay costs CPU and redb
    /// writes more than bytes, so after each TLog it rests (`super::rest_after`).
    pub(super) fn recount(&self, remote: &Remote, bandwidth: u64) -> Result<u64> {
        let upto = self.mds.liveness_from()?;
        if upto == 0 {
            return Ok(0);
        }
        let base = self.lineage.read().base_tlog();
        self.mds.recount_start()?;
        for t in base + 1..=upto {
            let started = std::time::Instant::now();
            let what = format!("scrub: recount: backend TLog {}", tlog_name(t));
            let (_, b) = self.tlog_object(remote, &what, t)?;
            let parsed = parse_tlog(&what, &b, self.id, t, false).map_err(fmt_err)?;
            let entries: Vec<Entry> = parsed.entries.into_iter().map(|(_, e)| e).collect();
            self.mds.recount_tlog(t, &entries)?;
            super::rest_after(bandwidth, started.elapsed());
        }
        let _views = self.rollback_lock.lock();
        let _map = self.uncork_lock.lock();
        let found = self.mds.recount_finish(base)?;
        tracing::info!(volume = %self.id, tlogs = upto - base, found, "scrub: recounted what older TLogs superseded");
        Ok(found)
    }
}
