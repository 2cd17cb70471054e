//! Space operations on a volume: punching holes (DEALLOCATE, a guest's discard), zero
//! detection on writes (whole clusters of zeros are unmapped, not stored), finding data and
//! holes (SEEK), and reserving ranges (ALLOCATE: the volume grows over them and their
//! unwritten clusters count as reserved; local accounting, kept in `mds.redb`).
//!
//! A hole is logged as an `Unmap` entry (`engine/FORMATS.md`, "TLog"): the clusters read as
//! zeros at once, their old positions are superseded like any overwrite (the scrubber
//! reclaims them once no snapshot or clone reads them), and the entry is durable by the same
//! contract as a write. A clone's map is its own copy, so an unmapped cluster of a clone reads
//! as zeros, never as its parent's data; a snapshot is a TLog boundary, so one taken before
//! the unmap keeps its view.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::types::SeekWhat;
use crate::volume::format::{ClusterHash, Entry, HashAlg, CLUSTER_SIZE, CLUSTER_SIZE_U64};
use crate::volume::mds::store::Known;
use crate::volume::state::{State, Volume};

/// Most clusters one `Unmap` entry (and one hold of the volume lock) covers: 1 GiB.
const UNMAP_CHUNK: u64 = 1 << 18;

/// Clusters of the map looked at per hold of the volume lock when seeking (256 MiB).
const SEEK_WINDOW: u64 = 1 << 16;

/// The hash of a cluster of zeros by `alg` (computed once per algorithm).
fn zero_hash(alg: HashAlg) -> ClusterHash {
    static MD5: std::sync::OnceLock<ClusterHash> = std::sync::OnceLock::new();
    static BLAKE3: std::sync::OnceLock<ClusterHash> = std::sync::OnceLock::new();
    let cell = match alg {
        HashAlg::Md5 => &MD5,
        HashAlg::Blake3 => &BLAKE3,
    };
    *cell.get_or_init(|| ClusterHash::with(alg, &[0u8; CLUSTER_SIZE]))
}

/// The hash a new cluster `c` carries: a cluster of zeros costs a scan, not a hash.
pub(super) fn new_cluster_hash(c: &[u8]) -> ClusterHash {
    if is_zeros(c) {
        zero_hash(HashAlg::current())
    } else {
        ClusterHash::of(c)
    }
}

/// Whether a cluster is all zeros (`hash`: its hash, when known, checked first).
fn is_zero(c: &[u8], hash: Option<&ClusterHash>) -> bool {
    hash.is_none_or(|h| *h == zero_hash(h.alg())) && is_zeros(c)
}

/// Whether `b` holds only zeros. Data rarely starts with 64 zero bytes, so that is looked at
/// first, one byte at a time; the rest in blocks the compiler vectorises (a byte-by-byte loop
/// was a third of the CPU of a write of zeros).
pub(crate) fn is_zeros(b: &[u8]) -> bool {
    let (head, rest) = b.split_at(b.len().min(64));
    head.iter().all(|x| *x == 0)
        && rest
            .chunks(512)
            .all(|c| c.iter().fold(0u8, |acc, x| acc | x) == 0)
}

impl Volume {
    /// Whether zero detection is on (`Zero_Detect`).
    pub(crate) fn zero_detect(&self) -> bool {
        self.zero_detect.load(Ordering::Relaxed)
    }

    /// Turns zero detection on or off (`Zero_Detect`; on by default).
    pub(crate) fn set_zero_detect(&self, on: bool) {
        self.zero_detect.store(on, Ordering::Relaxed);
    }

