//! Opening an existing volume from its local files (local restart). Each step is a function
//! below, run in this order by [`Volume::open`]:
//!
//! 0. The write-ahead log is replayed into the SCO and TLog files (`wal/`, step 5); then a
//!    rollback a crash cut short (its marker is there) is undone, and the volume a rollback
//!    rebuilt is removed (`snapshot/rollback.rs`).
//! 1. [`list_tlogs`]: the local TLogs, in sequence order (no `tlog/` directory: no volume).
//! 2. The MetaDataStore is opened ([`Mds::open`]; a volume from before it was on disk gets an
//!    empty one, and every TLog is replayed).
//! 3. [`drop_applied_tlogs`]: TLogs whose effect the MetaDataStore already holds were on the
//!    backend; one a crash left between the redb commit and its deletion is deleted now. The
//!    rest must follow the MetaDataStore without a gap.
//! 4. [`list_scos`]: the SCO files, and the stubs of evictions a crash interrupted.
//! 5. [`replay_closed`]: every TLog but the last must be complete and closed; its entries are
//!    replayed, each checked against what came before ([`replay`]).
//! 6. [`LastTlog::read`] (in `tail`): the last TLog, with the point where its torn tail begins
//!    (the first entry that does not verify, or whose data is not whole on disk).
//! 7. [`LastTlog::replay`]: its entries before the cut are replayed.
//! 8. [`sco_table`]: at most one unsealed SCO, the newest; the SCO table from the MetaDataStore
//!    and the replay (a cached SCO that is not whole is replaced by its stub).
//! 9. The volume is assembled and [`Volume::cork_replayed`] puts the replayed changes in the
//!    cork (they stay there until the backend has their TLogs).
//! 10. [`Volume::repair_after_restart`]: the torn tail is cut (durably, before anything is
//!     written behind it), stray stubs and SCO files nothing refers to are removed, the SCOs
//!     sealed in the open TLog are queued for the commit, the unsealed SCO is sealed, and the
//!     next TLog is started when the last one was closed (or the last one closed when full).
//! 11. A commit round makes all of it durable before the volume is handed out.

pub(in crate::volume) mod repair;
mod replay;
mod tail;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use self::replay::{Replay, ReplayCtx};
use self::tail::LastTlog;
use crate::error::{Error, Result};
use crate::volume::commit::FsyncSite;
use crate::volume::dirsync::DirSync;
use crate::volume::evict::replace_sco_by_stub;
use crate::volume::files::{fmt_err, io_err, read_all};
use crate::volume::format::{
    parse_seq_name, parse_tlog, sco_name, tlog_name, Entry, FormatError, ScoFooter, ScoHeader,
    VolumeId, CLUSTER_SIZE, CLUSTER_SIZE_U64, SCO_FOOTER_LEN, SCO_HEADER_LEN, SCO_STUB_SUFFIX,
    TLOG_HEADER_LEN,
};
use crate::volume::layout;
use crate::volume::localfs::{created_at, LocalFs};
use crate::volume::mds::checkpoint::ScoRow;
use crate::volume::mds::cork::Overlay;
use crate::volume::mds::store::{Loc, Mds, Op};
use crate::volume::options::VolumeOptions;
use crate::volume::state::{OpenSco, OpenTlog, ScoEntry, State, Volume};
use crate::volume::wal::Wal;

/// The SCO files found in `sco/` (step 4).
struct ScoFiles {
    /// Sequence numbers of the SCO files (whole SCOs and stubs).
    seqs: BTreeSet<u64>,
    /// Names of stubs of evictions a crash interrupted before their rename: they hold nothing.
    stray_stubs: Vec<String>,
}

impl Volume {
    /// Opens an existing volume from its local SCOs and TLogs (local restart): replays every
    /// TLog in order, verifying every CRC; cuts a torn tail of the last TLog at the first entry
    /// that does not verify (an entry whose CRC fails, or a cluster of the unsealed SCO whose hash
    /// does not match its data); seals the last SCO; makes the repaired state durable. Anything
    /// else that does not verify is an error naming the file and what failed.
    pub(crate) fn open(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
    ) -> Result<Volume> {
        if crate::volume::backend::restore_interrupted(&*fs, dir)? {
            return Err(Error::Io(format!(
                "{}: a backend restart into this directory was interrupted; remove its local \
                 state and restore again",
                dir.display()
            )));
        }
        Self::open_inner(fs, dir, id, opts, None)
    }

