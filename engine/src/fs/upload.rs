//! The uploader of regular files: step 3 and 4 of the file journal's protocol (`journal/`).
//!
//! One thread per gateway. Each round (every [`UPLOAD_EVERY`], or at once when woken: the
//! journal above its soft mark, a writer waiting for room, `strata sync --wait`):
//! 1. every loaded file with journal records not yet applied (or uploads not yet recorded)
//!    that waited `File_Upload_Delay` (every one when forced, or under pressure: the journal
//!    past its soft mark, dirty extents past half the cache) has its dirty extents uploaded and recorded (`FileData::upload`), each file in a namespace
//!    transaction that is not durable yet; then one durable commit covers them all, and only
//!    then do the files count as applied;
//! 2. the journal's segments below the low-water mark are deleted;
//! 3. the namespace image is uploaded when due (`ns_backend/`);
//! 4. garbage extent objects the namespace listed before the image on the backend was taken
//!    (durably: no map names them, there or here) are deleted from the backend and forgotten.
//!
//! A failed round leaves everything for the next one (the store's retry policy already
//! retried each request), which waits 1 s, then twice as long after each failure up to
//! [`MAX_BACKOFF`], wake-ups or not (each try journals its uploads and leaves their objects
//! as garbage when they fail); the writers' pacing sees no progress and slows them down.

use super::live::{persist_commit, Live};
use crate::data::Commit;
use crate::error::Result;
use crate::file_data::FileShared;
use crate::namespace::Namespace;
use crate::ns_backend::NsBackend;
use crate::types::Ino;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the uploader looks for work when nobody wakes it.
pub(super) const UPLOAD_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the uploader works on (shared with the facade).
#[derive(Debug, Clone)]
pub(super) struct FileSide {
    pub(super) ns: Arc<Namespace>,
    pub(super) live: Arc<Mutex<HashMap<Ino, Arc<Live>>>>,
    pub(super) files: Arc<FileShared>,
    /// The namespace's images on the backend (`ns_backend/`).
    pub(super) images: Arc<NsBackend>,
    /// One round at a time (the thread's, or a flush's).
    round: Arc<Mutex<()>>,
}

impl FileSide {
    pub(super) fn new(
        ns: Arc<Namespace>,
        live: Arc<Mutex<HashMap<Ino, Arc<Live>>>>,
        files: Arc<FileShared>,
        images: Arc<NsBackend>,
    ) -> FileSide {
        FileSide {
            ns,
            live,
            files,
            images,
            round: Arc::new(Mutex::new(())),
        }
    }

