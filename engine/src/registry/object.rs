//! An open volume as the facade's [`ObjectData`]: reads, writes and resizes admitted by the
//! pacing, COMMIT.

use std::sync::Arc;

use super::open_volume::OpenVolume;
use super::VolumeRegistry;
use crate::data::{Commit, ObjectData, Persist};
use crate::error::{Error, Result};

/// Gives a write's reservation back to the backlog's in-flight count when dropped.
struct InFlight<'a> {
    backlog: &'a super::backlog::Backlog,
    len: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.backlog.complete(self.len);
    }
}

/// A volume as the facade's [`ObjectData`].
#[derive(Debug)]
pub(crate) struct VolumeObject {
    data: Arc<OpenVolume>,
    volumes: std::sync::Weak<VolumeRegistry>,
}

impl VolumeObject {
    /// The object data of an open volume.
    pub(crate) fn new(data: Arc<OpenVolume>, volumes: &Arc<VolumeRegistry>) -> VolumeObject {
        VolumeObject {
            data,
            volumes: Arc::downgrade(volumes),
        }
    }
}

impl VolumeObject {
    /// Admits a change that adds at most `cost` bytes to the backlog: paced above the soft mark,
    /// waiting for room at the hard mark. Returns the reservation, given back to the in-flight
    /// count when dropped (once the change is in the volume's files, failed, or panicked);
    /// `Delay` when the buffer is full and the backend made no progress for
    /// `Backend_Stall_Timeout` (an outage: the client retries later, NFS3ERR_JUKEBOX /
    /// NFS4ERR_DELAY).
    fn admit(&self, cost: u64) -> Result<InFlight<'_>> {
        let d = &self.data;
        let reserved = std::cell::Cell::new(0);
        let admitted = d.pacer.admit(
            cost,
            || d.backlog.estimate(d.vol.uploaded_bytes()),
            || d.vol.uploaded_bytes(),
            |len, hard| {
                let r = d.backlog.reserve(len, hard, d.vol.uploaded_bytes());
                if r.is_some() {
                    reserved.set(len);
                }
                r
            },
            |t| d.backlog.wait_for_room(t),
        );
        if admitted == super::pacing::Admit::Refuse {
            return Err(Error::Delay);
        }
        Ok(InFlight {
            backlog: &d.backlog,
            len: reserved.get(),
        })
    }
}

impl ObjectData for VolumeObject {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        self.data.vol.read_to_end(offset, buf)
    }

    fn write(&self, offset: u64, data: &[u8], _mtime: crate::types::Timestamp) -> Result<()> {
        let d = &self.data;
        let _in_flight = self.admit(super::backlog::write_cost(
            offset,
            data,
            d.vol.options(),
            d.vol.zero_detect(),
        ))?;
        d.vol.write(offset, data, false)
    }

    fn truncate(&self, new_size: u64, persist: Persist<'_>) -> Result<()> {
        // A resize logs an entry, and a shrink to a partial cluster rewrites that cluster: paced
        // and reserved like a write of nothing (one cluster of slack).
        {
            let _in_flight =
                self.admit(super::backlog::cost(new_size, 0, self.data.vol.options()))?;
            self.data.vol.resize(new_size)?;
        }
        self.data.vol.sync()?;
        persist(&Commit {
            size: new_size,
            ..Commit::default()
        })
    }

    fn sync(&self, persist: Persist<'_>) -> Result<()> {
        // The volume's fsyncs are the durability point; the namespace only caches the size.
        self.data.vol.commit()?;
        persist(&Commit {
            size: self.data.vol.size(),
            lazy: true,
            ..Commit::default()
        })
    }

    fn punch(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()> {
        {
            // Logs an entry and rewrites at most two partial clusters: paced like a write of
            // two clusters.
            let d = &self.data;
            let _in_flight = self.admit(super::backlog::cost(offset, 0, d.vol.options()))?;
            d.vol.punch(offset, len)?;
        }
        persist(&Commit {
            size: self.data.vol.size(),
            lazy: true,
            ..Commit::default()
        })
    }

    fn allocate(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()> {
        {
            let d = &self.data;
            let _in_flight = self.admit(super::backlog::cost(offset, 0, d.vol.options()))?;
            d.vol.allocate(offset, len)?;
        }
        persist(&Commit {
            size: self.data.vol.size(),
            ..Commit::default()
        })
    }

    fn seek(&self, offset: u64, what: crate::types::SeekWhat) -> Result<Option<u64>> {
        self.data.vol.seek(offset, what)
    }

    fn size(&self) -> u64 {
        self.data.vol.size()
    }

    fn space_used(&self) -> u64 {
        self.data.vol.space_used()
    }

    fn is_dirty(&self) -> bool {
        self.data.vol.is_dirty()
    }

    fn delete(&self) -> Result<()> {
        match self.volumes.upgrade() {
            Some(v) => v.delete(self.data.ino),
            None => Err(Error::Io("volume registry gone".into())),
        }
    }
}
