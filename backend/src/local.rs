//! [`LocalStore`]: objects as files under a directory.
//!
//! Key `a/b/c` is the file `<root>/a/b/c`. Every put writes a temp file in `<root>/.strata-tmp`,
//! fsyncs it, renames it over the final name and fsyncs the final name's directory (and the
//! parents of directories it had to create), so a crash leaves either the old object or the new
//! one under the final name, never a partial one. Temp files left by a crash are removed at
//! [`LocalStore::open`]. One `LocalStore` per root at a time (opening wipes the temp dir).
//!
//! [`ObjectStore::put_file`] hard-links the caller's file as the temp file instead of copying
//! its bytes (the caller promises the file is durable and never modified in place), then
//! installs it the same way; where a link is impossible (another file system, a file system
//! without hard links) it copies.
//!
//! # ETags
//!
//! An ETag is a version tag made from the object file's metadata, never from its content, so
//! `head` and `list` cost one `stat` per object and a put hashes nothing: 56 lowercase hex
//! digits, the inode number (16), the size (16), the mtime's seconds (16, two's complement) and
//! its nanoseconds (8). Why that changes whenever the object is replaced:
//! - every put writes a NEW temp file and renames it over the old one, so while both exist they
//!   have different inodes: a replacement always changes the inode number;
//! - an inode number can come back later, once the replaced file is freed (ext4 reuses a freed
//!   inode at once), and sizes often repeat; so every put also sets its temp file's mtime to a
//!   process-wide strictly increasing nanosecond time (`unique_mtime`), and two versions of a
//!   key written by this process never share an mtime (on a file system that keeps nanosecond
//!   mtimes: ext4 with large inodes, xfs, btrfs, tmpfs);
//! - rename keeps the inode and the mtime, so the ETag a put returns (from `fstat` of its temp
//!   file) is the one `get` (`fstat` of the file it opened), `head` and `list` (`stat`) see.
//!
//! Copying the store's directory elsewhere (new inodes) changes every ETag without changing
//! any content: a conditional put then fails safe (`ConditionFailed`), it never overwrites.

use std::fs::{self, File, FileTimes, Metadata};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    validate_key, validate_prefix, Error, ListPage, ObjectMeta, ObjectStore, PutMode, Result,
};

/// Name of the private temp directory under the root; reserved as a first key segment.
pub(crate) const TMP_DIR: &str = ".strata-tmp";

/// Number of key-hashed locks that make conditional puts atomic against other writes of the
/// same key without one global lock.
const LOCK_SHARDS: usize = 64;

/// Numbers temp files.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The last mtime (nanoseconds since the epoch) [`unique_mtime`] handed out.
static LAST_MTIME_NS: AtomicI64 = AtomicI64::new(0);

/// A modification time for a new object file: the current time, or 1 ns after the last one
/// handed out in this process if the clock has not moved past it (coarse or stepped back), so
/// no two puts of this process share an mtime (see the module doc, "ETags").
pub(crate) fn unique_mtime() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let prev = LAST_MTIME_NS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now); // the closure never returns None
    let ns = now.max(prev.saturating_add(1));
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The ETag of an object file from its metadata (see the module doc, "ETags").
fn etag_of_meta(m: &Metadata) -> String {
    format!(
        "{:016x}{:016x}{:016x}{:08x}",
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u32
    )
}

/// An object store on a local directory. ETags are version tags from each file's metadata
/// (inode, size, mtime; see the module doc), so `head` and `list` never read content. Writers
/// to one key are serialised by a key-hashed lock held only around the condition check and the
/// rename, so conditional puts are atomic within this process.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    locks: Vec<Mutex<()>>,
    /// Objects stored by linking the caller's file ([`ObjectStore::put_file`]).
    linked: AtomicU64,
    /// Test fail-point: when set, a put stops after its temp file is written and fsynced, as if
    /// the process had died before the rename.
    #[cfg(test)]
    fail_before_rename: std::sync::atomic::AtomicBool,
}

