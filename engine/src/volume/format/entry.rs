//! One 48-byte TLog entry: a cluster written or remapped, a SCO sealed, a resize, clusters
//! unmapped, the TLog closed. Byte
//! layout: `engine/FORMATS.md`, "TLog entries".

use super::sco::MAX_SCO_CLUSTERS;
use super::tlog::TLOG_ENTRY_LEN;
use super::{arr16, check_crc, check_len, le_u32, le_u64, ClusterHash, FormatError, HashAlg};

/// One TLog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Cluster `address` of the volume now lives at cluster `offset` of SCO `sco`; `hash` is
    /// the hash of its 4 KiB.
    Cluster {
        /// Cluster address in the volume (byte offset / 4096).
        address: u64,
        /// SCO sequence number.
        sco: u64,
        /// Cluster index inside the SCO.
        offset: u32,
        /// The hash of the cluster's content.
        hash: ClusterHash,
    },
    /// SCO `sco` was sealed with `clusters` clusters whose CRC32C is `crc`; its bytes were
    /// fsynced before this entry was written.
    ScoSealed {
        /// SCO sequence number.
        sco: u64,
        /// Clusters in the SCO.
        clusters: u32,
        /// CRC32C of the SCO's cluster bytes.
        crc: u32,
    },
    /// The volume's size became `size` bytes; clusters at or beyond `ceil(size / 4096)` are
    /// dropped.
    Resize {
        /// New size in bytes.
        size: u64,
    },
    /// Cluster `address` of the volume now lives at cluster `offset` of SCO `sco`, which an
    /// earlier entry logged (in a sealed SCO, or earlier in the open one): nothing is written
    /// to a SCO (a rollback points clusters back at the data a snapshot saw).
    Remap {
        /// Cluster address in the volume.
        address: u64,
        /// SCO sequence number.
        sco: u64,
        /// Cluster index inside the SCO.
        offset: u32,
        /// The hash of the cluster's content.
        hash: ClusterHash,
    },
    /// Clusters `address .. address + count` read as zeros from now on: their locations are
    /// superseded and nothing is written to a SCO (a discard, or whole clusters of zeros).
    Unmap {
        /// First cluster address.
        address: u64,
        /// Clusters unmapped (at least 1).
        count: u64,
    },
    /// The TLog is closed; `crc` is the CRC32C of every byte of the TLog before this entry
    /// (header included). Nothing follows it.
    TlogClosed {
        /// CRC32C of the TLog up to this entry.
        crc: u32,
    },
}

const KIND_CLUSTER: u8 = 1;
const KIND_SCO_SEALED: u8 = 2;
const KIND_RESIZE: u8 = 3;
const KIND_TLOG_CLOSED: u8 = 4;
const KIND_REMAP: u8 = 5;
const KIND_UNMAP: u8 = 6;

impl Entry {
    /// Encodes the entry, CRC included.
    pub(crate) fn encode(&self) -> [u8; TLOG_ENTRY_LEN] {
        let mut b = [0u8; TLOG_ENTRY_LEN];
        match *self {
            Entry::Cluster {
                address,
                sco,
                offset,
                hash,
            } => {
                b[0] = KIND_CLUSTER;
                b[4..8].copy_from_slice(&offset.to_le_bytes());
                b[8..16].copy_from_slice(&address.to_le_bytes());
                b[16..24].copy_from_slice(&sco.to_le_bytes());
                b[24..40].copy_from_slice(hash.digest());
                b[40..44].copy_from_slice(&u32::from(hash.alg().code()).to_le_bytes());
            }
            Entry::Remap {
                address,
                sco,
                offset,
                hash,
            } => {
                b[0] = KIND_REMAP;
                b[4..8].copy_from_slice(&offset.to_le_bytes());
                b[8..16].copy_from_slice(&address.to_le_bytes());
                b[16..24].copy_from_slice(&sco.to_le_bytes());
                b[24..40].copy_from_slice(hash.digest());
                b[40..44].copy_from_slice(&u32::from(hash.alg().code()).to_le_bytes());
            }
            Entry::ScoSealed { sco, clusters, crc } => {
                b[0] = KIND_SCO_SEALED;
                b[4..8].copy_from_slice(&clusters.to_le_bytes());
                b[16..24].copy_from_slice(&sco.to_le_bytes());
                b[40..44].copy_from_slice(&crc.to_le_bytes());
            }
            Entry::Resize { size } => {
                b[0] = KIND_RESIZE;
                b[8..16].copy_from_slice(&size.to_le_bytes());
            }
            Entry::Unmap { address, count } => {
                b[0] = KIND_UNMAP;
                b[8..16].copy_from_slice(&address.to_le_bytes());
                b[16..24].copy_from_slice(&count.to_le_bytes());
            }
            Entry::TlogClosed { crc } => {
                b[0] = KIND_TLOG_CLOSED;
                b[40..44].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies one entry (`what` names it in errors).
    pub(crate) fn decode(what: &str, b: &[u8]) -> Result<Entry, FormatError> {
        check_len(what, b, TLOG_ENTRY_LEN)?;
        check_crc(what, le_u32(b, 44), &b[0..44])?;
        let bad = |reason: &str| FormatError::Inconsistent {
            what: what.to_string(),
            reason: reason.to_string(),
        };
        if b[1..4] != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        // Field d of a Cluster or Remap entry: the hash's algorithm.
        let hash_at = |b: &[u8]| match HashAlg::from_code(le_u32(b, 40)) {
            Some(alg) => Ok(ClusterHash::from_parts(alg, arr16(b, 24))),
            None => Err(bad(&format!("unknown hash algorithm {}", le_u32(b, 40)))),
        };
        // Field a: a cluster index (below the limit) or a cluster count (up to it).
        let a = le_u32(b, 4);
        Ok(match b[0] {
            KIND_CLUSTER | KIND_REMAP if a >= MAX_SCO_CLUSTERS => {
                return Err(bad(&format!(
                    "cluster index {a} in a SCO, at most {} allowed",
                    MAX_SCO_CLUSTERS - 1
                )))
            }
            KIND_SCO_SEALED if a > MAX_SCO_CLUSTERS => {
                return Err(bad(&format!(
                    "SCO sealed with {a} clusters, at most {MAX_SCO_CLUSTERS} allowed"
                )))
            }
            KIND_CLUSTER => Entry::Cluster {
                offset: a,
                address: le_u64(b, 8),
                sco: le_u64(b, 16),
                hash: hash_at(b)?,
            },
            KIND_REMAP => Entry::Remap {
                offset: a,
                address: le_u64(b, 8),
                sco: le_u64(b, 16),
                hash: hash_at(b)?,
            },
            KIND_SCO_SEALED => Entry::ScoSealed {
                clusters: a,
                sco: le_u64(b, 16),
                crc: le_u32(b, 40),
            },
            KIND_RESIZE => Entry::Resize { size: le_u64(b, 8) },
            KIND_UNMAP => {
                let (address, count) = (le_u64(b, 8), le_u64(b, 16));
                if a != 0 || count == 0 || address.checked_add(count).is_none() {
                    return Err(bad(&format!(
                        "unmap of {count} clusters at {address} (field a {a})"
                    )));
                }
                Entry::Unmap { address, count }
            }
            KIND_TLOG_CLOSED => Entry::TlogClosed { crc: le_u32(b, 40) },
            k => return Err(bad(&format!("unknown entry kind {k}"))),
        })
    }
}
