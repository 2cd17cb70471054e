//! Directories: lookup, entries added and removed, create, link, remove, rename, readdir.

use super::data::Orphaned;
use super::inode::Inode;
use super::names::{check_name, check_new_name, now};
use super::{
    get_inode, load, load_dir, put_inode, Namespace, COOKIES, DIRENTS, INODES, ORPHANS, ROOT,
};
use crate::error::{Error, Result};
use crate::types::{CreateMode, Cred, DeviceId, Handle, Ino, Kind, Timestamp};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

/// What a new node is.
#[derive(Debug, Clone)]
pub(crate) struct NewNode {
    pub kind: Kind,
    pub mode: u32,
    pub cred: Cred,
    /// Symlinks: the target.
    pub target: Vec<u8>,
    /// Device nodes: their numbers.
    pub rdev: DeviceId,
}

/// One readdir row.
pub(crate) struct DirRow {
    pub name: Vec<u8>,
    pub cookie: u64,
    pub ino: Ino,
    pub inode: Inode,
}

impl Namespace {
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

    /// Adds `name -> child` to `dir` (which the caller has loaded and will store).
    pub(super) fn add_entry(
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

    pub(super) fn remove_entry(txn: &WriteTransaction, dir_ino: Ino, name: &[u8]) -> Result<()> {
        let old = txn
            .open_table(DIRENTS)?
            .remove((dir_ino, name))?
            .map(|v| v.value());
        if let Some((_, cookie)) = old {
            txn.open_table(COOKIES)?.remove((dir_ino, cookie))?;
        }
        Ok(())
    }

    pub(super) fn is_empty_dir(txn: &WriteTransaction, ino: Ino) -> Result<bool> {
        let t = txn.open_table(COOKIES)?;
        let empty = t.range((ino, 0)..=(ino, u64::MAX))?.next().is_none();
        Ok(empty)
    }

    /// Drops one link of `ino` (already removed from its directory). Directories are deleted at
    /// once; regular objects at nlink 0 become orphans; symlinks are deleted.
    pub(super) fn drop_link(
        txn: &WriteTransaction,
        ino: Ino,
        i: &mut Inode,
        t: Timestamp,
    ) -> Result<Option<Orphaned>> {
        let mut inodes = txn.open_table(INODES)?;
        match i.kind {
            Kind::Directory => {
                inodes.remove(ino)?;
                Self::xattrs_drop(txn, ino)?;
                Ok(None)
            }
            _ => {
                i.nlink = i.nlink.saturating_sub(1);
                i.touch_c(t);
                if i.nlink > 0 {
                    put_inode(&mut inodes, ino, i)?;
                    Ok(None)
                } else if !i.kind.is_regular() {
                    // Symlinks and special files: metadata only, gone with their last link.
                    inodes.remove(ino)?;
                    Self::xattrs_drop(txn, ino)?;
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
            let ino = self.alloc_ino(&txn)?;
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
                Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                    if node.kind.is_device() {
                        i.rdev = node.rdev;
                    }
                }
            }
            Self::add_entry(&txn, dir.ino, &mut d, name, ino)?;
            d.touch_mc(t);
            put_inode(&mut inodes, dir.ino, &d)?;
            put_inode(&mut inodes, ino, &i)?;
            result = (ino, i, true);
        }
        if node.kind.is_regular() {
            // The small-file path: durable through the file journal (`redo.rs`).
            let keys = super::redo::CreateKeys {
                dir: dir.ino,
                child: result.0,
                name,
            };
            let rows = Self::create_rows(&txn, &keys)?;
            self.commit_journaled(txn, &rows)?;
        } else {
            self.commit(txn)?;
        }
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
        self.commit(txn)?;
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
        self.commit(txn)?;
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
        self.commit(txn)?;
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
}
