//! The namespace image: every table a restore needs, from one read transaction, in one
//! checksummed byte string (layout in `FORMATS.md`, "Namespace image"), and its import into an
//! empty database.
//!
//! In the image: `meta`, `inodes`, `dirents`, `cookies`, `file_extents`, `file_applied`,
//! `orphans`, `clone_readers` and `hidden_volumes`. Left out, as local duties of the gateway
//! that wrote them: `garbage` (objects to delete; after a restore the extent sweep finds those
//! no map names), `unnamed_extents` (the sweep's own marks) and `jobs` (reports of this
//! gateway's jobs).
//!
//! A read transaction sees every commit that returned before it began, durable or not, and
//! nothing of later ones: the image is one point in the namespace's history. Each file's
//! extent map and size in redb are those of its last upload (unstable and journaled data are
//! not there yet), so every file comes back whole as of its own last upload.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::clones::{HIDDEN, READERS};
use super::{
    Namespace, APPLIED, COOKIES, DIRENTS, EXTENTS, FORMAT_VERSION, INODES, META, META_FSID,
    META_GATEWAY, META_NEXT_INO, META_VERSION, ORPHANS,
};
use crate::error::{Error, Result};
use crate::types::{Ino, Kind};
use std::collections::HashSet;

/// The image's first bytes.
pub(crate) const IMAGE_MAGIC: [u8; 8] = *b"STRATANS";
/// The layout version written after the magic.
const IMAGE_VERSION: u32 = 1;
/// Bytes before the first table: magic, version, table count, fsid, changes.
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;
/// The trailing CRC-32C.
const CRC_LEN: usize = 4;
/// Longest byte string of a row (an inode record, a name): far above any the namespace writes.
const FIELD_MAX: usize = 1 << 20;

/// What an image holds besides its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    /// The namespace's fsid.
    pub fsid: u64,
    /// [`Namespace::changes`] when the read transaction began: every change up to it is in.
    pub changes: u64,
    /// The next inode number the namespace would have handed out.
    pub next_ino: u64,
    /// Inodes in it (counted by [`import_image`] only).
    pub inodes: u64,
    /// Of those, per kind (counted by [`import_image`] only).
    pub kinds: KindCounts,
    /// The volumes whose backend namespaces it names: its volumes and its hidden volumes
    /// (filled by [`import_image`] only).
    pub volumes: Vec<u64>,
    /// Volumes left out because nothing of them is on the backend yet (export only).
    pub omitted: u64,
}

/// Objects per kind, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindCounts {
    /// Directories.
    pub directories: u64,
    /// Regular files.
    pub files: u64,
    /// Volumes.
    pub volumes: u64,
    /// Symbolic links.
    pub symlinks: u64,
}

/// Appends the fields of rows to an image.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) -> Result<()> {
        let len = u32::try_from(v.len())
            .ok()
            .filter(|l| (*l as usize) <= FIELD_MAX)
            .ok_or_else(|| Error::Io(format!("a namespace row of {} bytes", v.len())))?;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(v);
        Ok(())
    }
    /// A table's name and row count, before its rows.
    fn table(&mut self, name: &str, rows: u64) {
        self.buf.push(name.len() as u8);
        self.buf.extend_from_slice(name.as_bytes());
        self.u64(rows);
    }
}

/// Reads an image's fields, every length checked.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(damaged("it ends inside a row"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
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
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > FIELD_MAX {
            return Err(damaged("a row's field is too long"));
        }
        self.take(n)
    }
    fn name(&mut self) -> Result<&'a str> {
        let n = self.take(1)?[0] as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| damaged("a table name is not UTF-8"))
    }
}

fn damaged(why: &str) -> Error {
    Error::Io(format!("namespace image damaged: {why}"))
}

/// The rows of `t` that `row` writes (it returns whether it wrote one); returns how many.
fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    w: &mut Writer,
    name: &str,
    t: &redb::ReadOnlyTable<K, V>,
    mut row: impl FnMut(&mut Writer, K::SelfType<'_>, V::SelfType<'_>) -> Result<bool>,
) -> Result<u64> {
    let mut body = Writer { buf: Vec::new() };
    let mut n = 0;
    for r in t.iter()? {
        let (k, v) = r?;
        if row(&mut body, k.value(), v.value())? {
            n += 1;
        }
    }
    w.table(name, n);
    w.buf.extend_from_slice(&body.buf);
    Ok(n)
}

