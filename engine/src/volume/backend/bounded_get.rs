//! Whole reads of backend objects whose size the format bounds: the object's size is asked
//! first (`head`), so an object far larger than its kind may be (damage, or someone else's
//! data under our keys) is an error instead of an allocation of whatever size it has.

use bytes::Bytes;
use strata_backend::{Error as BackendError, ObjectMeta, ObjectStore};

use crate::volume::format::{CLUSTER_SIZE_U64, MAX_TLOG_LEN};
use crate::volume::mds::checkpoint::PAGE_CLUSTERS;
use crate::volume::options::MAX_VOLUME_SIZE;

/// Largest manifest read: 1 MiB (one is a few hundred bytes today).
pub(super) const MAX_MANIFEST_LEN: u64 = 1 << 20;
/// Largest TLog read from the backend: as for a local one.
pub(in crate::volume) const MAX_TLOG_OBJECT_LEN: u64 = MAX_TLOG_LEN;
/// Largest checkpoint page: header (36), page number and count (12), 65,536 entries of 36
/// bytes, CRC (4).
pub(super) const MAX_PAGE_LEN: u64 = 36 + 12 + 36 * PAGE_CLUSTERS + 4;
/// Largest checkpoint index: header (36), size, mapped and count (24), one 16-byte entry per
/// page of the largest volume (2^22 pages), CRC (4): 64 MiB.
pub(super) const MAX_INDEX_LEN: u64 =
    36 + 24 + 16 * (MAX_VOLUME_SIZE / CLUSTER_SIZE_U64 / PAGE_CLUSTERS) + 4;

/// Reads object `key` whole if it is at most `max` bytes; a larger one is an I/O error naming
/// both sizes. (An object replaced by a larger one between the two calls is caught after the
/// read; only the manifest is ever replaced.)
pub(in crate::volume) async fn get_at_most(
    store: &dyn ObjectStore,
    key: &str,
    max: u64,
) -> strata_backend::Result<(Bytes, ObjectMeta)> {
    let meta = store.head(key).await?;
    if meta.size > max {
        return Err(too_large(key, meta.size, max));
    }
    let (b, meta) = store.get(key).await?;
    if b.len() as u64 > max {
        return Err(too_large(key, b.len() as u64, max));
    }
    Ok((b, meta))
}

fn too_large(key: &str, size: u64, max: u64) -> BackendError {
    BackendError::Io {
        key: key.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{size} bytes, more than the {max} such an object may hold"),
        ),
    }
}
