//! Scrubbing a volume: its backend space follows its live data (issue #17).
//!
//! What is live is kept with the map (`mds/liveness.rs`): every position a change supersedes
//! is recorded dead, or pinned while a snapshot or clone reads it. A pass, in steps (a crash
//! may stop it anywhere; the next pass finishes the job):
//!
//! 0. What is closed is uploaded and applied (a rollback's Remaps reach the tables). The
//!    reader points are checked against the namespace's clones (a mismatch resets what
//!    was found dead; with a reader whose point cannot be had, only marked garbage is
//!    deleted). What the TLogs up to `liveness_from` superseded (a store from before scrubbing, a
//!    backend restart from a checkpoint) is recounted from those TLogs (`recount.rs`).
//! 1. A compaction cut short by a crash (its counter taken, its object perhaps put, never
//!    recorded) has that object marked garbage.
//! 2. Pinned positions no view reads any more (a snapshot was deleted, a clone went) become
//!    dead (under the rollback lock: no rollback or clone creation reads the views meanwhile).
//! 3. Every own SCO with dead positions whose live fraction is below `Scrub_Threshold` is
//!    **compacted**, one at a time, under the rollback lock:
//!    1. its dead positions are read from the MetaDataStore again (only more can be dead now);
//!    2. its current object (or its local file when whole) is read whole and checked (the
//!       SCO's data CRC32C, or the compacted object's own CRCs);
//!    3. a compaction counter is taken durably, with the SCO, as *in flight*;
//!    4. the object with the live positions only is put under a new key
//!       (`sco/<seq>.<epoch>.<writer epoch>.<counter>`, never written twice); a SCO with no
//!       live position gets none;
//!    5. one durable MetaDataStore transaction records it as the SCO's object, drops its dead
//!       rows and marks the object it replaced garbage — the commit point. Readers find the
//!       new object by the table, or by listing when the old one is gone;
//!    6. a SCO with nothing live left has its local file replaced by a stub.
//!    7. then every own applied TLog most of whose cluster entries are of dead positions
//!       is compacted the same way: rewritten without those entries (`tlogs.rs`).
//! 4. Checkpoint objects nothing references (a failed or crashed checkpoint's pages) are
//!    marked garbage, with the pipeline held off and the manifest naming the checkpoint the
//!    MetaDataStore records (`sweep.rs`).
//! 5. Objects marked garbage for at least `GC_Grace` are checked once more (still not the
//!    SCO's or TLog's object; not the named checkpoint's) and deleted, then unmarked.
//!
//! Nothing moves: a position keeps its name (SCO, index) for ever, so no map, snapshot,
//! manifest or clone changes (a TLog loses only entries no view's replay needs), and a write
//! racing a scrub can only make more positions dead.
//! Layouts: `FORMATS.md`, "Scrubbing and garbage collection".

pub(crate) mod gc;
pub(crate) mod readers;
mod recount;
pub(crate) mod resolve;
mod sweep;
mod tlogs;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::progress::{cancelled_error, Progress};
use crate::volume::backend::keys::sco_key;
use crate::volume::files::{fmt_err, read_all};
use crate::volume::format::{
    compacted_key, CompactedHeader, ScoFooter, CLUSTER_SIZE, MAX_SCO_LEN, SCO_FOOTER_LEN,
    SCO_HEADER_LEN,
};
use crate::volume::int::usize_of;
use crate::volume::mds::compaction::Compacted;
use crate::volume::state::{Remote, Volume};

/// How a pass runs (the `Scrub_*` and `GC_Grace` parameters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScrubOptions {
    /// A SCO is compacted when its live fraction is below this (0..=1).
    pub(crate) threshold: f64,
    /// Garbage is deleted once marked this long.
    pub(crate) grace: Duration,
    /// Bytes per second the pass reads and writes at most (0: unbounded).
    pub(crate) bandwidth: u64,
}

