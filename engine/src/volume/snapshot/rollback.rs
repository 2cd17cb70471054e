//! Rolling a volume back to a snapshot. The volume's history stays one line of TLogs: the
//! rollback appends entries that point every cluster back at the data the snapshot saw, so
//! every snapshot, older or newer, still names the TLog boundary it was taken at and reads as
//! it did. Nothing is copied.
//!
//! 1. Everything written so far goes to the backend (a `backup` with everything): the TLogs up
//!    to the snapshot's are read from there.
//! 2. The volume as of the snapshot's TLog N is rebuilt in `<dir>/rollback/` from the backend
//!    (a backend restart that stops at N; a checkpoint after N is not used).
//! 3. With the upload pipeline held off and the volume's lock taken (writers wait): the open
//!    SCO is sealed and the open TLog closed, so the rollback starts in a TLog T of its own;
//!    the marker `<dir>/rolling-back` (T and the next SCO number) is made durable.
//! 4. The volume is compared with the rebuilt one, 65,536 clusters at a time: a `Resize` to the
//!    snapshot's size, then a `Remap` for every cluster whose location differs, and for every
//!    cluster the snapshot did not have, a `Remap` to one zero cluster written in T (a hole
//!    reads as zeros either way). Long rollbacks roll to further TLogs.
//! 5. Still under the lock: the last TLog is closed (its SCOs fsynced first) and the names
//!    made durable; then the marker is removed (durably): this is the commit point. A restart that finds the marker cuts the TLogs from T on back to an empty
//!    T and removes the SCOs from the recorded number on: the volume is as before the rollback.
//! 6. `<dir>/rollback/` is removed (a restart removes a leftover one).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::progress::{cancelled_error, Progress};
use crate::volume::commit::FsyncSite;
use crate::volume::files::{self, io_err};
use crate::volume::format::{ClusterHash, Entry, CLUSTER_SIZE, CLUSTER_SIZE_U64, TLOG_HEADER_LEN};
use crate::volume::localfs::LocalFs;
use crate::volume::mds::store::Loc;
use crate::volume::snapshot::SnapshotInfo;
use crate::volume::state::{State, Volume};
use crate::volume::{backend, layout};

/// Clusters compared (and entries appended) at a time.
const STEP: u64 = 65_536;

impl Volume {
    /// Rolls the volume back to snapshot `name` (steps in the module doc): it then reads exactly
    /// as it did when the snapshot was taken; every snapshot is kept. Needs the backend.
    pub(crate) fn snapshot_rollback(&self, name: &str, p: &dyn Progress) -> Result<SnapshotInfo> {
        // One rollback of a volume at a time (they would share `rollback/` and the marker).
        let Some(_one) = self.rollback_lock.try_lock() else {
            return Err(Error::Invalid(
                "a rollback of this volume is running already".into(),
            ));
        };
        self.check_writable()?;
        let snap = self.snapshot_info(name)?;
        let n = snap.record.tlog;
        let remote = self
            .remote
            .lock()
            .clone()
            .ok_or_else(|| Error::Io("a rollback needs the volume's backend".into()))?;
        let dir = self
            .sco_dir
            .parent()
            .ok_or_else(|| Error::Io("volume directory".into()))?
            .to_path_buf();
        // 1. (Steps reported: the upload, the rebuild, then each chunk compared.)
        p.step(0, 3);
        remote.rt.block_on(self.backup(&*remote.store, true))?;
        if p.cancelled() {
            return Err(cancelled_error());
        }
        p.step(1, 3);
        // 2.
        let tmp = layout::rollback_dir(&dir);
        remove_rollback_dir(&*self.fs, &tmp)?;
        let target = remote.rt.block_on(Volume::restore_at(
            &*remote.store,
            self.fs.clone(),
            &tmp,
            self.id,
            self.opts,
            Some(n),
        ));
        let r = target.and_then(|target| {
            if p.cancelled() {
                return Err(cancelled_error());
            }
            p.step(2, 3);
            // 3.
            let _uploads = self.backend.blocking_lock();
            let marker = layout::rollback_marker(&dir);
            // 4 and 5 with the lock held throughout: no write lands in the rollback's TLogs
            // before its commit point (an undo would remove it). A failure halts the volume: a
            // restart undoes or keeps the rollback by its marker.
            let r = self.guarded(|| {
                let mut st = self.state.write();
                self.revert_to(&mut st, &target, &marker, p)?;
                self.commit_rollback(&mut st, &marker)
            });
            drop(target);
            r
        });
        // 6. After the commit point nothing fails the rollback any more.
        if let Err(e) = remove_rollback_dir(&*self.fs, &tmp) {
            tracing::warn!(volume = %self.id, error = %e, "the rebuilt volume of a rollback was not removed; the next restart removes it");
        }
        r?;
        // Reservations past the snapshot's size go with the clusters (accounting only).
        if let Err(e) = self.unreserve(self.size().div_ceil(CLUSTER_SIZE_U64), u64::MAX) {
            tracing::warn!(volume = %self.id, error = %e, "reservations past the rolled-back size were not dropped");
        }
        Ok(self.snapshot_info(name).unwrap_or(snap))
    }

