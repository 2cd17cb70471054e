//! The bytes of the write-ahead log: its header slots and its records (layout in
//! `engine/FORMATS.md`, "The write-ahead log of small commits").
//!
//! ```text
//! header slot (64 bytes, at 0 and at 512; the rest of the first 4 KiB is zeros)
//!   0..8    magic "STRATWAL"
//!   8..12   version (u32 LE, 1)
//!   12..16  run (u32 LE): bumped by every restart; only records of this run are replayed
//!   16..32  volume id
//!   32..40  ring size in bytes (u64 LE)
//!   40..48  slot sequence (u64 LE): the valid slot with the larger one is current
//!   48..56  head (u64 LE): the position of the oldest record a replay needs
//!   56..60  CRC32C of bytes 0..56
//!   60..64  zero
//! record (48-byte header, then `len` bytes of payload), at 4096 + position % ring
//!   0..4    magic "WREC"
//!   4..8    run (u32 LE) that wrote it
//!   8       kind: 1 a write into a SCO, 2 a write into a TLog, 3 wrap (the rest of the lap
//!           is unused; the next record starts the next lap)
//!   9..16   zero
//!   16..24  position (u64 LE): where in the log this record is, counting every lap
//!   24..32  SCO or TLog sequence number (u64 LE; 0 for wrap)
//!   32..40  offset in that file (u64 LE; 0 for wrap)
//!   40..44  payload length (u32 LE; 0 for wrap)
//!   44..48  CRC32C of bytes 0..44 and the payload
//! ```

use crate::volume::format::{le_u32, le_u64, VolumeId};

/// Bytes before the ring: the two header slots and padding to 4 KiB.
pub(super) const HEADER_AREA: u64 = 4096;
/// The offsets of the two header slots.
pub(super) const SLOTS: [u64; 2] = [0, 512];
/// One header slot's bytes.
pub(super) const SLOT_LEN: usize = 64;
/// A record's header bytes.
pub(super) const RECORD_HEADER_LEN: usize = 48;

const MAGIC: &[u8; 8] = b"STRATWAL";
const VERSION: u32 = 1;
const RECORD_MAGIC: &[u8; 4] = b"WREC";

/// What a record's payload is written into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::volume) enum Target {
    /// The SCO with this sequence number.
    Sco(u64),
    /// The TLog with this sequence number.
    Tlog(u64),
}

/// One header slot, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) volume: VolumeId,
    pub(super) run: u32,
    pub(super) ring: u64,
    pub(super) seq: u64,
    pub(super) head: u64,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.run.to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.ring.to_le_bytes());
        b[40..48].copy_from_slice(&self.seq.to_le_bytes());
        b[48..56].copy_from_slice(&self.head.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The slot's header, or `None` when it does not verify (never written, or torn).
    pub(super) fn decode(b: &[u8]) -> Option<Header> {
        let b = b.get(..SLOT_LEN)?;
        if &b[0..8] != MAGIC
            || le_u32(b, 8) != VERSION
            || le_u32(b, 56) != crc32c::crc32c(&b[0..56])
        {
            return None;
        }
        let mut volume = [0u8; 16];
        volume.copy_from_slice(&b[16..32]);
        Some(Header {
            volume: VolumeId(volume),
            run: le_u32(b, 12),
            ring: le_u64(b, 32),
            seq: le_u64(b, 40),
            head: le_u64(b, 48),
        })
    }
}

/// A record's header and payload as one buffer (`None` target: a wrap).
pub(super) fn encode_record(
    run: u32,
    pos: u64,
    target: Option<Target>,
    off: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    encode_record_into(&mut b, run, pos, target, off, payload);
    b
}

/// [`encode_record`], appended to `out` (records staged for one write, `Wal::log`).
pub(super) fn encode_record_into(
    out: &mut Vec<u8>,
    run: u32,
    pos: u64,
    target: Option<Target>,
    off: u64,
    payload: &[u8],
) {
    let (kind, seq) = match target {
        Some(Target::Sco(s)) => (1u8, s),
        Some(Target::Tlog(s)) => (2u8, s),
        None => (3u8, 0),
    };
    let start = out.len();
    let b = out;
    b.extend_from_slice(RECORD_MAGIC);
    b.extend_from_slice(&run.to_le_bytes());
    b.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&pos.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&off.to_le_bytes());
    // A record's payload is at most the window (`Wal::log` refuses more), far below 4 GiB.
    b.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[start..]), payload);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(payload);
}

/// A record found at a position: what it writes where (`None` target: a wrap).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Found<'a> {
    pub(super) target: Option<Target>,
    pub(super) off: u64,
    pub(super) payload: &'a [u8],
}

/// The record at the start of `b` if it is whole, verifies, was written by `run` and says it
/// is at `pos`; `None` marks the end of the log (zeros, a record of an earlier lap or run, a
/// torn or damaged one).
pub(super) fn decode_record(b: &[u8], run: u32, pos: u64) -> Option<Found<'_>> {
    let h = b.get(..RECORD_HEADER_LEN)?;
    if &h[0..4] != RECORD_MAGIC || le_u32(h, 4) != run || le_u64(h, 16) != pos {
        return None;
    }
    let len = usize::try_from(le_u32(h, 40)).ok()?;
    let payload = b.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN.checked_add(len)?)?;
    if le_u32(h, 44) != crc32c::crc32c_append(crc32c::crc32c(&h[0..44]), payload) {
        return None;
    }
    let seq = le_u64(h, 24);
    let target = match h[8] {
        1 => Some(Target::Sco(seq)),
        2 => Some(Target::Tlog(seq)),
        3 if len == 0 => None,
        _ => return None,
    };
    Some(Found {
        target,
        off: le_u64(h, 32),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_a_flipped_byte_is_refused() {
        let h = Header {
            volume: VolumeId([7; 16]),
            run: 2,
            ring: 1 << 20,
            seq: 3,
            head: 12345,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Some(h));
        for i in 0..60 {
            let mut c = b;
            c[i] ^= 1;
            assert_eq!(Header::decode(&c), None, "byte {i}");
        }
        assert_eq!(Header::decode(&[0u8; SLOT_LEN]), None);
    }

    #[test]
    fn records_round_trip_and_stale_torn_or_damaged_ones_end_the_log() {
        let r = encode_record(3, 4096, Some(Target::Sco(9)), 8192, b"abcdef");
        let f = decode_record(&r, 3, 4096).expect("decodes");
        assert_eq!(f.target, Some(Target::Sco(9)));
        assert_eq!((f.off, f.payload), (8192, &b"abcdef"[..]));
        // Another position (an earlier lap), another run, a torn record, any flipped byte.
        assert!(decode_record(&r, 3, 4096 + (1 << 20)).is_none());
        assert!(decode_record(&r, 2, 4096).is_none());
        assert!(decode_record(&r[..r.len() - 1], 3, 4096).is_none());
        for i in 0..r.len() {
            let mut c = r.clone();
            c[i] ^= 0x10;
            assert!(decode_record(&c, 3, 4096).is_none(), "byte {i}");
        }
        let w = encode_record(1, 77, None, 0, &[]);
        assert_eq!(decode_record(&w, 1, 77).map(|f| f.target), Some(None));
        let t = encode_record(1, 5, Some(Target::Tlog(2)), 64, b"x");
        assert_eq!(
            decode_record(&t, 1, 5).map(|f| f.target),
            Some(Some(Target::Tlog(2)))
        );
    }
}
