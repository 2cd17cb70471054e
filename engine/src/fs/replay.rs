//! Regular files at restart (step 5 of the file journal's protocol, `journal/`): the records
//! not yet applied go back into the extent cache, as if just written and committed, for the
//! uploader; upload records whose object no extent map names become garbage.

use super::live::{Live, Pending};
use super::Filesystem;
use crate::error::{Error, Result};
use crate::journal::Record;
use crate::types::{Handle, Ino, Kind};
use std::collections::{hash_map::Entry, HashMap};
use std::sync::Arc;

/// A file whose records are replayed: its loaded data and its applied LSN.
type Target = Option<(Arc<Live>, u64)>;

impl Filesystem {
    /// Replays the journal's records (once, at open, before anything is served).
    pub(super) fn replay_journal(&self) -> Result<()> {
        let mut targets: HashMap<Ino, Target> = HashMap::new();
        let mut uploads: Vec<(Ino, u64, u64)> = Vec::new();
        let (mut records, mut bytes) = (0u64, 0u64);
        self.files.journal.replay(&mut |lsn, rec| {
            match rec {
                Record::Write {
                    ino,
                    offset,
                    mtime,
                    data,
                } => {
                    let target = match targets.entry(ino) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(v) => v.insert(self.replay_target(ino)?),
                    };
                    let Some((live, applied)) = target else {
                        return Ok(()); // the file is gone
                    };
                    if lsn <= *applied {
                        return Ok(());
                    }
                    let file = live
                        .data
                        .as_file()
                        .ok_or_else(|| Error::Io(format!("journal record of {ino}: not a file")))?;
                    file.replay_write(lsn, offset, &data)?;
                    let mut p = live.pending.lock();
                    let change = match *p {
                        Some(p) => p.change,
                        None => self.ns.get_ino(ino)?.map_or(1, |i| i.change + 1),
                    };
                    *p = Some(Pending { mtime, change });
                    records += 1;
                    bytes += data.len() as u64;
                }
                Record::Upload { ino, index, gen } => uploads.push((ino, index, gen)),
                // Applied by the namespace before (`namespace/redo.rs`).
                Record::Namespace { .. } => {}
            }
            Ok(())
        })?;
        // An upload recorded but not in its file's map: interrupted (or superseded before it
        // was recorded). Its object may exist: the collector's.
        let mut maps = HashMap::new();
        let mut garbage = Vec::new();
        for (ino, index, gen) in uploads {
            let map = match maps.entry(ino) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(self.ns.extents(ino)?),
            };
            if map.get(&index) != Some(&gen) {
                garbage.push((ino, index, gen));
            }
        }
        self.ns.add_garbage(&garbage)?;
        if records > 0 || !garbage.is_empty() {
            tracing::info!(
                records,
                bytes,
                orphans = garbage.len(),
                "file journal replayed: committed data not yet on the backend goes up now"
            );
        }
        Ok(())
    }

    /// The loaded file `ino` and its applied LSN, or `None` if it is no regular file any more.
    fn replay_target(&self, ino: Ino) -> Result<Target> {
        match self.ns.get_ino(ino)? {
            Some(i) if i.kind == Kind::File && i.nlink > 0 => {
                let live = self.get_live(Handle {
                    ino,
                    generation: i.generation,
                })?;
                Ok(Some((live, self.ns.applied_lsn(ino)?)))
            }
            _ => Ok(None),
        }
    }
}
