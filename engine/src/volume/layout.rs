//! A volume's local directory: the one place that knows its names.
//!
//! ```text
//! <volume dir>/
//!   sco/<seq>            a SCO (whole, or an evicted SCO's header stub); <seq> is 16 hex digits
//!   sco/<seq>.evicting   the stub an eviction is writing, renamed over the SCO once durable
//!   tlog/<seq>           a TLog not yet applied to the MetaDataStore
//!   mds.redb             the MetaDataStore
//!   wal                  the write-ahead log of small commits (`volume/wal/`)
//!   wal.new              a write-ahead log being created, renamed to `wal` once durable
//!   restoring            present while a backend restart writes the directory
//!   rolling-back         present while a rollback appends its entries (the TLog it started
//!                        in and the first SCO it made): a restart cuts them off
//!   rollback/            the volume as of the snapshot a rollback goes back to (sco/, tlog/,
//!                        mds.redb), rebuilt from the backend; removed once used
//! ```
//!
//! File names inside `sco/` and `tlog/` are [`format::sco_name`](super::format::sco_name) and
//! friends (the same names the objects have on the backend).

use std::path::{Path, PathBuf};

/// The SCO directory's name.
const SCO_DIR: &str = "sco";
/// The TLog directory's name.
const TLOG_DIR: &str = "tlog";
/// The MetaDataStore's file name (a redb database).
pub(crate) const MDS_FILE: &str = "mds.redb";
/// Marker file in a volume directory while a backend restart writes it: a restart that finds it
/// throws the half-written state away and restores again.
pub const RESTORE_MARKER: &str = "restoring";

/// `<dir>/sco`.
pub(crate) fn sco_dir(dir: &Path) -> PathBuf {
    dir.join(SCO_DIR)
}

/// `<dir>/tlog`.
pub(crate) fn tlog_dir(dir: &Path) -> PathBuf {
    dir.join(TLOG_DIR)
}

/// `<dir>/mds.redb`.
pub(crate) fn mds_path(dir: &Path) -> PathBuf {
    dir.join(MDS_FILE)
}

/// `<dir>/restoring`.
pub(crate) fn restore_marker(dir: &Path) -> PathBuf {
    dir.join(RESTORE_MARKER)
}

/// `<dir>/rolling-back`.
pub(crate) fn rollback_marker(dir: &Path) -> PathBuf {
    dir.join("rolling-back")
}

/// `<dir>/rollback`.
pub(crate) fn rollback_dir(dir: &Path) -> PathBuf {
    dir.join("rollback")
}

/// `<dir>/wal`: the write-ahead log of small commits.
pub(crate) fn wal_path(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// `<dir>/wal.new`: a write-ahead log being created.
pub(crate) fn wal_tmp_path(dir: &Path) -> PathBuf {
    dir.join("wal.new")
}
