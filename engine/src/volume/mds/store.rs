//! The MetaDataStore on disk: one redb database per volume (`<volume dir>/mds.redb`), opened
//! through the volume's [`LocalFs`] so that crash simulation covers it like the SCOs and TLogs.
//!
//! It holds the effect of every TLog up to `applied_tlog` — and only of TLogs that are on the
//! backend (the cork, see `FORMATS.md`, "MetaDataStore"). Newer entries live in the volume's
//! in-memory overlay until the backend has their TLog.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::checkpoint::{page_of, Index, ScoRow, PAGE_CLUSTERS};
use super::db::Touched;
use super::map_cache::{self, MapCache, MapPage};
use crate::error::{Error, Result};
use crate::volume::backend::keys::Epochs;
use crate::volume::files::io_err;
use crate::volume::format::{ClusterHash, FormatError, HashAlg};
use crate::volume::localfs::{LocalFile, LocalFs};

/// Format version of `mds.redb` (the `format` key of the `meta` table): 2 since checkpoint
/// ids carry the upload epoch and the snapshot and upload-epoch tables exist. A format 1 store
/// is upgraded at open (its checkpoint ids are epoch 0's; the new tables start empty); a
/// build of format 1 refuses a format 2 store instead of reading keys wrongly.
pub(in crate::volume) const MDS_FORMAT: u64 = 2;
/// The format of a clone's store (its lineage names SCOs in other volumes' namespaces): a
/// build before clones refuses it rather than read it as a whole volume. Flatten makes it
/// format 2 again.
pub(in crate::volume) const MDS_FORMAT_CLONE: u64 = 3;

/// cluster address -> sco (u64 LE) | offset (low 24 bits of a u32 LE; the top byte is the
/// hash's algorithm) | hash digest (16 bytes).
pub(super) const CLUSTERS: TableDefinition<u64, [u8; 28]> = TableDefinition::new("clusters");
/// SCO sequence -> (sealing TLog, clusters, data CRC32C), every sealed SCO applied.
pub(super) const SCOS: TableDefinition<u64, (u64, u32, u32)> = TableDefinition::new("scos");
/// `format`, `applied_tlog`, `size`, `checkpoint_tlog`, `checkpoint_id` (absent for
/// checkpoints from before epochs: the id is then `checkpoint_tlog`), `logged_clusters`,
/// `next_snapshot` (both absent: 0).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Checkpoint pages changed since the last checkpoint on the backend (value unused).
pub(super) const DIRTY: TableDefinition<u64, ()> = TableDefinition::new("dirty_pages");
/// The last checkpoint's index: page -> the checkpoint holding its newest copy.
const CKPT_PAGES: TableDefinition<u64, u64> = TableDefinition::new("checkpoint_pages");
/// The upload epochs of the TLogs named by the manifest: first TLog -> epoch (see
/// `backend/keys.rs`; empty for volumes from before epochs).
const UPLOAD_EPOCHS: TableDefinition<u64, u64> = TableDefinition::new("upload_epochs");

/// One redb read transaction (a consistent snapshot) that a checkpoint is read from, page by
/// page, so a checkpoint never needs the whole MetaDataStore in memory.
pub(crate) struct SnapshotTx {
    tx: redb::ReadTransaction,
}

impl SnapshotTx {
    fn meta(&self, k: &str) -> Result<u64> {
        let meta = self.tx.open_table(META).map_err(db_err)?;
        Ok(meta.get(k).map_err(db_err)?.map_or(0, |v| v.value()))
    }

    /// `applied_tlog` of the snapshot (the checkpoint's N).
    pub(in crate::volume) fn applied_tlog(&self) -> Result<u64> {
        self.meta("applied_tlog")
    }

    /// The previous checkpoint's id (0: none).
    pub(in crate::volume) fn prev_checkpoint(&self) -> Result<u64> {
        let meta = self.tx.open_table(META).map_err(db_err)?;
        match meta.get("checkpoint_id").map_err(db_err)? {
            Some(v) => Ok(v.value()),
            None => self.meta("checkpoint_tlog"),
        }
    }

    /// The size after `applied_tlog`.
    pub(in crate::volume) fn size(&self) -> Result<u64> {
        self.meta("size")
    }

