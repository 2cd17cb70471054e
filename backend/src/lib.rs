//! Object stores for Strata.
//!
//! A narrow async [`ObjectStore`] trait (in the spirit of Apache Arrow's `object_store`) with
//! typed errors and one put with a [`PutMode`]; [`LocalStore`], a store on a local directory;
//! [`S3Store`], a bucket of any S3-compatible store; one [`RetryPolicy`]; the conditional-write
//! [`probe`]; and test wrappers ([`Namespaced`], [`FaultyStore`], [`HookedStore`], [`MemStore`]). Namespaces are key prefixes.
//! This crate knows nothing of files or volumes. On-disk layout and ETag formats: `FORMATS.md`
//! next to this crate's `Cargo.toml`.

#![warn(missing_docs)]

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod faulty;
mod hooked;
mod join;
mod local;
mod mem;
mod namespaced;
pub mod probe;
mod retry;
pub mod s3;
pub use error::Error;
pub use faulty::FaultyStore;
pub use hooked::{Call, Hook, HookedStore};
pub use local::LocalStore;
pub use mem::MemStore;
pub use namespaced::Namespaced;
pub use retry::RetryPolicy;
pub use s3::{CredentialsSource, S3Config, S3Credentials, S3Store, PUT_ID_META};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// `n` as a `usize` (saturating; this crate runs on 64-bit targets).
pub(crate) fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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

/// How a put treats an object already under its key (arrow-rs `object_store`'s `PutMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Create only: fail with [`Error::ConditionFailed`] if an object exists (S3
    /// `If-None-Match: *`).
    Create,
    /// Replace only the version with this ETag: fail with [`Error::ConditionFailed`] if the
    /// object changed or does not exist (S3 `If-Match`).
    Update {
        /// The ETag the current object must have.
        etag: String,
    },
}

/// An object store. All writes are atomic: a reader sees the old or the new object, never a
/// mix, and a crash never leaves a partly written object under its final name.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key` as `mode` says: replacing any object there
    /// ([`PutMode::Overwrite`]), only if none exists ([`PutMode::Create`]), or only if the
    /// current object's ETag is the given one ([`PutMode::Update`]; a missing object fails
    /// too). A condition that does not hold is [`Error::ConditionFailed`] and changes nothing.
    /// Durable when it returns. The one put every store implements.
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta>;
    /// [`ObjectStore::put_opts`] with [`PutMode::Overwrite`].
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectMeta> {
        self.put_opts(key, data, PutMode::Overwrite).await
    }
    /// [`ObjectStore::put_opts`] with [`PutMode::Create`].
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ObjectMeta> {
        self.put_opts(key, data, PutMode::Create).await
    }
    /// [`ObjectStore::put_opts`] with [`PutMode::Update`].
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<ObjectMeta> {
        let mode = PutMode::Update {
            etag: etag.to_string(),
        };
        self.put_opts(key, data, mode).await
    }
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
    /// Deletes every key of `keys` (missing ones succeed); on an error some may be deleted
    /// and others not. The default deletes one by one; a store with batched deletes overrides
    /// it (S3: DeleteObjects, 1000 keys a request).
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for k in keys {
            self.delete(k).await?;
        }
        Ok(())
    }
    /// Lists keys starting with `prefix`, at most `max` per page (`0` counts as 1), in ascending
    /// key order, resuming after `token` (the last key of the previous page, as returned in
    /// [`ListPage::next`]). Recursive: keys in "sub-directories" are listed too.
    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage>;
}

#[cfg(test)]
mod tests;
