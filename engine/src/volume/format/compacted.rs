//! A compacted SCO: the positions of a SCO that some view still reads, under the same names
//! (SCO sequence, cluster index), packed without the dead ones. The scrubber writes one in
//! place of a SCO whose live fraction fell below `Scrub_Threshold`; readers map an index to
//! its place with the header's list. Layout (`FORMATS.md`, "Compacted SCO"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `STRSCOCP` |
//! | 8 | 2 | version 1 |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | cluster size 4096 |
//! | 16 | 16 | volume id |
//! | 32 | 8 | SCO sequence number |
//! | 40 | 4 | clusters of the original SCO, n |
//! | 44 | 4 | positions kept, k (1 ≤ k ≤ n) |
//! | 48 | 4·k | the kept indexes, strictly ascending, each < n |
//! | 48 + 4·k | 4 | CRC32C of bytes 0 .. 48 + 4·k |
//! | … | | zeros up to H, the next multiple of 4096 |
//! | H + 4096·j | 4096 | the cluster of the j-th kept index |
//! | H + 4096·k | 4 | CRC32C of the k·4096 cluster bytes |

use super::{
    check_crc, check_len, check_start, check_version, le_u16, le_u32, le_u64, FormatError,
    VolumeId, CLUSTER_SIZE, MAX_SCO_CLUSTERS,
};

const MAGIC: [u8; 8] = *b"STRSCOCP";
const VERSION: u16 = 1;
/// Bytes before the index list.
const FIXED: usize = 48;

/// The header of a compacted SCO: which positions it keeps, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompactedHeader {
    pub(crate) volume: VolumeId,
    pub(crate) sco: u64,
    /// Clusters of the original SCO.
    pub(crate) clusters: u32,
    /// The kept indexes, strictly ascending.
    pub(crate) kept: Vec<u32>,
}

impl CompactedHeader {
    /// The header's length with `k` positions kept (a multiple of 4096).
    pub(crate) fn len_for(k: usize) -> usize {
        (FIXED + 4 * k + 4).div_ceil(CLUSTER_SIZE) * CLUSTER_SIZE
    }

    /// Where the cluster of index `idx` is in the object, if kept.
    pub(crate) fn offset_of(&self, idx: u32) -> Option<u64> {
        let j = self.kept.binary_search(&idx).ok()?;
        Some((Self::len_for(self.kept.len()) + j * CLUSTER_SIZE) as u64)
    }

    /// The whole object: this header, then `clusters` (k·4096 bytes, in kept order), then
    /// their CRC.
    pub(crate) fn encode_object(&self, clusters: &[u8]) -> Vec<u8> {
        let h = Self::len_for(self.kept.len());
        let mut b = Vec::with_capacity(h + clusters.len() + 4);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&4096u32.to_le_bytes());
        b.extend_from_slice(&self.volume.0);
        b.extend_from_slice(&self.sco.to_le_bytes());
        b.extend_from_slice(&self.clusters.to_le_bytes());
        let k = u32::try_from(self.kept.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&k.to_le_bytes());
        for i in &self.kept {
            b.extend_from_slice(&i.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.resize(h, 0);
        b.extend_from_slice(clusters);
        b.extend_from_slice(&crc32c::crc32c(clusters).to_le_bytes());
        b
    }

    /// How many bytes of the object to read to decode its header, given its first 4096.
    pub(crate) fn needed(what: &str, first: &[u8]) -> Result<usize, FormatError> {
        check_len(what, first, FIXED)?;
        let k = le_u32(first, 44);
        if k > MAX_SCO_CLUSTERS {
            return Err(FormatError::Inconsistent {
                what: what.into(),
                reason: format!("{k} positions kept, at most {MAX_SCO_CLUSTERS}"),
            });
        }
        Ok(FIXED + 4 * k as usize + 4)
    }

    /// Decodes and checks a header read from the start of the object (`b` holds at least
    /// [`CompactedHeader::needed`] bytes), for SCO `sco` of `volume`.
    pub(crate) fn decode(
        what: &str,
        b: &[u8],
        volume: VolumeId,
        sco: u64,
    ) -> Result<CompactedHeader, FormatError> {
        let need = Self::needed(what, b)?;
        check_start(what, b, need, MAGIC)?;
        check_crc(what, le_u32(b, need - 4), &b[..need - 4])?;
        check_version(what, le_u16(b, 8), VERSION)?;
        let bad = |reason: String| FormatError::Inconsistent {
            what: what.into(),
            reason,
        };
        if le_u32(b, 12) as usize != CLUSTER_SIZE {
            return Err(bad(format!("cluster size {}", le_u32(b, 12))));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[16..32]);
        if VolumeId(id) != volume || le_u64(b, 32) != sco {
            return Err(bad(format!(
                "names volume {} SCO {}, expected {volume} SCO {sco}",
                VolumeId(id),
                le_u64(b, 32)
            )));
        }
        let n = le_u32(b, 40);
        let k = le_u32(b, 44) as usize;
        if n > MAX_SCO_CLUSTERS || k == 0 || k > n as usize {
            return Err(bad(format!("{k} of {n} positions kept")));
        }
        let kept: Vec<u32> = (0..k).map(|j| le_u32(b, FIXED + 4 * j)).collect();
        if kept.windows(2).any(|w| w[0] >= w[1]) || kept.last().is_some_and(|l| *l >= n) {
            return Err(bad("kept indexes not strictly ascending below n".into()));
        }
        Ok(CompactedHeader {
            volume,
            sco,
            clusters: n,
            kept,
        })
    }

    /// Checks a whole object read back (`b`) against this header: its length and the data
    /// CRC; returns the cluster bytes.
    pub(crate) fn clusters_of<'a>(&self, what: &str, b: &'a [u8]) -> Result<&'a [u8], FormatError> {
        let h = Self::len_for(self.kept.len());
        let len = h + self.kept.len() * CLUSTER_SIZE + 4;
        if b.len() != len {
            return Err(FormatError::Inconsistent {
                what: what.into(),
                reason: format!("{} bytes, expected {len}", b.len()),
            });
        }
        let data = &b[h..len - 4];
        check_crc(what, le_u32(b, len - 4), data)?;
        Ok(data)
    }
}