/// The tables in the image, in this order.
const TABLES: [&str; 9] = [
    "meta",
    "inodes",
    "dirents",
    "cookies",
    "file_extents",
    "file_applied",
    "orphans",
    "clone_readers",
    "hidden_volumes",
];

impl Namespace {
    /// The image of the namespace as it is now (one read transaction), without the volumes
    /// `on_backend` says have nothing on the backend yet (no manifest: a restore would show a
    /// name whose data is missing), their names and clone rows.
    pub(crate) fn export_image(
        &self,
        on_backend: &mut dyn FnMut(Ino) -> Result<bool>,
    ) -> Result<(Vec<u8>, ImageInfo)> {
        let changes = self.changes();
        let txn = self.db.begin_read()?;
        let mut w = Writer { buf: Vec::new() };
        w.buf.extend_from_slice(&IMAGE_MAGIC);
        w.buf.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
        w.buf
            .extend_from_slice(&(TABLES.len() as u32).to_le_bytes());
        w.u64(self.fsid);
        w.u64(changes);
        let meta = txn.open_table(META)?;
        let next_ino = meta
            .get(META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))?;
        rows(&mut w, TABLES[0], &meta, |w, k, v| {
            w.bytes(k.as_bytes())?;
            w.u64(v);
            Ok(true)
        })?;
        let mut omitted = HashSet::new();
        let count = rows(&mut w, TABLES[1], &txn.open_table(INODES)?, |w, k, v| {
            if super::Inode::decode(v)?.kind == Kind::Volume && !on_backend(k)? {
                omitted.insert(k);
                return Ok(false);
            }
            w.u64(k);
            w.bytes(v)?;
            Ok(true)
        })?;
        let mut omitted_names = HashSet::new();
        rows(&mut w, TABLES[2], &txn.open_table(DIRENTS)?, |w, k, v| {
            if omitted.contains(&v.0) {
                omitted_names.insert((k.0, k.1.to_vec()));
                return Ok(false);
            }
            w.u64(k.0);
            w.bytes(k.1)?;
            w.u64(v.0);
            w.u64(v.1);
            Ok(true)
        })?;
        rows(&mut w, TABLES[3], &txn.open_table(COOKIES)?, |w, k, v| {
            if omitted_names.contains(&(k.0, v.to_vec())) {
                return Ok(false);
            }
            w.u64(k.0);
            w.u64(k.1);
            w.bytes(v)?;
            Ok(true)
        })?;
        rows(&mut w, TABLES[4], &txn.open_table(EXTENTS)?, |w, k, v| {
            w.u64(k.0);
            w.u64(k.1);
            w.u64(v);
            Ok(true)
        })?;
        rows(&mut w, TABLES[5], &txn.open_table(APPLIED)?, |w, k, v| {
            w.u64(k);
            w.u64(v);
            Ok(true)
        })?;
        rows(&mut w, TABLES[6], &txn.open_table(ORPHANS)?, |w, k, ()| {
            w.u64(k);
            Ok(true)
        })?;
        rows(&mut w, TABLES[7], &txn.open_table(READERS)?, |w, k, ()| {
            if omitted.contains(&k.0) || omitted.contains(&k.1) {
                return Ok(false);
            }
            w.u64(k.0);
            w.u64(k.1);
            Ok(true)
        })?;
        rows(&mut w, TABLES[8], &txn.open_table(HIDDEN)?, |w, k, v| {
            w.u64(k);
            w.u64(v as u64);
            Ok(true)
        })?;
        let crc = crc32c::crc32c(&w.buf);
        w.buf.extend_from_slice(&crc.to_le_bytes());
        Ok((
            w.buf,
            ImageInfo {
                fsid: self.fsid,
                changes,
                next_ino,
                inodes: count,
                kinds: KindCounts::default(),
                volumes: Vec::new(),
                omitted: omitted.len() as u64,
            },
        ))
    }
}

