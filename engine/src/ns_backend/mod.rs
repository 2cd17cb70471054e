//! The namespace on the backend: images of the whole namespace, the head naming the current
//! one, and the inode high-water mark, so that a gateway whose data directory is lost comes
//! back from the backend alone (`restore.rs`).
//!
//! 1. At open, the head is read (its ETag kept). Its high-water mark is raised to a block
//!    ([`INO_BLOCK`]) above the namespace's next inode number when less than half a block is
//!    left, and the namespace hands out inode numbers only below the mark on the backend: a
//!    restore, even from an older image, never hands out a number used before.
//! 2. In each round of the file uploader (after its durable commit), when the namespace changed
//!    and `Namespace_Upload_Interval` passed since the last image, or at once when something
//!    waits for one: the garbage rows are read, then the image is exported from one read
//!    transaction and PUT under a key of its own (`namespace/image.<epoch>.<seq>`), then the
//!    head names it by a conditional write. A gateway that loses a conditional write of the head
//!    (another gateway took the backend over) uploads no image again and deletes nothing.
//! 3. Only after the head names the new image: the image it named before is deleted, the
//!    garbage rows read in step 2 may be deleted (no map of an image on the backend names
//!    them), and volume deletions waiting for an image begun after their unlink go on.
//! 4. The mark moves up in the same rounds, when the next inode number comes within half a
//!    block of it (the head rewritten naming the same image).
//! 5. And the head is rewritten at least every [`HEARTBEAT`] (its beat counter one up): a head
//!    that stays the same for longer belongs to a gateway that is gone.
//!
//! The volumes' data and metadata reach the backend through their own pipelines; an image
//! names a volume by its inode, and a restore opens it from its manifest.

mod head;
mod restore;

pub use self::restore::{restore, RestoreOptions, RestoreReport};

pub(crate) use self::head::{image_key_epoch, HEAD_KEY};
use self::head::{Head, ImageRef, HEAD_LEN};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::namespace::{diff, encode_image, encode_log, Header, Rows};
use crate::types::Ino;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_backend::ObjectStore;

/// A running gateway writes the head at least this often (every write counts one more beat):
/// a restore that sees it unchanged for [`TAKE_OVER_PROBE`] takes the owner for gone.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(4);

/// How long `strata restore --take-over` watches the head before it takes over: longer than
/// two heartbeats and a round.
pub const TAKE_OVER_PROBE: Duration = Duration::from_secs(10);

/// Inode numbers the high-water mark moves up by: at the rate of a thousand creates a second,
/// one head write every eight to seventeen minutes, and as long of creates with the backend
/// away.
pub(crate) const INO_BLOCK: u64 = 1 << 20;

/// A file extent's garbage row: (ino, extent index, generation).
pub(crate) type GarbageRow = (Ino, u64, u64);

/// Most garbage rows one image releases.
const GARBAGE_PER_IMAGE: usize = 1000;

/// The namespace's side of the backend.
#[derive(Debug)]
pub(crate) struct NsBackend {
    ns: Arc<Namespace>,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    epoch: u64,
    interval: Duration,
    st: Mutex<State>,
    /// Held by whoever writes the head (the uploader's round; the open): never across a
    /// read of `st` by others, so `strata status` never waits for the backend.
    writer: Mutex<()>,
    /// The number of the last image of this run.
    seq: AtomicU64,
    /// [`Namespace::changes`] covered by the image the head names, once one of this run does.
    /// And whether this gateway lost the head (then nothing waiting for an image may go on).
    uploaded: tokio::sync::watch::Sender<(Option<u64>, bool)>,
    /// Something waits for the next image: take it whatever the interval.
    wanted: AtomicBool,
    /// Volumes known to have a manifest on the backend.
    manifests: Mutex<std::collections::HashSet<Ino>>,
}

#[derive(Debug)]
struct State {
    /// The head as this gateway last read or wrote it, and its ETag.
    head: Option<(Head, String)>,
    /// [`Namespace::changes`] covered by the last image of this run.
    covered: Option<u64>,
    /// When the last image of this run was exported.
    last: Option<Instant>,
    /// Garbage rows no image on the backend names.
    deletable: Vec<GarbageRow>,
    /// The rows the head names (its image and logs), once this run wrote it: the base of the
    /// next log.
    rows: Option<Rows>,
    /// Bytes of the logs after the head's image: a new image once they pass half its size.
    log_bytes: u64,
    /// The last image left volumes out (nothing of them on the backend yet): take another
    /// once the interval passed, changed or not.
    incomplete: bool,
    /// Why this gateway writes the head no more (it lost a conditional write).
    fenced: Option<String>,
    /// When this gateway last wrote the head.
    written: Option<Instant>,
}

