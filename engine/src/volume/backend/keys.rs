//! The keys of a volume's data objects, and the upload epochs that make them unique per writer.
//!
//! Every SCO and TLog is uploaded under a key that carries the owner epoch of the run that
//! uploaded it (`sco/<seq>.<epoch>`, `tlog/<seq>.<epoch>`, 16 lowercase hex digits each): two
//! gateways that both believe they own the backend never write the same key, a deposed owner
//! cannot overwrite what the new owner wrote, and every data PUT is safe to retry. A run
//! uploads a TLog and the SCOs it seals under its own epoch, so the epoch of a TLog's objects
//! is a property of the TLog; [`Epochs`] records it as ranges of TLogs (one range per run that
//! uploaded something), in the manifest and in the MetaDataStore. Epoch 0 stands for the keys
//! of volumes uploaded before epochs existed (no suffix). Byte layout in `engine/FORMATS.md`.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::volume::format::{sco_name, tlog_name};
use crate::volume::state::Volume;

/// The backend key of SCO `seq` uploaded in `epoch`.
pub(in crate::volume) fn sco_key(seq: u64, epoch: u64) -> String {
    format!("sco/{}{}", sco_name(seq), epoch_suffix(epoch))
}

/// The backend key of TLog `seq` uploaded in `epoch`.
pub(in crate::volume) fn tlog_key(seq: u64, epoch: u64) -> String {
    format!("tlog/{}{}", tlog_name(seq), epoch_suffix(epoch))
}

/// Where snapshot records are, in a volume's namespace.
pub(in crate::volume) const SNAP_PREFIX: &str = "snap/";

/// The backend key of snapshot `id`'s record, put in `epoch`: `snap/<id>.<epoch>`.
pub(in crate::volume) fn snap_key(id: u64, epoch: u64) -> String {
    format!("{SNAP_PREFIX}{id:016x}.{epoch:016x}")
}

/// The id and epoch of a snapshot record's key ([`snap_key`]).
pub(in crate::volume) fn parse_snap_key(key: &str) -> Option<(u64, u64)> {
    let (id, epoch) = key.strip_prefix(SNAP_PREFIX)?.split_once('.')?;
    let hex = crate::volume::format::parse_seq_name;
    Some((hex(id)?, hex(epoch)?))
}

/// `.<epoch as 16 hex>`, or nothing for epoch 0 (keys from before epochs).
pub(in crate::volume) fn epoch_suffix(epoch: u64) -> String {
    if epoch == 0 {
        String::new()
    } else {
        format!(".{epoch:016x}")
    }
}

/// Which epoch uploaded each TLog: ranges `(first TLog, epoch)`, both strictly ascending; a
/// range runs up to the next one's first TLog. TLogs before the first range are epoch 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Epochs(Vec<(u64, u64)>);

impl Epochs {
    /// Checks ranges read from the manifest or the MetaDataStore: first TLogs and epochs
    /// strictly ascending, neither 0.
    pub(in crate::volume) fn new(ranges: Vec<(u64, u64)>) -> Result<Epochs, String> {
        let mut prev = (0u64, 0u64);
        for &(first, epoch) in &ranges {
            if first == 0 || epoch == 0 {
                return Err(format!("epoch range ({first}, {epoch}) names 0"));
            }
            if first <= prev.0 || epoch <= prev.1 {
                return Err(format!(
                    "epoch ranges not ascending: ({}, {}) then ({first}, {epoch})",
                    prev.0, prev.1
                ));
            }
            prev = (first, epoch);
        }
        Ok(Epochs(ranges))
    }

    /// The ranges, ascending.
    pub(in crate::volume) fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// The epoch TLog `tlog` (and the SCOs it seals) was uploaded in.
    pub(in crate::volume) fn of(&self, tlog: u64) -> u64 {
        let i = self.0.partition_point(|&(first, _)| first <= tlog);
        if i == 0 {
            0
        } else {
            self.0[i - 1].1
        }
    }

    /// Records that TLogs from `first` on (past every TLog named so far) are uploaded in
    /// `epoch` (this run's): nothing changes when the last range already is `epoch`. An epoch
    /// below the last one recorded is refused: the owner's epoch went back, and keys of that
    /// epoch could be written twice. Returns whether anything changed.
    pub(in crate::volume) fn upload_from(&mut self, first: u64, epoch: u64) -> Result<bool> {
        match self.0.last() {
            Some(&(_, e)) if e == epoch => return Ok(false),
            Some(&(f, e)) if e > epoch || f >= first => {
                return Err(Error::Io(format!(
                    "uploading TLogs from {first} in epoch {epoch}, but TLogs from {f} were \
                     uploaded in epoch {e}: the owner's epoch went back; refusing to upload"
                )))
            }
            _ => {}
        }
        self.0.push((first, epoch));
        Ok(true)
    }

