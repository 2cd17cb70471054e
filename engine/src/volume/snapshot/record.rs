//! A snapshot's record: the same bytes in the MetaDataStore and in its backend object
//! (`snap/<id>.<epoch>`). Byte layout in `engine/FORMATS.md`, "Snapshots".

use crate::types::Timestamp;
use crate::volume::format::{check_crc, le_u16, le_u32, le_u64, FormatError, VolumeId};

const MAGIC: &[u8; 8] = b"STRATSNP";
const VERSION: u16 = 1;
/// magic, version, reserved, volume, id, TLog, seconds, nanoseconds, logged clusters.
const FIXED: usize = 8 + 2 + 2 + 16 + 8 + 8 + 8 + 4 + 8;

/// Longest snapshot name, in bytes.
pub(crate) const MAX_NAME: usize = 128;
/// Most key=value pairs of user metadata on one snapshot.
pub(crate) const MAX_META: usize = 32;
/// Longest metadata key, in bytes.
pub(crate) const MAX_KEY: usize = 64;
/// Longest metadata value, in bytes.
pub(crate) const MAX_VALUE: usize = 1024;
/// Largest record (what the fields above allow, rounded up): a longer object is refused
/// before it is read whole.
pub(crate) const MAX_RECORD: u64 = 64 << 10;

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    /// Unique within the volume, growing: the order snapshots were taken in.
    pub id: u64,
    /// The user's name for it, unique within the volume.
    pub name: String,
    /// The volume as of the end of this TLog (0: before any).
    pub tlog: u64,
    /// When it was taken.
    pub created: Timestamp,
    /// Clusters the volume had logged when it was taken (counted by this gateway).
    pub logged_clusters: u64,
    /// User metadata, in the order given.
    pub meta: Vec<(String, String)>,
}

/// Checks a snapshot name: 1 to 128 bytes, no `/`, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a snapshot name has 1 to {MAX_NAME} bytes"));
    }
    if name.chars().any(|c| c == '/' || c.is_control()) {
        return Err(format!(
            "snapshot name {name:?}: no '/' or control characters"
        ));
    }
    Ok(())
}

