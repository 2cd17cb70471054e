//! The namespace's rows read from redb for an image or a log (`rows.rs` has their bytes), and
//! written into an empty database by a restore.
//!
//! In the image: `meta`, `inodes`, `dirents`, `cookies`, `file_extents`, `file_applied`,
//! `orphans`, `clone_readers`, `hidden_volumes` and `xattrs`. Left out, as local duties of the gateway
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
use super::rows::{damaged, Reader, Rows, Writer};
use super::xattrs::XATTRS;
use super::{
    Namespace, APPLIED, COOKIES, DIRENTS, EXTENTS, FORMAT_VERSION, INODES, META, META_FSID,
    META_GATEWAY, META_NEXT_INO, META_VERSION, ORPHANS,
};
use crate::error::{Error, Result};
use crate::types::{Ino, Kind};
use std::collections::HashSet;

/// What an export or an import found besides the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    /// [`Namespace::changes`] when the read transaction began: every change up to it is in.
    pub changes: u64,
    /// The next inode number the namespace hands out.
    pub next_ino: u64,
    /// Inodes (counted by [`import_rows`] only).
    pub inodes: u64,
    /// Of those, per kind (counted by [`import_rows`] only).
    pub kinds: KindCounts,
    /// The volumes whose backend namespaces the rows name: volumes and hidden volumes
    /// (filled by [`import_rows`] only).
    pub volumes: Vec<u64>,
    /// Volumes left out because nothing of them is on the backend yet (export only).
    pub omitted: u64,
    /// Extended attributes (counted by [`import_rows`] only).
    pub xattrs: u64,
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
    /// Special files (FIFOs, sockets, device nodes).
    pub special: u64,
}

/// The rows of redb table `t` into `out` as table number `n`; `row` encodes one (key fields
/// into the first writer, value fields into the second) or leaves it out (`false`).
fn export<K: redb::Key + 'static, V: redb::Value + 'static>(
    out: &mut Rows,
    n: u8,
    t: &redb::ReadOnlyTable<K, V>,
    mut row: impl FnMut(&mut Writer, &mut Writer, K::SelfType<'_>, V::SelfType<'_>) -> Result<bool>,
) -> Result<()> {
    for r in t.iter()? {
        let (k, v) = r?;
        let (mut kw, mut vw) = (Writer::default(), Writer::default());
        if row(&mut kw, &mut vw, k.value(), v.value())? {
            out.insert((n, kw.buf), vw.buf);
        }
    }
    Ok(())
}

impl Namespace {
    /// Every row an image holds, as the namespace is now (one read transaction), without the
    /// volumes `on_backend` says have nothing on the backend yet (no manifest: a restore would
    /// show a name whose data is missing), their names and clone rows.
    pub(crate) fn export_rows(
        &self,
        on_backend: &mut dyn FnMut(Ino) -> Result<bool>,
    ) -> Result<(Rows, ImageInfo)> {
        let changes = self.changes();
        let txn = self.db.begin_read()?;
        let mut rows = Rows::new();
        let meta = txn.open_table(META)?;
        let next_ino = meta
            .get(META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))?;
        export(&mut rows, 0, &meta, |k, v, key, val| {
            k.bytes(key.as_bytes())?;
            v.u64(val);
            Ok(true)
        })?;
        let mut omitted = HashSet::new();
        export(&mut rows, 1, &txn.open_table(INODES)?, |k, v, key, val| {
            if super::Inode::decode(val)?.kind == Kind::Volume && !on_backend(key)? {
                omitted.insert(key);
                return Ok(false);
            }
            k.u64(key);
            v.bytes(val)?;
            Ok(true)
        })?;
        let mut omitted_names = HashSet::new();
        export(&mut rows, 2, &txn.open_table(DIRENTS)?, |k, v, key, val| {
            if omitted.contains(&val.0) {
                omitted_names.insert((key.0, key.1.to_vec()));
                return Ok(false);
            }
            k.u64(key.0);
            k.bytes(key.1)?;
            v.u64(val.0);
            v.u64(val.1);
            Ok(true)
        })?;
        export(&mut rows, 3, &txn.open_table(COOKIES)?, |k, v, key, val| {
            if omitted_names.contains(&(key.0, val.to_vec())) {
                return Ok(false);
            }
            k.u64(key.0);
            k.u64(key.1);
            v.bytes(val)?;
            Ok(true)
        })?;
        export(&mut rows, 4, &txn.open_table(EXTENTS)?, |k, v, key, val| {
            k.u64(key.0);
            k.u64(key.1);
            v.u64(val);
            Ok(true)
        })?;
        export(&mut rows, 5, &txn.open_table(APPLIED)?, |k, v, key, val| {
            k.u64(key);
            v.u64(val);
            Ok(true)
        })?;
        export(&mut rows, 6, &txn.open_table(ORPHANS)?, |k, _, key, ()| {
            k.u64(key);
            Ok(true)
        })?;
        export(&mut rows, 7, &txn.open_table(READERS)?, |k, _, key, ()| {
            if omitted.contains(&key.0) || omitted.contains(&key.1) {
                return Ok(false);
            }
            k.u64(key.0);
            k.u64(key.1);
            Ok(true)
        })?;
        export(&mut rows, 8, &txn.open_table(HIDDEN)?, |k, v, key, val| {
            k.u64(key);
            v.u64(val as u64);
            Ok(true)
        })?;
        export(&mut rows, 9, &txn.open_table(XATTRS)?, |k, v, key, val| {
            if omitted.contains(&key.0) {
                return Ok(false);
            }
            k.u64(key.0);
            k.bytes(key.1)?;
            v.bytes(val)?;
            Ok(true)
        })?;
        Ok((
            rows,
            ImageInfo {
                changes,
                next_ino,
                omitted: omitted.len() as u64,
                ..ImageInfo::default()
            },
        ))
    }
}