/// Which clones read the volume, for a pass: the reader points it checks its own against.
#[derive(Debug, Clone)]
pub(crate) enum Readers {
    /// TLog -> clones reading the volume up to it, from the namespace and their lineages.
    Known(std::collections::BTreeMap<u64, u64>),
    /// Some reader's point could not be had: nothing is compacted this pass (what was
    /// marked is still deleted).
    Unknown,
    /// Trust the points recorded in the volume (a volume without a namespace: tests).
    Recorded,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScrubReport {
    /// SCOs compacted (or dropped whole).
    pub(crate) scos_compacted: u64,
    /// Bytes the compactions freed on the backend (old object minus new).
    pub(crate) bytes_reclaimed: u64,
    /// Objects deleted.
    pub(crate) objects_deleted: u64,
    /// Bytes read and written.
    pub(crate) bytes_moved: u64,
}

/// One SCO to compact: its sealing TLog, clusters and data CRC.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    sco: u64,
    tlog: u64,
    clusters: u32,
    crc: u32,
}

impl Volume {
    /// One scrub pass (see the module doc), trusting the reader points the volume recorded
    /// (a volume without a namespace). A volume without a backend has nothing to reclaim.
    /// `progress` counts SCOs looked at; cancelling stops between two SCOs.
    #[cfg(test)]
    pub(crate) fn scrub(
        &self,
        opts: &ScrubOptions,
        progress: &dyn Progress,
    ) -> Result<ScrubReport> {
        self.scrub_with(opts, &Readers::Recorded, progress, &|| false)
    }

    /// [`Volume::scrub`] with the clones that read this volume as the namespace knows them:
    /// recorded reader points that differ are corrected first (and what they decided is
    /// recounted); with [`Readers::Unknown`] only marked garbage is deleted.
    /// A paced pass yields to the volume's clients: before each compaction it waits while
    /// `clients_waiting` says their writes are being held back for the upload (the backlog
    /// above the soft mark), at most [`MAX_YIELD`] each time, so that a pass still ends under
    /// sustained writes.
    pub(crate) fn scrub_with(
        &self,
        opts: &ScrubOptions,
        readers: &Readers,
        progress: &dyn Progress,
        clients_waiting: &dyn Fn() -> bool,
    ) -> Result<ScrubReport> {
        self.check_halted()?;
        let _one = self.scrub_lock.lock();
        let Some(remote) = self.remote.lock().clone() else {
            return Ok(ScrubReport::default());
        };
        let started = Instant::now();
        let mut report = ScrubReport::default();
        if let Readers::Known(points) = readers {
            let _views = self.rollback_lock.lock();
            let _map = self.uncork_lock.lock();
            if self.mds.reconcile_reader_points(points)? {
                tracing::warn!(volume = %self.id, ?points, "scrub: the reader points were not the namespace's; corrected, and what was found dead is recounted");
            }
        }
        if matches!(readers, Readers::Unknown) {
            report.objects_deleted += self.gc_delete(&remote, opts)?;
            return Ok(report);
        }
        // Everything closed goes up and is applied first, so that what rollbacks remapped is
        // in the tables before anything is decided.
        remote.block_on("scrub: upload", self.backup(&*remote.store, false))??;
        // The rest of a paced pass at low CPU priority (the upload above holds the uploader's
        // round lock: not at low priority). `crate::niceness`.
        let _niced = (opts.bandwidth != 0).then(crate::niceness::Niced::lower);
        self.recount(&remote, opts.bandwidth)?;
        self.gc_mark_inflight(&remote)?;
        {
            let _views = self.rollback_lock.lock();
            self.mds.reevaluate_pinned()?;
        }
        let candidates = self.scrub_candidates(opts.threshold)?;
        let total = candidates.len() as u64;
        for (i, c) in candidates.into_iter().enumerate() {
            if progress.cancelled() {
                return Err(cancelled_error());
            }
            // A deletion halts the volume and waits for the pass: it stops here.
            self.check_halted()?;
            progress.step(i as u64, total);
            yield_to_clients(opts.bandwidth, clients_waiting, progress);
            let t = Instant::now();
            let moved = self.compact(&remote, c, &mut report)?;
            report.bytes_moved += moved;
            throttle(opts.bandwidth, moved, t.elapsed());
        }
        progress.step(total, total);
        for c in self.tlog_candidates(opts.threshold)? {
            if progress.cancelled() {
                return Err(cancelled_error());
            }
            self.check_halted()?;
            yield_to_clients(opts.bandwidth, clients_waiting, progress);
            let t = Instant::now();
            let moved = self.compact_tlog(&remote, &c, &mut report)?;
            report.bytes_moved += moved;
            throttle(opts.bandwidth, moved, t.elapsed());
        }
        self.sweep_checkpoints(&remote)?;
        self.sweep_uploads(&remote)?;
        report.objects_deleted += self.gc_delete(&remote, opts)?;
        self.sync_evictions()?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.mds.scrub_pass_done(unix_now(), millis)?;
        Ok(report)
    }