    /// Mapped clusters.
    pub(in crate::volume) fn mapped(&self) -> Result<u64> {
        let t = self.tx.open_table(CLUSTERS).map_err(db_err)?;
        t.len().map_err(db_err)
    }

    /// Pages changed since the last checkpoint, ascending.
    pub(in crate::volume) fn dirty_pages(&self) -> Result<Vec<u64>> {
        let t = self.tx.open_table(DIRTY).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            out.push(r.map_err(db_err)?.0.value());
        }
        Ok(out)
    }

    /// The entries of page `p`, ascending addresses.
    pub(in crate::volume) fn page(&self, p: u64) -> Result<Vec<(u64, Loc)>> {
        let t = self.tx.open_table(CLUSTERS).map_err(db_err)?;
        let lo = p.saturating_mul(PAGE_CLUSTERS);
        let mut out = Vec::new();
        for e in t
            .range(lo..lo.saturating_add(PAGE_CLUSTERS))
            .map_err(db_err)?
        {
            let (k, v) = e.map_err(db_err)?;
            out.push((k.value(), Loc::decode(&v.value())?));
        }
        Ok(out)
    }

    /// The SCO table.
    pub(in crate::volume) fn scos(&self) -> Result<Vec<ScoRow>> {
        let t = self.tx.open_table(SCOS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// The previous checkpoint's index (page -> checkpoint holding it).
    pub(in crate::volume) fn old_pages(&self) -> Result<Vec<(u64, u64)>> {
        let t = self.tx.open_table(CKPT_PAGES).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }
}

/// Which of a run of addresses had an entry, as of one commit generation ([`Mds::known`]).
pub(in crate::volume) struct Known {
    generation: u64,
    first: u64,
    mapped: Vec<bool>,
}

/// Where a cluster lives, and the hash of its content (one MetaDataStore value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::volume) struct Loc {
    pub(in crate::volume) sco: u64,
    pub(in crate::volume) offset: u32,
    pub(in crate::volume) hash: ClusterHash,
}

impl Loc {
    /// Bytes 8..12: the cluster index in its low 24 bits (it is below 2^18), the hash's
    /// algorithm in the top byte (0, MD5, in every value written before BLAKE3).
    pub(in crate::volume) fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&self.sco.to_le_bytes());
        b[8..12].copy_from_slice(&pack_index(self.offset, self.hash.alg()).to_le_bytes());
        b[12..].copy_from_slice(self.hash.digest());
        b
    }

    /// Decodes a value this build or an earlier one wrote; an algorithm it does not know (a
    /// later build's) is an error.
    pub(in crate::volume) fn decode(b: &[u8; 28]) -> std::result::Result<Loc, FormatError> {
        let mut sco = [0u8; 8];
        sco.copy_from_slice(&b[..8]);
        let mut off = [0u8; 4];
        off.copy_from_slice(&b[8..12]);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&b[12..]);
        let packed = u32::from_le_bytes(off);
        let (offset, alg) = unpack_index(packed).ok_or_else(|| FormatError::Inconsistent {
            what: "MetaDataStore location".to_string(),
            reason: format!("unknown hash algorithm {}", packed >> 24),
        })?;
        Ok(Loc {
            sco: u64::from_le_bytes(sco),
            offset,
            hash: ClusterHash::from_parts(alg, digest),
        })
    }
}

/// A cluster index (below 2^24) and a hash algorithm in one `u32`: the index in the low 24
/// bits, the algorithm's code in the top byte (MetaDataStore values, checkpoint pages).
pub(in crate::volume) fn pack_index(offset: u32, alg: HashAlg) -> u32 {
    (offset & 0x00ff_ffff) | (u32::from(alg.code()) << 24)
}

/// The inverse of [`pack_index`]; `None` for an unknown algorithm.
pub(in crate::volume) fn unpack_index(v: u32) -> Option<(u32, HashAlg)> {
    Some((v & 0x00ff_ffff, HashAlg::from_code(v >> 24)?))
}