/// Writes `rows` (an image's, its logs applied) into the empty database `db` as the namespace
/// `fsid` of gateway `gateway`, its next inode number at least `min_next_ino`; returns what it
/// held. Every row is checked first; nothing is written unless all of them are sound.
pub(crate) fn import_rows(
    db: &Database,
    rows: &Rows,
    fsid: u64,
    gateway: u64,
    min_next_ino: u64,
) -> Result<ImageInfo> {
    let mut info = ImageInfo::default();
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
        let mut xattrs = txn.open_table(XATTRS)?;
        for ((n, key), value) in rows {
            let mut k = Reader { b: key };
            let mut v = Reader { b: value };
            match n {
                0 => {
                    let name = std::str::from_utf8(k.bytes()?)
                        .map_err(|_| damaged("a meta key is not UTF-8"))?;
                    meta.insert(name, v.u64()?)?;
                }
                1 => {
                    let ino = k.u64()?;
                    let rec = v.bytes()?;
                    let kind = super::Inode::decode(rec)?.kind;
                    inodes.insert(ino, rec)?;
                    info.inodes += 1;
                    if kind == Kind::Volume {
                        info.volumes.push(ino);
                    }
                    let c = &mut info.kinds;
                    *match kind {
                        Kind::Directory => &mut c.directories,
                        Kind::File => &mut c.files,
                        Kind::Volume => &mut c.volumes,
                        Kind::Symlink => &mut c.symlinks,
                        Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                            &mut c.special
                        }
                    } += 1;
                }
                2 => {
                    let (d, name) = (k.u64()?, k.bytes()?);
                    dirents.insert((d, name), (v.u64()?, v.u64()?))?;
                }
                3 => {
                    let (d, c) = (k.u64()?, k.u64()?);
                    cookies.insert((d, c), v.bytes()?)?;
                }
                4 => {
                    let (i, x) = (k.u64()?, k.u64()?);
                    extents.insert((i, x), v.u64()?)?;
                }
                5 => {
                    applied.insert(k.u64()?, v.u64()?)?;
                }
                6 => {
                    orphans.insert(k.u64()?, ())?;
                }
                7 => {
                    readers.insert((k.u64()?, k.u64()?), ())?;
                }
                8 => {
                    let i = k.u64()?;
                    hidden.insert(i, v.u64()? as i64)?;
                    info.volumes.push(i);
                }
                9 => {
                    // Rows come in table order: the inodes are in already.
                    let (i, name, value) = (k.u64()?, k.bytes()?, v.bytes()?);
                    let owner = inodes.get(i)?.map(|r| super::Inode::decode(r.value()));
                    match owner {
                        Some(Ok(o)) if super::xattrs::carries(o.kind) => {}
                        _ => {
                            return Err(damaged(&format!(
                                "an extended attribute of inode {i}, which carries none"
                            )))
                        }
                    }
                    if super::xattrs::check_name(name).is_err()
                        || value.len() > super::XATTR_VALUE_MAX
                    {
                        return Err(damaged(&format!(
                            "an extended attribute of inode {i} out of bounds"
                        )));
                    }
                    xattrs.insert((i, name), value)?;
                    info.xattrs += 1;
                }
                _ => return Err(damaged(&format!("table number {n}"))),
            }
            if !k.b.is_empty() || !v.b.is_empty() {
                return Err(damaged("a row longer than its fields"));
            }
        }
        let get = |m: &redb::Table<&str, u64>, k: &str| -> Result<u64> {
            m.get(k)?
                .map(|v| v.value())
                .ok_or_else(|| damaged(&format!("its meta has no {k}")))
        };
        if get(&meta, META_VERSION)? != FORMAT_VERSION {
            return Err(damaged("its namespace format is not this build's"));
        }
        if get(&meta, META_FSID)? != fsid {
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
            rdev: crate::types::DeviceId::default(),
        }
    }

    #[test]
    fn rows_bring_back_every_row_with_a_new_gateway_and_a_higher_next_ino() {
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
        let (f, fi, _) = a
            .create(dh, b"f", node(Kind::File), CreateMode::Unchecked)
            .expect("create");
        let fh = Handle {
            ino: f,
            generation: fi.generation,
        };
        a.xattr_set(fh, b"k", b"v", crate::types::XattrMode::Create)
            .expect("setxattr");
        let (rows, _) = a.export_rows(&mut |_| Ok(true)).expect("export");
        let db = Database::create(t.path().join("b.redb")).expect("db");
        let got = import_rows(&db, &rows, a.fsid(), 77, 1000).expect("import");
        assert_eq!((got.next_ino, got.inodes, got.xattrs), (1000, 3, 1));
        assert_eq!(got.kinds.directories, 2);
        let b = Namespace::open(db).expect("open");
        assert_eq!(b.fsid(), a.fsid());
        assert_eq!(b.gateway_id(), 77);
        assert_eq!(b.next_ino().expect("next"), 1000);
        let (back, i) = b.lookup(dh, b"f").expect("lookup");
        assert_eq!((back, i.kind, i.mode & 0o7777), (f, Kind::File, 0o640));
        assert_eq!(b.xattr_get(fh, b"k").expect("getxattr"), b"v");
        // Every row but meta's next_ino and gateway came back as it was.
        let (again, _) = b.export_rows(&mut |_| Ok(true)).expect("export");
        let changed = super::super::rows::diff(&rows, &again);
        assert_eq!(
            (changed.put.len(), changed.deleted.len()),
            (2, 0),
            "{changed:?}"
        );
        // A second import into the same database is refused.
        let db = b.db;
        assert!(matches!(
            import_rows(&db, &rows, a.fsid(), 1, 0),
            Err(Error::Exists)
        ));
    }

    #[test]
    fn unsound_rows_are_refused_and_write_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let a = ns(t.path(), "a.redb");
        let (rows, _) = a.export_rows(&mut |_| Ok(true)).expect("export");
        let mut cases: Vec<(Rows, u64)> = vec![(rows.clone(), a.fsid() ^ 1)];
        let mut no_root = rows.clone();
        no_root.retain(|(n, _), _| *n != 1);
        cases.push((no_root, a.fsid()));
        let mut long = rows.clone();
        if let Some(v) = long.values_mut().next() {
            v.push(0);
        }
        cases.push((long, a.fsid()));
        // Extended attributes of an inode that is not there, or out of bounds.
        let xattr = |ino: u64, name: &[u8], len: usize| {
            let (mut k, mut v) = (Writer::default(), Writer::default());
            k.u64(ino);
            k.bytes(name).expect("name");
            v.bytes(&vec![1u8; len]).expect("value");
            ((9u8, k.buf), v.buf)
        };
        for (ino, name, len) in [
            (999, &b"a"[..], 1),
            (crate::namespace::ROOT, b"", 1),
            (
                crate::namespace::ROOT,
                b"a",
                super::super::XATTR_VALUE_MAX + 1,
            ),
        ] {
            let mut bad = rows.clone();
            let (k, v) = xattr(ino, name, len);
            bad.insert(k, v);
            cases.push((bad, a.fsid()));
        }
        for (i, (bad, fsid)) in cases.into_iter().enumerate() {
            let db = Database::create(t.path().join(format!("b{i}.redb"))).expect("db");
            let e = import_rows(&db, &bad, fsid, 5, 0).expect_err("unsound");
            assert!(e.to_string().contains("namespace image"), "{i}: {e}");
            let txn = db.begin_read().expect("read");
            assert!(txn.open_table(META).is_err(), "nothing written in case {i}");
        }
    }
}
