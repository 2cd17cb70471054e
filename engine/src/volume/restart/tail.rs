//! The last TLog at restart (steps 6 and 7 of `restart`): read, its torn tail found, replayed.
//!
//! SCOs sealed in closed TLogs are durable (closing a TLog fdatasyncs them first). The SCOs the
//! last, open TLog writes or seals may not be (a seal does not wait for its data; a commit or
//! the TLog's close does): every cluster of them is checked against its hash, every ScoSealed
//! against the SCO's footer, and the log is cut at the first that does not verify — nothing
//! after it was acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::repair::{repair_sealed_sco, sealed_sco_is_whole};
use super::replay::{Replay, ReplayCtx};
use crate::error::Result;
use crate::volume::files::{io_err, read_all};
use crate::volume::format::{
    parse_tlog, sco_name, tlog_name, Entry, ScoFooter, TlogHeader, CLUSTER_SIZE, CLUSTER_SIZE_U64,
    TLOG_HEADER_LEN,
};
use crate::volume::localfs::LocalFile;

/// The last TLog as the restart found it.
pub(super) struct LastTlog {
    /// Its sequence number.
    pub(super) seq: u64,
    /// "TLog <name>", for messages.
    pub(super) what: String,
    /// The open file (it becomes the volume's open TLog).
    pub(super) file: Arc<dyn LocalFile>,
    /// Its bytes as read (header rewritten if it was empty and torn).
    pub(super) data: Vec<u8>,
    /// Every entry that verified, with its byte offset.
    entries: Vec<(u64, Entry)>,
    /// Where the valid log ends: bytes from here on are cut.
    pub(super) cut: u64,
    /// It ends with a verified TLogClosed entry (then it is trusted like the closed ones, no
    /// cut is searched for, and its replay ends with the close). A TLogClosed is always the
    /// last entry a parse returns, so a TLog that is not closed replays none.
    pub(super) closed: bool,
    /// Set by [`LastTlog::replay`]: SCOs the entries before the cut seal.
    pub(super) replayed_scos: u32,
    /// A compacted TLog (a backend restart's last one may be one; it is closed then).
    compacted: bool,
    /// Its header carries every flag this build writes (`Unmap` entries and BLAKE3 hashes
    /// may go in).
    pub(super) ours: bool,
}