/// Checks an image's magic, version and checksum; returns its fsid and the rest to read.
pub(crate) fn check_image(b: &[u8]) -> Result<(ImageInfo, usize)> {
    if b.len() < HEADER_LEN + CRC_LEN || b[..8] != IMAGE_MAGIC {
        return Err(damaged("not a namespace image"));
    }
    let (body, crc) = b.split_at(b.len() - CRC_LEN);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32c::crc32c(body) != u32::from_le_bytes(c) {
        return Err(damaged("its checksum does not match"));
    }
    let mut r = Reader { b: &body[8..] };
    let version = r.u32()?;
    if version != IMAGE_VERSION {
        return Err(Error::Io(format!(
            "namespace image of layout version {version}: this build reads {IMAGE_VERSION}"
        )));
    }
    let tables = r.u32()? as usize;
    if tables != TABLES.len() {
        return Err(damaged("it does not hold the tables this build knows"));
    }
    let fsid = r.u64()?;
    let changes = r.u64()?;
    Ok((
        ImageInfo {
            fsid,
            changes,
            next_ino: 0,
            inodes: 0,
            kinds: KindCounts::default(),
            volumes: Vec::new(),
            omitted: 0,
        },
        HEADER_LEN,
    ))
}

/// Writes image `b` into the empty database `db` as the namespace of gateway `gateway`, its
/// next inode number at least `min_next_ino`; returns what it held. Nothing is written unless
/// the whole image verified.
pub(crate) fn import_image(
    db: &Database,
    b: &[u8],
    gateway: u64,
    min_next_ino: u64,
) -> Result<ImageInfo> {
    let (mut info, start) = check_image(b)?;
    let mut r = Reader {
        b: &b[start..b.len() - CRC_LEN],
    };
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        if meta.len()? != 0 {
            return Err(Error::Exists);
        }
        let mut inodes = txn.open_table(INODES)?;
        let mut dirents = txn.open_table(DIRENTS)?;
        let mut cookies = txn.open_table(COOKIES)?;
        let mut extents = txn.open_table(EXTENTS)?;
        let mut applied = txn.open_table(APPLIED)?;
        let mut orphans = txn.open_table(ORPHANS)?;
        let mut readers = txn.open_table(READERS)?;
        let mut hidden = txn.open_table(HIDDEN)?;
        for want in TABLES {
            let name = r.name()?;
            if name != want {
                return Err(damaged(&format!("table {name} where {want} belongs")));
            }
            let n = r.u64()?;
            for _ in 0..n {
                match want {
                    "meta" => {
                        let k = std::str::from_utf8(r.bytes()?)
                            .map_err(|_| damaged("a meta key is not UTF-8"))?;
                        let v = r.u64()?;
                        meta.insert(k, v)?;
                    }
                    "inodes" => {
                        let k = r.u64()?;
                        let v = r.bytes()?;
                        let kind = super::Inode::decode(v)?.kind;
                        inodes.insert(k, v)?;
                        info.inodes += 1;
                        if kind == Kind::Volume {
                            info.volumes.push(k);
                        }
                        let c = &mut info.kinds;
                        *match kind {
                            Kind::Directory => &mut c.directories,
                            Kind::File => &mut c.files,
                            Kind::Volume => &mut c.volumes,
                            Kind::Symlink => &mut c.symlinks,
                        } += 1;
                    }
                    "dirents" => {
                        let (d, name, ino, cookie) = (r.u64()?, r.bytes()?, r.u64()?, r.u64()?);
                        dirents.insert((d, name), (ino, cookie))?;
                    }
                    "cookies" => {
                        let (d, c, name) = (r.u64()?, r.u64()?, r.bytes()?);
                        cookies.insert((d, c), name)?;
                    }
                    "file_extents" => {
                        let (i, x, g) = (r.u64()?, r.u64()?, r.u64()?);
                        extents.insert((i, x), g)?;
                    }
                    "file_applied" => {
                        let (i, l) = (r.u64()?, r.u64()?);
                        applied.insert(i, l)?;
                    }
                    "orphans" => {
                        orphans.insert(r.u64()?, ())?;
                    }
                    "clone_readers" => {
                        let (a, c) = (r.u64()?, r.u64()?);
                        readers.insert((a, c), ())?;
                    }
                    _ => {
                        let (i, t) = (r.u64()?, r.u64()?);
                        hidden.insert(i, t as i64)?;
                        info.volumes.push(i);
                    }
                }
            }
        }
        if !r.b.is_empty() {
            return Err(damaged("bytes after its last table"));
        }
        let get = |m: &redb::Table<&str, u64>, k: &str| -> Result<u64> {
            m.get(k)?
                .map(|v| v.value())
                .ok_or_else(|| damaged(&format!("its meta has no {k}")))
        };
        if get(&meta, META_VERSION)? != FORMAT_VERSION {
            return Err(damaged("its namespace format is not this build's"));
        }
        if get(&meta, META_FSID)? != info.fsid {
            return Err(damaged("its meta names another fsid than its header"));
        }
        if inodes.get(super::ROOT)?.is_none() {
            return Err(damaged("it has no root directory"));
        }
        info.next_ino = get(&meta, META_NEXT_INO)?.max(min_next_ino);
        meta.insert(META_NEXT_INO, info.next_ino)?;
        meta.insert(META_GATEWAY, gateway)?;
    }
    txn.commit()?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::NewNode;
    use crate::types::{CreateMode, Cred, Handle};

    fn ns(dir: &std::path::Path, name: &str) -> Namespace {
        let db = Database::create(dir.join(name)).expect("db");
        Namespace::open(db).expect("open")
    }

    fn node(kind: Kind) -> NewNode {
        NewNode {
            kind,
            mode: 0o640,
            cred: Cred { uid: 3, gid: 4 },
            target: vec![],
        }
    }

    #[test]
    fn an_image_brings_back_every_row_with_a_new_gateway_and_a_higher_next_ino() {
        let t = tempfile::tempdir().expect("tempdir");
        let a = ns(t.path(), "a.redb");
        let root = Handle {
            ino: crate::namespace::ROOT,
            generation: a.fsid(),
        };
        let (d, di, _) = a
            .create(root, b"dir", node(Kind::Directory), CreateMode::Unchecked)
            .expect("mkdir");
        let dh = Handle {
            ino: d,
            generation: di.generation,
        };
        let (f, _, _) = a
            .create(dh, b"f", node(Kind::File), CreateMode::Unchecked)
            .expect("create");
        let (img, info) = a.export_image(&mut |_| Ok(true)).expect("export");
        assert_eq!(info.fsid, a.fsid());
        assert_eq!(info.inodes, 3);
        let db = Database::create(t.path().join("b.redb")).expect("db");
        let got = import_image(&db, &img, 77, 1000).expect("import");
        assert_eq!((got.next_ino, got.inodes, got.fsid), (1000, 3, a.fsid()));
        let b = Namespace::open(db).expect("open");
        assert_eq!(b.fsid(), a.fsid());
        assert_eq!(b.gateway_id(), 77);
        assert_eq!(b.next_ino().expect("next"), 1000);
        let (back, i) = b.lookup(dh, b"f").expect("lookup");
        assert_eq!((back, i.kind, i.mode & 0o7777), (f, Kind::File, 0o640));
        // Every row but meta's two came back as it was: the images differ only there.
        let (again, _) = b.export_image(&mut |_| Ok(true)).expect("export");
        assert_eq!(img.len(), again.len());
        let differing = img.iter().zip(&again).filter(|(x, y)| x != y).count();
        assert!(differing <= 8 + 8 + 8 + 4, "{differing} bytes differ");
        // A second import into the same database is refused.
        let db = b.db;
        assert!(matches!(import_image(&db, &img, 1, 0), Err(Error::Exists)));
    }

    #[test]
    fn a_damaged_image_is_refused_and_writes_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let a = ns(t.path(), "a.redb");
        let (img, _) = a.export_image(&mut |_| Ok(true)).expect("export");
        for at in [0, 9, HEADER_LEN + 3, img.len() - 1] {
            let mut bad = img.clone();
            bad[at] ^= 0x40;
            let db = Database::create(t.path().join(format!("b{at}.redb"))).expect("db");
            let e = import_image(&db, &bad, 5, 0).expect_err("damaged");
            assert!(e.to_string().contains("namespace image"), "{e}");
            let txn = db.begin_read().expect("read");
            assert!(txn.open_table(META).is_err(), "nothing written at {at}");
        }
        let short = &img[..img.len() - 9];
        let db = Database::create(t.path().join("short.redb")).expect("db");
        assert!(import_image(&db, short, 5, 0).is_err());
    }
}
