//! The backend pipeline of one volume, and backend restart.
//!
//! - `upload`: closed TLogs go up in order — each TLog's sealed SCOs first (several at once),
//!   then the TLog, then the manifest (a conditional PUT) — with metadata checkpoints now and
//!   then; only what is durable locally is uploaded.
//! - `restore`: a volume's local state rebuilt from its backend namespace alone.
//! - `handover`: what the volume tells the pipeline (what is closed, how old, how much).
//! - `manifest`: the manifest's XML; `bounded_get`: whole reads of objects whose size the
//!   format bounds.
//! - `keys`: the keys of data objects, which carry the epoch of the run that uploaded them.
//!
//! The store passed in is the volume's own namespace (e.g. a `strata_backend::Namespaced`
//! keyed by the volume id). Object names: `sco/<seq>.<epoch>`, `tlog/<seq>.<epoch>`,
//! `manifest.xml`, checkpoints under `mds/` (byte layout in `engine/FORMATS.md`).

mod bounded_get;
mod handover;
pub(crate) mod keys;
pub(crate) mod manifest;
mod restore;
pub(in crate::volume) mod tlog_object;
mod upload;

pub(in crate::volume) use self::bounded_get::{get_at_most, MAX_TLOG_OBJECT_LEN};
pub(crate) use self::restore::{remove_local_state, restore_interrupted};

use crate::error::Error;
use crate::volume::format::Entry;
use manifest::Manifest;

/// What the pipeline knows of the backend copy of one volume.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    pub(super) loaded: bool,
    pub(super) manifest: Option<Manifest>,
    pub(super) etag: Option<String>,
    /// Another gateway wrote the manifest since this one read it (a take-over): this run
    /// writes it no more and deletes nothing of the volume.
    pub(super) deposed: Option<String>,
}

/// What one [`Volume::backup`](crate::volume::Volume::backup) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BackupReport {
    /// TLogs uploaded.
    pub tlogs: u64,
    /// SCOs uploaded.
    pub scos: u64,
    /// Bytes uploaded (SCOs, TLogs and manifest).
    pub bytes: u64,
    /// The newest TLog the backend manifest names after the call.
    pub last_tlog: Option<u64>,
    /// Why the metadata checkpoint due in this call failed (the backup itself succeeded).
    pub checkpoint_error: Option<String>,
    /// Why putting or deleting snapshot records failed (the backup itself succeeded).
    pub snapshot_error: Option<String>,
}

/// A backend error as the engine reports it (a refused conditional write names the other
/// writer).
pub(in crate::volume) fn be_err(what: &str, e: strata_backend::Error) -> Error {
    match e {
        strata_backend::Error::NoSpace => Error::NoSpace,
        e if e.is_condition_failed() => Error::Backend {
            what: format!("{what}: the manifest was changed by another writer"),
            source: e,
        },
        e => Error::Backend {
            what: what.to_string(),
            source: e,
        },
    }
}

/// The SCOs a closed TLog seals (every SCO its clusters live in: a TLog covers whole SCOs).
pub(super) fn sealed_scos(entries: &[(u64, Entry)]) -> Vec<(u64, u32, u32)> {
    entries
        .iter()
        .filter_map(|(_, e)| match *e {
            Entry::ScoSealed { sco, clusters, crc } => Some((sco, clusters, crc)),
            _ => None,
        })
        .collect()
}
