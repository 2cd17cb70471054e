//! The identity of a volume.

use std::fmt;

/// The 16-byte identity of a volume, written in every SCO and TLog header. It keys the
/// volume's backend namespace (never its file name), so volumes can be renamed freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct VolumeId(pub [u8; 16]);

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
