//! Extended attributes (RFC 8276 GETXATTR, SETXATTR, LISTXATTRS, REMOVEXATTR): kept in the
//! namespace (`namespace/xattrs.rs`), each change durable when it returns.

use super::Filesystem;
use crate::error::Result;
use crate::namespace::Inode;
use crate::types::{Handle, XattrMode};

impl Filesystem {
    /// The value of `h`'s extended attribute `name` ([`crate::Error::NoXattr`] if none).
    pub fn getxattr(&self, h: Handle, name: &[u8]) -> Result<Vec<u8>> {
        self.ns.xattr_get(h, name)
    }

    /// The names of `h`'s extended attributes, in byte order.
    pub fn listxattrs(&self, h: Handle) -> Result<Vec<Vec<u8>>> {
        self.ns.xattr_list(h)
    }

    /// Sets `h`'s extended attribute `name` to `value` as `how` says; durable when it returns.
    /// Bumps the object's ctime and change counter.
    pub fn setxattr(&self, h: Handle, name: &[u8], value: &[u8], how: XattrMode) -> Result<()> {
        self.with_pending_change(h, || self.ns.xattr_set(h, name, value, how))
    }

    /// Removes `h`'s extended attribute `name` ([`crate::Error::NoXattr`] if none); durable
    /// when it returns.
    pub fn removexattr(&self, h: Handle, name: &[u8]) -> Result<()> {
        self.with_pending_change(h, || self.ns.xattr_remove(h, name))
    }

    /// Runs a metadata change of `h` with its pending attributes (unstable writes) held still,
    /// so the change counter a client sees keeps growing.
    fn with_pending_change(&self, h: Handle, f: impl FnOnce() -> Result<Inode>) -> Result<()> {
        let live = self.peek_live(h.ino);
        let mut pending = live.as_ref().map(|l| l.pending.lock());
        let i = f()?;
        if let Some(Some(p)) = pending.as_deref_mut() {
            p.change = (p.change + 1).max(i.change);
        }
        Ok(())
    }
}
