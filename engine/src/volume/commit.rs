//! Group commit (COMMIT and stable writes) and every fsync site of the VolumeDriver.
//!
//! A commit round makes durable either the write-ahead log alone, when every change since the
//! last round is logged there (`wal/`: a few writes), or, in this order, the SCOs sealed since
//! the last round, the open SCO and the open TLog; then the `sco/` and `tlog/` directories
//! when names were created or removed there. Concurrent callers share one round: a leader
//! fsyncs for every caller that arrived before it started. [`FsyncSite`] names each fsync so that the crash tests can switch
//! each off in turn and prove it necessary.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::volume::files::io_err;
use crate::volume::format::{sco_name, tlog_name};
use crate::volume::localfs::LocalFile;
use crate::volume::state::Volume;

/// Every place where the VolumeDriver fsyncs. Tests switch each off in turn to prove that each
/// one is needed (see `FORMATS.md`, "Durability contract").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FsyncSite {
    /// Commit: fdatasync of the open SCO.
    CommitSco,
    /// Commit: fdatasync of the open TLog.
    CommitTlog,
    /// Commit: fsync of the `sco/` directory after a SCO was created or removed.
    CommitScoDir,
    /// Commit: fsync of the `tlog/` directory after a TLog was created.
    CommitTlogDir,
    /// Closing a TLog: fdatasync of every SCO it sealed that is not durable yet, before the
    /// TLogClosed entry (a closed TLog only names durable SCOs).
    SealSco,
    /// Closing a TLog: fsync of the `sco/` directory (when a SCO was created since the last
    /// fsync of it) before the TLogClosed entry.
    SealScoDir,
    /// Commit: fdatasync of the SCOs sealed since the last commit that are not durable yet.
    CommitSealedSco,
    /// Closing a TLog: fdatasync of the TLog (with its TLogClosed entry) before the next TLog.
    CloseTlog,
    /// Creating a TLog: fdatasync of its header before any entry is written.
    CreateTlog,
    /// Restart: fdatasync of the last TLog after cutting its torn tail, before anything is
    /// written at the cut. Not in [`FsyncSite::ALL`]: since every cluster and seal of the open
    /// TLog is verified at restart, a cut tail that reappears after another crash is cut again
    /// (or holds only data never acknowledged); it is kept so that a cut is final.
    RestartCut,
    /// Uncork: the MetaDataStore (redb) commit that applies TLogs now on the backend, before
    /// their local files are deleted.
    MdsCommit,
    /// Commit: fdatasync of the write-ahead log, for a window wholly logged there (`wal/`).
    CommitWal,
    /// The write-ahead log's head made durable: at a TLog's close, at a restart after the
    /// replay, and when more than half the ring lies behind the durable head.
    WalHead,
    /// Restart: fdatasync of the files the write-ahead log's replay wrote, before its head
    /// moves past their records.
    WalReplay,
    /// Creating the write-ahead log: fdatasync of the new file before its rename, and fsync of
    /// the volume directory after it.
    WalCreate,
    /// Eviction: fsync of the `sco/` directory after a stub was renamed over a SCO, so that the
    /// space freed stays free. Not in [`FsyncSite::ALL`]: the whole SCO and its stub are both
    /// valid after a crash.
    EvictScoDir,
}

impl FsyncSite {
    /// Every site the crash tests prove necessary (all but [`FsyncSite::RestartCut`]).
    #[cfg(test)]
    pub(crate) const ALL: [FsyncSite; 14] = [
        FsyncSite::CommitSealedSco,
        FsyncSite::CommitSco,
        FsyncSite::CommitTlog,
        FsyncSite::CommitScoDir,
        FsyncSite::CommitTlogDir,
        FsyncSite::SealSco,
        FsyncSite::SealScoDir,
        FsyncSite::CloseTlog,
        FsyncSite::CreateTlog,
        FsyncSite::MdsCommit,
        FsyncSite::CommitWal,
        FsyncSite::WalHead,
        FsyncSite::WalReplay,
        FsyncSite::WalCreate,
    ];
}

