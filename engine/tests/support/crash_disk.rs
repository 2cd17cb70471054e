//! A redb storage backend that simulates a machine crash: everything not covered by a
//! `sync_data` is lost. It shares the power with the volumes' simulated disk ([`SimFs`]): when
//! either loses power, both do, as one machine.

use std::sync::Arc;

use parking_lot::Mutex;
use strata_backend::FaultyStore;
use strata_engine::volume::{self, SimFs};

#[derive(Debug, Default)]
struct DiskState {
    /// What reads see: durable image plus writes since the last sync.
    current: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    syncs: u64,
    /// Die when the sync with this number starts (it does not happen).
    die_at_sync: Option<u64>,
    dead: bool,
    /// Called when the disk dies (stops the object store too: the whole machine dies).
    on_death: Option<Arc<FaultyStore>>,
    /// The volumes' simulated local disk: it loses power with the metadata disk, and the
    /// metadata disk with it.
    volumes: Option<SimFs>,
}

impl DiskState {
    /// Dead, or the volumes' disk lost its power (the same machine).
    fn is_down(&self) -> bool {
        self.dead || self.volumes.as_ref().is_some_and(|v| v.power_is_cut())
    }
}

/// The crash-simulating redb storage (cloning shares the disk).
#[derive(Debug, Clone, Default)]
pub(crate) struct CrashDisk(Arc<Mutex<DiskState>>);

fn dead() -> std::io::Error {
    std::io::Error::other("machine crashed")
}

impl CrashDisk {
    /// Loses everything not synced and refuses all further I/O until revived.
    pub(crate) fn crash(&self) {
        let mut s = self.0.lock();
        s.dead = true;
        s.current = s.durable.clone();
        if let Some(f) = s.on_death.take() {
            f.set_failing(true);
        }
        if let Some(v) = &s.volumes {
            v.cut_power_after(0);
        }
    }

    /// After a machine crash: unsynced volume data is lost with the machine, like unsynced
    /// metadata; `store` dies with the machine the next time.
    pub(crate) fn revive(&self, store: Option<Arc<FaultyStore>>, volumes: &SimFs) {
        volumes.crash(volume::CrashMode::DropAll);
        self.revive_as_is(store, volumes);
    }

    /// After a crash (of the machine: `volumes` already crashed by the caller; or of the
    /// process only), the disk works again with what it holds now.
    pub(crate) fn revive_as_is(&self, store: Option<Arc<FaultyStore>>, volumes: &SimFs) {
        let mut s = self.0.lock();
        s.volumes = Some(volumes.clone());
        s.dead = false;
        s.die_at_sync = None;
        s.on_death = store;
    }

    /// Loses what is not synced (a machine crash), without touching the volumes' disk.
    pub(crate) fn drop_unsynced(&self) {
        let mut s = self.0.lock();
        s.current = s.durable.clone();
    }

    /// The machine dies when the `after`-th sync from now starts.
    pub(crate) fn arm(&self, after: u64) {
        let mut s = self.0.lock();
        s.die_at_sync = Some(s.syncs + after);
    }

    /// Whether the disk is dead.
    pub(crate) fn is_dead(&self) -> bool {
        self.0.lock().is_down()
    }
}

impl redb::StorageBackend for CrashDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        let s = self.0.lock();
        if s.is_down() {
            return Err(dead());
        }
        Ok(s.current.len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let s = self.0.lock();
        if s.is_down() {
            return Err(dead());
        }
        let start = offset as usize;
        let end = start + out.len();
        if end > s.current.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past end",
            ));
        }
        out.copy_from_slice(&s.current[start..end]);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut s = self.0.lock();
        if s.is_down() {
            return Err(dead());
        }
        s.current.resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut s = self.0.lock();
        if s.is_down() {
            return Err(dead());
        }
        s.syncs += 1;
        if s.die_at_sync == Some(s.syncs) {
            drop(s);
            self.crash();
            return Err(dead());
        }
        s.durable = s.current.clone();
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut s = self.0.lock();
        if s.is_down() {
            return Err(dead());
        }
        let start = offset as usize;
        let end = start + data.len();
        if end > s.current.len() {
            s.current.resize(end, 0);
        }
        s.current[start..end].copy_from_slice(data);
        Ok(())
    }
}
