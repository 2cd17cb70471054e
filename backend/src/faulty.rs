//! [`FaultyStore`]: a wrapper that can be switched to fail, for "backend unreachable" tests.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, ListPage, ObjectMeta, ObjectStore, PutMode, Result};

/// An [`ObjectStore`] that forwards to an inner store until [`FaultyStore::set_failing`] turns
/// it off; from then on every call fails with [`Error::Io`] (an "injected fault") without
/// reaching the inner store, until it is turned back on. For tests.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    failing: AtomicBool,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl FaultyStore {
    /// Wraps `inner`, initially healthy.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Makes every following call fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Whether calls fail now.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Calls made so far (failed ones included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls failed by injection so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn check(&self, key: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.is_failing() {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Io {
                key: key.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "injected fault: backend unreachable",
                ),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.check(key)?;
        self.inner.put_opts(key, data, mode).await
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<ObjectMeta> {
        self.check(key)?;
        self.inner.put_file(key, path).await
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        self.check(key)?;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.check(key)?;
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.check(key)?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check(key)?;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        self.check(prefix)?;
        self.inner.list(prefix, token, max).await
    }
}
