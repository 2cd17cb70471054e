//! The MetaDataStore: where each cluster of a volume lives (SCO, offset, hash), the sealed SCOs
//! and the size.
//!
//! - `store`: the on-disk part, one redb database per volume (`mds.redb`), holding the effect
//!   of every TLog already on the backend.
//! - `cork`: the in-memory part on top of it, the effect of TLogs not yet on the backend, and
//!   uncorking (applying them to redb once the manifest names them); `ranges`: sets of address
//!   ranges (the holes an unmap not yet applied made, reserved ranges).
//! - `db`: the redb database and the snapshot lookups share; `map_cache`: decoded pages of the
//!   map shared by every volume (`Map_Cache_Size`), kept true by `db`'s commits.
//! - `checkpoint`: paged, incremental copies of the store on the backend, from which a backend
//!   restart starts.
//! - `snapshots`: the snapshot tables (records, names, where each stands on the backend).
//! - `lineage`: the clone tables (the volumes a clone reads from, the template mark).
//! - `liveness`: which superseded clusters a snapshot or a clone still reads, which are dead.
//! - `reserved`: the ranges ALLOCATE reserved (local accounting).
//! - `recount`: replaying old TLogs to find what they superseded before liveness was kept.
//! - `compaction`: the compacted objects of scrubbed SCOs, objects marked for deletion, the
//!   scrubber's totals; `tlog_compaction`: the compacted objects of scrubbed TLogs.
//!
//! Byte layouts: `engine/FORMATS.md`, "MetaDataStore" and "Metadata checkpoints".

pub(crate) mod checkpoint;
pub(crate) mod compaction;
pub(crate) mod cork;
pub(crate) mod db;
pub(crate) mod lineage;
pub(crate) mod liveness;
pub(crate) mod map_cache;
pub(crate) mod ranges;
pub(crate) mod recount;
pub(crate) mod reserved;
pub(crate) mod snapshots;
pub(crate) mod store;
pub(crate) mod tlog_compaction;
