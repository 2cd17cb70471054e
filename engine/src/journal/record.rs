//! The file journal's byte layout: the segment header and the records (see `FORMATS.md`,
//! "The file journal"). Everything little-endian; every record carries a CRC-32C.

use crate::types::{Ino, Timestamp};
use crate::volume::{le_u32, le_u64};
use std::borrow::Cow;

/// The magic at the start of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"STRJRNL1";
/// Bytes of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a record's header (before its payload).
pub(crate) const RECORD_HEADER_LEN: usize = 24;
/// Bytes of a write record's fixed payload (before its data).
const WRITE_FIXED_LEN: usize = 32;
/// Bytes of an upload record's payload.
const UPLOAD_LEN: usize = 24;
/// The most data one write record carries; longer writes take several records.
pub(crate) const MAX_WRITE_DATA: usize = 1 << 20;
/// The longest record there can be.
pub(crate) const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + WRITE_FIXED_LEN + MAX_WRITE_DATA;

const KIND_WRITE: u8 = 1;
const KIND_UPLOAD: u8 = 2;
const KIND_NAMESPACE: u8 = 3;

/// One journal record's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// Bytes written to a regular file.
    Write {
        ino: Ino,
        offset: u64,
        mtime: Timestamp,
        data: Cow<'a, [u8]>,
    },
    /// An extent object about to be uploaded (recorded before its PUT starts).
    Upload { ino: Ino, index: u64, gen: u64 },
    /// A namespace transaction's rows as it left them (the namespace's redo format, opaque
    /// here).
    Namespace { rows: Cow<'a, [u8]> },
}

/// The header of a segment whose first record has `first_lsn`, of the namespace `fsid`.
pub(crate) fn segment_header(first_lsn: u64, fsid: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&first_lsn.to_le_bytes());
    h[16..24].copy_from_slice(&fsid.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first LSN and the fsid of a segment header, or why it is not one.
pub(crate) fn parse_segment_header(b: &[u8]) -> Result<(u64, u64), String> {
    if b.len() < SEGMENT_HEADER_LEN {
        return Err(format!("{} bytes, shorter than a segment header", b.len()));
    }
    if &b[0..8] != SEGMENT_MAGIC {
        return Err("not a journal segment (bad magic)".into());
    }
    if crc32c::crc32c(&b[0..24]) != le_u32(b, 24) {
        return Err("segment header checksum mismatch".into());
    }
    Ok((le_u64(b, 8), le_u64(b, 16)))
}

impl Record<'_> {
    /// The record's bytes with sequence number `lsn`.
    pub(crate) fn encode(&self, lsn: u64) -> Vec<u8> {
        let payload_len = match self {
            Record::Write { data, .. } => WRITE_FIXED_LEN + data.len(),
            Record::Upload { .. } => UPLOAD_LEN,
            Record::Namespace { rows } => rows.len(),
        };
        let len = RECORD_HEADER_LEN + payload_len;
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 4]); // the CRC, below
        b.extend_from_slice(&lsn.to_le_bytes());
        match self {
            Record::Write {
                ino,
                offset,
                mtime,
                data,
            } => {
                b.push(KIND_WRITE);
                b.extend_from_slice(&[0u8; 7]);
                b.extend_from_slice(&ino.to_le_bytes());
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(&mtime.secs.to_le_bytes());
                b.extend_from_slice(&mtime.nsecs.to_le_bytes());
                b.extend_from_slice(&[0u8; 4]);
                b.extend_from_slice(data);
            }
            Record::Upload { ino, index, gen } => {
                b.push(KIND_UPLOAD);
                b.extend_from_slice(&[0u8; 7]);
                b.extend_from_slice(&ino.to_le_bytes());
                b.extend_from_slice(&index.to_le_bytes());
                b.extend_from_slice(&gen.to_le_bytes());
            }
            Record::Namespace { rows } => {
                b.push(KIND_NAMESPACE);
                b.extend_from_slice(&[0u8; 7]);
                b.extend_from_slice(rows);
            }
        }
        let crc = crc32c::crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// What [`parse_record`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole, verified record of `len` bytes.
    Record {
        lsn: u64,
        len: usize,
        record: Record<'static>,
    },
    /// Nothing more: the end of the bytes, or bytes that are not a whole verified record (a
    /// torn tail, or damage), with why.
    End(Option<String>),
}