    /// [`Volume::open`] without the check for an interrupted backend restart (the restore
    /// itself opens what it wrote this way), with one fsync site switched off for tests.
    pub(crate) fn open_inner(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        skip_fsync: Option<FsyncSite>,
    ) -> Result<Volume> {
        opts.check()?;
        let sco_dir = layout::sco_dir(dir);
        let tlog_dir = layout::tlog_dir(dir);
        // 0. The write-ahead log is replayed into the files (before anything reads them, and
        //    before a rollback's undo removes what the log may name).
        //    No `tlog/` directory: no volume here (and no log to create).
        list_tlogs(&*fs, &tlog_dir)?;
        let wal = Wal::recover(&*fs, dir, id, skip_fsync)?;
        // A rollback cut short is undone; what it rebuilt is thrown away.
        crate::volume::snapshot::undo_unfinished_rollback(&fs, dir)?;
        crate::volume::snapshot::remove_rollback_dir(&*fs, &layout::rollback_dir(dir))?;
        // 1.
        let tlogs = list_tlogs(&*fs, &tlog_dir)?;
        // 2.
        let mds_syncs = Arc::new(AtomicU64::new(0));
        let mds = Mds::open(
            &*fs,
            dir,
            true,
            skip_fsync == Some(FsyncSite::MdsCommit),
            mds_syncs.clone(),
        )?;
        let meta = mds.meta()?;
        let epochs = mds.upload_epochs()?;
        // 3.
        let tlogs = drop_applied_tlogs(&*fs, dir, &tlog_dir, tlogs, meta.applied_tlog)?;
        // 4.
        let sco_files = list_scos(&*fs, &sco_dir)?;
        // 5.
        let mut rp = Replay {
            size: meta.size,
            ..Default::default()
        };
        let mut tlog_bytes: BTreeMap<u64, u64> = BTreeMap::new();
        // The SCOs the MetaDataStore knows (sealed in applied TLogs): what a Remap may name
        // besides the SCOs of the TLogs replayed.
        let db_scos = mds.scos()?;
        let applied_scos: BTreeMap<u64, u32> =
            db_scos.iter().map(|(s, (_, n, _))| (*s, *n)).collect();
        let ctx = ReplayCtx {
            fs: &*fs,
            sco_dir: &sco_dir,
            id,
            applied_scos: &applied_scos,
        };
        let Some((&last_seq, closed_tlogs)) = tlogs.split_last() else {
            // drop_applied_tlogs returns at least one.
            return Err(Error::Io(format!("{}: no TLog", tlog_dir.display())));
        };
        replay_closed(&ctx, &tlog_dir, closed_tlogs, &mut rp, &mut tlog_bytes)?;
        // 6.
        let mut last = LastTlog::read(&ctx, &tlog_dir, last_seq, &rp)?;
        // 7.
        last.replay(&ctx, &mut rp, &mut tlog_bytes)?;
        // 8.
        let unsealed = unsealed_sco(dir, &rp)?;
        let (scos, next_sco) = sco_table(&ctx, &rp, &db_scos, &sco_files)?;
        // The TLogs replayed are not known to be on the backend: their changes date back at
        // most to their files' creation.
        let mut tlog_since = BTreeMap::new();
        let with_entries = closed_tlogs
            .iter()
            .copied()
            .chain((last.cut > TLOG_HEADER_LEN as u64).then_some(last_seq));
        for seq in with_entries {
            tlog_since.insert(seq, created_at(&*fs, &tlog_dir.join(tlog_name(seq))));
        }
        // 9.
        let mapped = mds.mapped()?;
        let state = State {
            size: meta.size,
            ov: Overlay::default(),
            mapped,
            applied_tlog: meta.applied_tlog,
            applied_size: meta.size,
            db_empty: mapped == 0,
            sco: None,
            tlog: OpenTlog {
                seq: last_seq,
                file: last.file.clone(),
                len: last.cut,
                crc: crc32c::crc32c(&last.data[..last.cut_usize()]),
                deferred: Default::default(),
                scos: last.replayed_scos,
                // Entries left by the last run count as just written.
                first_entry: (last.cut > TLOG_HEADER_LEN as u64).then(std::time::Instant::now),
                ours: last.ours,
            },
            next_sco,
            write_gen: 0,
            // After a process crash the page cache may hold names never fsynced (of SCOs and
            // TLogs the last run created or removed): the restart's commit makes them durable.
            sco_dir: DirSync::dirty(),
            tlog_dir: DirSync::dirty(),
            unsynced: Vec::new(),
            tlog_bytes,
            tlog_since,
            scos,
            // Everything applied to redb is on the backend.
            backend_tlog: meta.applied_tlog,
            // The replay below adds the corked TLogs' clusters.
            logged: meta.logged_clusters,
            wal,
        };
        let vol = Volume::assemble(
            fs.clone(),
            id,
            opts,
            (sco_dir, tlog_dir),
            state,
            skip_fsync,
            (mds, mds_syncs),
        );
        *vol.epochs.write() = epochs;
        *vol.lineage.write() = vol.mds.lineage()?;
        vol.template.store(vol.mds.template()?, Ordering::Release);
        vol.counters
            .restart_cut_bytes
            .store(last.data.len() as u64 - last.cut, Ordering::Relaxed);
        vol.counters
            .tlogs_replayed
            .store(tlogs.len() as u64, Ordering::Relaxed);
        vol.counters
            .checkpoint_tlog
            .store(vol.mds.checkpoint_tlog()?, Ordering::Relaxed);
        {
            let mut st = vol.state.write();
            vol.cork_replayed(&mut st, std::mem::take(&mut rp.ops))?;
            // 10.
            let in_db: BTreeSet<u64> = db_scos.iter().map(|(s, _)| *s).collect();
            vol.repair_after_restart(&mut st, &last, &rp, unsealed, &sco_files, &in_db)?;
        }
        // 11.
        vol.commit_round()?;
        Ok(vol)
    }

