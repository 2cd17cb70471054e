//! What `strata fsck` checks the backend against: every regular file's extent map, the volumes
//! and hidden volumes, and the extent objects the namespace already knows are garbage.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};

use super::clones::HIDDEN;
use super::{Namespace, EXTENTS, GARBAGE, INODES, UNNAMED};
use crate::error::Result;
use crate::types::{Ino, Kind};

/// A file extent: (ino, extent index, generation).
pub(crate) type ExtentRow = (Ino, u64, u64);

/// The namespace as `strata fsck` sees it (one read transaction).
#[derive(Debug, Default)]
pub(crate) struct FsckView {
    /// Regular files.
    pub files: HashSet<Ino>,
    /// Every extent the files' maps name.
    pub extents: Vec<ExtentRow>,
    /// Volumes, and hidden volumes (removed while clones read them).
    pub volumes: Vec<Ino>,
    /// Extent objects listed as garbage or found by the sweep (known, not orphans).
    pub known_garbage: HashSet<ExtentRow>,
}

impl Namespace {
    /// The view `strata fsck` checks against.
    pub(crate) fn fsck_view(&self) -> Result<FsckView> {
        let txn = self.db.begin_read()?;
        let mut v = FsckView::default();
        for r in txn.open_table(INODES)?.iter()? {
            let (k, bytes) = r?;
            match super::Inode::decode(bytes.value())?.kind {
                Kind::File => {
                    v.files.insert(k.value());
                }
                Kind::Volume => v.volumes.push(k.value()),
                Kind::Directory
                | Kind::Symlink
                | Kind::Fifo
                | Kind::Socket
                | Kind::CharDevice
                | Kind::BlockDevice => {}
            }
        }
        for r in txn.open_table(HIDDEN)?.iter()? {
            v.volumes.push(r?.0.value());
        }
        for r in txn.open_table(EXTENTS)?.iter()? {
            let (k, g) = r?;
            let (ino, idx) = k.value();
            v.extents.push((ino, idx, g.value()));
        }
        for r in txn.open_table(GARBAGE)?.iter()? {
            v.known_garbage.insert(r?.0.value());
        }
        for r in txn.open_table(UNNAMED)?.iter()? {
            v.known_garbage.insert(r?.0.value());
        }
        Ok(v)
    }
}