/// The key of SCO `seq`'s compacted object: `sco/<seq>.<epoch>.<writer>.<counter>` (16 hex
/// digits each; `epoch` is the original's upload epoch, `writer` the epoch of the run that
/// compacted it, `counter` the volume's compaction counter).
pub(crate) fn compacted_key(seq: u64, epoch: u64, writer: u64, counter: u64) -> String {
    format!("sco/{seq:016x}.{epoch:016x}.{writer:016x}.{counter:016x}")
}

/// A compacted object's (writer epoch, counter): the larger, the newer.
pub(crate) type Generation = (u64, u64);

/// A SCO object key parsed: `(seq, epoch, Some((writer, counter)))` for a compacted one,
/// `(seq, epoch, None)` for an original (`sco/<seq>`, epoch 0, or `sco/<seq>.<epoch>`).
pub(crate) fn parse_sco_key(key: &str) -> Option<(u64, u64, Option<Generation>)> {
    parse_key(key.strip_prefix("sco/")?)
}

/// The key of TLog `seq`'s compacted object: `tlog/<seq>.<epoch>.<writer>.<counter>` (as
/// [`compacted_key`]; the object is a TLog like the original, holding only the entries a view
/// may need).
pub(crate) fn compacted_tlog_key(seq: u64, epoch: u64, writer: u64, counter: u64) -> String {
    format!("tlog/{seq:016x}.{epoch:016x}.{writer:016x}.{counter:016x}")
}

/// A TLog object key parsed as [`parse_sco_key`] parses a SCO's.
pub(crate) fn parse_tlog_key(key: &str) -> Option<(u64, u64, Option<Generation>)> {
    parse_key(key.strip_prefix("tlog/")?)
}

fn parse_key(rest: &str) -> Option<(u64, u64, Option<Generation>)> {
    let hex = super::parse_seq_name;
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        [s] => Some((hex(s)?, 0, None)),
        [s, e] => Some((hex(s)?, hex(e)?, None)),
        [s, e, w, c] => Some((hex(s)?, hex(e)?, Some((hex(w)?, hex(c)?)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kept: Vec<u32>) -> CompactedHeader {
        CompactedHeader {
            volume: VolumeId([7; 16]),
            sco: 42,
            clusters: 1024,
            kept,
        }
    }

    #[test]
    fn a_compacted_object_round_trips_and_maps_indexes() {
        let h = header(vec![3, 9, 1000]);
        let data: Vec<u8> = (0..3 * CLUSTER_SIZE)
            .map(|i| u8::try_from(i / CLUSTER_SIZE).unwrap_or(0))
            .collect();
        let obj = h.encode_object(&data);
        let need = CompactedHeader::needed("x", &obj[..4096]).unwrap();
        let back = CompactedHeader::decode("x", &obj[..need], h.volume, 42).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.offset_of(9), Some(4096 + 4096));
        assert_eq!(back.offset_of(4), None);
        assert_eq!(back.clusters_of("x", &obj).unwrap(), &data[..]);
        assert!(CompactedHeader::decode("x", &obj[..need], h.volume, 43).is_err());
        let mut bad = obj.clone();
        bad[50] ^= 1;
        assert!(CompactedHeader::decode("x", &bad[..need], h.volume, 42).is_err());
        let mut bad = obj;
        bad[4096 + 5] ^= 1;
        assert!(back.clusters_of("x", &bad).is_err());
    }

    #[test]
    fn a_long_index_list_spans_more_than_one_page() {
        let h = header((0..1024).step_by(1).filter(|i| i % 3 != 0).collect());
        let obj = h.encode_object(&vec![1u8; h.kept.len() * CLUSTER_SIZE]);
        assert_eq!(CompactedHeader::len_for(h.kept.len()), 4096);
        let h = CompactedHeader {
            clusters: 4096,
            kept: (0..2000).collect(),
            ..h
        };
        assert_eq!(CompactedHeader::len_for(2000), 8192);
        let obj2 = h.encode_object(&vec![1u8; 2000 * CLUSTER_SIZE]);
        let need = CompactedHeader::needed("x", &obj2[..4096]).unwrap();
        assert!(need > 4096);
        assert_eq!(
            CompactedHeader::decode("x", &obj2[..need], h.volume, 42).unwrap(),
            h
        );
        assert!(obj.len() > 4096);
    }

    #[test]
    fn keys_parse_back() {
        let k = compacted_key(5, 2, 3, 9);
        assert_eq!(parse_sco_key(&k), Some((5, 2, Some((3, 9)))));
        assert_eq!(parse_sco_key("sco/0000000000000005"), Some((5, 0, None)));
        assert_eq!(
            parse_sco_key("sco/0000000000000005.0000000000000002"),
            Some((5, 2, None))
        );
        assert_eq!(parse_sco_key("sco/5"), None);
        assert_eq!(parse_sco_key("tlog/0000000000000005"), None);
    }
}
