//! [`LocalStore`]: objects as files under a directory.
//!
//! Key `a/b/c` is the file `<root>/a/b/c`. Every put writes a temp file in `<root>/.strata-tmp`,
//! fsyncs it, renames it over the final name and fsyncs the final name's directory (and the
//! parents of directories it had to create), so a crash leaves either the old object or the new
//! one under the final name, never a partial one. Temp files left by a crash are removed at
//! [`LocalStore::open`]. One `LocalStore` per root at a time (opening wipes the temp dir).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    etag_of, validate_key, validate_prefix, Error, ListPage, ObjectMeta, ObjectStore, Result,
};

/// Name of the private temp directory under the root; reserved as a first key segment.
pub(crate) const TMP_DIR: &str = ".strata-tmp";

/// Number of key-hashed locks that make conditional puts atomic against other writes of the
/// same key without one global lock.
const LOCK_SHARDS: usize = 64;

/// Numbers temp files.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// An object store on a local directory. ETags are the hex MD5 of the content (as S3's for a
/// plain PUT); `head` and `list` read each object to compute it, so they cost O(object size).
/// Writers to one key are serialised by a key-hashed lock held only around the condition check
/// and the rename, so conditional puts are atomic within this process.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    locks: Vec<Mutex<()>>,
    /// Test fail-point: when set, a put stops after its temp file is written and fsynced, as if
    /// the process had died before the rename.
    #[cfg(test)]
    fail_before_rename: std::sync::atomic::AtomicBool,
}

/// The condition of a put.
enum Cond {
    None,
    Absent,
    Match(String),
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
                #[cfg(test)]
                fail_before_rename: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
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

    async fn put_cond(&self, key: &str, data: Bytes, cond: Cond) -> Result<ObjectMeta> {
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

    fn put(&self, key: &str, data: &[u8], cond: Cond) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let etag = etag_of(data);
        // Unique in this process even across stores on one root (the counter is global).
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{}.{seq}", std::process::id()));
        if let Err(e) = self.put_via(key, &path, &tmp, data, cond) {
            #[cfg(test)]
            if self.fail_before_rename.load(Ordering::SeqCst) {
                // Simulated crash: leave the temp file behind for `open` to clean.
                return Err(e);
            }
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag,
        })
    }

    fn put_via(&self, key: &str, path: &Path, tmp: &Path, data: &[u8], cond: Cond) -> Result<()> {
        let io = |e| Error::from_io(key, e);
        {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(tmp)
                .map_err(|e| io_err(key, e))?;
            f.write_all(data).map_err(|e| io_err(key, e))?;
            f.sync_all().map_err(|e| io_err(key, e))?;
        }
        #[cfg(test)]
        if self.fail_before_rename.load(Ordering::SeqCst) {
            return Err(Error::Io {
                key: key.to_string(),
                source: std::io::Error::other("fail-point: before rename"),
            });
        }
        let _guard = self.lock(key);
        match cond {
            Cond::None => {}
            Cond::Absent => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(Error::ConditionFailed {
                        key: key.to_string(),
                    });
                }
            }
            Cond::Match(want) => match fs::read(path) {
                Ok(cur) if etag_of(&cur) == want => {}
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
        fsync_dir(parent).map_err(|e| io_err(key, e))
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
        match fs::read(&path) {
            Ok(data) => {
                let meta = ObjectMeta {
                    key: key.to_string(),
                    size: data.len() as u64,
                    etag: etag_of(&data),
                };
                Ok((Bytes::from(data), meta))
            }
            Err(e) if is_missing(&e) => Err(Error::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(Error::from_io(key, e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let missing = |e: std::io::Error| {
            if is_missing(&e) {
                Error::NotFound {
                    key: key.to_string(),
                }
            } else {
                Error::from_io(key, e)
            }
        };
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
        let mut keys = Vec::new();
        self.walk(base, prefix, token, &mut keys)?;
        keys.sort();
        let more = keys.len() > max;
        keys.truncate(max);
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            // Deleted since the walk: skip it, as a listing is not a snapshot.
            match fs::read(self.root.join(&key)) {
                Ok(data) => objects.push(ObjectMeta {
                    size: data.len() as u64,
                    etag: etag_of(&data),
                    key,
                }),
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
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectMeta> {
        self.put_cond(key, data, Cond::None).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ObjectMeta> {
        self.put_cond(key, data, Cond::Absent).await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<ObjectMeta> {
        self.put_cond(key, data, Cond::Match(etag.to_string()))
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
        Ok(self.get(key).await?.1)
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
