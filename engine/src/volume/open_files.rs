//! The SCO files a volume keeps open for reads: at most [`MAX_OPEN`], the least recently used
//! closed first.
//!
//! Reads spread over a few more SCOs than the bound must not reopen a file at each read, and
//! SCOs a writer created (kept open as it made them) but nobody reads any more must leave
//! first: a policy that closes the least recently used does both. Finding it scans the map
//! (a miss costs an `open` anyway, far more than 256 comparisons).

use rustc_hash::FxHashMap;
use std::sync::Arc;

use crate::volume::localfs::LocalFile;

/// Most SCO files a volume keeps open.
pub(super) const MAX_OPEN: usize = 256;

/// Open SCO files by sequence number, each with the tick of its last use.
#[derive(Default)]
pub(super) struct OpenFiles {
    files: FxHashMap<u64, (Arc<dyn LocalFile>, u64)>,
    tick: u64,
}

impl OpenFiles {
    /// SCO `seq`'s file when it is open (a use: it becomes the most recent).
    pub(super) fn get(&mut self, seq: u64) -> Option<Arc<dyn LocalFile>> {
        self.tick += 1;
        let tick = self.tick;
        self.files.get_mut(&seq).map(|(f, used)| {
            *used = tick;
            f.clone()
        })
    }

    /// Keeps `f` open as SCO `seq`'s file; at [`MAX_OPEN`], the least recently used other one
    /// is closed first.
    pub(super) fn keep(&mut self, seq: u64, f: Arc<dyn LocalFile>) {
        self.tick += 1;
        if self.files.len() >= MAX_OPEN && !self.files.contains_key(&seq) {
            let oldest = self
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(s, _)| *s);
            if let Some(s) = oldest {
                self.files.remove(&s);
            }
        }
        self.files.insert(seq, (f, self.tick));
    }

    /// Closes SCO `seq`'s file (it was evicted, replaced or died), or hands it to the caller.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Arc<dyn LocalFile>> {
        self.files.remove(&seq).map(|(f, _)| f)
    }

    /// Closes every file.
    pub(super) fn clear(&mut self) {
        self.files.clear();
    }

    /// How many files are open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::localfs::{LocalFs, SimFs};
    use crate::volume::SimRng;

    #[test]
    fn reads_over_the_bound_less_one_open_each_file_once_after_writes_left_others() {
        let fs = SimFs::new();
        fs.create_dir_all(std::path::Path::new("/d")).expect("dir");
        let file = fs.create_new(std::path::Path::new("/d/f")).expect("create");
        let mut open = OpenFiles::default();
        // A writer made 3 * MAX_OPEN SCOs, each kept open as it was created; reads then go to
        // the last MAX_OPEN - 1 of them only, in random order.
        let made = 3 * MAX_OPEN as u64;
        for seq in 0..made {
            open.keep(seq, file.clone());
        }
        let mut rng = SimRng::new(7);
        // 20,000 reads of random SCOs in `live`, each reopening its file when it is closed;
        // returns how many did.
        let mut reads = |live: std::ops::Range<u64>| {
            let mut misses = 0;
            for _ in 0..20_000 {
                let seq = live.start + rng.below(live.end - live.start);
                if open.get(seq).is_none() {
                    misses += 1;
                    open.keep(seq, file.clone());
                }
            }
            misses
        };
        let misses = reads(made - MAX_OPEN as u64 + 1..made);
        assert_eq!(misses, 0, "the live SCOs were the most recent already");
        // One more live SCO than the bound: each read of a file closed meanwhile reopens it,
        // about once per MAX_OPEN + 1 reads, never at every read.
        let misses = reads(made - MAX_OPEN as u64 - 1..made);
        assert_eq!(open.len(), MAX_OPEN);
        assert!(
            misses < 20_000 / 50,
            "{misses} of 20000 reads reopened their file"
        );
    }
}
