//! The namespace in redb: inodes, directory entries, readdir cookies, extent maps, orphans.
//!
//! Every method that changes something is one durable redb write transaction, so a crash shows
//! each operation entirely or not at all. Table layouts and encodings are in `FORMATS.md`.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use crate::error::{Error, Result};
use crate::types::{CreateMode, Cred, Handle, Ino, Kind, SetAttr, SetTime, Timestamp};

/// Inode number of the root directory.
pub(crate) const ROOT: Ino = 1;
/// Version of the on-disk layout written into `meta`.
pub(crate) const FORMAT_VERSION: u64 = 1;
/// First readdir cookie of every directory (0, 1, 2 are reserved by NFS clients and Ganesha).
pub(crate) const FIRST_COOKIE: u64 = 3;
/// Longest name accepted, in bytes.
pub(crate) const NAME_MAX: usize = 255;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const DIRENTS: TableDefinition<(u64, &[u8]), (u64, u64)> = TableDefinition::new("dirents");
const COOKIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("cookies");
const EXTENTS: TableDefinition<(u64, u64), ()> = TableDefinition::new("extents");
const ORPHANS: TableDefinition<u64, ()> = TableDefinition::new("orphans");

const META_VERSION: &str = "format_version";
const META_NEXT_INO: &str = "next_ino";
const META_FSID: &str = "fsid";
const META_GATEWAY: &str = "gateway_id";

/// The current time.
pub(crate) fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nsecs: d.subsec_nanos(),
        },
        Err(_) => Timestamp::default(),
    }
}

fn resolve(t: SetTime) -> Timestamp {
    match t {
        SetTime::Now => now(),
        SetTime::At(t) => t,
    }
}

/// Checks a name that is about to be created (or renamed to / linked as).
pub(crate) fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if name == b"." || name == b".." {
        return Err(Error::Invalid(
            "\".\" and \"..\" cannot be created or removed".into(),
        ));
    }
    Ok(())
}

/// Checks a name component: length, no `/`, no NUL, not empty.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() {
        return Err(Error::Invalid("empty name".into()));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Error::Invalid("name contains '/' or NUL".into()));
    }
    Ok(())
}

/// One inode as stored in the `inodes` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inode {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Durable size (files, volumes: as of the last data commit; symlinks: target length).
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub nlink: u32,
    pub generation: u64,
    pub change: u64,
    /// Directories: the parent directory (the root is its own parent). Others: 0.
    pub parent: Ino,
    /// Directories: next readdir cookie to hand out.
    pub next_cookie: u64,
    /// Files and volumes: number of extents in the extent map (for `space_used`).
    pub nextents: u64,
    /// Exclusive-create verifier, when the file was made by an exclusive create.
    pub verifier: Option<[u8; 8]>,
    /// Symlinks: the target.
    pub target: Vec<u8>,
}

const ENC_VERSION: u8 = 1;

impl Inode {
    fn new(kind: Kind, mode: u32, cred: Cred, generation: u64) -> Inode {
        let t = now();
        Inode {
            kind,
            mode: mode & 0o7777,
            uid: cred.uid,
            gid: cred.gid,
            size: 0,
            atime: t,
            mtime: t,
            ctime: t,
            nlink: 1,
            generation,
            change: 1,
            parent: 0,
            next_cookie: FIRST_COOKIE,
            nextents: 0,
            verifier: None,
            target: Vec::new(),
        }
    }

    /// Marks an attribute change (ctime and change counter).
    fn touch_c(&mut self, t: Timestamp) {
        self.ctime = t;
        self.change += 1;
    }

    /// Marks a content change (mtime, ctime and change counter).
    fn touch_mc(&mut self, t: Timestamp) {
        self.mtime = t;
        self.touch_c(t);
    }