/// One change of the MetaDataStore, as logged by a TLog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::volume) enum Op {
    /// A cluster written.
    Cluster(u64, Loc),
    /// The size changed; `shrink` when it dropped clusters.
    Resize { size: u64, shrink: bool },
    /// Clusters `from..to` unmapped (they read as zeros).
    Unmap { from: u64, to: u64 },
    /// A SCO sealed.
    Sealed {
        sco: u64,
        tlog: u64,
        clusters: u32,
        crc: u32,
    },
}

/// redb over a [`LocalFile`]. `skip_sync` (tests only, set once the database is open) turns
/// `sync_data` into a no-op for the uncork commits, to prove a crash test notices the missing
/// fsync.
#[derive(Debug)]
struct LocalBackend {
    file: Arc<dyn LocalFile>,
    skip_sync: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
}

impl redb::StorageBackend for LocalBackend {
    fn len(&self) -> io::Result<u64> {
        self.file.file_len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let n = self.file.read_at(out, offset)?;
        if n != out.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "mds.redb: read past the end",
            ));
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.skip_sync.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_at(data, offset)
    }
}

pub(super) fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", crate::volume::layout::MDS_FILE))
}

/// What `meta` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::volume) struct MdsMeta {
    /// Every TLog up to this one is applied (0: none).
    pub(in crate::volume) applied_tlog: u64,
    /// The volume size after `applied_tlog`.
    pub(in crate::volume) size: u64,
    /// Clusters logged by every TLog applied (0 for a store from before the count, and after
    /// a backend restart from a checkpoint: counted from there).
    pub(in crate::volume) logged_clusters: u64,
}

/// [`Mds::contains`] walks the map once when its addresses span less than this many times
/// their count (a write of many clusters), and looks each up otherwise.
const DENSE_PROBE: u64 = 4;

/// Ranges of at most this many map pages are looked up through the map cache (a READ of up
/// to 1 MiB); longer ones (scans) read the snapshot without filling it.
const CACHED_RANGE_PAGES: u64 = 8;

/// One volume's MetaDataStore database.
pub(in crate::volume) struct Mds {
    pub(super) db: super::db::Db,
}

impl std::fmt::Debug for Mds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mds")
    }
}

