//! Appending to the log: clusters into the open SCO and entries into the open TLog; sealing
//! a full SCO; closing a TLog and starting the next one.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::volume::commit::FsyncSite;
use crate::volume::files::io_err;
use crate::volume::format::{
    sco_name, tlog_name, ClusterHash, Entry, ScoFooter, ScoHeader, TlogHeader, CLUSTER_SIZE,
    MAX_TLOG_LEN, TLOG_ENTRY_LEN, TLOG_HEADER_LEN,
};
use crate::volume::int::u32_of;
use crate::volume::mds::store::{Known, Loc, Op};
use crate::volume::state::{OpenSco, OpenTlog, ScoEntry, State, Volume};
use crate::volume::wal::Target;

/// A TLog longer than this is closed at the next write, whatever its SCO count: half of what
/// a reader accepts ([`MAX_TLOG_LEN`]).
pub(super) const TLOG_ROLL_LEN: u64 = MAX_TLOG_LEN / 2;

impl Volume {
    /// Appends whole clusters for addresses `first..` to the open SCO(s), logs them and updates
    /// the MetaDataStore; `hashes` are their hashes when the caller computed them already,
    /// `known` which of them redb had (see [`Volume::map_clusters`]).
    pub(super) fn append_hashed(
        &self,
        st: &mut State,
        first: u64,
        buf: &[u8],
        hashes: Option<&[ClusterHash]>,
        known: Option<&Known>,
    ) -> Result<()> {
        self.ensure_our_tlog(st)?;
        let n = buf.len() / CLUSTER_SIZE;
        let mut i = 0;
        while i < n {
            self.ensure_open_sco(st)?;
            let Some(sco) = st.sco.as_mut() else {
                return Err(Error::Io("no open SCO".into()));
            };
            let k = ((self.opts.sco_clusters - sco.clusters) as usize).min(n - i);
            let chunk = &buf[i * CLUSTER_SIZE..(i + k) * CLUSTER_SIZE];
            let at = ScoFooter::offset(sco.clusters);
            let (seq, file) = (sco.seq, &*sco.file);
            let what = || format!("SCO {}", sco_name(seq));
            let logged = st.wal.log(Target::Sco(seq), at, chunk)?;
            sco.deferred.append(file, at, chunk, logged, &what)?;
            sco.crc = crc32c::crc32c_append(sco.crc, chunk);
            let mut entries = Vec::with_capacity(k);
            let mut locs = Vec::with_capacity(k);
            for j in 0..k {
                let m = match hashes.and_then(|h| h.get(i + j)) {
                    Some(h) => *h,
                    None => ClusterHash::of(&chunk[j * CLUSTER_SIZE..(j + 1) * CLUSTER_SIZE]),
                };
                let address = first + (i + j) as u64;
                let offset = sco.clusters + u32_of(j);
                entries.push(Entry::Cluster {
                    address,
                    sco: sco.seq,
                    offset,
                    hash: m,
                });
                locs.push((
                    address,
                    Loc {
                        sco: sco.seq,
                        offset,
                        hash: m,
                    },
                ));
            }
            sco.clusters += u32_of(k);
            self.tlog_append(st, &entries)?;
            let tlog = st.tlog.seq;
            self.map_clusters(st, tlog, &locs, known)?;
            let seq = st.tlog.seq;
            *st.tlog_bytes.entry(seq).or_default() += (k * CLUSTER_SIZE) as u64;
            self.counters
                .clusters_written
                .fetch_add(k as u64, Ordering::Relaxed);
            i += k;
        }
        Ok(())
    }