    /// Encodes the record (little-endian, see FORMATS.md).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128 + self.target.len());
        b.push(ENC_VERSION);
        b.push(match self.kind {
            Kind::Directory => 1,
            Kind::File => 2,
            Kind::Volume => 3,
            Kind::Symlink => 4,
        });
        for v in [self.mode, self.uid, self.gid] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.size.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            b.extend_from_slice(&t.secs.to_le_bytes());
            b.extend_from_slice(&t.nsecs.to_le_bytes());
        }
        b.extend_from_slice(&self.nlink.to_le_bytes());
        for v in [
            self.generation,
            self.change,
            self.parent,
            self.next_cookie,
            self.nextents,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        match self.verifier {
            Some(v) => {
                b.push(1);
                b.extend_from_slice(&v);
            }
            None => b.push(0),
        }
        b.extend_from_slice(&self.target);
        b
    }

    /// Decodes a record written by [`Inode::encode`].
    pub(crate) fn decode(b: &[u8]) -> Result<Inode> {
        let mut r = Reader { b, pos: 0 };
        let version = r.u8()?;
        if version != ENC_VERSION {
            return Err(Error::Io(format!("inode record version {version} unknown")));
        }
        let kind = match r.u8()? {
            1 => Kind::Directory,
            2 => Kind::File,
            3 => Kind::Volume,
            4 => Kind::Symlink,
            k => return Err(Error::Io(format!("inode record kind {k} unknown"))),
        };
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let atime = r.time()?;
        let mtime = r.time()?;
        let ctime = r.time()?;
        let nlink = r.u32()?;
        let generation = r.u64()?;
        let change = r.u64()?;
        let parent = r.u64()?;
        let next_cookie = r.u64()?;
        let nextents = r.u64()?;
        let verifier = match r.u8()? {
            0 => None,
            1 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(r.take(8)?);
                Some(v)
            }
            f => return Err(Error::Io(format!("inode record verifier flag {f} unknown"))),
        };
        let target = b[r.pos..].to_vec();
        Ok(Inode {
            kind,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            ctime,
            nlink,
            generation,
            change,
            parent,
            next_cookie,
            nextents,
            verifier,
            target,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Io("inode record truncated".into())),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn time(&mut self) -> Result<Timestamp> {
        let secs = self.u64()? as i64;
        let nsecs = self.u32()?;
        Ok(Timestamp { secs, nsecs })
    }
}

/// What a new node is.
#[derive(Debug, Clone)]
pub(crate) struct NewNode {
    pub kind: Kind,
    pub mode: u32,
    pub cred: Cred,
    pub target: Vec<u8>,
}

/// A regular object that lost its last link in a transaction: its data must go unless opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orphaned(pub Ino);

/// One readdir row.
pub(crate) struct DirRow {
    pub name: Vec<u8>,
    pub cookie: u64,
    pub ino: Ino,
    pub inode: Inode,
}

/// The namespace database.
#[derive(Debug)]
pub(crate) struct Namespace {
    db: Database,
    fsid: u64,
    gateway: u64,
    durability: Durability,
    /// When a lazy data commit was last made durable (see `persist_data`).
    lazy_synced: parking_lot::Mutex<std::time::Instant>,
}

