//! The TLog header and parsing a whole TLog into verified entries. Byte layout:
//! `engine/FORMATS.md`, "TLog".

use super::Entry;
use super::{
    arr16, check_crc, check_start, check_version, le_u16, le_u32, le_u64, FormatError, VolumeId,
    CLUSTER_SIZE, FORMAT_VERSION,
};
use crate::volume::int::u32_of;

/// Bytes of the largest TLog a reader accepts (it is read whole): 4 GiB, 89 million entries.
/// The largest configuration Ganesha accepts (`TLog_SCOs` 1024, `SCO_Size` 256 MiB) writes
/// TLogs of at most 1024 × 65,537 entries (3.2 GB).
pub(crate) const MAX_TLOG_LEN: u64 = 4 << 30;
const _: () =
    assert!(MAX_TLOG_LEN >= TLOG_HEADER_LEN as u64 + TLOG_ENTRY_LEN as u64 * (1024 * 65_537 + 1));

/// Magic at offset 0 of a TLog.
pub(crate) const TLOG_MAGIC: [u8; 8] = *b"STRATLOG";
/// Bytes of the TLog header.
pub(crate) const TLOG_HEADER_LEN: usize = 64;
/// Bytes of one TLog entry.
pub(crate) const TLOG_ENTRY_LEN: usize = 48;

/// Header flag (bytes 10..12, bit 0): a TLog the scrubber compacted. Cluster entries of
/// positions found dead are left out, so a SCO's cluster entries may skip offsets and count
/// fewer than its `ScoSealed` entry says. Builds from before it stop at the first gap.
pub(crate) const TLOG_FLAG_COMPACTED: u16 = 1;
/// Header flag (bit 1): a TLog written by a build that logs `Unmap` entries (every TLog this
/// build creates). Builds from before refuse the header: they would cut an `Unmap` in the
/// open TLog as a torn tail, losing what follows it. An `Unmap` is only ever logged in a TLog
/// with this flag (an open TLog of an older build is closed first).
pub(crate) const TLOG_FLAG_UNMAP: u16 = 2;
/// Header flag (bit 2): the field *d* of Cluster and Remap entries names the algorithm of their
/// hash ([`super::HashAlg`]; every TLog this build creates). Without it *d* is 0 (MD5): builds
/// from before BLAKE3 refuse the header instead of taking a BLAKE3 hash for an MD5. A BLAKE3
/// hash only ever goes into a TLog with this flag (an open TLog of an older build is closed
/// first).
pub(crate) const TLOG_FLAG_HASHES: u16 = 4;
/// The flags of every TLog this build creates.
const TLOG_FLAGS_OURS: u16 = TLOG_FLAG_UNMAP | TLOG_FLAG_HASHES;

/// The header at the start of every TLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlogHeader {
    /// The volume the TLog belongs to.
    pub volume: VolumeId,
    /// The TLog's sequence number (its name).
    pub seq: u64,
}

impl TlogHeader {
    /// Encodes the header as the log writes it ([`TLOG_FLAG_UNMAP`], [`TLOG_FLAG_HASHES`]).
    pub(crate) fn encode(&self) -> [u8; TLOG_HEADER_LEN] {
        self.encode_flags(TLOG_FLAGS_OURS)
    }

