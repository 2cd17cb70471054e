//! What the volume tells the upload pipeline: closing everything for an upload, how old the
//! oldest change off the backend is, the bytes not yet on the backend, upload progress, and the
//! MetaDataStore's checkpoint bookkeeping.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::volume::format::TLOG_HEADER_LEN;
use crate::volume::localfs::LocalFs;
use crate::volume::state::Volume;

impl Volume {
    /// Seals the open SCO (if it holds clusters) and closes the open TLog (if it holds
    /// entries), durably, so that everything written so far is in closed TLogs. Returns the
    /// sequence number of the TLog now open: every TLog before it is closed.
    pub(in crate::volume) fn close_for_backup(&self) -> Result<u64> {
        Ok(self.close_open_tlog()?.0 + 1)
    }

    /// [`Volume::close_for_backup`], returning the last closed TLog (0: none) and the clusters
    /// the volume had logged up to its end, both taken at the boundary.
    pub(in crate::volume) fn close_open_tlog(&self) -> Result<(u64, u64)> {
        let at = self.guarded(|| {
            let mut st = self.state.write();
            if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
                self.seal_open_sco(&mut st)?;
            }
            if st.tlog.len > TLOG_HEADER_LEN as u64 {
                self.roll_tlog(&mut st)?;
            }
            st.write_gen += 1;
            Ok((st.tlog.seq - 1, st.logged))
        })?;
        self.start_sealed_writeback();
        self.sync()?;
        Ok(at)
    }

    /// How long the oldest change not in a closed TLog has waited (None when there is none):
    /// the open TLog's first entry, or the open SCO's first cluster. Only closed TLogs (and the
    /// SCOs they seal) are uploaded, so this is how long data may have been kept off the backend.
    pub(in crate::volume) fn unuploaded_age(&self) -> Option<std::time::Duration> {
        let st = self.state.read();
        let sco = st
            .sco
            .as_ref()
            .filter(|s| s.clusters > 0)
            .map(|s| s.created.elapsed());
        let tlog = st.tlog.first_entry.map(|t| t.elapsed());
        sco.max(tlog)
    }

    /// Forgets the byte counts of TLogs up to `last`, now on the backend.
    pub(in crate::volume) fn on_backend_up_to(&self, last: u64) {
        let mut st = self.state.write();
        st.tlog_bytes.retain(|seq, _| *seq > last);
        st.tlog_since.retain(|seq, _| *seq > last);
        st.backend_tlog = st.backend_tlog.max(last);
    }

    /// When the oldest change not known to be on the backend was logged (None: everything
    /// logged is there): what a loss of the local disk would lose reaches back to it.
    pub(crate) fn not_on_backend_since(&self) -> Option<std::time::SystemTime> {
        self.state.read().tlog_since.values().min().copied()
    }

    /// Cluster bytes written that are not known to be on the backend yet (all of them until
    /// the first backup call has read the backend manifest). What `Write_Buffer_Size` limits.
    #[cfg(test)]
    pub(crate) fn bytes_not_on_backend(&self) -> u64 {
        self.state.read().tlog_bytes.values().sum()
    }

    /// The newest SCO sealed by a TLog up to `tlog` (0: none). SCOs are sealed in sequence
    /// order, so every SCO up to it is covered by those TLogs.
    pub(crate) fn newest_sco_sealed_by(&self, tlog: u64) -> u64 {
        let st = self.state.read();
        st.scos
            .iter()
            .rev()
            .find(|(_, e)| e.tlog <= tlog)
            .map_or(0, |(s, _)| *s)
    }

    pub(in crate::volume) fn mds_checkpoint_tlog(&self) -> Result<u64> {
        self.mds.checkpoint_tlog()
    }

    pub(in crate::volume) fn mds_snapshot(&self) -> Result<crate::volume::mds::store::SnapshotTx> {
        self.mds.begin_snapshot()
    }

    pub(in crate::volume) fn mds_checkpoint_done(
        &self,
        (n, id): (u64, u64),
        written: &[u64],
        pages: &[(u64, u64)],
    ) -> Result<()> {
        self.mds.checkpoint_done((n, id), written, pages)?;
        self.counters.checkpoint_tlog.store(n, Ordering::Relaxed);
        Ok(())
    }

    pub(in crate::volume) fn counters_checkpoint(&self, pages: u64) {
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .checkpoint_pages
            .fetch_add(pages, Ordering::Relaxed);
    }

    /// Bytes of SCOs and TLogs this volume uploaded to the backend since it was opened: its
    /// upload progress (the write path's pacing watches it).
    pub(crate) fn uploaded_bytes(&self) -> u64 {
        self.counters.uploaded_bytes.load(Ordering::Relaxed)
    }

    /// Records `n` bytes uploaded (an SCO or a TLog PUT that succeeded).
    pub(in crate::volume) fn note_uploaded(&self, n: u64) {
        self.counters.uploaded_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Sequence number of the open TLog.
    pub(in crate::volume) fn open_tlog_seq(&self) -> u64 {
        self.state.read().tlog.seq
    }

    /// The local `sco/` and `tlog/` directories.
    pub(in crate::volume) fn dirs(&self) -> (&Path, &Path) {
        (&self.sco_dir, &self.tlog_dir)
    }

    /// The local-file layer.
    pub(in crate::volume) fn local_fs(&self) -> &Arc<dyn LocalFs> {
        &self.fs
    }
}
