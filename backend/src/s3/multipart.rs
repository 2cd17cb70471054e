//! Large files in parts: above [`S3Config::multipart_threshold`] a file goes up as a multipart
//! upload of [`S3Config::part_size`] parts, [`PARALLEL_PARTS`] at a time, each part retried on
//! its own; a failed upload is aborted (its parts are not left to be billed).
//!
//! Every read of the file goes through its own open file description of the one inode opened
//! at the start (`/proc/self/fd/N`), so parts read at their offsets without sharing a file
//! position, and a rename over the path meanwhile changes nothing.

use std::os::fd::AsRawFd;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{unquote, S3Store, PUT_ID_META};
use crate::join::join_all;
use crate::{Error, ObjectMeta, Result};

/// Parts in flight at once.
pub(super) const PARALLEL_PARTS: usize = 4;

/// A new open file description of `file` (the same inode, its own offset).
pub(super) fn reopen(key: &str, file: &std::fs::File) -> Result<std::fs::File> {
    std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| Error::from_io(key, e))
}

/// A body of `len` bytes of `file` from `offset`, through a fresh description.
pub(super) async fn body(
    key: &str,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> Result<ByteStream> {
    let handle = tokio::fs::File::from_std(reopen(key, file)?);
    ByteStream::read_from()
        .file(handle)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| Error::Io {
            key: key.to_string(),
            source: std::io::Error::other(e.to_string()),
        })
}

impl S3Store {
    /// Uploads `file` (`size` bytes) as `full` in parts; the object carries `put_id`.
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        file: &std::fs::File,
        size: u64,
        put_id: &str,
    ) -> Result<ObjectMeta> {
        let created = self
            .retry
            .run(|_| async {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(full)
                    .metadata(PUT_ID_META, put_id)
                    .send()
                    .await
                    .map_err(|e| self.err(key, e))
            })
            .await?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| Error::Protocol {
                key: key.to_string(),
                reason: "CreateMultipartUpload answered without an upload id".into(),
            })?
            .to_string();
        let result = self
            .parts_and_complete(key, full, file, size, &upload_id, put_id)
            .await;
        if result.is_err() {
            let abort = self
                .retry
                .run(|_| async {
                    let sent = self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(&upload_id)
                        .send()
                        .await;
                    match sent {
                        Ok(_) => Ok(()),
                        Err(e) => match self.err(key, e) {
                            Error::NotFound { .. } => Ok(()),
                            e => Err(e),
                        },
                    }
                })
                .await;
            if let Err(e) = abort {
                tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
            }
        }
        result
    }

    async fn parts_and_complete(
        &self,
        key: &str,
        full: &str,
        file: &std::fs::File,
        size: u64,
        upload_id: &str,
        put_id: &str,
    ) -> Result<ObjectMeta> {
        let part = self.part_size.max(1);
        let count = size.div_ceil(part).max(1);
        let mut done: Vec<CompletedPart> = Vec::new();
        let numbers: Vec<u64> = (0..count).collect();
        for group in numbers.chunks(PARALLEL_PARTS) {
            let uploads = group.iter().map(|&i| {
                let (offset, len) = (i * part, part.min(size - i * part));
                self.put_part(key, full, file, upload_id, i, offset, len)
            });
            for r in join_all(uploads).await {
                done.push(r?);
            }
        }
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(done))
            .build();
        // A retried Complete whose first attempt completed (its answer lost) finds no upload
        // (404): the object then carries our put id. So does an answer without an ETag.
        self.retry
            .run(|attempt| {
                let parts = parts.clone();
                async move {
                    let sent = self
                        .client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .multipart_upload(parts)
                        .send()
                        .await;
                    match sent {
                        Ok(out) if out.e_tag().is_some() => Ok(ObjectMeta {
                            key: key.to_string(),
                            size,
                            etag: unquote(key, out.e_tag())?,
                        }),
                        Ok(_) => self.own_meta(key, full, put_id).await,
                        Err(e) => match self.err(key, e) {
                            Error::NotFound { .. } if attempt > 1 => {
                                self.own_meta(key, full, put_id).await
                            }
                            e => Err(e),
                        },
                    }
                }
            })
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_part(
        &self,
        key: &str,
        full: &str,
        file: &std::fs::File,
        upload_id: &str,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<CompletedPart> {
        let number = i32::try_from(index + 1).map_err(|_| Error::InvalidKey {
            key: key.to_string(),
            reason: "more than 2^31 parts".into(),
        })?;
        let out = self
            .retry
            .run(|_| async {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body(key, file, offset, len).await?)
                    .send()
                    .await
                    .map_err(|e| self.err(key, e))
            })
            .await?;
        let etag = out.e_tag().ok_or_else(|| Error::Protocol {
            key: key.to_string(),
            reason: format!("part {number} answered without an ETag"),
        })?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .e_tag(etag)
            .build())
    }
}