impl LastTlog {
    /// Step 6: reads the last TLog and finds where its torn tail begins. A TLog created at a
    /// roll whose header never became durable (it holds nothing) gets its header again.
    pub(super) fn read(
        ctx: &ReplayCtx<'_>,
        tlog_dir: &Path,
        seq: u64,
        rp: &Replay,
    ) -> Result<LastTlog> {
        let what = format!("TLog {}", tlog_name(seq));
        let path = tlog_dir.join(tlog_name(seq));
        let file = ctx.fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        let mut data = read_all(&*file, &what)?;
        if data.len() <= TLOG_HEADER_LEN && TlogHeader::decode(&what, &data).is_err() {
            // Created at a TLog roll, but the power failed before its header was durable (the
            // header is fdatasynced before any entry is written): it holds nothing. Write it
            // again; the commit at the end of the restart makes it durable.
            tracing::warn!(tlog = %what, "rewriting the header of an empty TLog");
            let h = TlogHeader {
                volume: ctx.id,
                seq,
            }
            .encode();
            file.set_len(0).map_err(|e| io_err(&what, e))?;
            file.write_at(&h, 0).map_err(|e| io_err(&what, e))?;
            data = h.to_vec();
        }
        let parsed = parse_tlog(&what, &data, ctx.id, seq, true)?;
        // A closed last TLog (its TLogClosed verified) was fdatasynced after its SCOs: trusted
        // like the others (a backend restart leaves one whose SCOs are header stubs).
        let closed = matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. })));
        let mut last = LastTlog {
            seq,
            what,
            file,
            data,
            entries: parsed.entries,
            cut: parsed.valid_len,
            closed,
            replayed_scos: 0,
            compacted: parsed.compacted,
            ours: parsed.unmap_ok && parsed.hashes_ok,
        };
        if !closed {
            if let Some(at) = last.first_unwritten(ctx, rp)? {
                last.cut = at;
            }
        }
        Ok(last)
    }

    /// [`LastTlog::cut`] as an index into [`LastTlog::data`] (never past its end).
    pub(super) fn cut_usize(&self) -> usize {
        usize::try_from(self.cut).map_or(self.data.len(), |c| c.min(self.data.len()))
    }

    /// The offset of the first entry whose data is not on disk: a ScoSealed whose SCO is not
    /// whole (and cannot be repaired from data that verifies), or a cluster whose bytes do not
    /// match its hash (or whose SCO is missing: its name never became durable). Entries of SCOs
    /// sealed in closed TLogs are not checked (those are durable).
    fn first_unwritten(&self, ctx: &ReplayCtx<'_>, rp: &Replay) -> Result<Option<u64>> {
        let mut handles: HashMap<u64, Option<Arc<dyn LocalFile>>> = HashMap::new();
        for (pos, e) in &self.entries {
            if let Entry::ScoSealed { sco, clusters, crc } = *e {
                if rp.sealed.contains(&sco) {
                    continue;
                }
                if !sealed_sco_is_whole(ctx.fs, ctx.sco_dir, ctx.id, sco, clusters, crc)?
                    && !repair_sealed_sco(ctx.fs, ctx.sco_dir, ctx.id, sco, clusters, crc)?
                {
                    tracing::warn!(tlog = %self.what, at = pos, "cutting the TLog: a SCO it seals is not whole");
                    return Ok(Some(*pos));
                }
            }
            if let Entry::Cluster {
                sco,
                offset,
                hash: m,
                ..
            } = e
            {
                if rp.sealed.contains(sco) {
                    continue;
                }
                let swhat = format!("SCO {}", sco_name(*sco));
                let h = match handles.get(sco) {
                    Some(h) => h.clone(),
                    None => {
                        // A missing SCO is a mismatch (its name never became durable); any
                        // other error fails the restart rather than cutting committed data.
                        let h = match ctx.fs.open(&ctx.sco_dir.join(sco_name(*sco))) {
                            Ok(f) => Some(f),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                            Err(e) => return Err(io_err(&swhat, e)),
                        };
                        handles.insert(*sco, h.clone());
                        h
                    }
                };
                let mut c = vec![0u8; CLUSTER_SIZE];
                let ok = match h {
                    Some(f) => {
                        let n = f
                            .read_at(&mut c, ScoFooter::offset(*offset))
                            .map_err(|e| io_err(&swhat, e))?;
                        n == CLUSTER_SIZE && m.matches(&c)
                    }
                    None => false,
                };
                if !ok {
                    tracing::warn!(tlog = %self.what, at = pos, "cutting the TLog: cluster data of an unsynced write is missing");
                    return Ok(Some(*pos));
                }
            }
        }
        Ok(None)
    }

    /// Step 7: replays the entries before the cut, noting how many SCOs they seal.
    pub(super) fn replay(
        &mut self,
        ctx: &ReplayCtx<'_>,
        rp: &mut Replay,
        tlog_bytes: &mut BTreeMap<u64, u64>,
    ) -> Result<()> {
        let mut scos = 0u32;
        rp.cur_tlog = self.seq;
        rp.cur_compacted = self.compacted;
        for (pos, e) in self.entries.iter().filter(|(p, _)| *p < self.cut) {
            match e {
                Entry::ScoSealed { .. } => scos += 1,
                Entry::Cluster { .. } => {
                    *tlog_bytes.entry(self.seq).or_default() += CLUSTER_SIZE_U64
                }
                _ => {}
            }
            ctx.apply(rp, &format!("{} entry at byte {pos}", self.what), *e)?;
        }
        self.replayed_scos = scos;
        Ok(())
    }
}
