//! [`S3Store`]: objects in a bucket of any S3-compatible store (AWS S3, Ceph RGW, SeaweedFS,
//! MinIO, Garage, R2), through aws-sdk-s3.
//!
//! 1. **Addressing.** Path-style (`<endpoint>/<bucket>/<key>`) by default, which every
//!    S3-compatible store accepts; virtual-host style as an option. Every key is stored as
//!    `<prefix><key>`, so several gateways (or other users) can share a bucket.
//! 2. **Checksums.** Request checksums and response validation are "when required": since
//!    2025 the SDKs send a CRC on every PUT by default and several stores reject it. The data
//!    is protected by Strata's own checksums instead (SCO and TLog CRC32C, cluster MD5),
//!    verified by the engine on every read.
//! 3. **Retries and timeouts.** The SDK's own retries are off; every request goes through the
//!    crate's one [`RetryPolicy`], and each attempt is bounded by a connect timeout and a whole
//!    request timeout.
//! 4. **Conditional puts and lost answers.** A put with a condition carries a put id in the
//!    object's user metadata (`x-amz-meta-strata-put-id`). If a retried attempt comes back
//!    "precondition failed", the store reads the object's put id: its own means the first
//!    attempt succeeded and only its answer was lost; another means someone else wrote it.
//! 5. **Start.** [`S3Store::connect`] checks the bucket (a missing bucket, refused credentials
//!    and an unreachable endpoint each give their own error) and then, unless the user runs a
//!    single writer knowingly, probes the store's conditional writes ([`crate::probe`]).

mod batch;
mod credentials;
mod errors;
mod multipart;

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedHttpClient,
};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

pub use self::credentials::{CredentialsSource, S3Credentials};
use crate::retry::jitter;
use crate::{
    validate_key, validate_prefix, Error, ListPage, ObjectMeta, ObjectStore, PutMode, Result,
    RetryPolicy,
};

/// Bound of one attempt of the bucket check at start (a hung endpoint fails the start in
/// seconds, not after a whole request timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The user-metadata name of a conditional put's id (`x-amz-meta-strata-put-id`).
pub const PUT_ID_META: &str = "strata-put-id";

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL (`http://` or `https://`).
    pub endpoint: String,
    /// Region (signing; `us-east-1` for most S3-compatible stores).
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Prefix of every key in the bucket (`""`, or segments ending in `/`; a missing final
    /// `/` is added).
    pub prefix: String,
    /// Where the keys come from.
    pub credentials: CredentialsSource,
    /// Virtual-host addressing (`<bucket>.<host>`) instead of path-style.
    pub virtual_host: bool,
    /// Bound of establishing a connection.
    pub connect_timeout: Duration,
    /// Bound of one attempt of one request, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// Skip the conditional-write probe at start: the user promises a single writer (no
    /// fencing of a second gateway, no take-over; see the README).
    pub unsafe_single_writer: bool,
    /// Files larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    /// The size of a multipart upload's parts (S3 wants at least 5 MiB but for the last).
    pub part_size: u64,
}

impl S3Config {
    /// A configuration with the defaults: region `us-east-1`, no prefix, path-style, 5 s to
    /// connect, 120 s per request attempt, the default retry policy, the probe on, files above
    /// 64 MiB in 16 MiB parts.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        credentials: CredentialsSource,
    ) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: String::new(),
            credentials,
            virtual_host: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            unsafe_single_writer: false,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
        }
    }

    /// `s3://bucket/prefix at endpoint`, for messages (no credentials in it).
    pub fn location(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}

/// An [`ObjectStore`] on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    retry: RetryPolicy,
    /// The access key id (not secret), to name the key a store refused.
    access_key: String,
    multipart_threshold: u64,
    part_size: u64,
    /// The store refused DeleteObjects once: deletes go one by one.
    no_batch_delete: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The HTTP client [`S3Store::connect`] uses: hyper with rustls (ring), HTTP and HTTPS. Tests
