//! The read path: clusters from the local SCO cache, or from the cluster cache and the backend
//! (one ranged GET per run) when their SCO was evicted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::volume::clone::ScoSource;
use crate::volume::files::io_err;
use crate::volume::format::{sco_name, ScoFooter, CLUSTER_SIZE, CLUSTER_SIZE_U64};
use crate::volume::int::usize_of;
use crate::volume::localfs::LocalFile;
use crate::volume::mds::store::Loc;
use crate::volume::scrub::resolve::Fetch;
use crate::volume::state::{State, Volume};

/// Most clusters of an evicted SCO fetched by one ranged GET (1 MiB).
const REMOTE_RUN: u64 = 256;

/// The locations of the clusters a read covers: of its one cluster (every 4 KiB READ: one
/// address looked up, nothing allocated), or of a run of them.
enum ReadMap {
    One(u64, Option<Loc>),
    Run(BTreeMap<u64, Loc>),
}

impl ReadMap {
    fn get(&self, a: u64) -> Option<&Loc> {
        match self {
            ReadMap::One(at, loc) => loc.as_ref().filter(|_| *at == a),
            ReadMap::Run(m) => m.get(&a),
        }
    }
}

impl Volume {
    pub(super) fn sco_handle(&self, seq: u64) -> Result<Arc<dyn LocalFile>> {
        // Held across the open: an eviction's removal of the handle (after its stub replaced
        // the file) cannot fall between this open and the keep below.
        let mut h = self.handles.lock();
        if let Some(f) = h.get(seq) {
            return Ok(f);
        }
        let path = self.sco_dir.join(sco_name(seq));
        let f = self.fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        h.keep(seq, f.clone());
        Ok(f)
    }