impl NsBackend {
    /// Step 1: reads the head and raises the high-water mark if needed.
    pub(crate) fn open(
        ns: Arc<Namespace>,
        store: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        epoch: u64,
        interval: Duration,
    ) -> Result<Arc<NsBackend>> {
        let head = rt.block_on(read_head(&*store))?;
        if let Some((h, _)) = &head {
            if h.fsid != ns.fsid() {
                return Err(Error::NotOwner(format!(
                    "{HEAD_KEY} on the backend names namespace {:016x}, not this one ({:016x}): \
                     another namespace wrote it",
                    h.fsid,
                    ns.fsid()
                )));
            }
        }
        let b = Arc::new(NsBackend {
            ns,
            store,
            rt,
            epoch,
            interval,
            st: Mutex::new(State {
                head,
                covered: None,
                last: None,
                deletable: Vec::new(),
                rows: None,
                log_bytes: 0,
                incomplete: false,
                fenced: None,
                written: None,
            }),
            writer: Mutex::new(()),
            seq: AtomicU64::new(0),
            uploaded: tokio::sync::watch::Sender::new((None, false)),
            wanted: AtomicBool::new(false),
            manifests: Mutex::new(std::collections::HashSet::new()),
        });
        {
            let _w = b.writer.lock();
            b.raise_mark()?;
        }
        Ok(b)
    }

    /// Step 4: the high-water mark a block above the next inode number, if less than half a
    /// block is left; the namespace's limit follows what the backend holds. The writer lock
    /// is held.
    fn raise_mark(&self) -> Result<()> {
        let next = self.ns.next_ino()?;
        let (mark, image) = self.current();
        if mark >= next.saturating_add(INO_BLOCK / 2) {
            self.ns.set_ino_limit(mark);
            return Ok(());
        }
        let new_mark = next.saturating_add(INO_BLOCK).max(mark);
        self.write_head(new_mark, image)?;
        self.ns.set_ino_limit(new_mark);
        Ok(())
    }

    /// The head's mark and image as last seen.
    fn current(&self) -> (u64, Option<ImageRef>) {
        let st = self.st.lock();
        let h = st.head.as_ref().map(|(h, _)| *h);
        (h.map_or(0, |h| h.ino_hwm), h.and_then(|h| h.image))
    }

