//! A volume's upload backlog: the bytes it holds locally that the backend does not have yet,
//! which [`crate::pacing`] keeps below the hard mark (`Write_Buffer_Size`).
//!
//! The backlog is *measured* from the volume's files after every pipeline pass (and flush) and
//! *estimated* in between:
//!
//! ```text
//! estimate = measured + in flight when it began + reserved since it began − uploaded since
//! ```
//!
//! 1. A measurement reads what the backend manifest names, then takes a [`Mark`]: the running
//!    totals of bytes reserved by writes and bytes uploaded, and the bytes of writes still in
//!    flight (reserved, not yet in the files), under the lock that reservations take. Every
//!    write is then either done before the mark (in the files the measurement lists), in flight
//!    at the mark (perhaps not in the listing yet: counted on top, perhaps twice), or reserved
//!    after it (added on top); every upload after the mark is of a later TLog's object, in the
//!    listing, and subtracted.
//! 2. It then lists the files (without the lock: writers go on), and [`Backlog::record`]s the
//!    result with its mark, unless a later measurement was recorded meanwhile.
//! 3. A write reserves its length in one step under the lock ([`Backlog::reserve`]), only if
//!    the estimate stays at most the hard mark: concurrent writers never overshoot it together.
//!
//! Nothing is lost between two measurements (a write in flight or reserved while the files were
//! listed may be counted twice until the next one: the estimate errs high, never low), and an upload is
//! subtracted once: the volume counts each uploaded object once (see
//! [`crate::volume::Volume::uploaded_bytes`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::io_err;
use crate::error::{Error, Result};
use crate::volume::format::{
    parse_seq_name, CLUSTER_SIZE, CLUSTER_SIZE_U64, SCO_FOOTER_LEN, SCO_HEADER_LEN, TLOG_ENTRY_LEN,
    TLOG_HEADER_LEN,
};
use crate::volume::{is_zeros, LocalFs, Volume, VolumeOptions};

/// Running totals and the last measurement.
#[derive(Debug, Default)]
struct Tally {
    /// Bytes reserved by writes since the volume was opened.
    reserved: u64,
    /// Bytes reserved by writes that have not put them in the volume's files yet.
    in_flight: u64,
    /// The last recorded measurement.
    measured: u64,
    /// The mark it began with.
    at: Mark,
    /// The sequence number of the next mark.
    next_seq: u64,
}

/// Where a measurement began: the totals of reserved and uploaded bytes at that moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mark {
    seq: u64,
    reserved: u64,
    in_flight: u64,
    uploaded: u64,
}

/// The upload backlog of one volume.
#[derive(Debug)]
pub(crate) struct Backlog {
    fs: Arc<dyn LocalFs>,
    dir: PathBuf,
    /// The soft mark (bytes): above it the pipeline makes sure something can be uploaded.
    soft: u64,
    tally: Mutex<Tally>,
    /// Signalled after every measurement, for writers waiting for room.
    measured: Condvar,
    /// Wakes the volume's pipeline at once when a writer waits for room.
    wanted: tokio::sync::Notify,
}

impl Backlog {
    /// The backlog of the volume in `dir`, unknown (zero) until its first measurement.
    pub(crate) fn new(fs: Arc<dyn LocalFs>, dir: PathBuf, soft: u64) -> Backlog {
        Backlog {
            fs,
            dir,
            soft,
            tally: Mutex::new(Tally {
                next_seq: 1,
                ..Tally::default()
            }),
            measured: Condvar::new(),
            wanted: tokio::sync::Notify::new(),
        }
    }

    fn estimate_in(t: &Tally, uploaded: u64) -> u64 {
        let added = t.reserved.saturating_sub(t.at.reserved);
        let drained = uploaded.saturating_sub(t.at.uploaded);
        t.measured
            .saturating_add(t.at.in_flight)
            .saturating_add(added)
            .saturating_sub(drained)
    }

    /// The current estimate, given the volume's count of uploaded bytes.
    pub(crate) fn estimate(&self, uploaded: u64) -> u64 {
        Self::estimate_in(&self.tally.lock(), uploaded)
    }

    /// Whether the estimate is at or above the soft mark.
    pub(crate) fn above_soft(&self, uploaded: u64) -> bool {
        self.estimate(uploaded) >= self.soft
    }

