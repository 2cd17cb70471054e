//! Step 3b of a pass: TLogs compacted in place. A TLog's cluster entry (address → position)
//! matters to a view only while that position is what the view reads: a replay up to any view
//! (a snapshot's TLog, a reader point, the head) ends with the same map without the entries
//! of dead positions, since no view lies between such an entry and the one that superseded
//! it. So once enough of a TLog's positions are dead (its live share below
//! `Scrub_Threshold`), the TLog is rewritten without their entries, under
//! `tlog/<seq>.<epoch>.<writer epoch>.<counter>`, with the same steps as a SCO: counter in
//! flight, put, a re-check under the rollback lock, one durable record that marks the object
//! it replaced garbage. Readers (a backend restart, a view rebuilt, the recount) take the
//! original or, once it is gone, the newest compacted object (`backend/tlog_object.rs`).
//!
//! A position is dead for this purpose when its dead row is settled (`settled_dead`), when
//! its SCO's compacted object left it out, or when its SCO was dropped whole: positions only
//! ever die. Entries other than cluster entries (seals, resizes, Remaps) always stay.

use std::collections::HashSet;

use bytes::Bytes;

use super::{unix_now, ScrubReport};
use crate::error::{Error, Result};
use crate::volume::backend::tlog_object::get_tlog;
use crate::volume::files::fmt_err;
use crate::volume::format::{
    compacted_tlog_key, encode_compacted_tlog, parse_tlog, tlog_name, Entry, TlogHeader,
};
use crate::volume::mds::compaction::Compacted;
use crate::volume::state::{Remote, Volume};

/// One TLog to compact: its sequence and its own SCOs with their cluster counts.
#[derive(Debug, Clone)]
pub(super) struct TlogCandidate {
    tlog: u64,
    scos: Vec<(u64, u32)>,
    /// Its positions known gone (dead rows plus those compacted objects left out; a
    /// position may count twice after a recount, so only an estimate).
    gone: u64,
}

impl Volume {
    /// The applied own TLogs whose live share of cluster entries fell below `threshold` of
    /// the entries their current object holds.
    pub(super) fn tlog_candidates(&self, threshold: f64) -> Result<Vec<TlogCandidate>> {
        let base = self.lineage.read().base_tlog();
        let applied = self.mds.meta()?.applied_tlog;
        let dead: std::collections::HashMap<u64, u32> =
            self.mds.scos_with_dead()?.into_iter().collect();
        let mut out = Vec::new();
        for (tlog, scos) in self.mds.scos_by_tlog(base)? {
            if tlog > applied {
                continue;
            }
            let total: u64 = scos.iter().map(|(_, n)| u64::from(*n)).sum();
            let mut gone = 0u64;
            for (sco, n) in &scos {
                gone += u64::from(dead.get(sco).copied().unwrap_or(0));
                if let Some(c) = self.mds.compacted(*sco)? {
                    gone += u64::from(n.saturating_sub(c.kept));
                }
            }
            let held = self
                .mds
                .tlog_compacted(tlog)?
                .map_or(total, |c| u64::from(c.kept));
            let live = total.saturating_sub(gone);
            let examined = self.tlogs_examined.lock().get(&tlog) == Some(&gone);
            if !examined && held > live && (live as f64) < threshold * held as f64 {
                out.push(TlogCandidate { tlog, scos, gone });
            }
        }
        Ok(out)
    }