    /// Stores whole clusters `buf` at cluster `first`: runs of zero clusters are unmapped (with
    /// zero detection on), the others appended to the open SCO (`hashes` and `known`: what the
    /// caller computed and looked up before the lock, see [`Volume::append_hashed`]).
    pub(super) fn store_clusters(
        &self,
        st: &mut State,
        first: u64,
        buf: &[u8],
        hashes: Option<&[ClusterHash]>,
        known: Option<&Known>,
    ) -> Result<()> {
        if !self.zero_detect.load(Ordering::Relaxed) {
            return self.append_hashed(st, first, buf, hashes, known);
        }
        let zero: Vec<bool> = buf
            .chunks_exact(CLUSTER_SIZE)
            .enumerate()
            .map(|(i, c)| is_zero(c, hashes.and_then(|h| h.get(i))))
            .collect();
        let mut i = 0;
        while i < zero.len() {
            let mut j = i + 1;
            while j < zero.len() && zero[j] == zero[i] {
                j += 1;
            }
            let (from, to) = (first + i as u64, first + j as u64);
            if zero[i] {
                self.unmap_locked(st, from, to)?;
            } else {
                let h = hashes.and_then(|h| h.get(i..j));
                self.append_hashed(st, from, &buf[i * CLUSTER_SIZE..j * CLUSTER_SIZE], h, known)?;
            }
            i = j;
        }
        Ok(())
    }

    /// Unmaps clusters `from..to` (below the size): logs one `Unmap` entry, unless none of
    /// them is mapped (then nothing changes).
    pub(super) fn unmap_locked(&self, st: &mut State, from: u64, to: u64) -> Result<()> {
        let gone = self.count_mapped(st, from, to)?;
        if gone == 0 {
            return Ok(());
        }
        self.ensure_our_tlog(st)?;
        self.tlog_append(
            st,
            &[Entry::Unmap {
                address: from,
                count: to - from,
            }],
        )?;
        let tlog = st.tlog.seq;
        self.unmap_clusters(st, tlog, from, to, gone)?;
        self.counters
            .clusters_unmapped
            .fetch_add(gone, Ordering::Relaxed);
        Ok(())
    }

    /// Punches a hole: bytes `off .. off + len` (cut at the size, which never changes) read as
    /// zeros. Whole clusters are unmapped, at most [`UNMAP_CHUNK`] per hold of the lock;
    /// partial ones rewritten with zeros. Durable on return, like a stable write (so is
    /// everything written before it): a crash after it never brings the old bytes back.
    pub(crate) fn punch(&self, off: u64, len: u64) -> Result<()> {
        let size = self.state.read().size;
        let end = off.saturating_add(len).min(size);
        if off >= end {
            return self.sync();
        }
        let first_whole = off.div_ceil(CLUSTER_SIZE_U64);
        let end_whole = end / CLUSTER_SIZE_U64;
        if first_whole >= end_whole {
            self.zero_bytes(off, end)?;
        } else {
            self.zero_bytes(off, first_whole * CLUSTER_SIZE_U64)?;
            self.zero_bytes(end_whole * CLUSTER_SIZE_U64, end)?;
            let mut from = first_whole;
            while from < end_whole {
                let to = (from + UNMAP_CHUNK).min(end_whole);
                self.guarded(|| {
                    let mut st = self.state.write();
                    self.check_writable()?;
                    // A concurrent shrink may have cut the range.
                    let to = to.min(st.size / CLUSTER_SIZE_U64);
                    if from < to {
                        self.unmap_locked(&mut st, from, to)?;
                        st.write_gen += 1;
                        self.roll_if_long(&mut st)?;
                    }
                    Ok(())
                })?;
                from = to;
            }
            self.unreserve(first_whole, end_whole)?;
        }
        self.sync()
    }

