//! A typed model of the parts of ganesha.conf that Strata writes and reads: NFS_CORE_PARAM,
//! NFSV4, LOG, the `STRATA { }` module block and EXPORT blocks with their FSAL sub-block.
//!
//! [`GaneshaConf::render`] produces a complete, readable ganesha.conf; [`GaneshaConf::parse`]
//! reads one back (tolerantly: blocks and parameters we do not model are ignored), and
//! [`load_strata_settings`] / [`check_file`] validate the `STRATA { }` block with file, line and
//! reason in every error.

mod check;
mod profiles;
mod read;
mod render;

pub use self::check::{check_file, check_text, load_strata_settings};
use std::fmt;
use std::path::PathBuf;

/// 1 MiB, the default MaxRead/MaxWrite of our exports (the FileDriver's extent size).
pub const MIB: u64 = 1 << 20;

/// The names of the shipped profiles, in the order `strata conf render --profile` lists them.
pub const PROFILES: &[&str] = &["default", "esxi", "kvm"];

/// A ganesha.conf, as far as Strata writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaneshaConf {
    /// `NFS_CORE_PARAM { }`.
    pub core: CoreParams,
    /// `NFSV4 { }`.
    pub nfsv4: Nfsv4Params,
    /// `LOG { }`.
    pub log: LogParams,
    /// Raw (name, value) pairs of the `STRATA { }` module block, in order; None = no block.
    pub strata: Option<Vec<(String, String)>>,
    /// The `EXPORT { }` blocks, in order.
    pub exports: Vec<Export>,
}

/// `NFS_CORE_PARAM { }`. `Mount_Path_Pseudo = true` is always rendered, so NFSv3 and NFSv4
/// clients mount the same path (the export's Pseudo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreParams {
    /// `NFS_Port`.
    pub nfs_port: u16,
    /// `MNT_Port`.
    pub mnt_port: u16,
    /// `Protocols` (NFS major versions, 3 and/or 4).
    pub protocols: Vec<u8>,
    /// `Plugins_Dir`: the directory holding `libfsalstrata.so`; None = Ganesha's default.
    pub plugins_dir: Option<PathBuf>,
    /// `Enable_NLM` (NFSv3 byte-range locks; ESXi does not use them).
    pub enable_nlm: bool,
    /// `Enable_RQUOTA`.
    pub enable_rquota: bool,
}

/// `NFSV4 { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nfsv4Params {
    /// `Graceless`: skip the grace period at start (tests, `strata up`).
    pub graceless: bool,
    /// `Lease_Lifetime`, seconds (Ganesha: 0..=180, default 60): how long a client's NFSv4
    /// state outlives its last renewal. None = Ganesha's default.
    pub lease_lifetime: Option<u32>,
    /// `Grace_Period`, seconds (Ganesha: 0..=270, default 90): how long after a start
    /// without `Graceless` clients may reclaim their state (shorter when every client known
    /// from before has sent RECLAIM_COMPLETE and NLM is off). At least `Lease_Lifetime`, else
    /// Ganesha warns. None = Ganesha's default.
    pub grace_period: Option<u32>,
    /// `RecoveryRoot`: where Ganesha keeps NFSv4 client recovery records; None = its default.
    pub recovery_root: Option<PathBuf>,
    /// `Server_Owner` (NFSv4.1 server identity); None = Ganesha's default (host name).
    pub server_owner: Option<String>,
    /// `Server_Scope`; None = Ganesha's default.
    pub server_scope: Option<String>,
    /// `Minor_Versions`; empty = Ganesha's default (all).
    pub minor_versions: Vec<u8>,
}

/// `LOG { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogParams {
    /// `Default_Log_Level`, e.g. "EVENT".
    pub default_level: String,
}

/// One `EXPORT { }` block. `Access_Type = RW`, `Squash = No_Root_Squash`, `Transports = TCP`
/// and `SecType = sys` are always rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `Export_Id` (unique, 1..=65535 for our purposes).
    pub export_id: u16,
    /// `Path`: for STRATA, a directory inside the Strata namespace (`/` is its root).
    pub path: String,
    /// `Pseudo`: the path clients mount.
    pub pseudo: String,
    /// `Protocols` (3 and/or 4).
    pub protocols: Vec<u8>,
    /// `MaxRead`, bytes.
    pub max_read: u64,
    /// `MaxWrite`, bytes.
    pub max_write: u64,
    /// The `FSAL { }` sub-block.
    pub fsal: FsalBlock,
}

/// The `FSAL { }` sub-block of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsalBlock {
    /// `Name = STRATA;` (ours).
    Strata,
    /// `Name = VFS;` (Ganesha's, for benchmarks).
    Vfs,
    /// `Name = MEM;` (Ganesha's, for benchmarks). Ganesha reads `Inode_Size` from the
    /// top-level `MEM { }` block (one value for the whole process, at most 2 MiB), so the
    /// renderer writes it there, taking the largest of all MEM exports.
    Mem {
        /// `Inode_Size`, bytes: data kept per file; writes beyond it are acknowledged and
        /// dropped, reads beyond it return filler bytes.
        inode_size: u64,
    },
}

impl FsalBlock {
    /// The FSAL name as written in `Name = ...;`.
    pub fn name(&self) -> &'static str {
        match self {
            FsalBlock::Strata => "STRATA",
            FsalBlock::Vfs => "VFS",
            FsalBlock::Mem { .. } => "MEM",
        }
    }
}

/// One error in a configuration file. Displays as `FILE:LINE: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (the line of the block when the error concerns a whole block).
    pub line: u32,
    /// What is wrong, and where possible how to fix it.
    pub reason: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

impl std::error::Error for ConfError {}

impl Export {
    /// An export of the Strata namespace with Protocols 3,4 and 1 MiB MaxRead/MaxWrite.
    pub fn strata(export_id: u16, path: &str, pseudo: &str, protocols: &[u8]) -> Export {
        Export {
            export_id,
            path: path.to_string(),
            pseudo: pseudo.to_string(),
            protocols: protocols.to_vec(),
            max_read: MIB,
            max_write: MIB,
            fsal: FsalBlock::Strata,
        }
    }
}

#[cfg(test)]
mod tests;