impl LocalStore {
    /// Opens (creating it if needed) a store on directory `root` and removes temp files left
    /// by an earlier crash.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root: PathBuf = root.into();
        let io = |e| Error::from_io(&root.display().to_string(), e);
        fs::create_dir_all(&root).map_err(io)?;
        let tmp = root.join(TMP_DIR);
        match fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        fs::create_dir(&tmp).map_err(io)?;
        fsync_dir(&root).map_err(io)?;
        Ok(LocalStore {
            inner: Arc::new(Inner {
                root,
                tmp,
                locks: (0..LOCK_SHARDS).map(|_| Mutex::new(())).collect(),
                linked: AtomicU64::new(0),
                #[cfg(test)]
                fail_before_rename: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Objects stored so far by linking the caller's file instead of copying it.
    pub fn linked_puts(&self) -> u64 {
        self.inner.linked.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn set_fail_before_rename(&self, on: bool) {
        self.inner.fail_before_rename.store(on, Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }

    async fn blocking<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) => Err(Error::Io {
                key: key.to_string(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    async fn put_cond(&self, key: &str, data: Bytes, cond: PutMode) -> Result<ObjectMeta> {
        let key = key.to_string();
        self.blocking(&key.clone(), move |inner| inner.put(&key, &data, cond))
            .await
    }
}

impl Inner {
    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        if key.split('/').next() == Some(TMP_DIR) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: format!("{TMP_DIR} is reserved"),
            });
        }
        Ok(self.root.join(key))
    }

    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let shard = (h.finish() % LOCK_SHARDS as u64) as usize;
        // The guarded data is `()`: a poisoned shard is as good as a healthy one.
        self.locks[shard].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh temp file name: unique in this process even across stores on one root (the
    /// counter is global).
    fn tmp_name(&self) -> PathBuf {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}.{seq}", std::process::id()))
    }

    /// [`ObjectStore::put_file`]: links `src` as the temp file (no byte is written), stamps
    /// it with a unique mtime and installs it; copies when it cannot link.
    fn put_linked(&self, key: &str, src: &Path) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let tmp = self.tmp_name();
        if let Err(e) = fs::hard_link(src, &tmp) {
            let cannot_link = matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EPERM | libc::EMLINK | libc::EOPNOTSUPP)
            );
            if !cannot_link {
                return Err(missing_or_io(key, e));
            }
            let data = fs::read(src).map_err(|e| missing_or_io(key, e))?;
            return self.put(key, &data, PutMode::Overwrite);
        }
        let stamped = (|| {
            let f = File::options().write(true).open(&tmp)?;
            f.set_times(FileTimes::new().set_modified(unique_mtime()))?;
            let meta = f.metadata()?;
            // The link count and the mtime; the data was durable already.
            f.sync_all()?;
            Ok::<_, std::io::Error>(meta)
        })();
        let installed = stamped.map_err(|e| io_err(key, e)).and_then(|meta| {
            self.install(key, &path, &tmp, PutMode::Overwrite)
                .map(|()| meta)
        });
        match installed {
            Ok(meta) => {
                self.linked.fetch_add(1, Ordering::Relaxed);
                Ok(ObjectMeta {
                    key: key.to_string(),
                    size: meta.size(),
                    etag: etag_of_meta(&meta),
                })
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn put(&self, key: &str, data: &[u8], cond: PutMode) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let tmp = self.tmp_name();
        match self.put_via(key, &path, &tmp, data, cond) {
            Ok(meta) => Ok(ObjectMeta {
                key: key.to_string(),
                size: meta.size(),
                etag: etag_of_meta(&meta),
            }),
            Err(e) => {
                #[cfg(test)]
                if self.fail_before_rename.load(Ordering::SeqCst) {
                    // Simulated crash: leave the temp file behind for `open` to clean.
                    return Err(e);
                }
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes the temp file, checks `cond` and renames; returns the metadata of the file as
    /// stored (rename keeps inode and mtime, so it is also the final name's).
    fn put_via(
        &self,
        key: &str,
        path: &Path,
        tmp: &Path,
        data: &[u8],
        cond: PutMode,
    ) -> Result<Metadata> {
        let meta = {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(tmp)
                .map_err(|e| io_err(key, e))?;
            f.write_all(data).map_err(|e| io_err(key, e))?;
            // After the last write (which sets the mtime) and before the fsync (so it is durable).
            f.set_times(FileTimes::new().set_modified(unique_mtime()))
                .map_err(|e| io_err(key, e))?;
            let meta = f.metadata().map_err(|e| io_err(key, e))?;
            f.sync_all().map_err(|e| io_err(key, e))?;
            meta
        };
        #[cfg(test)]
        if self.fail_before_rename.load(Ordering::SeqCst) {
            return Err(Error::Io {
                key: key.to_string(),
                source: std::io::Error::other("fail-point: before rename"),
            });
        }
        self.install(key, path, tmp, cond)?;
        Ok(meta)
    }

    /// Checks `cond` and renames the durable temp file `tmp` over `path`, durably.
    fn install(&self, key: &str, path: &Path, tmp: &Path, cond: PutMode) -> Result<()> {
        let io = |e| Error::from_io(key, e);
        let _guard = self.lock(key);
        match cond {
            PutMode::Overwrite => {}
            PutMode::Create => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(Error::ConditionFailed {
                        key: key.to_string(),
                    });
                }
            }
            PutMode::Update { etag: want } => match fs::metadata(path) {
                Ok(cur) if cur.is_file() && etag_of_meta(&cur) == want => {}
                Ok(_) => {
                    return Err(Error::ConditionFailed {
                        key: key.to_string(),
                    })
                }
                Err(e) if is_missing(&e) => {
                    return Err(Error::ConditionFailed {
                        key: key.to_string(),
                    })
                }
                Err(e) => return Err(io(e)),
            },
        }
        let parent = path.parent().unwrap_or(&self.root);
        // A concurrent delete may remove an emptied parent between mkdir and rename: retry.
        let mut attempts = 0;
        loop {
            self.make_parents(key, parent)?;
            match fs::rename(tmp, path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 8 => attempts += 1,
                Err(e) => return Err(conflict_or(key, e)),
            }
        }
        fsync_dir(parent).map_err(|e| io_err(key, e))?;
        Ok(())
    }

    /// Creates the directories between the root and `dir`, fsyncing the parent of each one
    /// created so the new entries are durable.
    fn make_parents(&self, key: &str, dir: &Path) -> Result<()> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut cur = self.root.clone();
        for comp in rel.components() {
            let next = cur.join(comp);
            match fs::create_dir(&next) {
                Ok(()) => fsync_dir(&cur).map_err(|e| io_err(key, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(conflict_or(key, e)),
            }
            cur = next;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        let path = self.path(key)?;
        let missing = |e: std::io::Error| missing_or_io(key, e);
        let mut f = File::open(&path).map_err(missing)?;
        // The ETag of the file opened: a replacement renamed over it meanwhile does not change
        // what this handle reads (nor its inode, size or mtime).
        let meta = f.metadata().map_err(missing)?;
        if !meta.is_file() {
            return Err(Error::NotFound {
                key: key.to_string(),
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(meta.size()).unwrap_or(0));
        f.read_to_end(&mut data).map_err(missing)?;
        Ok((
            Bytes::from(data),
            ObjectMeta {
                key: key.to_string(),
                size: meta.size(),
                etag: etag_of_meta(&meta),
            },
        ))
    }

    /// Metadata of an object from one `stat`: no content is read.
    fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(ObjectMeta {
                key: key.to_string(),
                size: m.size(),
                etag: etag_of_meta(&m),
            }),
            // A directory is a prefix of keys, not an object.
            Ok(_) => Err(Error::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(missing_or_io(key, e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let missing = |e: std::io::Error| missing_or_io(key, e);
        let mut f = File::open(&path).map_err(missing)?;
        let len = f.metadata().map_err(missing)?.len();
        let end = range.end.min(len);
        let start = range.start.min(end);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(missing)?;
        // The object may be replaced meanwhile (rename keeps our inode): read what we opened.
        f.read_exact(&mut buf).map_err(missing)?;
        Ok(Bytes::from(buf))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        {
            let _guard = self.lock(key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(Error::from_io(key, e)),
            }
            fsync_dir(&parent).map_err(|e| io_err(key, e))?;
        }
        // Remove emptied directories up to the root (best effort: a concurrent put may fill one).
        let mut dir = parent;
        while dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(&dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(p) => {
                    let _ = fsync_dir(p);
                    dir = p.to_path_buf();
                }
                None => break,
            }
        }
        Ok(())
    }

    fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let max = max.max(1);
        // The directory holding every key with this prefix: the prefix up to its last '/'.
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        // Known cost: every page walks (and sorts) every key under the prefix after the token,
        // not just `max` of them: O(keys) directory reads per page, O(keys²/max) for a whole
        // listing. Fine for volumes of thousands of SCOs; a sorted, bounded walk would fix it.
        let mut keys = Vec::new();
        self.walk(base, prefix, token, &mut keys)?;
        keys.sort();
        let more = keys.len() > max;
        keys.truncate(max);
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            // One stat per key, no content read. Deleted (or turned into a directory) since the
            // walk: skip it, as a listing is not a snapshot.
            match fs::metadata(self.root.join(&key)) {
                Ok(m) if m.is_file() => objects.push(ObjectMeta {
                    size: m.size(),
                    etag: etag_of_meta(&m),
                    key,
                }),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(Error::from_io(&key, e)),
            }
        }
        let next = if more {
            objects.last().map(|m| m.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    /// Collects keys under directory `dir` (a key prefix ending in '/' or empty) that start
    /// with `prefix` and sort after `token`, skipping subtrees that cannot hold such keys.
    fn walk(
        &self,
        dir: &str,
        prefix: &str,
        token: Option<&str>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let entries = match fs::read_dir(self.root.join(dir)) {
            Ok(e) => e,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(Error::from_io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::from_io(dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not a key this store wrote
            };
            if dir.is_empty() && name == TMP_DIR {
                continue;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                let sub = format!("{dir}{name}/");
                let may_match = sub.starts_with(prefix) || prefix.starts_with(&sub);
                // Every key in `sub` starts with `sub`; if `sub` sorts before the token and is
                // not a prefix of it, all of them do.
                let all_before = token.is_some_and(|t| sub.as_str() < t && !t.starts_with(&sub));
                if may_match && !all_before {
                    self.walk(&sub, prefix, token, out)?;
                }
            } else if ft.is_file() {
                let key = format!("{dir}{name}");
                if key.starts_with(prefix) && token.is_none_or(|t| key.as_str() > t) {
                    out.push(key);
                }
            }
        }
        Ok(())
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// ENOENT/ENOTDIR/EISDIR on a read: the object is not there (a directory is not an object).
fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::EISDIR))
}

/// A read's error: [`Error::NotFound`] if the object is not there (see [`is_missing`]).
fn missing_or_io(key: &str, e: std::io::Error) -> Error {
    if is_missing(&e) {
        Error::NotFound {
            key: key.to_string(),
        }
    } else {
        Error::from_io(key, e)
    }
}

/// An I/O error while writing: never "not found" (that would mislead callers).
fn io_err(key: &str, e: std::io::Error) -> Error {
    match Error::from_io(key, e) {
        Error::NotFound { key } => Error::Io {
            key,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "path vanished during a write",
            ),
        },
        other => other,
    }
}

/// A write that hit a file where a directory is needed or the reverse: the key conflicts with
/// an existing key (`a` and `a/b` cannot both exist in a directory store).
fn conflict_or(key: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOTDIR) | Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
            Error::InvalidKey {
                key: key.to_string(),
                reason: "conflicts with an existing key that is a directory or a prefix of it"
                    .to_string(),
            }
        }
        _ => io_err(key, e),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.put_cond(key, data, mode).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectMeta> {
        let (k, src) = (key.to_string(), path.to_path_buf());
        self.blocking(key, move |inner| inner.put_linked(&k, &src))
            .await
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        let k = key.to_string();
        self.blocking(key, move |inner| inner.get(&k)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let k = key.to_string();
        self.blocking(key, move |inner| inner.get_range(&k, range))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let k = key.to_string();
        self.blocking(key, move |inner| inner.head(&k)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let k = key.to_string();
        self.blocking(key, move |inner| inner.delete(&k)).await
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        let p = prefix.to_string();
        let t = token.map(str::to_string);
        self.blocking(prefix, move |inner| inner.list(&p, t.as_deref(), max))
            .await
    }
}
