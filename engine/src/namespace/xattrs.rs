//! Extended attributes (RFC 8276, the `user.` namespace of Linux clients without its prefix):
//! one row per attribute in the `xattrs` table, keyed by inode and name.
//!
//! Each change is one write transaction, durable when it returns like every other namespace
//! change, and bumps the object's ctime and change counter. Only regular files, volumes and
//! directories carry them (as Linux keeps `user.` attributes): the others list none, read
//! none (NOXATTR) and refuse a change (NOTSUPP). The limits below are answered
//! with the matching NFS errors; an object's attributes go with its inode.

use super::names::now;
use super::{load, put_inode, Namespace, INODES};
use crate::error::{Error, Result};
use crate::types::{Handle, Ino, Kind, XattrMode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// `(inode, name) -> value`.
pub(super) const XATTRS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("xattrs");

/// Longest attribute name, in bytes (Linux's XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest attribute value, in bytes (Linux's XATTR_SIZE_MAX): larger is NFS4ERR_XATTR2BIG.
pub const XATTR_VALUE_MAX: usize = 64 * 1024;

/// Most bytes of names and values one object keeps: more is NFS4ERR_NOSPC.
pub const XATTR_OBJECT_MAX: usize = 256 * 1024;

/// Above every name (names are at most [`XATTR_NAME_MAX`] bytes).
const ABOVE_NAMES: [u8; XATTR_NAME_MAX + 1] = [0xff; XATTR_NAME_MAX + 1];

/// The keys of `ino`'s attributes.
fn span(ino: Ino) -> std::ops::RangeInclusive<(u64, &'static [u8])> {
    (ino, &[][..])..=(ino, &ABOVE_NAMES[..])
}

pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&0) {
        return Err(Error::Invalid(
            "an extended attribute name is empty or holds a NUL byte".into(),
        ));
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(Error::NameTooLong);
    }
    Ok(())
}

/// Whether objects of `kind` carry extended attributes: regular files, volumes, directories.
pub(super) fn carries(kind: Kind) -> bool {
    kind.is_regular() || kind == Kind::Directory
}

/// Only regular files, volumes and directories take extended attributes (the others read as
/// having none, as Linux answers for `user.` attributes).
fn check_kind(kind: Kind) -> Result<()> {
    if carries(kind) {
        Ok(())
    } else {
        Err(Error::NotSupported(
            "extended attributes on regular files and directories only".into(),
        ))
    }
}

impl Namespace {
    /// The value of `h`'s attribute `name`; [`Error::NoXattr`] if it has none.
    pub(crate) fn xattr_get(&self, h: Handle, name: &[u8]) -> Result<Vec<u8>> {
        check_name(name)?;
        let txn = self.db.begin_read()?;
        if !carries(load(&txn.open_table(INODES)?, h)?.kind) {
            return Err(Error::NoXattr);
        }
        let t = txn.open_table(XATTRS)?;
        let v = t.get((h.ino, name))?.ok_or(Error::NoXattr)?;
        Ok(v.value().to_vec())
    }

    /// `h`'s attribute names, in byte order.
    pub(crate) fn xattr_list(&self, h: Handle) -> Result<Vec<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        if !carries(load(&txn.open_table(INODES)?, h)?.kind) {
            return Ok(Vec::new());
        }
        let t = txn.open_table(XATTRS)?;
        let mut names = Vec::new();
        for r in t.range(span(h.ino))? {
            names.push(r?.0.value().1.to_vec());
        }
        Ok(names)
    }

    /// Sets `h`'s attribute `name` to `value`: `Create` fails with [`Error::Exists`] if it is
    /// there, `Replace` with [`Error::NoXattr`] if it is not. Durable when it returns.
    pub(crate) fn xattr_set(
        &self,
        h: Handle,
        name: &[u8],
        value: &[u8],
        how: XattrMode,
    ) -> Result<crate::namespace::Inode> {
        check_name(name)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::XattrTooBig);
        }
        let txn = self.begin()?;
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = load(&inodes, h)?;
            check_kind(obj.kind)?;
            let mut t = txn.open_table(XATTRS)?;
            let old = t.get((h.ino, name))?.map(|v| v.value().len());
            match (how, old) {
                (XattrMode::Create, Some(_)) => return Err(Error::Exists),
                (XattrMode::Replace, None) => return Err(Error::NoXattr),
                _ => {}
            }
            let mut total = 0usize;
            for r in t.range(span(h.ino))? {
                let (k, v) = r?;
                total += k.value().1.len() + v.value().len();
            }
            let after = total - old.map_or(0, |l| l + name.len()) + name.len() + value.len();
            if after > XATTR_OBJECT_MAX {
                return Err(Error::NoSpace);
            }
            t.insert((h.ino, name), value)?;
            obj.touch_c(now());
            put_inode(&mut inodes, h.ino, &obj)?;
            i = obj;
        }
        self.commit(txn)?;
        Ok(i)
    }

    /// Removes `h`'s attribute `name`; [`Error::NoXattr`] if it has none. Durable when it
    /// returns.
    pub(crate) fn xattr_remove(&self, h: Handle, name: &[u8]) -> Result<crate::namespace::Inode> {
        check_name(name)?;
        let txn = self.begin()?;
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = load(&inodes, h)?;
            check_kind(obj.kind)?;
            if txn.open_table(XATTRS)?.remove((h.ino, name))?.is_none() {
                return Err(Error::NoXattr);
            }
            obj.touch_c(now());
            put_inode(&mut inodes, h.ino, &obj)?;
            i = obj;
        }
        self.commit(txn)?;
        Ok(i)
    }

    /// Drops every attribute of `ino` (its inode is being deleted in `txn`).
    pub(super) fn xattrs_drop(txn: &WriteTransaction, ino: Ino) -> Result<()> {
        txn.open_table(XATTRS)?.retain_in(span(ino), |_, _| false)?;
        Ok(())
    }
}