    /// Writes the head (conditionally on the one last seen) with this gateway's identity. The
    /// writer lock is held.
    fn write_head(&self, ino_hwm: u64, image: Option<ImageRef>) -> Result<()> {
        let etag = {
            let st = self.st.lock();
            if let Some(why) = &st.fenced {
                return Err(Error::NotOwner(why.clone()));
            }
            st.head.as_ref().map(|(h, e)| (e.clone(), h.beat))
        };
        let beat = etag.as_ref().map_or(0, |(_, b)| b.wrapping_add(1));
        let etag = etag.map(|(e, _)| e);
        let head = Head {
            fsid: self.ns.fsid(),
            gateway: self.ns.gateway_id(),
            epoch: self.epoch,
            ino_hwm,
            image,
            beat,
        };
        let bytes = bytes::Bytes::from(head.encode());
        let r = self.rt.block_on(async {
            match &etag {
                Some(etag) => self.store.put_if_match(HEAD_KEY, bytes, etag).await,
                None => self.store.put_if_absent(HEAD_KEY, bytes).await,
            }
        });
        match r {
            Ok(meta) => {
                let mut st = self.st.lock();
                st.head = Some((head, meta.etag));
                st.written = Some(Instant::now());
                Ok(())
            }
            Err(e) if e.is_condition_failed() => {
                // Our own write may have landed with its answer lost (a store that retried it):
                // then the head is exactly the one sent.
                if let Ok(Some((now, etag))) = self.rt.block_on(read_head(&*self.store)) {
                    if now == head {
                        let mut st = self.st.lock();
                        st.head = Some((head, etag));
                        st.written = Some(Instant::now());
                        return Ok(());
                    }
                }
                let why = format!(
                    "{HEAD_KEY} on the backend changed under this gateway (epoch {}): another \
                     gateway took the backend over; this one changes, uploads and deletes \
                     nothing any more (stop it)",
                    self.epoch
                );
                tracing::error!("{why}");
                {
                    let mut st = self.st.lock();
                    st.fenced = Some(why.clone());
                    st.deletable.clear();
                }
                self.uploaded.send_modify(|v| v.1 = true);
                self.ns.depose(&why);
                Err(Error::NotOwner(why))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Steps 2 to 4, from the file uploader's round; `force`: an image now if anything changed
    /// since the last one (`strata sync --wait`).
    pub(crate) fn step(&self, force: bool) -> Result<()> {
        let _w = self.writer.lock();
        if let Some(why) = self.st.lock().fenced.clone() {
            return Err(Error::NotOwner(why));
        }
        self.raise_mark()?;
        let changes = self.ns.changes();
        // Garbage rows left and none released: rows read now go with the next upload (which
        // may be none at all, the namespace unchanged), so a backlog drains batch by batch.
        let idle_garbage = self.st.lock().deletable.is_empty() && !self.ns.garbage(1)?.is_empty();
        let due = {
            let st = self.st.lock();
            let changed = st.incomplete || idle_garbage || st.covered.is_none_or(|c| changes > c);
            let waited = st.last.is_none_or(|t| t.elapsed() >= self.interval);
            changed && (force || waited || self.wanted.load(Ordering::SeqCst))
        };
        if due {
            self.image()?;
        }
        // The heartbeat: a head unchanged for long belongs to a gateway that is gone.
        let beat_due = self
            .st
            .lock()
            .written
            .is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if beat_due {
            let (mark, image) = self.current();
            self.write_head(mark, image)?;
        }
        Ok(())
    }

    /// Steps 2 and 3: one image. The writer lock is held. A wish for an image made before it
    /// began is fulfilled by it; one made meanwhile waits for the next; a failed image leaves
    /// the wish for the next round.
    fn image(&self) -> Result<()> {
        let wanted = self.wanted.swap(false, Ordering::SeqCst);
        let r = self.take_image();
        if r.is_err() && wanted {
            self.wanted.store(true, Ordering::SeqCst);
        }
        r
    }

    fn take_image(&self) -> Result<()> {
        // Read before the rows: rows already garbage are named by no map in them.
        let garbage = self.ns.garbage(GARBAGE_PER_IMAGE)?;
        let taken = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let at = Instant::now();
        let (rows, info) = self
            .ns
            .export_rows(&mut |ino| self.volume_on_backend(ino))?;
        let h = Header {
            fsid: self.ns.fsid(),
            changes: info.changes,
        };
        let (mark, before) = self.current();
        // The rows the head names now, if this run's image (and logs) are what it names.
        let prev = self.st.lock().rows.take();
        let log_base = match (&prev, before) {
            (Some(p), Some(img)) if img.epoch == self.epoch && self.log_bytes() * 2 < img.len => {
                Some((p, img))
            }
            _ => None,
        };
        let (key, named, len, log_bytes) = match log_base {
            // A log: what changed since the image and the logs before it.
            Some((p, img)) => {
                let changed = diff(p, &rows);
                if changed.is_empty() {
                    // The head names exactly these rows already.
                    self.covered(rows, &info, at, garbage, None);
                    return Ok(());
                }
                let seq = img.log_last + 1;
                self.seq.fetch_max(seq, Ordering::SeqCst);
                let bytes = encode_log(h, img.seq, seq, &changed);
                let len = bytes.len() as u64;
                let key = head::log_key(self.epoch, seq);
                let named = ImageRef {
                    taken,
                    log_last: seq,
                    ..img
                };
                (key, named, len, Some(bytes))
            }
            None => {
                let seq = self
                    .seq
                    .fetch_add(1, Ordering::SeqCst)
                    .max(before.map_or(0, |b| b.log_last))
                    + 1;
                self.seq.fetch_max(seq, Ordering::SeqCst);
                let bytes = encode_image(h, &rows);
                let named = ImageRef {
                    epoch: self.epoch,
                    seq,
                    len: bytes.len() as u64,
                    taken,
                    crc: crc32c::crc32c(&bytes),
                    log_last: seq,
                };
                let len = named.len;
                let key = named.key();
                self.put(&key, bytes)
                    .inspect_err(|_| self.st.lock().rows = prev.clone())?;
                (key, named, len, None)
            }
        };
        if let Some(bytes) = log_bytes {
            self.put(&key, bytes)
                .inspect_err(|_| self.st.lock().rows = prev.clone())?;
        }
        if let Err(e) = self.write_head(mark, Some(named)) {
            let fenced = self.st.lock().fenced.is_some();
            if fenced {
                // Ours, never named: the new owner's collector would not know it.
                let _ = self.rt.block_on(self.store.delete(&key));
            } else {
                self.st.lock().rows = prev;
            }
            return Err(e);
        }
        let is_image = named.log_last == named.seq;
        self.covered(rows, &info, at, garbage, Some((is_image, len)));
        tracing::debug!(key, len, "namespace image or log uploaded");
        if let Some(old) = before.filter(|b| is_image && b.key() != key) {
            let mut keys = vec![old.key()];
            keys.extend(old.log_keys().into_iter().map(|(_, k)| k));
            if let Err(e) = self.rt.block_on(self.store.delete_many(&keys)) {
                tracing::warn!(key = old.key(), error = %e, "deleting a superseded namespace image and its logs failed; they stay on the backend");
            }
        }
        Ok(())
    }

    /// The head names `rows` (exported at `at`, `info`): what waits for them may go on.
    /// `upload`: whether it was an image or a log, and its length (none: nothing changed).
    fn covered(
        &self,
        rows: Rows,
        info: &crate::namespace::ImageInfo,
        at: Instant,
        garbage: Vec<GarbageRow>,
        upload: Option<(bool, u64)>,
    ) {
        {
            let mut st = self.st.lock();
            st.rows = Some(rows);
            match upload {
                Some((true, _)) => st.log_bytes = 0,
                Some((false, len)) => st.log_bytes += len,
                None => {}
            }
            st.covered = Some(info.changes);
            st.incomplete = info.omitted > 0;
            st.last = Some(at);
            st.deletable = garbage;
        }
        self.uploaded.send_replace((Some(info.changes), false));
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.rt
            .block_on(self.store.put(key, bytes::Bytes::from(bytes)))?;
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        self.st.lock().log_bytes
    }

    /// The keys of the image and logs the head names.
    pub(crate) fn named_keys(&self) -> Vec<String> {
        self.current().1.map_or_else(Vec::new, |i| {
            std::iter::once(i.key())
                .chain(i.log_keys().into_iter().map(|(_, k)| k))
                .collect()
        })
    }

    /// The backend (its root).
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A fenced write before a deletion outside the uploader's rounds (`strata fsck --repair`):
    /// the head rewritten as it is, conditionally. Refused once another gateway took over.
    pub(crate) fn fence(&self) -> Result<()> {
        let _w = self.writer.lock();
        let (mark, image) = self.current();
        self.write_head(mark, image)
    }

    /// Garbage rows no image on the backend names any more (taken: deleted by the caller).
    pub(crate) fn take_deletable(&self) -> Vec<GarbageRow> {
        let mut st = self.st.lock();
        if st.fenced.is_some() {
            // Deposed: the new owner's rows may name them again.
            st.deletable.clear();
        }
        std::mem::take(&mut st.deletable)
    }

    /// What an image must cover to show the namespace as it is now (every change that
    /// returned so far, the caller's included); asks for one at the next round.
    pub(crate) fn want_image(&self) -> u64 {
        self.wanted.store(true, Ordering::SeqCst);
        self.ns.changes()
    }

    /// Waits until the head names an image of this run covering `changes` (from
    /// [`NsBackend::want_image`]): nothing removed before that call is named on the backend.
    /// Returns false when this gateway lost the head instead (it must delete nothing).
    pub(crate) async fn wait_for_image(&self, changes: u64) -> bool {
        let mut rx = self.uploaded.subscribe();
        // An error means the sender is gone: the engine is closing (nothing may go either).
        let r = rx
            .wait_for(|(c, fenced)| *fenced || c.is_some_and(|c| c >= changes))
            .await;
        r.is_ok_and(|v| !v.1)
    }

    /// Gives back garbage rows taken by [`NsBackend::take_deletable`] and not deleted.
    pub(crate) fn give_back(&self, rows: Vec<GarbageRow>) {
        self.st.lock().deletable.extend(rows);
    }

    /// When the image on the backend was taken (seconds since the Unix epoch), and whether
    /// the namespace changed since: `(None, _)` when there is no image yet.
    pub(crate) fn image_state(&self) -> (Option<u64>, bool) {
        let changes = self.ns.changes();
        let st = self.st.lock();
        let taken = st.head.as_ref().and_then(|(h, _)| h.image).map(|i| i.taken);
        (
            taken,
            st.incomplete || st.covered.is_none_or(|c| changes > c),
        )
    }

    /// Whether volume `ino` has a manifest on the backend (once it has, it keeps one until it
    /// is deleted: remembered).
    fn volume_on_backend(&self, ino: Ino) -> Result<bool> {
        if self.manifests.lock().contains(&ino) {
            return Ok(true);
        }
        let key = format!(
            "{}{ino:016x}/{}",
            crate::registry::VOLUMES_PREFIX,
            crate::volume::manifest::MANIFEST_NAME
        );
        match self.rt.block_on(self.store.head(&key)) {
            Ok(_) => {
                self.manifests.lock().insert(ino);
                Ok(true)
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The head and its ETag, if there is one.
pub(crate) async fn read_head(store: &dyn ObjectStore) -> Result<Option<(Head, String)>> {
    match crate::owner::get_bounded(store, HEAD_KEY, HEAD_LEN as u64).await? {
        Some((bytes, etag)) => Ok(Some((Head::decode(&bytes)?, etag))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
