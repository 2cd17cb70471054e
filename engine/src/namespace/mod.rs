//! The namespace in redb: inodes, directory entries, readdir cookies, extent maps, orphans.
//!
//! Every method that changes something is one redb write transaction, durable when it returns
//! (group commit: `durable.rs`), so a crash shows each operation entirely or not at all. Table layouts and encodings are in `FORMATS.md`.

mod clones;
mod data;
mod dir;
mod durable;
mod extent_sweep;
mod fsck;
mod image;
mod inode;
mod inode_cache;
mod jobs;
mod names;
mod redo;
mod rows;
mod xattrs;

pub(crate) use self::data::{DataUpdate, Orphaned};
pub(crate) use self::dir::NewNode;
pub(crate) use self::fsck::FsckView;
pub(crate) use self::image::{import_rows, ImageInfo};
pub(crate) use self::inode::Inode;
pub(crate) use self::names::now;
pub(crate) use self::rows::{
    decode_image, decode_log, diff, encode_image, encode_log, Header, Rows,
};
pub use self::xattrs::{XATTR_NAME_MAX, XATTR_OBJECT_MAX, XATTR_VALUE_MAX};
use crate::error::{Error, Result};
use crate::types::{Cred, Handle, Ino, Kind};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// Inode number of the root directory.
pub(crate) const ROOT: Ino = 1;

/// Version of the on-disk layout written into `meta` (2: extent generations, applied LSNs and
/// garbage; a version 1 database is upgraded at open).
pub(crate) const FORMAT_VERSION: u64 = 2;

/// First readdir cookie of every directory (0, 1, 2 are reserved by NFS clients and Ganesha).
pub(crate) const FIRST_COOKIE: u64 = 3;

/// Longest name accepted, in bytes.
pub(crate) const NAME_MAX: usize = 255;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");

const DIRENTS: TableDefinition<(u64, &[u8]), (u64, u64)> = TableDefinition::new("dirents");

const COOKIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("cookies");

/// Format 1's extent table (no generations): upgraded into [`EXTENTS`] at open.
const EXTENTS_V1: TableDefinition<(u64, u64), ()> = TableDefinition::new("extents");

const EXTENTS: TableDefinition<(u64, u64), u64> = TableDefinition::new("file_extents");

const APPLIED: TableDefinition<u64, u64> = TableDefinition::new("file_applied");

const GARBAGE: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("garbage");

const ORPHANS: TableDefinition<u64, ()> = TableDefinition::new("orphans");

/// Extent objects of an earlier run that no map names, found by the sweep, with when (seconds
/// since the Unix epoch) a pass first found them (`extent_sweep.rs`).
const UNNAMED: TableDefinition<(u64, u64, u64), u64> = TableDefinition::new("unnamed_extents");

const META_VERSION: &str = "format_version";

const META_NEXT_INO: &str = "next_ino";

const META_FSID: &str = "fsid";

const META_GATEWAY: &str = "gateway_id";

/// The namespace database.
#[derive(Debug)]
pub(crate) struct Namespace {
    db: Database,
    fsid: u64,
    gateway: u64,
    /// Test knob: commit without fsync.
    no_sync: std::sync::atomic::AtomicBool,
    /// The group commit of write transactions (`durable.rs`).
    group: self::durable::GroupCommit,
    /// The journal that makes some transactions durable (`redo.rs`), once attached.
    journal: std::sync::OnceLock<std::sync::Arc<crate::journal::Journal>>,
    /// When a lazy data commit was last made durable (see `persist_data`).
    lazy_synced: parking_lot::Mutex<std::time::Instant>,
    /// Inode numbers from this one on are not handed out (the high-water mark on the backend,
    /// `ns_backend/`): a create meeting it is answered `Delay` until the mark moves up.
    ino_limit: std::sync::atomic::AtomicU64,
    /// Why this gateway changes nothing any more (another gateway took the backend over), set
    /// once and read without a lock (every write asks).
    deposed: std::sync::OnceLock<String>,
    /// The inodes [`Namespace::get`] read since the last commit (`inode_cache.rs`).
    inodes: self::inode_cache::InodeCache,
}