    /// Step 9: the replayed TLogs' changes go into the cork until the backend has those TLogs.
    /// Runs of clusters (distinct addresses, one TLog) are mapped together: one redb lookup per
    /// run.
    fn cork_replayed(&self, st: &mut State, ops: Vec<(u64, Op)>) -> Result<()> {
        let mut run: Vec<(u64, Loc)> = Vec::new();
        let mut in_run: BTreeSet<u64> = BTreeSet::new();
        let mut run_tlog = 0;
        for (tlog, op) in ops {
            let joins = matches!(op, Op::Cluster(a, _) if tlog == run_tlog && !in_run.contains(&a));
            if !joins && !run.is_empty() {
                self.map_clusters(st, run_tlog, &run, None)?;
                run.clear();
                in_run.clear();
            }
            match op {
                Op::Cluster(a, l) => {
                    run_tlog = tlog;
                    run.push((a, l));
                    in_run.insert(a);
                }
                Op::Resize { size, .. } => self.set_size(st, tlog, size)?,
                Op::Unmap { from, to } => {
                    let gone = self.count_mapped(st, from, to)?;
                    self.unmap_clusters(st, tlog, from, to, gone)?;
                }
                Op::Sealed { .. } => st.ov.push(tlog, op),
            }
        }
        if !run.is_empty() {
            self.map_clusters(st, run_tlog, &run, None)?;
        }
        Ok(())
    }

    /// Step 10: everything the restart repairs, in the order that keeps each repair safe.
    fn repair_after_restart(
        &self,
        st: &mut State,
        last: &LastTlog,
        rp: &Replay,
        unsealed: Option<(u64, u32)>,
        sco_files: &ScoFiles,
        in_db: &BTreeSet<u64>,
    ) -> Result<()> {
        let what = &last.what;
        if last.cut_usize() < last.data.len() {
            // Durable before anything is written at the cut: stale entries past it must never
            // reappear behind new ones.
            tracing::warn!(tlog = %what, from = last.data.len(), to = last.cut, "cutting a torn TLog tail");
            st.tlog
                .file
                .set_len(last.cut)
                .map_err(|e| io_err(what, e))?;
            self.fsync(FsyncSite::RestartCut, &*st.tlog.file, what)?;
        }
        for n in &sco_files.stray_stubs {
            let p = self.sco_dir.join(n);
            self.fs
                .remove_file(&p)
                .map_err(|e| io_err(p.display(), e))?;
            st.sco_dir.touch();
        }
        // SCO files no entry refers to hold nothing that was ever committed.
        for s in sco_files
            .seqs
            .iter()
            .filter(|s| !rp.sco_clusters.contains_key(s) && !in_db.contains(s))
        {
            let p = self.sco_dir.join(sco_name(*s));
            self.fs
                .remove_file(&p)
                .map_err(|e| io_err(p.display(), e))?;
            st.sco_dir.touch();
        }
        // The SCOs sealed in the open TLog were verified against what the page cache shows:
        // after a process crash their bytes may never have been fdatasynced. The restart's
        // commit makes them durable before anything new is acknowledged behind them.
        if !last.closed {
            for (seq, (tlog, _, evicted)) in &rp.sealed_in {
                if *tlog == last.seq && !*evicted {
                    let f = self.sco_handle(*seq)?;
                    st.unsynced.push((*seq, f));
                }
            }
        }
        if let Some((seq, clusters)) = unsealed {
            self.reseal_unsealed(st, seq, clusters)?;
        }
        if last.closed {
            // Closed, but the next TLog never became durable: start it now. The close may be
            // only in the page cache (a process crash before its fdatasync): made durable
            // first, or a power cut would leave an unclosed TLog before the next.
            let file = st.tlog.file.clone();
            self.fsync(FsyncSite::CloseTlog, &*file, what)?;
            self.start_next_tlog(st)?;
        } else if st.tlog.scos >= self.opts.tlog_scos {
            self.roll_tlog(st)?;
        }
        Ok(())
    }

