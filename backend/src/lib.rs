//! Object stores for Strata.
//!
//! A narrow async [`ObjectStore`] trait (in the spirit of Apache Arrow's `object_store`) with
//! typed errors, and [`LocalStore`], a store on a local directory. Namespaces are key prefixes.
//! This crate knows nothing of files or volumes. On-disk layout and ETag formats: `FORMATS.md`
//! next to this crate's `Cargo.toml`.

#![warn(missing_docs)]

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;

mod faulty;
mod hooked;
mod local;
mod mem;
mod namespaced;
pub use faulty::FaultyStore;
pub use hooked::{Call, Hook, HookedStore};
pub use local::LocalStore;
pub use mem::MemStore;
pub use namespaced::Namespaced;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of an object store. Callers tell "not found" from "condition failed" from "I/O".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object under that key.
    #[error("object not found: {key}")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A conditional put's condition did not hold (object exists / ETag differs).
    #[error("condition failed for {key}")]
    ConditionFailed {
        /// The key written.
        key: String,
    },
    /// The key is not acceptable to this store.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store has no room.
    #[error("no space left on the backend")]
    NoSpace,
    /// I/O failed (possibly transient).
    #[error("I/O error on {key}: {source}")]
    Io {
        /// The key concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True for [`Error::ConditionFailed`].
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Error::ConditionFailed { .. })
    }

    /// Maps an I/O error on `key` to the typed error: ENOSPC/EDQUOT become [`Error::NoSpace`],
    /// ENOENT becomes [`Error::NotFound`], ENAMETOOLONG becomes [`Error::InvalidKey`].
    pub fn from_io(key: &str, source: std::io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
            Some(libc::ENAMETOOLONG) => Error::InvalidKey {
                key: key.to_string(),
                reason: "a segment is too long for the store".to_string(),
            },
            _ if source.kind() == std::io::ErrorKind::NotFound => Error::NotFound {
                key: key.to_string(),
            },
            _ => Error::Io {
                key: key.to_string(),
                source,
            },
        }
    }
}

/// Checks that `key` is acceptable to every store of this crate: not empty, no leading `/`, no
/// empty, `.` or `..` segment (so no trailing `/` either), no NUL byte.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.contains('\0') {
        return bad("NUL byte in key");
    }
    if key.starts_with('/') {
        return bad("leading '/'");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("'.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: like a key, except that it may be empty and its last segment may be
/// empty or partial (a prefix is a string prefix of keys, not only a directory).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidKey {
            key: prefix.to_string(),
            reason: reason.to_string(),
        })
    };
    if prefix.contains('\0') {
        return bad("NUL byte in prefix");
    }
    if prefix.starts_with('/') {
        return bad("leading '/'");
    }
    // Every segment but the last names a directory and must be a valid segment.
    let mut segments: Vec<&str> = prefix.split('/').collect();
    segments.pop();
    for segment in segments {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("'.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// The lowercase hex MD5 of `data`, as S3 computes the ETag of a plain PUT: [`MemStore`]'s
/// ETag. Not [`LocalStore`]'s, whose ETags come from file metadata (never compare an ETag
/// with this unless the store is known to be a [`MemStore`]).
pub fn etag_of(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex(&Md5::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Opaque version tag; changes whenever the object's content changes, and compared only for
    /// equality with ETags of the same store. [`LocalStore`]: from the file's metadata, new on
    /// every put even of equal content; [`MemStore`]: the content's MD5 (as S3's single-part
    /// PUT), so equal content keeps it.
    pub etag: String,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Objects in ascending key order.
    pub objects: Vec<ObjectMeta>,
    /// Token to pass to get the next page; `None` after the last page.
    pub next: Option<String>,
}

/// An object store. All writes are atomic: a reader sees the old or the new object, never a
/// mix, and a crash never leaves a partly written object under its final name.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key`, replacing any object there. Durable when it returns.
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectMeta>;
    /// Stores `data` only if no object exists under `key`; else `ConditionFailed`.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ObjectMeta>;
    /// Replaces the object only if its current etag equals `etag`; else `ConditionFailed`
    /// (also when it does not exist).
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<ObjectMeta>;
    /// Stores the contents of the local file `path` under `key`, replacing any object there;
    /// durable when it returns. The file must be durable already, and never be modified in
    /// place afterwards (its owner may delete it, or replace it by a rename): a store may keep
    /// the file itself as the object, as [`LocalStore`] does by hard-linking it, so that its
    /// bytes are not written a second time. The default reads it and [`ObjectStore::put`]s it.
    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectMeta> {
        let p = path.to_path_buf();
        let data = tokio::task::spawn_blocking(move || std::fs::read(&p))
            .await
            .map_err(|e| Error::Io {
                key: key.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|e| Error::Io {
                key: key.to_string(),
                source: e,
            })?;
        self.put(key, Bytes::from(data)).await
    }
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)>;
    /// Reads `range` of an object; the range is clipped at the object's end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Metadata of an object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Lists keys starting with `prefix`, at most `max` per page (`0` counts as 1), in ascending
    /// key order, resuming after `token` (the last key of the previous page, as returned in
    /// [`ListPage::next`]). Recursive: keys in "sub-directories" are listed too.
    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage>;
}

#[cfg(test)]
mod tests;
