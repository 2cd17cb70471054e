//! Replaying TLog entries: checking each against what came before and building up the
//! MetaDataStore changes, the sealed SCOs and the size.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::Result;
use crate::volume::files::{fmt_err, io_err};
use crate::volume::format::{
    sco_name, Entry, FormatError, ScoFooter, ScoHeader, VolumeId, CLUSTER_SIZE_U64, SCO_FOOTER_LEN,
    SCO_HEADER_LEN,
};
use crate::volume::int::usize_of;
use crate::volume::localfs::LocalFs;
use crate::volume::mds::store::{Loc, Op};
use crate::volume::options::MAX_VOLUME_SIZE;

/// What replaying TLogs builds up.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) size: u64,
    /// MetaDataStore changes, with the TLog that logged each, in log order.
    pub(super) ops: Vec<(u64, Op)>,
    /// Per SCO: clusters seen so far (the next expected offset).
    pub(super) sco_clusters: BTreeMap<u64, u32>,
    pub(super) sealed: BTreeSet<u64>,
    /// The TLog being replayed.
    pub(super) cur_tlog: u64,
    /// It is a compacted TLog: cluster entries may skip offsets of a SCO (dead ones left out).
    pub(super) cur_compacted: bool,
    /// Sealed SCOs: sequence -> (sealing TLog, clusters, evicted).
    pub(super) sealed_in: BTreeMap<u64, (u64, u32, bool)>,
}

pub(super) struct ReplayCtx<'a> {
    pub(super) fs: &'a dyn LocalFs,
    pub(super) sco_dir: &'a Path,
    pub(super) id: VolumeId,
    /// SCO -> clusters, of the SCOs sealed in TLogs already applied to the MetaDataStore.
    pub(super) applied_scos: &'a BTreeMap<u64, u32>,
}

/// Cluster `address` now at `loc`: it must be below the size in force.
fn map_cluster(rp: &mut Replay, address: u64, loc: Loc) -> std::result::Result<(), String> {
    if address.saturating_mul(CLUSTER_SIZE_U64) >= rp.size {
        return Err(format!(
            "cluster {address} beyond the volume size {}",
            rp.size
        ));
    }
    rp.ops.push((rp.cur_tlog, Op::Cluster(address, loc)));
    Ok(())
}

