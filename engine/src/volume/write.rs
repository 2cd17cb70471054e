//! The write path: writes and resizes, with read-modify-write of partly written clusters
//! (fetching clusters of evicted SCOs from the backend with the volume lock released).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::volume::format::{ClusterHash, Entry, CLUSTER_SIZE, CLUSTER_SIZE_U64};
use crate::volume::int::usize_of;
use crate::volume::mds::store::{Known, Loc};
use crate::volume::options::MAX_VOLUME_SIZE;
use crate::volume::state::{State, Volume};

/// What a read-modify-write needs of a cluster it partly overwrites.
enum Base {
    /// Its current bytes (zeros if never written).
    Have(Vec<u8>),
    /// It lives in an evicted SCO: fetched from the backend with the volume lock released.
    Fetch(Loc),
}

/// Clusters fetched from the backend for a read-modify-write: address -> (the location they
/// were read from, their bytes). Used only while the address still maps to that location.
type Fetched = HashMap<u64, (Loc, Vec<u8>)>;

/// Rounds of fetching a read-modify-write may take (a cluster only moves to another evicted
/// SCO by a concurrent write plus an upload and an eviction in between: rare).
const RMW_ATTEMPTS: usize = 8;

impl Volume {
    /// Writes `data` at `off`, growing the volume when it ends past the current size. With
    /// `stable`, returns only once the write (and everything before it) is durable.
    pub(crate) fn write(&self, off: u64, data: &[u8], stable: bool) -> Result<()> {
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_VOLUME_SIZE)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "write past the largest volume size {MAX_VOLUME_SIZE}"
                ))
            })?;
        if !data.is_empty() {
            // Whole clusters are hashed before the volume lock is taken, so concurrent writers
            // hash in parallel instead of one after the other under it.
            let hashes: Option<Vec<ClusterHash>> = (off.is_multiple_of(CLUSTER_SIZE_U64)
                && data.len().is_multiple_of(CLUSTER_SIZE))
            .then(|| {
                data.chunks_exact(CLUSTER_SIZE)
                    .map(super::space::new_cluster_hash)
                    .collect()
            });
            if let Some(h) = &hashes {
                // So is which of them redb maps (for the mapped-cluster count) when they are
                // several; under the lock only if a commit came meanwhile. A failed look-up is
                // retried there. One cluster (a 4 KiB write) is one map-cache hit under the lock,
                // where the overlay may answer first: looking it up twice would cost more.
                let known = (h.len() > 1)
                    .then(|| self.mds.known(off / CLUSTER_SIZE_U64, h.len() as u64).ok())
                    .flatten();
                self.guarded(|| {
                    let mut st = self.state.write();
                    // Under the lock: a template's snapshot is the last change.
                    self.check_writable()?;
                    self.write_aligned_locked(&mut st, off, end, data, h, known.as_ref())
                })?;
            } else {
                self.with_rmw(|st, fetched| {
                    self.check_writable()?;
                    let before = (st.tlog.seq, st.tlog.len);
                    let r = self.write_locked(st, off, end, data, fetched)?;
                    if r.is_ok() {
                        // Zeros over holes log nothing: nothing for a commit to make durable.
                        if (st.tlog.seq, st.tlog.len) != before {
                            st.write_gen += 1;
                        }
                        self.roll_if_long(st)?;
                        st.wal.flush()?;
                    }
                    Ok(r)
                })?;
            }
        }
        self.start_sealed_writeback();
        if stable {
            self.sync()?;
        } else if !data.is_empty() {
            self.expect_commit();
        }
        Ok(())
    }

    /// [`Volume::write_locked`] for whole clusters with their hashes already computed (and
    /// which of them redb maps, `known`): no read-modify-write and no copy of the data.
    fn write_aligned_locked(
        &self,
        st: &mut State,
        off: u64,
        end: u64,
        data: &[u8],
        hashes: &[ClusterHash],
        known: Option<&Known>,
    ) -> Result<()> {
        let before = (st.tlog.seq, st.tlog.len);
        self.grow_to(st, end)?;
        self.store_clusters(st, off / CLUSTER_SIZE_U64, data, Some(hashes), known)?;
        // Zeros over holes log nothing: nothing for a commit to make durable.
        if (st.tlog.seq, st.tlog.len) != before {
            st.write_gen += 1;
        }
        self.roll_if_long(st)?;
        // One pwrite of the write-ahead log for all this write logged there.
        st.wal.flush()
    }

    /// Grows the volume to `end` if it is smaller, logged before the clusters written there so
    /// that replay never sees a cluster past the size.
    pub(super) fn grow_to(&self, st: &mut State, end: u64) -> Result<()> {
        if end > st.size {
            self.tlog_append(st, &[Entry::Resize { size: end }])?;
            let tlog = st.tlog.seq;
            self.set_size(st, tlog, end)?;
        }
        Ok(())
    }

    /// Writes `data` at `off` (not whole clusters): the partly written clusters are
    /// read-modify-written. Changes nothing and returns the clusters to fetch first when one of
    /// them lives in an evicted SCO (see [`Volume::with_rmw`]).
    pub(super) fn write_locked(
        &self,
        st: &mut State,
        off: u64,
        end: u64,
        data: &[u8],
        fetched: &Fetched,
    ) -> Result<std::result::Result<(), Vec<(u64, Loc)>>> {
        let first = off / CLUSTER_SIZE_U64;
        let last = (end - 1) / CLUSTER_SIZE_U64;
        let mut buf = Vec::with_capacity(usize_of(last - first + 1) * CLUSTER_SIZE);
        let mut need = Vec::new();
        for ca in first..=last {
            let cstart = ca * CLUSTER_SIZE_U64;
            let lo = off.max(cstart) - cstart;
            let hi = end.min(cstart + CLUSTER_SIZE_U64) - cstart;
            let src = &data[usize_of(cstart + lo - off)..usize_of(cstart + hi - off)];
            if lo == 0 && hi == CLUSTER_SIZE_U64 {
                buf.extend_from_slice(src);
            } else {
                // Read-modify-write of a partly written cluster, under the volume lock.
                match self.rmw_base(st, ca, fetched)? {
                    Base::Have(mut c) => {
                        c[usize_of(lo)..usize_of(hi)].copy_from_slice(src);
                        buf.extend_from_slice(&c);
                    }
                    Base::Fetch(loc) => need.push((ca, loc)),
                }
            }
        }
        if !need.is_empty() {
            return Ok(Err(need));
        }
        // Nothing changes before the write is sure to be accepted: the size grows only now.
        self.grow_to(st, end)?;
        self.store_clusters(st, first, &buf, None, None)?;
        Ok(Ok(()))
    }

    /// The current bytes of cluster `ca` for a read-modify-write, or, when it lives in an
    /// evicted SCO and is not in `fetched` (at the same location), that it must be fetched.
    fn rmw_base(&self, st: &State, ca: u64, fetched: &Fetched) -> Result<Base> {
        let Some(loc) = self.lookup(st, ca)? else {
            return Ok(Base::Have(vec![0u8; CLUSTER_SIZE]));
        };
        if st.scos.get(&loc.sco).is_some_and(|e| e.evicted) {
            return Ok(match fetched.get(&ca) {
                Some((l, c)) if *l == loc => Base::Have(c.clone()),
                _ => Base::Fetch(loc),
            });
        }
        let mut c = vec![0u8; CLUSTER_SIZE];
        self.read_loc(st, &loc, &mut c, 0)?;
        Ok(Base::Have(c))
    }

    /// Runs `f` under the volume's write lock, guarded (an error there halts the volume). `f`
    /// returns the clusters it must read-modify-write that live in evicted SCOs, having changed
    /// nothing; they are fetched from the backend with the lock released (writers never wait
    /// for the backend) and `f` runs again with them. A failed fetch changed nothing, so it
    /// does not halt the volume: a backend that cannot be reached is `Delay`, a bad object an
    /// error for this call only. Each attempt checks, under the lock, that the volume was not
    /// halted (a failed fsync, a deletion) while the lock was released.
    pub(super) fn with_rmw<T>(
        &self,
        mut f: impl FnMut(&mut State, &Fetched) -> Result<std::result::Result<T, Vec<(u64, Loc)>>>,
    ) -> Result<T> {
        let mut fetched = Fetched::new();
        for _ in 0..RMW_ATTEMPTS {
            let attempt = self.guarded(|| {
                let mut st = self.state.write();
                self.check_halted()?;
                f(&mut st, &fetched)
            })?;
            let need = match attempt {
                Ok(v) => return Ok(v),
                Err(need) => need,
            };
            for (ca, loc) in need {
                let mut c = vec![0u8; CLUSTER_SIZE];
                let src = self.sco_source(&self.state.read(), loc.sco)?;
                self.read_remote(std::slice::from_ref(&loc), &mut c, 0, src)?;
                fetched.insert(ca, (loc, c));
            }
        }
        // Each attempt found its clusters moved to other evicted SCOs: give the client a retry.
        Err(Error::Delay)
    }

    /// Changes the size. Growing is sparse; shrinking drops the clusters past the end and zeroes
    /// the tail of the last cluster, so a later grow reads zeros there.
    pub(crate) fn resize(&self, size: u64) -> Result<()> {
        if size > MAX_VOLUME_SIZE {
            return Err(Error::Invalid(format!(
                "volume size {size} above {MAX_VOLUME_SIZE}"
            )));
        }
        self.with_rmw(|st, fetched| {
            if size == st.size {
                return Ok(Ok(()));
            }
            self.check_writable()?;
            if size < st.size {
                let tail = size % CLUSTER_SIZE_U64;
                let ca = size / CLUSTER_SIZE_U64;
                if tail != 0 && self.lookup(st, ca)?.is_some() {
                    match self.rmw_base(st, ca, fetched)? {
                        Base::Have(mut c) => {
                            c[usize_of(tail)..].fill(0);
                            self.append_hashed(st, ca, &c, None, None)?;
                        }
                        Base::Fetch(loc) => return Ok(Err(vec![(ca, loc)])),
                    }
                }
            }
            self.tlog_append(st, &[Entry::Resize { size }])?;
            let tlog = st.tlog.seq;
            self.set_size(st, tlog, size)?;
            st.write_gen += 1;
            self.roll_if_long(st)?;
            st.wal.flush()?;
            Ok(Ok(()))
        })?;
        // Reservations past the end go with the clusters.
        self.unreserve(size.div_ceil(CLUSTER_SIZE_U64), u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use crate::volume::space::new_cluster_hash;
    use crate::volume::tests::{fresh, fresh_backed, small_opts};
    use crate::volume::VolumeOptions;

    /// SCOs sealed by a path that does not start their writeback (a rollback's, a restart's)
    /// wait in a list for the next writer; once the TLog's close made them durable and their
    /// handles closed, that list keeps none of them open.
    #[test]
    fn sealed_scos_waiting_for_their_writeback_are_not_kept_open() {
        let opts = VolumeOptions {
            sco_clusters: 2,
            tlog_scos: 64,
            ..small_opts()
        };
        let (_fs, _lfs, vol) = fresh(opts);
        let data = [3u8; 5 * 4096];
        let mut st = vol.state.write();
        vol.append_hashed(&mut st, 0, &data, None, None)
            .expect("append");
        assert_eq!(vol.sealed.lock().len(), 2, "two full SCOs sealed");
        vol.roll_tlog(&mut st).expect("close the TLog");
        drop(st);
        vol.handles.lock().clear();
        assert!(
            vol.sealed.lock().iter().all(|w| w.upgrade().is_none()),
            "the list holds a sealed SCO's file open"
        );
        vol.start_sealed_writeback();
        assert!(vol.sealed.lock().is_empty());
    }

    /// Which addresses redb maps, looked up before the lock, then a commit that maps one of
    /// them: the write does not trust the stale answer (it would count that cluster twice).
    #[test]
    fn a_lookup_made_before_a_commit_is_not_trusted_after_it() {
        let (rt, store, _fs, vol) = fresh_backed(small_opts());
        vol.write(4096, &[9u8; 4096], false).expect("write");
        let known = vol.mds.known(0, 1).expect("look-up");
        // Another writer maps address 0, and the uncork commits it to redb.
        vol.write(0, &[1u8; 4096], false).expect("write");
        rt.block_on(vol.backup(&*store, true)).expect("backup");
        assert_eq!(vol.space_used(), 2 * 4096);
        let data = [2u8; 4096];
        let mut st = vol.state.write();
        vol.write_aligned_locked(
            &mut st,
            0,
            4096,
            &data,
            &[new_cluster_hash(&data)],
            Some(&known),
        )
        .expect("write");
        drop(st);
        assert_eq!(vol.space_used(), 2 * 4096, "address 0 was mapped already");
    }
}
