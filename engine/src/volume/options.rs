//! A volume's tunables ([`VolumeOptions`]: SCO size, SCOs per TLog, TLogs between checkpoints)
//! and the size limit every offset computation relies on.

use crate::error::{Error, Result};
use crate::volume::format::CLUSTER_SIZE_U64;

/// Largest volume size accepted (1 PiB): keeps every offset computation far from overflow.
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;

/// Default SCO size: 4 MiB (`SCO_Size`).
pub const DEFAULT_SCO_SIZE: u64 = 4 << 20;

/// Default number of SCOs covered by one TLog (`TLog_SCOs`).
pub const DEFAULT_TLOG_SCOS: u32 = 16;

/// Tunables of a volume. They may change between restarts: every SCO and TLog describes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeOptions {
    /// Clusters per SCO (`SCO_Size` / 4 KiB), at least 1.
    pub sco_clusters: u32,
    /// SCOs per TLog (`TLog_SCOs`), at least 1.
    pub tlog_scos: u32,
    /// A metadata checkpoint is written to the backend once at least this many TLogs were
    /// applied to the MetaDataStore since the last one (at least 1).
    pub checkpoint_tlogs: u32,
}

/// Default TLogs between metadata checkpoints.
pub const DEFAULT_CHECKPOINT_TLOGS: u32 = 64;

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            sco_clusters: (DEFAULT_SCO_SIZE / CLUSTER_SIZE_U64) as u32,
            tlog_scos: DEFAULT_TLOG_SCOS,
            checkpoint_tlogs: DEFAULT_CHECKPOINT_TLOGS,
        }
    }
}

impl VolumeOptions {
    /// Options from the configuration parameters `SCO_Size` (bytes, a multiple of 4 KiB between
    /// 4 KiB and 1 GiB) and `TLog_SCOs` (1..=65536).
    pub fn from_params(sco_size: u64, tlog_scos: u32) -> Result<VolumeOptions> {
        if sco_size == 0 || !sco_size.is_multiple_of(CLUSTER_SIZE_U64) || sco_size > 1 << 30 {
            return Err(Error::Invalid(format!(
                "SCO_Size {sco_size}: must be a multiple of 4K between 4K and 1G"
            )));
        }
        if tlog_scos == 0 || tlog_scos > 65536 {
            return Err(Error::Invalid(format!(
                "TLog_SCOs {tlog_scos}: must be between 1 and 65536"
            )));
        }
        Ok(VolumeOptions {
            sco_clusters: (sco_size / CLUSTER_SIZE_U64) as u32,
            tlog_scos,
            checkpoint_tlogs: DEFAULT_CHECKPOINT_TLOGS,
        })
    }

    pub(super) fn check(&self) -> Result<()> {
        if self.sco_clusters == 0
            || self.tlog_scos == 0
            || self.checkpoint_tlogs == 0
            || self.sco_clusters > 1 << 18
        {
            return Err(Error::Invalid(format!("bad volume options {self:?}")));
        }
        Ok(())
    }
}