    /// Adds `len` to the backlog if the estimate stays at most `hard`; returns the new estimate,
    /// or `None` (nothing reserved) when there is no room.
    pub(crate) fn reserve(&self, len: u64, hard: u64, uploaded: u64) -> Option<u64> {
        let mut t = self.tally.lock();
        let now = Self::estimate_in(&t, uploaded).saturating_add(len);
        if now > hard {
            return None;
        }
        t.reserved = t.reserved.saturating_add(len);
        t.in_flight = t.in_flight.saturating_add(len);
        Some(now)
    }

    /// A write that reserved `len` has put its bytes in the volume's files (or failed).
    pub(crate) fn complete(&self, len: u64) {
        let mut t = self.tally.lock();
        t.in_flight = t.in_flight.saturating_sub(len);
    }

    /// Step 1 of a measurement: the mark it begins with.
    pub(crate) fn begin(&self, uploaded: u64) -> Mark {
        let mut t = self.tally.lock();
        let seq = t.next_seq;
        t.next_seq += 1;
        Mark {
            seq,
            reserved: t.reserved,
            in_flight: t.in_flight,
            uploaded,
        }
    }

    /// Step 2: records `bytes`, measured after `mark` was taken, unless a measurement begun
    /// later was recorded already; wakes writers waiting for room.
    pub(crate) fn record(&self, mark: Mark, bytes: u64) {
        let mut t = self.tally.lock();
        if mark.seq > t.at.seq {
            t.measured = bytes;
            t.at = mark;
        }
        self.measured.notify_all();
    }

    /// Step 2, when a backup pass may run meanwhile (a flush beside the pipeline): records
    /// `bytes` only if no upload was counted since `mark` (`uploaded_now` is the count after
    /// the listing). A pass that named objects meanwhile may have deleted files the listing
    /// then lacked, whose bytes the estimate subtracts as uploaded already: recording would
    /// count them out twice. The estimate stays as it was (it errs high); the next measurement
    /// records. Returns whether it recorded.
    pub(crate) fn record_if_quiet(&self, mark: Mark, bytes: u64, uploaded_now: u64) -> bool {
        if uploaded_now != mark.uploaded {
            self.measured.notify_all();
            return false;
        }
        self.record(mark, bytes);
        true
    }

    /// Waits (at most `limit`) for the next measurement, waking the pipeline first.
    pub(crate) fn wait_for_room(&self, limit: Duration) {
        self.wanted.notify_one();
        let mut t = self.tally.lock();
        let _ = self.measured.wait_for(&mut t, limit);
    }

    /// Resolves when a writer waits for room (see [`Backlog::wait_for_room`]).
    pub(crate) async fn wanted(&self) {
        self.wanted.notified().await
    }

    /// Measures the backlog again from the local files and what the backend has.
    pub(crate) async fn refresh(&self, vol: &Volume) {
        // The mark right after the manifest was read (no backup pass runs while it is): what
        // is uploaded from here on belongs to later TLogs, in the listing below and subtracted
        // once; what went up before and is not in the manifest yet is counted (errs high).
        let last = vol.backend_last_tlog().await;
        let mark = self.begin(vol.uploaded_bytes());
        let (fs, dir) = (self.fs.clone(), self.dir.clone());
        let last = known_on_backend(vol, last);
        let last_sco = vol.newest_sco_sealed_by(last);
        // Listing and opening the volume's files blocks: keep it off the runtime's workers.
        let measured =
            tokio::task::spawn_blocking(move || pending_bytes(&*fs, &dir, last, last_sco))
                .await
                .unwrap_or_else(|e| Err(Error::Io(format!("measuring the upload backlog: {e}"))));
        match measured {
            Ok(n) => {
                self.record_if_quiet(mark, n, vol.uploaded_bytes());
            }
            Err(e) => {
                tracing::warn!(volume = %vol.id(), error = %e, "cannot measure a volume's upload backlog")
            }
        }
    }
}

