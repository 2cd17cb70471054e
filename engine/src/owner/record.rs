//! The owner record: one small object at the root of the backend naming the gateway that owns
//! it and an epoch that only grows (byte layout in `FORMATS.md`, "Owner record").

use crate::error::{Error, Result};

/// Key of the owner record on the backend (outside `files/` and `volumes/`).
pub const OWNER_KEY: &str = "owner";
/// First bytes of every owner record.
const MAGIC: &[u8; 8] = b"STRATAOW";
/// The record's format version.
const VERSION: u16 = 1;
/// Bytes before the label: magic, version, label length, fsid, gateway id, epoch.
const HEADER_LEN: usize = 36;
/// Length of the trailing CRC32C.
const CRC_LEN: usize = 4;
/// Longest label kept, in bytes (a longer one is cut at a character boundary).
pub(super) const LABEL_MAX: usize = 255;
/// Largest owner record a reader accepts: anything larger is refused before it is read.
pub(super) const RECORD_MAX: u64 = 4096;

/// What the owner record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    /// The owning gateway's namespace identity (`Filesystem::fsid`): every volume id on the
    /// backend starts with it.
    pub fsid: u64,
    /// The owning gateway's random id (kept in its `strata.redb`, `meta.gateway_id`).
    pub gateway: u64,
    /// Grows by one at every start of the owner (1 at the claim).
    pub epoch: u64,
    /// Free text for people: `<host name>:<data directory>` of the owner at its last start.
    /// Never used to decide anything.
    pub label: String,
}

impl OwnerRecord {
    /// A record for `fsid`/`gateway` at `epoch`, with `label` cut to `LABEL_MAX` bytes.
    pub fn new(fsid: u64, gateway: u64, epoch: u64, label: &str) -> OwnerRecord {
        let mut end = label.len().min(LABEL_MAX);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        OwnerRecord {
            fsid,
            gateway,
            epoch,
            label: label[..end].to_string(),
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let label = &self.label.as_bytes()[..self.label.len().min(LABEL_MAX)];
        let mut out = Vec::with_capacity(HEADER_LEN + label.len() + CRC_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // At most LABEL_MAX (255): fits.
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.fsid.to_le_bytes());
        out.extend_from_slice(&self.gateway.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(label);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses stored bytes; anything but a well-formed record of this version is an error
    /// naming `what` (the object), never a panic.
    pub fn decode(what: &str, b: &[u8]) -> Result<OwnerRecord> {
        let bad = |reason: &str| {
            Error::Io(format!(
                "{what} is not a valid Strata owner record ({reason}); nothing was changed on \
                 the backend"
            ))
        };
        if b.len() < HEADER_LEN + CRC_LEN {
            return Err(bad(&format!("{} bytes, too short", b.len())));
        }
        if &b[..8] != MAGIC {
            return Err(bad("bad magic"));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this gateway reads {VERSION}"
            )));
        }
        let label_len = usize::from(u16::from_le_bytes([b[10], b[11]]));
        if label_len > LABEL_MAX {
            return Err(bad(&format!("label of {label_len} bytes")));
        }
        let end = HEADER_LEN + label_len;
        if b.len() != end + CRC_LEN {
            return Err(bad(&format!(
                "{} bytes where the header says {}",
                b.len(),
                end + CRC_LEN
            )));
        }
        let stored = u32::from_le_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        if crc32c::crc32c(&b[..end]) != stored {
            return Err(bad("CRC mismatch"));
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let label = std::str::from_utf8(&b[HEADER_LEN..end])
            .map_err(|_| bad("label is not UTF-8"))?
            .to_string();
        Ok(OwnerRecord {
            fsid: u64_at(12),
            gateway: u64_at(20),
            epoch: u64_at(28),
            label,
        })
    }

    /// How people see this identity in messages.
    pub fn describe(&self) -> String {
        describe(self.gateway, self.fsid, &self.label)
    }
}

/// `gateway G (namespace F, LABEL)`, ids in hex as `strata status` shows the fsid.
pub(crate) fn describe(gateway: u64, fsid: u64, label: &str) -> String {
    if label.is_empty() {
        format!("gateway {gateway:016x} (namespace {fsid:016x})")
    } else {
        format!("gateway {gateway:016x} (namespace {fsid:016x}, {label})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_reads_back() {
        let r = OwnerRecord::new(0x1234, 0x5678, 9, "host:/var/lib/strata");
        let b = r.encode();
        assert_eq!(b.len(), HEADER_LEN + r.label.len() + CRC_LEN);
        assert_eq!(OwnerRecord::decode("owner", &b).expect("decodes"), r);
    }

    #[test]
    fn a_long_label_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let r = OwnerRecord::new(1, 2, 3, &long);
        assert!(r.label.len() <= LABEL_MAX && r.label.len() >= LABEL_MAX - 1);
        let back = OwnerRecord::decode("owner", &r.encode()).expect("decodes");
        assert_eq!(back, r);
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let b = OwnerRecord::new(7, 8, 9, "x").encode();
        for i in 0..b.len() * 8 {
            let mut m = b.clone();
            m[i / 8] ^= 1 << (i % 8);
            assert!(OwnerRecord::decode("owner", &m).is_err(), "bit {i}");
        }
    }

    #[test]
    fn the_error_names_the_object() {
        let e = OwnerRecord::decode("backend /b: owner", b"garbage").unwrap_err();
        assert!(e.to_string().contains("backend /b: owner"), "{e}");
    }

    proptest! {
        #[test]
        fn random_bytes_are_an_error_or_a_record_never_a_panic(
            b in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let _ = OwnerRecord::decode("owner", &b);
        }

        #[test]
        fn mutated_records_never_panic(
            label in "[a-z:/]{0,40}", at in 0usize..80, byte in any::<u8>(), cut in 0usize..80
        ) {
            let mut b = OwnerRecord::new(1, 2, 3, &label).encode();
            let n = b.len();
            b[at % n] = byte;
            b.truncate(n - cut.min(n));
            let _ = OwnerRecord::decode("owner", &b);
        }
    }
}