/// Parses the record at the start of `b`.
pub(crate) fn parse_record(b: &[u8]) -> Parsed {
    if b.is_empty() {
        return Parsed::End(None);
    }
    if b.len() < RECORD_HEADER_LEN {
        return Parsed::End(Some(format!(
            "{} bytes, shorter than a record header",
            b.len()
        )));
    }
    let len = le_u32(b, 0) as usize;
    if !(RECORD_HEADER_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Parsed::End(Some(format!("record length {len} out of bounds")));
    }
    if b.len() < len {
        return Parsed::End(Some(format!(
            "record of {len} bytes, only {} left",
            b.len()
        )));
    }
    if crc32c::crc32c(&b[8..len]) != le_u32(b, 4) {
        return Parsed::End(Some("record checksum mismatch".into()));
    }
    let lsn = le_u64(b, 8);
    let p = &b[RECORD_HEADER_LEN..len];
    let record = match b[16] {
        KIND_WRITE if p.len() >= WRITE_FIXED_LEN => {
            let mut secs = [0u8; 8];
            secs.copy_from_slice(&p[16..24]);
            Record::Write {
                ino: le_u64(p, 0),
                offset: le_u64(p, 8),
                mtime: Timestamp {
                    secs: i64::from_le_bytes(secs),
                    nsecs: le_u32(p, 24),
                },
                data: Cow::Owned(p[WRITE_FIXED_LEN..].to_vec()),
            }
        }
        KIND_UPLOAD if p.len() == UPLOAD_LEN => Record::Upload {
            ino: le_u64(p, 0),
            index: le_u64(p, 8),
            gen: le_u64(p, 16),
        },
        KIND_NAMESPACE => Record::Namespace {
            rows: Cow::Owned(p.to_vec()),
        },
        k => {
            return Parsed::End(Some(format!(
                "record kind {k} with {} payload bytes is unknown",
                p.len()
            )))
        }
    };
    Parsed::Record { lsn, len, record }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(n: usize) -> Record<'static> {
        Record::Write {
            ino: 42,
            offset: 1 << 33,
            mtime: Timestamp {
                secs: -5,
                nsecs: 999_999_999,
            },
            data: Cow::Owned((0..n).map(|i| i as u8).collect()),
        }
    }

    #[test]
    fn records_round_trip() {
        for r in [
            write(0),
            write(4096),
            write(MAX_WRITE_DATA),
            Record::Upload {
                ino: 7,
                index: 3,
                gen: u64::MAX,
            },
            Record::Namespace {
                rows: Cow::Owned(vec![1, 2, 3]),
            },
        ] {
            let b = r.encode(99);
            match parse_record(&b) {
                Parsed::Record { lsn, len, record } => {
                    assert_eq!((lsn, len), (99, b.len()));
                    assert_eq!(record, r);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn damage_and_tears_end_the_records() {
        let b = write(100).encode(1);
        for cut in [1, RECORD_HEADER_LEN - 1, RECORD_HEADER_LEN, b.len() - 1] {
            assert!(
                matches!(parse_record(&b[..cut]), Parsed::End(Some(_))),
                "cut at {cut}"
            );
        }
        for flip in [0, 4, 8, 16, 30, b.len() - 1] {
            let mut d = b.clone();
            d[flip] ^= 0x40;
            assert!(
                matches!(parse_record(&d), Parsed::End(Some(_))),
                "flip at {flip}"
            );
        }
        assert_eq!(parse_record(&[]), Parsed::End(None));
        let h = segment_header(5, 6);
        assert_eq!(parse_segment_header(&h), Ok((5, 6)));
        let mut d = h;
        d[9] ^= 1;
        assert!(parse_segment_header(&d).is_err());
    }
}