    /// What the scrubber knows of this volume and did (`strata volume info`).
    pub(crate) fn scrub_info(&self) -> Result<crate::types::ScrubInfo> {
        let t = self.mds.scrub_totals()?;
        let (dead, pinned) = self.mds.liveness_rows()?;
        Ok(crate::types::ScrubInfo {
            dead_clusters: dead,
            pinned_clusters: pinned,
            garbage_objects: self.mds.gc_pending()?.len() as u64,
            passes: t.passes,
            last_finished_secs: t.last_finished,
            last_millis: t.last_millis,
            scos_compacted: t.scos_compacted,
            reclaimed_bytes: t.reclaimed_bytes,
            objects_deleted: t.objects_deleted,
        })
    }

    /// The own, sealed SCOs with dead positions whose live fraction is below `threshold`.
    fn scrub_candidates(&self, threshold: f64) -> Result<Vec<Candidate>> {
        let base = self.lineage.read().base_tlog();
        let mut out = Vec::new();
        for (sco, dead) in self.mds.scos_with_dead()? {
            let Some((tlog, clusters, crc)) = self.mds.sco_row(sco)? else {
                continue;
            };
            if tlog <= base || clusters == 0 {
                continue;
            }
            let present = match self.mds.compacted(sco)? {
                Some(c) => c.kept,
                None => clusters,
            };
            let live = f64::from(present.saturating_sub(dead));
            if live < threshold * f64::from(clusters) {
                out.push(Candidate {
                    sco,
                    tlog,
                    clusters,
                    crc,
                });
            }
        }
        Ok(out)
    }

    /// Compacts one SCO (step 3 of the module doc); returns the bytes read and written.
    fn compact(&self, remote: &Remote, c: Candidate, report: &mut ScrubReport) -> Result<u64> {
        let dead = {
            let _views = self.rollback_lock.lock();
            self.settled_dead(c.sco)?
        };
        if dead.is_empty() {
            return Ok(0);
        }
        let epoch = self.epochs.read().of(c.tlog);
        let current = self.mds.compacted(c.sco)?;
        let (old_key, positions, data) = self.read_whole(remote, c, epoch, current)?;
        if positions.is_empty() && dead.len() != c.clusters as usize {
            return Err(Error::Io(format!(
                "scrub: SCO {} has live clusters and no object on the backend",
                crate::volume::format::sco_name(c.sco)
            )));
        }
        let old_len = data.len() as u64;
        let mut kept = Vec::new();
        let mut clusters = Vec::new();
        for (j, idx) in positions.iter().enumerate() {
            if dead.binary_search(idx).is_err() {
                kept.push(*idx);
                clusters.extend_from_slice(&data[j * CLUSTER_SIZE..(j + 1) * CLUSTER_SIZE]);
            }
        }
        let writer = self.writer_epoch();
        let (record, new_len) = if kept.is_empty() {
            let counter = self.mds.next_compaction(c.sco, writer, epoch)?;
            (
                Compacted {
                    writer,
                    counter,
                    kept: 0,
                },
                0,
            )
        } else {
            let header = CompactedHeader {
                volume: self.id,
                sco: c.sco,
                clusters: c.clusters,
                kept: kept.clone(),
            };
            let obj = Bytes::from(header.encode_object(&clusters));
            let len = obj.len() as u64;
            // A key is never written twice: one taken before a backend restart forgot the
            // counter (in the same run) is refused, and the next counter is tried.
            let mut tries = 0;
            let counter = loop {
                let counter = self.mds.next_compaction(c.sco, writer, epoch)?;
                let key = compacted_key(c.sco, epoch, writer, counter);
                let what = format!("scrub: put {key}");
                match remote.block_on(&what, remote.store.put_if_absent(&key, obj.clone()))? {
                    Ok(_) => break counter,
                    Err(e) if e.is_condition_failed() && tries < 64 => tries += 1,
                    Err(e) => return Err(Error::Backend { what, source: e }),
                }
            };
            (
                Compacted {
                    writer,
                    counter,
                    kept: u32::try_from(kept.len()).unwrap_or(u32::MAX),
                },
                len,
            )
        };
        let reclaimed = old_len.saturating_sub(new_len);
        // The backend I/O ran without the rollback lock: under it again, every position
        // dropped must still be dead (a Remap since would have removed its row), else the
        // new object is abandoned (garbage) and the SCO left as it was.
        {
            let _views = self.rollback_lock.lock();
            let now = self.settled_dead(c.sco)?;
            if dead.iter().any(|i| now.binary_search(i).is_err()) {
                tracing::info!(volume = %self.id, sco = c.sco, "scrub: a dropped cluster was mapped again meanwhile; compaction abandoned");
                let key = compacted_key(c.sco, epoch, writer, record.counter);
                self.mds
                    .abandon_compaction(record.counter, &key, unix_now())?;
                drop(_views);
                self.drop_abandoned(remote, &key)?;
                return Ok(old_len + new_len);
            }
            // Every dead row read is settled: its position is not in the new object.
            self.mds
                .finish_compaction(c.sco, record, &dead, &old_key, unix_now(), reclaimed)?;
        }
        if record.kept == 0 {
            self.set_layout(c.sco, None);
            self.evict_sco(c.sco)?;
        } else {
            let key = compacted_key(c.sco, epoch, writer, record.counter);
            let header = CompactedHeader {
                volume: self.id,
                sco: c.sco,
                clusters: c.clusters,
                kept,
            };
            self.set_layout(c.sco, Some((key, header)));
        }
        report.scos_compacted += 1;
        report.bytes_reclaimed += reclaimed;
        Ok(old_len + new_len)
    }