/// What a write of `len` bytes at `offset` adds to the backlog at most: the clusters it touches
/// (a partial one at either end is written whole; a write of nothing, a resize, may rewrite
/// one), a TLog entry for each and a resize entry, and for every SCO it may touch the SCO's
/// header, footer and seal entry and the close of a TLog with the next one's header (a seal
/// may close the TLog). Errs high, so that the measured backlog stays at most what the writes
/// reserved; an aligned 4 KiB write costs about 4.5 KiB.
pub(crate) fn cost(offset: u64, len: u64, opts: VolumeOptions) -> u64 {
    let clusters = if len == 0 {
        1
    } else {
        offset
            .saturating_add(len)
            .div_ceil(CLUSTER_SIZE_U64)
            .saturating_sub(offset / CLUSTER_SIZE_U64)
    };
    let per_sco = SCO_HEADER_LEN + (SCO_FOOTER_LEN + 2 * TLOG_ENTRY_LEN + TLOG_HEADER_LEN) as u64;
    let scos = clusters.div_ceil(u64::from(opts.sco_clusters.max(1))) + 1;
    (clusters * CLUSTER_SIZE_U64)
        .saturating_add((clusters + 1) * TLOG_ENTRY_LEN as u64)
        .saturating_add(scos * per_sco)
}

/// [`cost`] of writing `data` at `offset`, less the whole clusters of zeros in it when
/// `zero_detect` is on: those are unmapped (one TLog entry, counted), nothing is written to a
/// SCO, and the backend has nothing of them to take.
pub(crate) fn write_cost(offset: u64, data: &[u8], opts: VolumeOptions, zero_detect: bool) -> u64 {
    let full = cost(offset, data.len() as u64, opts);
    if !zero_detect {
        return full;
    }
    // The first whole cluster starts `skip` bytes into `data`.
    let skip =
        usize::try_from(offset.next_multiple_of(CLUSTER_SIZE_U64) - offset).unwrap_or(usize::MAX);
    let zeros = data
        .get(skip..)
        .unwrap_or_default()
        .chunks_exact(CLUSTER_SIZE)
        .filter(|c| is_zeros(c))
        .count() as u64;
    full.saturating_sub(zeros * CLUSTER_SIZE_U64)
}

/// The newest TLog known to be on the backend: the manifest's, as last read, and at least the
/// newest one the MetaDataStore applied (it only ever takes TLogs the backend had), so that a
/// volume opened while the backend is unreachable does not count what it uploaded before.
pub(crate) fn known_on_backend(vol: &Volume, manifest_last: Option<u64>) -> u64 {
    manifest_last.unwrap_or(0).max(vol.stats().applied_tlog)
}