    /// Encodes the header with `flags` (bytes 10..12; [`TLOG_FLAG_COMPACTED`],
    /// [`TLOG_FLAG_UNMAP`], [`TLOG_FLAG_HASHES`]).
    pub(crate) fn encode_flags(&self, flags: u16) -> [u8; TLOG_HEADER_LEN] {
        let mut b = [0u8; TLOG_HEADER_LEN];
        b[0..8].copy_from_slice(&TLOG_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&flags.to_le_bytes());
        b[12..16].copy_from_slice(&u32_of(TLOG_ENTRY_LEN).to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        b[40..44].copy_from_slice(&u32_of(CLUSTER_SIZE).to_le_bytes());
        // 44..60 reserved (zero)
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header (magic, version, CRC, entry and cluster size).
    pub(crate) fn decode(what: &str, b: &[u8]) -> Result<TlogHeader, FormatError> {
        check_start(what, b, TLOG_HEADER_LEN, TLOG_MAGIC)?;
        check_version(what, le_u16(b, 8), FORMAT_VERSION)?;
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

/// A whole closed and compacted TLog: `header` flagged [`TLOG_FLAG_COMPACTED`], then
/// `entries` (a `TlogClosed` among them is left out), then the `TlogClosed` entry with the
/// CRC32C of everything before it. What [`parse_tlog`] reads back.
pub(crate) fn encode_compacted_tlog(header: &TlogHeader, entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(TLOG_HEADER_LEN + (entries.len() + 1) * TLOG_ENTRY_LEN);
    b.extend_from_slice(&header.encode_flags(TLOG_FLAG_COMPACTED | TLOG_FLAGS_OURS));
    for e in entries {
        if !matches!(e, Entry::TlogClosed { .. }) {
            b.extend_from_slice(&e.encode());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&Entry::TlogClosed { crc }.encode());
    b
}

/// A TLog parsed by [`parse_tlog`].
#[derive(Debug)]
pub(crate) struct ParsedTlog {
    /// (byte offset, entry) of every entry that verified, in order.
    pub entries: Vec<(u64, Entry)>,
    /// A compacted TLog ([`TLOG_FLAG_COMPACTED`]).
    pub compacted: bool,
    /// Written by a build that logs `Unmap` entries ([`TLOG_FLAG_UNMAP`]).
    pub unmap_ok: bool,
    /// Written by a build that names each hash's algorithm ([`TLOG_FLAG_HASHES`]).
    pub hashes_ok: bool,
    /// Bytes up to the end of the last verified entry.
    pub valid_len: u64,
}

/// Parses a whole TLog. With `tail_may_tear`, parsing stops at the first entry that does not
/// verify (a torn tail); otherwise that is an error.
pub(crate) fn parse_tlog(
    what: &str,
    data: &[u8],
    id: VolumeId,
    seq: u64,
    tail_may_tear: bool,
) -> Result<ParsedTlog, FormatError> {
    let h = TlogHeader::decode(what, data)?;
    let flags = le_u16(data, 10);
    if flags & !(TLOG_FLAG_COMPACTED | TLOG_FLAGS_OURS) != 0 {
        return Err(FormatError::Inconsistent {
            what: what.to_string(),
            reason: format!("unknown header flags {flags:#06x}"),
        });
    }
    if h.volume != id || h.seq != seq {
        return Err(FormatError::Inconsistent {
            what: what.to_string(),
            reason: format!(
                "header names volume {} TLog {}, expected volume {id} TLog {seq}",
                h.volume, h.seq
            ),
        });
    }
    let mut entries = Vec::new();
    let mut pos = TLOG_HEADER_LEN;
    let mut closed = false;
    while pos < data.len() {
        let ewhat = format!("{what} entry at byte {pos}");
        // A short tail is `Truncated` there.
        let decoded = Entry::decode(&ewhat, &data[pos..data.len().min(pos + TLOG_ENTRY_LEN)]);
        let e = match decoded {
            Ok(e) => e,
            Err(_) if tail_may_tear && !closed => break,
            Err(e) => return Err(e),
        };
        if closed {
            return Err(FormatError::Inconsistent {
                what: ewhat,
                reason: "entry after TLogClosed".into(),
            });
        }
        if let Entry::Cluster { hash, .. } | Entry::Remap { hash, .. } = e {
            if flags & TLOG_FLAG_HASHES == 0 && hash.alg() != super::HashAlg::Md5 {
                return Err(FormatError::Inconsistent {
                    what: ewhat,
                    reason: "a hash other than MD5 in a TLog whose header allows only MD5".into(),
                });
            }
        }
        if let Entry::TlogClosed { crc } = e {
            let computed = crc32c::crc32c(&data[..pos]);
            if crc != computed {
                return Err(FormatError::Crc {
                    what: format!("{what} (whole TLog)"),
                    stored: crc,
                    computed,
                });
            }
            closed = true;
        }
        entries.push((pos as u64, e));
        pos += TLOG_ENTRY_LEN;
    }
    Ok(ParsedTlog {
        valid_len: (TLOG_HEADER_LEN + entries.len() * TLOG_ENTRY_LEN) as u64,
        entries,
        compacted: flags & TLOG_FLAG_COMPACTED != 0,
        unmap_ok: flags & TLOG_FLAG_UNMAP != 0,
        hashes_ok: flags & TLOG_FLAG_HASHES != 0,
    })
}