    /// The dead positions of `sco` the compaction may drop: its dead rows, less any position
    /// a TLog not yet applied maps (a rollback's Remap), whatever the tables say. The caller
    /// holds the rollback lock.
    fn settled_dead(&self, sco: u64) -> Result<Vec<u32>> {
        let mut dead = self.mds.dead_of(sco)?;
        let st = self.state.read();
        let corked: std::collections::HashSet<u32> = st
            .ov
            .by_addr
            .values()
            .filter(|(l, _)| l.sco == sco)
            .map(|(l, _)| l.offset)
            .collect();
        dead.retain(|i| !corked.contains(i));
        Ok(dead)
    }

    /// The SCO's current object's key, the positions it holds (ascending) and their bytes
    /// (4096 each, in that order), checked: from the local file when whole, else the backend.
    fn read_whole(
        &self,
        remote: &Remote,
        c: Candidate,
        epoch: u64,
        current: Option<Compacted>,
    ) -> Result<(String, Vec<u32>, Bytes)> {
        let n = c.clusters as usize;
        let hdr = usize_of(SCO_HEADER_LEN);
        let sco_len = (hdr + n * CLUSTER_SIZE + SCO_FOOTER_LEN) as u64;
        let original = sco_key(c.sco, epoch);
        let check_original = |what: &str, b: &[u8]| -> Result<Bytes> {
            if b.len() as u64 != sco_len {
                return Err(Error::Io(format!(
                    "{what}: {} bytes, expected {sco_len}",
                    b.len()
                )));
            }
            let footer =
                ScoFooter::decode(what, &b[b.len() - SCO_FOOTER_LEN..]).map_err(fmt_err)?;
            let data = &b[hdr..b.len() - SCO_FOOTER_LEN];
            if footer.clusters != c.clusters || crc32c::crc32c(data) != c.crc {
                return Err(Error::Io(format!(
                    "{what}: its data does not match the SCO table (clusters or CRC32C)"
                )));
            }
            Ok(Bytes::copy_from_slice(data))
        };
        let local_whole = self
            .state
            .read()
            .scos
            .get(&c.sco)
            .is_some_and(|e| e.has_file && !e.evicted);
        match current {
            Some(cur) if cur.kept > 0 => {
                let key = compacted_key(c.sco, epoch, cur.writer, cur.counter);
                self.read_compacted(remote, c, key)
            }
            Some(_) => Err(Error::Io(format!(
                "SCO {}: dead positions recorded after it was dropped whole",
                c.sco
            ))),
            None if local_whole => {
                let f = self.sco_handle(c.sco)?;
                let what = format!(
                    "scrub: local SCO {}",
                    crate::volume::format::sco_name(c.sco)
                );
                let b = read_all(&*f, &what)?;
                let data = check_original(&what, &b)?;
                Ok((original, (0..c.clusters).collect(), data))
            }
            None => {
                let what = format!("scrub: {original}");
                match remote.block_on(&what, remote.store.get_range(&original, 0..sco_len))? {
                    Ok(b) => {
                        let data = check_original(&what, &b)?;
                        Ok((original, (0..c.clusters).collect(), data))
                    }
                    // Compacted before a backend restart forgot it: its newest compacted
                    // object is the SCO's.
                    Err(e) if e.is_not_found() => {
                        let found = self
                            .find_layout(&what, remote, &remote.store, self.id, c.sco, epoch)
                            .map_err(|f| f.into_error(&what))?;
                        match found {
                            Some(l) => self.read_compacted(remote, c, l.key),
                            // Dropped whole (nothing of it was live) before the restart.
                            None => Ok((original, Vec::new(), Bytes::new())),
                        }
                    }
                    Err(e) => Err(Error::Backend {
                        what: what.clone(),
                        source: e,
                    }),
                }
            }
        }
    }

