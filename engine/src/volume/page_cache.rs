//! The OS page cache of SCOs nothing reads any more.
//!
//! A log writes every byte into new page-cache pages, where a store that writes in place
//! rewrites the pages it already has. The pages of superseded data stay cached until the
//! kernel reclaims them, so a sustained overwrite takes every new page from reclaim, or on a
//! virtual machine whose host takes free guest memory back (free page reporting, DAMON), from
//! the host, which backs it again at its first touch: 3-4x slower to fill than a page the
//! kernel freed a moment ago (BENCHMARKS.md, issue 21's sixth step).
//!
//! So, when the uncork finds a SCO wholly dead (its last position superseded, and no snapshot
//! or clone reading any of them: `mds/liveness.rs`), its pages are dropped at once
//! (`posix_fadvise(DONTNEED)`), and its file closed. The kernel hands those pages to the next
//! writes while they are still warm. It is only a hint: the bytes stay on disk and on the
//! backend until the garbage collector deletes the SCO, and a read of them would be served
//! from the disk.

use std::io;

use crate::volume::format::sco_name;
use crate::volume::state::Volume;

/// Most dead SCOs one uncork drops (each may cost an open): a whole-volume unmap or shrink
/// can kill a SCO per 4 MiB at once, and the uncork must not stall on a hint.
const MAX_DROPS: usize = 1024;

impl Volume {
    /// Drops the page cache of the wholly dead SCOs `dead` (the first [`MAX_DROPS`]) and closes
    /// their files. A SCO already removed is skipped; a failure is only logged (nothing depends
    /// on it).
    pub(super) fn drop_dead_pages(&self, dead: &[u64]) {
        if dead.len() > MAX_DROPS {
            tracing::debug!(
                volume = %self.id,
                dead = dead.len(),
                "only the first {MAX_DROPS} dead SCOs leave the page cache now"
            );
        }
        for &seq in dead.iter().take(MAX_DROPS) {
            let open = self.handles.lock().remove(seq);
            let file = match open {
                Some(f) => Ok(f),
                None => self.fs.open(&self.sco_dir.join(sco_name(seq))),
            };
            match file.and_then(|f| f.drop_cache()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(
                    volume = %self.id,
                    sco = %sco_name(seq),
                    error = %e,
                    "dropping a dead SCO's page cache failed"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::volume::format::sco_name;
    use crate::volume::tests::{fresh_backed, read_vec};
    use crate::volume::{SimFs, Volume, VolumeOptions};

    /// 32 KiB SCOs, one per TLog.
    fn opts() -> VolumeOptions {
        VolumeOptions {
            sco_clusters: 8,
            tlog_scos: 1,
            checkpoint_tlogs: 64,
        }
    }

    /// The SCO cluster `ca` lives in.
    fn sco_of(vol: &Volume, ca: u64) -> u64 {
        let st = vol.state.read();
        vol.lookup(&st, ca).expect("lookup").expect("mapped").sco
    }

    fn drops(fs: &SimFs, vol: &Volume, sco: u64) -> u64 {
        fs.cache_drops(&vol.sco_dir.join(sco_name(sco)))
            .expect("the SCO's file")
    }

    fn write(vol: &Volume, from: u64, to: u64, byte: u8) {
        let len = usize::try_from((to - from) * 4096).expect("len");
        vol.write(from * 4096, &vec![byte; len], false)
            .expect("write");
    }

    #[test]
    fn only_scos_no_view_reads_any_more_leave_the_page_cache() {
        let (rt, store, fs, vol) = fresh_backed(opts());
        // Two full SCOs: a holds clusters 0..8, b 8..16.
        write(&vol, 0, 16, 1);
        rt.block_on(vol.backup(&*store, true)).expect("backup");
        let (a, b) = (sco_of(&vol, 0), sco_of(&vol, 8));
        assert_ne!(a, b);
        // a wholly overwritten (in two writes), b half: only a is dead once uncorked.
        write(&vol, 0, 5, 2);
        write(&vol, 5, 12, 3);
        assert_eq!(drops(&fs, &vol, a), 0, "nothing before the uncork");
        rt.block_on(vol.backup(&*store, true)).expect("backup");
        assert_eq!(drops(&fs, &vol, a), 1, "the dead SCO's pages are dropped");
        assert_eq!(drops(&fs, &vol, b), 0, "b still holds live clusters");
        // A snapshot reads the rest of b: overwriting it leaves b pinned, not dead.
        vol.snapshot_create("s", Vec::new()).expect("snapshot");
        write(&vol, 12, 16, 4);
        rt.block_on(vol.backup(&*store, true)).expect("backup");
        assert_eq!(drops(&fs, &vol, b), 0, "a snapshot still reads b");
        let mut want = vec![2u8; 5 * 4096];
        want.extend(vec![3u8; 7 * 4096]);
        want.extend(vec![4u8; 4 * 4096]);
        assert_eq!(read_vec(&vol, 0, 16 * 4096), want);
    }
}
