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
    /// Try again later: backpressure (NFS3ERR_JUKEBOX / NFS4ERR_DELAY).
    #[error("busy, try again later")]
    Delay,
    /// The operation is not supported on this object (ENOTSUP).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An I/O error on the local disk, the metadata store or the backend.
    #[error("I/O error: {0}")]
    Io(String),
}