    /// Reopens the unsealed SCO at its verified length (header rewritten, anything past its
    /// last verified cluster cut), then seals it.
    fn reseal_unsealed(&self, st: &mut State, seq: u64, clusters: u32) -> Result<()> {
        let what = format!("SCO {}", sco_name(seq));
        let f = self.sco_handle(seq)?;
        f.write_at(
            &ScoHeader {
                volume: self.id,
                seq,
            }
            .encode(),
            0,
        )
        .map_err(|e| io_err(&what, e))?;
        f.set_len(ScoFooter::offset(clusters))
            .map_err(|e| io_err(&what, e))?;
        let mut crc = 0u32;
        let mut c = vec![0u8; CLUSTER_SIZE];
        for k in 0..clusters {
            let n = f
                .read_at(&mut c, ScoFooter::offset(k))
                .map_err(|e| io_err(&what, e))?;
            if n != CLUSTER_SIZE {
                return Err(Error::Io(format!("{what}: short read at cluster {k}")));
            }
            crc = crc32c::crc32c_append(crc, &c);
        }
        st.sco = Some(OpenSco {
            seq,
            file: f,
            clusters,
            crc,
            deferred: Default::default(),
            created: std::time::Instant::now(),
        });
        self.seal_open_sco(st)
    }
}

/// Step 1: the sequence numbers of the local TLogs, sorted. No `tlog/` directory: no volume
/// here at all ([`Error::NotFound`]).
fn list_tlogs(fs: &dyn LocalFs, tlog_dir: &Path) -> Result<Vec<u64>> {
    let names = match fs.list(tlog_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
        Err(e) => return Err(io_err(tlog_dir.display(), e)),
    };
    let mut tlogs = Vec::new();
    for n in names {
        match parse_seq_name(&n) {
            Some(s) => tlogs.push(s),
            None => tracing::warn!(file = %n, "ignoring unexpected file in the TLog directory"),
        }
    }
    tlogs.sort_unstable();
    Ok(tlogs)
}

/// Step 3: deletes the TLogs up to `applied_tlog` (their effect is in redb, their bytes on the
/// backend) and checks that the rest follow it without a gap. Returns the rest (at least one).
fn drop_applied_tlogs(
    fs: &dyn LocalFs,
    dir: &Path,
    tlog_dir: &Path,
    mut tlogs: Vec<u64>,
    applied_tlog: u64,
) -> Result<Vec<u64>> {
    for seq in tlogs.iter().filter(|s| **s <= applied_tlog) {
        let p = tlog_dir.join(tlog_name(*seq));
        fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
    }
    tlogs.retain(|s| *s > applied_tlog);
    if let Some(first) = tlogs.first().filter(|f| **f != applied_tlog + 1) {
        return Err(Error::Io(format!(
            "{}: the MetaDataStore holds TLogs up to {applied_tlog}, but the next local TLog is {first}",
            dir.display(),
        )));
    }
    if tlogs.is_empty() {
        return Err(Error::Io(format!(
            "{}: no TLog: not a volume",
            tlog_dir.display()
        )));
    }
    for w in tlogs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::Io(format!(
                "{}: TLogs {} to {} are missing",
                tlog_dir.display(),
                tlog_name(w[0] + 1),
                tlog_name(w[1] - 1)
            )));
        }
    }
    Ok(tlogs)
}

/// Step 4: the SCO files in `sco/` and the stubs a crash left beside them.
fn list_scos(fs: &dyn LocalFs, sco_dir: &Path) -> Result<ScoFiles> {
    let mut found = ScoFiles {
        seqs: BTreeSet::new(),
        stray_stubs: Vec::new(),
    };
    for n in fs.list(sco_dir).map_err(|e| io_err(sco_dir.display(), e))? {
        match parse_seq_name(&n) {
            Some(s) => {
                found.seqs.insert(s);
            }
            None if n
                .strip_suffix(SCO_STUB_SUFFIX)
                .and_then(parse_seq_name)
                .is_some() =>
            {
                found.stray_stubs.push(n)
            }
            None => tracing::warn!(file = %n, "ignoring unexpected file in the SCO directory"),
        }
    }
    Ok(found)
}

