//! Reading the namespace: the root, lookups by name and by path, attributes, symlink targets,
//! directory listings.

use super::Filesystem;
use crate::error::{Error, Result};
use crate::namespace::ROOT;
use crate::types::*;

impl Filesystem {
    /// Handle of the root directory.
    pub fn root(&self) -> Handle {
        Handle {
            ino: ROOT,
            generation: self.ns.fsid(),
        }
    }

    /// Looks `name` up in `dir` ("." and ".." included).
    pub fn lookup(&self, dir: Handle, name: &[u8]) -> Result<Attr> {
        let (ino, inode) = self.ns.lookup(dir, name)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Resolves an absolute path inside the namespace ("/" is the root).
    pub fn lookup_path(&self, path: &str) -> Result<Attr> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| Error::Invalid(format!("path {path:?} is not absolute")))?;
        let mut attr = self.getattr(self.root())?;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            attr = self.lookup(attr.handle, comp.as_bytes())?;
        }
        Ok(attr)
    }

    /// Attributes of an object; `Stale` if it is gone.
    pub fn getattr(&self, h: Handle) -> Result<Attr> {
        let inode = self.get_valid(h)?;
        Ok(self.attr_of(h.ino, &inode))
    }

    /// Target of a symbolic link.
    pub fn readlink(&self, h: Handle) -> Result<Vec<u8>> {
        let inode = self.get_valid(h)?;
        if inode.kind != Kind::Symlink {
            return Err(Error::Invalid("not a symbolic link".into()));
        }
        Ok(inode.target)
    }

    /// Lists `dir` from `cookie` (0 = start), at most `max` entries.
    pub fn readdir(&self, dir: Handle, cookie: u64, max: usize) -> Result<ReadDir> {
        let (rows, eof) = self.ns.readdir(dir, cookie, max)?;
        let entries = rows
            .into_iter()
            .map(|r| DirEntry {
                attr: self.attr_of(r.ino, &r.inode),
                name: r.name,
                cookie: r.cookie,
            })
            .collect();
        Ok(ReadDir { entries, eof })
    }
}