    /// Whether `other` says the same epoch as this for every TLog up to `last`.
    pub(in crate::volume) fn agrees_up_to(&self, other: &Epochs, last: u64) -> bool {
        std::iter::once(1)
            .chain(self.0.iter().chain(other.0.iter()).map(|r| r.0))
            .filter(|t| *t <= last)
            .all(|t| self.of(t) == other.of(t))
    }
}

impl Volume {
    /// The owner epoch of this run (what this volume uploads carries it in its keys).
    pub(in crate::volume) fn writer_epoch(&self) -> u64 {
        self.writer_epoch.load(Ordering::Relaxed)
    }

    /// Takes the epochs of a manifest just read: they must agree with those recorded for every
    /// TLog this volume knows is on the backend (its SCOs may be evicted, and their keys were
    /// found from the recorded epochs); otherwise another writer changed the manifest.
    pub(in crate::volume) fn adopt_epochs(&self, epochs: &Epochs, named_last: u64) -> Result<()> {
        let known = self.state.read().backend_tlog.min(named_last);
        if !self.epochs.read().agrees_up_to(epochs, known) {
            return Err(Error::Io(format!(
                "the backend manifest gives other upload epochs than this volume recorded for \
                 the TLogs up to {known}: another writer changed it; refusing to upload"
            )));
        }
        self.record_epochs(epochs)
    }

    /// Makes `epochs` (those of a manifest just read or written) the volume's, durably in the
    /// MetaDataStore first: SCOs of the TLogs they name may be evicted from then on, and their
    /// keys must outlive a crash.
    pub(in crate::volume) fn record_epochs(&self, epochs: &Epochs) -> Result<()> {
        if *self.epochs.read() == *epochs {
            return Ok(());
        }
        self.mds.set_upload_epochs(epochs)?;
        *self.epochs.write() = epochs.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_epoch_except_before_epochs() {
        assert_eq!(sco_key(3, 0), "sco/0000000000000003");
        assert_eq!(sco_key(3, 5), "sco/0000000000000003.0000000000000005");
        assert_eq!(tlog_key(0x1a, 2), "tlog/000000000000001a.0000000000000002");
        let k = snap_key(9, 3);
        assert_eq!(k, "snap/0000000000000009.0000000000000003");
        assert_eq!(parse_snap_key(&k), Some((9, 3)));
        for bad in [
            "snap/9.3",
            "snap/0000000000000009",
            "sco/0000000000000009.0000000000000003",
        ] {
            assert_eq!(parse_snap_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_answer_and_grow_once_per_epoch() {
        let mut e = Epochs::default();
        assert_eq!(e.of(7), 0);
        assert_eq!(e.upload_from(4, 2).ok(), Some(true));
        assert_eq!(
            e.upload_from(9, 2).ok(),
            Some(false),
            "the same epoch goes on"
        );
        assert_eq!((e.of(3), e.of(4), e.of(100)), (0, 2, 2));
        assert_eq!(e.upload_from(10, 5).ok(), Some(true));
        assert_eq!((e.of(9), e.of(10)), (2, 5));
        assert_eq!(e.ranges(), &[(4, 2), (10, 5)]);
        // An epoch that went back is refused, and so is a range that would not start later.
        assert!(e.upload_from(20, 4).is_err());
        assert!(e.upload_from(10, 6).is_err());
        assert_eq!(e.ranges(), &[(4, 2), (10, 5)]);
        // Agreement up to a TLog.
        let other = Epochs::new(vec![(4, 2), (12, 5)]).expect("ranges");
        assert!(e.agrees_up_to(&other, 9));
        assert!(!e.agrees_up_to(&other, 10));
        assert!(!e.agrees_up_to(&Epochs::default(), 4));
        assert!(e.agrees_up_to(&Epochs::default(), 3));
        assert!(Epochs::new(vec![(4, 2), (10, 6)]).is_ok());
        for bad in [
            vec![(0, 1)],
            vec![(1, 0)],
            vec![(4, 2), (4, 3)],
            vec![(4, 2), (5, 2)],
        ] {
            assert!(Epochs::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