    /// Closes an older build's open TLog (left before an upgrade; its SCO sealed first), so
    /// that what only this build writes (`Unmap` entries, BLAKE3 hashes) goes into a TLog
    /// whose header that build refuses: it would cut an Unmap as a torn tail, and take a
    /// BLAKE3 hash for an MD5.
    pub(super) fn ensure_our_tlog(&self, st: &mut State) -> Result<()> {
        if st.tlog.ours {
            return Ok(());
        }
        if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
            self.seal_open_sco(st)?;
        }
        if !st.tlog.ours {
            self.roll_tlog(st)?;
        }
        Ok(())
    }

    pub(super) fn tlog_append(&self, st: &mut State, entries: &[Entry]) -> Result<()> {
        let mut bytes = Vec::with_capacity(entries.len() * TLOG_ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(&e.encode());
        }
        let t = &mut st.tlog;
        let (seq, file) = (t.seq, &*t.file);
        let what = || format!("TLog {}", tlog_name(seq));
        let logged = st.wal.log(Target::Tlog(seq), t.len, &bytes)?;
        t.deferred.append(file, t.len, &bytes, logged, &what)?;
        t.len += bytes.len() as u64;
        t.crc = crc32c::crc32c_append(t.crc, &bytes);
        t.first_entry.get_or_insert_with(std::time::Instant::now);
        st.tlog_since
            .entry(st.tlog.seq)
            .or_insert_with(std::time::SystemTime::now);
        Ok(())
    }

    fn ensure_open_sco(&self, st: &mut State) -> Result<()> {
        if st
            .sco
            .as_ref()
            .is_some_and(|s| s.clusters >= self.opts.sco_clusters)
        {
            self.seal_open_sco(st)?;
        }
        if st.sco.is_none() {
            let seq = st.next_sco;
            st.next_sco += 1;
            let path = self.sco_dir.join(sco_name(seq));
            let file = self
                .fs
                .create_new(&path)
                .map_err(|e| io_err(path.display(), e))?;
            let header = ScoHeader {
                volume: self.id,
                seq,
            }
            .encode();
            file.write_at(&header, 0)
                .map_err(|e| io_err(path.display(), e))?;
            st.wal.log(Target::Sco(seq), 0, &header)?;
            st.sco_dir.touch();
            self.handles.lock().keep(seq, file.clone());
            st.sco = Some(OpenSco {
                seq,
                file,
                clusters: 0,
                crc: 0,
                deferred: Default::default(),
                created: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    /// Seals the open SCO: footer, fdatasync, then the ScoSealed entry (so a ScoSealed entry
    /// always names a SCO whose bytes are durable); closes the TLog when it covers enough SCOs.
    pub(super) fn seal_open_sco(&self, st: &mut State) -> Result<()> {
        let Some(mut sco) = st.sco.take() else {
            return Ok(());
        };
        let what = format!("SCO {}", sco_name(sco.seq));
        // Its clusters are all in the file before the footer (`deferred.rs`, rule 2): once
        // sealed it is read, synced and uploaded as a file.
        sco.deferred.flush(&*sco.file, &|| what.clone())?;
        let footer = ScoFooter {
            seq: sco.seq,
            clusters: sco.clusters,
            data_crc: sco.crc,
        };
        let footer = footer.encode();
        let at = ScoFooter::offset(sco.clusters);
        sco.file
            .write_at(&footer, at)
            .map_err(|e| io_err(&what, e))?;
        st.wal.log(Target::Sco(sco.seq), at, &footer)?;
        // Not waited for here (a writer would stall on every full SCO): the next commit round,
        // or at the latest the close of this TLog, makes it durable. Until then a restart checks
        // every cluster of it against its hash (see `open`). Its writeback starts once the lock
        // is released (submitting 4 MiB of writes takes longer than anything else here).
        self.sealed.lock().push(Arc::downgrade(&sco.file));
        st.unsynced.push((sco.seq, sco.file.clone()));
        self.tlog_append(
            st,
            &[Entry::ScoSealed {
                sco: sco.seq,
                clusters: sco.clusters,
                crc: sco.crc,
            }],
        )?;
        st.tlog.scos += 1;
        let tlog = st.tlog.seq;
        st.ov.push(
            tlog,
            Op::Sealed {
                sco: sco.seq,
                tlog,
                clusters: sco.clusters,
                crc: sco.crc,
            },
        );
        st.scos
            .insert(sco.seq, ScoEntry::new(tlog, sco.clusters, false));
        self.counters.scos_sealed.fetch_add(1, Ordering::Relaxed);
        if st.tlog.scos >= self.opts.tlog_scos {
            self.roll_tlog(st)?;
        }
        Ok(())
    }

    /// Starts the writeback of the SCOs sealed since the last call, without the volume lock
    /// (a hint: a commit, or the TLog's close, makes them durable whatever it did). Every
    /// writer calls it after its write, and so do the pipeline's close of the open TLog and a
    /// flatten's copy (rarer sealers, a rollback or a restart, leave theirs to the next write:
    /// the list holds weak references, so it keeps no file open).
    pub(super) fn start_sealed_writeback(&self) {
        let sealed = std::mem::take(&mut *self.sealed.lock());
        for f in sealed.iter().filter_map(std::sync::Weak::upgrade) {
            if let Err(e) = f.start_writeback() {
                tracing::debug!(volume = %self.id, error = %e, "starting a sealed SCO's writeback failed");
            }
        }
    }

    /// Closes the open TLog once it is longer than [`TLOG_ROLL_LEN`], whatever its SCO count:
    /// resize entries (a guest appending in small writes logs one per write; truncates fill
    /// no SCO at all) would otherwise grow it past what a reader accepts ([`MAX_TLOG_LEN`]).
    /// The open SCO is sealed first: a closed TLog names only sealed, durable SCOs.
    pub(super) fn roll_if_long(&self, st: &mut State) -> Result<()> {
        if st.tlog.len <= self.tlog_roll_len.load(Ordering::Relaxed) {
            return Ok(());
        }
        if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
            // Sealing may close the TLog already (when it fills its SCO count).
            let seq = st.tlog.seq;
            self.seal_open_sco(st)?;
            if st.tlog.seq != seq {
                return Ok(());
            }
        }
        self.roll_tlog(st)
    }

    /// Closes the open TLog (TLogClosed + fdatasync) and starts the next one (header +
    /// fdatasync; its name becomes durable at the next commit).
    pub(super) fn roll_tlog(&self, st: &mut State) -> Result<()> {
        // A closed TLog only names durable SCOs: a restart trusts them without reading them.
        for (seq, f) in std::mem::take(&mut st.unsynced) {
            self.fsync(FsyncSite::SealSco, &*f, &format!("SCO {}", sco_name(seq)))?;
        }
        // Also when a commit round is about to fsync `sco/` (it has not yet): the round runs
        // without the lock, and this TLog is closed now.
        if let Some(mark) = st.sco_dir.pending() {
            self.fsync_dir(FsyncSite::SealScoDir, &self.sco_dir)?;
            st.sco_dir.synced_up_to(mark);
        }
        let crc = st.tlog.crc;
        self.tlog_append(st, &[Entry::TlogClosed { crc }])?;
        // Its entries (and the open SCO's clusters) are in the files before the fsyncs below
        // and before the log's head moves past their records (`deferred.rs`, rule 2).
        Self::flush_deferred(st)?;
        let what = format!("TLog {}", tlog_name(st.tlog.seq));
        self.fsync(FsyncSite::CloseTlog, &*st.tlog.file, &what)?;
        self.start_next_tlog(st)?;
        // Everything the write-ahead log holds is durable in place now (the open SCO, when
        // there is one, holds only its header: made durable too): its head moves to the end,
        // durably, before the closed TLog can be uploaded and its files deleted or evicted.
        if let Some(sco) = &st.sco {
            self.fsync(
                FsyncSite::SealSco,
                &*sco.file,
                &format!("SCO {}", sco_name(sco.seq)),
            )?;
        }
        if let Some(head) = st.wal.head_to_end()? {
            self.fsync(FsyncSite::WalHead, &*st.wal.file(), "write-ahead log head")?;
            st.wal.synced(head);
        }
        // The upload pipeline takes it now rather than at its next tick.
        self.tlog_closed.notify_one();
        Ok(())
    }

    /// Writes into their files the open SCO's clusters and the open TLog's entries that only
    /// the write-ahead log held so far (`deferred.rs`, rule 2).
    pub(super) fn flush_deferred(st: &mut State) -> Result<()> {
        st.wal.flush()?;
        if let Some(sco) = st.sco.as_mut() {
            let seq = sco.seq;
            sco.deferred
                .flush(&*sco.file, &|| format!("SCO {}", sco_name(seq)))?;
        }
        let t = &mut st.tlog;
        let seq = t.seq;
        t.deferred
            .flush(&*t.file, &|| format!("TLog {}", tlog_name(seq)))
    }

    /// Test knob: writes what waits in memory into the files (`deferred.rs`), so that a test
    /// may read or damage them while the volume is open.
    #[cfg(test)]
    pub(crate) fn write_deferred(&self) -> Result<()> {
        Self::flush_deferred(&mut self.state.write())
    }

    /// Resolves once a TLog closed since the last call (at once if one did meanwhile): what
    /// the upload pipeline waits for besides its tick.
    pub(crate) async fn tlog_closed(&self) {
        self.tlog_closed.notified().await;
    }

    /// Starts the TLog after the open one: header + fdatasync; its name becomes durable at the
    /// next commit (the TLog directory is marked dirty).
    pub(super) fn start_next_tlog(&self, st: &mut State) -> Result<()> {
        let seq = st.tlog.seq + 1;
        let path = self.tlog_dir.join(tlog_name(seq));
        let file = self
            .fs
            .create_new(&path)
            .map_err(|e| io_err(path.display(), e))?;
        let header = TlogHeader {
            volume: self.id,
            seq,
        }
        .encode();
        file.write_at(&header, 0)
            .map_err(|e| io_err(path.display(), e))?;
        self.fsync(
            FsyncSite::CreateTlog,
            &*file,
            &format!("TLog {}", tlog_name(seq)),
        )?;
        st.tlog = OpenTlog {
            seq,
            file,
            len: TLOG_HEADER_LEN as u64,
            crc: crc32c::crc32c(&header),
            deferred: Default::default(),
            scos: 0,
            first_entry: None,
            ours: true,
        };
        st.tlog_dir.touch();
        Ok(())
    }

    /// Test knob: close TLogs once they are longer than `len` bytes.
    #[cfg(test)]
    pub(crate) fn set_tlog_roll_len(&self, len: u64) {
        self.tlog_roll_len.store(len, Ordering::Relaxed);
    }
}

/// A volume closed cleanly leaves its open SCO and TLog whole in their files, as before
/// anything waited in memory (`deferred.rs`; the write-ahead log's replay would bring them
/// back at the next open anyway).
impl Drop for Volume {
    fn drop(&mut self) {
        // A halted volume's files are left as the error left them.
        if self.check_halted().is_err() {
            return;
        }
        if let Err(e) = Self::flush_deferred(self.state.get_mut()) {
            tracing::warn!(
                volume = %self.id,
                error = %e,
                "writing the open log's last bytes at close failed; the write-ahead log holds them"
            );
        }
    }
}