    /// The compacted object `key` of SCO `c` read whole and checked: its key, the positions
    /// it keeps and their bytes.
    fn read_compacted(
        &self,
        remote: &Remote,
        c: Candidate,
        key: String,
    ) -> Result<(String, Vec<u32>, Bytes)> {
        let what = format!("scrub: {key}");
        // At most the header of 2^18 positions and as many clusters.
        let max = MAX_SCO_LEN + (2 << 20);
        let obj = remote
            .block_on(
                &what,
                crate::volume::backend::get_at_most(&*remote.store, &key, max),
            )?
            .map_err(|e| Error::Backend {
                what: what.clone(),
                source: e,
            })?
            .0;
        let need = CompactedHeader::needed(&key, &obj).map_err(fmt_err)?;
        let head = obj
            .get(..need)
            .ok_or_else(|| Error::Io(format!("{what}: shorter than its header")))?;
        let h = CompactedHeader::decode(&key, head, self.id, c.sco).map_err(fmt_err)?;
        let data = h.clusters_of(&key, &obj).map_err(fmt_err)?;
        Ok((key.clone(), h.kept.clone(), Bytes::copy_from_slice(data)))
    }
}

/// Waits so that `bytes` moved in `took` stay within `bandwidth` bytes per second (the
/// scrubber's pacing; 0: unbounded).
fn throttle(bandwidth: u64, bytes: u64, took: Duration) {
    if bandwidth == 0 {
        return;
    }
    let want = Duration::from_secs_f64(bytes as f64 / bandwidth as f64);
    if let Some(rest) = want.checked_sub(took) {
        std::thread::sleep(rest);
    }
}

/// How many times as long as a step that moves few bytes but costs CPU, metadata writes or
/// requests (a TLog's replay in the recount, a batch of deletes) a paced pass rests after it:
/// such a step runs at most a third of the time.
const TRANQUILITY: u32 = 2;

/// The longest rest: a step slowed by backend retries does not stall a pass (nor its cancel).
const MAX_REST: Duration = Duration::from_secs(1);

/// Rests after such a step that took `took` ([`TRANQUILITY`], at most [`MAX_REST`]; not when
/// `bandwidth` is 0, unbounded). Never with a lock held that other work waits for.
fn rest_after(bandwidth: u64, took: Duration) {
    if bandwidth != 0 {
        std::thread::sleep((took * TRANQUILITY).min(MAX_REST));
    }
}

/// The longest a paced pass waits for its volume's clients before one compaction: under
/// writes that never stop, a pass still compacts one SCO (tens of milliseconds) every half
/// second.
const MAX_YIELD: Duration = Duration::from_millis(500);

/// How often a yielding pass asks again.
const YIELD_POLL: Duration = Duration::from_millis(10);

/// Waits while `clients_waiting`, at most [`MAX_YIELD`] (not when `bandwidth` is 0,
/// unbounded, nor once the pass is cancelled).
fn yield_to_clients(bandwidth: u64, clients_waiting: &dyn Fn() -> bool, progress: &dyn Progress) {
    if bandwidth == 0 {
        return;
    }
    let started = Instant::now();
    while clients_waiting() && started.elapsed() < MAX_YIELD && !progress.cancelled() {
        std::thread::sleep(YIELD_POLL);
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
