//! The engine's configuration ([`EngineConfig`]) and its defaults.

use std::path::PathBuf;
use strata_backend::{CredentialsSource, S3Config};
use strata_params::{BackendKind, StrataSettings};

/// Where object data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// A bucket of an S3-compatible store (checked and probed at open).
    S3(Box<strata_backend::S3Config>),
}

impl BackendConfig {
    /// Where the backend is, for messages (no credentials).
    pub fn location(&self) -> String {
        match self {
            BackendConfig::Local { dir } => dir.display().to_string(),
            BackendConfig::S3(s3) => s3.location(),
        }
    }
}

/// Engine configuration (built by the FSAL from the `STRATA { }` block).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local state: redb file, caches, sockets.
    pub data_dir: PathBuf,
    /// The object backend.
    pub backend: BackendConfig,
    /// Name suffixes that make a new regular file a volume.
    pub volume_suffixes: Vec<String>,
    /// Bound of the FileDriver's local extent cache, bytes.
    pub extent_cache_size: u64,
    /// Bound of redb's page cache, bytes.
    pub metadata_cache_size: u64,
    /// Size of a volume's SCO in bytes (`SCO_Size`, a multiple of 4 KiB).
    pub sco_size: u64,
    /// SCOs covered by one TLog (`TLog_SCOs`).
    pub tlog_scos: u32,
    /// TLogs applied to a volume's MetaDataStore between two metadata checkpoints on the
    /// backend (at least 1; default 64).
    pub checkpoint_tlogs: u32,
    /// A partial SCO holding data for this long is sealed and uploaded (`SCO_Max_Age`).
    pub sco_max_age: std::time::Duration,
    /// Bytes of a volume not yet on the backend at which its writes wait for room
    /// (`Write_Buffer_Size`, the hard mark).
    pub write_buffer_size: u64,
    /// Bytes of regular files' data kept in the file journal, not yet on the backend, at which
    /// their writes wait for room (`File_Write_Buffer_Size`, gateway-wide).
    pub file_write_buffer_size: u64,
    /// How long regular files' committed data waits in the journal before its extents are
    /// uploaded, unless the journal or the cache is under pressure (`File_Upload_Delay`).
    pub file_upload_delay: std::time::Duration,
    /// How often, at most, the namespace is uploaded as a new image while it changes
    /// (`Namespace_Upload_Interval`).
    pub namespace_upload_interval: std::time::Duration,
    /// Percentage of `write_buffer_size` (and of `file_write_buffer_size`) above which writes
    /// are paced (`Write_Throttle_Start`, 1..=100).
    pub write_throttle_start: u64,
    /// How long the backend may make no upload progress before a write waiting at the hard
    /// mark is answered `Delay` (`Backend_Stall_Timeout`).
    pub backend_stall_timeout: std::time::Duration,
    /// Bound of the local SCO files of all volumes, bytes (`SCO_Cache_Size`; 0: unbounded).
    pub sco_cache_size: u64,
    /// Bound of the content-addressed cluster cache shared by all volumes, bytes
    /// (`Cluster_Cache_Size`; 0: off).
    pub cluster_cache_size: u64,
    /// Bound of the decoded cluster-map pages shared by all volumes, bytes (`Map_Cache_Size`;
    /// 0: off).
    pub map_cache_size: u64,
    /// Time between background scrub and GC passes over every volume (`Scrub_Interval`;
    /// zero: only on demand).
    pub scrub_interval: std::time::Duration,
    /// Percent of a SCO's data that must still be live for the scrubber to leave it
    /// (`Scrub_Threshold`).
    pub scrub_threshold: u64,
    /// Bytes per second a scrub reads and writes at most, per volume (`Scrub_Bandwidth`; 0:
    /// unbounded).
    pub scrub_bandwidth: u64,
    /// How long an object stays marked garbage before it is deleted (`GC_Grace`).
    pub gc_grace: std::time::Duration,
    /// Whole clusters of zeros written to a volume are unmapped, not stored (`Zero_Detect`).
    pub zero_detect: bool,
}