    /// Compacts one TLog (see the module doc); returns the bytes read and written.
    pub(super) fn compact_tlog(
        &self,
        remote: &Remote,
        c: &TlogCandidate,
        report: &mut ScrubReport,
    ) -> Result<u64> {
        let t = c.tlog;
        let epoch = self.epochs.read().of(t);
        let what = format!("scrub: TLog {}", tlog_name(t));
        let (old_key, old) = self.tlog_object(remote, &what, t)?;
        let parsed = parse_tlog(&what, &old, self.id, t, false).map_err(fmt_err)?;
        if !matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
            return Err(Error::Io(format!("{what}: not closed")));
        }
        let gone = self.gone_positions(epoch, &c.scos)?;
        let dead = {
            let _views = self.rollback_lock.lock();
            self.dead_positions(&c.scos, &gone)?
        };
        let (kept, dropped) = split(parsed.entries.into_iter().map(|(_, e)| e), &dead);
        if dropped.is_empty() {
            // Already as compact as it gets (say, a compacted object a backend restart forgot
            // the row of): not read again in this run until more of it is gone.
            self.tlogs_examined.lock().insert(t, c.gone);
            return Ok(old.len() as u64);
        }
        let clusters_kept = kept
            .iter()
            .filter(|e| matches!(e, Entry::Cluster { .. }))
            .count();
        let obj = Bytes::from(encode_compacted_tlog(
            &TlogHeader {
                volume: self.id,
                seq: t,
            },
            &kept,
        ));
        let new_len = obj.len() as u64;
        let writer = self.writer_epoch();
        // A key is never written twice (as for SCOs).
        let mut tries = 0;
        let counter = loop {
            let counter = self.mds.next_tlog_compaction(t, writer, epoch)?;
            let key = compacted_tlog_key(t, epoch, writer, counter);
            let what = format!("scrub: put {key}");
            match remote.block_on(&what, remote.store.put_if_absent(&key, obj.clone()))? {
                Ok(_) => break counter,
                Err(e) if e.is_condition_failed() && tries < 64 => tries += 1,
                Err(e) => return Err(Error::Backend { what, source: e }),
            }
        };
        let reclaimed = (old.len() as u64).saturating_sub(new_len);
        {
            // Under the rollback lock again: every entry dropped must still be of a dead
            // position (a Remap since would have removed its row), else the new object is
            // garbage and the TLog stays as it was.
            let _views = self.rollback_lock.lock();
            let now = self.dead_positions(&c.scos, &gone)?;
            if dropped.iter().any(|p| !now.contains(p)) {
                tracing::info!(volume = %self.id, tlog = t, "scrub: a dropped entry's cluster was mapped again meanwhile; TLog compaction abandoned");
                let key = compacted_tlog_key(t, epoch, writer, counter);
                self.mds
                    .abandon_tlog_compaction(counter, &key, unix_now())?;
                drop(_views);
                self.drop_abandoned(remote, &key)?;
                return Ok(old.len() as u64 + new_len);
            }
            let record = Compacted {
                writer,
                counter,
                kept: u32::try_from(clusters_kept).unwrap_or(u32::MAX),
            };
            self.mds
                .finish_tlog_compaction(t, record, &old_key, unix_now(), reclaimed)?;
        }
        report.bytes_reclaimed += reclaimed;
        Ok(old.len() as u64 + new_len)
    }

    /// TLog `t`'s current object on the backend (the compacted one the MetaDataStore records,
    /// else the original, else the newest compacted one listed): its key and bytes.
    pub(super) fn tlog_object(
        &self,
        remote: &Remote,
        what: &str,
        t: u64,
    ) -> Result<(String, Bytes)> {
        let epoch = self.epochs.read().of(t);
        let known = self.mds.tlog_compacted(t)?.map(|c| (c.writer, c.counter));
        remote.block_on(what, get_tlog(&*remote.store, t, epoch, known))?
    }

    /// Positions of these SCOs (sealed in a TLog uploaded in `epoch`) that are gone from the
    /// backend: left out of a compacted object, or of a SCO dropped whole. Only grows.
    fn gone_positions(&self, epoch: u64, scos: &[(u64, u32)]) -> Result<HashSet<(u64, u32)>> {
        let mut gone = HashSet::new();
        for &(sco, n) in scos {
            let Some(c) = self.mds.compacted(sco)? else {
                continue;
            };
            if c.kept == 0 {
                gone.extend((0..n).map(|i| (sco, i)));
                continue;
            }
            let what = format!("scrub: compacted SCO {sco}");
            let layout = self
                .known_layout(None, sco, epoch)
                .map_err(|f| f.into_error(&what))?
                .ok_or_else(|| Error::Io(format!("{what}: its compacted object is unknown")))?;
            let kept: HashSet<u32> = layout.header.kept.iter().copied().collect();
            gone.extend((0..n).filter(|i| !kept.contains(i)).map(|i| (sco, i)));
        }
        Ok(gone)
    }

    /// `gone` and the settled dead rows of these SCOs. The caller holds the rollback lock.
    fn dead_positions(
        &self,
        scos: &[(u64, u32)],
        gone: &HashSet<(u64, u32)>,
    ) -> Result<HashSet<(u64, u32)>> {
        let mut dead = gone.clone();
        for &(sco, _) in scos {
            dead.extend(self.settled_dead(sco)?.into_iter().map(|i| (sco, i)));
        }
        Ok(dead)
    }
}

/// The entries to keep, and the positions of the cluster entries dropped (those of `dead`).
fn split(
    entries: impl Iterator<Item = Entry>,
    dead: &HashSet<(u64, u32)>,
) -> (Vec<Entry>, Vec<(u64, u32)>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for e in entries {
        match e {
            Entry::Cluster { sco, offset, .. } if dead.contains(&(sco, offset)) => {
                dropped.push((sco, offset));
            }
            Entry::TlogClosed { .. } => {}
            e => kept.push(e),
        }
    }
    (kept, dropped)
}