/// Checks user metadata: at most 32 pairs, keys of 1 to 64 letters, digits, `.`, `_` or `-`,
/// each once, values of at most 1024 bytes without control characters.
pub(crate) fn check_meta(meta: &[(String, String)]) -> Result<(), String> {
    if meta.len() > MAX_META {
        return Err(format!("at most {MAX_META} metadata pairs"));
    }
    for (i, (k, v)) in meta.iter().enumerate() {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_KEY
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !key_ok {
            return Err(format!(
                "metadata key {k:?}: 1 to {MAX_KEY} letters, digits, '.', '_' or '-'"
            ));
        }
        if meta[..i].iter().any(|(o, _)| o == k) {
            return Err(format!("metadata key {k:?} given twice"));
        }
        if v.len() > MAX_VALUE || v.chars().any(char::is_control) {
            return Err(format!(
                "metadata value of {k:?}: at most {MAX_VALUE} bytes, no control characters"
            ));
        }
    }
    Ok(())
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    // Every string was checked shorter than 64 KiB.
    b.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

impl SnapshotRecord {
    /// The record's bytes for volume `volume`, CRC32C last.
    pub(crate) fn encode(&self, volume: VolumeId) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED + 64);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&volume.0);
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.tlog.to_le_bytes());
        b.extend_from_slice(&self.created.secs.to_le_bytes());
        b.extend_from_slice(&self.created.nsecs.to_le_bytes());
        b.extend_from_slice(&self.logged_clusters.to_le_bytes());
        put_str(&mut b, &self.name);
        b.extend_from_slice(
            &u16::try_from(self.meta.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        for (k, v) in &self.meta {
            put_str(&mut b, k);
            put_str(&mut b, v);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a record of volume `volume` (length, CRC, magic, version, volume,
    /// the name and metadata rules).
    pub(crate) fn decode(
        what: &str,
        b: &[u8],
        volume: VolumeId,
    ) -> Result<SnapshotRecord, FormatError> {
        let bad = |reason: String| FormatError::Inconsistent {
            what: what.to_string(),
            reason,
        };
        if b.len() < FIXED + 2 + 2 + 4 || b.len() as u64 > MAX_RECORD {
            return Err(bad(format!("{} bytes: not a snapshot record", b.len())));
        }
        let body = &b[..b.len() - 4];
        check_crc(what, le_u32(b, b.len() - 4), body)?;
        if &body[..8] != MAGIC {
            return Err(bad("bad magic".into()));
        }
        let version = le_u16(body, 8);
        if version != VERSION {
            return Err(FormatError::BadVersion {
                what: what.to_string(),
                found: version,
            });
        }
        let mut r = Reader { b: body, at: 12 };
        let vid = r.take(16).ok_or_else(|| bad("short".into()))?;
        if vid != volume.0 {
            return Err(bad(format!("names another volume, expected {volume}")));
        }
        let short = || bad("truncated".into());
        let id = r.u64().ok_or_else(short)?;
        let tlog = r.u64().ok_or_else(short)?;
        let secs = i64::from_le_bytes(r.u64().ok_or_else(short)?.to_le_bytes());
        let nsecs = r.take(4).map(|s| le_u32(s, 0)).ok_or_else(short)?;
        let logged_clusters = r.u64().ok_or_else(short)?;
        let name = r.str().ok_or_else(short)??;
        let count = r.u16().ok_or_else(short)?;
        let mut meta = Vec::new();
        for _ in 0..count {
            let k = r.str().ok_or_else(short)??;
            let v = r.str().ok_or_else(short)??;
            meta.push((k, v));
        }
        if r.at != body.len() {
            return Err(bad(format!("{} bytes after the record", body.len() - r.at)));
        }
        if id == 0 || nsecs >= 1_000_000_000 {
            return Err(bad(format!("id {id}, nanoseconds {nsecs}")));
        }
        check_name(&name).map_err(bad)?;
        check_meta(&meta).map_err(bad)?;
        Ok(SnapshotRecord {
            id,
            name,
            tlog,
            created: Timestamp { secs, nsecs },
            logged_clusters,
            meta,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| le_u16(s, 0))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| le_u64(s, 0))
    }
    /// A length-prefixed UTF-8 string (the inner error: not UTF-8).
    fn str(&mut self) -> Option<Result<String, FormatError>> {
        let n = usize::from(self.u16()?);
        let s = self.take(n)?;
        Some(
            String::from_utf8(s.to_vec()).map_err(|_| FormatError::Inconsistent {
                what: "snapshot record".into(),
                reason: "a string is not UTF-8".into(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> SnapshotRecord {
        SnapshotRecord {
            id: 7,
            name: "before upgrade".into(),
            tlog: 42,
            created: Timestamp {
                secs: 1_800_000_000,
                nsecs: 5,
            },
            logged_clusters: 1 << 20,
            meta: vec![
                ("owner".into(), "ops team".into()),
                ("ticket".into(), "".into()),
            ],
        }
    }

    #[test]
    fn records_round_trip_and_refuse_any_change() {
        let v = VolumeId([3; 16]);
        let b = rec().encode(v);
        assert_eq!(SnapshotRecord::decode("r", &b, v), Ok(rec()));
        assert!(SnapshotRecord::decode("r", &b, VolumeId([4; 16])).is_err());
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(SnapshotRecord::decode("r", &c, v).is_err(), "byte {i}");
        }
        for n in 0..b.len() {
            assert!(
                SnapshotRecord::decode("r", &b[..n], v).is_err(),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn names_and_metadata_are_checked() {
        assert!(check_name("nightly-2026-12-04 01:00").is_ok());
        for bad in ["", "a/b", "tab\there", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert!(check_meta(&[kv("a.b_c-1", "anything at all")]).is_ok());
        assert!(check_meta(&[kv("", "x")]).is_err());
        assert!(check_meta(&[kv("a b", "x")]).is_err());
        assert!(check_meta(&[kv("a", "x"), kv("a", "y")]).is_err());
        assert!(check_meta(&[kv("a", "line\nbreak")]).is_err());
        let many: Vec<_> = (0..33).map(|i| kv(&format!("k{i}"), "v")).collect();
        assert!(check_meta(&many).is_err());
        let big = SnapshotRecord {
            name: "n".repeat(MAX_NAME),
            meta: (0..MAX_META)
                .map(|i| kv(&format!("{i:0>64}"), &"v".repeat(MAX_VALUE)))
                .collect(),
            ..rec()
        };
        assert!(big.encode(VolumeId([0; 16])).len() as u64 <= MAX_RECORD);
    }
}