/// Longest run of lazy (unsynced) commits: redb reuses the space a transaction frees only after
/// a durable commit, so a volume committing without pause must not grow the file forever.
const LAZY_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn random_u64() -> u64 {
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
    match get_inode(t, h.ino)? {
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
                Some(FORMAT_VERSION) => {
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
            txn.open_table(ORPHANS)?;
        }
        txn.commit()?;
        Ok(Namespace {
            db,
            fsid,
            gateway,
            durability: Durability::Immediate,
            lazy_synced: parking_lot::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Test knob: commits without fsync (to prove the crash tests notice).
    pub(crate) fn set_unsafe_no_sync(&mut self, on: bool) {
        self.durability = if on {
            Durability::None
        } else {
            Durability::Immediate
        };
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

    fn begin(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)
            .map_err(|e| Error::Io(e.to_string()))?;
        Ok(txn)
    }

    /// Reads one inode.
    pub(crate) fn get(&self, h: Handle) -> Result<Inode> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INODES)?;
        load(&t, h)
    }

    /// Reads one inode by number, whatever its generation.
    pub(crate) fn get_ino(&self, ino: Ino) -> Result<Option<Inode>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INODES)?;
        get_inode(&t, ino)
    }

    /// Looks a name up: "." and ".." included. Returns the child's number and inode.
    pub(crate) fn lookup(&self, dir: Handle, name: &[u8]) -> Result<(Ino, Inode)> {
        let txn = self.db.begin_read()?;
        let inodes = txn.open_table(INODES)?;
        let d = load_dir(&inodes, dir)?;
        if name == b"." {
            return Ok((dir.ino, d));
        }
        if name == b".." {
            let p = get_inode(&inodes, d.parent)?.ok_or(Error::Stale)?;
            return Ok((d.parent, p));
        }
        check_name(name)?;
        let dirents = txn.open_table(DIRENTS)?;
        let child = dirents
            .get((dir.ino, name))?
            .map(|v| v.value().0)
            .ok_or(Error::NotFound)?;
        let i = get_inode(&inodes, child)?
            .ok_or_else(|| Error::Io(format!("entry names missing inode {child}")))?;
        Ok((child, i))
    }

    /// The extent map of a file.
    pub(crate) fn extents(&self, ino: Ino) -> Result<BTreeSet<u64>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(EXTENTS)?;
        let mut m = BTreeSet::new();
        for r in t.range((ino, 0)..=(ino, u64::MAX))? {
            m.insert(r?.0.value().1);
        }
        Ok(m)
    }

    /// Inodes waiting for their data to be deleted.
    pub(crate) fn orphans(&self) -> Result<Vec<Ino>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ORPHANS)?;
        let mut v = Vec::new();
        for r in t.iter()? {
            v.push(r?.0.value());
        }
        Ok(v)
    }

    fn alloc_ino(txn: &WriteTransaction) -> Result<Ino> {
        let mut meta = txn.open_table(META)?;
        let ino = meta
            .get(META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))?;
        meta.insert(META_NEXT_INO, ino + 1)?;
        Ok(ino)
    }

    /// Adds `name -> child` to `dir` (which the caller has loaded and will store).
    fn add_entry(
        txn: &WriteTransaction,
        dir_ino: Ino,
        d: &mut Inode,
        name: &[u8],
        child: Ino,
    ) -> Result<()> {
        let cookie = d.next_cookie;
        d.next_cookie += 1;
        txn.open_table(DIRENTS)?
            .insert((dir_ino, name), (child, cookie))?;
        txn.open_table(COOKIES)?.insert((dir_ino, cookie), name)?;
        Ok(())
    }

    fn remove_entry(txn: &WriteTransaction, dir_ino: Ino, name: &[u8]) -> Result<()> {
        let old = txn
            .open_table(DIRENTS)?
            .remove((dir_ino, name))?
            .map(|v| v.value());
        if let Some((_, cookie)) = old {
            txn.open_table(COOKIES)?.remove((dir_ino, cookie))?;
        }
        Ok(())
    }

    fn is_empty_dir(txn: &WriteTransaction, ino: Ino) -> Result<bool> {
        let t = txn.open_table(COOKIES)?;
        let empty = t.range((ino, 0)..=(ino, u64::MAX))?.next().is_none();
        Ok(empty)
    }

    /// Drops one link of `ino` (already removed from its directory). Directories are deleted at
    /// once; regular objects at nlink 0 become orphans; symlinks are deleted.
    fn drop_link(
        txn: &WriteTransaction,
        ino: Ino,
        i: &mut Inode,
        t: Timestamp,
    ) -> Result<Option<Orphaned>> {
        let mut inodes = txn.open_table(INODES)?;
        match i.kind {
            Kind::Directory => {
                inodes.remove(ino)?;
                Ok(None)
            }
            _ => {
                i.nlink = i.nlink.saturating_sub(1);
                i.touch_c(t);
                if i.nlink > 0 {
                    put_inode(&mut inodes, ino, i)?;
                    Ok(None)
                } else if i.kind == Kind::Symlink {
                    inodes.remove(ino)?;
                    Ok(None)
                } else {
                    put_inode(&mut inodes, ino, i)?;
                    txn.open_table(ORPHANS)?.insert(ino, ())?;
                    Ok(Some(Orphaned(ino)))
                }
            }
        }
    }

    /// Creates a node in `dir`. Returns its number, its inode and whether it was created.
    pub(crate) fn create(
        &self,
        dir: Handle,
        name: &[u8],
        node: NewNode,
        how: CreateMode,
    ) -> Result<(Ino, Inode, bool)> {
        check_new_name(name)?;
        let txn = self.begin()?;
        let result;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut d = load_dir(&inodes, dir)?;
            let existing = txn
                .open_table(DIRENTS)?
                .get((dir.ino, name))?
                .map(|v| v.value().0);
            if let Some(child) = existing {
                let i = get_inode(&inodes, child)?
                    .ok_or_else(|| Error::Io(format!("entry names missing inode {child}")))?;
                return match how {
                    CreateMode::Unchecked if node.kind.is_regular() && i.kind.is_regular() => {
                        Ok((child, i, false))
                    }
                    CreateMode::Exclusive(v) if i.kind.is_regular() && i.verifier == Some(v) => {
                        Ok((child, i, false))
                    }
                    _ => Err(Error::Exists),
                };
            }
            let ino = Self::alloc_ino(&txn)?;
            let t = now();
            let mut i = Inode::new(node.kind, node.mode, node.cred, self.fsid);
            match node.kind {
                Kind::Directory => {
                    i.nlink = 2;
                    i.parent = dir.ino;
                    d.nlink += 1;
                }
                Kind::Symlink => {
                    i.size = node.target.len() as u64;
                    i.target = node.target;
                }
                Kind::File | Kind::Volume => {
                    if let CreateMode::Exclusive(v) = how {
                        i.verifier = Some(v);
                    }
                }
            }
            Self::add_entry(&txn, dir.ino, &mut d, name, ino)?;
            d.touch_mc(t);
            put_inode(&mut inodes, dir.ino, &d)?;
            put_inode(&mut inodes, ino, &i)?;
            result = (ino, i, true);
        }
        txn.commit()?;
        Ok(result)
    }

    /// Adds the link `dir/name` to the non-directory `h`.
    pub(crate) fn link(&self, h: Handle, dir: Handle, name: &[u8]) -> Result<Inode> {
        check_new_name(name)?;
        let txn = self.begin()?;
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = load(&inodes, h)?;
            if obj.kind == Kind::Directory {
                return Err(Error::IsDir);
            }
            let mut d = load_dir(&inodes, dir)?;
            if txn.open_table(DIRENTS)?.get((dir.ino, name))?.is_some() {
                return Err(Error::Exists);
            }
            let t = now();
            if obj.nlink == 0 {
                txn.open_table(ORPHANS)?.remove(h.ino)?;
            }
            obj.nlink += 1;
            obj.touch_c(t);
            Self::add_entry(&txn, dir.ino, &mut d, name, h.ino)?;
            d.touch_mc(t);
            put_inode(&mut inodes, dir.ino, &d)?;
            put_inode(&mut inodes, h.ino, &obj)?;
            i = obj;
        }
        txn.commit()?;
        Ok(i)
    }

    /// Removes `dir/name`: a directory (must be empty) when `want_dir`, else a non-directory.
    pub(crate) fn remove(
        &self,
        dir: Handle,
        name: &[u8],
        want_dir: bool,
    ) -> Result<Option<Orphaned>> {
        if name == b"." || name == b".." {
            return Err(Error::Invalid("cannot remove \".\" or \"..\"".into()));
        }
        check_name(name)?;
        let txn = self.begin()?;
        let orphan;
        {
            let inodes = txn.open_table(INODES)?;
            let mut d = load_dir(&inodes, dir)?;
            let child = txn
                .open_table(DIRENTS)?
                .get((dir.ino, name))?
                .map(|v| v.value().0)
                .ok_or(Error::NotFound)?;
            let mut c = get_inode(&inodes, child)?
                .ok_or_else(|| Error::Io(format!("entry names missing inode {child}")))?;
            match (want_dir, c.kind == Kind::Directory) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                _ => {}
            }
            if want_dir {
                if !Self::is_empty_dir(&txn, child)? {
                    return Err(Error::NotEmpty);
                }
                d.nlink = d.nlink.saturating_sub(1);
            }
            drop(inodes);
            Self::remove_entry(&txn, dir.ino, name)?;
            let t = now();
            orphan = Self::drop_link(&txn, child, &mut c, t)?;
            d.touch_mc(t);
            put_inode(&mut txn.open_table(INODES)?, dir.ino, &d)?;
        }
        txn.commit()?;
        Ok(orphan)
    }

    /// Renames `from_dir/from` to `to_dir/to`, replacing a compatible target atomically.
    pub(crate) fn rename(
        &self,
        from_dir: Handle,
        from: &[u8],
        to_dir: Handle,
        to: &[u8],
    ) -> Result<Option<Orphaned>> {
        check_new_name(from)?;
        check_new_name(to)?;
        let txn = self.begin()?;
        let mut orphan = None;
        {
            let inodes = txn.open_table(INODES)?;
            let mut fd = load_dir(&inodes, from_dir)?;
            let mut td = load_dir(&inodes, to_dir)?;
            let dirents = txn.open_table(DIRENTS)?;
            let src = dirents
                .get((from_dir.ino, from))?
                .map(|v| v.value().0)
                .ok_or(Error::NotFound)?;
            let dst = dirents.get((to_dir.ino, to))?.map(|v| v.value().0);
            drop(dirents);
            if dst == Some(src) {
                // Same object (same name, or two links of one file): nothing to do.
                return Ok(None);
            }
            let mut s = get_inode(&inodes, src)?
                .ok_or_else(|| Error::Io(format!("entry names missing inode {src}")))?;
            let s_dir = s.kind == Kind::Directory;
            if s_dir && from_dir.ino != to_dir.ino {
                // Refuse to move a directory below itself: walk up from the target directory.
                let mut cur = to_dir.ino;
                loop {
                    if cur == src {
                        return Err(Error::Invalid(
                            "cannot move a directory into its own subtree".into(),
                        ));
                    }
                    if cur == ROOT {
                        break;
                    }
                    cur = get_inode(&inodes, cur)?
                        .map(|i| i.parent)
                        .ok_or(Error::Stale)?;
                }
            }
            let mut victim = None;
            if let Some(d) = dst {
                let v = get_inode(&inodes, d)?
                    .ok_or_else(|| Error::Io(format!("entry names missing inode {d}")))?;
                let v_dir = v.kind == Kind::Directory;
                match (s_dir, v_dir) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    _ => {}
                }
                if v_dir && !Self::is_empty_dir(&txn, d)? {
                    return Err(Error::NotEmpty);
                }
                victim = Some((d, v));
            }
            drop(inodes);
            let t = now();
            let same_dir = from_dir.ino == to_dir.ino;
            if let Some((d, mut v)) = victim {
                Self::remove_entry(&txn, to_dir.ino, to)?;
                if v.kind == Kind::Directory {
                    td.nlink = td.nlink.saturating_sub(1);
                }
                orphan = Self::drop_link(&txn, d, &mut v, t)?;
            }
            Self::remove_entry(&txn, from_dir.ino, from)?;
            if same_dir {
                Self::add_entry(&txn, to_dir.ino, &mut td, to, src)?;
                td.touch_mc(t);
            } else {
                Self::add_entry(&txn, to_dir.ino, &mut td, to, src)?;
                if s_dir {
                    s.parent = to_dir.ino;
                    fd.nlink = fd.nlink.saturating_sub(1);
                    td.nlink += 1;
                }
                fd.touch_mc(t);
                td.touch_mc(t);
            }
            s.touch_c(t);
            let mut inodes = txn.open_table(INODES)?;
            if !same_dir {
                put_inode(&mut inodes, from_dir.ino, &fd)?;
            }
            put_inode(&mut inodes, to_dir.ino, &td)?;
            put_inode(&mut inodes, src, &s)?;
        }
        txn.commit()?;
        Ok(orphan)
    }

    /// Lists `dir` after `cookie`, at most `max` rows; returns the rows and whether the end was reached.
    pub(crate) fn readdir(
        &self,
        dir: Handle,
        cookie: u64,
        max: usize,
    ) -> Result<(Vec<DirRow>, bool)> {
        let txn = self.db.begin_read()?;
        let inodes = txn.open_table(INODES)?;
        load_dir(&inodes, dir)?;
        let cookies = txn.open_table(COOKIES)?;
        let dirents = txn.open_table(DIRENTS)?;
        let start = cookie.saturating_add(1);
        let mut rows = Vec::new();
        let mut eof = true;
        for r in cookies.range((dir.ino, start)..=(dir.ino, u64::MAX))? {
            let (k, v) = r?;
            if rows.len() >= max {
                eof = false;
                break;
            }
            let name = v.value().to_vec();
            let ino = dirents
                .get((dir.ino, name.as_slice()))?
                .map(|v| v.value().0)
                .ok_or_else(|| Error::Io("cookie without entry".into()))?;
            let inode = get_inode(&inodes, ino)?
                .ok_or_else(|| Error::Io(format!("entry names missing inode {ino}")))?;
            rows.push(DirRow {
                name,
                cookie: k.value().1,
                ino,
                inode,
            });
        }
        Ok((rows, eof))
    }

    /// Applies the metadata part of a setattr (mode, owner, times); size is the caller's.
    pub(crate) fn setattr(&self, h: Handle, set: &SetAttr) -> Result<Inode> {
        let txn = self.begin()?;
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = load(&inodes, h)?;
            let t = now();
            if let Some(m) = set.mode {
                obj.mode = m & 0o7777;
            }
            if let Some(u) = set.uid {
                obj.uid = u;
            }
            if let Some(g) = set.gid {
                obj.gid = g;
            }
            if let Some(a) = set.atime {
                obj.atime = resolve(a);
            }
            if let Some(m) = set.mtime {
                obj.mtime = resolve(m);
            }
            obj.touch_c(t);
            put_inode(&mut inodes, h.ino, &obj)?;
            i = obj;
        }
        txn.commit()?;
        Ok(i)
    }

    /// Records a data commit of a file: new durable size, extents added and removed, times and
    /// change counter (the caller passes the values of its pending writes).
    pub(crate) fn persist_data(&self, ino: Ino, up: &DataUpdate) -> Result<Inode> {
        let mut txn = self.begin()?;
        if up.lazy {
            let mut last = self.lazy_synced.lock();
            if last.elapsed() < LAZY_SYNC_EVERY {
                // Made durable by the next durable transaction; a crash before it loses only
                // what the data's owner records itself.
                txn.set_durability(Durability::None)
                    .map_err(|e| Error::Io(e.to_string()))?;
            } else {
                *last = std::time::Instant::now();
            }
        }
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = get_inode(&inodes, ino)?.ok_or(Error::Stale)?;
            let mut ext = txn.open_table(EXTENTS)?;
            for &e in &up.added {
                if ext.insert((ino, e), ())?.is_none() {
                    obj.nextents += 1;
                }
            }
            for &e in &up.removed {
                if ext.remove((ino, e))?.is_some() {
                    obj.nextents = obj.nextents.saturating_sub(1);
                }
            }
            obj.size = up.size;
            obj.mtime = up.mtime;
            obj.ctime = obj.ctime.max(up.mtime);
            // 0: no pending writes carried a counter (e.g. a size change alone); the data
            // changed all the same, so the counter must move.
            obj.change = if up.change == 0 {
                obj.change + 1
            } else {
                obj.change.max(up.change)
            };
            put_inode(&mut inodes, ino, &obj)?;
            i = obj;
        }
        txn.commit()?;
        Ok(i)
    }

    /// Deletes an orphan's inode and extent rows (its data is gone from the backend).
    pub(crate) fn purge(&self, ino: Ino) -> Result<()> {
        let txn = self.begin()?;
        {
            let mut inodes = txn.open_table(INODES)?;
            if let Some(i) = get_inode(&inodes, ino)? {
                if i.nlink > 0 {
                    // Linked again meanwhile: keep it.
                    txn.open_table(ORPHANS)?.remove(ino)?;
                    drop(inodes);
                    txn.commit()?;
                    return Ok(());
                }
                inodes.remove(ino)?;
            }
            txn.open_table(EXTENTS)?
                .retain_in((ino, 0)..=(ino, u64::MAX), |_, _| false)?;
            txn.open_table(ORPHANS)?.remove(ino)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// What a data commit persists.
#[derive(Debug, Clone, Default)]
pub(crate) struct DataUpdate {
    pub size: u64,
    pub added: Vec<u64>,
    pub removed: Vec<u64>,
    pub mtime: Timestamp,
    /// The change counter to record (at least); 0 means one more than the recorded one.
    pub change: u64,
    /// Commit without fsync (see `Commit::lazy`).
    pub lazy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> (tempfile::TempDir, Namespace) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("t.redb")).expect("db");
        (dir, Namespace::open(db).expect("open"))
    }

    fn file(mode: u32) -> NewNode {
        NewNode {
            kind: Kind::File,
            mode,
            cred: Cred { uid: 7, gid: 8 },
            target: vec![],
        }
    }

    #[test]
    fn inode_roundtrip() {
        let mut i = Inode::new(Kind::Symlink, 0o777, Cred { uid: 1, gid: 2 }, 42);
        i.target = b"/x/y".to_vec();
        i.verifier = Some(*b"abcdefgh");
        assert_eq!(Inode::decode(&i.encode()).expect("decode"), i);
        assert!(Inode::decode(&i.encode()[..20]).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(matches!(
            check_new_name(&[b'a'; 256]),
            Err(Error::NameTooLong)
        ));
        assert!(check_new_name(&[b'a'; 255]).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(
                matches!(check_new_name(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookies_start_at_three_and_are_never_reused() {
        let (_d, ns) = ns();
        let root = Handle {
            ino: ROOT,
            generation: ns.fsid(),
        };
        ns.create(root, b"a", file(0o644), CreateMode::Guarded)
            .expect("a");
        ns.create(root, b"b", file(0o644), CreateMode::Guarded)
            .expect("b");
        ns.remove(root, b"b", false).expect("rm b");
        ns.create(root, b"b", file(0o644), CreateMode::Guarded)
            .expect("b again");
        let (rows, eof) = ns.readdir(root, 0, 10).expect("readdir");
        assert!(eof);
        let cookies: Vec<u64> = rows.iter().map(|r| r.cookie).collect();
        assert_eq!(cookies, vec![3, 5]);
    }

    #[test]
    fn reopen_keeps_fsid_and_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.redb");
        let (fsid, ino) = {
            let ns = Namespace::open(Database::create(&path).expect("db")).expect("open");
            let root = Handle {
                ino: ROOT,
                generation: ns.fsid(),
            };
            let (ino, _, _) = ns
                .create(root, b"a", file(0o600), CreateMode::Guarded)
                .expect("create");
            (ns.fsid(), ino)
        };
        let ns = Namespace::open(Database::create(&path).expect("db")).expect("reopen");
        assert_eq!(ns.fsid(), fsid);
        let root = Handle {
            ino: ROOT,
            generation: fsid,
        };
        let (ino2, _, _) = ns
            .create(root, b"b", file(0o600), CreateMode::Guarded)
            .expect("create");
        assert!(ino2 > ino);
        assert_eq!(ns.lookup(root, b"a").expect("lookup").0, ino);
    }
}