/// Bytes of a volume's local SCOs and TLogs not yet on the backend, given the last TLog the
/// backend has: later TLogs, and SCOs after `last_sco`, the newest one those TLogs sealed
/// ([`Volume::newest_sco_sealed_by`]: the TLogs themselves are deleted locally once their
/// effect is in the MetaDataStore).
pub(crate) fn pending_bytes(
    fs: &dyn LocalFs,
    dir: &Path,
    last_tlog: u64,
    last_sco: u64,
) -> Result<u64> {
    let tlog_dir = crate::volume::layout::tlog_dir(dir);
    let sco_dir = crate::volume::layout::sco_dir(dir);
    let mut total = 0;
    for (d, after) in [(&tlog_dir, last_tlog), (&sco_dir, last_sco)] {
        let names = match fs.list(d) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(d.display(), e)),
        };
        for name in names {
            let Some(seq) = parse_seq_name(&name) else {
                continue;
            };
            if seq <= after {
                continue;
            }
            let p = d.join(&name);
            let len = fs
                .open(&p)
                .and_then(|f| f.file_len())
                .map_err(|e| io_err(p.display(), e))?;
            // A TLog holding only its header (the fresh open one) has nothing to upload yet.
            if !(d == &tlog_dir && len <= TLOG_HEADER_LEN as u64) {
                total += len;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::SimFs;

    fn backlog() -> Backlog {
        Backlog::new(Arc::new(SimFs::new()), PathBuf::from("/v"), 50)
    }

    #[test]
    fn a_reservation_made_while_the_files_are_listed_is_not_lost() {
        let b = backlog();
        assert_eq!(b.reserve(30, 100, 0), Some(30));
        b.complete(30);
        // A measurement begins; a write reserves while the files are listed, after they were
        // (its bytes are not in the result).
        let mark = b.begin(0);
        assert_eq!(b.reserve(20, 100, 0), Some(50));
        b.complete(20);
        b.record(mark, 30);
        assert_eq!(
            b.estimate(0),
            50,
            "the write reserved meanwhile was dropped"
        );
        // The next measurement sees it in the files.
        let mark = b.begin(0);
        b.record(mark, 50);
        assert_eq!(b.estimate(0), 50);
    }

    /// A write reserves before it writes: one still writing when a measurement lists the files
    /// may be missing from them, and its reservation must not be dropped with the old estimate
    /// (the backpressure e2e test saw the files 1.3 MiB past a 16 MiB hard mark this way).
    #[test]
    fn a_write_still_in_flight_when_the_files_are_listed_is_not_lost() {
        let b = backlog();
        assert_eq!(b.reserve(30, 100, 0), Some(30));
        // The write has not reached the files when they are listed.
        let mark = b.begin(0);
        b.record(mark, 0);
        assert_eq!(b.estimate(0), 30, "the write in flight was dropped");
        assert_eq!(b.reserve(80, 100, 0), None, "room given twice");
        b.complete(30);
        // Once it is in the files, the next measurement counts it there, once.
        let mark = b.begin(0);
        b.record(mark, 30);
        assert_eq!(b.estimate(0), 30);
    }

    /// A flush's pass may upload, name and uncork a TLog while the pipeline lists the files:
    /// the listing lacks it and the estimate subtracts it as uploaded. That measurement must
    /// not replace the estimate (it would count those bytes out twice).
    #[test]
    fn a_measurement_during_which_uploads_were_counted_is_not_recorded() {
        let b = backlog();
        assert_eq!(b.reserve(80, 100, 0), Some(80));
        b.complete(80);
        let mark = b.begin(0);
        // Meanwhile 30 bytes went up and their local files were deleted: the listing shows 50.
        assert!(!b.record_if_quiet(mark, 50, 30));
        assert_eq!(b.estimate(30), 50, "the upload counted out twice");
        let mark = b.begin(30);
        assert!(b.record_if_quiet(mark, 50, 30));
        assert_eq!(b.estimate(30), 50);
    }

    #[test]
    fn an_upload_is_subtracted_once_and_measurements_reset_it() {
        let b = backlog();
        assert_eq!(b.reserve(80, 100, 0), Some(80));
        b.complete(80);
        // 30 bytes went up since: room for 50 more, not 80.
        assert_eq!(b.estimate(30), 50);
        assert_eq!(b.reserve(50, 100, 30), Some(100));
        b.complete(50);
        assert_eq!(b.reserve(1, 100, 30), None, "past the hard mark");
        // A measurement begun after those 30 bytes went up replaces the estimate: the upload
        // is not subtracted again.
        let mark = b.begin(30);
        b.record(mark, 100);
        assert_eq!(b.estimate(30), 100);
        assert_eq!(b.estimate(40), 90);
    }

    #[test]
    fn an_older_measurement_never_replaces_a_newer_one() {
        let b = backlog();
        let old = b.begin(0);
        let new = b.begin(0);
        b.record(new, 10);
        b.record(old, 70);
        assert_eq!(b.estimate(0), 10);
        assert!(!b.above_soft(0));
        let m = b.begin(0);
        b.record(m, 60);
        assert!(b.above_soft(0));
    }

    #[test]
    fn a_write_costs_the_clusters_it_touches_and_little_more() {
        let opts = VolumeOptions {
            sco_clusters: 1024,
            tlog_scos: 4,
            checkpoint_tlogs: 8,
        };
        let c = CLUSTER_SIZE_U64;
        let entries = |n: u64| n * c + (n + 1) * TLOG_ENTRY_LEN as u64;
        // Aligned: one cluster, with its entries and what opening a SCO may add; the same
        // length across a cluster boundary writes both clusters whole: one more.
        let aligned = cost(8 * c, c, opts);
        let across = cost(8 * c + 1, c, opts);
        assert!(aligned >= entries(1), "{aligned}");
        assert!(across >= entries(2), "{across}");
        assert_eq!(across - aligned, c + TLOG_ENTRY_LEN as u64);
        // A resize may rewrite one cluster.
        assert!(cost(5, 0, opts) >= entries(1));
        // 1 MiB aligned: its 256 clusters, not 257.
        assert_eq!(
            cost(1, 256 * c, opts) - cost(0, 256 * c, opts),
            c + TLOG_ENTRY_LEN as u64
        );
    }
}
