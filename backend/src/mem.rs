//! [`MemStore`]: an in-memory object store for tests.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    etag_of, validate_key, validate_prefix, Error, ListPage, ObjectMeta, ObjectStore, PutMode,
    Result,
};

/// An object store held in memory, with the same key rules, ETags and listing semantics as
/// [`crate::LocalStore`]. Meant for tests (fast, nothing survives the process); every write is
/// "durable" the moment it returns.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, (Bytes, String)>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Number of objects stored (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no object is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, String)>> {
        // A panic while holding this lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(
        &self,
        key: &str,
        data: Bytes,
        cond: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        let etag = etag_of(&data);
        let size = data.len() as u64;
        let mut objects = self.lock();
        if !cond(objects.get(key).map(|(_, e)| e.as_str())) {
            return Err(Error::ConditionFailed {
                key: key.to_string(),
            });
        }
        objects.insert(key.to_string(), (data, etag.clone()));
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag,
        })
    }

    fn meta(key: &str, data: &Bytes, etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag: etag.to_string(),
        }
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        match mode {
            PutMode::Overwrite => self.store(key, data, |_| true),
            PutMode::Create => self.store(key, data, |cur| cur.is_none()),
            PutMode::Update { etag } => self.store(key, data, |cur| cur == Some(etag.as_str())),
        }
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        validate_key(key)?;
        let objects = self.lock();
        let (data, etag) = objects.get(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        Ok((data.clone(), MemStore::meta(key, data, etag)))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let (data, _) = self.get(key).await?;
        let len = data.len() as u64;
        let end = range.end.min(len);
        let start = range.start.min(end);
        Ok(data.slice(start as usize..end as usize))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        Ok(self.get(key).await?.1)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let max = max.max(1);
        let objects = self.lock();
        let start = match token {
            Some(t) if t >= prefix => Bound::Excluded(t.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut iter = objects
            .range::<String, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (d, e))| MemStore::meta(k, d, e));
        let objects: Vec<ObjectMeta> = iter.by_ref().take(max).collect();
        let next = match iter.next() {
            Some(_) => objects.last().map(|m| m.key.clone()),
            None => None,
        };
        Ok(ListPage { objects, next })
    }
}