/// Step 5: replays every TLog but the last; each must be complete and closed. Counts the
/// cluster bytes each logged (not on the backend yet).
fn replay_closed(
    ctx: &ReplayCtx<'_>,
    tlog_dir: &Path,
    tlogs: &[u64],
    rp: &mut Replay,
    tlog_bytes: &mut BTreeMap<u64, u64>,
) -> Result<()> {
    for &seq in tlogs {
        let what = format!("TLog {}", tlog_name(seq));
        let path = tlog_dir.join(tlog_name(seq));
        let f = ctx.fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        let data = read_all(&*f, &what)?;
        let entries = parse_tlog(&what, &data, ctx.id, seq, false)?;
        if !matches!(entries.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
            return Err(fmt_err(FormatError::Inconsistent {
                what,
                reason: "not closed, yet a later TLog exists".into(),
            }));
        }
        rp.cur_tlog = seq;
        rp.cur_compacted = entries.compacted;
        for (pos, e) in entries.entries {
            if matches!(e, Entry::Cluster { .. }) {
                *tlog_bytes.entry(seq).or_default() += CLUSTER_SIZE_U64;
            }
            ctx.apply(rp, &format!("{what} entry at byte {pos}"), e)?;
        }
    }
    Ok(())
}

/// Step 8, first part: the unsealed SCO (clusters logged, no ScoSealed entry), if any. There is
/// at most one, and it is the newest SCO the log refers to.
fn unsealed_sco(dir: &Path, rp: &Replay) -> Result<Option<(u64, u32)>> {
    let unsealed: Vec<(u64, u32)> = rp
        .sco_clusters
        .iter()
        .filter(|(s, _)| !rp.sealed.contains(s))
        .map(|(s, c)| (*s, *c))
        .collect();
    let max_ref = rp.sco_clusters.keys().next_back().copied().unwrap_or(0);
    if unsealed.len() > 1 || unsealed.first().is_some_and(|(s, _)| *s != max_ref) {
        return Err(Error::Io(format!(
            "{}: more than one unsealed SCO ({unsealed:?}) or an unsealed SCO older than a sealed one",
            dir.display()
        )));
    }
    Ok(unsealed.first().copied())
}

/// Step 8: the SCO table (every sealed SCO: from the MetaDataStore, then from the replay) and
/// the next SCO sequence number (past every SCO referred to or found on disk). A cached SCO
/// the MetaDataStore knows that is not whole is replaced by its stub: its data is on the
/// backend.
fn sco_table(
    ctx: &ReplayCtx<'_>,
    rp: &Replay,
    db_scos: &[ScoRow],
    sco_files: &ScoFiles,
) -> Result<(BTreeMap<u64, ScoEntry>, u64)> {
    let max_ref = rp.sco_clusters.keys().next_back().copied().unwrap_or(0);
    let max_db_sco = db_scos.last().map_or(0, |(s, _)| *s);
    let next_sco = max_ref
        .max(sco_files.seqs.last().copied().unwrap_or(0))
        .max(max_db_sco)
        + 1;
    let mut scos: BTreeMap<u64, ScoEntry> = BTreeMap::new();
    for (seq, (tlog, clusters, _crc)) in db_scos {
        // Applied SCOs are on the backend: no local file (a backend restart never fetched it)
        // or a header stub means the data is only there.
        let has_file = sco_files.seqs.contains(seq);
        let evicted = if has_file {
            let p = ctx.sco_dir.join(sco_name(*seq));
            let f = ctx.fs.open(&p).map_err(|e| io_err(p.display(), e))?;
            let len = f.file_len().map_err(|e| io_err(p.display(), e))?;
            let whole = ScoFooter::offset(*clusters) + SCO_FOOTER_LEN as u64;
            if len > SCO_HEADER_LEN && len != whole {
                // Not a copy to read from (damaged, or an eviction's cut half-done): the data
                // is on the backend; keep only the stub.
                tracing::warn!(sco = %sco_name(*seq), len, "a cached SCO is not whole: reading it from the backend");
                replace_sco_by_stub(ctx.fs, ctx.sco_dir, ctx.id, *seq)?;
            }
            len != whole
        } else {
            true
        };
        let mut e = ScoEntry::new(*tlog, *clusters, evicted);
        e.has_file = has_file;
        scos.insert(*seq, e);
    }
    for (s, (t, c, ev)) in &rp.sealed_in {
        scos.insert(*s, ScoEntry::new(*t, *c, *ev));
    }
    Ok((scos, next_sco))
}
