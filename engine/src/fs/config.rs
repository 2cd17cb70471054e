//! The engine's configuration ([`EngineConfig`]) and its defaults.

use std::path::PathBuf;

/// Name suffixes that make a new regular file a volume (DESIGN §3).
pub const DEFAULT_VOLUME_SUFFIXES: &[&str] = &[
    "-flat.vmdk",
    "-delta.vmdk",
    "-sesparse.vmdk",
    ".vswp",
    ".raw",
    ".img",
    ".qcow2",
];

/// Where object data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
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
    /// Percentage of `write_buffer_size` above which a volume's writes are paced
    /// (`Write_Throttle_Start`, 1..=100).
    pub write_throttle_start: u64,
    /// How long the backend may make no upload progress before a write waiting at the hard
    /// mark is answered `Delay` (`Backend_Stall_Timeout`).
    pub backend_stall_timeout: std::time::Duration,
    /// Bound of the local SCO files of all volumes, bytes (`SCO_Cache_Size`; 0: unbounded).
    pub sco_cache_size: u64,
    /// Bound of the content-addressed cluster cache shared by all volumes, bytes
    /// (`Cluster_Cache_Size`; 0: off).
    pub cluster_cache_size: u64,
}

impl EngineConfig {
    /// Defaults of DESIGN §7 for a data directory, with the local backend at `<data_dir>/backend`.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        let data_dir = data_dir.into();
        EngineConfig {
            backend: BackendConfig::Local {
                dir: data_dir.join("backend"),
            },
            data_dir,
            volume_suffixes: DEFAULT_VOLUME_SUFFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            extent_cache_size: 1 << 30,
            metadata_cache_size: 64 << 20,
            sco_size: crate::volume::DEFAULT_SCO_SIZE,
            tlog_scos: crate::volume::DEFAULT_TLOG_SCOS,
            checkpoint_tlogs: crate::volume::DEFAULT_CHECKPOINT_TLOGS,
            sco_max_age: std::time::Duration::from_secs(60),
            write_buffer_size: 1 << 30,
            write_throttle_start: 50,
            backend_stall_timeout: std::time::Duration::from_secs(60),
            sco_cache_size: 8 << 30,
            cluster_cache_size: 1 << 30,
        }
    }
}
