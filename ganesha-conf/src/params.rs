//! The parameter table of the `STRATA { }` module block (DESIGN §7): one place from which both
//! `strata conf check` and the FSAL's Ganesha config items are built.

use std::path::PathBuf;
use std::time::Duration;

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// An absolute path.
    Path,
    /// Free text.
    Text,
    /// One of these words (case-insensitive).
    Enum(&'static [&'static str]),
    /// A byte size with optional K/M/G suffix, within bounds (bytes).
    Size {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A whole number within bounds.
    Count {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A duration in seconds (optional `s` suffix), within bounds.
    Seconds {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A comma-separated list of words.
    List,
}

/// One parameter of the `STRATA { }` block.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name as written in ganesha.conf.
    pub name: &'static str,
    /// Value type.
    pub ty: ParamType,
    /// Default value as text ("" = none / derived).
    pub default: &'static str,
    /// One-line documentation.
    pub doc: &'static str,
}

/// The validated settings of a `STRATA { }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrataSettings {
    /// Local state directory.
    pub data_dir: PathBuf,
    /// `LOCAL` or `S3`.
    pub backend: BackendKind,
    /// Local backend directory.
    pub backend_dir: PathBuf,
    /// S3 endpoint URL.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: String,
    /// S3 bucket.
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    pub s3_prefix: String,
    /// File with S3 credentials.
    pub s3_credentials_file: Option<PathBuf>,
    /// Suffixes that make a new file a volume.
    pub volume_suffixes: Vec<String>,
    /// FileDriver extent cache bound, bytes.
    pub extent_cache_size: u64,
    /// SCO size, bytes.
    pub sco_size: u64,
    /// SCOs per TLog.
    pub tlog_scos: u64,
    /// Age after which a partial SCO is uploaded.
    pub sco_max_age: Duration,
    /// SCO cache bound, bytes.
    pub sco_cache_size: u64,
    /// Per-volume bound of data not yet on the backend, bytes.
    pub write_buffer_size: u64,
    /// Cluster cache bound, bytes.
    pub cluster_cache_size: u64,
    /// redb cache bound, bytes.
    pub metadata_cache_size: u64,
    /// Management socket path.
    pub mgmt_socket: PathBuf,
}

/// The backend kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A local directory.
    Local,
    /// An S3-compatible store.
    S3,
}