impl Volume {
    pub(super) fn fsync(&self, site: FsyncSite, f: &dyn LocalFile, what: &str) -> Result<()> {
        if self.skip_fsync == Some(site) {
            return Ok(());
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        f.sync_data()
            .map_err(|e| io_err(format!("{what}: fdatasync"), e))
    }

    pub(super) fn fsync_dir(&self, site: FsyncSite, dir: &Path) -> Result<()> {
        if self.skip_fsync == Some(site) {
            return Ok(());
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fs
            .sync_dir(dir)
            .map_err(|e| io_err(format!("{}: fsync", dir.display()), e))
    }

    /// A client's COMMIT: [`Volume::sync`], counted in the pattern of writes and COMMITs
    /// (`expected_commit.rs`; the engine's own syncs, an upload's or a resize's, are not).
    pub(crate) fn commit(&self) -> Result<()> {
        self.pattern.committed();
        self.sync()
    }

    /// Makes every change completed before this call durable (COMMIT). Concurrent callers share
    /// one round of fsyncs: a leader fsyncs for every caller that arrived before it started.
    pub(crate) fn sync(&self) -> Result<()> {
        self.check_halted()?;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let target = self.state.read().write_gen;
        let mut g = self.sync.lock();
        loop {
            if g.durable_gen >= target {
                return Ok(());
            }
            if !g.leader {
                g.leader = true;
                break;
            }
            self.sync_cv.wait(&mut g);
            self.check_halted()?;
        }
        drop(g);
        let r = self.guarded(|| self.commit_round());
        let mut g = self.sync.lock();
        g.leader = false;
        if let Ok(gen) = r {
            g.durable_gen = g.durable_gen.max(gen);
        }
        self.sync_cv.notify_all();
        drop(g);
        r.map(|_| ())
    }

    /// One round of group commit; returns the write generation it made durable. A window
    /// wholly in the write-ahead log costs one fdatasync of it; any other is made durable in
    /// place (`wal/`, step 2).
    pub(super) fn commit_round(&self) -> Result<u64> {
        let (gen, window, wal, sealed, sco, tlog, sco_dir, tlog_dir) = {
            let mut st = self.state.write();
            let window = st.wal.take_window()?;
            if !window.whole {
                // Made durable in place below, and the log's head then moves past the window:
                // every byte of it must be in its file first (`deferred.rs`, rule 2).
                Self::flush_deferred(&mut st)?;
            }
            let s = (
                st.write_gen,
                window,
                st.wal.file(),
                st.unsynced.clone(),
                st.sco.as_ref().map(|s| (s.seq, s.file.clone())),
                (st.tlog.seq, st.tlog.file.clone()),
                st.sco_dir.pending(),
                st.tlog_dir.pending(),
            );
            s
        };
        self.counters.commit_rounds.fetch_add(1, Ordering::Relaxed);
        if window.whole {
            self.fsync(FsyncSite::CommitWal, &*wal, "write-ahead log")?;
            self.counters.wal_rounds.fetch_add(1, Ordering::Relaxed);
            self.state.write().wal.synced(window.written_head);
        } else {
            // Data first (every SCO holding clusters written before the round), then the TLog
            // that names it.
            for (seq, f) in &sealed {
                self.fsync(
                    FsyncSite::CommitSealedSco,
                    &**f,
                    &format!("SCO {}", sco_name(*seq)),
                )?;
            }
            if !sealed.is_empty() {
                // A TLog roll may have synced (and dropped) some of them meanwhile: harmless.
                let done: BTreeSet<u64> = sealed.iter().map(|(s, _)| *s).collect();
                self.state
                    .write()
                    .unsynced
                    .retain(|(s, _)| !done.contains(s));
            }
            if let Some((seq, f)) = sco {
                self.fsync(FsyncSite::CommitSco, &*f, &format!("SCO {}", sco_name(seq)))?;
            }
            self.fsync(
                FsyncSite::CommitTlog,
                &*tlog.1,
                &format!("TLog {}", tlog_name(tlog.0)),
            )?;
        }
        // The marks are recorded only once the fsyncs returned: until then a TLog close that
        // runs meanwhile still sees the names as not durable and fsyncs them itself.
        if let Some(mark) = sco_dir {
            self.fsync_dir(FsyncSite::CommitScoDir, &self.sco_dir)?;
            self.state.write().sco_dir.synced_up_to(mark);
        }
        if let Some(mark) = tlog_dir {
            self.fsync_dir(FsyncSite::CommitTlogDir, &self.tlog_dir)?;
            self.state.write().tlog_dir.synced_up_to(mark);
        }
        if !window.whole {
            // Everything before the window's end is durable in place now.
            let sync_now = self.state.write().wal.advance_head(window.end)?;
            if sync_now {
                self.fsync(FsyncSite::WalHead, &*wal, "write-ahead log head")?;
                self.state.write().wal.synced(window.end);
            }
        }
        Ok(gen)
    }

    /// True when changes made since the last completed commit may not be durable yet.
    pub(crate) fn is_dirty(&self) -> bool {
        let gen = self.state.read().write_gen;
        gen > self.sync.lock().durable_gen
    }
}
