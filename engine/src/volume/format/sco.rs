//! The SCO header (one whole cluster at offset 0) and footer (appended when the SCO is
//! sealed). Byte layout: `engine/FORMATS.md`, "SCO".

use super::{
    arr16, check_crc, check_start, check_version, le_u16, le_u32, le_u64, FormatError, VolumeId,
    CLUSTER_SIZE, CLUSTER_SIZE_U64, FORMAT_VERSION,
};
use crate::volume::int::{u32_of, usize_of};

/// Magic at offset 0 of an SCO.
pub(crate) const SCO_MAGIC: [u8; 8] = *b"STRATSCO";
/// Magic at offset 0 of an SCO footer.
pub(crate) const SCO_FOOTER_MAGIC: [u8; 8] = *b"STRSCOFT";
/// Bytes reserved for the SCO header: one whole cluster, so clusters stay page-aligned.
pub(crate) const SCO_HEADER_LEN: u64 = CLUSTER_SIZE_U64;
/// Meaningful bytes at the start of the SCO header (the rest of the header cluster is zero).
const SCO_HEADER_USED: usize = 44;
/// Bytes of the SCO footer appended when a SCO is sealed.
pub(crate) const SCO_FOOTER_LEN: usize = 32;
/// Bytes of the largest sealed SCO: header, [`MAX_SCO_CLUSTERS`] clusters, footer.
pub(crate) const MAX_SCO_LEN: u64 =
    SCO_HEADER_LEN + MAX_SCO_CLUSTERS as u64 * CLUSTER_SIZE_U64 + SCO_FOOTER_LEN as u64;
/// Most clusters one SCO may hold (`SCO_Size` is at most 1 GiB). Readers refuse a cluster
/// index, a cluster count or a footer beyond it, so no count read from disk or the backend can
/// make them allocate or read more than one such SCO.
pub(crate) const MAX_SCO_CLUSTERS: u32 = 1 << 18;

/// The header at the start of every SCO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScoHeader {
    /// The volume the SCO belongs to.
    pub volume: VolumeId,
    /// The SCO's sequence number (its name).
    pub seq: u64,
}

impl ScoHeader {
    /// Encodes the header as the full [`SCO_HEADER_LEN`] bytes written at offset 0.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; usize_of(SCO_HEADER_LEN)];
        b[0..8].copy_from_slice(&SCO_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 10..12 reserved (zero)
        b[12..16].copy_from_slice(&u32_of(CLUSTER_SIZE).to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header: the first [`SCO_HEADER_LEN`] bytes of `b` (magic,
    /// version, CRC, cluster size, and the zero padding the CRC does not cover).
    pub(crate) fn decode(what: &str, b: &[u8]) -> Result<ScoHeader, FormatError> {
        check_start(what, b, usize_of(SCO_HEADER_LEN), SCO_MAGIC)?;
        check_version(what, le_u16(b, 8), FORMAT_VERSION)?;
        check_crc(&format!("{what} header"), le_u32(b, 40), &b[0..40])?;
        let cs = le_u32(b, 12);
        if cs as usize != CLUSTER_SIZE {
            return Err(FormatError::Inconsistent {
                what: what.to_string(),
                reason: format!("cluster size {cs}, expected {CLUSTER_SIZE}"),
            });
        }
        // The rest of the header cluster is zero: the CRC does not cover it.
        let pad = &b[SCO_HEADER_USED..usize_of(SCO_HEADER_LEN)];
        if let Some(i) = pad.iter().position(|&x| x != 0) {
            return Err(FormatError::Inconsistent {
                what: format!("{what} header"),
                reason: format!(
                    "byte {} of the zero padding is not zero",
                    SCO_HEADER_USED + i
                ),
            });
        }
        Ok(ScoHeader {
            volume: VolumeId(arr16(b, 16)),
            seq: le_u64(b, 32),
        })
    }
}

/// The footer appended to a SCO when it is sealed (no more clusters will be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScoFooter {
    /// The SCO's sequence number.
    pub seq: u64,
    /// Clusters in the SCO.
    pub clusters: u32,
    /// CRC32C of all cluster bytes, in order (not the header).
    pub data_crc: u32,
}

impl ScoFooter {
    /// Byte offset of the footer in a SCO holding `clusters` clusters.
    pub(crate) fn offset(clusters: u32) -> u64 {
        SCO_HEADER_LEN + u64::from(clusters) * CLUSTER_SIZE_U64
    }

    /// Encodes the footer.
    pub(crate) fn encode(&self) -> [u8; SCO_FOOTER_LEN] {
        let mut b = [0u8; SCO_FOOTER_LEN];
        b[0..8].copy_from_slice(&SCO_FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.clusters.to_le_bytes());
        b[20..24].copy_from_slice(&self.data_crc.to_le_bytes());
        // 24..28 reserved (zero)
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a footer.
    pub(crate) fn decode(what: &str, b: &[u8]) -> Result<ScoFooter, FormatError> {
        let what = format!("{what} footer");
        check_start(&what, b, SCO_FOOTER_LEN, SCO_FOOTER_MAGIC)?;
        check_crc(&what, le_u32(b, 28), &b[0..28])?;
        let clusters = le_u32(b, 16);
        if clusters > MAX_SCO_CLUSTERS {
            return Err(FormatError::Inconsistent {
                what,
                reason: format!("{clusters} clusters, at most {MAX_SCO_CLUSTERS} allowed"),
            });
        }
        Ok(ScoFooter {
            seq: le_u64(b, 8),
            clusters,
            data_crc: le_u32(b, 20),
        })
    }
}