    /// Step 5 under the volume's lock: the rollback's last TLog is closed (its SCOs fsynced
    /// first), the names of its SCOs and TLogs made durable, then the marker removed durably —
    /// the commit point. Its entries are then in closed TLogs only (a build that does not know
    /// Remap refuses them rather than cutting them as a torn tail).
    fn commit_rollback(&self, st: &mut State, marker: &Path) -> Result<()> {
        if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
            self.seal_open_sco(st)?;
        }
        if st.tlog.len > TLOG_HEADER_LEN as u64 {
            self.roll_tlog(st)?;
        }
        if let Some(mark) = st.sco_dir.pending() {
            self.fsync_dir(FsyncSite::CommitScoDir, &self.sco_dir)?;
            st.sco_dir.synced_up_to(mark);
        }
        if let Some(mark) = st.tlog_dir.pending() {
            self.fsync_dir(FsyncSite::CommitTlogDir, &self.tlog_dir)?;
            st.tlog_dir.synced_up_to(mark);
        }
        files::remove_durably(&*self.fs, marker)
    }

    /// Steps 3 and 4, under the volume's lock.
    fn revert_to(
        &self,
        st: &mut State,
        target: &Volume,
        marker: &Path,
        p: &dyn Progress,
    ) -> Result<()> {
        if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
            self.seal_open_sco(st)?;
        }
        if st.tlog.len > TLOG_HEADER_LEN as u64 {
            self.roll_tlog(st)?;
        }
        let f = self
            .fs
            .create_new(marker)
            .map_err(|e| io_err(marker.display(), e))?;
        // The SCOs from this one on are the rollback's (an empty open SCO included).
        let first_sco = st.sco.as_ref().map_or(st.next_sco, |s| s.seq);
        let text = format!("{} {first_sco}\n", st.tlog.seq);
        f.write_at(text.as_bytes(), 0)
            .map_err(|e| io_err(marker.display(), e))?;
        f.sync_data().map_err(|e| io_err(marker.display(), e))?;
        if let Some(d) = marker.parent() {
            self.fs.sync_dir(d).map_err(|e| io_err(d.display(), e))?;
        }
        // 4.
        let size = target.size();
        if size != st.size {
            self.tlog_append(st, &[Entry::Resize { size }])?;
            let tlog = st.tlog.seq;
            self.set_size(st, tlog, size)?;
        }
        let end = size.div_ceil(CLUSTER_SIZE_U64);
        let chunks = end.div_ceil(STEP);
        let mut zero: Option<Loc> = None;
        let mut from = 0;
        while from < end {
            let to = (from + STEP).min(end);
            let cur = self.lookup_range(st, from, to)?;
            let want = {
                let ts = target.state.read();
                target.lookup_range(&ts, from, to)?
            };
            let addrs: BTreeSet<u64> = cur.keys().chain(want.keys()).copied().collect();
            let mut locs = Vec::new();
            for a in addrs {
                let loc = match (cur.get(&a), want.get(&a)) {
                    (Some(c), Some(w)) if c.sco == w.sco && c.offset == w.offset => continue,
                    (_, Some(w)) => *w,
                    (Some(_), None) => match zero {
                        Some(z) => z,
                        None => {
                            // The one zero cluster, written for the first hole.
                            let z = [0u8; CLUSTER_SIZE];
                            self.append_hashed(st, a, &z, Some(&[ClusterHash::of(&z)]), None)?;
                            zero = self.lookup(st, a)?;
                            continue;
                        }
                    },
                    (None, None) => continue,
                };
                locs.push((a, loc));
            }
            let entries: Vec<Entry> = locs
                .iter()
                .map(|(a, l)| Entry::Remap {
                    address: *a,
                    sco: l.sco,
                    offset: l.offset,
                    hash: l.hash,
                })
                .collect();
            if !entries.is_empty() {
                self.ensure_our_tlog(st)?;
                self.tlog_append(st, &entries)?;
                let tlog = st.tlog.seq;
                self.map_clusters(st, tlog, &locs, None)?;
            }
            self.roll_if_long(st)?;
            from = to;
            p.step(2 + from.div_ceil(STEP), 2 + chunks);
        }
        st.write_gen += 1;
        Ok(())
    }
}