/// Longest run of lazy (unsynced) commits: redb reuses the space a transaction frees only after
/// a durable commit, so a volume committing without pause must not grow the file forever.
const LAZY_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A random, nonzero 64-bit identity (fsids, gateway ids).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now().secs as u128 * 1_000_000_000 + now().nsecs as u128);
    h.write_u32(std::process::id());
    // Never 0: a zero generation is easy to forge by accident.
    h.finish() | 1
}

fn get_inode(t: &impl ReadableTable<u64, &'static [u8]>, ino: Ino) -> Result<Option<Inode>> {
    match t.get(ino)? {
        Some(v) => Ok(Some(Inode::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Loads the inode a handle names; `Stale` if it is gone or from another filesystem.
fn load(t: &impl ReadableTable<u64, &'static [u8]>, h: Handle) -> Result<Inode> {
    of_handle(get_inode(t, h.ino)?, h)
}

/// The inode a handle names, given what its number holds; `Stale` if it is gone or from
/// another generation.
fn of_handle(i: Option<Inode>, h: Handle) -> Result<Inode> {
    match i {
        Some(i) if i.generation == h.generation => Ok(i),
        _ => Err(Error::Stale),
    }
}

fn load_dir(t: &impl ReadableTable<u64, &'static [u8]>, h: Handle) -> Result<Inode> {
    let i = load(t, h)?;
    if i.kind != Kind::Directory {
        return Err(Error::NotDir);
    }
    Ok(i)
}

fn put_inode(t: &mut redb::Table<u64, &'static [u8]>, ino: Ino, i: &Inode) -> Result<()> {
    t.insert(ino, i.encode().as_slice())?;
    Ok(())
}

/// Format 1 → 2: every extent becomes generation 0 (its object keeps the name it had).
fn upgrade_v1(txn: &WriteTransaction) -> Result<()> {
    let rows: Vec<(u64, u64)> = {
        let old = txn.open_table(EXTENTS_V1)?;
        let mut v = Vec::new();
        for r in old.iter()? {
            v.push(r?.0.value());
        }
        v
    };
    {
        let mut new = txn.open_table(EXTENTS)?;
        for (ino, idx) in &rows {
            new.insert((*ino, *idx), 0)?;
        }
    }
    txn.delete_table(EXTENTS_V1)?;
    tracing::info!(
        extents = rows.len(),
        "namespace upgraded from format 1 to 2"
    );
    Ok(())
}

impl Namespace {
    /// Opens the database, initialising an empty one (root directory, meta) on first use.
    pub(crate) fn open(db: Database) -> Result<Namespace> {
        let txn = db.begin_write()?;
        let fsid;
        let gateway;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(META_VERSION)?.map(|v| v.value());
            match version {
                Some(v @ (1 | FORMAT_VERSION)) => {
                    if v == 1 {
                        upgrade_v1(&txn)?;
                        meta.insert(META_VERSION, FORMAT_VERSION)?;
                    }
                    fsid = meta
                        .get(META_FSID)?
                        .map(|v| v.value())
                        .ok_or_else(|| Error::Io("meta table has no fsid".into()))?;
                }
                Some(v) => {
                    return Err(Error::Io(format!(
                        "namespace format version {v} unsupported"
                    )))
                }
                None => {
                    fsid = random_u64();
                    meta.insert(META_VERSION, FORMAT_VERSION)?;
                    meta.insert(META_FSID, fsid)?;
                    meta.insert(META_NEXT_INO, ROOT + 1)?;
                    let mut inodes = txn.open_table(INODES)?;
                    let mut root = Inode::new(Kind::Directory, 0o755, Cred::default(), fsid);
                    root.nlink = 2;
                    root.parent = ROOT;
                    put_inode(&mut inodes, ROOT, &root)?;
                }
            }
            // The gateway id came after format 1's first release: a namespace without one
            // gets it now (older readers ignore the row).
            let stored = meta.get(META_GATEWAY)?.map(|v| v.value());
            gateway = match stored {
                Some(g) => g,
                None => {
                    let g = random_u64();
                    meta.insert(META_GATEWAY, g)?;
                    g
                }
            };
            // Create every table so that read transactions never meet a missing one.
            txn.open_table(INODES)?;
            txn.open_table(DIRENTS)?;
            txn.open_table(COOKIES)?;
            txn.open_table(EXTENTS)?;
            txn.open_table(APPLIED)?;
            txn.open_table(GARBAGE)?;
            txn.open_table(ORPHANS)?;
            txn.open_table(UNNAMED)?;
            txn.open_table(self::clones::READERS)?;
            txn.open_table(self::clones::HIDDEN)?;
            txn.open_table(self::xattrs::XATTRS)?;
        }
        txn.commit()?;
        Ok(Namespace {
            db,
            fsid,
            gateway,
            no_sync: std::sync::atomic::AtomicBool::new(false),
            group: self::durable::GroupCommit::default(),
            journal: std::sync::OnceLock::new(),
            lazy_synced: parking_lot::Mutex::new(std::time::Instant::now()),
            ino_limit: std::sync::atomic::AtomicU64::new(u64::MAX),
            deposed: std::sync::OnceLock::new(),
            inodes: Default::default(),
        })
    }

    /// Test knob: commits without fsync (to prove the crash tests notice).
    pub(crate) fn set_unsafe_no_sync(&self, on: bool) {
        self.no_sync.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The per-filesystem generation carried by every handle.
    pub(crate) fn fsid(&self) -> u64 {
        self.fsid
    }

    /// The random identity of the gateway this namespace belongs to (the owner record's
    /// gateway id): stable across restarts.
    pub(crate) fn gateway_id(&self) -> u64 {
        self.gateway
    }

    /// The next inode number to hand out: every ino below it was handed out by this namespace.
    pub(crate) fn next_ino(&self) -> Result<Ino> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        meta.get(META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))
    }

    /// Reads one inode (the last read's answer when no write transaction committed since:
    /// `inode_cache.rs`).
    pub(crate) fn get(&self, h: Handle) -> Result<Inode> {
        let epoch = self.inodes.epoch();
        if let Some(i) = self.inodes.get(h.ino, epoch) {
            return of_handle(Some(i), h);
        }
        let txn = self.db.begin_read()?;
        let i = get_inode(&txn.open_table(INODES)?, h.ino)?;
        if let Some(i) = &i {
            self.inodes.keep(h.ino, epoch, i);
        }
        of_handle(i, h)
    }

    /// Reads one inode by number, whatever its generation.
    pub(crate) fn get_ino(&self, ino: Ino) -> Result<Option<Inode>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INODES)?;
        get_inode(&t, ino)
    }

    /// Another gateway took the backend over: from now on every change (a namespace
    /// transaction, a write) is refused with `why`.
    pub(crate) fn depose(&self, why: &str) {
        let _ = self.deposed.set(why.to_string());
    }

    /// `NotOwner` once [`Namespace::depose`] was called.
    pub(crate) fn check_deposed(&self) -> Result<()> {
        match self.deposed.get() {
            Some(why) => Err(Error::NotOwner(why.clone())),
            None => Ok(()),
        }
    }

    /// Inode numbers from `limit` on are refused (`Delay`) until it moves up.
    pub(crate) fn set_ino_limit(&self, limit: Ino) {
        self.ino_limit
            .store(limit, std::sync::atomic::Ordering::SeqCst);
    }

    fn alloc_ino(&self, txn: &WriteTransaction) -> Result<Ino> {
        let mut meta = txn.open_table(META)?;
        let ino = meta
            .get(META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))?;
        if ino >= self.ino_limit.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(
                ino,
                "inode numbers are handed out only below the high-water mark on the backend, \
                 which could not be raised yet (is the backend reachable?): the create is \
                 answered DELAY"
            );
            return Err(Error::Delay);
        }
        meta.insert(META_NEXT_INO, ino + 1)?;
        Ok(ino)
    }
}

#[cfg(test)]
mod tests;
