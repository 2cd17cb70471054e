//! The engine's one error type. Each variant maps 1:1 to an NFS status (DESIGN §2).

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the [`crate::Filesystem`] facade. The FSAL maps each to one `fsal_errors_t`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such name or object (ENOENT).
    #[error("not found")]
    NotFound,
    /// The name exists already (EEXIST).
    #[error("already exists")]
    Exists,
    /// A directory was expected (ENOTDIR).
    #[error("not a directory")]
    NotDir,
    /// A non-directory was expected (EISDIR).
    #[error("is a directory")]
    IsDir,
    /// The directory is not empty (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// A name is longer than 255 bytes (ENAMETOOLONG).
    #[error("name too long")]
    NameTooLong,
    /// The request is malformed (EINVAL), with the reason.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The handle names an object that no longer exists (ESTALE).
    #[error("stale handle")]
    Stale,
    /// The data directory or backend is full (ENOSPC).
    #[error("no space left")]
    NoSpace,
    /// The object is read-only: a template volume (EROFS; NFS3ERR_ROFS / NFS4ERR_ROFS).
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// Try again later: backpressure (NFS3ERR_JUKEBOX / NFS4ERR_DELAY).
    #[error("busy, try again later")]
    Delay,
    /// The object has no extended attribute of that name (ENODATA; NFS4ERR_NOXATTR).
    #[error("no such extended attribute")]
    NoXattr,
    /// An extended attribute's value is larger than the server keeps (E2BIG;
    /// NFS4ERR_XATTR2BIG).
    #[error("extended attribute value too large")]
    XattrTooBig,
    /// The operation is not supported on this object (ENOTSUP).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An I/O error on the local disk or the metadata store (EIO).
    #[error("I/O error: {0}")]
    Io(String),
    /// Bytes read from the local disk or the backend did not verify: a SCO, TLog, checkpoint or
    /// manifest that is damaged or not ours (EIO). Not transient: reading again reads the same.
    #[error("I/O error: {0}")]
    Format(#[from] crate::volume::FormatError),
    /// A backend operation failed (EIO; a full backend is [`Error::NoSpace`]). Whether to retry
    /// is the source's to tell: see [`Error::is_final`].
    #[error("I/O error: backend: {what}: {source}")]
    Backend {
        /// What the engine was doing, with the object's name.
        what: String,
        /// The store's typed error.
        #[source]
        source: strata_backend::Error,
    },
    /// The backend belongs to another gateway (its owner record names another, or it holds
    /// objects this namespace does not refer to): the engine refuses to open (EPERM). The
    /// message names the identities and the backend.
    #[error("{0}")]
    NotOwner(String),
}

impl Error {
    /// The backend refused a conditional write: another writer changed the object (a second
    /// gateway on the same backend, or an operator), or this gateway lost the backend. Final: retrying cannot succeed and must
    /// not be attempted (it would overwrite the other writer's work).
    pub fn is_final(&self) -> bool {
        matches!(self, Error::NotOwner(_))
            || matches!(self, Error::Backend { source, .. } if source.is_condition_failed())
    }

    /// The backend has no such object.
    pub fn is_backend_not_found(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if source.is_not_found())
    }

    /// Worth retrying later: an I/O failure talking to the backend (a network blip, a store
    /// that is down), as opposed to a final refusal or bytes that do not verify.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if source.is_transient())
    }
}

/// A local I/O error on `what`: `NoSpace` for a full disk or quota, else `Io` naming it.
pub(crate) fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    if is_enospc(&e) || e.raw_os_error() == Some(libc::EDQUOT) {
        Error::NoSpace
    } else {
        Error::Io(format!("{what}: {e}"))
    }
}

/// True when an I/O error says the disk is full.
pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Error {
        match e {
            redb::StorageError::Io(io) if is_enospc(&io) => Error::NoSpace,
            e => Error::Io(format!("metadata store: {e}")),
        }
    }
}

/// redb's error types all wrap a `StorageError` where the disk is concerned.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                match redb::Error::from(e) {
                    redb::Error::Io(io) if is_enospc(&io) => Error::NoSpace,
                    e => Error::Io(format!("metadata store: {e}")),
                }
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<strata_filedriver::Error> for Error {
    fn from(e: strata_filedriver::Error) -> Error {
        use strata_filedriver::Error as F;
        match e {
            F::NoSpace | F::Backend(strata_backend::Error::NoSpace) => Error::NoSpace,
            F::Io(io) if is_enospc(&io) => Error::NoSpace,
            F::Backend(source) => Error::from(source),
            e => Error::Io(e.to_string()),
        }
    }
}

/// A backend error keeps its type ([`Error::Backend`]), so that callers can tell a final
/// refusal from a transient failure; a full backend is [`Error::NoSpace`].
impl From<strata_backend::Error> for Error {
    fn from(e: strata_backend::Error) -> Error {
        match e {
            strata_backend::Error::NoSpace => Error::NoSpace,
            strata_backend::Error::Io { ref source, .. } if is_enospc(source) => Error::NoSpace,
            source => Error::Backend {
                what: "the object store".into(),
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_maps_to_nospace_everywhere() {
        let full = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(
            Error::from(redb::StorageError::Io(full())),
            Error::NoSpace
        ));
        assert!(matches!(
            Error::from(strata_filedriver::Error::NoSpace),
            Error::NoSpace
        ));
        assert!(matches!(
            Error::from(strata_filedriver::Error::Io(full())),
            Error::NoSpace
        ));
        assert!(matches!(
            Error::from(strata_backend::Error::NoSpace),
            Error::NoSpace
        ));
        let backend_io = strata_backend::Error::Io {
            key: "k".into(),
            source: full(),
        };
        assert!(matches!(Error::from(backend_io), Error::NoSpace));
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(
            Error::from(redb::StorageError::Io(other)),
            Error::Io(_)
        ));
        // Other backend errors keep their type, through the FileDriver too.
        let nf = || strata_backend::Error::NotFound { key: "k".into() };
        assert!(Error::from(nf()).is_backend_not_found());
        assert!(Error::from(strata_filedriver::Error::Backend(nf())).is_backend_not_found());
        let blip = strata_backend::Error::Io {
            key: "k".into(),
            source: std::io::Error::from_raw_os_error(libc::ECONNRESET),
        };
        assert!(Error::from(blip).is_transient());
    }
}