/// wrap it to inject faults below the SDK ([`S3Store::connect_with_http_client`]).
pub fn default_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl S3Store {
    /// Connects: loads the credentials, checks the bucket, and probes conditional writes
    /// unless `config.unsafe_single_writer`. Errors say which of these failed.
    pub async fn connect(config: S3Config) -> Result<S3Store> {
        S3Store::connect_with_http_client(config, default_http_client()).await
    }

    /// [`S3Store::connect`] through a given HTTP client (tests put one that loses answers).
    pub async fn connect_with_http_client(
        config: S3Config,
        http: SharedHttpClient,
    ) -> Result<S3Store> {
        let store = S3Store::new(&config, http)?;
        store.check_bucket(&config).await?;
        if !config.unsafe_single_writer {
            let dir = format!("{}{}/", crate::probe::PROBE_PREFIX, &new_put_id()[..16]);
            crate::probe::conditional_writes(&store, &dir).await?;
            store.check_put_id_kept(&format!("{dir}meta")).await?;
        }
        Ok(store)
    }

    /// The last step of the probe, S3's own: a put's id comes back with HEAD (a store that
    /// drops user metadata would turn every lost answer into "someone else wrote it").
    async fn check_put_id_kept(&self, key: &str) -> Result<()> {
        let full = self.full(key)?;
        let put = self
            .put_opts(key, Bytes::from_static(b"m"), PutMode::Create)
            .await;
        let head = match put {
            Ok(_) => self.retry.run(|_| self.head_full(key, &full)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = self.delete(key).await {
            tracing::warn!(key, error = %e, "the conditional-write probe could not delete its object");
        }
        match head? {
            (_, Some(id)) if id.len() == 32 => Ok(()),
            _ => Err(Error::ConditionsIgnored {
                what: format!("user metadata ({PUT_ID_META}) is not kept"),
            }),
        }
    }

    /// The store, without touching the network.
    fn new(config: &S3Config, http: SharedHttpClient) -> Result<S3Store> {
        let mut prefix = config.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        validate_prefix(&prefix)?;
        let creds = config.credentials.load()?;
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(config.endpoint.clone())
            .force_path_style(!config.virtual_host)
            .credentials_provider(credentials::Reloading::new(
                config.credentials.clone(),
                creds.clone(),
            ))
            .http_client(http)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.request_timeout)
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: config.bucket.clone(),
            prefix,
            retry: config.retry,
            access_key: creds.access_key,
            multipart_threshold: config.multipart_threshold,
            part_size: config.part_size,
            no_batch_delete: Default::default(),
        })
    }

    /// HeadBucket: a missing bucket, refused credentials and an unreachable endpoint become
    /// errors that name the bucket, the access key or the endpoint (never the secret).
    async fn check_bucket(&self, config: &S3Config) -> Result<()> {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_elapsed: Duration::from_secs(15),
            ..self.retry
        };
        let r = policy
            .run(|_| async {
                let sent = self.client.head_bucket().bucket(&self.bucket).send();
                let answer = tokio::time::timeout(CHECK_TIMEOUT, sent)
                    .await
                    .map_err(|_| Error::Unavailable {
                        key: self.bucket.clone(),
                        reason: format!("no answer in {} s", CHECK_TIMEOUT.as_secs()),
                    })?;
                match answer {
                    Ok(_) => Ok(()),
                    Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                        Err(Error::NoBucket {
                            bucket: self.bucket.clone(),
                        })
                    }
                    Err(e) => Err(errors::map(&self.bucket, &self.bucket, e)),
                }
            })
            .await;
        r.map_err(|e| match e {
            Error::NoBucket { bucket } => Error::NoBucket {
                bucket: format!("{bucket} (at {})", config.endpoint),
            },
            Error::Denied { message, .. } => Error::Denied {
                key: format!("bucket {}", self.bucket),
                message: format!(
                    "{message}; the credentials of access key {} were refused at {} \
                     (wrong key or secret, no permission on the bucket, or a clock far off)",
                    self.access_key, config.endpoint
                ),
            },
            Error::Unavailable { reason, .. } => Error::Unavailable {
                key: format!("bucket {}", self.bucket),
                reason: format!("cannot reach {}: {reason}", config.endpoint),
            },
            other => other,
        })
    }

    fn full(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn strip(&self, full: &str) -> Result<String> {
        full.strip_prefix(&self.prefix)
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol {
                key: full.to_string(),
                reason: "a listed key outside the prefix".into(),
            })
    }

    fn err<E>(&self, key: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        errors::map(&self.bucket, key, e)
    }

    /// HEAD of a full key: its metadata and its put id (if any).
    async fn head_full(&self, key: &str, full: &str) -> Result<(ObjectMeta, Option<String>)> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        let meta = ObjectMeta {
            key: key.to_string(),
            size: size_of(key, out.content_length())?,
            etag: unquote(key, out.e_tag())?,
        };
        let put_id = out.metadata().and_then(|m| m.get(PUT_ID_META)).cloned();
        Ok((meta, put_id))
    }

    /// The metadata of the object this put stored, for an answer without an ETag: read with
    /// HEAD, and only if the object there carries our put id (else another writer's ETag
    /// could be taken for ours).
    async fn own_meta(&self, key: &str, full: &str, put_id: &str) -> Result<ObjectMeta> {
        match self.head_full(key, full).await? {
            (meta, Some(id)) if id == put_id => Ok(meta),
            _ => Err(Error::Protocol {
                key: key.to_string(),
                reason: "a PUT answered without an ETag, and the object is no longer ours".into(),
            }),
        }
    }

    /// One attempt of a PUT of `body` (`size` bytes) as `mode` says, carrying `put_id`.
    async fn put_once(
        &self,
        key: &str,
        full: &str,
        body: ByteStream,
        size: u64,
        mode: &PutMode,
        put_id: &str,
    ) -> Result<ObjectMeta> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .body(body)
            .metadata(PUT_ID_META, put_id);
        match mode {
            PutMode::Overwrite => {}
            PutMode::Create => req = req.if_none_match("*"),
            PutMode::Update { etag } => req = req.if_match(format!("\"{etag}\"")),
        }
        match req.send().await {
            Ok(out) => match out.e_tag() {
                Some(_) => Ok(ObjectMeta {
                    key: key.to_string(),
                    size,
                    etag: unquote(key, out.e_tag())?,
                }),
                None => self.own_meta(key, full, put_id).await,
            },
            // AWS answers an If-Match on a missing key 404: the condition did not hold.
            Err(e) => match self.err(key, e) {
                Error::NotFound { key } if matches!(mode, PutMode::Update { .. }) => {
                    Err(Error::ConditionFailed { key })
                }
                other => Err(other),
            },
        }
    }
}