/// Step 6 (and what a restart does with a leftover): the rebuilt volume's files and
/// directories go.
pub(crate) fn remove_rollback_dir(fs: &dyn LocalFs, tmp: &Path) -> Result<()> {
    if fs.list_dirs(tmp).is_err() && fs.list(tmp).is_err() {
        return Ok(());
    }
    backend::remove_local_state(fs, tmp)?;
    for d in [
        layout::sco_dir(tmp),
        layout::tlog_dir(tmp),
        tmp.to_path_buf(),
    ] {
        match fs.remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(d.display(), e)),
        }
    }
    Ok(())
}

/// At a restart, before anything else reads the volume's files: a rollback cut short by a
/// crash (its marker is there) is undone — TLogs after the one it started in are removed, that
/// one is cut back to its header, the SCOs it made are removed — and then the marker.
pub(crate) fn undo_unfinished_rollback(fs: &Arc<dyn LocalFs>, dir: &Path) -> Result<()> {
    let marker = layout::rollback_marker(dir);
    let Some(f) = files::open_if_exists(&**fs, &marker, "rollback marker")? else {
        return Ok(());
    };
    let text = files::read_all(&*f, "rollback marker")?;
    let bad = || Error::Io(format!("{}: not a rollback marker", marker.display()));
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(t)), Some(Ok(first_sco))) = (it.next(), it.next()) else {
        // A marker whose bytes did not reach the disk: written before anything else, so
        // nothing after it happened either.
        tracing::warn!(marker = %marker.display(), "an empty rollback marker removed");
        return files::remove_durably(&**fs, &marker);
    };
    tracing::warn!(dir = %dir.display(), tlog = t, "undoing a rollback cut short by a crash");
    let tlog_dir = layout::tlog_dir(dir);
    for name in fs
        .list(&tlog_dir)
        .map_err(|e| io_err(tlog_dir.display(), e))?
    {
        match crate::volume::format::parse_seq_name(&name) {
            Some(seq) if seq > t => {
                let p = tlog_dir.join(&name);
                fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
            }
            Some(seq) if seq == t => {
                let p = tlog_dir.join(&name);
                let f = fs.open(&p).map_err(|e| io_err(p.display(), e))?;
                f.set_len(TLOG_HEADER_LEN as u64)
                    .map_err(|e| io_err(p.display(), e))?;
                f.sync_data().map_err(|e| io_err(p.display(), e))?;
            }
            _ => {}
        }
    }
    fs.sync_dir(&tlog_dir)
        .map_err(|e| io_err(tlog_dir.display(), e))?;
    let sco_dir = layout::sco_dir(dir);
    for name in fs
        .list(&sco_dir)
        .map_err(|e| io_err(sco_dir.display(), e))?
    {
        if crate::volume::format::parse_seq_name(&name).is_some_and(|s| s >= first_sco) {
            let p = sco_dir.join(&name);
            fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
        }
    }
    fs.sync_dir(&sco_dir)
        .map_err(|e| io_err(sco_dir.display(), e))?;
    files::remove_durably(&**fs, &marker)
}