impl EngineConfig {
    /// The parameter table's defaults (`strata-params`) for a data directory, with the local
    /// backend at `<data_dir>/backend`.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        let data_dir = data_dir.into();
        let number = crate::volume::table_default;
        let count = |name| u32::try_from(number(name)).unwrap_or(u32::MAX);
        let secs = |name| std::time::Duration::from_secs(number(name));
        EngineConfig {
            backend: BackendConfig::Local {
                dir: data_dir.join("backend"),
            },
            data_dir,
            volume_suffixes: default_volume_suffixes(),
            extent_cache_size: number("Extent_Cache_Size"),
            metadata_cache_size: number("Metadata_Cache_Size"),
            sco_size: number("SCO_Size"),
            tlog_scos: count("TLog_SCOs"),
            checkpoint_tlogs: count("Checkpoint_TLogs"),
            sco_max_age: secs("SCO_Max_Age"),
            write_buffer_size: number("Write_Buffer_Size"),
            file_write_buffer_size: number("File_Write_Buffer_Size"),
            file_upload_delay: secs("File_Upload_Delay"),
            namespace_upload_interval: secs("Namespace_Upload_Interval"),
            write_throttle_start: number("Write_Throttle_Start"),
            backend_stall_timeout: secs("Backend_Stall_Timeout"),
            sco_cache_size: number("SCO_Cache_Size"),
            cluster_cache_size: number("Cluster_Cache_Size"),
            map_cache_size: number("Map_Cache_Size"),
            scrub_interval: secs("Scrub_Interval"),
            scrub_threshold: number("Scrub_Threshold"),
            scrub_bandwidth: number("Scrub_Bandwidth"),
            gc_grace: secs("GC_Grace"),
            zero_detect: crate::volume::table_text("Zero_Detect") != "false",
        }
    }

    /// Maps validated settings to the engine configuration. The validation (ganesha-conf's, the
    /// same `strata conf check` runs) already refused everything this build cannot serve (an S3
    /// backend without endpoint or bucket included), so settings it accepted always convert.
    pub fn from_settings(s: &StrataSettings) -> EngineConfig {
        let backend = match s.backend {
            BackendKind::Local => BackendConfig::Local {
                dir: s.backend_dir.clone(),
            },
            BackendKind::S3 => {
                let credentials = match &s.s3_credentials_file {
                    Some(path) => CredentialsSource::File(path.clone()),
                    None => CredentialsSource::Environment,
                };
                let mut s3 = S3Config::new(
                    s.s3_endpoint.clone().unwrap_or_default(),
                    s.s3_bucket.clone().unwrap_or_default(),
                    credentials,
                );
                s3.region = s.s3_region.clone();
                s3.prefix = s.s3_prefix.clone();
                s3.virtual_host = s.s3_virtual_host;
                s3.request_timeout = s.s3_request_timeout;
                s3.unsafe_single_writer = s.s3_unsafe_single_writer;
                BackendConfig::S3(Box::new(s3))
            }
        };
        let mut c = EngineConfig::new(s.data_dir.clone());
        c.backend = backend;
        c.volume_suffixes = s.volume_suffixes.clone();
        c.extent_cache_size = s.extent_cache_size;
        c.metadata_cache_size = s.metadata_cache_size;
        c.sco_size = s.sco_size;
        c.tlog_scos = s.tlog_scos;
        c.checkpoint_tlogs = s.checkpoint_tlogs;
        c.sco_max_age = s.sco_max_age;
        c.zero_detect = s.zero_detect;
        c.write_buffer_size = s.write_buffer_size;
        c.file_write_buffer_size = s.file_write_buffer_size;
        c.file_upload_delay = s.file_upload_delay;
        c.namespace_upload_interval = s.namespace_upload_interval;
        c.write_throttle_start = s.write_throttle_start;
        c.backend_stall_timeout = s.backend_stall_timeout;
        c.sco_cache_size = s.sco_cache_size;
        c.cluster_cache_size = s.cluster_cache_size;
        c.map_cache_size = s.map_cache_size;
        c.scrub_interval = s.scrub_interval;
        c.scrub_threshold = s.scrub_threshold;
        c.scrub_bandwidth = s.scrub_bandwidth;
        c.gc_grace = s.gc_grace;
        c
    }
}

/// The parameter table's default `Volume_Suffixes`: names ending in one of these are volumes
/// (DESIGN §3).
pub(crate) fn default_volume_suffixes() -> Vec<String> {
    strata_params::DEFAULT_VOLUME_SUFFIXES
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
