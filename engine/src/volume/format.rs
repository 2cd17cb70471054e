//! The on-disk (and later on-backend) formats of SCOs and TLogs: encoding, decoding and
//! verification. Every byte is documented in `engine/FORMATS.md`. All integers are
//! little-endian.

use std::fmt;

/// Bytes in one cluster: the unit of addressing, of the MetaDataStore and of SCO appends.
pub const CLUSTER_SIZE: usize = 4096;
/// The same as a `u64`, for offset arithmetic.
pub const CLUSTER_SIZE_U64: u64 = CLUSTER_SIZE as u64;

/// Format version written in SCO and TLog headers. Readers reject any other.
pub const FORMAT_VERSION: u16 = 1;

/// Magic at offset 0 of an SCO.
pub const SCO_MAGIC: [u8; 8] = *b"STRATSCO";
/// Magic at offset 0 of an SCO footer.
pub const SCO_FOOTER_MAGIC: [u8; 8] = *b"STRSCOFT";
/// Bytes reserved for the SCO header: one whole cluster, so clusters stay page-aligned.
pub const SCO_HEADER_LEN: u64 = CLUSTER_SIZE_U64;
/// Meaningful bytes at the start of the SCO header (the rest of the header cluster is zero).
const SCO_HEADER_USED: usize = 44;
/// Bytes of the SCO footer appended when a SCO is sealed.
pub const SCO_FOOTER_LEN: usize = 32;
/// Bytes of the largest sealed SCO: header, [`MAX_SCO_CLUSTERS`] clusters, footer.
pub const MAX_SCO_LEN: u64 =
    SCO_HEADER_LEN + MAX_SCO_CLUSTERS as u64 * CLUSTER_SIZE_U64 + SCO_FOOTER_LEN as u64;
/// Bytes of the largest TLog a reader accepts (it is read whole): 4 GiB, 89 million entries.
/// The largest configuration Ganesha accepts (`TLog_SCOs` 1024, `SCO_Size` 256 MiB) writes
/// TLogs of at most 1024 × 65,537 entries (3.2 GB).
pub const MAX_TLOG_LEN: u64 = 4 << 30;
const _: () =
    assert!(MAX_TLOG_LEN >= TLOG_HEADER_LEN as u64 + TLOG_ENTRY_LEN as u64 * (1024 * 65_537 + 1));

/// Magic at offset 0 of a TLog.
pub const TLOG_MAGIC: [u8; 8] = *b"STRATLOG";
/// Bytes of the TLog header.
pub const TLOG_HEADER_LEN: usize = 64;
/// Bytes of one TLog entry.
pub const TLOG_ENTRY_LEN: usize = 48;
/// Most clusters one SCO may hold (`SCO_Size` is at most 1 GiB). Readers refuse a cluster
/// index, a cluster count or a footer beyond it, so no count read from disk or the backend can
/// make them allocate or read more than one such SCO.
pub const MAX_SCO_CLUSTERS: u32 = 1 << 18;

