//! [`HookedStore`]: a wrapper that runs a [`Hook`] before every call reaches the inner store
//! (and after each put and delete), so a test can count calls, fail some of them, hold them
//! back or crash right after one, without writing a whole [`ObjectStore`] implementation
//! each time.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ListPage, ObjectMeta, ObjectStore, PutMode, Result};

/// A call about to reach the inner store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<'a> {
    /// `put`, or with `conditional` `put_if_absent` / `put_if_match`.
    Put {
        /// The key written.
        key: &'a str,
        /// A conditional put.
        conditional: bool,
    },
    /// `get` of a whole object.
    Get {
        /// The key read.
        key: &'a str,
    },
    /// `get_range`.
    GetRange {
        /// The key read.
        key: &'a str,
        /// The byte range asked for.
        range: Range<u64>,
    },
    /// `head`.
    Head {
        /// The key asked about.
        key: &'a str,
    },
    /// `delete`.
    Delete {
        /// The key deleted.
        key: &'a str,
    },
    /// `list`.
    List {
        /// The prefix listed.
        prefix: &'a str,
    },
}

impl Call<'_> {
    /// The key (or, for a listing, the prefix) the call is about.
    pub fn key(&self) -> &str {
        match self {
            Call::Put { key, .. }
            | Call::Get { key }
            | Call::GetRange { key, .. }
            | Call::Head { key }
            | Call::Delete { key } => key,
            Call::List { prefix } => prefix,
        }
    }
}

/// What a [`HookedStore`] runs before each call: an error fails the call without reaching the
/// inner store; the hook may also wait (hold the call back) or just count.
#[async_trait]
pub trait Hook: Send + Sync + std::fmt::Debug {
    /// Runs before `call` reaches the inner store.
    async fn before(&self, call: &Call<'_>) -> Result<()>;

    /// Runs once a put or a delete came back from the inner store, whatever its outcome (a
    /// test that crashes right after a step landed). Nothing by default.
    async fn after(&self, _call: &Call<'_>) {}
}

/// An [`ObjectStore`] forwarding to an inner store after running a [`Hook`]. For tests.
#[derive(Debug)]
pub struct HookedStore<H> {
    inner: Arc<dyn ObjectStore>,
    hook: H,
}

impl<H: Hook> HookedStore<H> {
    /// Wraps `inner` with `hook`.
    pub fn new(inner: Arc<dyn ObjectStore>, hook: H) -> HookedStore<H> {
        HookedStore { inner, hook }
    }

    /// The hook (to read what it counted or change what it does).
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

#[async_trait]
impl<H: Hook> ObjectStore for HookedStore<H> {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let call = Call::Put {
            key,
            conditional: mode != PutMode::Overwrite,
        };
        self.hook.before(&call).await?;
        let r = self.inner.put_opts(key, data, mode).await;
        self.hook.after(&call).await;
        r
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<ObjectMeta> {
        let call = Call::Put {
            key,
            conditional: false,
        };
        self.hook.before(&call).await?;
        let r = self.inner.put_file(key, path).await;
        self.hook.after(&call).await;
        r
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        self.hook.before(&Call::Get { key }).await?;
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let call = Call::GetRange {
            key,
            range: range.clone(),
        };
        self.hook.before(&call).await?;
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.hook.before(&Call::Head { key }).await?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let call = Call::Delete { key };
        self.hook.before(&call).await?;
        let r = self.inner.delete(key).await;
        self.hook.after(&call).await;
        r
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        self.hook.before(&Call::List { prefix }).await?;
        self.inner.list(prefix, token, max).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{Error, MemStore};

    /// Counts ranged GETs and refuses puts under `ro/`.
    #[derive(Debug, Default)]
    struct Probe {
        ranges: AtomicU64,
    }

    #[async_trait]
    impl Hook for Probe {
        async fn before(&self, call: &Call<'_>) -> Result<()> {
            match call {
                Call::GetRange { .. } => {
                    self.ranges.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Call::Put { key, .. } if key.starts_with("ro/") => Err(Error::Io {
                    key: key.to_string(),
                    source: std::io::Error::other("read-only"),
                }),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn the_hook_sees_every_call_and_can_refuse_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let s = HookedStore::new(Arc::new(MemStore::new()), Probe::default());
        rt.block_on(async {
            s.put("a/x", Bytes::from_static(b"hello"))
                .await
                .expect("put");
            assert!(s.put_if_absent("ro/y", Bytes::new()).await.is_err());
            assert!(s
                .get("ro/y")
                .await
                .expect_err("never written")
                .is_not_found());
            assert_eq!(&s.get_range("a/x", 1..3).await.expect("range")[..], b"el");
            assert_eq!(s.list("a/", None, 10).await.expect("list").objects.len(), 1);
        });
        assert_eq!(s.hook().ranges.load(Ordering::Relaxed), 1);
        assert_eq!(Call::List { prefix: "p/" }.key(), "p/");
    }
}