    /// ALLOCATE: grows the volume to cover `off .. off + len` (never shrinks it) and reserves
    /// the range's clusters. Durable when it returns.
    pub(crate) fn allocate(&self, off: u64, len: u64) -> Result<()> {
        let end = off
            .checked_add(len)
            .filter(|e| *e <= crate::volume::options::MAX_VOLUME_SIZE)
            .ok_or_else(|| Error::Invalid("allocation past the largest volume size".into()))?;
        if len == 0 {
            return Ok(());
        }
        self.guarded(|| {
            let mut st = self.state.write();
            self.check_writable()?;
            if end > st.size {
                self.grow_to(&mut st, end)?;
                st.write_gen += 1;
                self.roll_if_long(&mut st)?;
            }
            Ok(())
        })?;
        {
            let mut r = self.reserved.lock();
            r.insert(off / CLUSTER_SIZE_U64, end.div_ceil(CLUSTER_SIZE_U64));
            self.mds.set_reserved(&r)?;
        }
        self.sync()
    }

    /// Drops the reservation of clusters `from..to` (a hole punched, a shrink).
    pub(super) fn unreserve(&self, from: u64, to: u64) -> Result<()> {
        let mut r = self.reserved.lock();
        if r.remove(from, to) {
            self.mds.set_reserved(&r)?;
        }
        Ok(())
    }

    /// Bytes ALLOCATE reserved that hold no data yet (reserved clusters not mapped, below the
    /// size). Mapped plus reserved is what the volume has allocated. Counted [`SEEK_WINDOW`]
    /// clusters per hold of the volume lock, so writers are not held up by a reservation of a
    /// whole large disk (the figure is a moment's, like any statistic).
    pub(crate) fn reserved_bytes(&self) -> Result<u64> {
        let ranges: Vec<(u64, u64)> = self.reserved.lock().iter().collect();
        let mut n = 0;
        for (from, to) in ranges {
            let mut at = from;
            while at < to {
                let st = self.state.read();
                let stop = to
                    .min(st.size.div_ceil(CLUSTER_SIZE_U64))
                    .min(at + SEEK_WINDOW);
                if at >= stop {
                    break;
                }
                n += (stop - at) - self.count_mapped(&st, at, stop)?;
                at = stop;
            }
        }
        Ok(n * CLUSTER_SIZE_U64)
    }

    /// Writes zeros over `from..to` (less than a cluster on each side of a punch), cut at the
    /// size under the lock: a punch never grows the volume, even when a shrink runs at the
    /// same time (with zero detection, a cluster left all zeros is unmapped).
    fn zero_bytes(&self, from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        self.with_rmw(|st, fetched| {
            self.check_writable()?;
            let to = to.min(st.size);
            if from >= to {
                return Ok(Ok(()));
            }
            let zeros = vec![0u8; crate::volume::int::usize_of(to - from)];
            let r = self.write_locked(st, from, to, &zeros, fetched)?;
            if r.is_ok() {
                st.write_gen += 1;
                self.roll_if_long(st)?;
            }
            Ok(r)
        })
    }

    /// SEEK: the first offset at or after `off` in data (a mapped cluster) or in a hole (an
    /// unmapped cluster, or the end of the volume). `None`: no data at or after `off`, or
    /// `off` is at or past the end (NFS4ERR_NXIO).
    pub(crate) fn seek(&self, off: u64, what: SeekWhat) -> Result<Option<u64>> {
        self.check_halted()?;
        let mut ca = off / CLUSTER_SIZE_U64;
        loop {
            let st = self.state.read();
            if off >= st.size {
                return Ok(None);
            }
            let end = st.size.div_ceil(CLUSTER_SIZE_U64);
            if ca >= end {
                return Ok(match what {
                    SeekWhat::Data => None,
                    SeekWhat::Hole => Some(st.size),
                });
            }
            let hi = (ca + SEEK_WINDOW).min(end);
            let map = self.lookup_range(&st, ca, hi)?;
            let found = match what {
                SeekWhat::Data => map.keys().next().copied(),
                SeekWhat::Hole => (ca..hi).find(|a| !map.contains_key(a)),
            };
            if let Some(a) = found {
                return Ok(Some((a * CLUSTER_SIZE_U64).max(off).min(st.size)));
            }
            ca = hi;
        }
    }
}