/// The 16-byte identity of a volume, written in every SCO and TLog header. It keys the
/// volume's backend namespace (never its file name), so volumes can be renamed freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId(pub [u8; 16]);

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a reader found wrong with a SCO or TLog. Each variant names what could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The object is shorter than its fixed-size part.
    #[error("{what}: truncated ({len} bytes, need {need})")]
    Truncated {
        /// Which object or part.
        what: String,
        /// Bytes found.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The magic bytes are wrong: this is not the expected kind of object.
    #[error("{what}: bad magic {found:02x?}")]
    BadMagic {
        /// Which object or part.
        what: String,
        /// The bytes found.
        found: [u8; 8],
    },
    /// A format version this build does not read.
    #[error("{what}: unsupported format version {found} (this build reads {FORMAT_VERSION})")]
    BadVersion {
        /// Which object.
        what: String,
        /// The version found.
        found: u16,
    },
    /// A CRC32C does not match the bytes it covers.
    #[error("{what}: CRC32C mismatch (stored {stored:08x}, computed {computed:08x})")]
    Crc {
        /// Which object or entry.
        what: String,
        /// The CRC stored in the object.
        stored: u32,
        /// The CRC computed over the bytes.
        computed: u32,
    },
    /// A field holds a value that contradicts the rest (wrong volume, sequence number, kind...).
    #[error("{what}: {reason}")]
    Inconsistent {
        /// Which object or entry.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// The object name of SCO `seq` inside a volume's namespace: `sco/<seq as 16 hex>`.
pub fn sco_name(seq: u64) -> String {
    format!("{seq:016x}")
}

/// The local name of the header stub being written for SCO `seq` while it is evicted
/// (`<seq as 16 hex>.evicting`), renamed over the SCO once durable. One left behind by a crash
/// holds nothing and is removed at restart.
pub fn sco_stub_name(seq: u64) -> String {
    format!("{seq:016x}{SCO_STUB_SUFFIX}")
}

/// The suffix of [`sco_stub_name`].
pub const SCO_STUB_SUFFIX: &str = ".evicting";

/// The object name of TLog `seq` inside a volume's namespace: `tlog/<seq as 16 hex>`.
pub fn tlog_name(seq: u64) -> String {
    format!("{seq:016x}")
}

/// Parses a SCO or TLog file name (16 lowercase hex digits) back into its sequence number.
pub fn parse_seq_name(name: &str) -> Option<u64> {
    if name.len() != 16
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn arr8(b: &[u8], at: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    a
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

fn check_crc(what: &str, stored: u32, covered: &[u8]) -> Result<(), FormatError> {
    let computed = crc32c::crc32c(covered);
    if stored != computed {
        return Err(FormatError::Crc {
            what: what.to_string(),
            stored,
            computed,
        });
    }
    Ok(())
}

/// The header at the start of every SCO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoHeader {
    /// The volume the SCO belongs to.
    pub volume: VolumeId,
    /// The SCO's sequence number (its name).
    pub seq: u64,
}

impl ScoHeader {
    /// Encodes the header as the full [`SCO_HEADER_LEN`] bytes written at offset 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SCO_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SCO_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 10..12 reserved (zero)
        b[12..16].copy_from_slice(&(CLUSTER_SIZE as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header: the first [`SCO_HEADER_LEN`] bytes of `b` (magic,
    /// version, CRC, cluster size, and the zero padding the CRC does not cover).
    pub fn decode(what: &str, b: &[u8]) -> Result<ScoHeader, FormatError> {
        if b.len() < SCO_HEADER_LEN as usize {
            return Err(FormatError::Truncated {
                what: what.to_string(),
                len: b.len() as u64,
                need: SCO_HEADER_LEN,
            });
        }
        let magic = arr8(b, 0);
        if magic != SCO_MAGIC {
            return Err(FormatError::BadMagic {
                what: what.to_string(),
                found: magic,
            });
        }
        let version = le_u16(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion {
                what: what.to_string(),
                found: version,
            });
        }
        check_crc(&format!("{what} header"), le_u32(b, 40), &b[0..40])?;
        let cs = le_u32(b, 12);
        if cs as usize != CLUSTER_SIZE {
            return Err(FormatError::Inconsistent {
                what: what.to_string(),
                reason: format!("cluster size {cs}, expected {CLUSTER_SIZE}"),
            });
        }
        // The rest of the header cluster is zero: the CRC does not cover it.
        let pad = &b[SCO_HEADER_USED..SCO_HEADER_LEN as usize];
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
pub struct ScoFooter {
    /// The SCO's sequence number.
    pub seq: u64,
    /// Clusters in the SCO.
    pub clusters: u32,
    /// CRC32C of all cluster bytes, in order (not the header).
    pub data_crc: u32,
}

impl ScoFooter {
    /// Byte offset of the footer in a SCO holding `clusters` clusters.
    pub fn offset(clusters: u32) -> u64 {
        SCO_HEADER_LEN + u64::from(clusters) * CLUSTER_SIZE_U64
    }

    /// Encodes the footer.
    pub fn encode(&self) -> [u8; SCO_FOOTER_LEN] {
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
    pub fn decode(what: &str, b: &[u8]) -> Result<ScoFooter, FormatError> {
        if b.len() < SCO_FOOTER_LEN {
            return Err(FormatError::Truncated {
                what: format!("{what} footer"),
                len: b.len() as u64,
                need: SCO_FOOTER_LEN as u64,
            });
        }
        let magic = arr8(b, 0);
        if magic != SCO_FOOTER_MAGIC {
            return Err(FormatError::BadMagic {
                what: format!("{what} footer"),
                found: magic,
            });
        }
        check_crc(&format!("{what} footer"), le_u32(b, 28), &b[0..28])?;
        let clusters = le_u32(b, 16);
        if clusters > MAX_SCO_CLUSTERS {
            return Err(FormatError::Inconsistent {
                what: format!("{what} footer"),
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

/// The header at the start of every TLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlogHeader {
    /// The volume the TLog belongs to.
    pub volume: VolumeId,
    /// The TLog's sequence number (its name).
    pub seq: u64,
}

impl TlogHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; TLOG_HEADER_LEN] {
        let mut b = [0u8; TLOG_HEADER_LEN];
        b[0..8].copy_from_slice(&TLOG_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 10..12 reserved (zero)
        b[12..16].copy_from_slice(&(TLOG_ENTRY_LEN as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        b[40..44].copy_from_slice(&(CLUSTER_SIZE as u32).to_le_bytes());
        // 44..60 reserved (zero)
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header (magic, version, CRC, entry and cluster size).
    pub fn decode(what: &str, b: &[u8]) -> Result<TlogHeader, FormatError> {
        if b.len() < TLOG_HEADER_LEN {
            return Err(FormatError::Truncated {
                what: what.to_string(),
                len: b.len() as u64,
                need: TLOG_HEADER_LEN as u64,
            });
        }
        let magic = arr8(b, 0);
        if magic != TLOG_MAGIC {
            return Err(FormatError::BadMagic {
                what: what.to_string(),
                found: magic,
            });
        }
        let version = le_u16(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion {
                what: what.to_string(),
                found: version,
            });
        }
        check_crc(&format!("{what} header"), le_u32(b, 60), &b[0..60])?;
        let es = le_u32(b, 12);
        let cs = le_u32(b, 40);
        if es as usize != TLOG_ENTRY_LEN || cs as usize != CLUSTER_SIZE {
            return Err(FormatError::Inconsistent {
                what: what.to_string(),
                reason: format!("entry size {es} / cluster size {cs}, expected {TLOG_ENTRY_LEN} / {CLUSTER_SIZE}"),
            });
        }
        Ok(TlogHeader {
            volume: VolumeId(arr16(b, 16)),
            seq: le_u64(b, 32),
        })
    }
}

/// One TLog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Cluster `address` of the volume now lives at cluster `offset` of SCO `sco`; `md5` is the
    /// MD5 of its 4 KiB.
    Cluster {
        /// Cluster address in the volume (byte offset / 4096).
        address: u64,
        /// SCO sequence number.
        sco: u64,
        /// Cluster index inside the SCO.
        offset: u32,
        /// MD5 of the cluster's content.
        md5: [u8; 16],
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

impl Entry {
    /// Encodes the entry, CRC included.
    pub fn encode(&self) -> [u8; TLOG_ENTRY_LEN] {
        let mut b = [0u8; TLOG_ENTRY_LEN];
        match *self {
            Entry::Cluster {
                address,
                sco,
                offset,
                md5,
            } => {
                b[0] = KIND_CLUSTER;
                b[4..8].copy_from_slice(&offset.to_le_bytes());
                b[8..16].copy_from_slice(&address.to_le_bytes());
                b[16..24].copy_from_slice(&sco.to_le_bytes());
                b[24..40].copy_from_slice(&md5);
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
    pub fn decode(what: &str, b: &[u8]) -> Result<Entry, FormatError> {
        if b.len() < TLOG_ENTRY_LEN {
            return Err(FormatError::Truncated {
                what: what.to_string(),
                len: b.len() as u64,
                need: TLOG_ENTRY_LEN as u64,
            });
        }
        check_crc(what, le_u32(b, 44), &b[0..44])?;
        let bad = |reason: &str| FormatError::Inconsistent {
            what: what.to_string(),
            reason: reason.to_string(),
        };
        if b[1..4] != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        // Field a: a cluster index (below the limit) or a cluster count (up to it).
        let a = le_u32(b, 4);
        Ok(match b[0] {
            KIND_CLUSTER if a >= MAX_SCO_CLUSTERS => {
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
                md5: arr16(b, 24),
            },
            KIND_SCO_SEALED => Entry::ScoSealed {
                clusters: a,
                sco: le_u64(b, 16),
                crc: le_u32(b, 40),
            },
            KIND_RESIZE => Entry::Resize { size: le_u64(b, 8) },
            KIND_TLOG_CLOSED => Entry::TlogClosed { crc: le_u32(b, 40) },
            k => return Err(bad(&format!("unknown entry kind {k}"))),
        })
    }
}

/// The MD5 of a cluster.
pub fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(data);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_detect_flips() {
        let entries = [
            Entry::Cluster {
                address: 7,
                sco: 3,
                offset: 12,
                md5: [9; 16],
            },
            Entry::ScoSealed {
                sco: 3,
                clusters: 1024,
                crc: 0xdead_beef,
            },
            Entry::Resize { size: 12345 },
            Entry::TlogClosed { crc: 42 },
        ];
        for e in entries {
            let mut b = e.encode();
            assert_eq!(Entry::decode("e", &b), Ok(e));
            for i in 0..TLOG_ENTRY_LEN {
                b[i] ^= 0x10;
                assert!(
                    Entry::decode("e", &b).is_err(),
                    "flip at byte {i} undetected"
                );
                b[i] ^= 0x10;
            }
        }
        assert!(matches!(
            Entry::decode("e", &[0u8; TLOG_ENTRY_LEN]),
            Err(FormatError::Crc { .. })
        ));
    }

    #[test]
    fn headers_and_footer_round_trip_and_reject_garbage() {
        let v = VolumeId([5; 16]);
        let h = ScoHeader { volume: v, seq: 77 };
        assert_eq!(ScoHeader::decode("s", &h.encode()), Ok(h));
        let t = TlogHeader { volume: v, seq: 3 };
        let mut tb = t.encode();
        assert_eq!(TlogHeader::decode("t", &tb), Ok(t));
        tb[8] = 2;
        assert!(matches!(
            TlogHeader::decode("t", &tb),
            Err(FormatError::BadVersion { .. })
        ));
        tb[0] = b'X';
        assert!(matches!(
            TlogHeader::decode("t", &tb),
            Err(FormatError::BadMagic { .. })
        ));
        let f = ScoFooter {
            seq: 77,
            clusters: 3,
            data_crc: 99,
        };
        let mut fb = f.encode();
        assert_eq!(ScoFooter::decode("s", &fb), Ok(f));
        fb[17] ^= 1;
        assert!(matches!(
            ScoFooter::decode("s", &fb),
            Err(FormatError::Crc { .. })
        ));
    }

    #[test]
    fn crc_and_md5_are_the_standard_ones() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            md5(b""),
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
    }

    #[test]
    fn names_sort_in_sequence_order() {
        assert_eq!(sco_name(10), "000000000000000a");
        assert!(tlog_name(9) < tlog_name(10));
        assert_eq!(parse_seq_name(&tlog_name(0xabc)), Some(0xabc));
        assert_eq!(parse_seq_name("000000000000000A"), None);
        assert_eq!(parse_seq_name("tmp"), None);
    }
}
