//! Changing the namespace: attributes (a truncate included), create, mkdir, symlink, mknod, link,
//! unlink, rmdir, rename.

use super::{Filesystem, TARGET_MAX};
use crate::data::Commit;
use crate::error::{Error, Result};
use crate::namespace::NewNode;
use crate::types::*;

impl Filesystem {
    /// Changes attributes; returns the new ones. A size change is durable (data and metadata)
    /// when it returns; it and the other fields are recorded in two transactions.
    pub fn setattr(&self, h: Handle, set: &SetAttr) -> Result<Attr> {
        let inode = self.get_valid(h)?;
        if let Some(size) = set.size {
            match inode.kind {
                Kind::Directory => return Err(Error::IsDir),
                Kind::File | Kind::Volume => {}
                _ => {
                    return Err(Error::Invalid(
                        "only a regular file has a size to set".into(),
                    ))
                }
            }
            let live = self.get_live(h)?;
            live.data
                .truncate(size, &mut |c: &Commit| self.persist(h.ino, &live, c, true))?;
        }
        let meta = set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some();
        if meta {
            let live = self.peek_live(h.ino);
            // Hold the pending attributes still while redb changes, so both stay in step.
            let mut pending = live.as_ref().map(|l| l.pending.lock());
            let i = self.ns.setattr(h, set)?;
            if let Some(Some(p)) = pending.as_deref_mut() {
                p.change = (p.change + 1).max(i.change);
                if set.mtime.is_some() {
                    p.mtime = i.mtime;
                }
            }
        }
        self.getattr(h)
    }

    /// Creates a regular file (a volume if the name has a volume suffix).
    pub fn create(
        &self,
        dir: Handle,
        name: &[u8],
        mode: u32,
        cred: Cred,
        how: CreateMode,
    ) -> Result<Created> {
        let kind = if self.is_volume_name(name) {
            Kind::Volume
        } else {
            Kind::File
        };
        let node = NewNode {
            kind,
            mode,
            cred,
            target: Vec::new(),
            rdev: DeviceId::default(),
        };
        let (ino, inode, created) = self.ns.create(dir, name, node, how)?;
        if created && kind == Kind::Volume {
            self.volumes.open_or_create(ino, 0, true)?;
        }
        Ok(Created {
            attr: self.attr_of(ino, &inode),
            created,
        })
    }

    /// Creates a directory.
    pub fn mkdir(&self, dir: Handle, name: &[u8], mode: u32, cred: Cred) -> Result<Attr> {
        let node = NewNode {
            kind: Kind::Directory,
            mode,
            cred,
            target: Vec::new(),
            rdev: DeviceId::default(),
        };
        let (ino, inode, _) = self.ns.create(dir, name, node, CreateMode::Guarded)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Creates a symbolic link to `target`.
    pub fn symlink(&self, dir: Handle, name: &[u8], target: &[u8], cred: Cred) -> Result<Attr> {
        if target.is_empty() {
            return Err(Error::Invalid("empty symlink target".into()));
        }
        if target.len() > TARGET_MAX {
            return Err(Error::NameTooLong);
        }
        let node = NewNode {
            kind: Kind::Symlink,
            mode: 0o777,
            cred,
            target: target.to_vec(),
            rdev: DeviceId::default(),
        };
        let (ino, inode, _) = self.ns.create(dir, name, node, CreateMode::Guarded)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Creates a special file: a FIFO, a socket, or a device node with its numbers (`rdev`,
    /// ignored for the other two). Metadata only, durable when it returns.
    pub fn mknod(
        &self,
        dir: Handle,
        name: &[u8],
        kind: Kind,
        mode: u32,
        rdev: DeviceId,
        cred: Cred,
    ) -> Result<Attr> {
        if !kind.is_special() {
            return Err(Error::Invalid(format!("mknod of a {kind:?}")));
        }
        let node = NewNode {
            kind,
            mode,
            cred,
            target: Vec::new(),
            rdev: if kind.is_device() {
                rdev
            } else {
                DeviceId::default()
            },
        };
        let (ino, inode, _) = self.ns.create(dir, name, node, CreateMode::Guarded)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Adds a hard link `dir/name` to the non-directory `h`.
    pub fn link(&self, h: Handle, dir: Handle, name: &[u8]) -> Result<Attr> {
        self.get_valid(h)?;
        let inode = self.ns.link(h, dir, name)?;
        Ok(self.attr_of(h.ino, &inode))
    }

    /// Removes the non-directory `dir/name`.
    pub fn unlink(&self, dir: Handle, name: &[u8]) -> Result<()> {
        let orphan = self.ns.remove(dir, name, false)?;
        self.release(orphan);
        Ok(())
    }

    /// Removes the empty directory `dir/name`.
    pub fn rmdir(&self, dir: Handle, name: &[u8]) -> Result<()> {
        self.ns.remove(dir, name, true)?;
        Ok(())
    }

    /// Renames, atomically replacing a compatible target.
    pub fn rename(&self, from_dir: Handle, from: &[u8], to_dir: Handle, to: &[u8]) -> Result<()> {
        let orphan = self.ns.rename(from_dir, from, to_dir, to)?;
        self.release(orphan);
        Ok(())
    }
}
