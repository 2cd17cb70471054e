//! A volume's tunables ([`VolumeOptions`]: SCO size, SCOs per TLog, TLogs between checkpoints)
//! and the size limit every offset computation relies on.
//!
//! Two kinds of limit, kept apart: what a user may configure (each parameter's default and
//! bounds) is the parameter table's (`strata-params`), checked by `strata conf check` and the
//! FSAL alike; what a volume's files can represent (a SCO of at most
//! [`MAX_SCO_CLUSTERS`] clusters, counts of at least 1) is checked here, for any caller.

use crate::error::{Error, Result};
use crate::volume::format::{CLUSTER_SIZE_U64, MAX_SCO_CLUSTERS};

/// Largest volume size accepted (1 PiB): keeps every offset computation far from overflow.
pub(crate) const MAX_VOLUME_SIZE: u64 = 1 << 50;

/// Tunables of a volume. They may change between restarts: every SCO and TLog describes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VolumeOptions {
    /// Clusters per SCO (`SCO_Size` / 4 KiB), at least 1.
    pub sco_clusters: u32,
    /// SCOs per TLog (`TLog_SCOs`), at least 1.
    pub tlog_scos: u32,
    /// A metadata checkpoint is written to the backend once at least this many TLogs were
    /// applied to the MetaDataStore since the last one (at least 1).
    pub checkpoint_tlogs: u32,
}

/// The default of the numeric parameter `name` in the parameter table (0 if the table lacks
/// it: a unit test proves it has every name the engine asks for).
pub(crate) fn table_default(name: &str) -> u64 {
    strata_params::number(name).map_or(0, |n| n.default)
}

/// The default of the parameter `name` in the parameter table, as text ("" if the table lacks
/// it).
pub(crate) fn table_text(name: &str) -> &'static str {
    strata_params::find_param(name).map_or("", |p| p.default)
}

impl Default for VolumeOptions {
    /// The parameter table's defaults (`SCO_Size`, `TLog_SCOs`, `Checkpoint_TLogs`).
    fn default() -> Self {
        let count = |name| u32::try_from(table_default(name)).unwrap_or(u32::MAX);
        VolumeOptions {
            sco_clusters: u32::try_from(table_default("SCO_Size") / CLUSTER_SIZE_U64)
                .unwrap_or(u32::MAX),
            tlog_scos: count("TLog_SCOs"),
            checkpoint_tlogs: count("Checkpoint_TLogs"),
        }
    }
}

impl VolumeOptions {
    /// Options for SCOs of `sco_size` bytes, `tlog_scos` SCOs per TLog and a checkpoint every
    /// `checkpoint_tlogs` TLogs. Refuses only what a volume's files cannot represent: a SCO
    /// size that is not a whole number of clusters between 1 and [`MAX_SCO_CLUSTERS`], or a
    /// count of 0. (Whether a user may configure it is the parameter table's rule.)
    pub(crate) fn new(
        sco_size: u64,
        tlog_scos: u32,
        checkpoint_tlogs: u32,
    ) -> Result<VolumeOptions> {
        let clusters = sco_size / CLUSTER_SIZE_U64;
        if sco_size == 0
            || !sco_size.is_multiple_of(CLUSTER_SIZE_U64)
            || clusters > u64::from(MAX_SCO_CLUSTERS)
        {
            return Err(Error::Invalid(format!(
                "SCO size {sco_size}: a SCO holds 1 to {MAX_SCO_CLUSTERS} whole 4 KiB clusters"
            )));
        }
        let opts = VolumeOptions {
            sco_clusters: u32::try_from(clusters).unwrap_or(u32::MAX),
            tlog_scos,
            checkpoint_tlogs,
        };
        opts.check()?;
        Ok(opts)
    }

    /// What every volume checks its options against when it is created or opened.
    pub(super) fn check(&self) -> Result<()> {
        if self.sco_clusters == 0
            || self.tlog_scos == 0
            || self.checkpoint_tlogs == 0
            || self.sco_clusters > MAX_SCO_CLUSTERS
        {
            return Err(Error::Invalid(format!("bad volume options {self:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_parameter_tables() {
        let d = VolumeOptions::default();
        assert_eq!(
            u64::from(d.sco_clusters) * CLUSTER_SIZE_U64,
            strata_params::number("SCO_Size").expect("SCO_Size").default
        );
        assert_eq!(
            u64::from(d.tlog_scos),
            strata_params::number("TLog_SCOs")
                .expect("TLog_SCOs")
                .default
        );
        assert_eq!(
            u64::from(d.checkpoint_tlogs),
            strata_params::number("Checkpoint_TLogs")
                .expect("Checkpoint_TLogs")
                .default
        );
        assert_eq!(d.check().map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn every_configurable_value_is_representable_and_the_format_limits_hold() {
        // Everything the parameter table lets a user configure, a volume can hold.
        let sco = strata_params::number("SCO_Size").expect("SCO_Size");
        let tlog = strata_params::number("TLog_SCOs").expect("TLog_SCOs");
        let ck = strata_params::number("Checkpoint_TLogs").expect("Checkpoint_TLogs");
        for (s, t, c) in [(sco.min, tlog.min, ck.min), (sco.max, tlog.max, ck.max)] {
            let t = u32::try_from(t).expect("count");
            let c = u32::try_from(c).expect("count");
            assert!(VolumeOptions::new(s, t, c).is_ok(), "{s} {t} {c}");
        }
        // What the files cannot represent is refused whoever asks.
        let max = u64::from(MAX_SCO_CLUSTERS) * CLUSTER_SIZE_U64;
        assert!(VolumeOptions::new(max, 1, 1).is_ok());
        assert!(VolumeOptions::new(max + CLUSTER_SIZE_U64, 1, 1).is_err());
        assert!(VolumeOptions::new(0, 1, 1).is_err());
        assert!(VolumeOptions::new(CLUSTER_SIZE_U64 + 1, 1, 1).is_err());
        assert!(VolumeOptions::new(CLUSTER_SIZE_U64, 0, 1).is_err());
        assert!(VolumeOptions::new(CLUSTER_SIZE_U64, 1, 0).is_err());
    }
}