impl Mds {
    /// Opens `dir/mds.redb`, creating an empty one (applied_tlog 0, size 0) when `create` and
    /// it does not exist; a new file's name is made durable before this returns.
    pub(in crate::volume) fn open(
        fs: &dyn LocalFs,
        dir: &Path,
        create: bool,
        skip_sync: bool,
        syncs: Arc<AtomicU64>,
    ) -> Result<Mds> {
        let path = crate::volume::layout::mds_path(dir);
        let (file, fresh) = match fs.open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let f = fs
                    .create_new(&path)
                    .map_err(|e| io_err(path.display(), e))?;
                (f, true)
            }
            Err(e) => return Err(io_err(path.display(), e)),
        };
        let skip = Arc::new(AtomicBool::new(false));
        let backend = LocalBackend {
            file,
            skip_sync: skip.clone(),
            syncs,
        };
        let db = redb::Database::builder()
            .set_cache_size(8 << 20)
            .create_with_backend(backend)
            .map_err(db_err)?;
        let mds = Mds {
            db: super::db::Db::new(db),
        };
        let tx = mds.db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let format = meta.get("format").map_err(db_err)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", MDS_FORMAT).map_err(db_err)?;
                    meta.insert("liveness_from", 0).map_err(db_err)?;
                    meta.insert("applied_tlog", 0).map_err(db_err)?;
                    meta.insert("size", 0).map_err(db_err)?;
                    meta.insert("checkpoint_tlog", 0).map_err(db_err)?;
                }
                Some(
                    MDS_FORMAT
                    | MDS_FORMAT_CLONE
                    | super::compaction::MDS_FORMAT_SCRUBBED
                    | super::compaction::MDS_FORMAT_TLOGS_COMPACTED,
                ) => {}
                Some(1) => {
                    meta.insert("format", MDS_FORMAT).map_err(db_err)?;
                }
                Some(f) => {
                    return Err(Error::Io(format!(
                    "{}: format {f}, this build reads {MDS_FORMAT}, {MDS_FORMAT_CLONE}, {} and {}",
                    path.display(),
                    super::compaction::MDS_FORMAT_SCRUBBED,
                    super::compaction::MDS_FORMAT_TLOGS_COMPACTED
                )))
                }
            }
            if format.is_some() && meta.get("liveness_from").map_err(db_err)?.is_none() {
                // A store from before scrubbing: what its applied TLogs superseded was never
                // recorded; the scrubber recounts it.
                let applied = meta
                    .get("applied_tlog")
                    .map_err(db_err)?
                    .map_or(0, |v| v.value());
                meta.insert("liveness_from", applied).map_err(db_err)?;
            }
            tx.open_table(CLUSTERS).map_err(db_err)?;
            tx.open_table(SCOS).map_err(db_err)?;
            tx.open_table(DIRTY).map_err(db_err)?;
            tx.open_table(CKPT_PAGES).map_err(db_err)?;
            tx.open_table(UPLOAD_EPOCHS).map_err(db_err)?;
            super::snapshots::create_tables(&tx)?;
            super::lineage::create_tables(&tx)?;
            super::liveness::create_tables(&tx)?;
            super::compaction::create_tables(&tx)?;
            super::tlog_compaction::create_tables(&tx)?;
            super::reserved::create_tables(&tx)?;
        }
        tx.commit().map_err(db_err)?;
        if fresh {
            fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))?;
        }
        skip.store(skip_sync, Ordering::Relaxed);
        Ok(mds)
    }

    /// The `meta` table.
    pub(in crate::volume) fn meta(&self) -> Result<MdsMeta> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let get = |k: &str| -> Result<u64> {
            meta.get(k)
                .map_err(db_err)?
                .map(|v| v.value())
                .ok_or_else(|| {
                    Error::Io(format!(
                        "{}: no {k} in meta",
                        crate::volume::layout::MDS_FILE
                    ))
                })
        };
        Ok(MdsMeta {
            applied_tlog: get("applied_tlog")?,
            size: get("size")?,
            logged_clusters: meta
                .get("logged_clusters")
                .map_err(db_err)?
                .map_or(0, |v| v.value()),
        })
    }

    /// Mapped clusters (all entries).
    pub(in crate::volume) fn mapped(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(CLUSTERS).map_err(db_err)?;
        t.len().map_err(db_err)
    }

    /// The entry of address `a`, if any (from the map cache when it holds `a`'s page: no
    /// allocation on a hit, which is every 4 KiB READ of a warm volume).
    pub(in crate::volume) fn get(&self, a: u64) -> Result<Option<Loc>> {
        let p = map_cache::page_of(a);
        if self.db.caching() {
            if let Some(hit) = self.db.cached(p, |page| page.get(p, a)) {
                return Ok(hit);
            }
            return Ok(self.page(p)?.get(p, a));
        }
        let t = self.db.clusters().map_err(db_err)?;
        match t.get(a).map_err(db_err)? {
            Some(v) => Ok(Some(Loc::decode(&v.value())?)),
            None => Ok(None),
        }
    }

    /// Every entry with an address in `from..to`, in address order.
    pub(in crate::volume) fn range(&self, from: u64, to: u64) -> Result<Vec<(u64, Loc)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let (first, last) = (map_cache::page_of(from), map_cache::page_of(to - 1));
        if self.db.caching() && last - first < CACHED_RANGE_PAGES {
            for p in first..=last {
                let hit = self
                    .db
                    .cached(p, |page| page.extend_range(p, from, to, &mut out));
                if hit.is_none() {
                    self.page(p)?.extend_range(p, from, to, &mut out);
                }
            }
            return Ok(out);
        }
        let t = self.db.clusters().map_err(db_err)?;
        for r in t.range(from..to).map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), Loc::decode(&v.value())?));
        }
        Ok(out)
    }

    /// How many entries with an address in `from..to` satisfy `keep`.
    pub(in crate::volume) fn count_range(
        &self,
        from: u64,
        to: u64,
        keep: impl Fn(u64) -> bool,
    ) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(CLUSTERS).map_err(db_err)?;
        let mut n = 0;
        for r in t.range(from..to).map_err(db_err)? {
            let (k, _) = r.map_err(db_err)?;
            if keep(k.value()) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Which of the addresses `first..first + n` have an entry, looked up before the volume
    /// lock is taken (a large write's look-up, off the lock the other writers wait for).
    pub(in crate::volume) fn known(&self, first: u64, n: u64) -> Result<Known> {
        // Read first: a commit during the look-up changes it, and the answer is not used.
        let generation = self.db.generation();
        let addrs: Vec<u64> = (first..first.saturating_add(n)).collect();
        Ok(Known {
            generation,
            first,
            mapped: self.contains(&addrs)?,
        })
    }

    /// How many of `addrs` have an entry, by `k`: `None` when a commit came since it was
    /// looked up or it does not cover them all (then ask [`Mds::contains`]).
    pub(in crate::volume) fn count_known(&self, k: &Known, addrs: &[u64]) -> Option<u64> {
        if self.db.generation() != k.generation {
            return None;
        }
        let mut n = 0;
        for a in addrs {
            let i = usize::try_from(a.checked_sub(k.first)?).ok()?;
            n += u64::from(*k.mapped.get(i)?);
        }
        Some(n)
    }

    /// Which of `addrs` have an entry.
    pub(in crate::volume) fn contains(&self, addrs: &[u64]) -> Result<Vec<bool>> {
        let (Some(&lo), Some(&hi)) = (addrs.iter().min(), addrs.iter().max()) else {
            return Ok(Vec::new());
        };
        if addrs.len() > 1 && hi - lo < DENSE_PROBE * addrs.len() as u64 {
            return self.contains_dense(addrs, lo, hi);
        }
        // The shared snapshot, taken at the first address the map cache does not answer.
        let mut snapshot = None;
        let mut out = Vec::with_capacity(addrs.len());
        for &a in addrs {
            let p = map_cache::page_of(a);
            if let Some(hit) = self.db.cached(p, |page| page.get(p, a).is_some()) {
                out.push(hit);
                continue;
            }
            let t = match snapshot.take() {
                Some(t) => t,
                None => self.db.clusters().map_err(db_err)?,
            };
            out.push(t.get(a).map_err(db_err)?.is_some());
            snapshot = Some(t);
        }
        Ok(out)
    }

    /// [`Mds::contains`] of addresses close together (a large write's): one walk of the map
    /// from `lo` to `hi`, not a descent per address.
    fn contains_dense(&self, addrs: &[u64], lo: u64, hi: u64) -> Result<Vec<bool>> {
        let mut want: Vec<(u64, usize)> = addrs.iter().copied().zip(0..).collect();
        want.sort_unstable();
        let mut out = vec![false; addrs.len()];
        let t = self.db.clusters().map_err(db_err)?;
        let mut next = want.iter().peekable();
        for r in t.range(lo..=hi).map_err(db_err)? {
            let (k, _) = r.map_err(db_err)?;
            let k = k.value();
            while next.next_if(|(a, _)| *a < k).is_some() {}
            while let Some((_, i)) = next.next_if(|(a, _)| *a == k) {
                out[*i] = true;
            }
            if next.peek().is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Page `p` of the map, read from the shared snapshot and kept in the map cache.
    fn page(&self, p: u64) -> Result<MapPage> {
        let (t, generation) = self.db.snapshot().map_err(db_err)?;
        let lo = p.saturating_mul(map_cache::PAGE);
        let mut entries = Vec::new();
        for r in t
            .range(lo..lo.saturating_add(map_cache::PAGE))
            .map_err(db_err)?
        {
            let (k, v) = r.map_err(db_err)?;
            entries.push((k.value(), Loc::decode(&v.value())?));
        }
        let page = MapPage::new(p, entries);
        self.db.keep(p, generation, &page);
        Ok(page)
    }

    /// Keeps decoded pages of the map in the engine's `cache` from now on.
    pub(in crate::volume) fn set_map_cache(&self, cache: Arc<MapCache>) {
        self.db.set_map_cache(cache);
    }

    /// Every sealed SCO: sequence -> (sealing TLog, clusters, CRC32C).
    pub(in crate::volume) fn scos(&self) -> Result<Vec<ScoRow>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SCOS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Applies `ops` (in order) and sets `applied_tlog` and `size`, in one durable transaction.
    /// Each op comes with the TLog that logged it: the positions it supersedes are recorded
    /// as dead or pinned in the same transaction (`liveness.rs`). Returns the SCOs it made
    /// wholly dead.
    pub(in crate::volume) fn apply(
        &self,
        ops: &[(u64, Op)],
        applied_tlog: u64,
        size: u64,
    ) -> Result<Vec<u64>> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        let mut touched = Touched::none();
        let whole = {
            let mut live = super::liveness::Tracker::new(&tx)?;
            let mut clusters = tx.open_table(CLUSTERS).map_err(db_err)?;
            let mut scos = tx.open_table(SCOS).map_err(db_err)?;
            let mut dirty = tx.open_table(DIRTY).map_err(db_err)?;
            let mut last_page = None;
            let mut logged = 0u64;
            for &(t, op) in ops {
                match op {
                    Op::Cluster(a, loc) => {
                        logged += 1;
                        touched.add(a);
                        let old = clusters
                            .insert(a, loc.encode())
                            .map_err(db_err)?
                            .map(|v| Loc::decode(&v.value()))
                            .transpose()?;
                        if old != Some(loc) {
                            live.mapped(&scos, loc, t)?;
                            if let Some(old) = old {
                                live.superseded(&scos, old, t)?;
                            }
                        }
                        let p = page_of(a);
                        if last_page != Some(p) {
                            dirty.insert(p, ()).map_err(db_err)?;
                            last_page = Some(p);
                        }
                    }
                    Op::Resize { size, shrink: true } => {
                        let keep = size.div_ceil(crate::volume::format::CLUSTER_SIZE_U64);
                        let cut = Cut {
                            clusters: &mut clusters,
                            dirty: &mut dirty,
                            live: &mut live,
                            scos: &scos,
                            touched: &mut touched,
                        };
                        cut.range(keep, u64::MAX, t)?;
                        last_page = None;
                    }
                    Op::Unmap { from, to } => {
                        let cut = Cut {
                            clusters: &mut clusters,
                            dirty: &mut dirty,
                            live: &mut live,
                            scos: &scos,
                            touched: &mut touched,
                        };
                        cut.range(from, to, t)?;
                        last_page = None;
                    }
                    Op::Resize { .. } => {}
                    Op::Sealed {
                        sco,
                        tlog,
                        clusters: n,
                        crc,
                    } => {
                        scos.insert(sco, (tlog, n, crc)).map_err(db_err)?;
                        live.sealed(sco);
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("applied_tlog", applied_tlog).map_err(db_err)?;
            meta.insert("size", size).map_err(db_err)?;
            let before = meta
                .get("logged_clusters")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            meta.insert("logged_clusters", before + logged)
                .map_err(db_err)?;
            live.finish()?
        };
        tx.set_touched(touched);
        tx.commit().map_err(db_err)?;
        Ok(whole)
    }
}

/// The tables a transaction drops mappings from (a shrink, an unmap).
struct Cut<'a, 't> {
    clusters: &'a mut redb::Table<'t, u64, [u8; 28]>,
    dirty: &'a mut redb::Table<'t, u64, ()>,
    live: &'a mut super::liveness::Tracker<'t>,
    scos: &'a redb::Table<'t, u64, (u64, u32, u32)>,
    touched: &'a mut Touched,
}

impl Cut<'_, '_> {
    /// Drops every mapping of an address in `from..to`, superseded in TLog `t`: the positions
    /// recorded dead or pinned, their checkpoint pages dirty.
    fn range(self, from: u64, to: u64, t: u64) -> Result<()> {
        let mut pages = Vec::new();
        let mut cut = Vec::new();
        for r in self.clusters.range(from..to).map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            self.touched.add(k.value());
            let p = page_of(k.value());
            if pages.last() != Some(&p) {
                pages.push(p);
            }
            cut.push(Loc::decode(&v.value())?);
        }
        if cut.is_empty() {
            return Ok(());
        }
        for old in cut {
            self.live.superseded(self.scos, old, t)?;
        }
        for p in pages {
            self.dirty.insert(p, ()).map_err(db_err)?;
        }
        self.clusters
            .retain_in(from..to, |_, _| false)
            .map_err(db_err)?;
        Ok(())
    }
}

impl Mds {
    /// The last checkpoint on the backend (0: none).
    pub(in crate::volume) fn checkpoint_tlog(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        Ok(meta
            .get("checkpoint_tlog")
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    /// A read transaction for the next checkpoint: a consistent snapshot at its
    /// `applied_tlog`.
    pub(in crate::volume) fn begin_snapshot(&self) -> Result<SnapshotTx> {
        Ok(SnapshotTx {
            tx: self.db.begin_read().map_err(db_err)?,
        })
    }

    /// Records that checkpoint `id` of TLog `n` (with index `pages`) is named by the backend
    /// manifest: the pages it wrote are clean again.
    pub(in crate::volume) fn checkpoint_done(
        &self,
        (n, id): (u64, u64),
        written: &[u64],
        pages: &[(u64, u64)],
    ) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        // The cluster map is not written: cached map pages stay.
        tx.set_touched(Touched::none());
        {
            let mut dirty = tx.open_table(DIRTY).map_err(db_err)?;
            for p in written {
                dirty.remove(*p).map_err(db_err)?;
            }
            let mut ck = tx.open_table(CKPT_PAGES).map_err(db_err)?;
            ck.retain(|_, _| false).map_err(db_err)?;
            for (p, c) in pages {
                ck.insert(*p, *c).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("checkpoint_tlog", n).map_err(db_err)?;
            meta.insert("checkpoint_id", id).map_err(db_err)?;
            // A checkpoint a clone or a flatten asked for is done.
            meta.insert("checkpoint_due", 0).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The upload epochs recorded (see `backend/keys.rs`).
    pub(in crate::volume) fn upload_epochs(&self) -> Result<Epochs> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(UPLOAD_EPOCHS).map_err(db_err)?;
        let mut ranges = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            ranges.push((k.value(), v.value()));
        }
        Epochs::new(ranges).map_err(|e| Error::Io(format!("mds.redb upload epochs: {e}")))
    }

    /// Replaces the upload epochs recorded, durably.
    pub(in crate::volume) fn set_upload_epochs(&self, epochs: &Epochs) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(UPLOAD_EPOCHS).map_err(db_err)?;
            t.retain(|_, _| false).map_err(db_err)?;
            for (first, epoch) in epochs.ranges() {
                t.insert(*first, *epoch).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Adds verified checkpoint page entries to a fresh MetaDataStore (backend restart). Not
    /// durable on its own: [`Mds::finish_checkpoint_load`] commits durably, and a restore that
    /// fails or crashes before that never leaves this file for an open to trust.
    pub(in crate::volume) fn load_page(&self, entries: &[(u64, Loc)]) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::None).map_err(db_err)?;
        {
            let mut clusters = tx.open_table(CLUSTERS).map_err(db_err)?;
            for (a, l) in entries {
                clusters.insert(*a, l.encode()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Completes loading checkpoint `id` of TLog `n` (after every page was loaded): checks the
    /// mapped count, writes the SCO table, the index and `meta` (`applied_tlog = n`), durably.
    pub(in crate::volume) fn finish_checkpoint_load(
        &self,
        (n, id): (u64, u64),
        ix: &Index,
        scos: &[ScoRow],
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let clusters = tx.open_table(CLUSTERS).map_err(db_err)?;
            let mapped = clusters.len().map_err(db_err)?;
            if mapped != ix.mapped {
                return Err(Error::Io(format!(
                    "checkpoint {n}: the index counts {} mapped clusters, the pages hold {mapped}",
                    ix.mapped
                )));
            }
            let mut t = tx.open_table(SCOS).map_err(db_err)?;
            for (s, v) in scos {
                t.insert(*s, *v).map_err(db_err)?;
            }
            let mut ck = tx.open_table(CKPT_PAGES).map_err(db_err)?;
            for (p, c) in &ix.pages {
                ck.insert(*p, *c).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("applied_tlog", n).map_err(db_err)?;
            meta.insert("size", ix.size).map_err(db_err)?;
            meta.insert("checkpoint_tlog", n).map_err(db_err)?;
            meta.insert("checkpoint_id", id).map_err(db_err)?;
            // What the TLogs up to the checkpoint superseded is not known: recounted later.
            meta.insert("liveness_from", n).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}
