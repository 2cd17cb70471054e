//! Eviction from the SCO cache: a disposable SCO's file is replaced by its header stub,
//! written aside, made durable and renamed over it (never cut in place: the local backend may
//! hold the very same inode as its object). The policy choosing what to evict is in `cache`.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::volume::commit::FsyncSite;
use crate::volume::files::io_err;
use crate::volume::format::{
    sco_name, sco_stub_name, ScoFooter, ScoHeader, VolumeId, SCO_HEADER_LEN,
};
use crate::volume::localfs::LocalFs;
use crate::volume::state::{ScoEntry, State, Volume};

/// A disposable SCO that [`Volume::evict_sco`] may evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvictionCandidate {
    /// The SCO's sequence number.
    pub sco: u64,
    /// Reads that touched it since the volume was opened.
    pub reads: u64,
    /// When it entered the cache.
    pub since: std::time::Instant,
    /// Bytes eviction frees.
    pub bytes: u64,
}

/// Opens `path`; `None` if it does not exist (other errors are errors).
/// Writes the header stub of SCO `seq` (what an evicted SCO's local file holds) to a new file
/// at `path`, replacing one a crash left there, and makes its bytes durable (its name is
/// durable only after the directory's fsync).
fn write_sco_stub(fs: &dyn LocalFs, path: &Path, id: VolumeId, seq: u64) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path.display(), e)),
    }
    let f = fs.create_new(path).map_err(|e| io_err(path.display(), e))?;
    f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
        .map_err(|e| io_err(path.display(), e))?;
    f.sync_data().map_err(|e| io_err(path.display(), e))
}

/// Replaces SCO `seq`'s local file by its header stub (written aside, then renamed over it),
/// never changing the old file's bytes: it may be the backend's object too.
pub(super) fn replace_sco_by_stub(
    fs: &dyn LocalFs,
    sco_dir: &Path,
    id: VolumeId,
    seq: u64,
) -> Result<()> {
    let stub = sco_dir.join(sco_stub_name(seq));
    write_sco_stub(fs, &stub, id, seq)?;
    let path = sco_dir.join(sco_name(seq));
    fs.rename(&stub, &path)
        .map_err(|e| io_err(path.display(), e))
}

impl Volume {
    /// Bytes of the volume's local SCO files: sealed SCOs (an evicted one as its header stub)
    /// and the open SCO.
    pub(crate) fn sco_cache_bytes(&self) -> u64 {
        let st = self.state.read();
        let open = st.sco.as_ref().map_or(0, |s| ScoFooter::offset(s.clusters));
        open + st.scos.values().map(ScoEntry::local_bytes).sum::<u64>()
    }

    /// The disposable SCOs: sealed, still in the local cache, and on the backend (the manifest
    /// names the TLog that sealed them, and the SCO was uploaded before that TLog).
    pub(crate) fn eviction_candidates(&self) -> Vec<EvictionCandidate> {
        let st = self.state.read();
        st.scos
            .iter()
            .filter(|(_, e)| !e.evicted && e.tlog <= st.backend_tlog)
            .map(|(sco, e)| EvictionCandidate {
                sco: *sco,
                reads: e.reads.load(Ordering::Relaxed),
                since: e.since,
                bytes: e.local_bytes() - SCO_HEADER_LEN,
            })
            .collect()
    }

    /// Evicts SCO `sco` from the local cache if it is disposable: its file is replaced by the
    /// header (a stub that tells a restart the data is on the backend) and later reads of its
    /// clusters fetch them from the backend. Returns the bytes freed from the cache (0 when it
    /// was not disposable).
    ///
    /// The SCO's file is never cut in place: the local store may hold that very file as the
    /// backend's object (it hard-links sealed SCOs instead of copying their bytes). The stub is
    /// written aside, made durable and renamed over the SCO, so a crash leaves the whole SCO or
    /// the stub (and at worst a stray stub beside the SCO, which the next restart removes).
    pub(crate) fn evict_sco(&self, sco: u64) -> Result<u64> {
        self.check_halted()?;
        let disposable = |st: &State| {
            st.scos
                .get(&sco)
                .is_some_and(|e| !e.evicted && e.tlog <= st.backend_tlog)
        };
        if !disposable(&self.state.read()) {
            return Ok(0);
        }
        let stub = self.sco_dir.join(sco_stub_name(sco));
        write_sco_stub(&*self.fs, &stub, self.id, sco)?;
        let freed = {
            // Under the write lock: no reader opens the SCO's name while it changes files.
            let mut st = self.state.write();
            if !disposable(&st) {
                drop(st);
                self.fs
                    .remove_file(&stub)
                    .map_err(|e| io_err(stub.display(), e))?;
                self.state.write().sco_dir.touch();
                return Ok(0);
            }
            let path = self.sco_dir.join(sco_name(sco));
            self.fs
                .rename(&stub, &path)
                .map_err(|e| io_err(path.display(), e))?;
            // Durable at the next fsync of `sco/`: [`Volume::sync_evictions`] after a batch.
            st.sco_dir.touch();
            self.handles.lock().remove(sco);
            let Some(e) = st.scos.get_mut(&sco) else {
                return Ok(0);
            };
            e.evicted = true;
            e.local_bytes_before_eviction()
        };
        self.counters.scos_evicted.fetch_add(1, Ordering::Relaxed);
        Ok(freed)
    }

    /// Makes the evictions done so far durable (one fsync of `sco/` for a batch of them). Not
    /// needed for correctness — a whole SCO and its stub are both valid after a crash — but the
    /// space freed is only reliably free once the stubs' names are durable.
    pub(crate) fn sync_evictions(&self) -> Result<()> {
        let Some(mark) = self.state.read().sco_dir.pending() else {
            return Ok(());
        };
        self.fsync_dir(FsyncSite::EvictScoDir, &self.sco_dir)?;
        self.state.write().sco_dir.synced_up_to(mark);
        Ok(())
    }
}
