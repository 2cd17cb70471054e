//! The on-disk (and later on-backend) formats of SCOs and TLogs: encoding, decoding and
//! verification. Every byte is documented in `engine/FORMATS.md`. All integers are
//! little-endian.
//!
//! - `id`: [`VolumeId`]; `names`: file and object names; `error`: [`FormatError`].
//! - `sco`: the SCO header and footer; `tlog`: the TLog header and parsing a whole TLog;
//!   `entry`: the 48-byte TLog entry; `compacted`: SCO and TLog objects compacted by the
//!   scrubber; `hash`: [`ClusterHash`], a cluster's content hash.

mod compacted;
mod entry;
mod error;
mod hash;
mod id;
mod names;
mod sco;
#[cfg(test)]
mod tests;
mod tlog;

pub(crate) use self::compacted::{
    compacted_key, compacted_tlog_key, parse_sco_key, parse_tlog_key, CompactedHeader, Generation,
};
pub(crate) use self::entry::Entry;
pub use self::error::FormatError;
#[cfg(test)]
pub(crate) use self::hash::hash_as_older_build;
pub use self::hash::{ClusterHash, HashAlg};
pub(crate) use self::id::VolumeId;
pub(crate) use self::names::{parse_seq_name, sco_name, sco_stub_name, tlog_name, SCO_STUB_SUFFIX};
pub(crate) use self::sco::{
    ScoFooter, ScoHeader, MAX_SCO_CLUSTERS, MAX_SCO_LEN, SCO_FOOTER_LEN, SCO_HEADER_LEN,
};
#[cfg(test)]
pub(crate) use self::tlog::TLOG_FLAG_UNMAP;
pub(crate) use self::tlog::{
    encode_compacted_tlog, parse_tlog, TlogHeader, MAX_TLOG_LEN, TLOG_ENTRY_LEN, TLOG_HEADER_LEN,
};

/// Bytes in one cluster: the unit of addressing, of the MetaDataStore and of SCO appends.
pub(crate) const CLUSTER_SIZE: usize = 4096;
/// The same as a `u64`, for offset arithmetic.
pub(crate) const CLUSTER_SIZE_U64: u64 = CLUSTER_SIZE as u64;

/// Format version written in SCO and TLog headers. Readers reject any other.
pub(crate) const FORMAT_VERSION: u16 = 1;

/// The little-endian u16 at `at` (the caller checked the length).
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

/// The little-endian u32 at `at` (the caller checked the length).
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian u64 at `at` (the caller checked the length).
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
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

/// `b` holds at least `need` bytes; otherwise an error naming `what`.
fn check_len(what: &str, b: &[u8], need: usize) -> Result<(), FormatError> {
    if b.len() < need {
        return Err(FormatError::Truncated {
            what: what.to_string(),
            len: b.len() as u64,
            need: need as u64,
        });
    }
    Ok(())
}

/// The start of every record this module decodes: `b` holds at least `need` bytes and begins
/// with `magic`; otherwise an error naming `what`.
fn check_start(what: &str, b: &[u8], need: usize, magic: [u8; 8]) -> Result<(), FormatError> {
    check_len(what, b, need)?;
    let found = arr8(b, 0);
    if found != magic {
        return Err(FormatError::BadMagic {
            what: what.to_string(),
            found,
        });
    }
    Ok(())
}

/// A version other than `want` is an error naming `what`.
fn check_version(what: &str, found: u16, want: u16) -> Result<(), FormatError> {
    if found != want {
        return Err(FormatError::BadVersion {
            what: what.to_string(),
            found,
        });
    }
    Ok(())
}

/// A CRC32C mismatch of `covered` against `stored` is an error naming `what`.
pub(crate) fn check_crc(what: &str, stored: u32, covered: &[u8]) -> Result<(), FormatError> {
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
