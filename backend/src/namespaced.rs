//! [`Namespaced`]: a store seen through a key prefix ("namespaces are prefixes").

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    validate_key, validate_prefix, Error, ListPage, ObjectMeta, ObjectStore, PutMode, Result,
};

/// An [`ObjectStore`] that prepends a fixed prefix (e.g. `files/`) to every key of an inner
/// store and strips it again from listed keys, page tokens and returned metadata. Keys given to
/// it are validated on their own, so a caller cannot escape its namespace with `..`.
#[derive(Debug, Clone)]
pub struct Namespaced {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Namespaced {
    /// Wraps `inner` under `prefix`. The prefix must be a valid listing prefix; normally it is
    /// one or more segments ending in `/` (e.g. `files/` or `volumes/7/`).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: impl Into<String>) -> Result<Namespaced> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        Ok(Namespaced { inner, prefix })
    }

    /// The prefix added to every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{}", self.prefix, key))
    }

    fn strip(&self, key: String) -> Result<String> {
        match key.strip_prefix(&self.prefix) {
            Some(k) => Ok(k.to_string()),
            None => Err(Error::Io {
                key: key.clone(),
                source: std::io::Error::other("inner store returned a key outside the namespace"),
            }),
        }
    }

    fn strip_meta(&self, mut meta: ObjectMeta) -> Result<ObjectMeta> {
        meta.key = self.strip(meta.key)?;
        Ok(meta)
    }
}

#[async_trait]
impl ObjectStore for Namespaced {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let meta = self.inner.put_opts(&self.full(key)?, data, mode).await?;
        self.strip_meta(meta)
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<ObjectMeta> {
        let meta = self.inner.put_file(&self.full(key)?, path).await?;
        self.strip_meta(meta)
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        let (data, meta) = self.inner.get(&self.full(key)?).await?;
        Ok((data, self.strip_meta(meta)?))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(&self.full(key)?, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let meta = self.inner.head(&self.full(key)?).await?;
        self.strip_meta(meta)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.full(key)?).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let full = keys
            .iter()
            .map(|k| self.full(k))
            .collect::<Result<Vec<_>>>()?;
        self.inner.delete_many(&full).await
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let full_prefix = format!("{}{}", self.prefix, prefix);
        let full_token = token.map(|t| format!("{}{}", self.prefix, t));
        let page = self
            .inner
            .list(&full_prefix, full_token.as_deref(), max)
            .await?;
        let objects = page
            .objects
            .into_iter()
            .map(|m| self.strip_meta(m))
            .collect::<Result<Vec<_>>>()?;
        let next = page.next.map(|t| self.strip(t)).transpose()?;
        Ok(ListPage { objects, next })
    }
}