    /// One round (steps 1 to 3); `force`: every file, whatever it waited. Returns the first
    /// error.
    pub(super) fn round(&self, force: bool) -> Result<()> {
        let _one = self.round.lock();
        let delay = if force || self.files.pressure() {
            Duration::ZERO
        } else {
            self.files.upload_delay()
        };
        let work: Vec<(Ino, Arc<Live>)> = self
            .live
            .lock()
            .iter()
            .filter(|(_, l)| l.data.as_file().is_some_and(|f| f.upload_due(delay)))
            .map(|(i, l)| (*i, l.clone()))
            .collect();
        let mut first_err = None;
        let mut recorded = Vec::new();
        for (ino, live) in work {
            let Some(f) = live.data.as_file() else {
                continue;
            };
            match f.upload(&mut |c| persist_commit(&self.ns, ino, &live, c, false)) {
                Ok(Some(rec)) => recorded.push((live.clone(), rec)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(ino, error = %e, "uploading a file's extents failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.record_volume_attrs();
        // One durable commit for the round; until it returns nothing relies on the records. It
        // also persists the namespace changes durable only in the journal, once they waited
        // as long as file data does (`redo.rs`), so their segments can go.
        let checkpoint = self.ns.unsynced_for().is_some_and(|t| t >= delay);
        if !recorded.is_empty() || checkpoint {
            self.ns.sync()?;
        }
        for (live, rec) in recorded {
            if let Some(f) = live.data.as_file() {
                f.applied(rec);
            }
        }
        if let Err(e) = self.retire() {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.images.step(force) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.collect_garbage() {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Records the attributes (mtime, change, size) that clients' COMMITs left pending on
    /// volumes whose data is durable (`Filesystem::commit_for_client`), each in a namespace
    /// transaction that is not durable yet (the round's durable commit covers them). A volume
    /// written since its last COMMIT waits for the next one.
    fn record_volume_attrs(&self) {
        let due: Vec<(Ino, Arc<Live>)> = self
            .live
            .lock()
            .iter()
            .filter(|(_, l)| {
                l.data.as_file().is_none() && l.pending.lock().is_some() && !l.data.is_dirty()
            })
            .map(|(i, l)| (*i, l.clone()))
            .collect();
        for (ino, live) in due {
            let c = Commit {
                size: live.data.size(),
                lazy: true,
                ..Commit::default()
            };
            if let Err(e) = persist_commit(&self.ns, ino, &live, &c, false) {
                tracing::debug!(ino, error = %e, "recording a volume's attributes failed");
            }
        }
    }

    /// Step 2: deletes the segments every loaded file has applied.
    fn retire(&self) -> Result<()> {
        // Read before looking at the files: a record appended after this is at or above it,
        // and one appended before has set its file's first unapplied LSN by then.
        let next = self.files.journal.next_lsn();
        // Namespace changes durable only in the journal keep their segments too.
        let ns = self.ns.first_unsynced_lsn().unwrap_or(next);
        let low = self
            .live
            .lock()
            .values()
            .filter_map(|l| l.data.as_file().and_then(|f| f.first_unapplied()))
            .fold(next.min(ns), u64::min);
        self.files.journal.retire(low)
    }

    /// Step 3 until nothing is left (the sweep's end), one batch at a time between rounds (a
    /// long backlog never holds uploads off); returns how many objects went. Cancelling
    /// stops between two batches.
    pub(super) fn collect_all_garbage(&self, p: &dyn crate::progress::Progress) -> Result<u64> {
        let mut deleted = 0;
        loop {
            if p.cancelled() {
                return Err(crate::progress::cancelled_error());
            }
            let n = {
                let _one = self.round.lock();
                // An image first: the rows it leaves out are the ones that may go.
                self.images.want_image();
                self.images.step(true)?;
                self.collect_garbage()?
            };
            if n == 0 {
                return Ok(deleted);
            }
            deleted += n as u64;
        }
    }

    /// Step 3: deletes garbage objects (at most [`GARBAGE_PER_ROUND`]) and forgets them;
    /// returns how many.
    fn collect_garbage(&self) -> Result<usize> {
        // Only rows no namespace image on the backend names (read before the last image).
        let rows = self.images.take_deletable();
        if rows.is_empty() {
            return Ok(0);
        }
        // A row may come from a transaction committed but not durable yet (a truncate waiting
        // for the group commit): until it is, a crash would bring back the map naming it.
        // One batch (the store's batched delete); on an error some may be gone already, and
        // deleting them again next round is harmless.
        let r = self
            .ns
            .sync()
            .and_then(|()| Ok(self.files.driver.delete_versions(&rows)?))
            .and_then(|()| self.ns.forget_garbage(&rows));
        if let Err(e) = r {
            self.images.give_back(rows);
            return Err(e);
        }
        Ok(rows.len())
    }

    /// Whether every loaded file's journal records are applied.
    pub(super) fn all_applied(&self) -> bool {
        !self
            .live
            .lock()
            .values()
            .any(|l| l.data.as_file().is_some_and(|f| f.needs_upload()))
    }
}

/// The uploader thread; stopped (and joined) on drop.
#[derive(Debug)]
pub(super) struct Uploader {
    stop: Arc<AtomicBool>,
    files: Arc<FileShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Uploader {
    /// Starts the thread.
    pub(super) fn start(side: FileSide) -> Result<Uploader> {
        let stop = Arc::new(AtomicBool::new(false));
        let files = side.files.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strata-file-upload".into())
            .spawn(move || run(&side, &flag))
            .map_err(|e| crate::error::io_err("starting the file uploader", e))?;
        Ok(Uploader {
            stop,
            files,
            thread: Some(thread),
        })
    }

    /// Stops the thread after its current round.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.files.wake_uploader();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the file uploader thread panicked");
            }
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(side: &FileSide, stop: &AtomicBool) {
    let mut failing = false;
    let mut backoff = Duration::ZERO;
    let mut next_try = std::time::Instant::now();
    loop {
        side.files.wait_for_work(UPLOAD_EVERY);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if std::time::Instant::now() < next_try {
            continue;
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| side.round(false)));
        if matches!(r, Ok(Ok(()))) {
            backoff = Duration::ZERO;
        } else {
            backoff = (backoff * 2).clamp(UPLOAD_EVERY, MAX_BACKOFF);
            next_try = std::time::Instant::now() + backoff;
        }
        match r {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("regular files' uploads go through again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                // Once per episode: an outage would log every second otherwise.
                if !failing {
                    tracing::warn!(error = %e, "uploading regular files' data failed; retrying, less and less often (at most every 30 s)");
                }
                failing = true;
            }
            Err(_) => {
                tracing::error!("the file uploader panicked in a round; retrying");
                failing = true;
            }
        }
    }
}