impl ReplayCtx<'_> {
    pub(super) fn apply(&self, rp: &mut Replay, what: &str, e: Entry) -> Result<()> {
        let bad = |reason: String| {
            fmt_err(FormatError::Inconsistent {
                what: what.to_string(),
                reason,
            })
        };
        match e {
            Entry::Cluster {
                address,
                sco,
                offset,
                hash,
            } => {
                if rp.sealed.contains(&sco) {
                    return Err(bad(format!(
                        "cluster in SCO {} after it was sealed",
                        sco_name(sco)
                    )));
                }
                let next = rp.sco_clusters.entry(sco).or_insert(0);
                if offset != *next && !(rp.cur_compacted && offset > *next) {
                    return Err(bad(format!(
                        "cluster offset {offset} in SCO {}, expected {next}",
                        sco_name(sco)
                    )));
                }
                *next = offset + 1;
                map_cluster(rp, address, Loc { sco, offset, hash }).map_err(bad)?;
            }
            Entry::Remap {
                address,
                sco,
                offset,
                hash,
            } => {
                // A cluster logged before: earlier in these TLogs, or in a SCO sealed in an
                // applied TLog (the MetaDataStore's SCO table); below what was logged of it.
                let logged = rp
                    .sco_clusters
                    .get(&sco)
                    .or_else(|| self.applied_scos.get(&sco));
                if logged.is_none_or(|n| offset >= *n) {
                    return Err(bad(format!(
                        "remap to cluster {offset} of SCO {}, not logged",
                        sco_name(sco)
                    )));
                }
                map_cluster(rp, address, Loc { sco, offset, hash }).map_err(bad)?;
            }
            Entry::ScoSealed { sco, clusters, crc } => {
                let seen = rp.sco_clusters.get(&sco).copied().unwrap_or(0);
                let counts = seen == clusters || (rp.cur_compacted && seen <= clusters);
                if !counts || rp.sealed.contains(&sco) {
                    return Err(bad(format!(
                        "SCO {} sealed with {clusters} clusters, {seen} logged",
                        sco_name(sco)
                    )));
                }
                let evicted = self.verify_sealed_sco(sco, clusters, crc)?;
                // Every cluster of it was logged (a compacted TLog left some entries out).
                rp.sco_clusters.insert(sco, clusters);
                rp.sealed.insert(sco);
                rp.sealed_in.insert(sco, (rp.cur_tlog, clusters, evicted));
                rp.ops.push((
                    rp.cur_tlog,
                    Op::Sealed {
                        sco,
                        tlog: rp.cur_tlog,
                        clusters,
                        crc,
                    },
                ));
            }
            Entry::Resize { size } => {
                if size > MAX_VOLUME_SIZE {
                    return Err(bad(format!("size {size} above the maximum")));
                }
                let shrink = size < rp.size;
                rp.size = size;
                rp.ops.push((rp.cur_tlog, Op::Resize { size, shrink }));
            }
            Entry::Unmap { address, count } => {
                let end = address.saturating_add(count);
                if end > rp.size.div_ceil(CLUSTER_SIZE_U64) {
                    return Err(bad(format!(
                        "unmap of clusters {address}..{end} beyond the volume size {}",
                        rp.size
                    )));
                }
                rp.ops.push((
                    rp.cur_tlog,
                    Op::Unmap {
                        from: address,
                        to: end,
                    },
                ));
            }
            Entry::TlogClosed { .. } => {}
        }
        Ok(())
    }

    /// A sealed SCO must exist with the exact length and a footer that matches its ScoSealed
    /// entry, or be an evicted SCO's stub (just its header; the data is on the backend).
    /// Returns whether it is a stub. (Its data CRC is checked by scrubbing, not at every
    /// restart.)
    fn verify_sealed_sco(&self, seq: u64, clusters: u32, crc: u32) -> Result<bool> {
        let what = format!("SCO {}", sco_name(seq));
        let path = self.sco_dir.join(sco_name(seq));
        let f = self
            .fs
            .open(&path)
            .map_err(|e| io_err(format!("{what} (sealed)"), e))?;
        let len = f.file_len().map_err(|e| io_err(&what, e))?;
        let want = ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64;
        if len == SCO_HEADER_LEN && len != want {
            // Eviction cuts a sealed SCO to its header only after it was on the backend; a sealed
            // SCO never has this length otherwise (sealing fdatasyncs the whole SCO first).
            let mut hb = vec![0u8; usize_of(SCO_HEADER_LEN)];
            f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
            let h = ScoHeader::decode(&what, &hb).map_err(fmt_err)?;
            if h.volume != self.id || h.seq != seq {
                return Err(fmt_err(FormatError::Inconsistent {
                    what,
                    reason: format!("evicted stub's header {h:?} names another SCO"),
                }));
            }
            return Ok(true);
        }
        if len != want {
            return Err(fmt_err(FormatError::Truncated {
                what: format!("{what} (sealed)"),
                len,
                need: want,
            }));
        }
        let mut hb = vec![0u8; usize_of(SCO_HEADER_LEN)];
        let mut fb = [0u8; SCO_FOOTER_LEN];
        f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
        f.read_at(&mut fb, ScoFooter::offset(clusters))
            .map_err(|e| io_err(&what, e))?;
        let h = ScoHeader::decode(&what, &hb).map_err(fmt_err)?;
        let foot = ScoFooter::decode(&what, &fb).map_err(fmt_err)?;
        if h.volume != self.id
            || h.seq != seq
            || foot
                != (ScoFooter {
                    seq,
                    clusters,
                    data_crc: crc,
                })
        {
            return Err(fmt_err(FormatError::Inconsistent {
                what,
                reason: format!("header/footer {h:?} {foot:?} disagree with the TLog (clusters {clusters}, crc {crc:08x})"),
            }));
        }
        Ok(false)
    }
}
