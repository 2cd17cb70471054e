//! The write-ahead log's writeback, started as soon as a COMMIT is expected.
//!
//! A client that commits after every few writes (a guest's `O_DSYNC` writes, a database's
//! log, an NFS client flushing each write) sends each COMMIT only once the writes' replies came
//! back: a round trip during which the disk sits idle. When the volume saw the same number of
//! writes between its last two client COMMITs and the current window reaches that number, the
//! write that completes it starts the writeback of the log's records at once (not waiting for
//! it): the COMMIT's fdatasync then finds them written or on their way, and is left mostly with
//! the device's cache flush.
//!
//! Only a window wholly in the write-ahead log (`wal/`) is worth it: any other is made durable
//! in place by its COMMIT. A hint: durability still comes only from the COMMIT's fdatasync,
//! and a wrong guess costs one early writeback of the log's newest records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::volume::state::Volume;

/// How many writes came between the last client COMMITs ([`Volume::commit`]; a heuristic:
/// races between concurrent writers and committers only make it guess wrong).
#[derive(Debug, Default)]
pub(super) struct CommitPattern {
    /// Unstable writes since the last COMMIT.
    writes: AtomicU64,
    /// Writes between the last two COMMITs.
    last: AtomicU64,
    /// The last two windows had the same number of writes.
    steady: AtomicBool,
}

impl CommitPattern {
    /// Counts an unstable write; true when it completes a window as long as the last two.
    pub(super) fn wrote(&self) -> bool {
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        self.steady.load(Ordering::Relaxed) && n == self.last.load(Ordering::Relaxed)
    }

    /// Counts a COMMIT: the window ends.
    pub(super) fn committed(&self) {
        let n = self.writes.swap(0, Ordering::Relaxed);
        if n == 0 {
            // Nothing written since the last COMMIT (a client's second flush): not a window.
            return;
        }
        let last = self.last.swap(n, Ordering::Relaxed);
        self.steady.store(n == last, Ordering::Relaxed);
    }
}

impl Volume {
    /// After an unstable write returned: when the pattern says a COMMIT comes next and the
    /// window is wholly in the write-ahead log, starts the log's writeback.
    pub(super) fn expect_commit(&self) {
        if !self.pattern.wrote() {
            return;
        }
        let wal = {
            let st = self.state.read();
            st.wal.window_whole().then(|| st.wal.file())
        };
        let Some(wal) = wal else { return };
        match wal.start_writeback() {
            Ok(()) => {
                self.counters
                    .expected_commits
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(volume = %self.id, error = %e, "starting the write-ahead log's writeback failed");
            }
        }
    }
}