/// A put id: 128 random bits as 32 hex digits (from the OS; the clock-seeded generator only
/// if the OS has none to give).
fn new_put_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&jitter().to_le_bytes());
        b[8..].copy_from_slice(&jitter().to_le_bytes());
    }
    crate::hex(&b)
}

/// An ETag without its quotes; a missing one is a protocol error.
fn unquote(key: &str, etag: Option<&str>) -> Result<String> {
    match etag {
        Some(e) => Ok(e.trim_matches('"').to_string()),
        None => Err(Error::Protocol {
            key: key.to_string(),
            reason: "no ETag in the answer".into(),
        }),
    }
}

fn size_of(key: &str, len: Option<i64>) -> Result<u64> {
    len.and_then(|l| u64::try_from(l).ok())
        .ok_or_else(|| Error::Protocol {
            key: key.to_string(),
            reason: "no valid Content-Length in the answer".into(),
        })
}

fn body_err(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        key: key.to_string(),
        reason: format!("reading the body: {e}"),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let full = self.full(key)?;
        let put_id = new_put_id();
        self.retry
            .run(|attempt| {
                let (data, full, mode, put_id) = (data.clone(), &full, &mode, &put_id);
                async move {
                    let size = data.len() as u64;
                    let body = ByteStream::from(data);
                    match self.put_once(key, full, body, size, mode, put_id).await {
                        Err(Error::ConditionFailed { key: k }) if attempt > 1 => {
                            // An earlier attempt may have succeeded with its answer lost. A
                            // HEAD that fails transiently is retried with the put (which gets
                            // 412 again), never taken for "someone else wrote it".
                            match self.head_full(key, full).await {
                                Ok((meta, Some(id))) if id == *put_id => Ok(meta),
                                Err(e) if e.is_transient() => Err(e),
                                _ => Err(Error::ConditionFailed { key: k }),
                            }
                        }
                        other => other,
                    }
                }
            })
            .await
    }

    /// Streams the file (never whole in memory), in parts above the multipart threshold. It
    /// is opened once, so a replacement of the path (a rename over it) meanwhile cannot change
    /// what is uploaded; every attempt reads it through its own description.
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<ObjectMeta> {
        let full = self.full(key)?;
        let put_id = new_put_id();
        let file = std::fs::File::open(path).map_err(|e| Error::from_io(key, e))?;
        let size = file.metadata().map_err(|e| Error::from_io(key, e))?.len();
        if size > self.multipart_threshold {
            return self.put_multipart(key, &full, &file, size, &put_id).await;
        }
        self.retry
            .run(|_| async {
                let body = multipart::body(key, &file, 0, size).await?;
                self.put_once(key, &full, body, size, &PutMode::Overwrite, &put_id)
                    .await
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        let full = self.full(key)?;
        self.retry
            .run(|_| async {
                let out = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .send()
                    .await
                    .map_err(|e| self.err(key, e))?;
                let size = size_of(key, out.content_length())?;
                let etag = unquote(key, out.e_tag())?;
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| body_err(key, e))?
                    .into_bytes();
                if data.len() as u64 != size {
                    return Err(body_err(key, format!("{} bytes of {size}", data.len())));
                }
                let meta = ObjectMeta {
                    key: key.to_string(),
                    size,
                    etag,
                };
                Ok((data, meta))
            })
            .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let full = self.full(key)?;
        if range.start >= range.end {
            self.head(key).await?;
            return Ok(Bytes::new());
        }
        self.retry
            .run(|_| async {
                let sent = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .range(format!("bytes={}-{}", range.start, range.end - 1))
                    .send()
                    .await;
                let out = match sent {
                    Ok(out) => out,
                    // The range starts at or past the end of an object that exists.
                    Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 416 => {
                        return Ok(Bytes::new())
                    }
                    Err(e) => return Err(self.err(key, e)),
                };
                let ranged = out.content_range().is_some();
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| body_err(key, e))?
                    .into_bytes();
                if ranged {
                    let want = range.end - range.start;
                    if data.len() as u64 > want {
                        return Err(body_err(key, "more bytes than the range asked"));
                    }
                    return Ok(data);
                }
                // A store that ignored the Range header sent the whole object.
                let len = data.len() as u64;
                let (s, e) = (range.start.min(len), range.end.min(len));
                Ok(data.slice(crate::usize_of(s)..crate::usize_of(e)))
            })
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full = self.full(key)?;
        self.retry
            .run(|_| async { Ok(self.head_full(key, &full).await?.0) })
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full(key)?;
        self.retry
            .run(|_| async {
                match self
                    .client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => match self.err(key, e) {
                        Error::NotFound { .. } => Ok(()),
                        other => Err(other),
                    },
                }
            })
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.delete_batched(keys).await
    }

    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.prefix);
        let start_after = token.map(|t| format!("{}{t}", self.prefix));
        let max_keys = i32::try_from(max.clamp(1, 1000)).unwrap_or(1000);
        self.retry
            .run(|_| async {
                let mut req = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .max_keys(max_keys);
                if let Some(s) = &start_after {
                    req = req.start_after(s);
                }
                let out = req.send().await.map_err(|e| self.err(prefix, e))?;
                let mut objects = Vec::new();
                for o in out.contents() {
                    let full = o.key().ok_or_else(|| Error::Protocol {
                        key: prefix.to_string(),
                        reason: "a listed object without a key".into(),
                    })?;
                    let key = self.strip(full)?;
                    objects.push(ObjectMeta {
                        size: size_of(&key, o.size())?,
                        etag: unquote(&key, o.e_tag())?,
                        key,
                    });
                }
                let cap = crate::usize_of(u64::from(max_keys.unsigned_abs()));
                let cut = objects.len() > cap;
                objects.truncate(cap);
                let truncated = out.is_truncated() == Some(true) || cut;
                if truncated && objects.is_empty() {
                    return Err(Error::Protocol {
                        key: prefix.to_string(),
                        reason: "a truncated listing page without keys".into(),
                    });
                }
                let next = match truncated {
                    true => objects.last().map(|m| m.key.clone()),
                    false => None,
                };
                Ok(ListPage { objects, next })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
