//! A volume's counters ([`VolumeStats`]), as `strata volume info` shows them.

use std::sync::atomic::Ordering;

use crate::volume::state::Volume;

/// Counters of one volume since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VolumeStats {
    /// Calls of [`Volume::sync`] (COMMITs and stable writes).
    pub commits: u64,
    /// Group-commit rounds: each fsyncs for every commit that joined before it started.
    pub commit_rounds: u64,
    /// Of those, rounds that made durable only the write-ahead log (small windows).
    pub wal_rounds: u64,
    /// Writes after which a COMMIT was expected: the write-ahead log's writeback started then
    /// (`expected_commit.rs`).
    pub expected_commits: u64,
    /// fsync/fdatasync calls made (all sites).
    pub fsyncs: u64,
    /// Clusters appended to SCOs.
    pub clusters_written: u64,
    /// Mapped clusters unmapped: holes punched (DEALLOCATE) and clusters of zeros written.
    pub clusters_unmapped: u64,
    /// SCOs sealed.
    pub scos_sealed: u64,
    /// Bytes of the last TLog that the opening restart cut (a torn or unsynced tail).
    pub restart_cut_bytes: u64,
    /// Clusters read from SCOs in the local SCO cache.
    pub cache_hits: u64,
    /// Clusters read from the backend (ranged GETs) because their SCO was evicted.
    pub cache_misses: u64,
    /// Clusters of evicted SCOs served by the cluster cache instead of the backend.
    pub cluster_cache_hits: u64,
    /// SCOs evicted from the local SCO cache.
    pub scos_evicted: u64,
    /// TLogs replayed when the volume was opened (local TLogs after `applied_tlog`, or on a
    /// backend restart the TLogs after the checkpoint).
    pub tlogs_replayed: u64,
    /// Cluster entries still corked in memory (their TLog is not on the backend yet).
    pub corked_clusters: u64,
    /// The newest TLog whose effect is in the on-disk MetaDataStore (0: none).
    pub applied_tlog: u64,
    /// The newest metadata checkpoint on the backend as this volume knows it (0: none).
    pub checkpoint_tlog: u64,
    /// Metadata checkpoints written since the volume was opened.
    pub checkpoints: u64,
    /// Checkpoint pages written or removed since the volume was opened.
    pub checkpoint_pages: u64,
}

impl Volume {
    /// Counters since the volume was opened.
    pub(crate) fn stats(&self) -> VolumeStats {
        let c = &self.counters;
        let (corked, applied) = {
            let st = self.state.read();
            (st.ov.by_addr.len() as u64, st.applied_tlog)
        };
        VolumeStats {
            commits: c.commits.load(Ordering::Relaxed),
            commit_rounds: c.commit_rounds.load(Ordering::Relaxed),
            wal_rounds: c.wal_rounds.load(Ordering::Relaxed),
            expected_commits: c.expected_commits.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed) + self.mds_syncs.load(Ordering::Relaxed),
            clusters_written: c.clusters_written.load(Ordering::Relaxed),
            clusters_unmapped: c.clusters_unmapped.load(Ordering::Relaxed),
            scos_sealed: c.scos_sealed.load(Ordering::Relaxed),
            restart_cut_bytes: c.restart_cut_bytes.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            cluster_cache_hits: c.cluster_cache_hits.load(Ordering::Relaxed),
            scos_evicted: c.scos_evicted.load(Ordering::Relaxed),
            tlogs_replayed: c.tlogs_replayed.load(Ordering::Relaxed),
            corked_clusters: corked,
            applied_tlog: applied,
            checkpoint_tlog: c.checkpoint_tlog.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpoint_pages: c.checkpoint_pages.load(Ordering::Relaxed),
        }
    }
}
