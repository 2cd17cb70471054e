//! Batched deletes: DeleteObjects with up to 1000 keys per request (quiet mode: only failures
//! are answered). A store that refuses the request itself (some want a Content-MD5, or answer
//! "not implemented") is remembered, and deletes go one by one from then on.

use std::sync::atomic::Ordering;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::S3Store;
use crate::{Error, ObjectStore, Result};

/// Keys per DeleteObjects request (S3's maximum).
const BATCH: usize = 1000;

impl S3Store {
    /// Deletes `keys` (missing ones included) in batches, or one by one on a store without
    /// DeleteObjects.
    pub(super) async fn delete_batched(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(BATCH) {
            if self.no_batch_delete.load(Ordering::Relaxed) {
                for k in chunk {
                    self.delete(k).await?;
                }
                continue;
            }
            match self.delete_chunk(chunk).await {
                Err(Error::Protocol { reason, .. }) => {
                    tracing::warn!(%reason, "the store refused DeleteObjects: deleting one by one");
                    self.no_batch_delete.store(true, Ordering::Relaxed);
                    for k in chunk {
                        self.delete(k).await?;
                    }
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn delete_chunk(&self, chunk: &[String]) -> Result<()> {
        let first = chunk.first().map_or("", String::as_str).to_string();
        let mut ids = Vec::with_capacity(chunk.len());
        for k in chunk {
            let id = ObjectIdentifier::builder()
                .key(self.full(k)?)
                .build()
                .map_err(|e| Error::InvalidKey {
                    key: k.clone(),
                    reason: e.to_string(),
                })?;
            ids.push(id);
        }
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| Error::InvalidKey {
                key: first.clone(),
                reason: e.to_string(),
            })?;
        self.retry
            .run(|_| async {
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete.clone())
                    .send()
                    .await
                    .map_err(|e| self.err(&first, e))?;
                // A key that is already gone is deleted; any other per-key error fails the call.
                match out.errors().iter().find(|e| e.code() != Some("NoSuchKey")) {
                    None => Ok(()),
                    Some(e) => {
                        let key = e.key().map_or(first.clone(), |k| {
                            self.strip(k).unwrap_or_else(|_| k.to_string())
                        });
                        let what =
                            format!("{}: {}", e.code().unwrap_or("?"), e.message().unwrap_or(""));
                        Err(match e.code() {
                            Some("AccessDenied") => Error::Denied { key, message: what },
                            Some("InternalError" | "SlowDown" | "ServiceUnavailable") => {
                                Error::Unavailable { key, reason: what }
                            }
                            _ => Error::Protocol { key, reason: what },
                        })
                    }
                }
            })
            .await
    }
}
