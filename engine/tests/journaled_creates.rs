//! Creates made durable by the file journal (`namespace/redo.rs`) across machine crashes: redb
//! sits on [`CrashDisk`] (loses what no `sync_data` covered), the journal on a [`SimFs`] of its
//! own, so that each can be made to lose its unsynced bytes where a race would leave them.

use std::sync::Arc;
use std::time::Duration;

use strata_backend::{MemStore, ObjectStore};
use strata_engine::volume::{CrashMode, SimFs};
use strata_engine::*;

mod support;
use support::crash_disk::CrashDisk;
use support::create_in_root as create;

/// One machine: its redb disk, its journal disk, and a backend that outlives it.
struct Machine {
    _dir: tempfile::TempDir,
    config: EngineConfig,
    disk: CrashDisk,
    /// The disk the journal is on.
    journal: SimFs,
    /// A disk nothing is on: redb's power is tied to it instead of the journal's.
    idle: SimFs,
    store: Arc<MemStore>,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EngineConfig::new(dir.path());
        // The uploader never checkpoints redb by itself during a test.
        config.file_upload_delay = Duration::from_secs(3600);
        let m = Machine {
            _dir: dir,
            config,
            disk: CrashDisk::default(),
            journal: SimFs::new(),
            idle: SimFs::new(),
            store: Arc::new(MemStore::new()),
        };
        m.disk.revive(None, &m.idle);
        m
    }

    fn open(&self) -> Filesystem {
        let opts = OpenOptions {
            store: Some(self.store.clone() as Arc<dyn ObjectStore>),
            metadata_backend: Some(Box::new(self.disk.clone())),
            volume_fs: Some(Arc::new(self.journal.clone())),
        };
        Filesystem::open_with(self.config.clone(), opts).expect("start after a crash")
    }

    /// The machine dies: both disks lose what was not synced.
    fn crash(&self, fs: Filesystem) {
        self.journal.crash(CrashMode::DropAll);
        self.disk.crash();
        fs.crash();
        self.disk.revive(None, &self.idle);
    }
}

/// A create's record is appended and its redb transaction committed without an fsync; before
/// the journal's fsync, another operation's durable redb commit carries it (with
/// `meta.journal_lsn`), then the power goes: redb has the create and its LSN, the journal has
/// lost the record. The LSNs handed out after the restart must stay above it, or a later
/// create (acknowledged through the journal only) is skipped by the next replay and lost.
#[test]
fn a_create_durable_in_redb_but_not_in_the_journal_does_not_give_its_lsn_away() {
    let m = Machine::new();
    let fs = m.open();
    create(&fs, "a").expect("create a");
    // The journal's next fsync does not happen (the power cut that follows, as the machine
    // sees it); redb is on another disk and goes on.
    m.journal.cut_power_at_sync(0);
    assert!(create(&fs, "b").is_err(), "b's journal commit must fail");
    // A durable redb commit after b's: it carries b and b's LSN.
    fs.mkdir(fs.root(), b"d", 0o755, Cred::default())
        .expect("mkdir (redb only)");
    m.crash(fs);

    let fs = m.open();
    for name in ["a", "b", "d"] {
        fs.lookup(fs.root(), name.as_bytes())
            .unwrap_or_else(|e| panic!("{name} after the first crash: {e:?}"));
    }
    // Acknowledged once its record is durable in the journal; redb has it unsynced only.
    create(&fs, "c").expect("create c");
    m.crash(fs);

    let fs = m.open();
    fs.lookup(fs.root(), b"c")
        .expect("c was acknowledged: the restart must replay it");
}
