//! The one error type of the object stores.

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
    /// The store refused the request's credentials or permissions (HTTP 403): wrong keys, a
    /// key without access to the bucket, a clock too far off. Not transient.
    #[error("the store refused access to {key}: {message}")]
    Denied {
        /// The key (or bucket) concerned.
        key: String,
        /// The store's code and message (never a credential).
        message: String,
    },
    /// No usable credentials: none configured, or a credentials file that cannot be read or
    /// lacks a key. The message never quotes a secret.
    #[error("S3 credentials: {reason}")]
    Credentials {
        /// What is missing or wrong.
        reason: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    NoBucket {
        /// The bucket.
        bucket: String,
    },
    /// The store did not answer, or answered that it cannot now (a connection refused or cut,
    /// a timeout, HTTP 5xx, 429 or 409 "conflicting conditional operation"): worth retrying.
    #[error("the store is unavailable for {key}: {reason}")]
    Unavailable {
        /// The key concerned.
        key: String,
        /// What happened.
        reason: String,
    },
    /// The store answered something this client cannot use (a malformed answer, an
    /// unexpected status). Not retried.
    #[error("unexpected answer from the store for {key}: {reason}")]
    Protocol {
        /// The key concerned.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The store does not honour conditional writes (the probe at start, [`crate::probe`]):
    /// it cannot fence a second writer.
    #[error("the store does not honour conditional writes: {what}")]
    ConditionsIgnored {
        /// Which probe step failed.
        what: String,
    },
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

impl Error {
    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True for [`Error::ConditionFailed`].
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Error::ConditionFailed { .. })
    }

    /// Worth retrying: [`Error::Io`] or [`Error::Unavailable`]. A condition that failed, a
    /// missing object, a refusal or a bad key never is (a retry cannot change the answer, and
    /// a blind retry of a conditional put could overwrite another writer's object).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Unavailable { .. })
    }

    /// Maps an I/O error on `key` to the typed error: ENOSPC/EDQUOT become [`Error::NoSpace`],
    /// ENOENT becomes [`Error::NotFound`], ENAMETOOLONG becomes [`Error::InvalidKey`].
    pub fn from_io(key: &str, source: std::io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
            Some(libc::ENAMETOOLONG) => Error::InvalidKey {
                key: key.to_string(),
                reason: "a segment is too long for the store".to_string(),
            },
            _ if source.kind() == std::io::ErrorKind::NotFound => Error::NotFound {
                key: key.to_string(),
            },
            _ => Error::Io {
                key: key.to_string(),
                source,
            },
        }
    }
}
