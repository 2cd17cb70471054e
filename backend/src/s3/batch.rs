//! Batched deletes: DeleteObjects with up to 1000 keys per request (quiet mode: only failures
//! are answered). A store that refuses the request itself (some want a Content-MD5, or answer
//! "not implemented") is remembered, and deletes go one by one from then on; an error of one
//! key is that key's, not a refusal of batching.

use std::sync::atomic::Ordering;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::S3Store;
use crate::{Error, ObjectStore, Result};

/// Keys per DeleteObjects request (S3's maximum).
const BATCH: usize = 1000;

/// Why a batch failed: the store refused DeleteObjects itself (fall back to single deletes),
/// or the request or one of its keys failed.
enum BatchError {
    Refused(String),
    Failed(Error),
}

impl S3Store {
    /// Deletes `keys` (missing ones included) in batches, or one by one on a store without
    /// DeleteObjects.
    pub(super) async fn delete_batched(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(BATCH) {
            if !self.no_batch_delete.load(Ordering::Relaxed) {
                match self.delete_chunk(chunk).await {
                    Ok(()) => continue,
                    Err(BatchError::Failed(e)) => return Err(e),
                    Err(BatchError::Refused(reason)) => {
                        tracing::warn!(%reason, "the store refused DeleteObjects: deleting one by one");
                        self.no_batch_delete.store(true, Ordering::Relaxed);
                    }
                }
            }
            for k in chunk {
                self.delete(k).await?;
            }
        }
        Ok(())
    }

    async fn delete_chunk(&self, chunk: &[String]) -> std::result::Result<(), BatchError> {
        let first = chunk.first().map_or("", String::as_str).to_string();
        let invalid = |key: &str, e: aws_sdk_s3::error::BuildError| {
            BatchError::Failed(Error::InvalidKey {
                key: key.to_string(),
                reason: e.to_string(),
            })
        };
        let mut ids = Vec::with_capacity(chunk.len());
        for k in chunk {
            let full = self.full(k).map_err(BatchError::Failed)?;
            ids.push(
                ObjectIdentifier::builder()
                    .key(full)
                    .build()
                    .map_err(|e| invalid(k, e))?,
            );
        }
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| invalid(&first, e))?;
        let out = self
            .retry
            .run(|_| async {
                self.client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete.clone())
                    .send()
                    .await
                    .map_err(|e| self.err(&first, e))
            })
            .await
            .map_err(|e| match e {
                Error::Protocol { reason, .. } => BatchError::Refused(reason),
                e => BatchError::Failed(e),
            })?;
        // Per-key errors: a key already gone is deleted; a transient one is deleted again on
        // its own (through the retry policy); any other fails the call, naming the key.
        for e in out.errors() {
            if e.code() == Some("NoSuchKey") {
                continue;
            }
            let key = e.key().map_or(first.clone(), |k| {
                self.strip(k).unwrap_or_else(|_| k.to_string())
            });
            let what = format!("{}: {}", e.code().unwrap_or("?"), e.message().unwrap_or(""));
            let err = match e.code() {
                Some("AccessDenied") => Error::Denied { key, message: what },
                Some("InternalError" | "SlowDown" | "ServiceUnavailable") => {
                    self.delete(&key).await.map_err(BatchError::Failed)?;
                    continue;
                }
                _ => Error::Protocol { key, reason: what },
            };
            return Err(BatchError::Failed(err));
        }
        Ok(())
    }
}