    /// Reads up to `buf.len()` bytes at `off`; returns the count (short only at the end of the
    /// volume). Never-written clusters read as zeros.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        Ok(self.read_to_end(off, buf)?.0)
    }

    /// [`Volume::read`], and whether the read reached the end of the volume (with the size it
    /// read under the same lock: a READ's end-of-file flag).
    pub(crate) fn read_to_end(&self, off: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        self.check_halted()?;
        let st = self.state.read();
        if off >= st.size || buf.is_empty() {
            return Ok((0, off >= st.size));
        }
        let n = usize_of((buf.len() as u64).min(st.size - off));
        let end = off + n as u64;
        let at_end = end >= st.size;
        let (from, to) = (off / CLUSTER_SIZE_U64, end.div_ceil(CLUSTER_SIZE_U64));
        let map = if to - from == 1 {
            ReadMap::One(from, self.lookup(&st, from)?)
        } else {
            ReadMap::Run(self.lookup_range(&st, from, to)?)
        };
        // Runs of evicted SCOs, fetched from the backend after the volume lock is released
        // (writers must not wait for the backend): (buffer range, offset in the first cluster,
        // locations). What a location names never changes, so reading it later is safe.
        let mut remote: Vec<(std::ops::Range<usize>, u64, Vec<Loc>, ScoSource)> = Vec::new();
        let mut pos = off;
        // Runs of clusters that are contiguous in one SCO are read with one pread.
        while pos < end {
            let ca = pos / CLUSTER_SIZE_U64;
            let within = pos % CLUSTER_SIZE_U64;
            let b0 = usize_of(pos - off);
            match map.get(ca) {
                None => {
                    let stop = ((ca + 1) * CLUSTER_SIZE_U64).min(end);
                    buf[b0..usize_of(stop - off)].fill(0);
                    pos = stop;
                }
                Some(loc) => {
                    let mut stop_ca = ca + 1;
                    let entry = st.scos.get(&loc.sco);
                    if let Some(e) = entry {
                        e.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    let evicted = entry.is_some_and(|e| e.evicted);
                    // A remote run is one ranged GET: bounded, so one read never asks the
                    // backend for more than REMOTE_RUN clusters at once.
                    let cap = if evicted { ca + REMOTE_RUN } else { u64::MAX };
                    while stop_ca < cap && stop_ca * CLUSTER_SIZE_U64 < end {
                        match map.get(stop_ca) {
                            Some(l)
                                if l.sco == loc.sco
                                    && u64::from(l.offset)
                                        == u64::from(loc.offset) + (stop_ca - ca) =>
                            {
                                stop_ca += 1
                            }
                            _ => break,
                        }
                    }
                    let stop = (stop_ca * CLUSTER_SIZE_U64).min(end);
                    let range = b0..usize_of(stop - off);
                    if evicted {
                        let run: Vec<Loc> =
                            (ca..stop_ca).filter_map(|a| map.get(a).copied()).collect();
                        remote.push((range, within, run, self.sco_source(&st, loc.sco)?));
                    } else {
                        self.read_loc(&st, loc, &mut buf[range], within)?;
                    }
                    if !evicted {
                        self.counters
                            .cache_hits
                            .fetch_add(stop_ca - ca, Ordering::Relaxed);
                    }
                    pos = stop;
                }
            }
        }
        drop(st);
        for (range, within, run, src) in remote {
            self.read_remote(&run, &mut buf[range], within, src)?;
        }
        Ok((n, at_end))
    }

    /// Reads `buf.len()` bytes at `within` of the cluster at `loc` and on (a run of clusters
    /// contiguous in one SCO, in the local SCO cache). A cluster of an evicted SCO is read
    /// through the cluster cache and the backend ([`Volume::read_remote`]).
    pub(super) fn read_loc(
        &self,
        st: &State,
        loc: &Loc,
        buf: &mut [u8],
        within: u64,
    ) -> Result<()> {
        if st.scos.get(&loc.sco).is_some_and(|e| e.evicted) {
            let src = self.sco_source(st, loc.sco)?;
            return self.read_remote(std::slice::from_ref(loc), buf, within, src);
        }
        let off = ScoFooter::offset(loc.offset) + within;
        // The open SCO's newest clusters may be only in memory yet (`deferred.rs`, rule 3).
        let from_file = match st.sco.as_ref().filter(|s| s.seq == loc.sco) {
            Some(open) => open.deferred.read(off, buf),
            None => Some(buf.len()),
        };
        let short = || {
            Error::Io(format!(
                "SCO {}: short read at cluster {} (the SCO is truncated)",
                sco_name(loc.sco),
                loc.offset
            ))
        };
        let k = from_file.ok_or_else(short)?;
        if k > 0 {
            let n = self
                .sco_handle(loc.sco)?
                .read_at(&mut buf[..k], off)
                .map_err(|e| io_err(format!("SCO {}", sco_name(loc.sco)), e))?;
            if n != k {
                return Err(short());
            }
        }
        Ok(())
    }

    /// Reads clusters of an evicted SCO (of this volume or of an ancestor) found at `src`: `run` holds their locations,
    /// contiguous in one SCO, and `buf` receives `buf.len()` bytes from `within` of the first
    /// one on. Each cluster is
    /// taken from the cluster cache by its hash when there; the others come from the backend SCO
    /// object with ONE ranged GET (from the first missing cluster to the last), are verified
    /// against their hash and kept in the cluster cache. An unreachable backend is `Delay` (the
    /// client retries); a mismatch is an error.
    pub(super) fn read_remote(
        &self,
        run: &[Loc],
        buf: &mut [u8],
        within: u64,
        src: ScoSource,
    ) -> Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let what = format!(
            "backend SCO {} clusters {}..={}",
            sco_name(first.sco),
            first.offset,
            last.offset
        );
        let within = usize_of(within);
        if within + buf.len() > run.len() * CLUSTER_SIZE || within >= CLUSTER_SIZE {
            return Err(Error::Io(format!("{what}: read outside the run")));
        }
        let cache = self.cluster_cache.lock().clone();
        // Which clusters the cluster cache serves; the bytes of the others are fetched.
        let mut missing = Vec::new();
        for (i, loc) in run.iter().enumerate() {
            let (lo, hi) = Self::run_slice(i, within, buf.len());
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.get(&loc.hash, lo.0, &mut buf[hi.0..hi.1]));
            if hit {
                self.counters
                    .cluster_cache_hits
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                missing.push(i);
            }
        }
        let (Some(&m0), Some(&m1)) = (missing.first(), missing.last()) else {
            return Ok(());
        };
        let start = ScoFooter::offset(run[m0].offset);
        let len = (m1 - m0 + 1) as u64 * CLUSTER_SIZE_U64;
        // An ancestor's SCO still whole in its owner's local cache is read there (checked by
        // the hashes); anything else from the backend.
        let local = src
            .ancestor
            .and_then(|a| self.ancestor_local(a, &run[m0..=m1], start));
        let verified = local.is_some();
        let fetched;
        let data: &[u8] = match &local {
            Some(d) => d,
            None => {
                fetched = self.fetch_range(&what, first.sco, src, start, len)?;
                &fetched
            }
        };
        for i in missing {
            let c = &data[(i - m0) * CLUSTER_SIZE..(i - m0 + 1) * CLUSTER_SIZE];
            if !verified && !run[i].hash.matches(c) {
                return Err(Error::Io(format!(
                    "backend SCO {} cluster {}: hash mismatch: the backend copy is corrupt",
                    sco_name(run[i].sco),
                    run[i].offset
                )));
            }
            let (lo, hi) = Self::run_slice(i, within, buf.len());
            buf[hi.0..hi.1].copy_from_slice(&c[lo.0..lo.1]);
            if let Some(cc) = &cache {
                cc.insert(run[i].hash, c);
            }
            self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Bytes `start..start + len` of SCO `sco`'s object at `src` on the backend (`Delay` when
    /// the backend cannot be reached).
    fn fetch_range(
        &self,
        what: &str,
        sco: u64,
        src: ScoSource,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        let Some(remote) = self.remote.lock().clone() else {
            return Err(Error::Io(format!(
                "{what}: the SCO was evicted and the volume has no backend"
            )));
        };
        let store = match src.ancestor {
            None => remote.store.clone(),
            Some(i) => self.ancestor_store(i)?,
        };
        let got = self.get_sco_range(
            what,
            &remote,
            &store,
            src.ancestor,
            sco,
            src.epoch,
            start,
            len,
        );
        let data = match got {
            Ok(d) => d,
            Err(Fetch::Engine(e)) => return Err(e),
            Err(Fetch::Backend(e)) if e.is_not_found() => {
                return Err(Error::Io(format!("{what}: {e}")))
            }
            Err(Fetch::Backend(e)) => {
                tracing::warn!(volume = %self.id, error = %e, "{what}: backend read failed");
                return Err(Error::Delay);
            }
        };
        if data.len() as u64 != len {
            return Err(Error::Io(format!(
                "{what}: the backend returned {} bytes, expected {len}",
                data.len()
            )));
        }
        Ok(data)
    }

    /// For cluster `i` of a run read into a buffer of `len` bytes starting `within` the first
    /// cluster: the byte range inside the cluster, and the range of the buffer it fills (both
    /// empty when the cluster is outside the read).
    fn run_slice(i: usize, within: usize, len: usize) -> ((usize, usize), (usize, usize)) {
        let c0 = i * CLUSTER_SIZE;
        let (r0, r1) = (within, within + len);
        let (a, b) = (c0.max(r0), (c0 + CLUSTER_SIZE).min(r1));
        if a >= b {
            return ((0, 0), (0, 0));
        }
        ((a - c0, b - c0), (a - r0, b - r0))
    }
}
