//! Object stores for Strata.
//!
//! A narrow async [`ObjectStore`] trait (in the spirit of Apache Arrow's `object_store`) with
//! typed errors, and [`LocalStore`], a store on a local directory. Namespaces are key prefixes.
//! This crate knows nothing of files or volumes.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

mod local;
pub use local::LocalStore;

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

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Opaque version tag; changes whenever the object is replaced.
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
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)>;
    /// Reads `range` of an object; the range is clipped at the object's end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Metadata of an object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Lists keys starting with `prefix`, at most `max` per page, resuming at `token`.
    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage>;
}
